"""The edge runtime: exported models classify files, arrays and streams without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

from fixtures_audio import TINY_SR

from musemo import AudioError, ParameterError
from musemo.cli import main
from musemo.edge import Classifier, classify_live, open_model

MODEL_FILES = [
    "squeezenet1_0.onnx",
    "squeezenet1_0.int8.onnx",
    "squeezenet1_0.tflite",
    "squeezenet1_0.int8.tflite",
]


@pytest.fixture(scope="module")
def int8_tflite(squeezenet_export):
    return squeezenet_export[0] / "squeezenet1_0.int8.tflite"


@pytest.fixture(scope="module")
def happy_chord_file(chord_recordings):
    folder, _ = chord_recordings
    return folder / "happy" / "happy0.wav"


def _chord(seconds: float, sr: int = TINY_SR, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (262.0, 330.0, 392.0))
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _probs(windows) -> np.ndarray:
    return np.array([[w.probabilities[k] for k in sorted(w.probabilities)] for w in windows])


def test_the_runtime_imports_neither_torch_nor_tensorflow(squeezenet_export, happy_chord_file):
    out, _ = squeezenet_export
    code = f"""
import sys
from musemo.edge import Classifier
for name in {MODEL_FILES!r}:
    r = Classifier({str(out)!r} + "/" + name).predict_file({str(happy_chord_file)!r})
    assert r.label in ("happy", "sad"), r
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "jax"))
print(heavy)
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


# `make test` installs the abandoned tflite_runtime wheel (it needs numpy < 2) apart
# from the venv, so that the runtime's fallback to it runs for real.
TFLITE_RUNTIME_DIR = Path(sys.prefix) / "tflite-runtime-numpy1"


