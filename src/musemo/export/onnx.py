"""PyTorch → ONNX (fp32) and ONNX → int8 (static QDQ, calibrated on real sub-clips)."""

from __future__ import annotations

import ast
import collections
import contextlib
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..edge.backends import INPUT_NAME, OUTPUT_NAME
from ..edge.metadata import ModelInfo, write_onnx_metadata

OPSET = 18
# onnxruntime's symbolic shape inference loses musicnn's shapes (a Squeeze after its
# frequency MaxPool); ONNX's own shape inference, which quant_pre_process also runs, does not.
NO_SYMBOLIC_SHAPES = ("musicnn",)
NAME_SCOPES = "pkg.torch.onnx.name_scopes"


def export_onnx(model, info: ModelInfo, path: str | os.PathLike) -> None:
    """Export ``model`` (eval mode, CPU) to one self-contained ONNX file with a free batch
    dimension, ``info`` in its metadata, checked by ``onnx.checker``."""
    import onnx
    import torch

    sample = torch.zeros(1, *info.input_shape[1:])
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model.to(memory_format=torch.contiguous_format),
        (sample,),
        dynamo=True,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    _name_by_module(proto)
    _strip(proto)
    write_onnx_metadata(proto, info)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)


def _name_by_module(proto) -> None:
    """Name each node after the module that computes it (``features.0.1/Conv``), from the
    exporter's name scopes, so that ``keep_float`` can name modules in ONNX and TFLite alike."""
    seen: collections.Counter = collections.Counter()
    for node in proto.graph.node:
        scopes = next(
            (ast.literal_eval(p.value) for p in node.metadata_props if p.key == NAME_SCOPES), []
        )
        module = scopes[-2] if len(scopes) > 1 else ""  # the last scope is the op itself
        base = f"{module}/{node.op_type}" if module else node.op_type
        seen[base] += 1
        node.name = base if seen[base] == 1 else f"{base}_{seen[base] - 1}"


def in_modules(node_name: str, modules: Sequence[str]) -> bool:
    """Whether the node named ``node_name`` by ``_name_by_module`` lies inside one of
    ``modules`` (qualified module names such as ``features.0``)."""
    module = node_name.split("/", 1)[0] if "/" in node_name else ""
    return any(module == m or module.startswith(m + ".") for m in modules)


def _strip(proto) -> None:
    """Drop per-node debugging metadata (the exporter's stack traces and source paths:
    150-200 kB of a MobileNetV2 file, and the paths of the machine that exported it)."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over (1, 1, n_mels, frames) inputs,
    read in ranges (``set_range``) so that calibration holds a few inputs' activations
    at a time, not all of them (256 musicnn patches: 20 GB)."""

    def __init__(self, inputs: Sequence[np.ndarray]) -> None:
        self._all = list(inputs)
        self._inputs = iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._inputs = iter(self._all[start_index:end_index])

    def get_next(self):
        x = next(self._inputs, None)
        return None if x is None else {INPUT_NAME: x}


def calibration_stride(n: int, most: int = 16) -> int:
    """The largest divisor of ``n`` up to ``most``: inputs per calibration round."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def concat_groups(graph) -> list[set[str]]:
    """Sets of tensors joined by Concat nodes (inputs and output, transitively): each set
    shares one quantisation range, so that onnxruntime's int8 Concat only copies bytes
    instead of requantising every input (SqueezeNet's Fire modules: 0.98 -> 0.27 ms)."""
    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t

    for node in graph.node:
        if node.op_type == "Concat":
            first = root(node.output[0])
            for t in node.input:
                parent[root(t)] = first
    groups: dict[str, set[str]] = collections.defaultdict(set)
    for t in parent:
        groups[root(t)].add(t)
    return [g for g in groups.values() if len(g) > 1]


def _share_ranges(cache: Path, groups: list[set[str]]) -> None:
    """Widen each group's calibrated ranges in ``cache`` (onnxruntime's calibration
    cache) to their union."""
    from onnxruntime.quantization.calibrate import (
        TensorData,
        load_tensors_data,
        save_tensors_data,
    )

    ranges = load_tensors_data(cache)
    for group in groups:
        known = [t for t in group if t in ranges]
        if len(known) < 2:
            continue
        lo = min(float(np.min(ranges[t].range_value[0])) for t in known)
        hi = max(float(np.max(ranges[t].range_value[1])) for t in known)
        for t in known:
            ranges[t] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
    save_tensors_data(ranges, cache)


def _int8_per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``w`` with one scale per index of ``axis``: (values, scales)."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    scale = (np.abs(w).max(axis=other) / 127).astype(np.float32)
    scale[scale == 0] = 1.0
    shape = [-1 if i == axis else 1 for i in range(w.ndim)]
    return np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8), scale


