"""Shared fixtures: test signals and the SIMD kernel sets to run each test on."""

from __future__ import annotations

import numpy as np
import pytest
from signals import tonal_signal

import musemo
from musemo import features


@pytest.fixture(params=musemo.available_kernels())
def kernel_set(request, monkeypatch) -> str:
    """Run the test once per SIMD kernel set this CPU supports (avx512, avx2, generic)."""
    monkeypatch.setattr(features, "_KERNELS", request.param)
    features._cached_plan.cache_clear()
    yield request.param
    features._cached_plan.cache_clear()


@pytest.fixture
def one_second_tonal_44k() -> np.ndarray:
    return tonal_signal(44100, 44100)


@pytest.fixture
def noise_3001_samples() -> np.ndarray:
    return np.random.default_rng(1).standard_normal(3001).astype(np.float32)
