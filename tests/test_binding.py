"""The pybind11 layer itself: arrays are never converted behind the caller's back, and a
plan cannot be copied (its tables point into its own storage)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from musemo import _native
from musemo.features.spectral import make_plan


@pytest.fixture
def plan():
    return make_plan(
        n_fft=512, hop_length=128, win_length=512, window="hann", center=True,
        pad_mode="constant", power=2.0, mel_key=(16000, 512, 40, 0.0, None, False, "slaney"),
    )  # fmt: skip


def _out(plan, n: int, **kw) -> np.ndarray:
    return np.zeros((1, plan.n_rows, plan.n_frames(n)), **kw)


def test_a_right_output_is_filled(plan):
    y = np.random.default_rng(0).standard_normal((1, 4000)).astype(np.float32)
    out = _out(plan, 4000, dtype=np.float32)
    assert plan.compute(y, out, 1) is None
    assert out.any()


@pytest.mark.parametrize(
    "make",
    [
        lambda plan: _out(plan, 4000, dtype=np.float64),
        lambda plan: np.asfortranarray(_out(plan, 4000, dtype=np.float32)),
        lambda plan: _out(plan, 4000, dtype=np.float32)[..., ::-1],
    ],
    ids=["float64", "fortran-order", "negative-strides"],
)
def test_an_output_that_would_need_converting_is_refused(plan, make):
    y = np.zeros((1, 4000), np.float32)
    out = make(plan)
    with pytest.raises(TypeError):
        plan.compute(y, out, 1)
    assert not out.any()  # untouched, not a copy filled and thrown away
    with pytest.raises(TypeError):
        plan.compute_many([y[0]], [out[0]], 1)


def test_inputs_are_not_converted_either(plan):
    out = _out(plan, 4000, dtype=np.float32)
    with pytest.raises(TypeError):
        plan.compute(np.zeros((1, 4000), np.float64), out, 1)
    with pytest.raises(TypeError):
        _native.SpectrogramPlan(
            n_fft=512, hop_length=128, center=True, pad_mode="constant",
            window=np.hanning(512), power=2.0, mel=np.zeros((0, 257), np.float32), n_mels=0,
        )  # fmt: skip


def test_a_read_only_output_is_refused(plan):
    out = _out(plan, 4000, dtype=np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        plan.compute(np.zeros((1, 4000), np.float32), out, 1)


def test_a_plan_cannot_be_copied(plan):
    with pytest.raises(TypeError):
        copy.copy(plan)
    with pytest.raises(TypeError):
        copy.deepcopy(plan)
