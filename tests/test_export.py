"""musemo-export: ONNX and TFLite, fp32 and int8, from checkpoints trained in the test."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from fixtures_audio import write_chord_dataset
from fixtures_models import train_tiny

from musemo import ParameterError
from musemo.cli import export_main, main
from musemo.data import load_dataset
from musemo.edge.backends import TfliteBackend
from musemo.edge.metadata import read_onnx_metadata, read_tflite_metadata
from musemo.export import FORMATS, export_checkpoint
from musemo.export import formats as exporter_module
from musemo.export.onnx import _store_float_weights_in_int8, concat_groups
from musemo.export.tflite import litert_ready
from musemo.features import FeatureSpec
from musemo.training import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def mobilenet_checkpoint(tmp_path_factory, chord_recordings):
    folder, cache = chord_recordings
    return train_tiny(tmp_path_factory.mktemp("runs"), folder, cache, "mobilenet_v2")


def _real_inputs(checkpoint, folder, cache) -> tuple[np.ndarray, object]:
    state = load_checkpoint(checkpoint)
    spec = FeatureSpec.from_dict(state["spec"])
    data, _ = load_dataset(folder, spec, cache=cache, progress=False)
    x = (data.stack(np.arange(len(data))) - spec.input_mean) / spec.input_std
    return x[:, None].astype(np.float32), model_from_checkpoint(state)


def test_writes_every_file_with_the_metadata(squeezenet_export, squeezenet_checkpoint):
    out, report = squeezenet_export
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "squeezenet1_0.export.json",
        "squeezenet1_0.export.md",
        "squeezenet1_0.int8.onnx",
        "squeezenet1_0.int8.tflite",
        "squeezenet1_0.onnx",
        "squeezenet1_0.tflite",
    ]
    state = load_checkpoint(squeezenet_checkpoint)
    for name, precision in (("squeezenet1_0.onnx", "fp32"), ("squeezenet1_0.int8.onnx", "int8")):
        proto = onnx.load(str(out / name))
        onnx.checker.check_model(proto)
        assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)
        assert not any(n.metadata_props for n in proto.graph.node)  # no exporter stack traces
        assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 18
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        info = read_onnx_metadata(session.get_modelmeta().custom_metadata_map, source=name)
        assert info.labels == ("happy", "sad") and info.precision == precision
        assert info.spec == FeatureSpec.from_dict(state["spec"])
        assert info.architecture == "squeezenet1_0"
    for name, precision in (
        ("squeezenet1_0.tflite", "fp32"),
        ("squeezenet1_0.int8.tflite", "int8"),
    ):
        info = read_tflite_metadata((out / name).read_bytes(), source=name)
        assert info.precision == precision and info.input_shape[0] == 1
        assert info.spec == FeatureSpec.from_dict(state["spec"])
    assert json.loads((out / "squeezenet1_0.export.json").read_text()) == json.loads(
        json.dumps(report)
    )
    md = (out / "squeezenet1_0.export.md").read_text()
    assert "int8 against fp32, onnx" in md and "int8 against fp32, tflite" in md
    assert "goal" not in md  # the report states measurements; targets live in benchmarks


def test_fp32_onnx_matches_pytorch_on_real_inputs(
    squeezenet_export, squeezenet_checkpoint, chord_recordings
):
    out, report = squeezenet_export
    x, model = _real_inputs(squeezenet_checkpoint, *chord_recordings)
    session = ort.InferenceSession(
        str(out / "squeezenet1_0.onnx"), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"logmel": x})[0]  # the whole batch at once: the batch is free
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert report["files"]["onnx/fp32"]["max_abs_diff_vs_torch"] <= 1e-4


def test_int8_is_quantised_small_and_agrees(
    squeezenet_export, squeezenet_checkpoint, chord_recordings
):
    out, report = squeezenet_export
    proto = onnx.load(str(out / "squeezenet1_0.int8.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [
        t
        for t in proto.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4
    ]
    assert len(int8_weights) == 26  # every convolution of SqueezeNet 1.0
    sizes = {k: f["bytes"] for k, f in report["files"].items()}
    assert sizes["onnx/int8"] < sizes["onnx/fp32"] / 3
    x, model = _real_inputs(squeezenet_checkpoint, *chord_recordings)
    session = ort.InferenceSession(
        str(out / "squeezenet1_0.int8.onnx"), providers=["CPUExecutionProvider"]
    )
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy().argmax(1)
    agreement = (session.run(None, {"logmel": x})[0].argmax(1) == want).mean()
    assert agreement >= 0.95
    i8 = report["files"]["onnx/int8"]
    assert set(i8["scores"]) == {"labels", "subclip", "recording"}
    # 60 training sub-clips: 32 calibrate (48 asked, but at most all but the 28 held
    # out to choose the calibration method)
    assert report["calibration"] == {"method": "auto", "subclips": 32, "kept_float": "default"}
    assert i8["calibration"]["checked_on"] == 28
    assert i8["calibration"]["kept_float"] == []  # onnxruntime runs SqueezeNet's stem in int8
    change = report["int8_vs_fp32"]["onnx"]
    f32 = report["files"]["onnx/fp32"]
    assert change["int8_mb"] == pytest.approx(i8["bytes"] / 1e6)
    assert change["size_ratio"] == pytest.approx(f32["bytes"] / i8["bytes"])
    assert change["speedup"] == pytest.approx(
        f32["latency_ms_1_thread"]["median"] / i8["latency_ms_1_thread"]["median"]
    )
    assert change["subclip_accuracy_change_pp"] == pytest.approx(
        100 * (i8["scores"]["subclip"]["accuracy"] - f32["scores"]["subclip"]["accuracy"])
    )
    assert change["agreement_with_torch"] == i8["agreement_with_torch"]
    assert 0 <= i8["probability_abs_diff"]["median"] <= i8["probability_abs_diff"]["p95"] <= 1


def _quant_params(proto, tensor: str, op: str) -> tuple[float, int]:
    """(scale, zero point) of the ``op`` (QuantizeLinear or DequantizeLinear) node that
    produces (Q: consumes) ``tensor`` in a QDQ model."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == op and tensor in (n.output if op == "DequantizeLinear" else n.input):
            return float(consts[n.input[1]]), int(consts[n.input[2]])
    raise AssertionError(f"no {op} around {tensor}")


