"""Live classification: microphone chunks (``sounddevice``) through an edge ``Stream``.

The microphone is opened at its own native rate; the stream resamples in-process.
A bad chunk or an input overflow is reported and skipped; the run goes on.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from .._checks import check_int
from ..errors import AudioError, MissingDependencyError, ParameterError
from .classifier import Classifier, WindowResult

log = logging.getLogger(__name__)


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


class Blocks:
    """The PortAudio side of a live input: its callback copies each block (first
    channel) into a queue of at most ``max_blocks``. An input overflow (the device
    dropped audio) or a full queue (the classifier fell behind; the block is
    dropped) is counted and logged, never raised into PortAudio's thread."""

    def __init__(self, max_blocks: int) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=max_blocks)
        self.overflows = 0
        self.dropped_samples = 0

    def __call__(self, indata, frames, time, status) -> None:  # PortAudio's thread
        """PortAudio's callback: queue the block's first channel, count overflows and drops."""
        if status.input_overflow:
            self.overflows += 1
            log.warning("input overflow: the device dropped audio")
        try:
            self.queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.dropped_samples += frames
            log.warning("classifier fell behind: dropped %d samples", frames)


def microphone(
    *,
    device: int | str | None = None,
    seconds: float | None = None,
    block: float = 0.1,
    max_blocks: int = 256,
) -> tuple[Iterator[np.ndarray], int]:
    """Chunks from an input device at its native rate (mono), and that rate.

    ``seconds`` stops after that much audio (None: until interrupted); ``block`` is the
    chunk length in seconds and ``max_blocks`` how many chunks wait for the classifier
    before new ones are dropped. Overflows and drops are logged (``Blocks``), never fatal."""
    if not block > 0 or (seconds is not None and not seconds > 0):
        raise ParameterError(f"block={block!r}, seconds={seconds!r}: must be > 0")
    check_int("max_blocks", max_blocks, 1)
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: PortAudio itself is missing
        raise MissingDependencyError(
            "live input needs sounddevice and PortAudio (on Raspberry Pi OS also: "
            "sudo apt install libportaudio2)",
            "live",
            str(exc),
        ) from exc
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        raise ParameterError(f"no usable input device {device!r}: {exc}") from exc
    sr = int(info["default_samplerate"])
    blocks = Blocks(max_blocks)

    def chunks() -> Iterator[np.ndarray]:
        total = None if seconds is None else int(seconds * sr)
        got = 0
        with sd.InputStream(
            device=device,
            channels=1,
            samplerate=sr,
            dtype="float32",
            blocksize=max(1, int(block * sr)),
            callback=blocks,
        ):
            while total is None or got < total:
                chunk = blocks.queue.get()
                got += len(chunk)
                yield chunk

    return chunks(), sr
