"""The models that ship inside musemo: the default one, ``musemo models``, provenance."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from musemo import ParameterError
from musemo.cli import main
from musemo.edge import Classifier, open_model, shipped
from musemo.edge.backends import has_runtime


@pytest.fixture
def models_dir(tmp_path, monkeypatch, squeezenet_export):
    """A models folder holding the tiny SqueezeNet as the default model (int8 ONNX and
    TFLite) and as a second model, in place of the package's own."""
    out, _ = squeezenet_export
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".int8.onnx", ".int8.tflite"):
        shutil.copy(out / f"squeezenet1_0{suffix}", folder / f"{shipped.DEFAULT_MODEL}{suffix}")
    shutil.copy(out / "squeezenet1_0.tflite", folder / "other.tflite")
    monkeypatch.setattr(shipped, "MODELS_DIR", folder)
    return folder


@pytest.fixture
def no_models(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path / "none")
    return tmp_path / "none"


def test_the_default_model_is_the_first_format_with_a_runtime(models_dir):
    assert shipped.default_model() == models_dir / f"{shipped.DEFAULT_MODEL}.int8.onnx"
    (models_dir / f"{shipped.DEFAULT_MODEL}.int8.onnx").unlink()
    assert shipped.default_model() == models_dir / f"{shipped.DEFAULT_MODEL}.int8.tflite"
    assert has_runtime(".onnx") and has_runtime(".tflite") and not has_runtime(".pt")


def test_classifier_without_a_path_loads_the_default(models_dir, chord_recordings):
    folder, _ = chord_recordings
    clf = Classifier()
    assert clf.backend.path == models_dir / f"{shipped.DEFAULT_MODEL}.int8.onnx"
    given = Classifier(models_dir / f"{shipped.DEFAULT_MODEL}.int8.onnx")
    wav = folder / "happy" / "happy0.wav"
    assert clf.predict_file(wav).probabilities == given.predict_file(wav).probabilities


def test_without_shipped_models_the_error_says_what_to_do(no_models, capsys):
    with pytest.raises(ParameterError, match="no default model .* give a model file written"):
        Classifier()
    assert shipped.shipped_models() == []
    assert main(["models"]) == 1
    assert "no models ship with this musemo" in capsys.readouterr().err
    assert main(["infer", "song.wav"]) == 2
    assert "musemo infer MODEL FILE" in capsys.readouterr().err


