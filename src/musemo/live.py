"""Live classification: microphone chunks (``sounddevice``) through an edge ``Stream``.

The microphone is opened at its own native rate; the stream resamples in-process.
A bad chunk or an input overflow is reported and skipped; the run goes on.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .edge import Classifier, WindowResult
from .errors import AudioError, ParameterError

log = logging.getLogger("musemo.live")


def classify_live(
    classifier: Classifier,
    chunks: Iterable[np.ndarray],
    *,
    sr: int,
    on_result: Callable[[WindowResult], None],
) -> dict:
    """Feed ``chunks`` (``(n,)`` or ``(channels, n)`` at ``sr`` Hz) to a stream, calling
    ``on_result`` for each completed window; a bad chunk is logged and skipped.
    Returns counts: windows, chunks, skipped chunks."""
    stream = classifier.open_stream(sr=sr)
    counts = {"windows": 0, "chunks": 0, "skipped": 0}
    for chunk in chunks:
        counts["chunks"] += 1
        try:
            results = stream.feed(chunk)
        except (AudioError, ParameterError) as exc:
            counts["skipped"] += 1
            log.warning("skipped a chunk: %s", exc)
            continue
        for result in results:
            counts["windows"] += 1
            on_result(result)
    for result in stream.close():
        counts["windows"] += 1
        on_result(result)
    return counts


def microphone(
    *, device: int | str | None = None, seconds: float | None = None, block: float = 0.1
) -> tuple[Iterator[np.ndarray], int]:
    """Chunks from an input device at its native rate (mono), and that rate.

    ``seconds`` stops after that much audio (None: until interrupted). Overflows
    (the device delivered faster than we read) are logged, never fatal."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: PortAudio itself is missing
        raise ParameterError(
            f"live input needs sounddevice and PortAudio: pip install 'musemo[live]' "
            f"(and on Raspberry Pi OS: sudo apt install libportaudio2) ({exc})"
        ) from exc
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        raise ParameterError(f"no usable input device {device!r}: {exc}") from exc
    sr = int(info["default_samplerate"])
    blocks: queue.Queue = queue.Queue(maxsize=256)

    def callback(indata, frames, time, status) -> None:  # PortAudio's thread
        if status.input_overflow:
            log.warning("input overflow: the device dropped audio")
        try:
            blocks.put_nowait(indata[:, 0].copy())
        except queue.Full:
            log.warning("classifier fell behind: dropped %d samples", frames)

    def chunks() -> Iterator[np.ndarray]:
        total = None if seconds is None else int(seconds * sr)
        got = 0
        with sd.InputStream(
            device=device,
            channels=1,
            samplerate=sr,
            dtype="float32",
            blocksize=int(block * sr),
            callback=callback,
        ):
            while total is None or got < total:
                chunk = blocks.get()
                got += len(chunk)
                yield chunk

    return chunks(), sr
