"""Calibrated probabilities: a temperature fitted on held-out recordings, carried by the
model file and applied to every recording's result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musemo import ParameterError
from musemo.edge.metadata import ModelInfo
from musemo.features import FeatureSpec
from musemo.metrics import (
    expected_calibration_error,
    fit_temperature,
    held_out_calibration,
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
