"""A fine-tuned musicnn through ``musemo-export`` (ONNX and TFLite, fp32 and int8) and
the torch-free edge runtime, on files and streams, with musicnn's own features."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures_audio import TINY_SR, write_register_dataset

from musemo import AudioError
from musemo.data import holdout_split, load_dataset
from musemo.edge import Classifier
from musemo.export import export_checkpoint
from musemo.features import MelExtractor, musicnn_spec
from musemo.training import TrainConfig, fit
from musemo.training.checkpoints import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def musicnn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("musicnn_run")
    write_register_dataset(root / "audio", per_label=12, seconds=6.1)
    data, _ = load_dataset(root / "audio", musicnn_spec(), cache=root / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25)
    config = TrainConfig(
        model="musicnn",
        weights="pretrained",
        epochs=1,
        batch_size=8,
        frozen=("input_bn", "frontend"),
    )
    fit(data, train, val, musicnn_spec(), config, root / "run", progress=False)
    return root


@pytest.fixture(scope="module")
def probe_run(musicnn_run):
    """A probe on the pooled features (``probe=True``, ``head="pooled"``) of the same set."""
    data, _ = load_dataset(
        musicnn_run / "audio", musicnn_spec(), cache=musicnn_run / "cache", progress=False
    )
    train, val = holdout_split(data, val_fraction=0.25)
    config = TrainConfig(
        model="musicnn", weights="pretrained", head="pooled", probe=True, aggregate="logits"
    )
    fit(data, train, val, musicnn_spec(), config, musicnn_run / "probe", progress=False)
    return musicnn_run / "probe"


def _tone(seconds: float, sr: int = TINY_SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)


def test_onnx_fp32_gives_the_checkpoints_outputs_on_files_and_streams(musicnn_run, tmp_path):
    export_checkpoint(musicnn_run / "run" / "best.pt", formats=["onnx"], out=tmp_path)
    clf = Classifier(tmp_path / "musicnn.onnx")
    assert clf.spec.log1p_scale == 1e4 and clf.spec.clip_shape == (96, 187)
    y = _tone(7.0)
    result = clf.predict_array(y, TINY_SR)
    assert len(result.windows) == 2  # two 2.976 s windows in 7 s
    # the checkpoint on the same windows, with the same features
    model = model_from_checkpoint(load_checkpoint(musicnn_run / "run" / "best.pt"))
    n = musicnn_spec().clip_samples
    feats = MelExtractor(musicnn_spec()).compute_batch([y[:n], y[n : 2 * n]])
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(np.stack(feats))[:, None]), 1).numpy()
    got = np.array([[w.probabilities[k] for k in clf.labels] for w in result.windows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    streamed = list(clf.stream(np.array_split(y, 13), sr=TINY_SR))
    np.testing.assert_allclose(
        [[w.probabilities[k] for k in clf.labels] for w in streamed], got, atol=1e-6
    )


@pytest.mark.slow
def test_int8_files_agree_and_are_small(musicnn_run, tmp_path):
    report = export_checkpoint(
        musicnn_run / "run" / "best.pt",
        int8=True,
        calib=musicnn_run / "audio",
        calib_size=32,
        out=tmp_path,
        cache=musicnn_run / "cache",
    )
    assert json.loads((tmp_path / "musicnn.export.json").read_text())["int8_vs_fp32"]
    # Only the timbral convolutions compute in int8 (KEEP_FLOAT), and of the pretrained
    # network's only the 37 live filters (inference_form): ONNX stores the float layers'
    # weights as int8 too, LiteRT keeps them in float, so its int8 file is no smaller.
    assert report["int8_vs_fp32"]["onnx"]["int8_mb"] <= 1.0
    assert report["int8_vs_fp32"]["onnx"]["size_ratio"] > 3
    assert report["int8_vs_fp32"]["tflite"]["int8_mb"] <= 3.0
    for fmt in ("onnx", "tflite"):
        int8 = report["int8_vs_fp32"][fmt]
        assert int8["agreement_with_torch"] >= 0.99, fmt
        assert Classifier(tmp_path / f"musicnn.int8.{fmt}").predict_array(_tone(3.5), TINY_SR)


@pytest.mark.slow
def test_a_probe_on_the_pooled_features_exports_and_agrees_in_int8(probe_run, tmp_path):
    report = export_checkpoint(
        probe_run / "last.pt", int8=True, calib=probe_run.parent / "audio", calib_size=32,
        out=tmp_path, cache=probe_run.parent / "cache",
    )  # fmt: skip
    model = model_from_checkpoint(load_checkpoint(probe_run / "last.pt"))
    assert model.head.in_features == 1706 and float(model.head_norm.scale.min()) > 0
    y = _tone(3.5)
    feats = MelExtractor(musicnn_spec()).compute(y[: musicnn_spec().clip_samples], sr=TINY_SR)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(feats)[None, None]), 1).numpy()[0]
    for fmt in ("onnx", "tflite"):
        got = Classifier(tmp_path / f"musicnn.{fmt}").predict_array(y, TINY_SR).windows[0]
        np.testing.assert_allclose([got.probabilities[k] for k in ("happy", "sad")], expected,
                                   atol=1e-4)  # fmt: skip
        int8 = report["int8_vs_fp32"][fmt]
        assert int8["agreement_with_torch"] >= 0.99, fmt
    assert report["int8_vs_fp32"]["onnx"]["int8_mb"] <= 1.0
    # the file aggregates a recording's windows as the probe was trained: their logits
    clf = Classifier(tmp_path / "musicnn.int8.onnx")
    result = clf.predict_array(_tone(9.5), TINY_SR)
    assert clf.info.aggregate == "logits" and len(result.windows) == 3
    logs = np.log([[w.probabilities[k] for k in clf.labels] for w in result.windows])
    want = np.exp(logs.mean(axis=0)) / np.exp(logs.mean(axis=0)).sum()
    assert [result.probabilities[k] for k in clf.labels] == pytest.approx(want.tolist())


def test_audio_shorter_than_a_patch_is_padded_with_a_warning_or_refused(musicnn_run, tmp_path):
    export_checkpoint(musicnn_run / "run" / "best.pt", formats=["onnx"], out=tmp_path)
    with pytest.warns(UserWarning, match="shorter than the model's"):
        result = Classifier(tmp_path / "musicnn.onnx").predict_array(_tone(1.5), TINY_SR)
    assert result.padded and len(result.windows) == 1
    with pytest.raises(AudioError, match="shorter than the model.s"):
        Classifier(tmp_path / "musicnn.onnx", pad_short=False).predict_array(_tone(1.5), TINY_SR)
