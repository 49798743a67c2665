"""Property tests (hypothesis) against a float64 numpy reference written from the definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from signals import assert_matches_reference, reference_power

import musemo

settings.register_profile("musemo", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("musemo")


@given(
    n=st.integers(1, 5000),
    log_n_fft=st.integers(2, 11),
    hop=st.integers(1, 700),
    center=st.booleans(),
    pad_mode=st.sampled_from(["constant", "reflect", "edge"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_stft_power_matches_the_definition(n, log_n_fft, hop, center, pad_mode, dtype, seed):
    n_fft = 1 << log_n_fft
    if not center and n < n_fft:
        n = n_fft + n % 7
    y = np.random.default_rng(seed).uniform(-1, 1, n).astype(dtype)
    ours = musemo.stft_power(y, n_fft=n_fft, hop_length=hop, center=center, pad_mode=pad_mode)
    expected_frames = 1 + n // hop if center else 1 + (n - n_fft) // hop
    assert ours.shape == (n_fft // 2 + 1, expected_frames)
    ref = reference_power(
        y.astype(np.float32), n_fft=n_fft, hop=hop, center=center, pad_mode=pad_mode
    )
    if ref.max() == 0:
        assert not ours.any()
    else:
        assert_matches_reference(ours, ref)


@given(
    y=arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e4, 1e4, width=32)),
    hop=st.integers(1, 600),
)
def test_any_finite_signal_gives_finite_non_negative_mels(y, hop):
    mel = musemo.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=hop, n_mels=40)
    assert mel.shape == (40, 1 + len(y) // hop)
    assert np.isfinite(mel).all() and (mel >= 0).all()


@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 1000))
def test_mel_power_scales_quadratically(scale, seed):
    y = np.random.default_rng(seed).standard_normal(4096).astype(np.float32)
    a = musemo.melspectrogram(y=y, sr=22050)
    b = musemo.melspectrogram(y=(y * np.float32(scale)), sr=22050)
    np.testing.assert_allclose(b, a * np.float32(scale) ** 2, rtol=1e-4, atol=1e-6 * b.max())
