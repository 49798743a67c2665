"""Cutting recordings into sub-clips, and loudness normalisation: the windows a model
sees, the same in training and on the device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .spec import FeatureSpec


def subclip_starts(n_samples: int, spec: FeatureSpec) -> list[int]:
    """Start samples of the sub-clips of a recording of ``n_samples`` samples."""
    size, hop = spec.clip_samples, spec.clip_hop_samples
    starts = list(range(0, max(n_samples - size, -1) + 1, hop))
    last = starts[-1] + hop if starts else 0
    if spec.clip_tail == "pad" and n_samples - last >= size / 2:
        starts.append(last)
    return starts


def normalise_loudness(y: np.ndarray, dbfs: float) -> np.ndarray:
    """``y`` scaled to an RMS level of ``dbfs`` (silence is left alone)."""
    gain = loudness_gain(float(np.sum(np.square(y, dtype=np.float64))), len(y), dbfs)
    return y if gain == 1.0 else (y * gain).astype(np.float32)


def loudness_gain(energy: float, n_samples: int, dbfs: float) -> float:
    """The gain that brings ``n_samples`` samples whose squares sum to ``energy`` to an
    RMS level of ``dbfs``; 1 for silence."""
    rms = float(np.sqrt(energy / n_samples)) if n_samples else 0.0
    return 1.0 if rms == 0.0 else 10 ** (dbfs / 20) / rms


def subclips(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """``(n_subclips, clip_samples)`` float32; a padded tail is filled with silence.

    With ``spec.loudness_dbfs`` the whole recording is first brought to that level.
    """
    if spec.loudness_dbfs is not None:
        y = normalise_loudness(y, spec.loudness_dbfs)
    return cut(y, subclip_starts(len(y), spec), spec.clip_samples)


def cut(y: np.ndarray, starts: Sequence[int], size: int) -> np.ndarray:
    """``(len(starts), size)`` float32 pieces of ``y``; past its end, silence."""
    out = np.zeros((len(starts), size), np.float32)
    for i, start in enumerate(starts):
        piece = y[start : start + size]
        out[i, : len(piece)] = piece
    return out


class WindowCutter:
    """Windows of ``size`` samples every ``hop`` over audio that arrives in pieces of any
    length, keeping only the samples a later window still needs: an hour of audio is cut
    in the memory of one piece and one window.

    ``feed`` returns the windows each piece completes, as ``subclips`` cuts them from the
    whole recording; ``rest`` is what lies past the last window's start, for a padded tail.
    """

    def __init__(self, size: int, hop: int) -> None:
        self.size, self.hop = size, hop
        self.received = 0  # samples fed so far
        self.emitted = 0  # windows returned so far
        self._buf = np.zeros(0, np.float32)  # samples from self._at on
        self._at = 0

    @property
    def next_start(self) -> int:
        """Where the next window starts (samples from the start)."""
        return self.emitted * self.hop

    def feed(self, y: np.ndarray) -> np.ndarray:
        """Add ``y`` (float32 ``(n,)``); the ``(k, size)`` windows it completes."""
        self._buf = np.concatenate([self._buf, y])  # a copy: the caller may reuse ``y``
        self.received += len(y)
        first, end = self.next_start, self.received - self.size
        n = (end - first) // self.hop + 1 if end >= first else 0
        out = cut(self._buf, [first - self._at + i * self.hop for i in range(n)], self.size)
        self.emitted += n
        keep = min(self.next_start, self.received)
        self._buf, self._at = self._buf[keep - self._at :], keep
        return out

    def rest(self) -> np.ndarray:
        """The samples from the next window's start to the end of what was fed."""
        return self._buf[max(0, self.next_start - self._at) :]
