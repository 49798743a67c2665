"""The feature cache: sub-clip features computed once per (file content, feature
spec), written atomically and memory-mapped from then on."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._atomic import remove_leftovers, save_npy, write_text, writing
from .._digest import file_sha256
from ..audio import load_audio
from ..errors import AudioError, OutputError, ParameterError
from ..features.clips import cut, normalise_loudness, subclip_starts
from ..features.extractor import MelExtractor
from ..features.spec import FeatureSpec
from .pool import for_each
from .recordings import Recording


def file_digest(path: Path) -> str:
    """The first 24 hex digits of the SHA-256 of a file's bytes (a cache entry's name)."""
    return file_sha256(path)[:24]


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
        """Where the features of audio file ``path`` are (or will be) cached."""
        return self.folder / f"{file_digest(path)}.npy"

    def build(
        self,
        recordings: Sequence[Recording],
        *,
        workers: int = 1,
        progress: bool = True,
        strict: bool = False,
        run_jobs: Callable = for_each,
    ) -> CacheReport:
        """Compute the missing entries (in ``workers`` processes) and report what happened.

        Unreadable files are listed in the report and skipped, or raise with ``strict``.
        A file whose worker process dies (killed, out of memory) is retried on its
        own and listed if it dies again. Entries left damaged are computed anew,
        leftovers of a killed run removed. A cache that cannot be written (full
        disk, read-only folder) raises ``OutputError``, whatever ``strict`` says.
        ``run_jobs`` runs the computations: ``musemo.data.pool.for_each`` or one with its
        signature (``musemo.scale`` runs them on Ray).
        """
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
        computed = 0

        def done(path: Path, result, error: BaseException | None) -> None:
            nonlocal computed
            if error is None:
                computed += 1
            elif isinstance(error, OutputError) or strict:
                raise error
            else:
                failed.append((path, str(error) or type(error).__name__))

        spec_json = self.spec.to_json()
        jobs = [(path, (str(path), str(target), spec_json)) for path, target in todo]
        run_jobs(
            _compute_entry,
            jobs,
            done,
            workers=workers,
            errors=_FILE_ERRORS,
            desc="features",
            progress=progress,
        )
        for path, _ in failed:
            entries.pop(path, None)
        return CacheReport(computed, reused, failed, entries)
