"""A reusable mel-spectrogram extractor built once from a FeatureSpec."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._checks import check_threads
from ..errors import ParameterError
from .spec import FeatureSpec
from .spectral import _nonfinite_error, as_audio, make_plan, run_plan


class MelExtractor:
    """Computes the (log-)mel spectrogram a :class:`FeatureSpec` describes.

    The plan (window, FFT tables, sparse filterbank) is built once; calls are
    thread-safe and release the GIL while the engine runs.

    Parameters
    ----------
    spec : FeatureSpec, optional
        The features; default ``FeatureSpec()`` (the paper's: 44.1 kHz, 2048 / 512,
        128 Slaney mels, dB with an 80 dB floor).

    Examples
    --------
    >>> import numpy as np, musemo
    >>> extractor = musemo.MelExtractor(musemo.FeatureSpec(sample_rate=22050, n_mels=64))
    >>> extractor.compute(np.zeros(5 * 22050, np.float32), sr=22050).shape
    (64, 216)
    """

    def __init__(self, spec: FeatureSpec | None = None) -> None:
        self.spec = spec if spec is not None else FeatureSpec()
        s = self.spec
        self._plan = make_plan(
            n_fft=s.n_fft,
            hop_length=s.hop_length,
            win_length=s.win_length or s.n_fft,
            window=s.window,
            center=s.center,
            pad_mode=s.pad_mode,
            power=s.power,
            mel_key=(s.sample_rate, s.n_fft, s.n_mels, s.fmin, s.fmax, s.htk, s.norm),
            # The engine applies the logarithm; a per-clip reference ("max") is
            # subtracted afterwards, as it needs the whole clip.
            db=(s.db_amin, 1.0 if s.db_ref == "max" else s.db_ref) if s.db else None,
            log1p_scale=s.log1p_scale,
        )

    @property
    def kernels(self) -> str:
        """The SIMD kernel set in use ("avx512", "avx2" or "generic")."""
        return self._plan.kernels

    def _check_sr(self, sr: int | None) -> None:
        if sr is not None and sr != self.spec.sample_rate:
            raise ParameterError(
                f"audio at sr={sr} Hz given to an extractor for {self.spec.sample_rate} Hz; "
                f"resample first (musemo.load_audio(path, sr={self.spec.sample_rate}))"
            )

    def _finish(self, S: np.ndarray) -> np.ndarray:
        """Complete power_to_db's semantics on the engine's dB output, in place."""
        s = self.spec
        if s.db and s.db_ref == "max":
            S -= S.max()
        if s.db and s.db_top is not None:
            np.maximum(S, S.max() - np.float32(s.db_top), out=S)
        return S

    def compute(self, y: np.ndarray, *, sr: int | None = None, threads: int = 1) -> np.ndarray:
        """Features of ``y`` shaped ``(..., n)`` -> float32 ``(..., n_mels, frames)``.

        Like ``power_to_db`` on the whole output: a ``"max"`` reference and the dB floor
        are shared by every channel (for clips that stand alone, use ``compute_batch``).
        """
        self._check_sr(sr)
        s = self.spec
        mel = run_plan(
            self._plan, y, center=s.center, n_fft=s.n_fft, threads=check_threads(threads)
        )
        return self._finish(mel)

    def compute_batch(
        self, ys: Sequence[np.ndarray], *, sr: int | None = None, threads: int = 1
    ) -> list[np.ndarray]:
        """Features of many 1-D signals (any lengths), spread over ``threads`` threads;
        each on its own (its own ``"max"`` reference and dB floor)."""
        self._check_sr(sr)
        threads = check_threads(threads)
        s = self.spec
        signals = []
        for i, y in enumerate(ys):
            y32 = as_audio(y, name=f"ys[{i}]")
            if y32.ndim != 1:
                raise ParameterError(
                    f"ys[{i}] must be one-dimensional (mono), got shape {y32.shape}"
                )
            if not s.center and y32.shape[0] < s.n_fft:
                raise ParameterError(
                    f"ys[{i}] has {y32.shape[0]} samples, fewer than n_fft={s.n_fft} "
                    "(uncentred analysis)"
                )
            signals.append(y32)
        outs = [np.empty((s.n_mels, s.n_frames(len(y))), dtype=np.float32) for y in signals]
        bad = self._plan.compute_many(signals, outs, threads)
        if bad is not None:
            i, index = bad
            raise _nonfinite_error(f"ys[{i}]", ys[i][np.newaxis], (0, index))
        return [self._finish(m) for m in outs]

    def __repr__(self) -> str:
        return f"MelExtractor({self.spec!r}, kernels={self.kernels!r})"
