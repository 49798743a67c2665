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


@pytest.fixture(scope="module")
def chord_dataset(tmp_path_factory):
    """(folder, cache, data, train rows, validation rows) of 16 major/minor chord
    recordings cut into 1 s sub-clips, split 75/25 by recording."""
    from fixtures_audio import tiny_spec, write_chord_dataset

    from musemo.data import holdout_split, load_dataset

    root = tmp_path_factory.mktemp("chords")
    folder = write_chord_dataset(root / "chords", per_label=8)
    data, _ = load_dataset(folder, tiny_spec(), cache=root / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25, seed=0)
    return folder, root / "cache", data, train, val
