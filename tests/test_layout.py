"""The package's shape: which subpackage may import which, the torch-free boundary of the
features and the edge runtime, and files written before the layout changed."""

from __future__ import annotations

import ast
import json
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import musemo

PACKAGE = Path(musemo.__file__).parent
PRE_LAYOUT = Path(__file__).parent / "data" / "pre_layout"
HEAVY = ("torch", "torchvision", "sklearn", "tensorflow")
# what each subpackage must never import (lazily or not): the arrows of docs/architecture.md
FORBIDDEN = {
    "musemo.audio": (
        "musemo.features",
        "musemo.data",
        "musemo.training",
        "musemo.export",
        "musemo.edge",
    ),
    "musemo.features": ("musemo.data", "musemo.training", "musemo.export", "musemo.edge"),
    "musemo.edge": ("musemo.data", "musemo.training", "musemo.export"),
    "musemo.data": ("musemo.training", "musemo.export", "musemo.edge"),
    "musemo.training": ("musemo.export", "musemo.edge"),
    "musemo.scale": ("musemo.training", "musemo.export"),
}
TORCH_FREE = ("musemo.audio", "musemo.features", "musemo.edge", "musemo.scale")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions, as absolute names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_subpackages_import_only_what_the_layout_allows(path):
    name = _module_name(path)
    imported = _imports(path)
    for owner, forbidden in FORBIDDEN.items():
        if name == owner or name.startswith(owner + "."):
            bad = sorted(m for m in imported if m.startswith(forbidden))
            assert not bad, f"{name} imports {bad}"
    if name.startswith(TORCH_FREE):
        heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
        assert not heavy, f"{name} imports {heavy}"


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints a JSON object last."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


LOADED = """
import json, sys
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "sklearn",
    "tensorflow", "litert_torch", "onnx"} | {m for m in sys.modules if m.startswith((
    "musemo.data", "musemo.training", "musemo.export"))})
print(json.dumps({"loaded": loaded, "result": result}))
"""


@pytest.mark.parametrize("model", ["squeezenet1_0.int8.tflite", "squeezenet1_0.int8.onnx"])
def test_classifying_a_file_loads_no_training_export_or_torch(model, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    import soundfile as sf

    wav = tmp_path / "tone.wav"
    t = np.arange(16000 * 3) / 16000
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    code = (
        "from musemo.edge import Classifier\n"
        f"result = Classifier({str(PRE_LAYOUT / model)!r}).predict_file({str(wav)!r}).label\n"
        + LOADED
    )
    out = _run(code)
    assert out["result"] in ("happy", "sad")
    assert out["loaded"] == []


def test_computing_a_mel_spectrogram_loads_no_data_training_or_export():
    code = (
        "import numpy as np, musemo\n"
        "y = np.zeros(22050, np.float32)\n"
        "result = list(musemo.melspectrogram(y=y, sr=22050).shape)\n"
        "musemo.MelExtractor(musemo.FeatureSpec()).compute(np.ones(44100, np.float32))\n" + LOADED
    )
    out = _run(code)
    assert out["result"] == [128, 44]
    assert out["loaded"] == []


def test_importing_every_module_loads_no_heavy_library():
    code = (
        "import importlib, pkgutil, musemo\n"
        "for m in pkgutil.walk_packages(musemo.__path__, 'musemo.'):\n"
        "    if m.name != 'musemo.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "result = None\n"
        "import json, sys\n"
        "print(json.dumps({'heavy': sorted({m.split('.')[0] for m in sys.modules} & "
        f"{set(HEAVY)!r})}}))"
    )
    assert _run(code)["heavy"] == []


# ----------------------------------------------------------------------------- old files


def _expected() -> dict:
    return json.loads((PRE_LAYOUT / "expected.json").read_text())


def test_a_checkpoint_written_before_the_layout_changed_loads_and_predicts_alike():
    torch = pytest.importorskip("torch")
    from musemo.features import FeatureSpec, MelExtractor
    from musemo.training import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(PRE_LAYOUT / "last.pt")
    spec = FeatureSpec.from_dict(state["spec"])
    x = MelExtractor(spec).compute(_chord(spec.sample_rate)[: spec.clip_samples])
    x = ((x - spec.input_mean) / spec.input_std)[None, None].astype(np.float32)
    with torch.inference_mode():
        logits = model_from_checkpoint(state)(torch.from_numpy(x)).numpy()[0]
    assert state["epoch"] == _expected()["last.pt"]["epoch"]
    np.testing.assert_allclose(logits, _expected()["last.pt"]["logits"], atol=1e-5)


def test_checkpoints_name_no_musemo_module():
    """A checkpoint's pickle refers to torch's storage types only, so moving musemo's
    modules can never break loading one."""
    with zipfile.ZipFile(PRE_LAYOUT / "last.pt") as z:
        pickle = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    globals_ = {arg for op, arg, _ in pickletools.genops(pickle) if op.name == "GLOBAL"}
    assert globals_ and all(not g.startswith("musemo") for g in globals_), globals_


@pytest.mark.parametrize("model", ["squeezenet1_0.int8.tflite", "squeezenet1_0.int8.onnx"])
def test_model_files_written_before_the_layout_changed_classify_alike(model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from musemo.edge import Classifier

    result = Classifier(PRE_LAYOUT / model).predict_array(_chord(16000), 16000)
    expected = _expected()[model]
    assert result.label == expected["label"]
    for label, p in expected["probabilities"].items():
        assert result.probabilities[label] == pytest.approx(p, abs=1e-5)


def _chord(sr: int) -> np.ndarray:
    """2.5 s of a C major triad, the input the expected outputs were computed on."""
    t = np.arange(int(sr * 2.5)) / sr
    return (0.2 * sum(np.sin(2 * np.pi * f * t) for f in (262.0, 330.0, 392.0))).astype(np.float32)


def test_feature_caches_written_before_the_layout_changed_are_reused():
    """The cache folder of the test spec, as the flat-layout package named it: a change
    here recomputes every user's cache (bump FEATURES_REVISION when that is meant)."""
    from fixtures_audio import tiny_spec

    assert tiny_spec().feature_key() == "cc5f978637460ad1"
