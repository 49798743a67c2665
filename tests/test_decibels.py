"""The engine's fused logarithm against numpy's log10, over the whole float32 range."""

from __future__ import annotations

import numpy as np
import pytest

import musemo
from musemo import FeatureSpec, MelExtractor


@pytest.mark.parametrize("scale", [1e-15, 1e-6, 1.0, 1e6, 1e15])
@pytest.mark.parametrize("db_ref", [1.0, "max", 1e-20])
def test_fused_decibels_match_numpy(kernel_set, scale, db_ref, one_second_tonal_44k):
    y = (one_second_tonal_44k * np.float32(scale)).astype(np.float32)
    spec = FeatureSpec(db_ref=db_ref, db_amin=1e-35, db_top=None, n_mels=64)
    ours = MelExtractor(spec).compute(y)
    power = MelExtractor(FeatureSpec(db=False, n_mels=64)).compute(y).astype(np.float64)
    ref = power.max() if db_ref == "max" else db_ref
    expected = 10 * np.log10(np.maximum(1e-35, power)) - 10 * np.log10(max(1e-35, ref))
    # A few float32 ulps of the dB value before the reference is subtracted
    # (ulp(300 dB) ~ 3e-5: with ref="max" the subtraction keeps that error).
    unreferenced = np.abs(10 * np.log10(np.maximum(1e-35, power))).max()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 + 4e-7 * unreferenced)


def test_amin_floor_and_top_db(kernel_set):
    y = np.zeros(22050, np.float32)
    y[:1000] = np.sin(np.arange(1000, dtype=np.float32))
    out = MelExtractor(FeatureSpec(db_amin=1e-10, db_top=None)).compute(y)
    assert out.min() == pytest.approx(-100.0, abs=1e-4)  # silence floored at amin
    out = MelExtractor(FeatureSpec(db_top=50.0)).compute(y)
    assert out.max() - out.min() == pytest.approx(50.0, abs=1e-4)


def test_multichannel_max_reference_spans_all_channels():
    """Like power_to_db(ref=np.max) on the whole array: one maximum for all channels."""
    rng = np.random.default_rng(0)
    y = np.stack([rng.standard_normal(8000), 0.01 * rng.standard_normal(8000)]).astype(np.float32)
    out = MelExtractor(FeatureSpec(db_ref="max", db_top=None)).compute(y)
    assert out[0].max() == pytest.approx(0.0, abs=1e-5)
    assert out[1].max() < -30
    power = musemo.melspectrogram(y=y, sr=44100)
    np.testing.assert_allclose(out, musemo.power_to_db(power, ref=np.max, top_db=None), atol=1e-4)


@pytest.mark.parametrize("c", [1.0, 1e4, 1e12])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e3])
def test_fused_log1p_matches_numpy(kernel_set, c, scale, one_second_tonal_44k):
    """log10(1 + c x) in the engine against numpy in float64 on the same power."""
    y = (one_second_tonal_44k * np.float32(scale)).astype(np.float32)
    ours = MelExtractor(FeatureSpec(db=False, log1p_scale=c, n_mels=64)).compute(y)
    power = MelExtractor(FeatureSpec(db=False, n_mels=64)).compute(y).astype(np.float64)
    expected = np.log10(1 + c * power)
    # float32 rounding of 1 + c x (relative 6e-8) plus a few ulps of the logarithm
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-7 + 3e-7 * expected.max())
    assert ours.min() >= 0


def test_log1p_is_a_spec_setting_of_its_own():
    with pytest.raises(musemo.ParameterError, match="db=False"):
        FeatureSpec(log1p_scale=1e4)
    for bad in (0.0, -1.0, float("nan"), "1e4", True):
        with pytest.raises(musemo.ParameterError, match="log1p_scale"):
            FeatureSpec(db=False, log1p_scale=bad)
    spec = FeatureSpec(db=False, log1p_scale=1e4)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    # specs without the setting keep the key their caches were written under
    assert spec.feature_key() != FeatureSpec(db=False).feature_key()
    assert "log1p_scale" not in FeatureSpec.from_dict(
        {k: v for k, v in FeatureSpec().to_dict().items() if k != "log1p_scale"}
    ).to_json().replace('"log1p_scale": null', "")
