"""CPU threads for training on a machine that other programs share.

torch's OpenMP threads meet at a barrier after every parallel operation. When another
program keeps one of their cores busy, the thread on that core runs in the time slices
the scheduler leaves it and the others wait for it at each barrier: a network trained
with two threads on two cores, one of them busy, runs slower than with one thread.
``ThreadGovernor`` measures how many of this process's cores other programs use (Linux:
``/proc/stat`` less this process's own CPU time) and keeps torch at the cores left, so
training slows in proportion to what the others take and speeds up again when they stop.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from .._checks import check_threads

PROC_STAT = Path("/proc/stat")
# /proc/stat's columns: user nice system idle iowait irq softirq steal (guest is in user)
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_for(cores: int, others: float) -> int:
    """Threads that fit in ``cores`` when other programs keep ``others`` of them busy:
    the cores left, rounded (half a core busy leaves both threads: one thread loses
    more than sharing costs), at least one."""
    return max(1, min(cores, math.floor(cores - others + 0.5)))


class CpuShare:
    """How busy other programs keep this process's cores between two readings.

    ``None`` from ``others()`` where the system has no ``/proc/stat``.
    """

    def __init__(self, stat: Path = PROC_STAT) -> None:
        self._stat = stat
        self._cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)} if stat.exists() else set()
        self._hz = os.sysconf("SC_CLK_TCK") if self._cpus else 100
        self._last = self._reading()

    def _reading(self) -> tuple[float, float, float] | None:
        if not self._cpus:
            return None
        busy = 0
        for line in self._stat.read_text().splitlines():
            name, _, rest = line.partition(" ")
            if name in self._cpus:
                columns = rest.split()
                busy += sum(int(columns[i]) for i in _BUSY_COLUMNS if i < len(columns))
        return time.monotonic(), busy / self._hz, time.process_time()

    def others(self) -> float | None:
        """Cores kept busy by other processes since the last call, on average."""
        now = self._reading()
        if now is None or self._last is None:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        if t1 - t0 <= 0:
            return 0.0
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


class ThreadGovernor:
    """Keeps torch's CPU threads at the cores other programs leave free.

    Call ``update()`` between training steps: at most every ``interval`` seconds it
    reads how busy the others keep this process's cores and, once two readings in a row
    agree on another count, sets it (``torch.set_num_threads``). ``close()`` restores
    the count torch had.

    Parameters
    ----------
    threads : int, optional
        A fixed count instead (never changed); ``None`` adapts, up to the usable cores.
    interval : float
        Seconds between readings.
    """

    def __init__(self, threads: int | None = None, *, interval: float = 2.0) -> None:
        import torch

        if threads is not None:
            check_threads(threads)
        self._torch = torch
        self._before = torch.get_num_threads()
        # torchrun and people who know their machine set OMP_NUM_THREADS: keep to it
        self.adapts = threads is None and "OMP_NUM_THREADS" not in os.environ
        self.cores = threads or (usable_cores() if self.adapts else self._before)
        self.interval = interval
        self._share = CpuShare() if self.adapts else None
        self._next = time.monotonic() + interval
        self._wanted = self.threads = self.cores
        torch.set_num_threads(self.threads)

    def update(self) -> int:
        """The thread count, changed when the last two readings asked for another."""
        if not self.adapts or time.monotonic() < self._next:
            return self.threads
        self._next = time.monotonic() + self.interval
        others = self._share.others()
        if others is None:
            self.adapts = False
            return self.threads
        wanted = threads_for(self.cores, others)
        if wanted == self._wanted and wanted != self.threads:
            self.threads = wanted
            self._torch.set_num_threads(wanted)
        self._wanted = wanted
        return self.threads

    def close(self) -> None:
        """Give torch back the thread count it had."""
        self._torch.set_num_threads(self._before)

    def __enter__(self) -> ThreadGovernor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
