"""Shared fixtures: test signals and the SIMD kernel sets to run each test on."""

from __future__ import annotations

import os

# Training on the CPU follows the cores other programs leave free (ThreadGovernor), and
# another thread count changes the last bits of the weights: tests that rerun a training
# and compare run at a fixed count, as a user who wants bit-identical reruns does.
# tests/test_shared_machine.py takes it away to test the governor.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

import numpy as np  # noqa: E402
import pytest
from signals import tonal_signal

import musemo
from musemo.features import spectral as features

# Tests that train a model, export one, or run the demo: `make test-fast` leaves them out.
SLOW_FIXTURES = {
    "chord_recordings",
    "squeezenet_checkpoint",
    "squeezenet_export",
    "mobilenet_checkpoint",
}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=musemo.available_kernels())
def kernel_set(request, monkeypatch) -> str:
    """Run the test once per SIMD kernel set this CPU supports (avx512, avx2, generic)."""
    monkeypatch.setattr(features, "_KERNELS", request.param)
    features._cached_plan.cache_clear()
    yield request.param
    features._cached_plan.cache_clear()


@pytest.fixture
def one_second_tonal_44k() -> np.ndarray:
    return tonal_signal(44100, 44100)


@pytest.fixture
def noise_3001_samples() -> np.ndarray:
    return np.random.default_rng(1).standard_normal(3001).astype(np.float32)


@pytest.fixture(scope="module")
def chord_dataset(tmp_path_factory):
    """(folder, cache, data, train rows, validation rows) of 16 major/minor chord
    recordings cut into 1 s sub-clips, split 75/25 by recording."""
    from fixtures_audio import tiny_spec, write_chord_dataset

    from musemo.data import holdout_split, load_dataset

    root = tmp_path_factory.mktemp("chords")
    folder = write_chord_dataset(root / "chords", per_label=8)
    data, _ = load_dataset(folder, tiny_spec(), cache=root / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25, seed=0)
    return folder, root / "cache", data, train, val


@pytest.fixture(scope="session")
def chord_recordings(tmp_path_factory):
    """(folder, cache) of 20 major/minor chord recordings of 4.2 s."""
    from fixtures_audio import write_chord_dataset

    root = tmp_path_factory.mktemp("export")
    folder = write_chord_dataset(root / "chords", per_label=10)
    return folder, root / "cache"


@pytest.fixture(scope="session")
def squeezenet_checkpoint(tmp_path_factory, chord_recordings):
    pytest.importorskip("torch")
    from fixtures_models import train_tiny

    folder, cache = chord_recordings
    return train_tiny(tmp_path_factory.mktemp("runs"), folder, cache, "squeezenet1_0")


@pytest.fixture(scope="session")
def squeezenet_export(tmp_path_factory, squeezenet_checkpoint, chord_recordings):
    """(folder, report) of the tiny SqueezeNet exported to every format, fp32 and int8."""
    for module in ("onnx", "onnxruntime", "onnxscript", "litert_torch", "ai_edge_litert"):
        pytest.importorskip(module)
    from musemo.export import export_checkpoint

    folder, cache = chord_recordings
    out = tmp_path_factory.mktemp("exported")
    report = export_checkpoint(
        squeezenet_checkpoint, int8=True, calib=folder, calib_size=48, cache=cache, out=out
    )
    return out, report


@pytest.fixture(scope="session")
def musicnn_wheel():
    """The musicnn wheel in musemo's cache, downloaded with pip when it is not there
    (``make test`` fetches it first)."""
    from musemo.training import pretrained

    return pretrained.find_wheel() or pretrained.download_wheel()


@pytest.fixture(scope="session")
def bundle(musicnn_wheel) -> tuple[bytes, bytes]:
    """The ``.index`` and ``.data`` bytes of the wheel's MSD_musicnn checkpoint."""
    import zipfile

    with zipfile.ZipFile(musicnn_wheel) as z:
        return tuple(z.read(f"musicnn/MSD_musicnn/{p}") for p in (".index", ".data-00000-of-00001"))
