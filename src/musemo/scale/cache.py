"""The feature cache filled on Ray: each missing entry computed by a Ray task into the
cache folder (shared storage on a cluster), in place of the local worker processes."""

from __future__ import annotations

import functools
from collections.abc import Callable

from .._progress import progress_bar
from ..data.pool import WorkerDied
from .cluster import connect

IN_FLIGHT_PER_CPU = 4  # tasks submitted ahead of the results, per CPU of the cluster


def ray_jobs(address: str | None = None) -> Callable:
    """``musemo.data.pool.for_each`` on Ray: pass it as ``run_jobs`` to
    ``musemo.data.load_dataset`` (or ``FeatureCache.build``) and each missing cache entry
    is computed by a Ray task of one CPU, a bounded number in flight. The audio files and
    the cache folder must be at paths every Ray node reads and writes; ``address`` as
    ``connect`` takes it (joined here, so a bad one fails before any work).
    """
    return functools.partial(_on_ray, connect(address))


def _on_ray(ray, fn, jobs, done, *, workers, errors, desc, progress) -> None:
    """``musemo.data.pool.for_each`` with Ray tasks of one CPU each (``workers`` unused:
    the cluster's CPUs decide), a bounded number in flight."""
    task = ray.remote(num_cpus=1, max_retries=1)(fn)
    ahead = IN_FLIGHT_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1)))
    todo, pending = iter(jobs), {}
    bar = progress_bar(total=len(jobs), desc=desc, unit="file", show=progress and bool(jobs))
    try:
        while True:
            for key, args in todo:
                pending[task.remote(*args)] = key
                if len(pending) >= ahead:
                    break
            if not pending:
                return
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ref)
            bar.update()
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if not isinstance(exc.cause, errors):
                    raise
                done(key, None, exc.cause)
            except ray.exceptions.WorkerCrashedError:
                done(key, None, WorkerDied(f"{key}: its Ray worker died twice"))
            else:
                done(key, result, None)
    finally:
        for ref in pending:
            ray.cancel(ref)
        bar.close()
