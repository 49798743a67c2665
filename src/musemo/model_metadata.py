"""What travels inside an exported model: its feature spec, labels and input.

One JSON object under the key ``musemo`` (an ONNX ``metadata_props`` entry, a
TFLite metadata buffer), so that a model file alone is enough to classify audio.
Torch-free: the edge runtime reads it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import ParameterError
from .spec import FeatureSpec

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

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "spec": self.spec.to_dict(),
                "labels": list(self.labels),
                "architecture": self.architecture,
                "precision": self.precision,
                "input_shape": list(self.input_shape),
            },
            sort_keys=True,
        )

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
        return cls(spec, labels, architecture, precision, shape)


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
