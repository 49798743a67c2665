"""Fuzzing the spectrogram engine (hypothesis): lengths from 0 to millions of samples,
any hop, n_fft and mel settings, NaN and inf, non-contiguous and read-only views,
float32 and float64, from several threads at once. Every case must either match the
float64 definition or be refused with a ParameterError that names the problem.

The budget is ``MUSEMO_FUZZ_EXAMPLES`` cases per test (default 150: seconds);
``tests/native/sanitized_suite.sh`` runs thousands against the sanitized engine. With
``MUSEMO_FUZZ_REPORT=FILE`` the counts of cases run and of each outcome are written.
"""

from __future__ import annotations

import collections
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from signals import assert_matches_reference, reference_power

import musemo

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore:Empty filters detected")]

EXAMPLES = int(os.environ.get("MUSEMO_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COUNTS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def fuzz_report():
    yield
    path = os.environ.get("MUSEMO_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(dict(COUNTS), f, indent=2, sort_keys=True)


lengths = st.one_of(st.integers(0, 64), st.integers(65, 20_000), st.integers(20_001, 3_000_000))


@st.composite
def signals(draw) -> tuple[np.ndarray, bool]:
    """A signal in an awkward memory layout, and whether a sample is NaN or infinite."""
    n = draw(lengths)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    step = draw(st.sampled_from([1, 1, 2, 3]))  # > 1: a non-contiguous view
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.uniform(-1, 1, n * step).astype(dtype)
    bad = draw(st.sampled_from([None] * 7 + [np.nan, np.inf, -np.inf]))
    if bad is not None and n:
        base[draw(st.integers(0, n - 1)) * step] = bad
    y = base[::step]
    if draw(st.booleans()):
        y.setflags(write=False)
    return y, bad is not None and n > 0


def _reference_frames(n_frames: int) -> slice | np.ndarray:
    """Check every frame of short outputs; the first and last 4 of long ones."""
    return slice(None) if n_frames <= 2000 else np.r_[0:4, n_frames - 4 : n_frames]


def _bounded(n: int, n_fft: int, hop: int) -> bool:
    """At most 2e7 output values (80 MB): the fuzzer explores inputs, not swap."""
    return (1 + n // hop) * (n_fft // 2 + 1) <= 20_000_000


def _threads_agree(fn, threads: int) -> np.ndarray:
    with ThreadPoolExecutor(threads) as pool:
        outs = list(pool.map(lambda _: fn(), range(threads)))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    return outs[0]


@FUZZ
@given(
    signal=signals(),
    log_n_fft=st.integers(2, 13),
    hop=st.integers(1, 4096),
    center=st.booleans(),
    pad_mode=st.sampled_from(["constant", "reflect", "edge"]),
    threads=st.sampled_from([1, 1, 4]),
)
def test_stft_power(signal, log_n_fft, hop, center, pad_mode, threads):
    y, bad = signal
    n_fft = 1 << log_n_fft
    assume(_bounded(len(y), n_fft, hop))
    COUNTS["stft_power cases"] += 1

    def run():
        return musemo.stft_power(y, n_fft=n_fft, hop_length=hop, center=center, pad_mode=pad_mode)

    try:
        ours = _threads_agree(run, threads)
    except musemo.ParameterError as exc:
        too_short = len(y) < n_fft if not center else len(y) == 0
        assert too_short or (bad and "not finite" in str(exc)), exc
        COUNTS["stft_power refused"] += 1
        return
    assert not bad
    frames = _reference_frames(ours.shape[-1])
    ref = reference_power(
        y.astype(np.float32),
        n_fft=n_fft,
        hop=hop,
        center=center,
        pad_mode=pad_mode,
        select=frames,
    )
    if ref.max() == 0:
        assert not ours[:, frames].any()
    else:
        assert_matches_reference(ours[:, frames], ref, within_db=60)
    COUNTS["stft_power matched"] += 1


@FUZZ
@given(
    signal=signals(),
    sr=st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000]),
    log_n_fft=st.integers(6, 12),
    hop=st.integers(16, 2048),
    n_mels=st.integers(1, 256),
    fmin_frac=st.floats(0, 0.4),
    fmax_frac=st.floats(0.5, 1.0),
    htk=st.booleans(),
    norm=st.sampled_from(["slaney", None]),
    threads=st.sampled_from([1, 1, 4]),
)
def test_melspectrogram(
    signal, sr, log_n_fft, hop, n_mels, fmin_frac, fmax_frac, htk, norm, threads
):
    import librosa

    y, bad = signal
    n_fft = 1 << log_n_fft
    assume(_bounded(len(y), n_fft, hop))
    mel = dict(
        sr=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=fmin_frac * sr / 2,
        fmax=fmax_frac * sr / 2,
        htk=htk,
        norm=norm,
    )
    COUNTS["melspectrogram cases"] += 1

    def run():
        return musemo.melspectrogram(y=y, hop_length=hop, **mel)

    try:
        ours = _threads_agree(run, threads)
    except musemo.ParameterError as exc:
        assert bad or len(y) == 0, exc
        COUNTS["melspectrogram refused"] += 1
        return
    assert not bad
    frames = _reference_frames(ours.shape[-1])
    power = reference_power(
        y.astype(np.float32), n_fft=n_fft, hop=hop, center=True, pad_mode="constant", select=frames
    )
    basis = librosa.filters.mel(**mel, dtype=np.float64)
    ref = basis @ power
    # A mel band sums its bins in float32: rounding grows with the square root of
    # their number (one band over 2048 bins: about 1e-6 of the peak).
    widest = int((basis > 0).sum(axis=1).max())
    atol = 1e-6 * max(1.0, np.sqrt(widest) / 16)
    if ref.max() == 0:
        assert not ours[:, frames].any()
    else:
        assert_matches_reference(ours[:, frames], ref, within_db=60, atol=atol)
    COUNTS["melspectrogram matched"] += 1
