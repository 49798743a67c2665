"""Running exported model files: onnxruntime for ``.onnx``, LiteRT for ``.tflite``.

Torch-free. ``open_model`` reads the musemo metadata (feature spec, labels) from the
file and refuses a file without it before any inference runs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from .._checks import check_threads
from ..errors import MissingDependencyError, ParameterError
from .metadata import ModelInfo, read_onnx_metadata, read_tflite_metadata

INPUT_NAME = "logmel"
OUTPUT_NAME = "logits"
MAX_MODEL_BYTES = 1 << 30  # musemo's models are a few MB; refuse to read absurd files


class Backend:
    """A loaded model file: ``info`` (spec, labels, architecture, precision) and
    ``logits(x)`` for normalised inputs ``(n, 1, n_mels, frames)`` float32."""

    info: ModelInfo
    path: Path
    name: str

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw class scores ``(n, classes)`` of normalised inputs ``(n, 1, n_mels, frames)``."""
        raise NotImplementedError

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        shape = (1, *self.info.spec.clip_shape)
        if x.ndim != 4 or x.shape[1:] != shape:
            raise ParameterError(
                f"{self.path.name} takes (n, {', '.join(map(str, shape))}) input, got {x.shape}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)


class OnnxBackend(Backend):
    """onnxruntime on the CPU, ``threads`` intra-op threads, sequential execution."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError(
                f"running {Path(path).name} needs onnxruntime", "edge"
            ) from exc
        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ParameterError(f"{self.path.name} is not a valid ONNX model: {exc}") from exc
        self.info = read_onnx_metadata(
            self.session.get_modelmeta().custom_metadata_map, source=self.path.name
        )

    def logits(self, x: np.ndarray, *, batch_size: int = 1) -> np.ndarray:
        """Raw class scores ``(n, classes)``, run ``batch_size`` inputs at a time. One at a
        time by default: onnxruntime's arena then holds one input's activations (musicnn's
        are about 30 MB a patch), and on one thread it is no slower (musicnn, 10 patches:
        259 ms one by one, 283 ms as one batch)."""
        x = self._check_input(x)
        out = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out).astype(np.float32) if out else np.empty((0, 0), np.float32)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            return None
    return Interpreter


class TfliteBackend(Backend):
    """The LiteRT interpreter (``ai-edge-litert``, else ``tflite_runtime``), one sub-clip
    per invocation; int8 inputs and outputs are (de)quantised here."""

    name = "litert"

    def __init__(self, path: str | os.PathLike, *, threads: int = 1) -> None:
        self.path = Path(path)
        buf = self.path.read_bytes()
        self.info = read_tflite_metadata(buf, source=self.path.name)  # refuses foreign files
        interpreter = _interpreter_class()
        if interpreter is None:
            raise MissingDependencyError(f"running {self.path.name} needs ai-edge-litert", "edge")
        try:
            self.interpreter = interpreter(model_content=buf, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ParameterError(f"{self.path.name} is not a valid TFLite model: {exc}") from exc
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw class scores ``(n, classes)``, one invocation per input (the file takes batch 1)."""
        x = self._check_input(x)
        out = np.empty((len(x), self.output["shape"][-1]), np.float32)
        in_scale, in_zero = self.input["quantization"]
        out_scale, out_zero = self.output["quantization"]
        for i in range(len(x)):
            xi = x[i : i + 1]
            if self.input["dtype"] != np.float32:
                limits = np.iinfo(self.input["dtype"])
                xi = np.clip(np.rint(xi / in_scale) + in_zero, limits.min, limits.max)
                xi = xi.astype(self.input["dtype"])
            self.interpreter.set_tensor(self.input["index"], xi)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])[0]
            if self.output["dtype"] != np.float32:
                y = (y.astype(np.float32) - out_zero) * out_scale
            out[i] = y
        return out


BACKENDS = {".onnx": OnnxBackend, ".tflite": TfliteBackend}


def has_runtime(suffix: str) -> bool:
    """Whether the runtime for model files with ``suffix`` (``.onnx``, ``.tflite``) is
    installed, without loading a model."""
    if suffix == ".onnx":
        return importlib.util.find_spec("onnxruntime") is not None
    return suffix == ".tflite" and _interpreter_class() is not None


def open_model(path: str | os.PathLike, *, threads: int = 1) -> Backend:
    """Load a musemo ``.onnx`` or ``.tflite`` file for inference on ``threads`` threads.

    The file's musemo metadata (feature spec, labels) is read and checked before any
    inference runs; ``Backend.info`` holds it and ``Backend.logits`` runs the model.

    Raises
    ------
    FileNotFoundError
        No such file.
    ParameterError
        Another suffix, an absurd size, or a file that is not a musemo model.
    MissingDependencyError
        The runtime for the suffix is not installed.
    """
    path = Path(path)
    threads = check_threads(threads)
    backend = BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise ParameterError(
            f"{path.name}: musemo runs .onnx and .tflite model files, "
            f"not {path.suffix or 'a file without suffix'}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ParameterError(f"{path.name} is {path.stat().st_size} bytes: not a musemo model")
    return backend(path, threads=threads)