def test_int8_concat_inputs_and_output_share_one_range(squeezenet_export):
    out, _ = squeezenet_export
    proto = onnx.load(str(out / "squeezenet1_0.int8.onnx"))
    concats = [n for n in proto.graph.node if n.op_type == "Concat"]
    assert len(concats) == 8  # one per Fire module
    for n in concats:
        params = {_quant_params(proto, t, "DequantizeLinear") for t in n.input}
        params.add(_quant_params(proto, n.output[0], "QuantizeLinear"))
        assert len(params) == 1, (n.name, params)


def test_concat_groups_join_chained_concats():
    from onnx import helper

    nodes = [
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=1),
        helper.make_node("Relu", ["ab"], ["r"]),
        helper.make_node("Concat", ["r", "c"], ["rc"], axis=1),
        helper.make_node("Concat", ["ab", "d"], ["abd"], axis=1),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    groups = sorted(sorted(g) for g in concat_groups(graph))
    assert groups == [["a", "ab", "abd", "b", "d"], ["c", "r", "rc"]]


def test_float_layers_store_their_weights_in_int8_and_compute_as_before():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {
        "conv_w": rng.normal(size=(64, 8, 3, 3)).astype(np.float32),  # 4608 values
        "in_out": rng.normal(size=(64 * 6 * 6, 300)).astype(np.float32),  # Gemm, transB=0
        "out_in": rng.normal(size=(16, 300)).astype(np.float32),  # Gemm, transB=1
        "small": rng.normal(size=(16, 16)).astype(np.float32),  # under the threshold
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"], name="a/Conv"),
        helper.make_node("Flatten", ["c"], ["f"], name="a/Flatten"),
        helper.make_node("Gemm", ["f", "in_out"], ["g"], name="b/Gemm"),
        helper.make_node("Gemm", ["g", "out_in"], ["h"], name="c/Gemm", transB=1),
        helper.make_node("Gemm", ["h", "small"], ["y"], name="d/Gemm"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])],
        [numpy_helper.from_array(v, k) for k, v in w.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = {"x": rng.normal(size=(2, 8, 8, 8)).astype(np.float32)}
    before = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    _store_float_weights_in_int8(model.graph, {"a/Conv", "b/Gemm", "c/Gemm", "d/Gemm"})
    onnx.checker.check_model(model, full_check=True)
    stored = {t.name: numpy_helper.to_array(t).dtype for t in model.graph.initializer}
    assert stored["conv_w_int8"] == stored["in_out_int8"] == stored["out_in_int8"] == np.int8
    assert "conv_w" not in stored and stored["small"] == np.float32
    scales = {t.name: t.dims[0] for t in model.graph.initializer if t.name.endswith("_scale")}
    assert scales == {"conv_w_int8_scale": 64, "in_out_int8_scale": 300, "out_in_int8_scale": 16}
    after = ort.InferenceSession(model.SerializeToString()).run(None, x)[0]
    np.testing.assert_allclose(after, before, rtol=0.03, atol=0.03 * np.abs(before).max())


def test_auto_calibration_keeps_the_method_closest_to_pytorch(squeezenet_export):
    _, report = squeezenet_export
    for fmt in ("onnx", "tflite"):
        chosen = report["files"][f"{fmt}/int8"]["calibration"]
        trials = chosen["candidates"]
        assert set(trials) == set(FORMATS[fmt].calibration)
        assert chosen["checked_on"] > 0  # held-out training sub-clips, not the scored ones
        best = max(
            trials, key=lambda m: (trials[m]["agreement"], -trials[m]["probability_abs_diff_mean"])
        )
        assert chosen["method"] == best


def _conv_weights(proto) -> dict:
    """Each Conv node's name and its weight's element type, through a DequantizeLinear."""
    tensors = {t.name: t for t in proto.graph.initializer}
    made_by = {out: n for n in proto.graph.node for out in n.output}
    types = {}
    for node in proto.graph.node:
        if node.op_type == "Conv":
            w = node.input[1]
            if w in made_by and made_by[w].op_type == "DequantizeLinear":
                w = made_by[w].input[0]
            types[node.name] = tensors[w].data_type
    return types


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods_and_float_modules(
    tmp_path, mobilenet_checkpoint, chord_recordings, method
):
    folder, cache = chord_recordings
    report = export_checkpoint(
        mobilenet_checkpoint,
        int8=True,
        calib=folder,
        calib_size=40,
        calib_method=method,
        formats=["onnx"],
        keep_float=["features.0", "features.18"],
        cache=cache,
        out=tmp_path,
    )
    assert report["files"]["onnx/int8"]["calibration"]["method"] == method
    assert report["calibration"]["kept_float"] == ["features.0", "features.18"]
    proto = onnx.load(str(tmp_path / "mobilenet_v2.int8.onnx"))
    types = _conv_weights(proto)
    kept = {n for n in types if n.startswith(("features.0.", "features.18."))}
    assert len(kept) == 2 and len(types) == 52  # the stem and the last 1x1 conv
    assert {t for n, t in types.items() if n not in kept} == {onnx.TensorProto.INT8}
    # Both are left out of quantisation; the last conv's 409,600 weights are stored as
    # int8 all the same (behind a DequantizeLinear), the stem's 288 stay float.
    stem, last = sorted(kept)
    assert (types[stem], types[last]) == (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8)
    assert report["files"]["onnx/int8"]["agreement_with_torch"] >= 0.8


def test_onnx_nodes_are_named_after_their_modules(mobilenet_checkpoint, tmp_path):
    export_checkpoint(mobilenet_checkpoint, formats=["onnx"], out=tmp_path)
    names = [n.name for n in onnx.load(str(tmp_path / "mobilenet_v2.onnx")).graph.node]
    assert len(set(names)) == len(names)
    assert names[0] == "features.0.1/Conv"  # the stem conv, batch norm folded in
    assert "classifier.1/Gemm" in names


def test_mobilenet_tflite_int8_is_integer_but_for_the_float_modules(
    tmp_path, mobilenet_checkpoint, chord_recordings
):
    folder, cache = chord_recordings
    common = dict(formats=["tflite"], int8=True, calib=folder, calib_size=40, cache=cache)
    export_checkpoint(mobilenet_checkpoint, calib_method="minmax", out=tmp_path / "d", **common)
    export_checkpoint(
        mobilenet_checkpoint, calib_method="minmax", keep_float=[], out=tmp_path / "i", **common
    )
    default, integer = (_tflite_ops(tmp_path / f / "mobilenet_v2.int8.tflite") for f in ("d", "i"))
    # All int8: residual additions included (found only by a strict export), no
    # DEQUANTIZE or QUANTIZE anywhere, int8 in and out.
    assert integer["ops"]["ADD"] == 10 and not {"DEQUANTIZE", "QUANTIZE"} & set(integer["ops"])
    assert integer["input"] == np.int8
    # The default keeps MobileNetV2's stem and first block in float: float input,
    # one QUANTIZE where the int8 part starts, and float32 weights for those 3 convs.
    assert default["input"] == np.float32
    assert default["ops"]["QUANTIZE"] == 1
    assert default["float_conv_weights"] == 3 and integer["float_conv_weights"] == 0
    # Inner tensors are named by index; the input and output keep their names.
    assert all(n.startswith("t") for n in default["inner_names"])


def _tflite_ops(path) -> dict:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    graph = model.subgraphs[0]
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops: dict[str, int] = {}
    float_convs = 0
    for op in graph.operators:
        name = codes[model.operatorCodes[op.opcodeIndex].builtinCode]
        ops[name] = ops.get(name, 0) + 1
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            float_convs += graph.tensors[op.inputs[1]].type == schema.TensorType.FLOAT32
    io = {*graph.inputs, *graph.outputs}
    return {
        "ops": ops,
        "input": TfliteBackend(path).input["dtype"],
        "float_conv_weights": float_convs,
        "inner_names": [t.name.decode() for i, t in enumerate(graph.tensors) if i not in io],
    }


def test_without_calibration_data_it_checks_on_the_builtin_recording(
    tmp_path, squeezenet_checkpoint
):
    report = export_checkpoint(squeezenet_checkpoint, out=tmp_path)
    assert report["scored_on"] == "the built-in demo recording"
    assert report["files"]["onnx/fp32"]["max_abs_diff_vs_torch"] <= 1e-4
    assert report["files"]["tflite/fp32"]["max_abs_diff_vs_torch"] <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "squeezenet1_0.export.json",
        "squeezenet1_0.export.md",
        "squeezenet1_0.onnx",
        "squeezenet1_0.tflite",
    ]


