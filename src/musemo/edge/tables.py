"""The tables a catalog run writes, a row per file: JSON Lines or CSV (one file of whole
lines) and Parquet (a folder of shards that pyarrow, pandas, DuckDB, Spark and Ray read
as one table). Each knows the files it holds for a model, appends rows so that a killed
run loses at most the rows in flight, and never leaves a torn line or shard."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._atomic import atomic_path, remove_leftovers, writing
from ..errors import OutputError, ParameterError

TABLES = (".jsonl", ".csv", ".parquet")
_BLOCK = 1 << 20  # bytes read at a time looking back for a line's end
PARQUET_EXTRA = "pip install 'musemo[ray]' (or pyarrow alone)"


def columns(labels: Sequence[str]) -> list[str]:
    """A table's columns for a model of these labels."""
    return ["path", "sha256", "model", "model_sha256", "label", "uncertain", "duration",
            "windows", *[f"p_{k}" for k in labels], *[f"share_{k}" for k in labels],
            "warning", "error"]  # fmt: skip


def open_table(path: str | os.PathLike, labels: Sequence[str]) -> LineTable | ParquetTable:
    """The table at ``path`` (made on the first row), by its suffix: ``.jsonl``, ``.csv``
    or ``.parquet`` (a folder)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLES:
        raise ParameterError(f"{path}: write results to a {', '.join(TABLES)} table")
    if suffix == ".parquet":
        return ParquetTable(path, tuple(labels))
    if path.is_dir():
        raise ParameterError(f"{path} is a folder: a {suffix} table is a file")
    return LineTable(path, tuple(labels))


class LineTable:
    """A JSON Lines or CSV table: its rows, appending whole lines."""

    def __init__(self, path: Path, labels: tuple[str, ...]) -> None:
        self.path, self.csv = path, path.suffix.lower() == ".csv"
        self.columns = columns(labels)
        self._repair()

    def done(self, model_sha256: str) -> frozenset:
        """The hashes of files classified (not failed) by the model file of that hash."""
        return frozenset(
            row["sha256"]
            for row in self.rows()
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

    def rows(self) -> Iterator[dict]:
        """The table's rows, in order."""
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


class ParquetTable:
    """A folder of Parquet shards, ``part-<digest>.parquet``, read as one table.

    Rows go first to a journal of whole lines in the folder (``.journal.jsonl``, a
    ``LineTable``), and from it into a new shard every ``rows_per_shard`` rows and at
    the end of a run; a shard is written whole under a temporary name and renamed, and
    its name is the digest of its rows, so a run killed between the two steps finds the
    shard already there.
    """

    def __init__(self, path: Path, labels: tuple[str, ...], *, rows_per_shard: int = 10_000):
        self.path, self.rows_per_shard = path, rows_per_shard
        self.columns = columns(labels)
        if path.exists() and not path.is_dir():
            raise ParameterError(f"{path} is a file: a .parquet table here is a folder of shards")
        self._pq = _pyarrow()
        self.journal = LineTable(path / ".journal.jsonl", labels)
        self._roll()

    def shards(self) -> list[Path]:
        """The table's shards (not the journal, not a temporary file)."""
        return sorted(self.path.glob("part-*.parquet")) if self.path.is_dir() else []

    def done(self, model_sha256: str) -> frozenset:
        """The hashes of files classified (not failed) by the model file of that hash."""
        done = set(self.journal.done(model_sha256))
        for shard in self.shards():
            rows = self._read(shard, ["sha256", "model_sha256", "error"])
            done.update(r["sha256"] for r in rows
                        if r["model_sha256"] == model_sha256 and not r["error"])  # fmt: skip
        return frozenset(done)

    def rows(self) -> list[dict]:
        """Every row: the shards', then the journal's."""
        rows = [row for shard in self.shards() for row in self._read(shard, self.columns)]
        return rows + list(self.journal.rows())

    @contextlib.contextmanager
    def appending(self):
        """A function that appends one row (to the journal, into a shard when full); the
        journal rolled into a shard at the end (after an error, at the next opening)."""
        stack = contextlib.ExitStack()
        append, count = stack.enter_context(self.journal.appending()), 0

        def add(row: dict) -> None:
            nonlocal append, count
            append(row)
            count += 1
            if count == self.rows_per_shard:
                stack.close()  # the journal's file closed before it is emptied
                self._roll()
                append, count = stack.enter_context(self.journal.appending()), 0

        try:
            yield add
        finally:
            stack.close()
        self._roll()

    def _write_shard(self, rows: list[dict]) -> Path:
        """``rows`` as a new shard, written whole; its path."""
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        shard = self.path / f"part-{hashlib.sha256(text.encode()).hexdigest()[:20]}.parquet"
        if shard.is_file():
            return shard
        table = self._pq.Table.from_pylist(rows, schema=self._schema())
        with atomic_path(shard) as tmp:
            self._pq.parquet.write_table(table, tmp)
        return shard

    def _roll(self) -> None:
        """The journal's rows into a shard, then an empty journal."""
        remove_leftovers(self.path)
        rows = list(self.journal.rows())
        if not rows:
            return
        self._write_shard(rows)
        with writing(self.journal.path, any_oserror=True):
            os.truncate(self.journal.path, 0)

    def _schema(self):
        pa = self._pq
        kinds = {"uncertain": pa.bool_(), "duration": pa.float64(), "windows": pa.int64()}
        kinds.update({c: pa.float64() for c in self.columns if c.startswith(("p_", "share_"))})
        return pa.schema([(c, kinds.get(c, pa.string())) for c in self.columns])

    def _read(self, shard: Path, names: list[str]) -> list[dict]:
        """The columns ``names`` of ``shard`` (only those read), checked to be this table's."""
        pq = self._pq.parquet
        try:
            found = pq.read_schema(shard).names
            if found == self.columns:
                return pq.read_table(shard, columns=names).to_pylist()
        except (OSError, self._pq.ArrowException) as exc:
            raise ParameterError(f"{shard}: not a readable Parquet shard ({exc})") from exc
        raise ParameterError(
            f"{shard} holds the columns {found}, not this model's {self.columns}: "
            "write to another folder"
        )


def _pyarrow():
    """Pyarrow with its Parquet module, or the command that installs it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (pyarrow.parquet from here on)
    except ImportError as exc:
        raise ParameterError(f"Parquet tables need pyarrow: {PARQUET_EXTRA}") from exc
    return pyarrow
