"""Labelled recordings: a folder ``ROOT/<label>/`` of audio files or a CSV manifest
with ``path,label`` and optional ``group`` (the source recording or song; default:
the file itself) and rating columns."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from .._atomic import write_text
from ..audio import AUDIO_SUFFIXES, audio_files
from ..errors import ParameterError

UNLABELLED = ""  # the label of a recording that has none


@dataclasses.dataclass(frozen=True)
class Recording:
    """One audio file and its label (``UNLABELLED``: none); ``group`` keeps related files
    on one side of a split."""

    path: Path
    label: str
    group: str


def scan_folder(root: str | os.PathLike) -> list[Recording]:
    """Recordings of ``root/<label>/**/*.<audio>`` (``musemo.audio.AUDIO_SUFFIXES``),
    labels from the folder names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    recordings = []
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for label in labels:
        files = audio_files(root / label)
        if not files:
            warnings.warn(
                f"label folder {root / label} holds no audio files; ignored", stacklevel=2
            )
        recordings += [Recording(p, label, p.stem) for p in files]
    if not recordings:
        raise ParameterError(
            f"{root} holds no labelled audio: expected {root}/<label>/*.wav "
            f"(or {', '.join(AUDIO_SUFFIXES[1:])})"
        )
    return recordings


def read_manifest(
    path: str | os.PathLike,
    *,
    rating: str | None = None,
    threshold: float | None = None,
    above: str = "happy",
    below: str = "sad",
    allow_outside_root: bool = False,
) -> list[Recording]:
    """Recordings listed in a CSV with ``path`` and ``label`` (or a rating column) columns.

    Paths are relative to the manifest's folder; one that leaves it (``../``, an
    absolute path) is refused unless ``allow_outside_root``. With ``rating`` (a column
    of per-clip mean ratings, e.g. a 5-point Likert mean) the label is ``above``
    when the rating is ``>= threshold`` and ``below`` otherwise.
    """
    path = Path(path)
    root = Path(os.path.abspath(path.parent))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ParameterError(f"manifest {path} has no rows")
    columns = set(rows[0])
    need = {"path"} | ({rating} if rating else {"label"})
    if not need <= columns:
        raise ParameterError(
            f"manifest {path} needs columns {sorted(need)}; it has {sorted(columns)}"
        )
    if rating and threshold is None:
        raise ParameterError("a rating column needs a threshold")
    recordings = []
    for i, row in enumerate(rows, start=2):
        file = Path(os.path.normpath(root / (row["path"] or "")))
        if not allow_outside_root and not file.is_relative_to(root):
            raise ParameterError(
                f"{path}:{i}: {row['path']!r} lies outside the manifest's folder {root}; "
                "allow it explicitly (allow_outside_root=True, --allow-outside-root)"
            )
        if rating:
            try:
                value = float(row[rating])
            except ValueError as exc:
                raise ParameterError(
                    f"{path}:{i}: {rating}={row[rating]!r} is not a number"
                ) from exc
            label = above if value >= threshold else below
        else:
            label = row["label"].strip()
        if not label:
            raise ParameterError(f"{path}:{i}: empty label for {row['path']}")
        group = (row.get("group") or "").strip() or file.stem
        recordings.append(Recording(file, label, group))
    return recordings


def load_recordings(
    source: str | os.PathLike, *, allow_outside_root: bool = False
) -> list[Recording]:
    """A folder of label folders, or a CSV manifest (see ``read_manifest``)."""
    source = Path(source)
    if source.is_dir() and (source / "manifest.csv").is_file():
        source = source / "manifest.csv"
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_manifest(source, allow_outside_root=allow_outside_root)
    return scan_folder(source)


def unlabelled_recordings(
    source: str | os.PathLike, *, allow_outside_root: bool = False
) -> list[Recording]:
    """Audio to learn from without labels (from a teacher): every audio file below a
    folder, or the files of a CSV manifest (its labels ignored, its groups kept)."""
    source = Path(source)
    if source.is_dir() and not (source / "manifest.csv").is_file():
        files = audio_files(source)
        if not files:
            raise ParameterError(f"{source} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        return [Recording(p, UNLABELLED, str(p.relative_to(source))) for p in files]
    listed = load_recordings(source, allow_outside_root=allow_outside_root)
    return [dataclasses.replace(r, label=UNLABELLED) for r in listed]


def write_manifest(root: str | os.PathLike, rows: Sequence[tuple[str, str, str]]) -> Path:
    """Write ``root/manifest.csv`` (``path,label,group``; paths relative to ``root``), the
    form ``read_manifest`` reads, atomically. Returns its path."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("path", "label", "group"))
    writer.writerows(rows)
    path = Path(root) / "manifest.csv"
    write_text(path, buf.getvalue())
    return path
