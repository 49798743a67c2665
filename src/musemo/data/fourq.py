"""The 4Q audio emotion set (Panda, Malheiro & Paiva, IEEE TAFFC 2018) as a manifest.

900 real 30 s excerpts of commercial music, 225 in each of Russell's quadrants, laid
out as ``MER_audio_taffc_dataset/Q1..Q4/<Song>.mp3`` with
``panda_dataset_taffc_metadata.csv`` (``Song``, ``Artist``, ``Quadrant``). Research use
only; cite the paper. :func:`prepare_4q` links (or copies) the chosen quadrants into a
folder and writes its ``manifest.csv`` with the artist as each recording's group, so
every split keeps an artist's songs on one side.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .._atomic import atomic_path, writing
from ..errors import ParameterError
from .recordings import write_manifest

METADATA = "panda_dataset_taffc_metadata.csv"
FOLDER = "MER_audio_taffc_dataset"
# Russell's quadrants: valence x arousal.
QUADRANT_LABELS = {"Q1": "happy", "Q2": "tense", "Q3": "sad", "Q4": "calm"}
# each quadrant's label: (positive valence, high arousal)
QUADRANT_AXES = {"happy": (True, True), "tense": (False, True), "sad": (False, False),
                 "calm": (True, False)}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class FourQReport:
    """What :func:`prepare_4q` did: the manifest, what it holds and what it left out."""

    manifest: Path
    counts: dict[str, int]
    artists: int
    unlisted: list[Path]  # audio files the metadata does not name
    missing: list[str]  # songs the metadata names whose file is not there
    other_quadrants: int  # listed songs of quadrants not asked for


def _dataset_root(src: Path) -> Path:
    for root in (src, src / FOLDER):
        if (root / METADATA).is_file():
            return root
    if any((src / q).is_dir() for q in QUADRANT_LABELS) or (src / FOLDER).is_dir():
        raise ParameterError(
            f"{src} has the 4Q audio folders but not {METADATA}, which names each song's "
            "artist and quadrant; copy it from the data set next to Q1..Q4"
        )
    raise ParameterError(
        f"{src} is not the 4Q data set: expected {FOLDER}/{METADATA} and "
        f"{FOLDER}/Q1..Q4/*.mp3 (or those inside {src} itself)"
    )


def _read_metadata(path: Path) -> dict[str, tuple[str, str]]:
    """Song id -> (quadrant, artist)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    need = {"Song", "Artist", "Quadrant"}
    if not rows or not need <= set(rows[0]):
        raise ParameterError(f"{path} needs the columns {sorted(need)}")
    return {r["Song"].strip(): (r["Quadrant"].strip(), r["Artist"].strip()) for r in rows}


def _link(src: Path, dst: Path) -> None:
    """A hard link to ``src`` at ``dst`` (a copy across file systems), all or nothing."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def prepare_4q(
    src: str | os.PathLike, out: str | os.PathLike, *, quadrants: Sequence[str] = ("Q1", "Q3")
) -> FourQReport:
    """Make ``out/<label>/<Song>.mp3`` and ``out/manifest.csv`` from the 4Q set in ``src``.

    Parameters
    ----------
    src : path
        The data set: the folder holding ``MER_audio_taffc_dataset``, or that folder.
    out : path
        Output folder; the audio is hard-linked where it can be, copied elsewhere.
    quadrants : sequence of str
        Which quadrants to keep: Q1 (happy) and Q3 (sad) by default; all four for a
        4-class model (Q2 tense, Q4 calm).

    Raises
    ------
    ParameterError
        Not the 4Q layout, no metadata file, an unknown quadrant, or nothing to keep.
    """
    src, out = Path(src), Path(out)
    bad = sorted(set(quadrants) - set(QUADRANT_LABELS))
    if bad or not quadrants:
        raise ParameterError(f"quadrants {bad or '[]'}: choose from {', '.join(QUADRANT_LABELS)}")
    root = _dataset_root(src)
    songs = _read_metadata(root / METADATA)
    files = sorted(p for q in QUADRANT_LABELS for p in (root / q).glob("*.mp3"))
    by_song = {p.stem: p for p in files}
    rows, counts, other = [], dict.fromkeys((QUADRANT_LABELS[q] for q in quadrants), 0), 0
    missing = []
    for song, (quadrant, artist) in sorted(songs.items()):
        if quadrant not in quadrants:
            other += 1
            continue
        if song not in by_song:
            missing.append(song)
            continue
        label = QUADRANT_LABELS[quadrant]
        dst = out / label / f"{song}.mp3"
        with writing(dst, any_oserror=True):
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link(by_song[song], dst)
        rows.append((f"{label}/{song}.mp3", label, f"artist:{artist.casefold()}"))
        counts[label] += 1
    if not rows:
        raise ParameterError(f"no audio of quadrants {', '.join(quadrants)} found under {root}")
    manifest = write_manifest(out, rows)
    unlisted = [p for p in files if p.stem not in songs]
    return FourQReport(manifest, counts, len({r[2] for r in rows}), unlisted, missing, other)
