"""The metadata that travels inside exported models: round trip and refusals."""

from __future__ import annotations

import dataclasses
import json
import resource

import pytest
from fixtures_audio import tiny_spec

from musemo import ParameterError
from musemo.edge import ModelInfo
from musemo.edge.metadata import MODEL_FORMAT, read_onnx_metadata


@pytest.fixture
def squeezenet_info() -> ModelInfo:
    spec = tiny_spec(input_mean=-40.0, input_std=12.5)
    return ModelInfo(spec, ("happy", "sad"), "squeezenet1_0", "int8", (-1, 1, *spec.clip_shape))


def test_round_trip(squeezenet_info):
    text = squeezenet_info.to_json()
    assert json.loads(text)["format"] == MODEL_FORMAT
    assert ModelInfo.from_json(text) == squeezenet_info
    assert read_onnx_metadata({"musemo": text}, source="m.onnx") == squeezenet_info


def _edited(info: ModelInfo, **changes) -> str:
    data = json.loads(info.to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "format"),
        (json.dumps({"format": "other/1"}), "format"),
        (json.dumps({"format": MODEL_FORMAT}), "lacks 'spec'"),
    ],
)
def test_refuses_what_is_not_musemo_metadata(text, message):
    with pytest.raises(ParameterError, match=message):
        ModelInfo.from_json(text, source="m.onnx")


def test_refuses_bad_fields(squeezenet_info):
    info = squeezenet_info
    for changes, message in [
        ({"labels": ["only"]}, "labels"),
        ({"labels": ["a", 3]}, "labels"),
        ({"precision": "int4"}, "precision"),
        ({"input_shape": [1, 1, 64, 999]}, "does not match"),
        ({"input_shape": [1, 64]}, "does not match"),
        ({"spec": {"format": "musemo.feature_spec/1", "n_fft": -4}}, "bad musemo metadata"),
        ({"spec": {**info.spec.to_dict(), "surprise": 1}}, "unknown feature spec fields"),
    ]:
        with pytest.raises(ParameterError, match=message):
            ModelInfo.from_json(_edited(info, **changes), source="m.onnx")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n_fft", 2**31, "powers of two from 4 to 65536"),
        ("hop_length", -512, "hop_length=-512"),
        ("n_mels", 10**6, "at most 1024 mel bands"),
        ("sample_rate", 10**9, "at most 768000 Hz"),
        ("clip_seconds", 1e9, "at most 600 seconds"),
    ],
)
def test_absurd_spec_values_are_refused_before_anything_is_allocated(
    squeezenet_info, field, value, message
):
    """The input shape is made consistent with the absurd spec, so only the spec's own
    bounds stand between the file and gigabytes of filterbank or window buffers."""
    spec = {**squeezenet_info.spec.to_dict(), field: value}
    frames = 1 + int(spec["clip_seconds"] * spec["sample_rate"]) // max(1, spec["hop_length"])
    text = _edited(squeezenet_info, spec=spec, input_shape=[-1, 1, spec["n_mels"], frames])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ParameterError, match=message):
        ModelInfo.from_json(text, source="m.onnx")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # kB


def test_refuses_a_spec_without_input_normalisation(squeezenet_info):
    bare = dataclasses.replace(squeezenet_info.spec, input_mean=None, input_std=None)
    with pytest.raises(ParameterError, match="input normalisation"):
        ModelInfo.from_json(_edited(squeezenet_info, spec=bare.to_dict()))


def test_refuses_huge_metadata_and_absent_metadata(squeezenet_info):
    with pytest.raises(ParameterError, match="too large"):
        ModelInfo.from_json(" " * (1 << 17))
    with pytest.raises(ParameterError, match="m.onnx carries no musemo metadata"):
        read_onnx_metadata({"producer": "someone"}, source="m.onnx")
