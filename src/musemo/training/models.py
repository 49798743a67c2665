"""The networks: the paper's four ImageNet CNNs, adapted to 1-channel log-mel input and
a small head, and musicnn (``musicnn.py``), pretrained on the Million Song Dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import MissingDependencyError, ParameterError

CNNS = ("squeezenet1_0", "mobilenet_v2", "resnet18", "vgg16")
MODELS = (*CNNS, "musicnn")
# replace the last layer; add one after it (the paper's); musicnn only: a new last layer
# on its embedding and pooled mid-level features together
HEADS = ("replace", "paper", "pooled")
# Networks whose first layer normalises their input (batch norm over the raw features):
# training leaves input_mean / input_std at 0 / 1 for them, as their weights expect.
RAW_INPUT = ("musicnn",)

# torchvision's weight enums, by model.
_WEIGHTS = {
    "squeezenet1_0": "SqueezeNet1_0_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "resnet18": "ResNet18_Weights",
    "vgg16": "VGG16_Weights",
}


def _torch():
    try:
        import torch
        import torchvision
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("training needs torch and torchvision", "train") from exc
    return torch, torchvision


def imagenet_state_dict(name: str) -> dict:
    """The ImageNet weights of torchvision for ``name`` from its cache (downloading when online).

    Offline, the error says which file to put where.
    """
    torch, torchvision = _torch()
    weights = getattr(torchvision.models, _WEIGHTS[name]).IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        return weights.get_state_dict(progress=True)
    except OSError as exc:  # URLError is an OSError
        raise ParameterError(
            f"cannot download ImageNet weights for {name} ({exc}). Offline, copy {filename} "
            f"to {cached} (or set TORCH_HOME), or pass weights=<path to a .pth file>"
        ) from exc


def _first_conv(model, name: str):
    """(parent module, attribute) of the first convolution."""
    if name == "resnet18":
        return model, "conv1"
    if name == "mobilenet_v2":
        return model.features[0], "0"
    return model.features, "0"  # squeezenet1_0, vgg16


def _adapt_input(model, name: str, torch) -> None:
    """Make the first convolution take one channel: ImageNet's RGB filters summed,
    so a grey image gives what the RGB model gave for the same image in colour."""
    parent, attr = _first_conv(model, name)
    old = getattr(parent, attr)
    new = torch.nn.Conv2d(
        1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None
    )
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(parent, attr, new)


def _replace_head(model, name: str, n_classes: int, torch) -> None:
    nn = torch.nn
    if name == "squeezenet1_0":
        # The ImageNet head ends in ReLU; with 2 classes that gives ties at zero,
        # so the new head outputs raw logits.
        model.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Conv2d(512, n_classes, 1), nn.AdaptiveAvgPool2d((1, 1))
        )
        model.num_classes = n_classes
    elif name == "mobilenet_v2":
        model.classifier[1] = nn.Linear(model.classifier[1].in_features, n_classes)
    elif name == "resnet18":
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    else:
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, n_classes)


def head_of(model, name: str, head: str = "replace"):
    """The module of ``build_model(name, head=head)`` that a new task trains from scratch."""
    if head == "paper":
        return model[1]
    path = {
        "squeezenet1_0": "classifier",
        "mobilenet_v2": "classifier.1",
        "resnet18": "fc",
        "vgg16": "classifier.6",
        "musicnn": "head",
    }[name]
    return model.get_submodule(path)


def _build_musicnn(n_classes: int, weights: str, head: str, labels):
    from .musicnn import build_musicnn, pretrained_musicnn

    if head == "paper":
        raise ParameterError(
            "musicnn takes head='replace' (a new head on its 200-d embedding) or 'pooled' "
            "(on the embedding and its pooled mid-level features)"
        )
    reads = "pooled" if head == "pooled" else "penultimate"
    if weights == "pretrained":
        return pretrained_musicnn(n_outputs=n_classes, labels=labels, head_input=reads).train()
    if weights != "none":
        raise ParameterError(f"weights={weights!r}: musicnn takes 'pretrained' or 'none'")
    return build_musicnn(n_classes, head_input=reads)


def build_model(
    name: str,
    *,
    n_classes: int = 2,
    weights: str = "none",
    head: str = "replace",
    labels: Sequence[str] | None = None,
):
    """A network for 1-channel ``(batch, 1, n_mels, frames)`` input with ``n_classes``
    raw logits.

    For the torchvision CNNs, ``weights`` is ``"none"`` (random init), ``"imagenet"``
    (torchvision's weights), or a path to a state dict of the torchvision model (loaded
    with ``weights_only=True``); ``head`` is ``"replace"`` the final layer, or
    ``"paper"``: keep the 1000-way layer and add a ``n_classes`` layer after it.
    For ``"musicnn"``, ``weights`` is ``"pretrained"`` (the MSD weights, its 50-tag head
    replaced: by those tags' rows when every one of ``labels`` is an MSD tag, such as
    happy and sad) or ``"none"``; ``head`` is ``"replace"`` (a head on the 200-d
    embedding) or ``"pooled"`` (on the embedding and the pooled mid-level features).
    """
    torch, torchvision = _torch()
    if name not in MODELS:
        raise ParameterError(f"model {name!r}: choose one of {', '.join(MODELS)}")
    if head not in HEADS:
        raise ParameterError(f"head {head!r}: choose one of {HEADS}")
    if name == "musicnn":
        return _build_musicnn(n_classes, weights, head, labels)
    if head == "pooled":
        raise ParameterError(f"head 'pooled' is musicnn's; {name} takes 'replace' or 'paper'")
    model = getattr(torchvision.models, name)(weights=None)
    if weights == "imagenet":
        model.load_state_dict(imagenet_state_dict(name))
    elif weights != "none":
        path = Path(weights)
        if not path.is_file():
            raise ParameterError(f"weights={weights!r}: use 'none', 'imagenet' or a .pth file path")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise ParameterError(
                f"{path} does not hold {name}'s ImageNet-shaped weights: {exc}"
            ) from exc
    _adapt_input(model, name, torch)
    if head == "replace":
        _replace_head(model, name, n_classes, torch)
    else:
        model = torch.nn.Sequential(model, torch.nn.Linear(1000, n_classes))
    return model