def _store_float_weights_in_int8(graph, nodes: set[str], least: int = 4096) -> None:
    """Give the Conv / Gemm nodes named in ``nodes`` (those kept in float) weights stored
    as int8, symmetric per output channel, behind a DequantizeLinear: their arithmetic
    stays float, their file share shrinks 4x. Weights of fewer than ``least`` values
    (a stem's) are left as they are."""
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in graph.initializer}
    order = []
    for node in graph.node:
        name = node.input[1] if node.op_type in ("Conv", "Gemm") else ""
        tensor = weights.pop(name, None) if node.name in nodes else None  # once if shared
        if tensor is not None and np.prod(tensor.dims) >= least:
            in_out = node.op_type == "Gemm" and not any(
                a.name == "transB" and a.i for a in node.attribute
            )
            q, scale = _int8_per_channel(numpy_helper.to_array(tensor), axis=int(in_out))
            graph.initializer.remove(tensor)
            stored = [f"{name}_int8", f"{name}_int8_scale", f"{name}_int8_zp"]
            for value, key in zip((q, scale, np.zeros_like(scale, np.int8)), stored):
                graph.initializer.append(numpy_helper.from_array(value, key))
            order.append(helper.make_node(
                "DequantizeLinear", stored, [name], axis=int(in_out),
                name=f"{node.name}_weight/DequantizeLinear",
            ))  # fmt: skip
        order.append(node)
    del graph.node[:]
    graph.node.extend(order)


def quantize_onnx(
    fp32_path: str | os.PathLike,
    info: ModelInfo,
    path: str | os.PathLike,
    inputs: Sequence[np.ndarray],
    *,
    method: str = "minmax",
    keep_float: Sequence[str] = (),
) -> None:
    """Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations),
    calibrated on ``inputs`` (normalised real sub-clips, one per array).

    ``keep_float`` names modules (``features.0``) whose nodes stay in float (their
    larger weights stored as int8 all the same: ``_store_float_weights_in_int8``). The fp32
    file is first run through onnxruntime's pre-processing (shape inference, graph
    optimisation). The tensors around each Concat share one range (``concat_groups``)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with tempfile.TemporaryDirectory(prefix="musemo-quant-") as tmp:
        pre, out, cache = (Path(tmp) / name for name in ("pre.onnx", "int8.onnx", "ranges.json"))
        skip = info.architecture in NO_SYMBOLIC_SHAPES
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=skip)
        graph = onnx.load(str(pre)).graph
        exclude = [n.name for n in graph.node if in_modules(n.name, keep_float)]
        options = dict(
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            nodes_to_exclude=exclude,
            extra_options={
                "CalibTensorRangeSymmetric": False,
                "CalibPercentile": 99.999,
                "CalibStridedMinMax": calibration_stride(len(inputs)),
            },
            calibration_cache_path=str(cache),
        )
        groups = concat_groups(graph)
        # The histogram calibrators print their progress; musemo logs its own steps.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(pre), str(out), _Batches(inputs), **options)
            if groups:  # quantise again from the calibrated ranges, widened per group
                _share_ranges(cache, groups)
                quantize_static(str(pre), str(out), None, **options)
        proto = onnx.load(str(out))
    _store_float_weights_in_int8(proto.graph, set(exclude))
    _strip(proto)
    write_onnx_metadata(proto, info)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)