def test_refusals(tmp_path, squeezenet_checkpoint, chord_recordings):
    folder, cache = chord_recordings
    with pytest.raises(ParameterError, match="unknown format 'onx'.*did you mean 'onnx'"):
        export_checkpoint(squeezenet_checkpoint, formats=["onx"], out=tmp_path)
    with pytest.raises(ParameterError, match="--int8 needs --calib"):
        export_checkpoint(squeezenet_checkpoint, int8=True, out=tmp_path)
    with pytest.raises(ParameterError, match="calibration method 'minmx'.*'minmax'"):
        export_checkpoint(
            squeezenet_checkpoint, int8=True, calib=folder, calib_method="minmx", out=tmp_path
        )
    with pytest.raises(ParameterError, match="at least 32"):
        export_checkpoint(
            squeezenet_checkpoint, int8=True, calib=_few_recordings(tmp_path), out=tmp_path
        )
    other = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ParameterError, match="not a musemo checkpoint"):
        export_checkpoint(other, out=tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


def _few_recordings(tmp_path):
    return write_chord_dataset(tmp_path / "few", per_label=2, seconds=2.2)


def test_existing_files_need_force(tmp_path, squeezenet_checkpoint):
    export_checkpoint(squeezenet_checkpoint, formats=["onnx"], out=tmp_path)
    before = (tmp_path / "squeezenet1_0.onnx").stat().st_mtime_ns
    with pytest.raises(ParameterError, match="already in .*--force"):
        export_checkpoint(squeezenet_checkpoint, formats=["onnx"], out=tmp_path)
    assert (tmp_path / "squeezenet1_0.onnx").stat().st_mtime_ns == before
    export_checkpoint(squeezenet_checkpoint, formats=["onnx"], out=tmp_path, force=True)
    assert (tmp_path / "squeezenet1_0.onnx").stat().st_mtime_ns != before


def test_a_failed_export_leaves_nothing_behind(
    tmp_path, squeezenet_checkpoint, chord_recordings, monkeypatch
):
    folder, cache = chord_recordings

    def broken_quantiser(*args, **kwargs):
        raise RuntimeError("quantiser crashed")

    monkeypatch.setattr("musemo.export.onnx.quantize_onnx", broken_quantiser)
    with pytest.raises(RuntimeError, match="quantiser crashed"):
        export_checkpoint(
            squeezenet_checkpoint,
            formats=["onnx"],
            int8=True,
            calib=folder,
            calib_size=40,
            cache=cache,
            out=tmp_path,
        )
    assert list(tmp_path.iterdir()) == []  # not the fp32 file, not the staging folder


def test_missing_converter_is_named(monkeypatch):
    monkeypatch.setitem(
        FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], requires=("no_such_module_xyz",))
    )
    with pytest.raises(
        ImportError, match=r"needs no_such_module_xyz: pip install 'musemo\[export\]'"
    ):
        exporter_module.check_request(
            ["onnx"], "squeezenet1_0", int8=False, calib=None, calib_method="minmax"
        )


