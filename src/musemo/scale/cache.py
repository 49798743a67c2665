"""The feature cache filled on Ray: each missing entry computed by a Ray task into the
cache folder (shared storage on a cluster), so that training reads a full cache."""

from __future__ import annotations

import functools
import os

from .._progress import progress_bar
from ..data.cache import CacheReport, FeatureCache
from ..data.pool import WorkerDied
from ..data.recordings import load_recordings
from ..features.spec import FeatureSpec
from .cluster import connect

IN_FLIGHT_PER_CPU = 4  # tasks submitted ahead of the results, per CPU of the cluster


def fill_cache_on_ray(
    source: str | os.PathLike,
    spec: FeatureSpec,
    cache: str | os.PathLike,
    *,
    address: str | None = None,
    progress: bool = True,
    strict: bool = False,
    allow_outside_root: bool = False,
) -> CacheReport:
    """Compute on Ray the cache entries ``musemo.data.load_dataset(source, spec,
    cache=cache)`` would compute, so that it only reads them.

    ``source`` is a folder of label folders or a manifest, its files and ``cache`` at
    paths every Ray node reads and writes; ``address`` as ``connect`` takes it. The
    report, refusals and damaged-entry handling are ``FeatureCache.build``'s.
    """
    ray = connect(address)
    recordings = load_recordings(source, allow_outside_root=allow_outside_root)
    return FeatureCache(cache, spec).build(
        recordings, progress=progress, strict=strict,
        run_jobs=functools.partial(_on_ray, ray),
    )  # fmt: skip


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
