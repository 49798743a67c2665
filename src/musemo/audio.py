"""Reading audio files: soundfile to decode, soxr to resample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, ParameterError


def load_audio(
    path: str | os.PathLike, *, sr: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, FLAC, OGG, MP3, ...) to float32.

    Returns ``(y, sr)``: ``y`` is ``(n,)`` when ``mono`` (channels averaged),
    else ``(channels, n)``. With ``sr`` the audio is resampled (soxr, high quality).
    """
    if sr is not None and (
        isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0
    ):
        raise ParameterError(f"sr={sr!r}: must be a positive integer sample rate (Hz) or None")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such audio file: {path}")
    try:
        data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot decode audio file {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    y = data.mean(axis=1) if mono else data.T
    if sr is not None and sr != native_sr:
        y = soxr.resample(y.T, native_sr, sr, quality="HQ").T
        native_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(native_sr)