def test_command_lines(tmp_path, squeezenet_checkpoint, chord_recordings, capsys, caplog):
    folder, cache = chord_recordings
    caplog.set_level(logging.INFO, logger="musemo.export")
    code = export_main(
        [
            str(squeezenet_checkpoint),
            "--int8",
            "--calib",
            str(folder),
            "--calib-size",
            "40",
            "--cache",
            str(cache),
            "--out",
            str(tmp_path / "a"),
            "--name",
            "chords",
            "--format",
            "onnx",
        ]
    )
    assert code == 0
    assert "| chords.int8.onnx |" in capsys.readouterr().out
    assert any("onnx int8 export: done in" in r.message for r in caplog.records)
    assert (tmp_path / "a" / "chords.int8.onnx").is_file()
    args = ["export", str(squeezenet_checkpoint), "--out", str(tmp_path / "b"), "--format", "onnx"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert export_main([str(squeezenet_checkpoint), "--format", "tflte"]) == 2
    assert "did you mean 'tflite'" in capsys.readouterr().err


def test_tflite_refusals(tmp_path, squeezenet_checkpoint, chord_recordings):
    folder, _ = chord_recordings
    with pytest.raises(ParameterError, match="tflite calibrates with auto, minmax, histogram"):
        export_checkpoint(
            squeezenet_checkpoint,
            formats=["tflite"],
            int8=True,
            calib=folder,
            calib_method="entropy",
            out=tmp_path,
        )
    with pytest.raises(ParameterError, match="--keep-float applies to int8 files"):
        export_checkpoint(squeezenet_checkpoint, formats=["tflite"], keep_float=["x"], out=tmp_path)
    with pytest.raises(ParameterError, match="no such module.*did you mean 'features.0'"):
        export_checkpoint(
            squeezenet_checkpoint,
            formats=["tflite"],
            int8=True,
            calib=folder,
            keep_float=["featurs.0"],
            out=tmp_path,
        )
    with pytest.raises(ParameterError, match="tflite export takes .*not vgg16"):
        exporter_module.check_request(
            ["tflite"], "vgg16", int8=False, calib=None, calib_method="minmax"
        )


def test_ceil_mode_pools_are_rewritten_exactly(squeezenet_checkpoint, chord_recordings):
    x, model = _real_inputs(squeezenet_checkpoint, *chord_recordings)
    ready = litert_ready(model, x[:4])
    ceil = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d) and m.ceil_mode]
    assert len(ceil) == 3
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in ready.modules())
    with torch.inference_mode():  # equal up to the memory layout's summation order
        got, want = ready(torch.from_numpy(x)), model(torch.from_numpy(x))
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_tflite_files_match_pytorch_and_int8_agrees(
    squeezenet_export, squeezenet_checkpoint, chord_recordings
):
    out, report = squeezenet_export
    x, model = _real_inputs(squeezenet_checkpoint, *chord_recordings)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    fp32 = TfliteBackend(out / "squeezenet1_0.tflite")
    np.testing.assert_allclose(fp32.logits(x), want, atol=1e-4, rtol=0)
    int8 = TfliteBackend(out / "squeezenet1_0.int8.tflite")
    # The 7x7 one-channel stem stays float in LiteRT by default (faster so): float
    # input, int8 from there on.
    assert int8.input["dtype"] == np.float32
    assert report["files"]["tflite/int8"]["calibration"]["kept_float"] == ["features.0"]
    ops = _tflite_ops(out / "squeezenet1_0.int8.tflite")
    assert ops["ops"]["QUANTIZE"] >= 1 and ops["float_conv_weights"] == 1
    assert (int8.logits(x).argmax(1) == want.argmax(1)).mean() >= 0.95
    sizes = {k: f["bytes"] for k, f in report["files"].items()}
    assert sizes["tflite/int8"] < sizes["tflite/fp32"] / 3


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b[:100], "not a valid TFLite model"),
        (lambda b: b[:4] + b"XXXX" + b[8:], "not a TFLite model"),
        (lambda b: b"", "not a TFLite model"),
        (
            lambda b: b[:8] + bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8)),
            "TFLite",
        ),
    ],
)
def test_tflite_metadata_reader_refuses_broken_files(squeezenet_export, mangle, message):
    out, _ = squeezenet_export
    good = (out / "squeezenet1_0.int8.tflite").read_bytes()
    with pytest.raises(ParameterError, match=message):
        read_tflite_metadata(mangle(good), source="x.tflite")


