"""Major and minor triads: the smallest labelled set that needs a model to hear harmony
(``happy`` major, ``sad`` minor, each at a random pitch), for tests and device checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..._atomic import atomic_path

CHORDS = {"happy": (262.0, 330.0, 392.0), "sad": (262.0, 311.0, 392.0)}  # C major / C minor


def write_chord_set(
    root: str | os.PathLike,
    *,
    per_label: int = 6,
    seconds: float = 4.2,
    sr: int = 16000,
    seed: int = 0,
) -> Path:
    """Write ``root/<happy|sad>/<label><k>.wav``: triads shifted by a random factor from 0.8
    to 1.25, amplitude 0.2 per note, with a little noise (float32 WAV). Returns ``root``.

    Examples
    --------
    >>> write_chord_set("chords", per_label=8)  # doctest: +SKIP
    PosixPath('chords')
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    for label, freqs in CHORDS.items():
        for k in range(per_label):
            shift = rng.uniform(0.8, 1.25)
            y = 0.2 * sum(np.sin(2 * np.pi * f * shift * t) for f in freqs)
            y += 0.01 * rng.standard_normal(len(t))
            with atomic_path(root / label / f"{label}{k}.wav") as tmp:
                sf.write(tmp, y.astype(np.float32), sr, format="WAV")
    return root