@pytest.mark.skipif(
    not (TFLITE_RUNTIME_DIR / "tflite_runtime").is_dir(),
    reason=f"tflite_runtime is not installed in {TFLITE_RUNTIME_DIR} (make test installs it)",
)
@pytest.mark.parametrize("name", ["squeezenet1_0.tflite", "squeezenet1_0.int8.tflite"])
def test_without_ai_edge_litert_tflite_runtime_gives_the_same_answers(
    squeezenet_export, happy_chord_file, name
):
    out, _ = squeezenet_export
    model = out / name
    code = f"""
import json, sys
sys.modules["ai_edge_litert"] = None  # as on a machine that has only tflite_runtime
import numpy
from musemo.edge import Classifier
clf = Classifier({str(model)!r})
r = clf.predict_file({str(happy_chord_file)!r})
print(json.dumps([type(clf.backend.interpreter).__module__, numpy.__version__,
                  [[w.probabilities[k] for k in sorted(w.probabilities)] for w in r.windows]]))
"""
    env = {**os.environ, "PYTHONPATH": str(TFLITE_RUNTIME_DIR)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    module, numpy_version, probs = json.loads(done.stdout.strip().splitlines()[-1])
    assert module == "tflite_runtime.interpreter" and numpy_version.startswith("1.")
    want = _probs(Classifier(model).predict_file(happy_chord_file).windows)
    np.testing.assert_allclose(np.array(probs), want, atol=0.02)


@pytest.mark.parametrize("name", MODEL_FILES)
def test_windows_match_the_training_features(squeezenet_export, chord_recordings, name):
    """The runtime's windows are the training pipeline's sub-clips, scored by the file."""
    from musemo.data import load_dataset

    out, _ = squeezenet_export
    folder, cache = chord_recordings
    clf = Classifier(out / name)
    data, _ = load_dataset(folder, clf.spec, cache=cache, progress=False)
    rec = next(i for i, r in enumerate(data.recordings) if r.path.name == "sad3.wav")
    x = (data.features[rec] - clf.spec.input_mean) / clf.spec.input_std
    logits = open_model(out / name).logits(x[:, None].astype(np.float32))
    want = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = clf.predict_file(folder / "sad" / "sad3.wav")
    assert [w.start for w in result.windows] == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(_probs(result.windows), want, atol=1e-5)
    assert result.label == clf.labels[int(want.mean(0).argmax())]
    assert result.duration == pytest.approx(4.2) and not result.padded


def test_a_window_does_not_depend_on_its_neighbours(int8_tflite):
    """A quiet window beside a loud one scores as it does alone (its own dB floor), so a
    file, a stream and the training cache all see the same features."""
    clf = Classifier(int8_tflite)
    quiet, loud = 1e-3 * _chord(1.0, seed=1), _chord(1.0, seed=2)
    together = clf.classify_windows(np.stack([quiet, loud]))
    alone = clf.classify_windows(quiet[None]) + clf.classify_windows(loud[None])
    np.testing.assert_array_equal(_probs(together), _probs(alone))


def test_stereo_other_rates_and_float64_give_the_same_answer(int8_tflite):
    clf = Classifier(int8_tflite)
    y = _chord(3.0)
    base = clf.predict_array(y, TINY_SR)
    stereo = clf.predict_array(np.stack([y, y]), TINY_SR)  # (channels, n), librosa's layout
    np.testing.assert_array_equal(_probs(stereo.windows), _probs(base.windows))
    as64 = clf.predict_array(y.astype(np.float64), TINY_SR)
    np.testing.assert_array_equal(_probs(as64.windows), _probs(base.windows))
    import soxr

    at48k = clf.predict_array(soxr.resample(y, TINY_SR, 48000), 48000)
    assert [w.label for w in at48k.windows] == [w.label for w in base.windows]
    np.testing.assert_allclose(_probs(at48k.windows), _probs(base.windows), atol=0.05)


def test_short_audio_is_padded_with_a_warning_or_refused(int8_tflite):
    y = _chord(0.6)
    with pytest.warns(UserWarning, match="lasts 0.60 s, shorter than the model's 1 s window"):
        result = Classifier(int8_tflite).predict_array(y, TINY_SR, source="short.wav")
    assert result.padded and len(result.windows) == 1
    with pytest.raises(AudioError, match="short.wav lasts 0.60 s"):
        Classifier(int8_tflite, pad_short=False).predict_array(y, TINY_SR, source="short.wav")


def test_silence_is_named_and_silent_windows_are_skipped(int8_tflite):
    clf = Classifier(int8_tflite)
    with pytest.raises(AudioError, match="quiet.wav is silent"):
        clf.predict_array(np.zeros(3 * TINY_SR, np.float32), TINY_SR, source="quiet.wav")
    y = _chord(3.0)
    y[TINY_SR : 2 * TINY_SR] = 0.0
    result = clf.predict_array(y, TINY_SR)
    assert [w.silent for w in result.windows] == [False, True, False]
    heard = _probs([result.windows[0], result.windows[2]]).mean(0)
    assert result.probabilities == pytest.approx(dict(zip(sorted(clf.labels), heard)))


def test_uncertain_recordings_and_window_shares(int8_tflite):
    y = _chord(3.0)
    y[TINY_SR : 2 * TINY_SR] = 0.0  # a silent window: left out of the shares
    result = Classifier(int8_tflite).predict_array(y, TINY_SR)
    heard = [w for w in result.windows if not w.silent]
    assert len(heard) == 2 and sum(result.window_shares.values()) == pytest.approx(1.0)
    for label, share in result.window_shares.items():
        assert share == sum(w.label == label for w in heard) / 2
    top, runner_up = sorted(result.probabilities.values(), reverse=True)
    gap = top - runner_up
    assert Classifier(int8_tflite, uncertain_margin=gap + 1e-3).predict_array(y, TINY_SR).uncertain
    if gap > 1e-3:
        sure = Classifier(int8_tflite, uncertain_margin=gap - 1e-3).predict_array(y, TINY_SR)
        assert not sure.uncertain and sure.label == result.label
    assert not Classifier(int8_tflite, uncertain_margin=0).predict_array(y, TINY_SR).uncertain
    for bad in (-0.1, 1.5, float("nan"), "0.2"):
        with pytest.raises(ParameterError, match="uncertain_margin=.*must lie in"):
            Classifier(int8_tflite, uncertain_margin=bad)


@pytest.mark.parametrize(
    "y, error, message",
    [
        (np.array([0.0, np.nan, 0.0] * 9000, np.float32), AudioError, "first at sample 1"),
        (np.zeros(20000, np.int16), ParameterError, "float32 or float64.*int16"),
        (np.zeros((2, 2, 9000), np.float32), ParameterError, r"shape \(2, 2, 9000\)"),
        (np.zeros(0, np.float32), AudioError, "holds no samples"),
    ],
)
def test_bad_arrays_are_named(int8_tflite, y, error, message):
    with pytest.raises(error, match=message):
        Classifier(int8_tflite).predict_array(y, TINY_SR)


@pytest.mark.parametrize("sr", [0, -16000, 16000.5, True])
def test_bad_sample_rates_are_named(int8_tflite, sr):
    with pytest.raises(ParameterError, match="sample rate"):
        Classifier(int8_tflite).predict_array(_chord(2.0), sr)


def test_a_stream_of_any_chunk_sizes_gives_the_file_windows(int8_tflite):
    clf = Classifier(int8_tflite)
    y = _chord(7.3)
    want = clf.predict_array(y, TINY_SR).windows
    rng = np.random.default_rng(0)
    sizes = [1, 2, 5000, 40000, 3, *rng.integers(1, 9000, 40)]
    chunks, at = [], 0
    for n in sizes:
        chunks.append(y[at : at + n])
        at += n
    chunks.append(y[at:])
    got = list(clf.stream(chunks, sr=TINY_SR))
    assert [w.start for w in got] == [w.start for w in want] == [0, 1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(_probs(got), _probs(want))  # one sub-clip per invocation
    one_chunk = list(clf.stream([y], sr=TINY_SR))
    np.testing.assert_array_equal(_probs(one_chunk), _probs(want))


@pytest.mark.parametrize(
    ("tail", "loudness", "seconds"),
    [("drop", None, 20.3), ("pad", -20.0, 20.7), ("pad", None, 0.6)],
)
def test_a_file_read_block_by_block_gives_the_whole_recordings_windows(
    int8_tflite, tmp_path, tail, loudness, seconds
):
    """Decoded, resampled and cut in blocks (44.1 kHz stereo: four blocks of 2**18
    frames), a file gives the windows of the whole recording resampled at once, its
    loudness levelled over all of it, its tail padded or dropped as the spec says."""
    import dataclasses

    from musemo import load_audio
    from musemo.features import subclips

    path = tmp_path / "song.flac"
    y = _chord(seconds, sr=44100) * np.linspace(0.2, 1.0, int(44100 * seconds))
    sf.write(path, np.stack([y, 0.5 * y], axis=1), 44100, subtype="PCM_24")
    clf = Classifier(int8_tflite)
    clf.spec = dataclasses.replace(clf.spec, clip_tail=tail, loudness_dbfs=loudness)
    with warnings.catch_warnings(record=True):
        got = clf.predict_file(path)
    whole, _ = load_audio(path, sr=clf.spec.sample_rate)
    padded = np.pad(whole, (0, max(0, clf.spec.clip_samples - len(whole))))
    want = clf.classify_windows(subclips(padded, clf.spec))
    assert got.padded == (seconds < 1) and got.duration == pytest.approx(seconds, abs=1e-4)
    assert [w.start for w in got.windows] == pytest.approx([w.start for w in want])
    assert len(want) == {20.3: 20, 20.7: 21, 0.6: 1}[seconds]
    np.testing.assert_allclose(_probs(got.windows), _probs(want), atol=1e-6)


def test_stream_hop_and_resampling(int8_tflite):
    clf = Classifier(int8_tflite, hop_seconds=0.25)
    y = _chord(3.0, sr=44100)
    got = list(clf.stream(np.array_split(y, 37), sr=44100))
    assert [w.start for w in got] == pytest.approx([0.25 * i for i in range(9)])
    whole = clf.predict_array(y, 44100).windows  # resampled at once, not in pieces
    assert len(whole) == len(got)
    np.testing.assert_allclose(_probs(got), _probs(whole), atol=0.05)


def test_a_live_run_skips_a_bad_chunk_and_goes_on(int8_tflite, caplog):
    clf = Classifier(int8_tflite)
    y = _chord(3.0)
    chunks = [y[:8000], np.full(4000, np.nan, np.float32), y[8000:], np.zeros((3, 3, 3))]
    seen = []
    counts = classify_live(clf, chunks, sr=TINY_SR, on_result=seen.append)
    assert counts == {"windows": 3, "chunks": 4, "skipped": 2}
    assert [w.start for w in seen] == [0.0, 1.0, 2.0]  # the bad chunks left no gap
    assert "skipped a chunk" in caplog.text and "NaN" in caplog.text


def test_each_thread_with_its_own_classifier_agrees(squeezenet_export):
    out, _ = squeezenet_export
    y = _chord(4.0)
    want = Classifier(out / "squeezenet1_0.int8.onnx").predict_array(y, TINY_SR)
    results = [None] * 8

    def work(i: int) -> None:
        clf = Classifier(out / MODEL_FILES[i % 4])
        results[i] = clf.predict_array(y, TINY_SR)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.label == want.label for r in results)
    same_file = [r for i, r in enumerate(results) if i % 4 == 1]
    for r in same_file:
        np.testing.assert_array_equal(_probs(r.windows), _probs(want.windows))


def test_model_files_that_are_not_musemo_models_are_refused(tmp_path, squeezenet_export):
    out, _ = squeezenet_export
    junk = np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes()
    cases = {
        "random.onnx": (junk, "not a valid ONNX model"),
        "random.tflite": (junk, "TFLite"),
        "cut.tflite": ((out / "squeezenet1_0.tflite").read_bytes()[:3000], "TFLite"),
        "cut.onnx": ((out / "squeezenet1_0.onnx").read_bytes()[:3000], "not a valid ONNX"),
        "empty.onnx": (b"", "not a valid ONNX"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ParameterError, match=message):
            Classifier(tmp_path / name)
    with pytest.raises(ParameterError, match="runs .onnx and .tflite model files, not .pt"):
        Classifier(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        Classifier(tmp_path / "missing.onnx")
    with pytest.raises(ParameterError, match="threads=0"):
        Classifier(out / "squeezenet1_0.onnx", threads=0)


def test_a_model_without_musemo_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["logmel"], ["logits"])],
        "plain",
        [helper.make_tensor_value_info("logmel", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ParameterError, match="plain.onnx carries no musemo metadata"):
        Classifier(tmp_path / "plain.onnx")


def test_infer_command(squeezenet_export, chord_recordings, tmp_path, capsys):
    out, _ = squeezenet_export
    folder, _ = chord_recordings
    model = str(out / "squeezenet1_0.int8.tflite")
    files = [str(folder / "happy" / "happy1.wav"), str(folder / "sad" / "sad1.wav")]
    assert main(["infer", model, *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(files[0] + ": ")
    assert " of 4 windows " in lines[0]
    assert lines[2].startswith("2 files: happy ") and ", uncertain " in lines[2]
    # a folder: its audio files, recursively; --uncertain 1 leaves no label standing
    assert main(["infer", model, str(folder), "--uncertain", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    n = len(list(folder.rglob("*.wav")))
    assert len(lines) == n + 1 and all(": uncertain (" in line for line in lines[:-1])
    assert lines[-1] == f"{n} files: happy 0, sad 0, uncertain {n}"
    (tmp_path / "empty").mkdir()
    assert main(["infer", model, str(tmp_path / "empty")]) == 1
    assert "empty holds no audio files (.wav, .flac" in capsys.readouterr().err
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    short = tmp_path / "short.wav"
    sf.write(short, _chord(0.5), TINY_SR)
    assert main(["infer", model, files[0], str(broken), str(short), "--json"]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["source"] for r in results] == [files[0], str(short)]
    assert results[1]["padded"] is True
    assert "cannot decode audio file" in captured.err and "padded with silence" in captured.err
    assert main(["infer", model]) == 2
    assert "give audio files or folders to classify, or --live" in capsys.readouterr().err


def test_live_without_a_usable_input_says_what_to_install(int8_tflite, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["infer", str(int8_tflite), "--live", "--seconds", "1"])
    err = capsys.readouterr().err
    # This machine has no sound card: either sounddevice/PortAudio is missing or
    # there is no input device; both are named, neither is a traceback.
    assert code == 2
    assert "musemo[live]" in err or "no usable input device" in err
