"""What a frozen network's head reads, computed once per process for each sub-clip.

A probe (``TrainConfig.probe``) fits its head on a network that never changes, so the
folds of a cross-validation, their validation and the final fit on every recording all
read the same values: each sub-clip goes through the network once while its
``SubclipData`` lives, not once per fold and again per scoring. The values are computed
in fixed blocks of the data's rows, so a sub-clip's value does not depend on which other
sub-clips a run asked for (a convolution's last bit can move with the batch around it):
a run gives the same result whatever ran before it in the process.
"""

from __future__ import annotations

import hashlib
import weakref

import numpy as np

from .._progress import progress_bar
from ..data.subclips import UNLABELLED_ROW, SubclipData
from ..features.spec import FeatureSpec

BLOCK = 32  # sub-clips per forward pass: rows [k * BLOCK, (k + 1) * BLOCK) of the data
HEAD_MODULES = ("head", "head_norm")  # what a probe writes; everything else is frozen

# (id(data), backbone digest, input normalisation, device) -> block -> (BLOCK, width)
_MEMO: dict[tuple, dict[int, np.ndarray]] = {}


def backbone_digest(model) -> str:
    """SHA-256 of every tensor of ``model`` outside its head: what the head reads."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name.split(".")[0] not in HEAD_MODULES:
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def head_inputs(
    model, data: SubclipData, rows: np.ndarray, spec: FeatureSpec, device, *, progress: bool
) -> np.ndarray:
    """What ``model``'s head reads (``model.head_input`` of its ``embed``), for each of
    ``rows``, ``(len(rows), width)`` float32, computed where this process has not yet."""
    key = (id(data), backbone_digest(model), spec.input_mean, spec.input_std, str(device))
    blocks = _MEMO.get(key)
    if blocks is None:
        blocks = _MEMO[key] = {}
        weakref.finalize(data, _MEMO.pop, key, None)
    rows = np.asarray(rows, dtype=np.int64)
    todo = [int(b) for b in np.unique(rows // BLOCK) if int(b) not in blocks]
    bar = progress_bar(todo, desc="frozen network", unit="batch", show=progress, leave=False)
    for b in bar:
        blocks[b] = _forward(model, data, np.arange(b * BLOCK, min(len(data), (b + 1) * BLOCK)),
                             spec, device)  # fmt: skip
    if not len(rows):
        return np.empty((0, 0), np.float32)
    return np.stack([blocks[int(r) // BLOCK][int(r) % BLOCK] for r in rows])


def _forward(model, data: SubclipData, rows: np.ndarray, spec: FeatureSpec, device) -> np.ndarray:
    import torch

    x = (data.stack(rows) - spec.input_mean) / spec.input_std
    xt = torch.from_numpy(x[:, None].astype(np.float32)).to(device)
    model.eval()
    with torch.inference_mode():
        layers = model.embed(xt.contiguous(memory_format=torch.channels_last))
        return model.head_input(layers).float().cpu().numpy()


def head_predict(model, x: np.ndarray, labels: np.ndarray, device) -> tuple[np.ndarray, float]:
    """Class probabilities from head inputs ``x`` (``head_inputs``), and the mean
    cross-entropy of those with a label: what ``loop.predict`` gives for the sub-clips."""
    import torch
    import torch.nn.functional as F

    model.eval()
    with torch.inference_mode():
        logits = model.head(model.head_norm(torch.from_numpy(x).to(device))).float()
        loss = F.cross_entropy(logits, torch.from_numpy(labels).to(device), reduction="sum",
                               ignore_index=UNLABELLED_ROW).item()  # fmt: skip
        probs = torch.softmax(logits, dim=1).cpu().numpy()
    return probs, loss / max(1, len(x))
