"""musicnn in PyTorch: its weights from the wheel's TensorFlow checkpoint (read without
TensorFlow: ``test_tf_bundle.py``), and its outputs against the original's
(``tests/data/musicnn_reference.npz``, written by ``tests/reference/musicnn_tf.py``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from musemo import ParameterError
from musemo.training import pretrained
from musemo.training.musicnn import (
    MSD_TAGS,
    build_musicnn,
    inference_form,
    pretrained_musicnn,
    state_dict_from_tensorflow,
)
from musemo.training.tf_bundle import read_tensors

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"


@pytest.fixture(scope="session")
def model(musicnn_wheel):
    return pretrained_musicnn()


def test_missing_or_mis_shaped_variables_are_refused_by_name(bundle):
    tensors = {k: v for k, v in read_tensors(*bundle).items() if "Adam" not in k}
    net = build_musicnn()
    state = state_dict_from_tensorflow(tensors, net)
    net.load_state_dict(state)  # complete: every parameter and statistic
    without = dict(tensors)
    del without["batch_normalization_7/moving_variance"]
    with pytest.raises(ParameterError, match="no variable batch_normalization_7/moving_variance"):
        state_dict_from_tensorflow(without, net)
    wrong = dict(tensors, **{"conv2d_1/kernel": tensors["conv2d/kernel"]})
    with pytest.raises(ParameterError, match=r"conv2d_1/kernel has shape \(7, 38, 1, 204\)"):
        state_dict_from_tensorflow(wrong, net)


def test_the_port_gives_the_originals_outputs(model):
    """Tags, embedding and pooled features of TensorFlow's run of the saved graph.

    The pooled features reach ~100, where float32 keeps ~1e-5: the port in float64
    differs from TensorFlow by as much as the port in float32 does."""
    ref = np.load(REFERENCE)
    x = torch.from_numpy(ref["x"]).transpose(1, 2)[:, None]  # (4, 1, 96, 187)
    with torch.no_grad():
        out = model.embed(x)
    np.testing.assert_allclose(torch.sigmoid(out["logits"]).numpy(), ref["tags"], atol=1e-4, rtol=0)
    for key in ("penultimate", "mean_pool", "max_pool"):
        np.testing.assert_allclose(out[key].numpy(), ref[key], atol=1e-4, rtol=1e-5, err_msg=key)


def test_any_number_of_frames(model):
    with torch.no_grad():
        for frames in (50, 187, 400):
            assert model(torch.randn(2, 1, 96, frames)).shape == (2, 50)


@pytest.mark.parametrize("checkpoint", ["MSD_musicnn", "MTT_musicnn"])
def test_the_inference_form_gives_the_same_outputs(musicnn_wheel, checkpoint):
    """Pooling before batch norm, with its negative-scale channels negated and its dead
    filters as constants: every layer a probe reads equals the original's to float
    rounding, on real weights (most timbral channels negative, most MSD filters dead)."""
    original = pretrained_musicnn(checkpoint, n_outputs=2, head_input="pooled")
    before = {k: v.clone() for k, v in original.state_dict().items()}
    fast = inference_form(original)
    assert any((b.bn.weight < 0).any() for b in original.frontend)
    live = {"MSD_musicnn": [23, 14, 3, 7, 17], "MTT_musicnn": [114, 79, 38, 36, 47]}
    assert [b.conv.out_channels for b in fast.frontend] == live[checkpoint]
    x = 3 * torch.rand(3, 1, 96, 187, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want, got = original.embed(x), fast.embed(x)
    for key, value in want.items():  # values up to 60: float32 rounding is 4e-6
        torch.testing.assert_close(got[key], value, atol=1e-4, rtol=1e-5, msg=key)
    for key, value in original.state_dict().items():  # the original is left as it was
        assert torch.equal(value, before[key]), key
    with pytest.raises(ParameterError, match="inference form cannot train"):
        fast.train()


def test_tags_are_the_msd_fifty():
    assert len(MSD_TAGS) == 50 and MSD_TAGS[47] == "sad" and MSD_TAGS[49] == "happy"


def test_no_wheel_and_no_network_names_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEMO_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr(pretrained, "_installed_package", lambda: None)
    with pytest.raises(ParameterError, match="musemo fetch musicnn") as err:
        pretrained_musicnn()
    assert str(tmp_path / "weights" / pretrained.WHEEL) in str(err.value)
    # pip itself, told there is no index: the error says where a copied wheel goes
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(ParameterError, match=r"cannot download musicnn==0.1.0 .*copy"):
        pretrained.download_wheel()


def test_a_copied_wheel_is_checked_and_kept(tmp_path, monkeypatch, musicnn_wheel):
    monkeypatch.setenv("MUSEMO_WEIGHTS", str(tmp_path / "w"))
    other = tmp_path / pretrained.WHEEL
    other.write_bytes(b"not the wheel")
    with pytest.raises(ParameterError, match="SHA-256"):
        pretrained.add_wheel(other)
    assert pretrained.find_wheel() is None
    assert pretrained.add_wheel(musicnn_wheel) == tmp_path / "w" / pretrained.WHEEL
    assert pretrained.find_wheel().read_bytes() == musicnn_wheel.read_bytes()


def test_weights_from_an_installed_package(tmp_path, monkeypatch, musicnn_wheel, model):
    """``pip install --no-deps musicnn`` puts the checkpoints in site-packages: they are
    read from there, without importing the package (it needs TensorFlow)."""
    with zipfile.ZipFile(musicnn_wheel) as z:
        z.extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("MUSEMO_WEIGHTS", str(tmp_path / "empty"))
    import importlib

    importlib.invalidate_caches()
    loaded = pretrained_musicnn()
    for (k, a), b in zip(loaded.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_fetch_command(tmp_path, monkeypatch, musicnn_wheel, capsys):
    from musemo.cli import main

    monkeypatch.setenv("MUSEMO_WEIGHTS", str(tmp_path))
    assert main(["fetch", "musicnn", "--wheel", str(musicnn_wheel)]) == 0
    assert str(tmp_path / pretrained.WHEEL) in capsys.readouterr().out
    assert main(["fetch", "musicnn"]) == 0  # already there: nothing downloaded
    assert main(["fetch", "musicnn", "--wheel", str(tmp_path / "nothing.whl")]) == 2
    assert "no such file" in capsys.readouterr().err
