"""A quick, honest speed comparison for the demo (benchmarks/features.py is the full one)."""

from __future__ import annotations

import contextlib
import time
from typing import Callable

import numpy as np

from .features import melspectrogram
from .filters import get_window, mel_filters


def numpy_melspectrogram(
    y: np.ndarray, *, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128
):
    """The textbook numpy pipeline: pad, frame, window, rfft, |X|^2, mel matrix."""
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    power = np.abs(np.fft.rfft(frames * get_window("hann", n_fft).astype(y.dtype), axis=-1)) ** 2
    return mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels) @ power.T


def median_cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU time of ``fn()`` in milliseconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * float(np.median(times))


def wall_ms(fn: Callable[[], object], *, repeats: int, warmup: int = 5) -> dict:
    """Median and 95th percentile wall time (ms) of ``fn()`` after ``warmup`` calls."""
    return wall_ms_each({"": fn}, repeats=repeats, warmup=warmup)[""]


def wall_ms_each(
    fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 5
) -> dict[str, dict]:
    """``wall_ms`` of several functions timed in turn, one call each per round, so
    that drift of a shared machine affects all of them alike (ratios stay fair)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, t in times.items():
        t.sort()
        out[name] = {"median": float(np.median(t)), "p95": t[int(0.95 * (repeats - 1))]}
    return out


def _single_threaded_blas():
    """Limit BLAS to one thread so every row is single-threaded CPU time."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's mel product may then use more than one core
        return contextlib.nullcontext()
    return threadpool_limits(1)


def compare(y: np.ndarray, *, sr: int, repeats: int = 10) -> list[dict]:
    """Time musemo, librosa (if installed) and numpy on ``y``: ms and difference from musemo."""
    ours = melspectrogram(y=y, sr=sr)
    methods: dict[str, Callable[[], np.ndarray]] = {
        "musemo (C++)": lambda: melspectrogram(y=y, sr=sr)
    }
    try:
        import librosa

        methods[f"librosa {librosa.__version__}"] = lambda: librosa.feature.melspectrogram(
            y=y, sr=sr
        )
    except ImportError:
        pass
    methods[f"numpy {np.__version__} by hand"] = lambda: numpy_melspectrogram(y, sr=sr)
    rows = []
    with _single_threaded_blas():
        for name, fn in methods.items():
            err = float(np.abs(fn() - ours).max() / ours.max())
            rows.append(
                {"method": name, "cpu_ms": median_cpu_ms(fn, repeats), "rel_err_vs_musemo": err}
            )
    base = rows[0]["cpu_ms"]
    for row in rows:
        row["times_musemo"] = row["cpu_ms"] / base
    return rows
