"""Timing helpers: median CPU and wall times, several functions timed in turn so that
a shared machine's drift affects them alike."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


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
