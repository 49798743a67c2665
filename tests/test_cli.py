"""The musemo command line, run as a user runs it."""

from __future__ import annotations

import argparse
import json
import os
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


@pytest.mark.slow
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
    # the model that ships, beside the one the demo trained, on the same recording
    assert "9. the default model (happy-sad.int8.onnx: musicnn, trained on real" in proc.stdout
    shipped = result["deployment"]["default_model"]
    assert shipped["label"] in ("happy", "sad") and len(shipped["windows"]) == 10
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


def _all_parsers():
    from musemo.cli import build_parser

    todo = [("musemo", build_parser())]
    while todo:
        name, parser = todo.pop()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {n}", p) for n, p in action.choices.items()]


def test_every_option_has_help_and_shows_its_default():
    for name, parser in _all_parsers():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                shown = f"(default: {action.default})"
                assert shown in " ".join(text.split()), f"{name} {action.option_strings[0]}"


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"musemo {musemo.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "musemo", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"musemo {musemo.__version__}"


def _cache_command(folder, cache) -> list[str]:
    from fixtures_audio import TINY_SPEC_ARGS

    return [sys.executable, "-m", "musemo", "cache", "--data", str(folder), "--cache", str(cache),
            "--workers", "1", *TINY_SPEC_ARGS]  # fmt: skip


def test_progress_bars_only_on_a_terminal(tmp_path):
    """Piped, stderr gets no carriage-return updates; on a terminal the bar is drawn."""
    import fcntl
    import pty
    import struct
    import termios

    from fixtures_audio import write_chord_dataset

    folder = write_chord_dataset(tmp_path / "chords", per_label=3)
    piped = subprocess.run(
        _cache_command(folder, tmp_path / "c1"), capture_output=True, text=True, timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "features:" not in piped.stderr
    leader, follower = pty.openpty()
    # a terminal 80 columns wide (a new pseudo-terminal has none: tqdm would draw nothing)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with subprocess.Popen(
        _cache_command(folder, tmp_path / "c2"), stdout=subprocess.DEVNULL, stderr=follower
    ) as proc:
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            drawn += chunk
        assert proc.wait(timeout=120) == 0
    os.close(leader)
    assert b"\r" in drawn and b"features:" in drawn


def test_split_both_runs_both_or_is_refused(tmp_path, capsys):
    from fixtures_audio import TINY_SPEC_ARGS, write_chord_dataset

    folder = write_chord_dataset(tmp_path / "chords", per_label=4)
    common = ["--data", str(folder), "--cache", str(tmp_path / "cache"), "--quiet",
              "--workers", "1", "--epochs", "1", *TINY_SPEC_ARGS]  # fmt: skip
    assert main(["train", *common, "--split", "both", "--out", str(tmp_path / "one")]) == 2
    assert "--split both trains on both kinds of split" in capsys.readouterr().err
    out = tmp_path / "cv"
    assert main(["train", *common, "--split", "both", "--folds", "2", "--out", str(out)]) == 0
    for mode in ("grouped", "random"):
        summary = json.loads((out / mode / "crossval.json").read_text())
        assert summary["mode"] == mode and summary["folds_done"] == 2


def test_infer_lists_few_windows_and_runs_of_many():
    from musemo.cli import _window_labels

    assert _window_labels(["happy", "-", "sad"]) == "happy - sad"
    many = ["happy"] * 300 + ["sad"] * 2 + ["-"] + ["happy"] * 30
    assert _window_labels(many) == "happy×300 sad×2 -×1 happy×30"
    alternating = ["happy", "sad"] * 15
    assert _window_labels(alternating) == " ".join(["happy×1 sad×1"] * 10) + (
        " ... (10 more runs; --json lists every window)"
    )