def test_a_tflite_model_without_musemo_metadata_is_named(tmp_path):
    import litert_torch

    plain = tmp_path / "plain.tflite"
    litert_torch.convert(torch.nn.Linear(4, 2).eval(), (torch.zeros(1, 4),)).export(str(plain))
    with pytest.raises(ParameterError, match="plain.tflite carries no musemo metadata"):
        read_tflite_metadata(plain.read_bytes(), source="plain.tflite")


@pytest.mark.parametrize(
    "model, int8",
    [("resnet18", True), pytest.param("vgg16", False, marks=pytest.mark.slow)],
)
def test_the_larger_models_export_to_onnx(tmp_path, chord_recordings, model, int8):
    folder, cache = chord_recordings
    checkpoint = train_tiny(tmp_path, folder, cache, model)
    report = export_checkpoint(
        checkpoint,
        formats=["onnx"],
        int8=int8,
        calib=folder,
        calib_size=40,
        cache=cache,
        out=tmp_path / "out",
    )
    assert report["files"]["onnx/fp32"]["max_abs_diff_vs_torch"] <= 1e-4
    if int8:
        assert report["files"]["onnx/int8"]["agreement_with_torch"] >= 0.9


def test_without_a_cache_folder_features_leave_nothing_behind(
    tmp_path, squeezenet_checkpoint, chord_recordings, monkeypatch
):
    import tempfile

    folder, _ = chord_recordings
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = export_checkpoint(
        squeezenet_checkpoint, int8=True, calib=folder, calib_size=40, formats=["onnx"],
        out=tmp_path / "out",
    )  # fmt: skip
    assert report["files"]["onnx/int8"]["agreement_with_torch"] >= 0.8
    assert list(scratch.iterdir()) == []


def test_calibration_reads_a_few_inputs_at_a_time():
    """onnxruntime calibrates in rounds of at most 16 inputs (their activations held
    at once), over every input exactly once."""
    from musemo.export.onnx import _Batches, calibration_stride

    assert [calibration_stride(n) for n in (256, 48, 37, 10, 1)] == [16, 16, 1, 10, 1]
    inputs = [np.full((1, 1, 2, 2), i, np.float32) for i in range(48)]
    reader, seen = _Batches(inputs), []
    stride = calibration_stride(len(reader))
    for start in range(0, len(reader), stride):
        reader.set_range(start_index=start, end_index=start + stride)
        while (batch := reader.get_next()) is not None:
            seen.append(int(next(iter(batch.values()))[0, 0, 0, 0]))
    assert seen == list(range(48))
