"""Checkpoints: plain dicts of tensors and JSON-like values, written atomically and
loaded without unpickling arbitrary objects (``weights_only``)."""

from __future__ import annotations

import os
from pathlib import Path

from .._atomic import atomic_path
from ..errors import ParameterError
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


def model_from_checkpoint(state: dict):
    """The trained network of a loaded checkpoint, in eval mode on the CPU."""
    import torch

    model = build_model(state["model"], n_classes=len(state["labels"]), head=state["head"])
    model.load_state_dict(state["model_state"])
    return model.to(memory_format=torch.channels_last).eval()
