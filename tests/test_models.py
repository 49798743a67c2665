"""The networks: 1-channel input, 2-class heads, and every way of loading weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from musemo import ParameterError
from musemo.training import MODELS, build_model


@pytest.mark.parametrize("name", MODELS)
def test_one_channel_in_two_logits_out(name):
    model = build_model(name).eval()
    mels = 96 if name == "musicnn" else 64  # musicnn's filters span 67 of its 96 mels
    with torch.no_grad():
        out = model(torch.randn(3, 1, mels, 80))
    assert out.shape == (3, 2)


def test_musicnn_refuses_what_it_cannot_be():
    with pytest.raises(ParameterError, match="head='replace'"):
        build_model("musicnn", head="paper")
    with pytest.raises(ParameterError, match="musicnn takes 'pretrained' or 'none'"):
        build_model("musicnn", weights="imagenet")


def test_squeezenet_head_gives_raw_logits():
    """ImageNet's SqueezeNet ends in ReLU; a 2-class head must not, or logits tie at 0."""
    model = build_model("squeezenet1_0").eval()
    conv = model.classifier[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([-1.0, -2.0]))
        out = model(torch.randn(4, 1, 64, 80))
    torch.testing.assert_close(out, torch.tensor([[-1.0, -2.0]] * 4))


def test_paper_head_keeps_the_1000_way_layer():
    model = build_model("resnet18", head="paper")
    assert model[0].fc.out_features == 1000 and model[1].out_features == 2


def test_weights_from_a_file_adapt_the_first_convolution(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", weights=str(path))
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    torch.testing.assert_close(model.conv1.weight, expected)
    torch.testing.assert_close(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_imagenet_weights_come_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.squeezenet1_0(weights=None)
    url = torchvision.models.SqueezeNet1_0_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    model = build_model("squeezenet1_0", weights="imagenet")
    torch.testing.assert_close(
        model.features[3].squeeze.weight, reference.features[3].squeeze.weight
    )


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    try:
        build_model("squeezenet1_0", weights="imagenet")
    except ParameterError as exc:  # offline, as on the build machines
        assert "squeezenet1_0-b66bff10.pth" in str(exc) and str(tmp_path) in str(exc)
    else:  # online: the download worked and landed in the cache
        assert list((tmp_path / "hub" / "checkpoints").iterdir())


def test_bad_choices_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="choose one of squeezenet1_0"):
        build_model("alexnet")
    with pytest.raises(ParameterError, match="head 'tiny'"):
        build_model("resnet18", head="tiny")
    with pytest.raises(ParameterError, match="use 'none', 'imagenet' or a .pth file path"):
        build_model("resnet18", weights="imagenette")
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.squeezenet1_0(weights=None).state_dict(), wrong)
    with pytest.raises(ParameterError, match="does not hold resnet18"):
        build_model("resnet18", weights=str(wrong))
