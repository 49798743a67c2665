"""Labelled recordings -> sub-clips -> a feature cache on disk -> honest splits.

A data set is a folder ``ROOT/<label>/*.wav|flac|ogg|mp3`` or a CSV manifest
with ``path,label`` and optional ``group`` (the source recording or song;
default: the file itself) and rating columns. Features are computed once per
(file content, feature spec) and memory-mapped from then on.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from .atomic import remove_leftovers, save_npy, write_text, writing
from .audio import load_audio
from .errors import AudioError, OutputError, ParameterError
from .extractor import MelExtractor
from .spec import FeatureSpec

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclasses.dataclass(frozen=True)
class Recording:
    """One labelled audio file; ``group`` keeps related files on one side of a split."""

    path: Path
    label: str
    group: str


# ----------------------------------------------------------------------------- reading


def scan_folder(root: str | os.PathLike) -> list[Recording]:
    """Recordings of ``root/<label>/**/*.<audio>``, labels from the folder names."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    recordings = []
    labels = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for label in labels:
        files = sorted(p for p in (root / label).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            warnings.warn(
                f"label folder {root / label} holds no audio files; ignored", stacklevel=2
            )
        recordings += [Recording(p, label, p.stem) for p in files]
    if not recordings:
        raise ParameterError(
            f"{root} holds no labelled audio: expected {root}/<label>/*.wav (or .flac, .ogg, .mp3)"
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


# ----------------------------------------------------------------------------- sub-clips


def subclip_starts(n_samples: int, spec: FeatureSpec) -> list[int]:
    """Start samples of the sub-clips of a recording of ``n_samples`` samples."""
    size, hop = spec.clip_samples, spec.clip_hop_samples
    starts = list(range(0, max(n_samples - size, -1) + 1, hop))
    last = starts[-1] + hop if starts else 0
    if spec.clip_tail == "pad" and n_samples - last >= size / 2:
        starts.append(last)
    return starts


def normalise_loudness(y: np.ndarray, dbfs: float) -> np.ndarray:
    """``y`` scaled to an RMS level of ``dbfs`` (silence is left alone)."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms == 0.0:
        return y
    return (y * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def subclips(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """``(n_subclips, clip_samples)`` float32; a padded tail is filled with silence.

    With ``spec.loudness_dbfs`` the whole recording is first brought to that level.
    """
    if spec.loudness_dbfs is not None:
        y = normalise_loudness(y, spec.loudness_dbfs)
    return cut(y, subclip_starts(len(y), spec), spec.clip_samples)


def cut(y: np.ndarray, starts: Sequence[int], size: int) -> np.ndarray:
    """``(len(starts), size)`` float32 pieces of ``y``; past its end, silence."""
    out = np.zeros((len(starts), size), np.float32)
    for i, start in enumerate(starts):
        piece = y[start : start + size]
        out[i, : len(piece)] = piece
    return out


# ----------------------------------------------------------------------------- cache


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


# what one file can raise without stopping the others
_FILE_ERRORS = (OSError, AudioError, ParameterError, MemoryError)
_BATCH = 32  # sub-clips cut and computed at a time: an hour-long file needs no second copy


def _compute_entry(path: str, target: str, spec_json: str) -> tuple[str, int]:
    """Worker: features of every sub-clip of one file, saved atomically."""
    spec = FeatureSpec.from_json(spec_json)
    y, _ = load_audio(path, sr=spec.sample_rate)
    if spec.loudness_dbfs is not None:
        y = normalise_loudness(y, spec.loudness_dbfs)
    starts = subclip_starts(len(y), spec)
    if not starts:
        raise AudioError(
            f"{path} lasts {len(y) / spec.sample_rate:.2f} s, shorter than one "
            f"{spec.clip_seconds:g} s sub-clip"
        )
    extractor = MelExtractor(spec)
    features = np.empty((len(starts), *spec.clip_shape), np.float32)
    for i in range(0, len(starts), _BATCH):
        batch = starts[i : i + _BATCH]
        # compute_batch: each sub-clip's dB reference and floor are its own (see the
        # extractor), as in the edge runtime, not the loudest sub-clip's of the batch
        features[i : i + len(batch)] = np.stack(
            extractor.compute_batch(list(cut(y, batch, spec.clip_samples)))
        )
    with writing(target, any_oserror=True):  # the cache, not the audio file
        save_npy(target, features)
    return path, len(starts)


def _valid_entry(path: Path, spec: FeatureSpec) -> bool:
    """Whether ``path`` is a whole cache entry of ``spec`` (not truncated, right shape)."""
    try:
        features = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return (
        features.dtype == np.float32
        and features.ndim == 3
        and len(features) > 0
        and features.shape[1:] == spec.clip_shape
    )


@dataclasses.dataclass
class CacheReport:
    """What ``FeatureCache.build`` did: files computed, reused, (file, reason) failures,
    and the cache entry of every readable file."""

    computed: int
    reused: int
    failed: list[tuple[Path, str]]
    entries: dict[Path, Path]


class FeatureCache:
    """Sub-clip features on disk, one ``.npy`` per (file content, feature spec).

    Entries live in ``root/<spec.feature_key()>/<file digest>.npy``: changing the
    audio or the spec computes new entries, changing neither reuses the old
    ones, and an interrupted run resumes where it stopped.
    """

    def __init__(self, root: str | os.PathLike, spec: FeatureSpec) -> None:
        self.spec = spec
        self.folder = Path(root) / spec.feature_key()

    def entry(self, path: Path) -> Path:
        return self.folder / f"{file_digest(path)}.npy"

    def build(
        self,
        recordings: Sequence[Recording],
        *,
        workers: int = 1,
        progress: bool = True,
        strict: bool = False,
    ) -> CacheReport:
        """Compute the missing entries (in ``workers`` processes) and report what happened.

        Unreadable files are listed in the report and skipped, or raise with ``strict``.
        A file whose worker process dies (killed, out of memory) is retried on its
        own and listed if it dies again. Entries left damaged are computed anew,
        leftovers of a killed run removed. A cache that cannot be written (full
        disk, read-only folder) raises ``OutputError``, whatever ``strict`` says.
        """
        from tqdm import tqdm

        todo, reused, failed, entries = [], 0, [], {}
        for rec in recordings:
            try:
                target = entries[rec.path] = self.entry(rec.path)
            except OSError as exc:
                failed.append((rec.path, str(exc)))
                continue
            if _valid_entry(target, self.spec):
                reused += 1
            else:
                todo.append((rec.path, target))
        remove_leftovers(self.folder)
        if todo:  # a complete cache is only read: it may be on a read-only disk
            with writing(self.folder, any_oserror=True):
                self.folder.mkdir(parents=True, exist_ok=True)
            write_text(self.folder / "feature_spec.json", self.spec.to_json() + "\n")
        bar = tqdm(total=len(todo), desc="features", unit="file", disable=not progress or not todo)
        computed = 0

        def done(path: Path, error: BaseException | None) -> None:
            nonlocal computed
            bar.update()
            if error is None:
                computed += 1
            elif isinstance(error, OutputError) or strict:
                raise error
            else:
                failed.append((path, str(error) or type(error).__name__))

        try:
            if workers <= 1:
                spec_json = self.spec.to_json()
                for path, target in todo:
                    try:
                        _compute_entry(str(path), str(target), spec_json)
                    except _FILE_ERRORS as exc:
                        done(path, exc)
                    else:
                        done(path, None)
            else:
                self._build_in_processes(todo, workers, done)
        finally:
            bar.close()
        for path, _ in failed:
            entries.pop(path, None)
        return CacheReport(computed, reused, failed, entries)

    def _build_in_processes(self, todo, workers: int, done) -> None:
        # spawn, not fork: a parent that has started threads (torch, JAX) can
        # deadlock a forked child
        spawn = multiprocessing.get_context("spawn")
        spec_json = self.spec.to_json()
        orphaned = []  # files in a pool whose worker died: which one killed it is unknown
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            futures = {
                pool.submit(_compute_entry, str(p), str(t), spec_json): (p, t) for p, t in todo
            }
            try:
                for fut in as_completed(futures):
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):
                        orphaned.append(futures[fut])
                    else:
                        done(futures[fut][0], exc)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        # one at a time in one worker (a new one after each death), so a file that kills
        # its worker again is the culprit; the others go through
        pool = None
        try:
            for path, target in orphaned:
                pool = pool or ProcessPoolExecutor(max_workers=1, mp_context=spawn)
                try:
                    pool.submit(_compute_entry, str(path), str(target), spec_json).result()
                    done(path, None)
                except BrokenProcessPool:
                    pool.shutdown()
                    pool = None
                    done(
                        path,
                        AudioError(
                            f"{path}: the process computing its features died "
                            "(killed, or out of memory)"
                        ),
                    )
                except _FILE_ERRORS as exc:
                    done(path, exc)
        finally:
            if pool is not None:
                pool.shutdown()


# ----------------------------------------------------------------------------- data set


@dataclasses.dataclass
class SubclipData:
    """Every sub-clip of a set of recordings, with the recording it came from.

    ``features[i]`` is recording i's memory-mapped array; ``index`` rows are
    ``(recording, sub-clip)``; ``labels`` are integers into ``label_names``.
    """

    recordings: list[Recording]
    features: list[np.ndarray]
    index: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]

    @property
    def groups(self) -> np.ndarray:
        """The group of each sub-clip (its recording's group)."""
        names = np.array([r.group for r in self.recordings])
        return names[self.index[:, 0]]

    def __len__(self) -> int:
        return len(self.index)

    def subclip(self, i: int) -> np.ndarray:
        rec, sub = self.index[i]
        return self.features[rec][sub]

    def stack(self, rows: np.ndarray) -> np.ndarray:
        """Features of the given sub-clips as one in-memory array ``(n, n_mels, frames)``."""
        return np.stack([self.subclip(int(i)) for i in rows]) if len(rows) else np.empty((0,))


def load_dataset(
    source: str | os.PathLike,
    spec: FeatureSpec,
    *,
    cache: str | os.PathLike,
    workers: int = 1,
    progress: bool = True,
    strict: bool = False,
    label_names: Sequence[str] | None = None,
    allow_outside_root: bool = False,
) -> tuple[SubclipData, CacheReport]:
    """Read recordings, fill the feature cache and gather every sub-clip.

    ``label_names`` fixes the label order (e.g. a checkpoint's); by default the
    labels found, sorted. Needs at least two labels unless ``label_names`` is given.
    ``allow_outside_root``: see ``read_manifest``.
    """
    recordings = load_recordings(source, allow_outside_root=allow_outside_root)
    found = sorted({r.label for r in recordings})
    names = tuple(label_names) if label_names is not None else tuple(found)
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ParameterError(f"labels {unknown} in {source} are not among {list(names)}")
    if label_names is None and len(names) < 2:
        raise ParameterError(
            f"{source} holds one label only ({names[0]!r}): a classifier needs two"
        )
    store = FeatureCache(cache, spec)
    report = store.build(recordings, workers=workers, progress=progress, strict=strict)
    kept, features = [], []
    for rec in recordings:
        if rec.path in report.entries:
            kept.append(rec)
            features.append(np.load(report.entries[rec.path], mmap_mode="r"))
    if not kept:
        reasons = "; ".join(f"{p}: {why}" for p, why in report.failed[:3])
        raise ParameterError(f"no readable recordings in {source}: {reasons}")
    index = np.array(
        [(r, s) for r, f in enumerate(features) for s in range(len(f))], dtype=np.int64
    )
    lookup = {name: i for i, name in enumerate(names)}
    labels = np.array([lookup[kept[r].label] for r in index[:, 0]], dtype=np.int64)
    return SubclipData(kept, features, index, labels, names), report


# ----------------------------------------------------------------------------- splits

SPLIT_MODES = ("grouped", "random")


def _check_split(data: SubclipData, n_splits: int, mode: str) -> None:
    if mode not in SPLIT_MODES:
        raise ParameterError(f"split mode {mode!r}: use one of {SPLIT_MODES}")
    counts = np.bincount(data.labels, minlength=len(data.label_names))
    for name, count in zip(data.label_names, counts):
        if count == 0:
            raise ParameterError(f"label {name!r} has no sub-clips")
    if mode == "grouped":
        for k, name in enumerate(data.label_names):
            n_groups = len(set(data.groups[data.labels == k]))
            if n_groups < n_splits:
                raise ParameterError(
                    f"label {name!r} has {n_groups} recording group(s); a grouped split into "
                    f"{n_splits} parts needs at least {n_splits} per label: add recordings "
                    "or use fewer folds"
                )


def kfold_splits(
    data: SubclipData, *, k: int = 5, mode: str = "grouped", seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, validation) index pairs over sub-clips, stratified by label.

    ``"grouped"`` keeps every group (recording or song) on one side;
    ``"random"`` splits sub-clips as the paper did, letting sub-clips of one
    recording fall on both sides (it inflates accuracy: use it to measure that).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    _check_split(data, k, mode)
    rows = np.arange(len(data))
    if mode == "grouped":
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(folds.split(rows, data.labels, data.groups))
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(folds.split(rows, data.labels))


def holdout_split(
    data: SubclipData, *, val_fraction: float = 0.15, mode: str = "grouped", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One (train, validation) split with about ``val_fraction`` of the sub-clips held out
    (the paper's 85/15): the first fold of ``round(1 / val_fraction)`` stratified folds."""
    if not 0 < val_fraction < 0.5:
        raise ParameterError(f"val_fraction={val_fraction}: must be between 0 and 0.5")
    return kfold_splits(data, k=max(2, round(1 / val_fraction)), mode=mode, seed=seed)[0]


def describe_split(data: SubclipData, train: np.ndarray, val: np.ndarray, mode: str) -> dict:
    """What a split holds, for the run directory: counts and the held-out groups."""
    groups = data.groups
    overlap = sorted(set(groups[train]) & set(groups[val]))
    return {
        "mode": mode,
        "train_subclips": int(len(train)),
        "val_subclips": int(len(val)),
        "train_groups": int(len(set(groups[train]))),
        "val_groups": sorted(set(groups[val].tolist())),
        "groups_on_both_sides": len(overlap),
        "val_label_counts": {
            name: int((data.labels[val] == k).sum()) for k, name in enumerate(data.label_names)
        },
    }
