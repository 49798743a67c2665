"""FeatureSpec (frozen, JSON round trip, strict) and MelExtractor."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from signals import tonal_signal

import musemo
from musemo import FeatureSpec, MelExtractor, ParameterError


def test_defaults_follow_the_paper():
    spec = FeatureSpec()
    assert (spec.sample_rate, spec.n_fft, spec.hop_length, spec.n_mels) == (44100, 2048, 512, 128)
    assert spec.n_frames(5 * 44100) == 431  # 128 x 431 for a 5 s sub-clip


def test_spec_is_frozen_and_hashable():
    spec = FeatureSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n_mels = 64
    assert hash(spec) == hash(FeatureSpec())


@pytest.mark.parametrize(
    "spec",
    [
        FeatureSpec(),
        FeatureSpec(sample_rate=22050, n_mels=64, fmax=8000.0, htk=True, norm=None, db_ref="max"),
        FeatureSpec(db=False, window="hamming", pad_mode="reflect", power=1.0, db_top=None),
    ],
)
def test_json_round_trip(spec):
    text = spec.to_json()
    assert json.loads(text)["format"] == "musemo.feature_spec/1"
    assert FeatureSpec.from_json(text) == spec


def test_from_json_refuses_unknown_fields_and_formats():
    data = FeatureSpec().to_dict()
    with pytest.raises(ParameterError, match="unknown feature spec fields: colour"):
        FeatureSpec.from_dict({**data, "colour": "blue"})
    with pytest.raises(ParameterError, match="unknown feature spec format"):
        FeatureSpec.from_dict({**data, "format": "other/9"})
    with pytest.raises(ParameterError, match="not valid JSON"):
        FeatureSpec.from_json("{")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "sample_rate=0"),
        ({"sample_rate": 44100.0}, "sample_rate=44100.0"),
        ({"n_fft": 1000}, "n_fft=1000"),
        ({"fmax": 30000.0}, "Nyquist"),
        ({"window": ("kaiser", 4.0)}, "names its window"),
        ({"db_ref": "min"}, "db_ref='min'"),
        ({"db_top": -1.0}, "db_top=-1.0"),
        ({"db_amin": 0.0}, "db_amin=0.0"),
    ],
)
def test_invalid_specs_are_refused(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        FeatureSpec(**kwargs)


def test_extractor_equals_the_functions(one_second_tonal_44k):
    """Same values as melspectrogram + power_to_db (the engine's logarithm differs by < 1e-4 dB)."""
    y = one_second_tonal_44k
    for spec in [
        FeatureSpec(),
        FeatureSpec(db_ref="max", db_top=60.0),
        FeatureSpec(db_ref=1e-3, db_amin=1e-6, db_top=None),
        FeatureSpec(db=False, n_mels=64),
    ]:
        mel = musemo.melspectrogram(y=y, sr=44100, n_mels=spec.n_mels)
        if spec.db:
            ref = np.max if spec.db_ref == "max" else spec.db_ref
            mel = musemo.power_to_db(mel, ref=ref, amin=spec.db_amin, top_db=spec.db_top)
        out = MelExtractor(spec).compute(y)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, mel, rtol=0, atol=1e-4 if spec.db else 0)


def test_extractor_shapes_and_multichannel():
    ex = MelExtractor(FeatureSpec(sample_rate=22050))
    y = np.stack([tonal_signal(22050, 22050, seed=i) for i in range(2)])
    out = ex.compute(y)
    assert out.shape == (2, 128, 1 + 22050 // 512) and out.dtype == np.float32


def test_extractor_refuses_the_wrong_sample_rate():
    ex = MelExtractor()
    with pytest.raises(ParameterError, match="sr=22050 Hz given to an extractor for 44100 Hz"):
        ex.compute(np.zeros(1000, np.float32), sr=22050)
    with pytest.raises(ParameterError, match="resample first"):
        ex.compute_batch([np.zeros(1000, np.float32)], sr=48000)


def test_compute_batch_validates_each_signal():
    ex = MelExtractor()
    good = np.zeros(3000, np.float32)
    bad = good.copy()
    bad[10] = np.inf
    with pytest.raises(ParameterError, match=r"ys\[1\] is not finite everywhere: sample 10 is inf"):
        ex.compute_batch([good, bad])
    with pytest.raises(ParameterError, match=r"ys\[0\] must be one-dimensional"):
        ex.compute_batch([np.zeros((2, 3000), np.float32)])
    with pytest.raises(ParameterError, match=r"ys\[0\] must be floating-point"):
        ex.compute_batch([np.zeros(3000, np.int16)])
    uncentred = MelExtractor(FeatureSpec(center=False))
    with pytest.raises(ParameterError, match=r"ys\[0\] has 100 samples, fewer than n_fft=2048"):
        uncentred.compute_batch([np.zeros(100, np.float32)])


def test_extractor_reports_its_kernels():
    assert MelExtractor().kernels in musemo.available_kernels()
    assert "MelExtractor(FeatureSpec(" in repr(MelExtractor())
