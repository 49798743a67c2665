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
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms == 0.0:
        return y
    return (y * (10 ** (dbfs / 20) / rms)).astype(np.float32)


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
