"""``export/default_model.py`` (``make model``): the shipped model's build, from a folder
in the 4Q set's layout to an int8 file the edge runtime loads as its default, with its
report; the same data and seed give the same file."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from musemo.edge import Classifier
from musemo.edge.shipped import default_model, shipped_models

SCRIPT = Path(__file__).resolve().parent.parent / "export" / "default_model.py"
SR = 16000


def _script():
    spec = importlib.util.spec_from_file_location("default_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tone(hz: float, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    y = 0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(len(t))
    return y.astype(np.float32)


def write_tones_as_4q(root: Path, per_quadrant: int = 12) -> Path:
    """Q1 (happy) high tones, Q3 (sad) low ones, Q2 / Q4 left out by the build; two
    songs per artist, MP3 at 16 kHz, in the 4Q set's layout with its metadata file."""
    rng = np.random.default_rng(0)
    base, rows = root / "MER_audio_taffc_dataset", []
    for quadrant, (low, high) in {"Q1": (1500, 3000), "Q3": (150, 300), "Q2": (500, 900)}.items():
        (base / quadrant).mkdir(parents=True)
        for k in range(per_quadrant):
            song = f"MT{quadrant}{k:08d}"
            y = _tone(rng.uniform(low, high), 9.1, rng)
            sf.write(base / quadrant / f"{song}.mp3", y, SR, format="MP3")
            rows.append([song, f"artist {quadrant} {k // 2}", f"title {k}", quadrant, 0.7])
    with open(base / "panda_dataset_taffc_metadata.csv", "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(["Song", "Artist", "Title", "Quadrant", "PQuad"])
        w.writerows(rows)
    return root


@pytest.mark.slow
def test_the_default_model_builds_installs_and_classifies(tmp_path, capsys):
    src = write_tones_as_4q(tmp_path / "4q")
    script = _script()
    installed, report = tmp_path / "models", tmp_path / "default-model.md"
    args = ["--data4q", str(src), "--folds", "2", "--workers", "1", "--quiet"]
    out = [*args, "--install", str(installed), "--report", str(report)]
    assert script.main([*out, "--out", str(tmp_path / "work")]) == 0
    assert "happy-sad.int8.onnx" in capsys.readouterr().out
    model = installed / "happy-sad.int8.onnx"
    assert default_model(installed) == model and 0.3e6 < model.stat().st_size < 3e6
    (shipped,) = shipped_models(installed)
    info = shipped.info
    assert (info.architecture, info.precision, info.labels) == ("musicnn", "int8", ("happy", "sad"))
    scores = json.loads((tmp_path / "work" / "scores.json").read_text())
    ba = scores["scores"]["recording_balanced_accuracy"]
    assert ba["mean"] == pytest.approx(np.mean(ba["folds"])) and ba["mean"] >= 0.9
    assert f"balanced accuracy {ba['mean']:.3f} ± {ba['std']:.3f}" in info.provenance["accuracy"]
    assert "24 recordings of 30 s by 12 artists" in info.provenance["data"]
    assert info.provenance["training"]["train_subclips"] == scores["patches"] == 72
    assert "research use only" in info.provenance["terms"]
    assert info.temperature == pytest.approx(scores["scores"]["calibration"]["temperature"])
    text = report.read_text()
    assert f"sha256 `{hashlib.sha256(model.read_bytes()).hexdigest()}`" in text
    assert "| **mean ± std** |" in text and "int8 export" in text
    # the installed model tells a high tone from a low one, as the recipe learnt
    classifier = Classifier(model)
    rng = np.random.default_rng(1)
    assert classifier.predict_array(_tone(2200, 6.0, rng), SR).label == "happy"
    assert classifier.predict_array(_tone(220, 6.0, rng), SR).label == "sad"
    # the same data and seed, built again from scratch: the same bytes
    again = tmp_path / "again"
    assert script.main([*args, "--install", str(again), "--report", str(tmp_path / "r.md"),
                        "--out", str(tmp_path / "work2")]) == 0  # fmt: skip
    assert (again / model.name).read_bytes() == model.read_bytes()


def test_the_build_refuses_a_folder_that_is_not_4q(tmp_path):
    (tmp_path / "songs").mkdir()
    with pytest.raises(Exception, match="MER_audio_taffc_dataset|4Q"):
        _script().main(["--data4q", str(tmp_path / "songs"), "--out", str(tmp_path / "w")])
    assert not (tmp_path / "w" / "cv").exists()
