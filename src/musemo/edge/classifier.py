"""The edge runtime: classify files, arrays or a live stream with an exported model.

Torch-free: numpy, the C++ feature engine, soxr, and onnxruntime or LiteRT for the
model file. The feature spec and labels come from the model file itself.

    >>> clf = Classifier("squeezenet1_0.int8.tflite")  # doctest: +SKIP
    >>> clf.predict_file("song.wav").label  # doctest: +SKIP
    'happy'
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import soxr

from .._checks import check_sr, is_number
from ..audio import AudioFile
from ..errors import AudioError, ParameterError
from ..features.clips import WindowCutter, cut, loudness_gain, normalise_loudness
from ..features.extractor import MelExtractor
from ..metrics import recording_probabilities, softmax, tempered
from .backends import open_model
from .shipped import default_model

WINDOWS_AT_ONCE = 64  # windows whose features are computed together
PIECE_SAMPLES = 1 << 18  # an array is resampled and cut this many samples at a time

SILENCE_DBFS = -90.0  # a window quieter than this (RMS) is silence: nothing to classify
UNCERTAIN_MARGIN = 0.2  # two labels: uncertain while p lies in (0.4, 0.6)


@dataclasses.dataclass(frozen=True)
class WindowResult:
    """One window: where it lies (seconds from the start), its label and class
    probabilities; a silent window has label ``None`` and no probabilities."""

    start: float
    end: float
    label: str | None
    probabilities: dict[str, float]

    @property
    def silent(self) -> bool:
        """Whether the window was too quiet to classify."""
        return self.label is None


@dataclasses.dataclass(frozen=True)
class Result:
    """A whole recording: its windows and the label of their probabilities combined as
    the model file says (their mean, or the softmax of their mean log-probability:
    ``musemo.metrics.AGGREGATES``; silent windows left out; at the file's calibrated
    temperature, if any).
    ``uncertain``: that label's mean probability leads the next one's by less than the
    classifier's ``uncertain_margin``. ``window_shares``: the fraction of the non-silent
    windows given each label. ``padded``: shorter than one window, padded with silence."""

    source: str
    duration: float
    label: str
    probabilities: dict[str, float]
    windows: list[WindowResult]
    uncertain: bool = False
    window_shares: dict[str, float] = dataclasses.field(default_factory=dict)
    padded: bool = False

    def to_dict(self) -> dict:
        """The result as plain JSON-ready values (``musemo infer --json``)."""
        return dataclasses.asdict(self)


def _as_mono(y, *, what: str) -> np.ndarray:
    """``y`` ``(n,)`` or ``(channels, n)`` (librosa's layout) as float32 mono, checked."""
    arr = np.asarray(y)
    if not (np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize in (4, 8)):
        raise ParameterError(
            f"{what} must be float32 or float64 samples in [-1, 1], got dtype {arr.dtype}"
        )
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    elif arr.ndim != 1:
        raise ParameterError(f"{what} must be (n,) or (channels, n), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        first = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise AudioError(f"{what} holds NaN or infinite samples (first at sample {first})")
    return arr


def _resampler(sr: int, target: int) -> soxr.ResampleStream:
    """A streaming resampler (soxr), mono float32 at high quality: chunk by chunk, the same
    samples as ``soxr.resample`` of the whole recording."""
    return soxr.ResampleStream(sr, target, 1, dtype="float32", quality="HQ")


class Classifier:
    """An exported musemo model (``.onnx`` or ``.tflite``) with its feature extractor.

    Calls are not thread-safe: give each thread its own ``Classifier``.

    Parameters
    ----------
    model_path : path, optional
        A model file written by ``musemo-export``: its feature spec and labels come
        from the file. Default: the model that ships with musemo (``musemo models``).
    threads : int
        Inference threads.
    hop_seconds : float, optional
        Seconds between windows; default the model's sub-clip hop (as it was trained).
    pad_short : bool
        Pad audio shorter than one window with silence (and warn), or refuse it.
    uncertain_margin : float
        A recording whose top label's mean probability leads the next one's by less
        than this is marked ``uncertain`` (0: never). The default, 0.2, marks a
        two-label recording uncertain while its probability lies between 0.4 and 0.6.

    Raises
    ------
    ParameterError
        Not a musemo model file (no metadata, a foreign or damaged file); no model
        given and none ships with this build.
    MissingDependencyError
        onnxruntime or LiteRT is not installed (``pip install 'musemo[edge]'``).

    Examples
    --------
    >>> clf = Classifier("squeezenet1_0.int8.tflite")  # doctest: +SKIP
    >>> result = clf.predict_file("song.mp3")  # doctest: +SKIP
    >>> result.label, result.probabilities  # doctest: +SKIP
    ('happy', {'happy': 0.83, 'sad': 0.17})
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        threads: int = 1,
        hop_seconds: float | None = None,
        pad_short: bool = True,
        uncertain_margin: float = UNCERTAIN_MARGIN,
    ) -> None:
        if not is_number(uncertain_margin) or not 0 <= uncertain_margin <= 1:
            raise ParameterError(f"uncertain_margin={uncertain_margin!r}: must lie in [0, 1]")
        if model_path is None:
            model_path = default_model()
        self.backend = open_model(model_path, threads=threads)
        self.info = self.backend.info
        spec = self.info.spec
        if spec.input_mean is None or spec.input_std is None:
            raise ParameterError(
                f"{Path(model_path).name}: its feature spec has no input statistics"
            )
        if hop_seconds is not None:
            if not is_number(hop_seconds) or hop_seconds <= 0:
                raise ParameterError(f"hop_seconds={hop_seconds!r}: must be a positive number")
            spec = dataclasses.replace(spec, clip_hop_seconds=float(hop_seconds))
        self.spec = spec
        self.labels = self.info.labels
        self.pad_short = pad_short
        self.uncertain_margin = float(uncertain_margin)
        self.extractor = MelExtractor(spec)
        self._silence = 10 ** (SILENCE_DBFS / 20)
        self._hop = spec.clip_hop_samples / spec.sample_rate  # seconds between windows

    def __repr__(self) -> str:
        return (
            f"Classifier({self.backend.path.name!r}, {self.info.architecture} "
            f"{self.info.precision} on {self.backend.name}, labels={list(self.labels)})"
        )

    # ------------------------------------------------------------------ windows

    def classify_windows(self, windows: np.ndarray, start: float = 0.0) -> list[WindowResult]:
        """Label ``(n, clip_samples)`` windows at the model's rate; window ``i`` starts at
        ``start + i * hop`` seconds."""
        s = self.spec
        power = np.einsum("ij,ij->i", windows, windows) / windows.shape[1]
        loud = power >= self._silence**2
        probs = np.zeros((len(windows), len(self.labels)), np.float32)
        heard = np.flatnonzero(loud)
        for first in range(0, len(heard), WINDOWS_AT_ONCE):  # memory bounded for long files
            rows = heard[first : first + WINDOWS_AT_ONCE]
            # each window alone (its own dB floor), as the training features were made
            mel = np.stack(self.extractor.compute_batch(list(windows[rows])))
            mel -= np.float32(s.input_mean)
            mel *= np.float32(1.0 / s.input_std)
            probs[rows] = softmax(self.backend.logits(mel[:, None]))
        size = s.clip_samples / s.sample_rate
        out = []
        for i, p in enumerate(probs):
            t0 = start + i * self._hop
            if loud[i]:
                label = self.labels[int(p.argmax())]
                out.append(
                    WindowResult(t0, t0 + size, label, dict(zip(self.labels, map(float, p))))
                )
            else:
                out.append(WindowResult(t0, t0 + size, None, {}))
        return out

    # ------------------------------------------------------------------ whole recordings

    def predict_array(self, y, sr: int, *, source: str = "array") -> Result:
        """Classify audio ``y`` (``(n,)`` or ``(channels, n)``, float) at rate ``sr``."""
        y = _as_mono(y, what=source)
        sr = check_sr(sr)
        if len(y) == 0:
            raise AudioError(f"{source} holds no samples")

        def pieces() -> Iterator[np.ndarray]:
            return (y[i : i + PIECE_SAMPLES] for i in range(0, len(y), PIECE_SAMPLES))

        return self._predict(pieces, sr, source=source)

    def predict_file(self, path: str | os.PathLike) -> Result:
        """Classify an audio file (any format soundfile reads; stereo is mixed down),
        block by block: a 3-hour file needs the memory of a few windows, not of the
        whole recording.

        Parameters
        ----------
        path : path
            The audio file, at any sample rate (resampled to the model's).

        Returns
        -------
        Result
            The label of the mean probabilities of the non-silent windows, and each
            window's own.

        Raises
        ------
        AudioError
            A file that cannot be decoded, holds no samples, is silent, or
            (``pad_short=False``) is shorter than one window.
        """
        with AudioFile(path) as f:
            return self._predict(f.mono_blocks, f.samplerate, source=str(path))

    def _predict(
        self, pieces: Callable[[], Iterator[np.ndarray]], sr: int, *, source: str
    ) -> Result:
        """The result for the audio that ``pieces()`` yields at rate ``sr``, read twice
        when the model levels the recording's loudness (once to measure it)."""
        s = self.spec
        gain = 1.0
        if s.loudness_dbfs is not None:  # the whole recording's level, as in training
            energy, n = 0.0, 0
            for y in self._resampled(pieces(), sr):
                energy, n = energy + float(np.dot(y, y.astype(np.float64))), n + len(y)
            gain = loudness_gain(energy, max(n, s.clip_samples), s.loudness_dbfs)
        cutter, windows, pending = WindowCutter(s.clip_samples, s.clip_hop_samples), [], []

        def classify(batch: list[np.ndarray]) -> None:
            cut = np.concatenate(batch)
            if gain != 1.0:
                cut = (cut * gain).astype(np.float32)
            windows.extend(self.classify_windows(cut, start=len(windows) * self._hop))

        for y in self._resampled(pieces(), sr):
            pending.append(cutter.feed(y))
            if sum(map(len, pending)) >= WINDOWS_AT_ONCE:
                classify(pending)
                pending = []
        if cutter.received == 0:
            raise AudioError(f"{source} holds no samples")
        padded = cutter.emitted == 0 and cutter.received < s.clip_samples
        if padded:
            self._short(source, cutter.received / s.sample_rate)
        if padded or (s.clip_tail == "pad" and len(cutter.rest()) >= s.clip_samples / 2):
            pending.append(cut(cutter.rest(), [0], s.clip_samples))
        classify(pending)
        return self._result(windows, source, cutter.received / s.sample_rate, padded)

    def _resampled(self, pieces: Iterable[np.ndarray], sr: int) -> Iterator[np.ndarray]:
        """``pieces`` at the model's rate (soxr's streaming resampler: the same samples
        as resampling the whole recording at once)."""
        if sr == self.spec.sample_rate:
            yield from pieces
            return
        resampler = _resampler(sr, self.spec.sample_rate)
        for y in pieces:
            yield resampler.resample_chunk(y)
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)

    def _short(self, source: str, duration: float) -> None:
        """Warn of (or, without ``pad_short``, refuse) audio shorter than one window."""
        message = (
            f"{source} lasts {duration:.2f} s, shorter than the model's "
            f"{self.spec.clip_seconds:g} s window"
        )
        if not self.pad_short:
            raise AudioError(message)
        warnings.warn(f"{message}: padded with silence", stacklevel=4)

    def _result(
        self, windows: list[WindowResult], source: str, duration: float, padded: bool
    ) -> Result:
        """The recording's result from its windows' (silent ones left out)."""
        heard = [w for w in windows if not w.silent]
        if not heard:
            raise AudioError(
                f"{source} is silent (below {SILENCE_DBFS:g} dBFS): nothing to classify"
            )
        probs = np.array([[w.probabilities[k] for k in self.labels] for w in heard])
        mean = recording_probabilities(
            probs, np.zeros(len(probs), np.int64), aggregate=self.info.aggregate
        )[1][0]
        if self.info.temperature != 1.0:  # calibrated on held-out recordings at export
            mean = tempered(mean[None], self.info.temperature)[0]
        top, runner_up = np.sort(mean)[::-1][:2]
        return Result(
            source=source,
            duration=duration,
            label=self.labels[int(mean.argmax())],
            probabilities=dict(zip(self.labels, map(float, mean))),
            windows=windows,
            uncertain=bool(top - runner_up < self.uncertain_margin),
            window_shares={k: sum(w.label == k for w in heard) / len(heard) for k in self.labels},
            padded=padded,
        )

    # ------------------------------------------------------------------ streams

    def open_stream(self, *, sr: int) -> Stream:
        """A push-style stream: ``feed`` it chunks at ``sr`` Hz, get windows as they complete."""
        return Stream(self, sr=sr)

    def stream(self, chunks: Iterable, *, sr: int) -> Iterator[WindowResult]:
        """Yield each window's result as soon as the chunks (any sizes) complete it."""
        stream = self.open_stream(sr=sr)
        for chunk in chunks:
            yield from stream.feed(chunk)
        yield from stream.close()


class Stream:
    """Windows over audio arriving in chunks of any size, in bounded memory.

    Chunks are resampled to the model's rate as they come (soxr's streaming
    resampler), kept only while a window still needs them (``WindowCutter``), and each
    window is classified the moment its last sample arrives. A bad chunk (NaN, wrong shape)
    raises before the stream's state changes, so the caller can skip it and go on.
    """

    def __init__(self, classifier: Classifier, *, sr: int) -> None:
        self.classifier = classifier
        s = classifier.spec
        self.sr = check_sr(sr)
        self._resampler = None if self.sr == s.sample_rate else _resampler(self.sr, s.sample_rate)
        self._cutter = WindowCutter(s.clip_samples, s.clip_hop_samples)

    def feed(self, chunk) -> list[WindowResult]:
        """Add a chunk (``(n,)`` or ``(channels, n)`` float at the stream's rate); returns
        the windows it completed (often none)."""
        y = _as_mono(chunk, what="audio chunk")
        if self._resampler is not None:
            y = self._resampler.resample_chunk(y)
        return self._windows(y)

    def close(self) -> list[WindowResult]:
        """End of input: the resampler's last samples, and the windows they complete."""
        if self._resampler is None:
            return []
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self._resampler = None
        return self._windows(tail)

    def _windows(self, y: np.ndarray) -> list[WindowResult]:
        first = self._cutter.emitted
        windows = self._cutter.feed(y)
        if not len(windows):
            return []
        spec = self.classifier.spec
        if spec.loudness_dbfs is not None:  # each window alone: a stream has no end to wait for
            windows = np.stack([normalise_loudness(w, spec.loudness_dbfs) for w in windows])
        return self.classifier.classify_windows(windows, start=first * self.classifier._hop)
