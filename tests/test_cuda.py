"""Training on a CUDA GPU: mixed precision (bf16, fp16 with scaling), resume, CPU parity.

Skipped where torch sees no GPU; run on one with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

from fixtures_audio import tiny_spec

from musemo import ParameterError
from musemo.training import TrainConfig, fit, load_checkpoint, model_from_checkpoint, predict
from musemo.training import loop as train_module

CUDA_CONFIG = TrainConfig(model="squeezenet1_0", epochs=3, batch_size=16, lr=3e-3, device="cuda")


@pytest.mark.parametrize("model", ["squeezenet1_0", "mobilenet_v2", "resnet18", "vgg16"])
def test_every_model_trains_with_bf16_autocast(tmp_path, chord_dataset, model):
    _, _, data, train, val = chord_dataset
    cfg = dataclasses.replace(CUDA_CONFIG, model=model, epochs=2, lr=None)
    metrics = fit(data, train, val, tiny_spec(), cfg, tmp_path / "run", progress=False)
    final = metrics["final"]
    assert final["device"] == "cuda" and final["amp"] == "bfloat16"
    losses = [h["train_loss"] for h in metrics["history"]]
    assert np.isfinite(losses).all() and np.isfinite(final["val_loss"])
    state = load_checkpoint(tmp_path / "run" / "last.pt")  # saved from the GPU, loads on CPU
    assert all(t.device.type == "cpu" for t in state["model_state"].values())


def test_fp16_with_gradient_scaling_learns(tmp_path, chord_dataset, monkeypatch):
    _, _, data, train, val = chord_dataset
    monkeypatch.setattr(train_module, "_amp_dtype", lambda device, enabled: torch.float16)
    metrics = fit(data, train, val, tiny_spec(), CUDA_CONFIG, tmp_path / "run", progress=False)
    assert metrics["final"]["amp"] == "float16"
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["scaler"]["scale"] > 0  # the GradScaler ran and kept a finite scale
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_gpu_checkpoint_predicts_like_on_the_cpu(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    cfg = dataclasses.replace(CUDA_CONFIG, amp=False, epochs=2)
    fit(data, train, val, tiny_spec(), cfg, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    from musemo.features import FeatureSpec

    spec = FeatureSpec.from_dict(state["spec"])
    model = model_from_checkpoint(state)
    on_cpu, _ = predict(model, data, val, spec, torch.device("cpu"))
    on_gpu, _ = predict(model.cuda(), data, val, spec, torch.device("cuda"))
    np.testing.assert_allclose(on_gpu, on_cpu, atol=2e-3)


def test_resume_on_the_gpu(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset

    def interrupt(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(data, train, val, tiny_spec(), CUDA_CONFIG, tmp_path, on_epoch=interrupt)
    resumed = fit(data, train, val, tiny_spec(), CUDA_CONFIG, tmp_path, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]


def test_out_of_memory_names_a_smaller_batch(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # room for SqueezeNet's weights, not for a batch's activations
    limit = (torch.cuda.memory_reserved() + (16 << 20)) / total
    torch.cuda.set_per_process_memory_fraction(limit)
    try:
        cfg = dataclasses.replace(CUDA_CONFIG, epochs=1)
        with pytest.raises(ParameterError, match="out of memory.*--batch-size 8"):
            fit(data, train, val, tiny_spec(), cfg, tmp_path, progress=False)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
