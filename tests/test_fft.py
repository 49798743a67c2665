"""The FFT alone, through a rectangular window and one frame, against numpy.fft.rfft."""

from __future__ import annotations

import numpy as np
import pytest

import musemo

SIZES = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]


@pytest.mark.parametrize("n_fft", SIZES)
def test_power_spectrum_matches_numpy_rfft(kernel_set, n_fft):
    rng = np.random.default_rng(n_fft)
    x = rng.standard_normal(n_fft).astype(np.float32)
    ours = musemo.stft_power(x, n_fft=n_fft, hop_length=n_fft, window="boxcar", center=False)
    ref = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    assert ours.shape == (n_fft // 2 + 1, 1)
    err = np.abs(ours[:, 0] - ref)
    assert err.max() <= 1e-6 * ref.max()
    assert np.median(err / ref) < 1e-5


@pytest.mark.parametrize("n_fft", [16, 1024, 2048])
def test_magnitude_of_a_pure_tone(kernel_set, n_fft):
    k = n_fft // 8
    x = np.cos(2 * np.pi * k * np.arange(n_fft) / n_fft).astype(np.float32)
    mag = musemo.stft_power(
        x, n_fft=n_fft, hop_length=n_fft, window="boxcar", center=False, power=1.0
    )
    assert mag[k, 0] == pytest.approx(n_fft / 2, rel=1e-5)
    others = np.delete(mag[:, 0], k)
    assert others.max() < 1e-3 * n_fft


def test_every_frame_of_a_batch_is_transformed_alike(kernel_set):
    """Frames land in SIMD lanes; the same frame must give the same spectrum in every lane."""
    frame = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    y = np.tile(frame, 37)
    P = musemo.stft_power(y, n_fft=512, hop_length=512, window="boxcar", center=False)
    assert P.shape == (257, 37)
    np.testing.assert_allclose(P, np.repeat(P[:, :1], 37, axis=1), rtol=0, atol=1e-6 * P.max())
    ref = np.abs(np.fft.rfft(frame.astype(np.float64))) ** 2
    np.testing.assert_allclose(P[:, 0], ref, rtol=0, atol=1e-6 * ref.max())
