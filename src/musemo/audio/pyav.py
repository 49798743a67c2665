"""Decoding with FFmpeg through PyAV (``pip install 'musemo[formats]'``): what libsndfile
cannot read, such as AAC and ALAC in M4A, Opus in WebM, WMA and the audio track of a
video."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import AudioError

# what FFmpeg reads and libsndfile does not, by the name a file usually has
SUFFIXES = (".m4a", ".m4b", ".aac", ".mp4", ".mov", ".webm", ".mka", ".mkv", ".wma", ".aifc")


class PyAVReader:
    """The first audio stream of a file open in FFmpeg: its rate, channels, length
    estimate and blocks."""

    name = "FFmpeg"

    def __init__(self, path: Path) -> None:
        import av

        self.path, self._av = path, av
        self._container, self._fresh = self._open(), True
        try:
            stream = self._stream(self._container)
            context = stream.codec_context
            self.samplerate = int(context.sample_rate or 0)
            self.channels = len(context.layout.channels)
            if self.samplerate <= 0 or self.channels <= 0:
                raise AudioError(f"cannot decode audio file {path}: no sample rate or channels")
            self.frames = self._length(stream)
        except BaseException:
            self._container.close()
            raise

    def close(self) -> None:
        """Release the file."""
        self._container.close()

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        """float32 ``(n, channels)``, ``frames`` at a time from the start."""
        pending, n = [], 0
        for chunk in self._decoded():
            pending.append(chunk)
            n += chunk.shape[1]
            while n >= frames:
                joined = np.concatenate(pending, axis=1)
                yield joined[:, :frames].T
                pending, n = [joined[:, frames:]], n - frames
        if n:
            yield np.concatenate(pending, axis=1).T

    def read(self) -> np.ndarray:
        """The whole file, float32 ``(n, channels)``."""
        chunks = list(self._decoded())
        if not chunks:
            return np.zeros((0, self.channels), np.float32)
        return np.concatenate(chunks, axis=1).T

    def _decoded(self) -> Iterator[np.ndarray]:
        """The stream from its start as float32 ``(channels, n)`` chunks, one per frame."""
        if not self._fresh:
            self._container.close()
            self._container = self._open()
        self._fresh = False
        stream = self._stream(self._container)
        resampler = self._av.AudioResampler(
            format="fltp", layout=stream.codec_context.layout, rate=self.samplerate
        )
        frames = self._container.decode(stream)
        while True:
            with self._decoding():
                frame = next(frames, None)
                converted = resampler.resample(frame)
            for piece in converted:
                chunk = piece.to_ndarray()
                if chunk.shape[0] != self.channels:
                    raise AudioError(
                        f"cannot decode audio file {self.path}: its channel count changes "
                        f"from {self.channels} to {chunk.shape[0]}"
                    )
                yield chunk
            if frame is None:
                return

    def _open(self):
        with self._decoding():
            return self._av.open(str(self.path), metadata_errors="ignore")

    def _stream(self, container):
        if not container.streams.audio:
            raise AudioError(f"cannot decode audio file {self.path}: no audio stream in it")
        return container.streams.audio[0]

    def _length(self, stream) -> int:
        """Frames by the stream's or the container's duration; 0 when neither says."""
        if stream.duration is not None and stream.time_base is not None:
            return int(stream.duration * stream.time_base * self.samplerate)
        if self._container.duration is not None:  # microseconds
            return int(self._container.duration * self.samplerate // 1_000_000)
        return 0

    @contextlib.contextmanager
    def _decoding(self) -> Iterator[None]:
        """Turn FFmpeg's errors into an AudioError naming the file."""
        try:
            yield
        except self._av.FFmpegError as exc:
            why = exc.strerror or str(exc)
            raise AudioError(f"cannot decode audio file {self.path}: {why}") from exc
