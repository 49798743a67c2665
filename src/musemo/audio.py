"""Reading audio files: soundfile to decode, soxr to resample."""

from __future__ import annotations

import os
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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such audio file: {path}")
    try:
        with sf.SoundFile(str(path)) as f:
            native_sr = f.samplerate
            if mono:
                y = _read_mono(f, path.stat().st_size)
            else:
                y = f.read(dtype="float32", always_2d=True).T
    except sf.LibsndfileError as exc:
        # libsndfile says "does not exist" of some files it cannot parse; this one exists
        why = exc.error_string
        if "does not exist" in why:
            why = "not audio in a format libsndfile reads, or damaged"
        raise AudioError(f"cannot decode audio file {path}: {why}") from exc
    except (RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot decode audio file {path}: {exc}") from exc
    if y.shape[-1] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    if not np.isfinite(y).all():
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    if sr is not None and sr != native_sr:
        y = soxr.resample(y.T, native_sr, sr, quality="HQ").T
        native_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(native_sr)


def _read_mono(f: sf.SoundFile, file_bytes: int) -> np.ndarray:
    """The channel mean, mixed block by block into one array: an hour of 8-channel audio
    needs the memory of one channel, not of eight (nor of two copies)."""
    # the header's length, unless it claims more than any codec packs into the file (a
    # damaged header must not allocate terabytes); past it (an estimate, as for a VBR MP3
    # without a Xing header), the remaining blocks are gathered and joined
    expected = f.frames if 0 < f.frames * f.channels <= 32 * file_bytes else 0
    y = np.empty(expected, np.float32)
    n, extra = 0, []
    for block in f.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
        mixed = block.mean(axis=1)
        take = min(len(mixed), expected - n)
        y[n : n + take] = mixed[:take]
        n += take
        if take < len(mixed):
            extra.append(mixed[take:])
    return np.concatenate([y[:n], *extra]) if extra else y[:n]
