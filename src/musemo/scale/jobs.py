"""A catalog classified on Ray: the files listed on the driver, read and classified in a
Ray Data pipeline by actors that each hold one torch-free ``Classifier``, and their rows
appended by the driver to the same table ``musemo.edge.catalog`` writes (resumable the
same way)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..edge.catalog import CatalogReport, CatalogRun, Job, row_of, start_worker
from ..errors import ParameterError
from .cluster import connect


def classify_on_ray(
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    address: str | None = None,
    workers: int | None = None,
    files_per_batch: int = 4,
    progress: bool = True,
    **options,
) -> CatalogReport:
    """Classify ``paths`` into the table ``out`` on Ray, as ``classify_catalog`` does on
    one machine (same rows, same resumption by content and model).

    Parameters
    ----------
    paths : iterable of path
        Audio files, at paths every Ray node reads (shared storage on a cluster).
    out : path
        The table (``.jsonl``, ``.csv`` or ``.parquet``), written by this process only.
    model : path, optional
        A model file (default: the shipped one); its bytes go to every actor.
    address : str, optional
        A Ray cluster to join (``HOST:PORT``, ``auto``); default: a running Ray, else a
        new local one.
    workers : int, optional
        Actors, each on one CPU with its own ``Classifier``; default: the cluster's CPUs.
    files_per_batch : int
        Files an actor classifies per call.
    progress : bool
        A progress bar with files per second (on a terminal only).
    **options
        ``Classifier`` options (``threads``, ``hop_seconds``, ``pad_short``,
        ``uncertain_margin``).

    Raises
    ------
    ParameterError
        No Ray, an unreachable address, fewer than one worker, or what
        ``classify_catalog`` refuses.
    """
    if workers is not None and workers < 1:
        raise ParameterError(f"workers={workers}: need at least 1")
    if files_per_batch < 1:
        raise ParameterError(f"files_per_batch={files_per_batch}: need at least 1")
    ray = connect(address)
    run = CatalogRun.start(paths, out, model, options)
    if not run.paths:
        return run.collect([], progress=False)
    actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    files = ray.data.from_items([{"path": p} for p in run.paths])
    model = [ray.put(Path(run.job.model).read_bytes())]  # in a list: each actor gets it
    rows = files.map_batches(
        _Classifying,
        fn_constructor_kwargs={"job": run.job, "model": model},
        batch_size=files_per_batch,
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(run.paths))),
        num_cpus=1,
        batch_format="numpy",
    )
    return run.collect((json.loads(r["row"]) for r in rows.iter_rows()), progress=progress)


class _Classifying:
    """A Ray actor: the model written to its own folder, a ``Classifier`` of it, and the
    rows of the files of each batch (as JSON text: null for a file already done)."""

    def __init__(self, job: Job, model: list) -> None:
        import ray

        self._folder = tempfile.TemporaryDirectory(prefix="musemo-model-")
        path = Path(self._folder.name) / Path(job.model).name  # the rows name the file
        path.write_bytes(ray.get(model[0]))
        start_worker(dataclasses.replace(job, model=str(path)))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [json.dumps(row_of(str(p)), ensure_ascii=False) for p in batch["path"]]
        return {"row": np.array(rows, dtype=object)}
