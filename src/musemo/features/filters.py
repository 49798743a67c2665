"""Windows and mel filterbanks with librosa's (and scipy's) exact definitions.

Everything here is computed in float64 with numpy, once per setting; the C++
engine receives the result.
"""

from __future__ import annotations

import warnings
from typing import Union

import numpy as np

from .._checks import check_int, is_number
from ..errors import ParameterError

WindowSpec = Union[str, tuple, np.ndarray]

# scipy.signal.windows.general_cosine coefficients, by the names scipy and librosa accept.
_COSINE_WINDOWS = {
    "hann": (0.5, 0.5),
    "hamming": (0.54, 0.46),
    "blackman": (0.42, 0.50, 0.08),
    "blackmanharris": (0.35875, 0.48829, 0.14128, 0.01168),
    "nuttall": (0.3635819, 0.4891775, 0.1365995, 0.0106411),
    "flattop": (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368),
}
_ALIASES = {
    "han": "hann",
    "hamm": "hamming",
    "ham": "hamming",
    "black": "blackman",
    "blk": "blackman",
    "blackharr": "blackmanharris",
    "bkh": "blackmanharris",
    "nutl": "nuttall",
    "nut": "nuttall",
    "flat": "flattop",
    "flt": "flattop",
    "boxcar": "boxcar",
    "box": "boxcar",
    "ones": "boxcar",
    "rect": "boxcar",
    "rectangular": "boxcar",
    "bartlett": "bartlett",
    "bart": "bartlett",
    "brt": "bartlett",
    "triang": "triang",
    "triangle": "triang",
    "tri": "triang",
    "cosine": "cosine",
    "halfcosine": "cosine",
}
WINDOW_NAMES = tuple(sorted(set(_COSINE_WINDOWS) | set(_ALIASES) | {"kaiser"}))


