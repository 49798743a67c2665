"""Every sub-clip of a set of recordings, gathered from the feature cache."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ParameterError
from ..features.spec import FeatureSpec
from .cache import CacheReport, FeatureCache
from .pool import for_each
from .recordings import UNLABELLED, Recording, load_recordings


@dataclasses.dataclass
class SubclipData:
    """Every sub-clip of a set of recordings, with the recording it came from.

    ``features[i]`` is recording i's memory-mapped array; ``index`` rows are
    ``(recording, sub-clip)``; ``labels`` are integers into ``label_names``, ``-1``
    (``UNLABELLED_ROW``) for a recording without a label (audio a teacher labels).
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
        """The features of sub-clip ``i``, ``(n_mels, frames)`` (memory-mapped)."""
        rec, sub = self.index[i]
        return self.features[rec][sub]

    def stack(self, rows: np.ndarray) -> np.ndarray:
        """Features of the given sub-clips as one in-memory array ``(n, n_mels, frames)``."""
        return np.stack([self.subclip(int(i)) for i in rows]) if len(rows) else np.empty((0,))

    def extended(self, other: SubclipData) -> SubclipData:
        """These sub-clips followed by ``other``'s (same labels): row ``i`` stays row ``i``."""
        if other.label_names != self.label_names:
            raise ParameterError(
                f"labels {list(other.label_names)} and {list(self.label_names)} differ"
            )
        shift = np.array([len(self.recordings), 0], dtype=np.int64)
        return SubclipData(
            self.recordings + other.recordings,
            self.features + other.features,
            np.concatenate([self.index, other.index + shift]),
            np.concatenate([self.labels, other.labels]),
            self.label_names,
        )


UNLABELLED_ROW = -1  # the label of a sub-clip of an unlabelled recording


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
    run_jobs: Callable = for_each,
) -> tuple[SubclipData, CacheReport]:
    """Read recordings, fill the feature cache and gather every sub-clip.

    Parameters
    ----------
    source : path
        A folder ``ROOT/<label>/*.wav`` or a CSV manifest (see ``read_manifest``).
    spec : FeatureSpec
        The features and sub-clips to compute.
    cache : path
        The feature cache folder (entries are reused across runs).
    workers : int
        Processes computing features.
    progress : bool
        A progress bar on a terminal.
    strict : bool
        Stop at the first unreadable file instead of skipping it.
    label_names : sequence of str, optional
        The label order (e.g. a checkpoint's); default the labels found, sorted.
    allow_outside_root : bool
        Read manifest paths that leave the manifest's folder.
    run_jobs : callable
        What computes the missing features: ``musemo.data.pool.for_each`` (``workers``
        processes here) or one of its signature, e.g. ``musemo.scale.ray_jobs()`` (Ray
        tasks; the files and the cache on storage every node shares).

    Returns
    -------
    data : SubclipData
        Every sub-clip of every readable recording.
    report : CacheReport
        What the cache computed, reused and skipped (with reasons).

    Raises
    ------
    ParameterError
        One label only (unless ``label_names`` is given), labels outside
        ``label_names``, or no readable recording.
    OutputError
        The cache cannot be written.

    Examples
    --------
    >>> data, report = load_dataset("data/", FeatureSpec(), cache="cache/")  # doctest: +SKIP
    >>> len(data), data.label_names  # doctest: +SKIP
    (3854, ('happy', 'sad'))
    """
    recordings = load_recordings(source, allow_outside_root=allow_outside_root)
    found = sorted({r.label for r in recordings})
    names = tuple(label_names) if label_names is not None else tuple(found)
    if label_names is None and len(names) < 2:
        raise ParameterError(
            f"{source} holds one label only ({names[0]!r}): a classifier needs two"
        )
    return gather(
        recordings, spec, names, cache=cache, workers=workers, progress=progress, strict=strict,
        source=source, run_jobs=run_jobs,
    )  # fmt: skip


def gather(
    recordings: Sequence[Recording],
    spec: FeatureSpec,
    label_names: Sequence[str],
    *,
    cache: str | os.PathLike,
    workers: int = 1,
    progress: bool = True,
    strict: bool = False,
    source: str | os.PathLike = "the recordings",
    auxiliary: Sequence[str] = (),
    run_jobs: Callable = for_each,
) -> tuple[SubclipData, CacheReport]:
    """Fill the feature cache for ``recordings`` and gather their sub-clips
    (``load_dataset``'s second half); the rows of an ``UNLABELLED`` recording, or of one
    with an ``auxiliary`` label (which its ``Recording`` keeps), get ``UNLABELLED_ROW``;
    a label outside both is refused, naming ``source``; ``run_jobs`` as
    ``load_dataset`` takes it."""
    names = tuple(label_names)
    unknown = sorted({r.label for r in recordings} - set(names) - {UNLABELLED, *auxiliary})
    if unknown:
        raise ParameterError(f"labels {unknown} in {source} are not among {list(names)}")
    store = FeatureCache(cache, spec)
    report = store.build(
        recordings, workers=workers, progress=progress, strict=strict, run_jobs=run_jobs
    )
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
    lookup = {label: UNLABELLED_ROW for label in (UNLABELLED, *auxiliary)}
    lookup.update({name: i for i, name in enumerate(names)})
    labels = np.array([lookup[kept[r].label] for r in index[:, 0]], dtype=np.int64)
    return SubclipData(kept, features, index, labels, names), report
