"""The models that ship inside musemo (the package's ``models/`` folder), and the default.

``Classifier()`` and ``musemo infer FILES`` without a model load the default: the
shipped model named ``DEFAULT_MODEL``, in the first format of ``SUFFIXES`` whose
runtime is installed. ``musemo models`` lists what ships; a build without model
files says so and how to run another model instead.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import MissingDependencyError, ParameterError
from .backends import BACKENDS, has_runtime, open_model
from .metadata import ModelInfo

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "happy-sad"  # the stem of the default model's files
SUFFIXES = (".int8.onnx", ".int8.tflite", ".onnx", ".tflite")  # the order they are tried
BUILD_HINT = (
    "build it from a source checkout with `make model DATA4Q=...` (see docs/default-model.md) "
    "and reinstall, or give a model file written by musemo-export (musemo infer MODEL FILE ...)"
)


@dataclasses.dataclass(frozen=True)
class ShippedModel:
    """One shipped model file: its name (file stem), path, size and metadata."""

    name: str
    path: Path
    bytes: int
    info: ModelInfo


def shipped_models(folder: str | os.PathLike | None = None) -> list[ShippedModel]:
    """Every model file in ``folder`` (default: the package's ``models/``), by name.

    Raises
    ------
    ParameterError
        A file there is not a musemo model.
    MissingDependencyError
        The runtime for one of the files is not installed.
    """
    folder = Path(folder) if folder is not None else MODELS_DIR
    paths = sorted(p for p in folder.glob("*") if p.suffix in BACKENDS)
    found = []
    for path in paths:
        info = open_model(path).info
        found.append(ShippedModel(path.name.split(".")[0], path, path.stat().st_size, info))
    return found


def default_model(folder: str | os.PathLike | None = None) -> Path:
    """The file of the default model: ``DEFAULT_MODEL`` in the first of ``SUFFIXES``
    there whose runtime (onnxruntime, LiteRT) is installed.

    Raises
    ------
    ParameterError
        No such file: this build of musemo ships no model.
    MissingDependencyError
        The files are there but neither runtime is installed.
    """
    folder = Path(folder) if folder is not None else MODELS_DIR
    present = [p for s in SUFFIXES if (p := folder / f"{DEFAULT_MODEL}{s}").is_file()]
    if not present:
        raise ParameterError(f"this musemo has no default model (no {DEFAULT_MODEL}.* in "
                             f"{folder}): {BUILD_HINT}")  # fmt: skip
    for path in present:
        if has_runtime(path.suffix):
            return path
    raise MissingDependencyError(f"running the default model ({present[0].name}) needs "
                                 "onnxruntime or ai-edge-litert", "edge")  # fmt: skip
