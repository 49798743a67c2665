"""What travels inside an exported model: its feature spec, labels and input.

One JSON object under the key ``musemo`` (an ONNX ``metadata_props`` entry, a
TFLite metadata buffer), so that a model file alone is enough to classify audio.
Torch-free: the edge runtime reads it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from .._checks import is_number
from ..errors import ParameterError
from ..features.spec import FeatureSpec
from ..metrics import AGGREGATES

METADATA_KEY = "musemo"
MODEL_FORMAT = "musemo.model/1"
MAX_METADATA_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A model file's metadata: how to make its input and read its output."""

    spec: FeatureSpec
    labels: tuple[str, ...]
    architecture: str
    precision: str  # "fp32" or "int8"
    input_shape: tuple[int, ...]  # (batch, 1, n_mels, frames); batch -1 when free
    # where the model comes from: training data, recipe, accuracy (musemo-export --provenance)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    # a recording's probabilities are shown at this temperature (musemo.metrics.tempered)
    temperature: float = 1.0
    # how a recording's probabilities come from its windows' (musemo.metrics.AGGREGATES)
    aggregate: str = "probabilities"

    def to_json(self) -> str:
        """The metadata as the JSON text stored in model files."""
        data = {
            "format": MODEL_FORMAT,
            "spec": self.spec.to_dict(),
            "labels": list(self.labels),
            "architecture": self.architecture,
            "precision": self.precision,
            "input_shape": list(self.input_shape),
        }
        if self.provenance:
            data["provenance"] = self.provenance
        if self.temperature != 1.0:
            data["temperature"] = self.temperature
        if self.aggregate != "probabilities":
            data["aggregate"] = self.aggregate
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "the model") -> ModelInfo:
        """Parse and check metadata; anything missing or absurd is refused, naming ``source``."""
        if len(text) > MAX_METADATA_BYTES:
            raise ParameterError(f"{source}: musemo metadata of {len(text)} bytes is too large")
        try:
            data: Any = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ParameterError(f"{source}: musemo metadata is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ParameterError(f"{source}: metadata is not in the {MODEL_FORMAT!r} format")
        try:
            spec = FeatureSpec.from_dict(data["spec"])
            labels = tuple(data["labels"])
            architecture, precision = data["architecture"], data["precision"]
            shape = tuple(data["input_shape"])
            provenance = data.get("provenance", {})
            temperature = data.get("temperature", 1.0)
            aggregate = data.get("aggregate", "probabilities")
        except KeyError as exc:
            raise ParameterError(f"{source}: musemo metadata lacks {exc.args[0]!r}") from exc
        except (ParameterError, TypeError, ValueError) as exc:
            raise ParameterError(f"{source}: bad musemo metadata: {exc}") from exc
        if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
            raise ParameterError(f"{source}: metadata labels {labels!r}: need 2 or more names")
        if not isinstance(architecture, str) or precision not in ("fp32", "int8"):
            raise ParameterError(f"{source}: metadata precision {precision!r}: fp32 or int8")
        if spec.input_mean is None or spec.input_std is None or not spec.input_std > 0:
            raise ParameterError(f"{source}: the feature spec lacks the input normalisation")
        expected = (1, *spec.clip_shape)
        if len(shape) != 4 or tuple(shape[1:]) != expected:
            raise ParameterError(
                f"{source}: input shape {list(shape)} does not match the feature spec's "
                f"(batch, {', '.join(map(str, expected))})"
            )
        if not isinstance(provenance, dict):
            raise ParameterError(f"{source}: metadata provenance must be a JSON object")
        if not is_number(temperature) or not 0 < temperature < float("inf"):
            raise ParameterError(f"{source}: metadata temperature {temperature!r}: must be > 0")
        if aggregate not in AGGREGATES:
            raise ParameterError(
                f"{source}: metadata aggregate {aggregate!r}: one of {', '.join(AGGREGATES)}"
            )
        return cls(
            spec, labels, architecture, precision, shape, provenance, float(temperature), aggregate
        )


# ----------------------------------------------------------------------------- ONNX


def write_onnx_metadata(model, info: ModelInfo) -> None:
    """Set (replace) the musemo entry of an ``onnx.ModelProto``'s ``metadata_props``."""
    props = model.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key, entry.value = METADATA_KEY, info.to_json()


def read_onnx_metadata(custom: dict[str, str], *, source: str) -> ModelInfo:
    """The ModelInfo of an ONNX model, from its metadata map (e.g. onnxruntime's
    ``session.get_modelmeta().custom_metadata_map``)."""
    if METADATA_KEY not in custom:
        raise ParameterError(
            f"{source} carries no musemo metadata: export it with musemo-export, "
            "which stores the feature spec and labels in the file"
        )
    return ModelInfo.from_json(custom[METADATA_KEY], source=source)


# ----------------------------------------------------------------------------- TFLite

TFLITE_FILE_ID = b"TFL3"
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6  # field ids in the Model table of schema.fbs


class _FlatBuffer:
    """Just enough FlatBuffers reading, bounds-checked, for a TFLite file's metadata."""

    def __init__(self, buf: bytes, source: str) -> None:
        self.buf, self.source = buf, source

    def error(self, why: str) -> ParameterError:
        return ParameterError(f"{self.source} is not a valid TFLite model ({why})")

    def integer(self, pos: int, size: int, signed: bool = False) -> int:
        if pos < 0 or pos + size > len(self.buf):
            raise self.error(f"offset {pos} outside the file")
        return int.from_bytes(self.buf[pos : pos + size], "little", signed=signed)

    def field(self, table: int, index: int) -> int | None:
        vtable = table - self.integer(table, 4, signed=True)
        vt_size = self.integer(vtable, 2)
        if 4 + 2 * index + 2 > vt_size:
            return None
        off = self.integer(vtable + 4 + 2 * index, 2)
        return table + off if off else None

    def deref(self, pos: int) -> int:
        return pos + self.integer(pos, 4)

    def vector(self, pos: int) -> tuple[int, int]:
        start = self.deref(pos)
        return start + 4, self.integer(start, 4)

    def table_vector(self, table: int, index: int) -> list[int]:
        pos = self.field(table, index)
        if pos is None:
            return []
        start, n = self.vector(pos)
        if n > len(self.buf) // 4:
            raise self.error(f"a vector of {n} entries")
        return [self.deref(start + 4 * i) for i in range(n)]

    def bytes_at(self, pos: int) -> bytes:
        start, n = self.vector(pos)
        if start + n > len(self.buf):
            raise self.error("a vector runs past the end")
        return self.buf[start : start + n]


def read_tflite_metadata(buf: bytes, *, source: str) -> ModelInfo:
    """The ModelInfo stored in a TFLite flatbuffer's metadata (no TFLite library needed)."""
    if len(buf) < 8 or buf[4:8] != TFLITE_FILE_ID:
        raise ParameterError(f"{source} is not a TFLite model (no {TFLITE_FILE_ID!r} identifier)")
    fb = _FlatBuffer(buf, source)
    model = fb.deref(0)
    buffers = fb.table_vector(model, _MODEL_BUFFERS)
    for entry in fb.table_vector(model, _MODEL_METADATA):
        name_pos = fb.field(entry, 0)
        if name_pos is None or fb.bytes_at(name_pos) != METADATA_KEY.encode():
            continue
        index_pos = fb.field(entry, 1)
        index = fb.integer(index_pos, 4) if index_pos is not None else 0
        if index >= len(buffers):
            raise fb.error(f"metadata buffer {index} of {len(buffers)}")
        data_pos = fb.field(buffers[index], 0)
        if data_pos is None:
            raise fb.error("the musemo metadata buffer is empty")
        return ModelInfo.from_json(fb.bytes_at(data_pos), source=source)
    raise ParameterError(
        f"{source} carries no musemo metadata: export it with musemo-export, "
        "which stores the feature spec and labels in the file"
    )


def write_tflite_metadata(buf: bytes, info: ModelInfo) -> bytes:
    """A copy of TFLite flatbuffer ``buf`` with ``info`` as its musemo metadata.

    Needs ai-edge-litert's flatbuffer schema (the export machine has it)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or []):
        raise ParameterError("TFLite models with weights outside the flatbuffer are not supported")
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()]
    data = schema.BufferT()
    data.data = np.frombuffer(info.to_json().encode(), dtype=np.uint8)
    model.buffers.append(data)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY.encode(), len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(buf) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_ID)
    return bytes(builder.Output())
