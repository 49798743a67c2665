"""Test signals and the parity criterion, shared by the test modules."""

from __future__ import annotations

import numpy as np


def tonal_signal(n: int, sr: int, *, seed: int = 0) -> np.ndarray:
    """Tones, a chirp and quiet noise: a wide dynamic range, like music."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    y = 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t + 1.0)
    y += 0.1 * np.sin(2 * np.pi * (100.0 + 0.25 * sr * t / max(t[-1], 1e-9)) * t)
    y += 1e-3 * rng.standard_normal(n)
    return y.astype(np.float32)


def assert_matches_reference(ours: np.ndarray, ref: np.ndarray) -> None:
    """The parity criterion against a float64 reference: |diff| <= 1e-6 max(ref)
    everywhere, and relative error <= 1e-3 within 80 dB of the peak."""
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    peak = float(ref.max())
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff.max() <= 1e-6 * peak, f"max |diff| {diff.max():.3g} > 1e-6 * peak {peak:.3g}"
    near = ref >= peak * 1e-8
    rel = diff[near] / ref[near]
    assert rel.max() <= 1e-3, f"relative error {rel.max():.3g} within 80 dB of the peak"
