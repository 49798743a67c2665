"""Checkpoints: plain dicts of tensors and JSON-like values, written atomically and
loaded without unpickling arbitrary objects (``weights_only``)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..data.cache import file_digest
from ..data.splits import describe_split
from ..data.subclips import SubclipData
from ..errors import ParameterError
from ..features.spec import FeatureSpec
from .models import build_model

CHECKPOINT_FORMAT = "musemo.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write a checkpoint atomically; a full disk raises ``OutputError`` (not torch's own error)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(state, f)
        except RuntimeError as exc:
            # torch's zip writer hides a failed write (a full disk) behind its own error
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a musemo checkpoint without unpickling arbitrary objects (``weights_only``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, foreign pickle: torch raises many kinds
        raise ParameterError(f"{path} is not a readable musemo checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ParameterError(f"{path} is not a musemo checkpoint (no {CHECKPOINT_FORMAT!r} marker)")
    return state


# each network's last layer, whose outputs are the labels' (head "paper": its added layer)
LAST_LAYER = {
    "squeezenet1_0": "classifier.1",
    "mobilenet_v2": "classifier.1",
    "resnet18": "fc",
    "vgg16": "classifier.6",
    "musicnn": "head",
}


def narrowed_state(state: dict) -> dict:
    """A loaded checkpoint's weights with outputs for its labels only: a student that
    learnt its teacher's features too (``extra_outputs``) loses their rows of its last
    layer, which nothing after training reads."""
    if not state.get("extra_outputs"):
        return state["model_state"]
    layer = "1" if state["head"] == "paper" else LAST_LAYER[state["model"]]
    n, rows = len(state["labels"]), (f"{layer}.weight", f"{layer}.bias")
    return {k: v[:n] if k in rows else v for k, v in state["model_state"].items()}


def model_from_checkpoint(state: dict):
    """The trained network of a loaded checkpoint, in eval mode on the CPU."""
    import torch

    model = build_model(state["model"], n_classes=len(state["labels"]), head=state["head"])
    model.load_state_dict(narrowed_state(state))
    return model.to(memory_format=torch.channels_last).eval()


def checkpoint_path(path: str | os.PathLike, option: str) -> Path:
    """The checkpoint ``path`` names: the file itself, or a run folder's ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise ParameterError(f"{option} {path}: no such checkpoint (a run's last.pt or its folder)")
    return path


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained musemo checkpoint, named by its path and SHA-256."""

    path: Path
    digest: str
    state: dict
    spec: FeatureSpec
    labels: tuple[str, ...]

    @classmethod
    def load(cls, path: str | os.PathLike, option: str = "checkpoint"):
        """From a checkpoint or a run folder (its ``last.pt``); ``option`` names it in errors."""
        path = checkpoint_path(path, option)
        state = load_checkpoint(path)
        spec = FeatureSpec.from_dict(state["spec"])
        return cls(path, file_digest(path), state, spec, tuple(state["labels"]))

    @property
    def name(self) -> str:
        """What a run's config records of it: the checkpoint and its digest."""
        return f"{self.path} (sha256 {self.digest})"

    def held_out_groups(self) -> list[str] | None:
        """The groups its own run held out (``None`` when it records no split)."""
        split = self.state.get("split") or {}
        return split.get("val_groups")


def fold_checkpoints(
    folder: str | os.PathLike,
    data: SubclipData,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    option: str,
    kind: type[Trained] = Trained,
) -> list:
    """Each fold's model: ``folder/fold<i>`` (a ``musemo train --folds`` model folder), each
    checked to have held out the same groups as fold ``i`` of ``data``; ``option`` names the
    folder in errors, ``kind`` is the class loaded."""
    folder = Path(folder)
    found = []
    for i, (train, val) in enumerate(folds):
        run = folder / f"fold{i}"
        if not run.is_dir():
            raise ParameterError(
                f"{option} {folder} with --folds {len(folds)}: no {run}; give the model folder "
                "of a cross-validation (e.g. runs/cv/musicnn) with the same --folds and --seed"
            )
        trained = kind.load(run, option)
        held_out = describe_split(data, train, val, "grouped")["val_groups"]
        if trained.held_out_groups() != held_out:
            raise ParameterError(
                f"{option} {trained.path} held out other groups than fold {i} does: "
                "cross-validate it with the same data, --folds and --seed"
            )
        found.append(trained)
    return found


def warn_if_seen(trained: Trained, data: SubclipData, val: np.ndarray, option: str) -> None:
    """Say so when ``trained`` (given as ``option``) learnt from groups that ``val`` scores."""
    groups = set(data.groups[val].tolist())
    seen = groups - set(trained.held_out_groups() or ())
    if seen:
        print(
            f"warning: {option} {trained.path} trained on {len(seen)} of the {len(groups)} "
            "held-out groups: the validation scores are flattered (with --folds, each fold "
            "takes the model trained on the same fold)",
            file=sys.stderr,
        )
