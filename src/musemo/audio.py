"""Reading audio files: soundfile to decode, soxr to resample."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ._checks import check_sr
from .errors import AudioError

_BLOCK_FRAMES = 1 << 18
# the file names taken for audio when a folder is read (what libsndfile decodes)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif")


def audio_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files below ``folder`` (recursively, by ``AUDIO_SUFFIXES``), sorted."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )


def load_audio(
    path: str | os.PathLike, *, sr: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, FLAC, OGG, MP3, ...) to float32.

    Parameters
    ----------
    path : path
        The file; what libsndfile reads.
    sr : int, optional
        Resample to this rate (soxr, high quality); default: the file's own rate.
    mono : bool
        Average the channels (block by block: an hour of 8 channels needs the memory
        of one).

    Returns
    -------
    y : numpy.ndarray
        float32 ``(n,)`` when ``mono``, else ``(channels, n)``.
    sr : int
        The sample rate of ``y``.

    Raises
    ------
    FileNotFoundError
        No such file.
    AudioError
        A file that cannot be decoded, holds no samples, or holds NaN or infinite ones.
    ParameterError
        A bad ``sr``.

    Examples
    --------
    >>> y, sr = musemo.load_audio("song.flac", sr=22050)  # doctest: +SKIP
    """
    if sr is not None:
        sr = check_sr(sr)
    with AudioFile(path) as f:
        native_sr, path = f.samplerate, f.path
        if mono:
            y = _gather(f.mono_blocks(), f.expected_frames)
        else:
            y = f.read_channels()
    if y.shape[-1] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    if sr is not None and sr != native_sr:
        y = soxr.resample(y.T, native_sr, sr, quality="HQ").T
        native_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(native_sr)


class AudioFile:
    """An audio file open for reading in blocks, so that an hour of it needs the memory
    of one block.

    Parameters
    ----------
    path : path
        The file; what libsndfile reads.

    Raises
    ------
    FileNotFoundError
        No such file.
    AudioError
        A file that cannot be decoded (on opening, or at the block where decoding
        fails), or that holds NaN or infinite samples.

    Examples
    --------
    >>> with AudioFile("hour.flac") as f:  # doctest: +SKIP
    ...     peak = max(abs(block).max() for block in f.mono_blocks())
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such audio file: {self.path}")
        with self._decoding():
            self._file = sf.SoundFile(str(self.path))
        self.samplerate = int(self._file.samplerate)

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    @property
    def expected_frames(self) -> int:
        """The header's length, unless it claims more than any codec packs into the file
        (a damaged header must not allocate terabytes): 0 then. An estimate for some
        files (a VBR MP3 without a Xing header)."""
        f = self._file
        return f.frames if 0 < f.frames * f.channels <= 32 * self.path.stat().st_size else 0

    def mono_blocks(self, frames: int = _BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The channel mean, float32 ``(n,)``, ``frames`` at a time from the start."""
        with self._decoding():
            self._file.seek(0)
            blocks = self._file.blocks(blocksize=frames, dtype="float32", always_2d=True)
        while True:
            with self._decoding():
                block = next(blocks, None)
            if block is None:
                return
            yield self._finite(block.mean(axis=1))

    def read_channels(self) -> np.ndarray:
        """The whole file, float32 ``(channels, n)``."""
        with self._decoding():
            self._file.seek(0)
            y = self._file.read(dtype="float32", always_2d=True).T
        return self._finite(y)

    def _finite(self, y: np.ndarray) -> np.ndarray:
        if not np.isfinite(y).all():
            raise AudioError(f"audio file {self.path} contains NaN or infinite samples")
        return y

    @contextlib.contextmanager
    def _decoding(self) -> Iterator[None]:
        """Turn the errors of libsndfile and soundfile into an AudioError naming the file."""
        try:
            yield
        except sf.LibsndfileError as exc:
            # libsndfile says "does not exist" of some files it cannot parse; this one does
            why = exc.error_string
            if "does not exist" in why:
                why = "not audio in a format libsndfile reads, or damaged"
            raise AudioError(f"cannot decode audio file {self.path}: {why}") from exc
        except (RuntimeError, ValueError, TypeError) as exc:
            raise AudioError(f"cannot decode audio file {self.path}: {exc}") from exc


def _gather(blocks: Iterator[np.ndarray], expected: int) -> np.ndarray:
    """The blocks joined into one array, filled in place up to ``expected`` samples (no
    second copy of a long file); past it, the remaining blocks are gathered and joined."""
    y = np.empty(expected, np.float32)
    n, extra = 0, []
    for mixed in blocks:
        take = min(len(mixed), expected - n)
        y[n : n + take] = mixed[:take]
        n += take
        if take < len(mixed):
            extra.append(mixed[take:])
    return np.concatenate([y[:n], *extra]) if extra else y[:n]
