"""The table of export formats: what each takes, how it calibrates int8, what it needs
installed and the functions that write it. Validation and dispatch both read it."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
from collections.abc import Sequence

from ..errors import ParameterError
from ..training.models import MODELS


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format: file suffix, architectures, int8 calibration methods (none: no
    int8), batch size, and what it needs installed."""

    name: str
    suffix: str
    architectures: tuple[str, ...]
    calibration: tuple[str, ...]
    batch: int  # -1: free
    requires: tuple[str, ...]
    extra: str


FORMATS = {
    "onnx": Format(
        name="onnx",
        suffix=".onnx",
        architectures=MODELS,
        calibration=("minmax", "percentile", "entropy"),
        batch=-1,
        requires=("onnx", "onnxruntime", "onnxscript"),
        extra="export",
    ),
    "tflite": Format(
        name="tflite",
        suffix=".tflite",
        architectures=("squeezenet1_0", "mobilenet_v2", "resnet18"),
        calibration=("minmax", "histogram"),
        batch=1,
        requires=("litert_torch", "ai_edge_litert"),
        extra="tflite",
    ),
}


# "auto" quantises with each of the format's methods and keeps the best on held-out
# training sub-clips.
CALIBRATION_METHODS = ("auto", *dict.fromkeys(m for f in FORMATS.values() for m in f.calibration))


MIN_CALIBRATION = 32


# Modules left in float in int8 files unless the caller names others, per (format,
# architecture). MobileNetV2's stem conv and first block see the one-channel log-mel at
# full resolution: keeping them in float cut the int8 logit error on held-out *training*
# sub-clips by 38% (one-at-a-time sensitivity of every layer,
# benchmarks/int8_sensitivity.py) for under 1% of its multiply-adds. SqueezeNet's
# one-channel 7x7 stem becomes an int8 depthwise convolution in LiteRT that made the whole
# int8 model only 1.7x faster than fp32; in float it runs 3.1x faster (onnxruntime runs
# its float stem slower: none there).
KEEP_FLOAT = {
    ("onnx", "mobilenet_v2"): ("features.0", "features.1"),
    ("tflite", "mobilenet_v2"): ("features.0", "features.1"),
    ("tflite", "squeezenet1_0"): ("features.0",),
}


def _nearest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_request(
    formats: Sequence[str],
    architecture: str,
    *,
    int8: bool,
    calib,
    calib_method: str,
    keep_float: Sequence[str] = (),
) -> list[Format]:
    """The requested formats, or a ParameterError saying what is wrong and what is valid."""
    chosen = []
    for name in formats:
        if name not in FORMATS:
            raise ParameterError(
                f"unknown format {name!r}{_nearest(name, list(FORMATS))}: "
                f"use one or more of {', '.join(FORMATS)}"
            )
        fmt = FORMATS[name]
        if architecture not in fmt.architectures:
            raise ParameterError(
                f"{name} export takes {', '.join(fmt.architectures)}, not {architecture}"
            )
        if int8 and calib_method != "auto" and calib_method not in fmt.calibration:
            raise ParameterError(
                f"calibration method {calib_method!r}"
                f"{_nearest(calib_method, ('auto', *fmt.calibration))}: {name} calibrates "
                f"with auto, {', '.join(fmt.calibration)}"
            )
        missing = [m for m in fmt.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ParameterError(
                f"{name} export needs {', '.join(missing)}: pip install 'musemo[{fmt.extra}]'"
            )
        chosen.append(fmt)
    if not chosen:
        raise ParameterError(f"no format given: use one or more of {', '.join(FORMATS)}")
    if keep_float and not int8:
        raise ParameterError("--keep-float applies to int8 files: add --int8")
    if int8 and calib is None:
        raise ParameterError(
            "--int8 needs --calib DATA: real recordings (a folder or manifest) from the "
            "model's training data, to calibrate the int8 ranges on"
        )
    return chosen
