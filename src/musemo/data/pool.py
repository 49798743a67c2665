"""Work on many files in worker processes, with a progress bar, one result per file, and
files whose worker dies (killed, out of memory) retried alone."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .._progress import progress_bar
from ..errors import AudioError


class WorkerDied(AudioError):
    """The process working on a file died twice (killed, or out of memory)."""


def for_each(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Any, tuple]],
    done: Callable[[Any, Any, BaseException | None], None],
    *,
    workers: int = 1,
    errors: tuple[type[BaseException], ...] = (),
    desc: str = "files",
    progress: bool = True,
) -> None:
    """Call ``fn(*args)`` for each ``(key, args)`` of ``jobs``, then ``done(key, result,
    error)`` in this process, in the order results arrive.

    ``errors`` are the exceptions that concern one job: they reach ``done`` as ``error``;
    any other exception stops the run. With ``workers`` > 1 the jobs run in that many
    spawned processes (fork can deadlock a parent that has started threads); the jobs of
    a pool whose worker died are run again one at a time, each in a fresh worker, so a job
    that kills its worker again is reported (``WorkerDied``) and the others go through.
    ``done`` may raise to stop the run.
    """
    bar = progress_bar(total=len(jobs), desc=desc, unit="file", show=progress and bool(jobs))

    def finish(key, result, error) -> None:
        bar.update()
        done(key, result, error)

    try:
        if workers <= 1:
            for key, args in jobs:
                try:
                    result = fn(*args)
                except errors as exc:
                    finish(key, None, exc)
                else:
                    finish(key, result, None)
        else:
            orphaned = _in_pool(fn, jobs, finish, workers, errors)
            _one_at_a_time(fn, orphaned, finish, errors)
    finally:
        bar.close()


def _context():
    return multiprocessing.get_context("spawn")


def _in_pool(fn, jobs, finish, workers: int, errors) -> list:
    """Run ``jobs`` in one pool; return those whose worker died (which one killed it is
    unknown)."""
    orphaned = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
        futures = {pool.submit(fn, *args): (key, args) for key, args in jobs}
        try:
            for fut in as_completed(futures):
                key = futures[fut][0]
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    orphaned.append(futures[fut])
                elif exc is None:
                    finish(key, fut.result(), None)
                elif isinstance(exc, errors):
                    finish(key, None, exc)
                else:
                    raise exc
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return orphaned


def _one_at_a_time(fn, jobs, finish, errors) -> None:
    pool = None
    try:
        for key, args in jobs:
            pool = pool or ProcessPoolExecutor(max_workers=1, mp_context=_context())
            try:
                result = pool.submit(fn, *args).result()
            except BrokenProcessPool:
                pool.shutdown()
                pool = None
                finish(
                    key,
                    None,
                    WorkerDied(f"{key}: the process working on it died (killed, or out of memory)"),
                )
            except errors as exc:
                finish(key, None, exc)
            else:
                finish(key, result, None)
    finally:
        if pool is not None:
            pool.shutdown()
