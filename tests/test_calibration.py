"""Calibrated probabilities: a temperature fitted on held-out recordings, carried by the
model file and applied to every recording's result; a recording's probabilities as the
mean of its windows' or of their logits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musemo import ParameterError
from musemo.edge.metadata import ModelInfo
from musemo.features import FeatureSpec
from musemo.metrics import (
    evaluation,
    expected_calibration_error,
    fit_temperature,
    held_out_calibration,
    recording_probabilities,
    softmax,
    tempered,
)


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return np.stack([1 - p, p], axis=1), (rng.uniform(size=n) < p).astype(np.int64)


def test_tempered_is_softmax_of_divided_logits():
    probs, _ = _calibrated(50, 0)
    assert np.allclose(tempered(probs, 1.0), probs)
    logits = np.log(probs)
    scaled = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    assert np.allclose(tempered(probs, 2.5), scaled)
    assert (tempered(probs, 2.5).argmax(axis=1) == probs.argmax(axis=1)).all()


@pytest.mark.parametrize("true_t", [0.4, 1.0, 3.0])
def test_a_known_temperature_is_recovered(true_t):
    probs, y = _calibrated(20000, 1)
    # over- (t < 1) or under-confident (t > 1) copies: fitting undoes the distortion
    assert fit_temperature(tempered(probs, true_t), y) == pytest.approx(1 / true_t, rel=0.08)


def test_held_out_calibration_lowers_the_error_of_an_overconfident_model():
    folds = []
    for seed in range(5):
        probs, y = _calibrated(200, seed)
        folds.append((tempered(probs, 0.3), y))
    c = held_out_calibration(folds)
    assert c["temperature"] == pytest.approx(1 / 0.3, rel=0.15)
    assert c["ece"] > 0.15 and c["ece_calibrated"] < 0.06
    assert c["ece"] == pytest.approx(np.mean([expected_calibration_error(*f) for f in folds]))
    assert np.isnan(held_out_calibration(folds[:1])["ece_calibrated"])
    # pooled: one ECE over all 1000 recordings, lower than a fold's for a calibrated model
    pooled = np.concatenate([f[0] for f in folds]), np.concatenate([f[1] for f in folds])
    assert c["ece_pooled"] == pytest.approx(expected_calibration_error(*pooled))
    assert c["ece_pooled_calibrated"] < 0.04
    plain = held_out_calibration([_calibrated(90, seed) for seed in range(5)])
    assert plain["ece_pooled"] < plain["ece"]  # fewer rows per bin, more upward bias


def test_a_recording_from_the_mean_of_its_windows_logits():
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(3, 8)), rng.normal(size=3)
    x = rng.normal(size=(12, 8))  # 12 windows of 3 recordings, a linear 3-class head
    recording = np.repeat([7, 2, 5], 4)
    probs = softmax(x @ w.T + b)
    ids, by_mean, inverse = recording_probabilities(probs, recording)
    assert ids.tolist() == [2, 5, 7] and (ids[inverse] == recording).all()
    assert np.allclose(by_mean[0], probs[4:8].mean(axis=0))
    _, by_logits, _ = recording_probabilities(probs, recording, aggregate="logits")
    # the head on each recording's mean window: what a probe fitted on means predicts
    for k, r in enumerate(ids):
        head = softmax((x[recording == r].mean(axis=0) @ w.T + b)[None])[0]
        assert np.allclose(by_logits[k], head)
    # for two classes, the mean of the logits is more confident than the mean of the
    # probabilities (Jensen), never the other way round
    two = softmax(np.stack([np.zeros(12), x[:, 0] * 4], axis=1))
    _, m, _ = recording_probabilities(two, recording)
    _, lg, _ = recording_probabilities(two, recording, aggregate="logits")
    assert (np.abs(lg[:, 1] - 0.5) >= np.abs(m[:, 1] - 0.5) - 1e-12).all()
    ev = evaluation(two, np.zeros(12, np.int64), recording, ("a", "b"), aggregate="logits")
    assert ev["recording"]["accuracy"] == np.mean(lg.argmax(axis=1) == 0)
    with pytest.raises(ParameterError, match="aggregate='median': choose one of"):
        recording_probabilities(probs, recording, aggregate="median")


def _info(**extra) -> ModelInfo:
    spec = FeatureSpec(sample_rate=16000, n_mels=32, input_mean=-40.0, input_std=10.0)
    return ModelInfo(spec, ("happy", "sad"), "squeezenet1_0", "int8", (1, 1, *spec.clip_shape),
                     **extra)  # fmt: skip


def test_the_temperature_travels_in_the_metadata():
    assert ModelInfo.from_json(_info(temperature=1.7).to_json()).temperature == 1.7
    assert "temperature" not in json.loads(_info().to_json())  # older readers see no change
    for bad in (0, -1, "2", None):
        text = json.loads(_info().to_json())
        text["temperature"] = bad
        with pytest.raises(ParameterError, match="temperature"):
            ModelInfo.from_json(json.dumps(text), source="m.onnx")


def test_the_aggregate_travels_in_the_metadata():
    info = ModelInfo.from_json(_info(aggregate="logits").to_json())
    assert info.aggregate == "logits"
    assert "aggregate" not in json.loads(_info().to_json())  # older readers see no change
    assert ModelInfo.from_json(_info().to_json()).aggregate == "probabilities"
    text = json.loads(_info().to_json())
    text["aggregate"] = "vote"
    with pytest.raises(ParameterError, match="m.onnx: metadata aggregate 'vote'"):
        ModelInfo.from_json(json.dumps(text), source="m.onnx")


def test_an_exported_temperature_softens_every_result(
    squeezenet_checkpoint, squeezenet_export, tmp_path, capsys
):
    pytest.importorskip("onnxruntime")
    from musemo.cli import main
    from musemo.edge import Classifier

    out, _ = squeezenet_export
    argv = ["export", str(squeezenet_checkpoint), "--format", "onnx", "--out", str(tmp_path)]
    assert main([*argv, "--temperature", "3"]) == 0
    capsys.readouterr()
    hot = Classifier(tmp_path / "squeezenet1_0.onnx")
    plain = Classifier(out / "squeezenet1_0.onnx")
    assert hot.info.temperature == 3.0 and plain.info.temperature == 1.0
    sr = hot.spec.sample_rate
    y = 0.1 * np.random.default_rng(0).standard_normal(5 * sr).astype(np.float32)
    a, b = hot.predict_array(y, sr), plain.predict_array(y, sr)
    mean = np.array([[b.probabilities[k] for k in plain.labels]])
    assert [a.probabilities[k] for k in hot.labels] == pytest.approx(
        tempered(mean, 3.0)[0].tolist()
    )
    assert a.label == b.label and a.windows == b.windows  # windows stay as the network says
    assert main([*argv, "--force", "--temperature", "0"]) == 2
    assert "temperature=0.0: must be a positive number" in capsys.readouterr().err