def test_models_command_lists_each_file(models_dir, capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{shipped.DEFAULT_MODEL}.int8.onnx (default): squeezenet1_0 int8")
    assert sum(line.startswith("other.tflite: squeezenet1_0 fp32") for line in lines) == 1
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == sorted(p.name for p in models_dir.iterdir())
    assert [r["default"] for r in rows] == [True, True, False]
    assert all(r["provenance"]["training"]["model"] == "squeezenet1_0" for r in rows)


def test_infer_takes_the_default_a_positional_model_or_model(models_dir, chord_recordings, capsys):
    folder, _ = chord_recordings
    wav = str(folder / "sad" / "sad0.wav")
    other = str(models_dir / "other.tflite")
    outputs = []
    for argv in (["infer", wav], ["infer", other, wav], ["infer", "--model", other, wav]):
        assert main([*argv, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert [r["source"] for out in outputs for r in out] == [wav] * 3
    assert outputs[1] == outputs[2]
    assert main(["infer", "--model", other, other, wav]) == 2
    assert "two models" in capsys.readouterr().err


def test_export_writes_provenance_into_every_file(
    squeezenet_checkpoint, chord_recordings, tmp_path, capsys
):
    given = {"data": "20 chord recordings", "accuracy": {"balanced_accuracy": 1.0}}
    path = tmp_path / "provenance.json"
    path.write_text(json.dumps(given))
    argv = ["export", str(squeezenet_checkpoint), "--format", "onnx", "--out", str(tmp_path)]
    assert main([*argv, "--provenance", str(path)]) == 0
    capsys.readouterr()
    provenance = open_model(tmp_path / "squeezenet1_0.onnx").info.provenance
    assert {k: provenance[k] for k in given} == given
    assert provenance["training"]["model"] == "squeezenet1_0"
    assert provenance["musemo"] and provenance["training"]["epoch"] >= 1
    for bad, message in (
        ([1, 2], "must hold a JSON object, not list"),
        ({"training": "mine"}, "provenance keys ['training'] are written by musemo-export"),
        ({"notes": "x" * 40000}, "too large for a model file's metadata"),
    ):
        path.write_text(json.dumps(bad))
        assert main([*argv, "--force", "--provenance", str(path)]) == 2
        assert message in capsys.readouterr().err
    assert main([*argv, "--force", "--provenance", str(tmp_path / "missing.json")]) == 2
    assert "--provenance" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the real one


def test_the_model_that_ships_is_small_described_and_calibrated():
    path = shipped.default_model()  # the package's own models/ folder
    assert path == shipped.MODELS_DIR / f"{shipped.DEFAULT_MODEL}.int8.onnx"
    assert path.stat().st_size <= 3_000_000
    info = open_model(path).info
    assert (info.architecture, info.precision, info.labels) == ("musicnn", "int8", ("happy", "sad"))
    assert info.aggregate == "logits" and info.spec.clip_shape == (96, 187)
    p = info.provenance
    assert {"data", "accuracy", "cross_validation", "recipe", "terms", "card"} <= set(p)
    assert "4Q audio emotion dataset" in p["data"] and "research" in p["terms"]
    assert p["training"]["probe"] and p["training"]["head"] == "pooled"
    assert p["training"]["train_subclips"] > 4000  # every 4Q Q1 / Q3 patch: nothing held out


def test_the_docs_describe_the_file_that_ships():
    """docs/default-model.md names the shipped file's hash; the model card quotes the
    cross-validation its metadata carries."""
    import hashlib
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    path = shipped.default_model()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in (docs / "default-model.md").read_text()
    cv = open_model(path).info.provenance["cross_validation"]
    card = (docs / "model-card.md").read_text()
    for key in ("recording_balanced_accuracy", "recording_roc_auc"):
        assert f"{cv[key]['mean']:.3f} ± {cv[key]['std']:.3f}" in card, key


def test_the_model_that_ships_answers_and_refuses_silence(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from musemo import AudioError
    from musemo.data.synthetic import demo_recording

    mp3 = tmp_path / "phrase.mp3"
    sf.write(mp3, demo_recording(sr=44100, seconds=30.0), 44100, format="MP3")
    result = Classifier().predict_file(mp3)
    assert len(result.windows) == 10 and result.label in ("happy", "sad")
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert sum(result.window_shares.values()) == pytest.approx(1.0)
    assert main(["infer", str(mp3)]) == 0
    assert str(mp3) in capsys.readouterr().out
    with pytest.raises(AudioError, match="nothing to classify"):
        Classifier().predict_array(np.zeros(5 * 16000, np.float32), 16000)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("happy-sad.int8.onnx (default): musicnn int8") and "4Q" in out


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak from /proc")
def test_a_three_hour_file_is_classified_in_the_memory_of_a_few_windows(tmp_path):
    """Three hours at 22.05 kHz stereo, silent but for its first 30 s: decoded,
    resampled and cut block by block (the whole recording, mixed to mono, would take
    950 MB before resampling; the run stays under a third of that)."""
    import subprocess

    import numpy as np
    import soundfile as sf

    from musemo.data.synthetic import demo_recording

    sr, path = 22050, tmp_path / "three-hours.flac"
    music = demo_recording(sr=sr, seconds=30.0).astype(np.float32)
    with sf.SoundFile(path, "w", sr, 2, format="FLAC", subtype="PCM_16") as f:
        f.write(np.stack([music, music], axis=1))
        silence = np.zeros((sr * 60, 2), np.float32)
        for _ in range(3 * 60):
            f.write(silence)
    script = (
        "import json, sys\n"
        "from musemo.edge import Classifier\n"
        "r = Classifier().predict_file(sys.argv[1])\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "peak = int(status.split()[0]) / 1024  # ru_maxrss would carry the parent's over exec\n"
        "heard = [w.start for w in r.windows if not w.silent]\n"
        "print(json.dumps([peak, r.duration, len(r.windows), heard, r.label]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, timeout=600, check=True)  # fmt: skip
    peak_mb, duration, n_windows, heard, label = json.loads(run.stdout)
    assert duration == pytest.approx(3 * 3600 + 30, abs=0.01)
    assert n_windows == int(duration * 16000) // 47616  # every 2.976 s patch, tail dropped
    assert heard == pytest.approx([i * 2.976 for i in range(11)])  # those holding the music
    assert label in ("happy", "sad")
    assert peak_mb < 320, f"peak resident memory {peak_mb:.0f} MB"
