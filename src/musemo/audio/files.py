"""Audio files: listing them, opening them in the decoder that reads them, ``load_audio``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from .._checks import check_sr
from ..errors import AudioError
from . import pyav, sndfile

_BLOCK_FRAMES = 1 << 18
# the file names taken for audio when a folder is read
AUDIO_SUFFIXES = sndfile.SUFFIXES + pyav.SUFFIXES


def audio_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files below ``folder`` (recursively, by ``AUDIO_SUFFIXES``), sorted."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )


def load_audio(
    path: str | os.PathLike, *, sr: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, FLAC, OGG, MP3, M4A, ...) to float32.

    Parameters
    ----------
    path : path
        The file: what libsndfile reads, and with ``musemo[formats]`` what FFmpeg reads.
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

    libsndfile decodes what it reads (WAV, FLAC, Ogg Vorbis and Opus, MP3, AIFF); FFmpeg,
    through PyAV (``pip install 'musemo[formats]'``), the rest: AAC and ALAC in M4A,
    Opus in WebM, WMA, the audio track of a video.

    Parameters
    ----------
    path : path
        The file.

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
        self._reader = _open(self.path)
        self.samplerate = self._reader.samplerate
        self.decoder: str = self._reader.name  # "libsndfile" or "FFmpeg"

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    @property
    def expected_frames(self) -> int:
        """The header's length, unless it claims more than any codec packs into the file
        (a damaged header must not allocate terabytes): 0 then. An estimate for some
        files (a VBR MP3 without a Xing header, most files FFmpeg decodes)."""
        r = self._reader
        return r.frames if 0 < r.frames * r.channels <= 32 * self.path.stat().st_size else 0

    def mono_blocks(self, frames: int = _BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """The channel mean, float32 ``(n,)``, ``frames`` at a time from the start."""
        for block in self._reader.blocks(frames):
            yield self._finite(channel_mean(block))

    def read_channels(self) -> np.ndarray:
        """The whole file, float32 ``(channels, n)``."""
        return self._finite(self._reader.read().T)

    def _finite(self, y: np.ndarray) -> np.ndarray:
        if not np.isfinite(y).all():
            raise AudioError(f"audio file {self.path} contains NaN or infinite samples")
        return y


def channel_mean(block: np.ndarray) -> np.ndarray:
    """The mean of a float32 ``(n, channels)`` block over its channels, column by column:
    numpy's mean along so short an axis is 15x slower, for the same values (bit for bit
    up to two channels; within rounding beyond)."""
    y = block[:, 0].copy()
    for column in range(1, block.shape[1]):
        y += block[:, column]
    if block.shape[1] > 1:
        y /= np.float32(block.shape[1])
    return y


def _open(path: Path) -> sndfile.SndfileReader | pyav.PyAVReader:
    """A reader of ``path``: libsndfile's, else PyAV's; an AudioError saying why neither."""
    try:
        return sndfile.SndfileReader(path)
    except AudioError as refused:
        sndfile_error = refused
    try:
        return pyav.PyAVReader(path)
    except ImportError:
        if path.suffix.lower() in sndfile.SUFFIXES:
            raise sndfile_error from None
        raise AudioError(
            f"cannot decode audio file {path}: libsndfile does not read {path.suffix or 'it'}"
            " files; pip install 'musemo[formats]' decodes them with FFmpeg (PyAV)"
        ) from sndfile_error
    except AudioError as too:
        why = str(too).removeprefix(f"cannot decode audio file {path}: ")
        raise AudioError(f"{sndfile_error}; FFmpeg: {why}") from too


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
