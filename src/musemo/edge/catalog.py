"""Classifying a catalog: many files into one table (JSON Lines or CSV), a row per file,
by one or more worker processes. A rerun skips the files the table already holds for
the same model (matched by content, not name); a broken file is an error row, never the
end of the run; a killed run loses at most the files in flight, and the table never
holds a torn line."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from .._atomic import writing
from .._digest import file_sha256
from .._progress import progress_bar
from ..errors import AudioError, OutputError, ParameterError

TABLES = (".jsonl", ".csv")
_BLOCK = 1 << 20  # bytes read at a time looking back for a line's end


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
    """Classify ``paths`` into the table ``out`` (``.jsonl`` or ``.csv``), appending.

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
        An unknown table suffix, fewer than one worker, or a CSV table of other columns.
    OutputError
        The table cannot be written (full disk, read-only folder); the rows written
        before stay whole.
    """
    from .classifier import Classifier
    from .shipped import default_model

    if workers < 1:
        raise ParameterError(f"workers={workers}: need at least 1")
    model_path = Path(model) if model is not None else default_model()
    clf = Classifier(model_path, **options)  # a bad model fails here, before any work
    table, model_sha256 = Table(Path(out), clf.labels), file_sha256(model_path)
    job = _Job(str(model_path), model_sha256, options, table.done(model_sha256))
    unique: dict[str, str] = {}
    for p in paths:
        unique.setdefault(os.path.realpath(p), str(p))
    paths = list(unique.values())
    start, counts = time.perf_counter(), {"classified": 0, "failed": 0, "skipped": 0}
    rows = _rows(job, paths, workers, clf)
    with table.appending() as append:
        for row in progress_bar(rows, total=len(paths), unit="file", desc="infer", show=progress):
            if row is None:
                counts["skipped"] += 1
                continue
            append(row)
            counts["failed" if row["error"] else "classified"] += 1
    return CatalogReport(table.path, len(paths), seconds=time.perf_counter() - start, **counts)


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every worker needs: the model, its hash, the options, the hashes done."""

    model: str
    model_sha256: str
    options: dict
    done: frozenset


_worker: tuple[_Job, object] | None = None  # this process's job and Classifier


def _start_worker(job: _Job, clf=None) -> None:
    from .classifier import Classifier

    global _worker
    _worker = (job, clf or Classifier(job.model, **job.options))


def _row_of(path: str) -> dict | None:
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


def _rows(job: _Job, paths: list[str], workers: int, clf) -> Iterator[dict | None]:
    """Each file's row (or None), in the order they finish; ``clf`` classifies in this
    process when there is one worker."""
    if workers == 1 or len(paths) < 2:
        _start_worker(job, clf)
        yield from map(_row_of, paths)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked onnxruntime or tqdm threads
    with context.Pool(min(workers, len(paths)), _start_worker, (job,)) as pool:
        yield from pool.imap_unordered(_row_of, paths, chunksize=1)


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
    none = dict.fromkeys(["label", "uncertain", "duration", "windows"])
    return {**none, **dict.fromkeys([f"p_{k}" for k in labels] + [f"share_{k}" for k in labels])}


class Table:
    """The output table: its columns, the rows it holds, appending whole lines."""

    def __init__(self, path: Path, labels: tuple[str, ...]) -> None:
        if path.suffix.lower() not in TABLES:
            raise ParameterError(f"{path}: write results to a {' or '.join(TABLES)} file")
        self.path, self.csv = path, path.suffix.lower() == ".csv"
        self.columns = ["path", "sha256", "model", "model_sha256", *_empty(labels), "warning",
                        "error"]  # fmt: skip
        self._repair()

    def done(self, model_sha256: str) -> frozenset:
        """The hashes of files classified (not failed) by the model file of that hash."""
        return frozenset(
            row["sha256"]
            for row in self._read()
            if row.get("model_sha256") == model_sha256 and not row.get("error")
        )

    @contextlib.contextmanager
    def appending(self):
        """A function that appends one row as one whole line (and the CSV header first)."""
        with writing(self.path, any_oserror=True):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if self.csv and size == 0:
                size = self._write(fd, size, self._line(dict(zip(self.columns, self.columns))))

            def append(row: dict) -> None:
                nonlocal size
                size = self._write(fd, size, self._line(row))

            yield append
        finally:
            os.close(fd)

    def _write(self, fd: int, size: int, line: bytes) -> int:
        """Append ``line``; on failure cut the table back to ``size`` (whole lines)."""
        try:
            with writing(self.path, any_oserror=True):
                if os.write(fd, line) != len(line):
                    raise OSError(28, "No space left on device")
        except OutputError:
            os.ftruncate(fd, size)
            raise
        return size + len(line)

    def _line(self, row: dict) -> bytes:
        if not self.csv:
            return (json.dumps(row, ensure_ascii=False) + "\n").encode()
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(
            ["" if row[c] is None else row[c] for c in self.columns]
        )
        return buffer.getvalue().encode()

    def _read(self) -> Iterator[dict]:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", newline="") as f:
            if not self.csv:
                for number, line in enumerate(f, 1):
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        why = f"{self.path}, line {number}: not JSON ({exc})"
                        raise ParameterError(why) from exc
                    yield row
                return
            reader = csv.DictReader(f)
            if reader.fieldnames and reader.fieldnames != self.columns:
                raise ParameterError(
                    f"{self.path} holds the columns {reader.fieldnames}, not this model's "
                    f"{self.columns}: write to another file"
                )
            yield from reader

    def _repair(self) -> None:
        """Cut a last line that a killed run left without its end."""
        if not self.path.is_file():
            return
        with open(self.path, "rb+") as f:
            end = f.seek(0, os.SEEK_END)
            position = end
            while position > 0:  # back a block at a time to the last line end
                step = min(_BLOCK, position)
                f.seek(position - step)
                block = f.read(step)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    position -= step - cut - 1
                    break
                position -= step
            if position != end:
                with writing(self.path, any_oserror=True):
                    f.truncate(position)
