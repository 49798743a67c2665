"""Decoding with libsndfile (through soundfile): WAV, FLAC, Ogg Vorbis and Opus, MP3, AIFF."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError

# what libsndfile reads, by the name a file usually has
SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".caf", ".w64")


class SndfileReader:
    """A file open in libsndfile: its rate, channels, header length and blocks."""

    name = "libsndfile"

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._decoding():
            self._file = sf.SoundFile(str(path))
        self.samplerate = int(self._file.samplerate)
        self.frames = int(self._file.frames)
        self.channels = int(self._file.channels)

    def close(self) -> None:
        """Release the file."""
        self._file.close()

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """float32 ``(n, channels)``, ``frames`` at a time from the start."""
        with self._decoding():
            self._file.seek(0)
            blocks = self._file.blocks(blocksize=frames, dtype="float32", always_2d=True)
        while True:
            with self._decoding():
                block = next(blocks, None)
            if block is None:
                return
            yield block

    def read(self) -> np.ndarray:
        """The whole file, float32 ``(n, channels)``."""
        with self._decoding():
            self._file.seek(0)
            return self._file.read(dtype="float32", always_2d=True)

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
