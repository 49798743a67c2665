"""PyTorch → TFLite with litert-torch: fp32, and int8 through its PT2E quantiser."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..edge.metadata import TFLITE_FILE_ID, ModelInfo, write_tflite_metadata


def _floor_max_pool():
    import torch
    import torch.nn.functional as F

    class FloorMaxPool(torch.nn.Module):
        """``MaxPool2d(ceil_mode=True)`` spelled as zero padding and a floor-mode pool.

        litert-torch converts ceil-mode pooling wrongly (SqueezeNet's logits came
        out up to 0.12 off). Zero padding is exact where the input is >= 0, which
        holds for SqueezeNet: its pools follow ReLUs (checked after the swap).
        """

        def __init__(self, pool: torch.nn.MaxPool2d) -> None:
            super().__init__()
            self.kernel, self.stride = pool.kernel_size, pool.stride

        def _pad(self, n: int) -> int:
            out = -(-(n - self.kernel) // self.stride) + 1
            return max(0, (out - 1) * self.stride + self.kernel - n)

        def forward(self, x):
            h, w = x.shape[-2:]
            x = F.pad(x, (0, self._pad(w), 0, self._pad(h)))
            return F.max_pool2d(x, self.kernel, self.stride)

    return FloorMaxPool


def litert_ready(model, probe: np.ndarray):
    """A copy of ``model`` that litert-torch converts exactly (see ``FloorMaxPool``),
    checked against the original on ``probe`` inputs."""
    import torch

    pool_class = _floor_max_pool()
    ready = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()
    for parent in ready.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.MaxPool2d) and child.ceil_mode:
                if not (isinstance(child.kernel_size, int) and isinstance(child.stride, int)):
                    raise ValueError(f"cannot rewrite pooling {child} for TFLite")
                setattr(parent, name, pool_class(child))
    with torch.inference_mode():
        x = torch.from_numpy(probe)
        if not torch.allclose(ready(x), model(x), rtol=0, atol=1e-5):
            raise ValueError("the TFLite-ready copy of the model computes something else")
    return ready


def _short_names(buf: bytes) -> bytes:
    """``buf`` with its inner tensors named by index (``t17``): the converter's names are
    debugging text, 56 kB of an int8 MobileNetV2. Input and output names stay."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    for graph in model.subgraphs:
        keep = {*graph.inputs, *graph.outputs}
        for i, tensor in enumerate(graph.tensors):
            if i not in keep:
                tensor.name = f"t{i}".encode()
    builder = flatbuffers.Builder(len(buf) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_ID)
    return bytes(builder.Output())


def _save(buf: bytes, info: ModelInfo, path: str | os.PathLike) -> None:
    Path(path).write_bytes(write_tflite_metadata(_short_names(buf), info))


@contextlib.contextmanager
def _quiet_converter():
    """Silence litert-torch's step-by-step console progress (musemo logs its own steps)."""
    from litert_torch import progress

    quiet, progress.console.quiet = progress.console.quiet, True
    try:
        yield
    finally:
        progress.console.quiet = quiet


def _converted_bytes(edge_model) -> bytes:
    with tempfile.TemporaryDirectory(prefix="musemo-tflite-") as tmp:
        target = Path(tmp) / "model.tflite"
        edge_model.export(str(target))
        return target.read_bytes()


def export_tflite(model, info: ModelInfo, path: str | os.PathLike, probe: np.ndarray) -> None:
    """fp32 TFLite of a ``litert_ready`` model (batch 1, float input and output)."""
    import litert_torch
    import torch

    sample = (torch.from_numpy(probe[:1]),)
    with _quiet_converter():
        _save(_converted_bytes(litert_torch.convert(model, sample)), info, path)


def quantize_tflite(
    model,
    info: ModelInfo,
    path: str | os.PathLike,
    inputs: Sequence[np.ndarray],
    *,
    method: str = "minmax",
    keep_float: Sequence[str] = (),
) -> None:
    """int8 TFLite (int8 weights per channel, int8 activations, int8 input and output)
    calibrated on ``inputs`` (normalised real sub-clips, ``(1, 1, n_mels, frames)`` each).

    ``minmax`` keeps every activation's whole observed range; ``histogram``
    (PT2E's default) trims ranges to minimise the quantisation error, which can
    clip a network's output. ``keep_float`` names modules (``features.0``) left in
    float; where the first layer is one of them, the input stays float32."""
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e
    from torchao.quantization.pt2e.observer import MinMaxObserver

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    if method == "minmax":
        act = dataclasses.replace(
            config.input_activation,
            observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(config)
    sample = (torch.from_numpy(inputs[0]),)
    # Strict export records which Python operator made each node; the quantiser finds
    # additions (MobileNetV2's residuals) by it and would otherwise leave them in float.
    graph = torch.export.export(model, sample, strict=True).module()
    _leave_in_float(graph, keep_float)
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.inference_mode():
        for x in inputs:
            graph(torch.from_numpy(x))
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    with _quiet_converter():
        edge = litert_torch.convert(
            graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
        )
        _save(_converted_bytes(edge), info, path)


def _leave_in_float(graph, modules: Sequence[str]) -> None:
    """Mark the nodes of ``modules`` as annotated without quantisation specs, so that the
    quantiser passes them by."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in graph.graph.nodes:
        stack = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
        if any(m in stack for m in modules):
            node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
