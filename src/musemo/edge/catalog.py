"""Classifying a catalog: many files into one table (JSON Lines, CSV or Parquet; see
``tables``), a row per file, by one or more worker processes. A rerun skips the files
the table already holds for the same model (matched by content, not name); a broken
file is an error row, never the end of the run; a killed run loses at most the files
in flight, and the table never holds a torn line."""

from __future__ import annotations

import csv
import dataclasses
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from .._digest import file_sha256
from .._progress import progress_bar
from ..errors import AudioError, ParameterError
from .tables import columns, open_table


@dataclasses.dataclass(frozen=True)
class CatalogReport:
    """What a run did: files given (each path once), rows written (classified, failed),
    files skipped as already in the table, and how long it took."""

    out: Path
    files: int
    classified: int
    failed: int
    skipped: int
    seconds: float

    @property
    def files_per_second(self) -> float:
        """Files classified or failed per second of the run."""
        return (self.classified + self.failed) / self.seconds if self.seconds else 0.0


def manifest_paths(manifest: str | os.PathLike) -> list[str]:
    """The ``path`` column of a CSV manifest, relative ones taken from its folder."""
    manifest = Path(manifest)
    with open(manifest, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or []):
            raise ParameterError(f"manifest {manifest} has no 'path' column")
        return [str(manifest.parent / row["path"]) for row in reader if row["path"]]


def classify_catalog(
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
    **options,
) -> CatalogReport:
    """Classify ``paths`` into the table ``out`` (``.jsonl``, ``.csv`` or ``.parquet``),
    appending.

    Parameters
    ----------
    paths : iterable of path
        Audio files; a file given twice (by the same or another path) is classified once.
    out : path
        The table; rows already there for the same model file are kept, and their
        files (matched by SHA-256 of their bytes) are skipped. Error rows are retried.
    model : path, optional
        A model file; default: the one that ships.
    workers : int
        Processes, each with its own ``Classifier``.
    progress : bool
        A progress bar with files per second (on a terminal only).
    **options
        ``Classifier`` options (``threads``, ``hop_seconds``, ``pad_short``,
        ``uncertain_margin``).

    Returns
    -------
    CatalogReport

    Raises
    ------
    ParameterError
        An unknown table suffix, fewer than one worker, a table of other columns, or
        Parquet without pyarrow.
    OutputError
        The table cannot be written (full disk, read-only folder); the rows written
        before stay whole.
    """
    if workers < 1:
        raise ParameterError(f"workers={workers}: need at least 1")
    run = CatalogRun.start(paths, out, model, options)
    return run.collect(_rows(run.job, run.paths, workers, run.classifier), progress=progress)


@dataclasses.dataclass
class CatalogRun:
    """One run over a catalog: the model checked, the table opened, the files listed
    once each (by real path), the job every worker gets."""

    classifier: object
    table: object
    job: Job
    paths: list[str]
    start: float

    @classmethod
    def start(cls, paths: Iterable, out, model, options: dict) -> CatalogRun:
        """A run of ``model`` (default: the shipped one) over ``paths`` into ``out``."""
        from .classifier import Classifier
        from .shipped import default_model

        model_path = Path(model) if model is not None else default_model()
        clf = Classifier(model_path, **options)  # a bad model fails here, before any work
        table, model_sha256 = open_table(out, clf.labels), file_sha256(model_path)
        job = Job(str(model_path), model_sha256, options, table.done(model_sha256))
        unique: dict[str, str] = {}
        for p in paths:
            unique.setdefault(os.path.realpath(p), str(p))
        return cls(clf, table, job, list(unique.values()), time.perf_counter())

    def collect(self, rows: Iterable[dict | None], *, progress: bool) -> CatalogReport:
        """Append ``rows`` (None: a file already in the table) as they come; the report."""
        counts = {"classified": 0, "failed": 0, "skipped": 0}
        total = len(self.paths)
        with self.table.appending() as append:
            for row in progress_bar(rows, total=total, unit="file", desc="infer", show=progress):
                if row is None:
                    counts["skipped"] += 1
                    continue
                append(row)
                counts["failed" if row["error"] else "classified"] += 1
        seconds = time.perf_counter() - self.start
        return CatalogReport(self.table.path, total, seconds=seconds, **counts)


@dataclasses.dataclass(frozen=True)
class Job:
    """What every worker needs: the model, its hash, the options, the hashes done."""

    model: str
    model_sha256: str
    options: dict
    done: frozenset


_worker: tuple[Job, object] | None = None  # this process's job and Classifier


def start_worker(job: Job, clf=None) -> None:
    """Make this process a worker of ``job`` (with ``clf``, or a ``Classifier`` of its own)."""
    from .classifier import Classifier

    global _worker
    _worker = (job, clf or Classifier(job.model, **job.options))


def row_of(path: str) -> dict | None:
    """The table row of one file in this worker (None: already in the table)."""
    assert _worker is not None
    job, clf = _worker
    row = {"path": path, "sha256": None, "model": Path(job.model).name,
           "model_sha256": job.model_sha256}  # fmt: skip
    try:
        row["sha256"] = file_sha256(path)
        if row["sha256"] in job.done:
            return None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = clf.predict_file(path)
    except (AudioError, ParameterError, OSError) as exc:
        return {**row, **_empty(clf.labels), "warning": "", "error": str(exc)}
    said = "; ".join(str(w.message) for w in caught)
    return {**row, **_outcome(result, clf.labels), "warning": said, "error": ""}


def _rows(job: Job, paths: list[str], workers: int, clf) -> Iterator[dict | None]:
    """Each file's row (or None), in the order they finish; ``clf`` classifies in this
    process when there is one worker."""
    if workers == 1 or len(paths) < 2:
        start_worker(job, clf)
        yield from map(row_of, paths)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked onnxruntime or tqdm threads
    with context.Pool(min(workers, len(paths)), start_worker, (job,)) as pool:
        yield from pool.imap_unordered(row_of, paths, chunksize=1)


def _outcome(result, labels: tuple[str, ...]) -> dict:
    return {
        "label": result.label,
        "uncertain": result.uncertain,
        "duration": round(result.duration, 3),
        "windows": len(result.windows),
        **{f"p_{k}": round(result.probabilities[k], 6) for k in labels},
        **{f"share_{k}": round(result.window_shares.get(k, 0.0), 6) for k in labels},
    }


def _empty(labels: tuple[str, ...]) -> dict:
    return dict.fromkeys(columns(labels)[4:-2])
