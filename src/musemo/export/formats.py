"""The table of export formats: what each takes, how it calibrates int8, what it needs
installed and the functions that write it. Validation and dispatch both read it."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
from collections.abc import Callable, Sequence

import numpy as np

from ..edge.metadata import ModelInfo
from ..errors import MissingDependencyError, ParameterError
from ..training.models import MODELS
from . import onnx as onnx_files
from . import tflite as tflite_files


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format and the functions that write it.

    ``prepare(model, probe)`` gives the model as the converter needs it;
    ``write_fp32(model, info, path, probe)`` writes the float file;
    ``write_int8(model, info, path, calibration, method=, keep_float=, fp32=)`` the int8
    one, calibrated on ``calibration`` (``(1, 1, n_mels, frames)`` arrays), once the
    fp32 file ``fp32`` exists. ``calibration`` names the int8 calibration methods,
    ``batch`` the batch size the files take (-1: any), ``requires`` the modules the
    export needs and ``extra`` the musemo extra that installs them.
    """

    name: str
    suffix: str
    architectures: tuple[str, ...]
    calibration: tuple[str, ...]
    batch: int
    requires: tuple[str, ...]
    extra: str
    prepare: Callable
    write_fp32: Callable
    write_int8: Callable


def _as_is(model, probe: np.ndarray):
    return model


def _onnx_fp32(model, info: ModelInfo, path, probe: np.ndarray) -> None:
    onnx_files.export_onnx(model, info, path)


def _onnx_int8(model, info: ModelInfo, path, calibration, *, method, keep_float, fp32) -> None:
    onnx_files.quantize_onnx(fp32, info, path, calibration, method=method, keep_float=keep_float)


def _tflite_prepare(model, probe: np.ndarray):
    return tflite_files.litert_ready(model, probe[:8])


def _tflite_int8(model, info: ModelInfo, path, calibration, *, method, keep_float, fp32) -> None:
    tflite_files.quantize_tflite(
        model, info, path, calibration, method=method, keep_float=keep_float
    )


FORMATS = {
    "onnx": Format(
        name="onnx",
        suffix=".onnx",
        architectures=MODELS,
        calibration=("minmax", "percentile", "entropy"),
        batch=-1,
        requires=("onnx", "onnxruntime", "onnxscript"),
        extra="export",
        prepare=_as_is,
        write_fp32=_onnx_fp32,
        write_int8=_onnx_int8,
    ),
    "tflite": Format(
        name="tflite",
        suffix=".tflite",
        architectures=("squeezenet1_0", "mobilenet_v2", "resnet18", "musicnn"),
        calibration=("minmax", "histogram"),
        batch=1,
        requires=("litert_torch", "ai_edge_litert", "torchao", "flatbuffers"),
        extra="tflite",
        prepare=_tflite_prepare,
        write_fp32=tflite_files.export_tflite,
        write_int8=_tflite_int8,
    ),
}

# "auto" quantises with each of the format's methods and keeps the best on held-out
# training sub-clips.
CALIBRATION_METHODS = ("auto", *dict.fromkeys(m for f in FORMATS.values() for m in f.calibration))
MIN_CALIBRATION = 32  # sub-clips: fewer cannot calibrate int8 ranges


# Modules left in float in int8 files unless the caller names others, per (format,
# architecture). MobileNetV2's stem conv and first block see the one-channel log-mel at
# full resolution: keeping them in float cut the int8 logit error on held-out *training*
# sub-clips by 38% (one-at-a-time sensitivity of every layer,
# benchmarks/int8_sensitivity.py) for under 1% of its multiply-adds. SqueezeNet's
# one-channel 7x7 stem becomes an int8 depthwise convolution in LiteRT that made the whole
# int8 model only 1.7x faster than fp32; with the stem in float it is about 3x faster
# (the README's Export section has the figures; onnxruntime runs its float stem slower,
# so none stays in float there). musicnn's mid- and back-end join channels of unlike
# ranges (the front end's 561 with the 1-D convolutions' 64s, maxima with means) into one
# per-tensor int8 range: quantised, they alone cost a logit RMSE of 0.6-2.3 and flipped
# 8% of patches. Its temporal convolutions (one input channel, kernels 128/64/32 x 1)
# run 3-6x slower as onnxruntime's QLinearConv than in float; turned to run along
# contiguous frames they were faster in int8 but flipped 9% of patches. Only the
# timbral convolutions compute in int8: of the MSD checkpoint, with its dead filters
# dropped (``inference_form``), a patch takes 5.6 ms against 5.8 ms in fp32 and 98%
# of held-out patches keep their label; the kept layers' weights are still stored as
# int8 (0.73 MB). LiteRT takes the same set. A head on the pooled features
# (``head="pooled"``) joins and standardises them in float too.
MUSICNN_FLOAT = (
    "frontend.2", "frontend.3", "frontend.4", "midend", "pool", "pool_bn", "dense",
    "dense_relu", "dense_bn", "head_join", "head_norm", "head",
)  # fmt: skip
KEEP_FLOAT = {
    ("onnx", "musicnn"): MUSICNN_FLOAT,
    ("tflite", "musicnn"): MUSICNN_FLOAT,
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
            raise MissingDependencyError(f"{name} export needs {', '.join(missing)}", fmt.extra)
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
