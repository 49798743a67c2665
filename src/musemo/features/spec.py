"""The feature spec: one frozen, JSON-serialisable description of the features.

Training writes it into checkpoints, export into model files, and the edge
runtime reads it back, so a model and its features cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .._checks import check_int, is_number
from ..errors import ParameterError
from .filters import check_mel_params, get_window
from .spectral import check_stft_params

SPEC_FORMAT = "musemo.feature_spec/1"
# Bumped when the features of a spec change, so caches of the old ones are not reused.
# 2: each sub-clip's dB reference and 80 dB floor are its own, not its recording's.
FEATURES_REVISION = 2


MAX_SAMPLE_RATE = 768_000
MAX_MELS = 1024
MAX_CLIP_SECONDS = 600


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Settings of a (log-)mel spectrogram and of the sub-clips a model sees.

    Defaults follow the paper: 44.1 kHz, n_fft 2048, hop 512, 128 Slaney mels,
    power 2, dB with an 80 dB floor, 5 s sub-clips without overlap (128 x 431).

    ``db_ref`` is a fixed reference power or ``"max"`` (each clip relative to its
    own maximum, like ``ref=np.max``); ``db=False`` keeps linear power, or with
    ``log1p_scale=c`` compresses it as ``log10(1 + c x)`` (musicnn's front end: 10000).
    ``clip_hop_seconds`` (default: ``clip_seconds``) spaces the sub-clips;
    ``clip_tail`` says what happens to a last piece shorter than a sub-clip:
    ``"drop"`` it, or ``"pad"`` it with silence when it is at least half a sub-clip.
    ``loudness_dbfs`` (None: off) scales each recording to that RMS level before
    it is cut, so a model cannot lean on how loud a recording is.
    ``input_mean`` / ``input_std`` normalise a model's input; training sets them
    from its training split.
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    win_length: int | None = None
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | float | None = "slaney"
    db: bool = True
    db_ref: float | str = 1.0
    db_amin: float = 1e-10
    db_top: float | None = 80.0
    log1p_scale: float | None = None
    clip_seconds: float = 5.0
    clip_hop_seconds: float | None = None
    clip_tail: str = "drop"
    loudness_dbfs: float | None = None
    input_mean: float | None = None
    input_std: float | None = None

    def __post_init__(self) -> None:
        self._check_sizes()
        self._check_spectrogram()
        self._check_decibels()
        self._check_clips()
        self._check_input()

    def _check_sizes(self) -> None:
        check_int("sample_rate", self.sample_rate, 1)
        # Specs also come from files (checkpoints, model metadata): bound what sizes the
        # buffers, so an absurd one is refused before anything is allocated.
        if self.sample_rate > MAX_SAMPLE_RATE:
            raise ParameterError(
                f"sample_rate={self.sample_rate}: a feature spec allows at most "
                f"{MAX_SAMPLE_RATE} Hz"
            )
        if isinstance(self.n_mels, int) and self.n_mels > MAX_MELS:
            raise ParameterError(
                f"n_mels={self.n_mels}: a feature spec allows at most {MAX_MELS} mel bands"
            )
        if is_number(self.clip_seconds) and not 0 < self.clip_seconds <= MAX_CLIP_SECONDS:
            raise ParameterError(
                f"clip_seconds={self.clip_seconds!r}: a sub-clip lasts more than 0 and at "
                f"most {MAX_CLIP_SECONDS} seconds"
            )

    def _check_spectrogram(self) -> None:
        if not isinstance(self.window, str):
            raise ParameterError(f"window={self.window!r}: a feature spec names its window")
        check_stft_params(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            center=self.center,
            pad_mode=self.pad_mode,
            power=self.power,
        )
        get_window(self.window, self.win_length or self.n_fft)
        check_mel_params(
            sr=self.sample_rate,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            norm=self.norm,
        )
        if not isinstance(self.htk, bool) or not isinstance(self.db, bool):
            raise ParameterError("htk and db must be True or False")

    def _check_decibels(self) -> None:
        if not (self.db_ref == "max" or (is_number(self.db_ref) and self.db_ref > 0)):
            raise ParameterError(f"db_ref={self.db_ref!r}: use a positive number or 'max'")
        if not (is_number(self.db_amin) and self.db_amin > 0):
            raise ParameterError(f"db_amin={self.db_amin!r}: must be a positive number")
        if not (self.db_top is None or (is_number(self.db_top) and self.db_top >= 0)):
            raise ParameterError(f"db_top={self.db_top!r}: must be a non-negative number or None")
        if self.log1p_scale is not None:
            if not (is_number(self.log1p_scale) and 0 < self.log1p_scale <= 1e30):
                raise ParameterError(
                    f"log1p_scale={self.log1p_scale!r}: a positive scale c for log10(1 + c x), "
                    "or None"
                )
            if self.db:
                raise ParameterError("log1p_scale compresses instead of dB: set db=False with it")

    def _check_clips(self) -> None:
        if not (is_number(self.clip_seconds) and self.clip_samples >= self.n_fft // 2):
            raise ParameterError(
                f"clip_seconds={self.clip_seconds!r}: must be a number of seconds "
                f"of at least n_fft / 2 samples"
            )
        if self.clip_hop_seconds is not None and not (
            is_number(self.clip_hop_seconds) and self.clip_hop_seconds > 0
        ):
            raise ParameterError(f"clip_hop_seconds={self.clip_hop_seconds!r}: must be > 0 or None")
        if self.clip_tail not in ("drop", "pad"):
            raise ParameterError(f"clip_tail={self.clip_tail!r}: use 'drop' or 'pad'")
        if self.loudness_dbfs is not None and not (
            is_number(self.loudness_dbfs) and -80 <= self.loudness_dbfs <= 0
        ):
            raise ParameterError(
                f"loudness_dbfs={self.loudness_dbfs!r}: an RMS level in dBFS from -80 to 0, or None"
            )

    def _check_input(self) -> None:
        if (self.input_mean is None) != (self.input_std is None):
            raise ParameterError("input_mean and input_std are set together")
        if self.input_mean is not None and not (
            is_number(self.input_mean) and is_number(self.input_std) and self.input_std > 0
        ):
            raise ParameterError(
                f"input_mean={self.input_mean!r}, input_std={self.input_std!r}: "
                "need finite numbers and a positive std"
            )

    @property
    def effective_fmax(self) -> float:
        """The upper mel frequency in Hz: ``fmax``, or sample_rate / 2 when unset."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    def n_frames(self, n_samples: int) -> int:
        """Frames produced from ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 0 if n_samples < self.n_fft else 1 + (n_samples - self.n_fft) // self.hop_length

    @property
    def clip_samples(self) -> int:
        """Samples in one sub-clip."""
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def clip_hop_samples(self) -> int:
        """Samples between the starts of consecutive sub-clips."""
        hop = self.clip_seconds if self.clip_hop_seconds is None else self.clip_hop_seconds
        return max(1, int(round(hop * self.sample_rate)))

    @property
    def clip_shape(self) -> tuple[int, int]:
        """``(n_mels, frames)`` of one sub-clip's features, e.g. (128, 431)."""
        return self.n_mels, self.n_frames(self.clip_samples)

    def feature_key(self) -> str:
        """A short hash of everything that changes the cached features (not the
        input normalisation): two specs with the same key give the same sub-clips."""
        data = self.to_dict()
        data.pop("input_mean")
        data.pop("input_std")
        if data["log1p_scale"] is None:  # specs from before the setting keep their key
            data.pop("log1p_scale")
        data["revision"] = FEATURES_REVISION
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict, with its ``format`` marker."""
        return {"format": SPEC_FORMAT, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        """The spec as JSON text (sorted keys), as stored beside caches and in models."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Rebuild a spec, refusing unknown formats and fields (missing fields take defaults)."""
        if not isinstance(data, dict):
            raise ParameterError(f"a feature spec must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", None)
        if fmt != SPEC_FORMAT:
            raise ParameterError(
                f"unknown feature spec format {fmt!r}; this musemo reads {SPEC_FORMAT!r}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(f"unknown feature spec fields: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Rebuild a spec from ``to_json`` text; bad JSON or settings raise ``ParameterError``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"feature spec is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


# musicnn's front end (Pons & Serra): librosa's mel at 16 kHz, 512 / 256, 96 Slaney mels,
# log10(1 + 10000 x); its patches are 187 frames (186 hops: 2.976 s).
MUSICNN_FEATURES = {
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "window": "hann",
    "center": True,
    "pad_mode": "constant",
    "power": 2.0,
    "fmin": 0.0,
    "fmax": None,
    "htk": False,
    "norm": "slaney",
    "db": False,
    "log1p_scale": 10000.0,
}


def musicnn_spec(**clips: Any) -> FeatureSpec:
    """The features a pretrained musicnn expects, in sub-clips of 187 frames (2.976 s)
    unless ``clips`` (``clip_seconds``, ``clip_hop_seconds``, ``clip_tail``,
    ``loudness_dbfs``) says otherwise; other settings are refused."""
    allowed = {"clip_seconds", "clip_hop_seconds", "clip_tail", "loudness_dbfs"}
    if set(clips) - allowed:
        raise ParameterError(
            f"musicnn's features are fixed; only {', '.join(sorted(allowed))} can change, "
            f"not {', '.join(sorted(set(clips) - allowed))}"
        )
    return FeatureSpec(**MUSICNN_FEATURES, **{"clip_seconds": 186 * 256 / 16000, **clips})


def differences_from_musicnn(spec: FeatureSpec) -> list[str]:
    """The settings of ``spec`` that are not musicnn's front end, as ``name=value``."""
    return [
        f"{k}={getattr(spec, k)!r} (musicnn: {v!r})"
        for k, v in MUSICNN_FEATURES.items()
        if getattr(spec, k) != v
    ]