def _symmetric_window(name: str, m: int, param: float | None) -> np.ndarray:
    """scipy.signal.get_window's symmetric window of m points."""
    if name in _COSINE_WINDOWS:
        fac = np.linspace(-np.pi, np.pi, m)
        w = np.zeros(m)
        for k, a in enumerate(_COSINE_WINDOWS[name]):
            w += a * np.cos(k * fac)
        return w
    if name == "boxcar":
        return np.ones(m)
    if name == "bartlett":
        n = np.arange(0, m)
        return np.where(np.less_equal(n, (m - 1) / 2.0), 2.0 * n / (m - 1), 2.0 - 2.0 * n / (m - 1))
    if name == "triang":
        n = np.arange(1, (m + 1) // 2 + 1)
        if m % 2 == 0:
            w = (2 * n - 1.0) / m
            return np.r_[w, w[::-1]]
        w = 2 * n / (m + 1.0)
        return np.r_[w, w[-2::-1]]
    if name == "cosine":
        return np.sin(np.pi / m * (np.arange(0, m) + 0.5))
    if name == "kaiser":
        return np.kaiser(m, param)
    raise AssertionError(name)  # pragma: no cover - names are checked by the caller


def get_window(window: WindowSpec, win_length: int) -> np.ndarray:
    """Periodic ("fftbins") window of ``win_length`` samples, as ``scipy.signal.get_window``.

    ``window`` is a name (``"hann"``, ``"hamming"``, ``"blackman"``, ``"blackmanharris"``,
    ``"nuttall"``, ``"flattop"``, ``"boxcar"``, ``"bartlett"``, ``"triang"``, ``"cosine"``),
    a tuple ``("kaiser", beta)``, or an array of exactly ``win_length`` samples.
    """
    if isinstance(window, np.ndarray):
        if window.ndim != 1 or len(window) != win_length:
            raise ParameterError(
                f"window array has shape {window.shape}; expected ({win_length},) = (win_length,)"
            )
        w = window.astype(np.float64)
        if not np.isfinite(w).all():
            raise ParameterError("window array contains NaN or infinite values")
        return w
    param = None
    if isinstance(window, tuple):
        if len(window) != 2 or window[0] != "kaiser" or not is_number(window[1]):
            raise ParameterError(f"window={window!r}: the only tuple accepted is ('kaiser', beta)")
        name, param = "kaiser", float(window[1])
    elif isinstance(window, str):
        name = _ALIASES.get(window, window)
        if name not in _COSINE_WINDOWS and name not in set(_ALIASES.values()):
            hint = " ('kaiser' needs a beta: pass ('kaiser', beta))" if name == "kaiser" else ""
            raise ParameterError(
                f"unsupported window={window!r}{hint}; choose one of "
                f"{', '.join(n for n in WINDOW_NAMES if n != 'kaiser')}, "
                "('kaiser', beta) or an array"
            )
    else:
        raise ParameterError(
            f"window must be a name, a tuple or an array, got {type(window).__name__}"
        )
    if win_length == 1:
        return np.ones(1)
    return _symmetric_window(name, win_length + 1, param)[:-1]


def pad_center(w: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``w`` on both sides to ``size`` samples, centred like librosa.util.pad_center."""
    lpad = (size - len(w)) // 2
    return np.pad(w, (lpad, size - len(w) - lpad))


def hz_to_mel(frequencies, *, htk: bool = False):
    """Hz to mels: Slaney's scale (linear below 1 kHz, logarithmic above) or HTK's."""
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = frequencies >= min_log_hz
    return np.where(
        log_t,
        min_log_mel + np.log(np.maximum(frequencies, min_log_hz) / min_log_hz) / logstep,
        mels,
    )


def mel_to_hz(mels, *, htk: bool = False):
    """Mels to Hz, the inverse of :func:`hz_to_mel`."""
    mels = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    return np.where(
        log_t,
        min_log_hz * np.exp(logstep * (np.where(log_t, mels, min_log_mel) - min_log_mel)),
        freqs,
    )


def mel_frequencies(
    n_mels: int = 128, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False
):
    """``n_mels`` frequencies (Hz) evenly spaced on the mel scale from ``fmin`` to ``fmax``."""
    mels = np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels)
    return mel_to_hz(mels, htk=htk)


def check_mel_params(
    *, sr: float, n_fft: int, n_mels: int, fmin: float, fmax: float | None, norm
) -> float:
    """Validate mel settings; return the effective fmax."""
    if not is_number(sr) or sr <= 0:
        raise ParameterError(f"sr={sr!r}: the sample rate must be a positive number")
    check_int("n_mels", n_mels, 1)
    check_int("n_fft", n_fft, 1)
    fmax_eff = float(sr) / 2 if fmax is None else fmax
    if not is_number(fmin) or fmin < 0:
        raise ParameterError(f"fmin={fmin!r}: must be a finite frequency >= 0 Hz")
    if not is_number(fmax_eff) or fmax_eff <= fmin:
        raise ParameterError(f"fmax={fmax!r}: must be a finite frequency above fmin={fmin}")
    if fmax_eff > float(sr) / 2:
        raise ParameterError(f"fmax={fmax!r} is above the Nyquist frequency sr/2 = {float(sr) / 2}")
    if not (norm is None or norm == "slaney" or ((is_number(norm) or norm == np.inf) and norm > 0)):
        raise ParameterError(
            f"norm={norm!r}: use 'slaney', None or a positive number (p-norm, np.inf)"
        )
    return float(fmax_eff)


def mel_filters(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | float | None = "slaney",
    dtype=np.float32,
) -> np.ndarray:
    """Mel filterbank, as ``librosa.filters.mel``.

    Parameters
    ----------
    sr : float
        Sample rate (Hz).
    n_fft : int
        FFT size.
    n_mels : int
        Mel bands.
    fmin, fmax : float
        Lowest and highest frequency (Hz); ``fmax`` defaults to ``sr / 2``.
    htk : bool
        HTK's mel scale instead of Slaney's.
    norm : {"slaney", None} or float
        Slaney's area normalisation, none, or a p-norm of each filter.
    dtype : numpy.dtype
        Computed in float64 and rounded once to this.

    Returns
    -------
    numpy.ndarray
        ``(n_mels, 1 + n_fft // 2)`` weights; warns when some band gets no FFT bin.

    Raises
    ------
    ParameterError
        Settings out of range (``fmax > sr / 2``, ``n_mels < 1``, ...).

    Examples
    --------
    >>> import musemo
    >>> musemo.mel_filters(sr=22050, n_fft=2048, n_mels=64).shape
    (64, 1025)
    """
    fmax = check_mel_params(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, norm=norm)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    elif norm is not None:
        if np.isinf(norm):
            length = np.max(np.abs(weights), axis=-1, keepdims=True)
        else:
            length = np.sum(np.abs(weights) ** norm, axis=-1, keepdims=True) ** (1.0 / norm)
        length[length < np.finfo(np.float64).tiny] = 1.0
        weights /= length
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn(
            f"Empty filters detected in mel frequency basis: some of the {n_mels} mel bands get no "
            f"FFT bin at sr={sr}, n_fft={n_fft}; use fewer mels or a larger n_fft.",
            stacklevel=2,
        )
    return weights.astype(dtype)
