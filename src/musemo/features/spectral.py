"""librosa-compatible spectrogram functions backed by the C++ engine.

Names, order and defaults follow librosa (``y, sr, n_fft, hop_length, ...``),
outputs are shaped ``(..., rows, frames)``. The engine computes in float32:
float32 input gives float32 output; float64 input is accepted and converted.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Callable, Union

import numpy as np

from .. import _native
from .._checks import check_int, check_threads, is_number
from ..errors import ParameterError
from .filters import WindowSpec, get_window, mel_filters, pad_center

PAD_MODES = ("constant", "reflect", "edge")
MAX_N_FFT = 1 << 16

# Which SIMD kernel set to use: "" picks the fastest this CPU runs. Tests and
# benchmarks set MUSEMO_KERNELS to compare the sets with each other.
_KERNELS = os.environ.get("MUSEMO_KERNELS", "")


def available_kernels() -> list[str]:
    """SIMD kernel sets this build can run on this CPU, fastest first."""
    return list(_native.available_kernels())


def check_stft_params(
    *, n_fft, hop_length, win_length, center, pad_mode, power
) -> tuple[int, int, int]:
    """Validate the STFT settings; return (n_fft, hop_length, win_length) as ints."""
    n_fft = check_int("n_fft", n_fft, 1)
    if n_fft & (n_fft - 1) or not 4 <= n_fft <= MAX_N_FFT:
        raise ParameterError(
            f"n_fft={n_fft}: musemo supports powers of two from 4 to {MAX_N_FFT} "
            "(e.g. 512, 1024, 2048, 4096)"
        )
    win_length = n_fft if win_length is None else check_int("win_length", win_length, 1)
    if win_length > n_fft:
        raise ParameterError(f"win_length={win_length} must be <= n_fft={n_fft}")
    if hop_length is None:
        hop_length = win_length // 4
        if hop_length < 1:
            raise ParameterError(
                f"hop_length: the default win_length // 4 is 0 for win_length={win_length}"
            )
    hop_length = check_int("hop_length", hop_length, 1)
    if not isinstance(center, (bool, np.bool_)):
        raise ParameterError(f"center={center!r}: must be True or False")
    if pad_mode not in PAD_MODES:
        raise ParameterError(f"pad_mode={pad_mode!r} is not supported; use one of {PAD_MODES}")
    if not is_number(power) or power <= 0:
        raise ParameterError(f"power={power!r}: must be a positive number")
    return n_fft, hop_length, win_length


def as_audio(y, name: str = "y") -> np.ndarray:
    """Validate an audio array shaped (..., n) and return it as C-contiguous float32.

    Finiteness is checked by the engine during the transform (no extra pass here).
    """
    if not isinstance(y, np.ndarray):
        raise ParameterError(f"{name} must be a numpy.ndarray, got {type(y).__name__}")
    if not np.issubdtype(y.dtype, np.floating):
        hint = " (integer PCM: divide by its full scale, e.g. y.astype(np.float32) / 32768)"
        raise ParameterError(
            f"{name} must be floating-point audio, got dtype {y.dtype}"
            + (hint if np.issubdtype(y.dtype, np.integer) else "")
        )
    if y.ndim == 0:
        raise ParameterError(f"{name} must have at least one dimension (samples), got a scalar")
    if y.shape[-1] == 0 or y.size == 0:
        raise ParameterError(f"{name} is empty: shape {y.shape}")
    with np.errstate(over="ignore"):  # out-of-range float64 becomes inf, reported by the engine
        return np.ascontiguousarray(y, dtype=np.float32)


def _window_key(window: WindowSpec):
    """A hashable key for the window, or None for arrays (not cached)."""
    if isinstance(window, np.ndarray):
        return None
    try:
        hash(window)
    except TypeError:
        return None
    return window


def _build_plan(
    n_fft, hop_length, win_length, window, center, pad_mode, power, mel, db, log1p_scale
) -> _native.SpectrogramPlan:
    fft_window = pad_center(get_window(window, win_length), n_fft).astype(np.float32)
    mel = np.zeros((0, n_fft // 2 + 1), np.float32) if mel is None else mel
    db_amin, db_ref = (None, 1.0) if db is None else db
    return _native.SpectrogramPlan(
        n_fft=n_fft,
        hop_length=hop_length,
        center=bool(center),
        pad_mode=pad_mode,
        window=fft_window,
        power=float(power),
        mel=np.ascontiguousarray(mel, dtype=np.float32),
        n_mels=mel.shape[0],
        kernels=_KERNELS,
        db_amin=db_amin,
        db_ref=db_ref,
        log1p_scale=log1p_scale,
    )


@functools.lru_cache(maxsize=64)
def _cached_plan(*args, mel_key, db, log1p_scale):
    mel = None if mel_key is None else _cached_mel(*mel_key)
    return _build_plan(*args, mel, db, log1p_scale)


@functools.lru_cache(maxsize=64)
def _cached_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm) -> np.ndarray:
    return mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)


def make_plan(
    *,
    n_fft,
    hop_length,
    win_length,
    window,
    center,
    pad_mode,
    power,
    mel_key=None,
    db=None,
    log1p_scale=None,
) -> _native.SpectrogramPlan:
    """A plan for these (validated) settings; shared from a cache when they are hashable.

    ``mel_key`` is ``(sr, n_fft, n_mels, fmin, fmax, htk, norm)`` for a mel plan,
    None for a power spectrogram. ``db`` is ``(amin, ref)`` for a plan whose output
    is ``10 log10(max(x, amin)) - 10 log10(max(amin, ref))``; ``log1p_scale`` a scale
    ``c`` for a plan whose output is ``log10(1 + c x)``; both computed in the engine.
    """
    args = (n_fft, hop_length, win_length, window, center, pad_mode, float(power))
    if _window_key(window) is not None:
        return _cached_plan(*args, mel_key=mel_key, db=db, log1p_scale=log1p_scale)
    mel = None if mel_key is None else _cached_mel(*mel_key)
    return _build_plan(*args, mel, db, log1p_scale)


def n_frames_for(plan: _native.SpectrogramPlan, n_samples: int, *, center: bool, n_fft: int) -> int:
    """Frames of the output for a signal of n_samples, refusing signals too short to frame."""
    if not center and n_samples < n_fft:
        raise ParameterError(
            f"n_fft={n_fft} is too large for uncentered analysis of a signal of "
            f"{n_samples} samples; use center=True or a smaller n_fft"
        )
    return int(plan.n_frames(n_samples))


def _nonfinite_error(name: str, y: np.ndarray, where) -> ParameterError:
    row, index = where
    flat = y.reshape(-1, y.shape[-1])
    loc = f"sample {index}"
    if flat.shape[0] > 1:
        loc += f" of channel {tuple(int(i) for i in np.unravel_index(row, y.shape[:-1]))}"
    value = flat[row, index]
    why = "beyond the float32 range" if np.isfinite(value) else "not finite"
    return ParameterError(f"{name} is not finite everywhere: {loc} is {value} ({why})")


def run_plan(
    plan: _native.SpectrogramPlan,
    y: np.ndarray,
    *,
    center: bool,
    n_fft: int,
    threads: int = 1,
    name: str = "y",
) -> np.ndarray:
    """Apply a plan to audio shaped (..., n); returns float32 (..., rows, frames)."""
    y32 = as_audio(y, name)
    frames = n_frames_for(plan, y32.shape[-1], center=center, n_fft=n_fft)
    flat = y32.reshape(-1, y32.shape[-1])
    out = np.empty((flat.shape[0], plan.n_rows, frames), dtype=np.float32)
    bad = plan.compute(flat, out, threads)
    if bad is not None:
        raise _nonfinite_error(name, y, bad)
    return out.reshape(y32.shape[:-1] + out.shape[1:])


def stft_power(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    threads: int = 1,
) -> np.ndarray:
    """Power spectrogram: ``np.abs(librosa.stft(y, ...)) ** power``.

    Parameters
    ----------
    y : numpy.ndarray
        Audio, ``(..., n)``, float32 or float64 (computed in float32).
    n_fft : int
        FFT size: a power of two from 4 to 65536.
    hop_length : int, optional
        Samples between frames; default ``win_length // 4``, as in librosa.
    win_length : int, optional
        Window length (``<= n_fft``, zero-padded to it); default ``n_fft``.
    window : str, tuple or numpy.ndarray
        A window name (``"hann"``, ``("kaiser", beta)``, ...) or ``win_length`` samples.
    center : bool
        Pad ``n_fft // 2`` samples on each side so frame ``t`` is centred at ``t * hop_length``.
    pad_mode : str
        ``"constant"`` (librosa's default), ``"reflect"`` or ``"edge"``.
    power : float
        Exponent of the magnitude (2: power, 1: magnitude).
    threads : int
        Threads over the channels of a multi-channel ``y``.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., 1 + n_fft // 2, frames)``; ``frames = 1 + n // hop_length`` when
        centred.

    Raises
    ------
    ParameterError
        Integer, empty or non-finite audio, or settings out of range; the message names
        the parameter (or the first bad sample).

    Examples
    --------
    >>> import numpy as np, musemo
    >>> musemo.stft_power(np.zeros(22050, np.float32), n_fft=1024, hop_length=256).shape
    (513, 87)
    """
    return _transform(
        y,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode=pad_mode,
        power=power,
        threads=threads,
    )


def melspectrogram(
    *,
    y: np.ndarray | None = None,
    sr: float = 22050,
    S: np.ndarray | None = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window: WindowSpec = "hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    threads: int = 1,
) -> np.ndarray:
    """Mel spectrogram, a drop-in for ``librosa.feature.melspectrogram``.

    Parameters
    ----------
    y : numpy.ndarray, optional
        Audio, ``(..., n)``, float32 or float64.
    sr : float
        Sample rate of ``y`` (Hz).
    S : numpy.ndarray, optional
        A power spectrogram ``(..., 1 + n_fft // 2, t)`` instead of ``y``.
    n_fft, hop_length, win_length, window, center, pad_mode, power
        As for :func:`stft_power` (here ``hop_length`` defaults to 512, as in librosa).
    n_mels, fmin, fmax, htk, norm
        The filterbank, as for :func:`mel_filters`.
    threads : int
        Threads over the channels of a multi-channel ``y``.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., n_mels, t)``.

    Raises
    ------
    ParameterError
        Both or neither of ``y`` and ``S``, bad audio or settings out of range.

    See Also
    --------
    MelExtractor : the same features from a :class:`FeatureSpec`, with the plan built once.

    Examples
    --------
    >>> import numpy as np, musemo
    >>> y = np.random.default_rng(0).standard_normal(5 * 44100).astype(np.float32)
    >>> musemo.melspectrogram(y=y, sr=44100).shape
    (128, 431)
    """
    if S is not None:
        if y is not None:
            raise ParameterError("pass either y or S, not both")
        S = np.asarray(S)
        if not np.issubdtype(S.dtype, np.floating) or S.ndim < 2:
            raise ParameterError(
                f"S must be a real spectrogram (..., bins, frames), got {S.dtype} {S.shape}"
            )
        if n_fft // 2 + 1 != S.shape[-2]:
            n_fft = 2 * (S.shape[-2] - 1)
        mel = _cached_mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)
        return np.matmul(mel, S.astype(np.float32, copy=False))
    if y is None:
        raise ParameterError("melspectrogram needs y (audio) or S (a power spectrogram)")
    return _transform(
        y,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode=pad_mode,
        power=power,
        threads=threads,
        mel_key=(sr, n_fft, n_mels, fmin, fmax, htk, norm),
    )


def _transform(
    y, *, n_fft, hop_length, win_length, window, center, pad_mode, power, threads, mel_key=None
) -> np.ndarray:
    """Validate the settings, fetch (or build) their plan and run it on ``y``."""
    n_fft, hop_length, win_length = check_stft_params(
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        center=center,
        pad_mode=pad_mode,
        power=power,
    )
    if mel_key is not None:
        try:
            hash(mel_key)
        except TypeError as exc:
            raise ParameterError(f"mel settings must be scalars: {mel_key}") from exc
    plan = make_plan(
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode=pad_mode,
        power=power,
        mel_key=mel_key,
    )
    return run_plan(plan, y, center=center, n_fft=n_fft, threads=check_threads(threads))


RefSpec = Union[float, Callable[[np.ndarray], float]]


def power_to_db(
    S: np.ndarray, *, ref: RefSpec = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
) -> np.ndarray:
    """Power to decibels, ``10 * log10(S / ref)``, with librosa's ``power_to_db`` semantics.

    Parameters
    ----------
    S : numpy.ndarray
        A real power spectrogram.
    ref : float or callable
        The reference power, or a function of ``S`` giving it (e.g. ``np.max``).
    amin : float
        Values (and ``ref``) are floored at this before the logarithm.
    top_db : float, optional
        Clip the result to ``top_db`` below its maximum (over the whole array).

    Returns
    -------
    numpy.ndarray
        ``S`` in dB, same shape and dtype.

    Raises
    ------
    ParameterError
        A complex or integer ``S``, ``amin <= 0`` or a negative ``top_db``.

    Examples
    --------
    >>> import numpy as np, musemo
    >>> musemo.power_to_db(np.array([1.0, 10.0, 1e-12]), top_db=None).round(1)
    array([  0.,  10., -100.])
    """
    S = np.asarray(S)
    if np.iscomplexobj(S) or not np.issubdtype(S.dtype, np.floating):
        raise ParameterError(
            f"S must be a real floating-point power spectrogram, got dtype {S.dtype}"
        )
    if not is_number(amin) or amin <= 0:
        raise ParameterError(f"amin={amin!r}: must be strictly positive")
    if top_db is not None and not (is_number(top_db) and top_db >= 0):
        raise ParameterError(f"top_db={top_db!r}: must be a non-negative number or None")
    ref_value = ref(S) if callable(ref) else np.abs(ref)
    log_spec = 10.0 * np.log10(np.maximum(S.dtype.type(amin), S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


__all__: Sequence[str] = (
    "available_kernels",
    "melspectrogram",
    "power_to_db",
    "stft_power",
)
