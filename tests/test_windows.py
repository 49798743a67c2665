"""Windows against scipy.signal.get_window (what librosa calls)."""

from __future__ import annotations

import numpy as np
import pytest

import musemo
from musemo.features.filters import WINDOW_NAMES

signal = pytest.importorskip("scipy.signal")

NAMES = [n for n in WINDOW_NAMES if n != "kaiser"]


@pytest.mark.parametrize("length", [1, 2, 7, 256, 1000, 2048])
@pytest.mark.parametrize("name", NAMES)
def test_named_windows_match_scipy(name, length):
    np.testing.assert_allclose(
        musemo.get_window(name, length), signal.get_window(name, length, fftbins=True), atol=1e-12
    )


@pytest.mark.parametrize("beta", [0.0, 5.0, 14.0])
def test_kaiser_matches_scipy(beta):
    np.testing.assert_allclose(
        musemo.get_window(("kaiser", beta), 512),
        signal.get_window(("kaiser", beta), 512),
        atol=1e-12,
    )


@pytest.mark.parametrize("bad", ["hannn", "kaiser", ("gaussian", 3.0), 3, ("kaiser",)])
def test_unknown_windows_are_refused_by_name(bad):
    with pytest.raises(musemo.ParameterError, match="window"):
        musemo.get_window(bad, 256)


def test_window_array_must_match_win_length():
    with pytest.raises(musemo.ParameterError, match=r"window array has shape \(100,\)"):
        musemo.stft_power(np.zeros(4096, np.float32), window=np.ones(100))
