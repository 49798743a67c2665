"""Test signals and the parity criterion, shared by the test modules."""

from __future__ import annotations

import numpy as np
import scipy.signal


def tonal_signal(n: int, sr: int, *, seed: int = 0) -> np.ndarray:
    """Tones, a chirp and quiet noise: a wide dynamic range, like music."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    y = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t + 1.0)
    y += 0.1 * np.sin(2 * np.pi * (100.0 + 0.25 * sr * t / max(t[-1], 1e-9)) * t)
    y += 1e-3 * rng.standard_normal(n)
    return y.astype(np.float32)


def assert_matches_reference(
    ours: np.ndarray, ref: np.ndarray, *, within_db: float = 80, atol: float = 1e-6
) -> None:
    """The parity criterion against a float64 reference: |diff| <= ``atol`` max(ref)
    everywhere, and relative error <= 1e-3 within ``within_db`` dB of the peak.

    Float32 rounding alone (about 6e-8 of the peak amplitude) allows ~1e-3 relative
    error at -80 dB, so the fuzz tests, which score millions of random-noise bins,
    hold the relative bound within 60 dB."""
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    peak = float(ref.max())
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff.max() <= atol * peak, f"max |diff| {diff.max():.3g} > {atol:.3g} * peak {peak:.3g}"
    near = ref >= peak * 10 ** (-within_db / 10)
    rel = diff[near] / ref[near]
    assert rel.max() <= 1e-3, f"relative error {rel.max():.3g} within {within_db} dB of the peak"


def reference_power(
    y: np.ndarray, *, n_fft: int, hop: int, center: bool, pad_mode: str, select=slice(None)
) -> np.ndarray:
    """|rfft(window * frame)|^2 with numpy in float64: the definition, not an implementation.
    ``select`` picks frames (an index or slice) before any is computed."""
    y = y.astype(np.float64)
    if center:
        y = np.pad(y, n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop][select]
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    return (np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2).T
