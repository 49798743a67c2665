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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soxr

from .._checks import check_sr, is_number
from ..audio import load_audio
from ..errors import AudioError, ParameterError
from ..features.clips import normalise_loudness, subclips
from ..features.extractor import MelExtractor
from ..metrics import recording_probabilities, softmax, tempered
from .backends import open_model
from .shipped import default_model

WINDOWS_AT_ONCE = 64  # windows whose features are computed together

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
        hop, size = s.clip_hop_samples / s.sample_rate, s.clip_samples / s.sample_rate
        out = []
        for i, p in enumerate(probs):
            t0 = start + i * hop
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
        s = self.spec
        if len(y) == 0:
            raise AudioError(f"{source} holds no samples")
        if sr != s.sample_rate:
            y = soxr.resample(y, sr, s.sample_rate, quality="HQ").astype(np.float32)
        duration = len(y) / s.sample_rate
        padded = len(y) < s.clip_samples
        if padded:
            message = (
                f"{source} lasts {duration:.2f} s, shorter than the model's "
                f"{s.clip_seconds:g} s window"
            )
            if not self.pad_short:
                raise AudioError(message)
            warnings.warn(f"{message}: padded with silence", stacklevel=2)
            y = np.pad(y, (0, s.clip_samples - len(y)))
        windows = self.classify_windows(subclips(y, s))  # loudness as in training, if set
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

    def predict_file(self, path: str | os.PathLike) -> Result:
        """Classify an audio file (any format soundfile reads; stereo is mixed down).

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
            A file that cannot be decoded, is silent, or (``pad_short=False``) is shorter
            than one window.
        """
        y, sr = load_audio(path, mono=True)
        return self.predict_array(y, sr, source=str(path))

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
    resampler), written into a ring buffer one window long, and each window is
    classified the moment its last sample arrives. A bad chunk (NaN, wrong shape)
    raises before the stream's state changes, so the caller can skip it and go on.
    """

    def __init__(self, classifier: Classifier, *, sr: int) -> None:
        self.classifier = classifier
        s = classifier.spec
        self.sr = check_sr(sr)
        self._resampler = (
            None
            if self.sr == s.sample_rate
            else soxr.ResampleStream(self.sr, s.sample_rate, 1, dtype="float32", quality="HQ")
        )
        self._size, self._hop = s.clip_samples, s.clip_hop_samples
        self._ring = np.zeros(self._size, np.float32)
        self._written = 0  # samples (at the model's rate) received so far
        self._next_end = self._size  # where the next window ends

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
        done = []
        while len(y):
            take = min(len(y), self._next_end - self._written)
            self._write(y[:take])
            y = y[take:]
            if self._written == self._next_end:
                done.append(self._window())
                self._next_end += self._hop
        if not done:
            return []
        spec = self.classifier.spec
        first_start = (self._next_end - self._hop * len(done) - self._size) / spec.sample_rate
        windows = np.stack(done)
        if spec.loudness_dbfs is not None:  # each window alone: a stream has no end to wait for
            windows = np.stack([normalise_loudness(w, spec.loudness_dbfs) for w in windows])
        return self.classifier.classify_windows(windows, start=first_start)

    def _write(self, piece: np.ndarray) -> None:
        n = len(piece)
        if n > self._size:  # only the last window's worth can still be needed
            self._written += n - self._size
            piece, n = piece[-self._size :], self._size
        at = self._written % self._size
        first = min(n, self._size - at)
        self._ring[at : at + first] = piece[:first]
        self._ring[: n - first] = piece[first:]
        self._written += n

    def _window(self) -> np.ndarray:
        at = self._written % self._size
        return np.concatenate([self._ring[at:], self._ring[:at]])
