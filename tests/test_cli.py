"""The musemo command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import musemo
from musemo.cli import main
from musemo.data.synthetic import demo_recording


@pytest.fixture
def two_wav_files(tmp_path):
    paths = []
    for i, sr in enumerate((44100, 22050)):
        p = tmp_path / "in" / f"clip{i}.wav"
        p.parent.mkdir(exist_ok=True)
        sf.write(p, demo_recording(sr=sr, seconds=2.0, seed=i), sr)
        paths.append(p)
    return paths


def test_features_writes_npy_png_and_spec(tmp_path, two_wav_files):
    out = tmp_path / "out"
    assert main(["features", *map(str, two_wav_files), "--out", str(out), "--plot", "--quiet"]) == 0
    spec = musemo.FeatureSpec.from_json((out / "feature_spec.json").read_text())
    for p in two_wav_files:
        S = np.load(out / f"{p.stem}.npy")
        assert S.shape == (128, spec.n_frames(2 * 44100)) and S.dtype == np.float32
        y, _ = musemo.load_audio(p, sr=44100)
        np.testing.assert_array_equal(S, musemo.MelExtractor(spec).compute(y))
        assert (out / f"{p.stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # no temp files left


def test_features_with_a_spec_file(tmp_path, two_wav_files):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(musemo.FeatureSpec(sample_rate=16000, n_mels=40, db=False).to_json())
    out = tmp_path / "out"
    assert (
        main(
            [
                "features",
                str(two_wav_files[0]),
                "--out",
                str(out),
                "--spec",
                str(spec_path),
                "--quiet",
            ]
        )
        == 0
    )
    assert np.load(out / "clip0.npy").shape == (40, 1 + 32000 // 512)


def test_a_bad_file_is_named_and_the_rest_still_done(tmp_path, two_wav_files, capsys):
    broken = tmp_path / "in" / "broken.wav"
    broken.write_bytes(b"not audio at all")
    out = tmp_path / "out"
    code = main(["features", str(broken), str(two_wav_files[0]), "--out", str(out), "--quiet"])
    assert code == 1
    assert "broken.wav" in capsys.readouterr().err
    assert (out / "clip0.npy").exists() and not (out / "broken.npy").exists()


def test_clashing_names_are_refused(tmp_path, two_wav_files, capsys):
    other = tmp_path / "other" / "clip0.wav"
    other.parent.mkdir()
    other.write_bytes(two_wav_files[0].read_bytes())
    assert main(["features", str(two_wav_files[0]), str(other), "--out", str(tmp_path / "o")]) == 2
    assert "share the name clip0" in capsys.readouterr().err


def test_bad_settings_give_an_error_not_a_traceback(tmp_path, two_wav_files, capsys):
    assert main(["features", str(two_wav_files[0]), "--out", str(tmp_path), "--n-fft", "1000"]) == 2
    assert "error: n_fft=1000" in capsys.readouterr().err


def test_console_script_runs_the_demo(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "musemo.cli",
            "demo",
            "--out",
            str(out),
            "--repeats",
            "2",
            "--per-raga",
            "2",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "log-mel spectrogram (128, 2584)" in proc.stdout
    result = json.loads((out / "demo.json").read_text())
    assert result["speed"][0]["method"] == "musemo (C++)"
    assert (out / "demo_melspectrogram.png").stat().st_size > 10_000
    assert [r["split"] for r in result["training"]] == ["grouped"] * 2 + ["random"] * 2
    assert (out / "runs" / "grouped" / "squeezenet1_0" / "curves.png").exists()
    assert "| grouped | squeezenet1_0 |" in proc.stdout
    assert sf.info(out / "demo_recording.wav").duration == pytest.approx(30.0)


def test_datasets_builtin_command(tmp_path, capsys):
    root = tmp_path / "ragas"
    assert (
        main(["datasets", "builtin", str(root), "--per-raga", "1", "--seconds", "2", "--quiet"])
        == 0
    )
    assert "built-in raga set (synthetic)" in capsys.readouterr().out
    assert len(list(root.rglob("*.wav"))) == 6
    assert (root / "manifest.csv").read_text().startswith("path,label,group")


def test_render_midi_command_names_a_missing_source(tmp_path, capsys):
    pytest.importorskip("mido")
    code = main(["datasets", "render-midi", str(tmp_path / "nothing.zip"), str(tmp_path / "out")])
    assert code == 2
    assert "nothing.zip" in capsys.readouterr().err
