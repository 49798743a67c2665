"""musicnn (Pons & Serra, 2019) in PyTorch, with its weights from the TensorFlow checkpoint.

The graph follows the one saved with the checkpoint: input (batch, 1, 96 mels, frames)
of ``log10(1 + 10000 mel)`` -> batch norm -> timbral convolutions 204 x (7 x 38) and
204 x (7 x 67) over time-padded input and temporal convolutions 51 x (128, 64, 32 x 1)
with TensorFlow's uneven "same" padding, each ReLU -> batch norm -> max over frequency;
their 561 channels -> three 1-D convolutions of 64 (k = 7, residuals on the 2nd and
3rd) -> 753 channels -> max and mean over time, interleaved -> batch norm -> dense 200
(ReLU, batch norm: the embedding) -> dense 50 tags (logits). Every batch norm follows
its ReLU, with epsilon 1e-3. Any number of frames works; the model saw 187 (3 s).
A new task's head reads the embedding, or (``head_input="pooled"``) the embedding beside
the mean- and max-pooled mid-level features (200 + 753 + 753), as the probes do.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from ..errors import ParameterError
from .models import _torch

N_MELS = 96
FRAMES = 187
# what a head may read: the layers of ``embed`` it concatenates, and their width
HEAD_INPUTS = {
    "penultimate": (("penultimate",), 200),
    "pooled": (("penultimate", "mean_pool", "max_pool"), 200 + 2 * 753),
}
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
_EPS = 1e-3
_MOMENTUM = 0.01  # TensorFlow's 0.99
# a filter whose weights move its block's output by less than this per unit of input is
# dead (the MSD checkpoint's: 1.7e-9 at most; its live ones: 9e-3 at least)
_DEAD = 1e-6


def _same_padding(k: int) -> tuple[int, int]:
    """TensorFlow's "same" padding for stride 1: the extra zero goes after."""
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def _head_input(name: str) -> tuple[tuple[str, ...], int]:
    """The layers a head reading ``name`` concatenates, and their width."""
    if name not in HEAD_INPUTS:
        raise ParameterError(f"head_input {name!r}: choose one of {', '.join(HEAD_INPUTS)}")
    return HEAD_INPUTS[name]


def build_musicnn(n_outputs: int = 50, *, head_input: str = "penultimate"):
    """An untrained musicnn whose head reads ``head_input`` (``HEAD_INPUTS``) and gives
    ``n_outputs`` logits (50 on the embedding: the MSD tags)."""
    head_layers, head_width = _head_input(head_input)
    torch, _ = _torch()
    nn, F = torch.nn, torch.nn.functional

    class FrontEnd(nn.Module):
        """One convolution over (time, frequency), ReLU, batch norm, max over frequency."""

        def __init__(self, filters: int, kh: int, kw: int, pad: tuple[int, int]) -> None:
            super().__init__()
            self.pad = pad
            self.conv = nn.Conv2d(1, filters, (kh, kw))
            self.bn = nn.BatchNorm2d(filters, eps=_EPS, momentum=_MOMENTUM)

        def forward(self, x):  # x: (batch, 1, frames, mels)
            x = self.bn(F.relu(self.conv(F.pad(x, (0, 0, *self.pad)))))
            # max over frequency as a pooling layer: ONNX and TFLite quantise it as such
            return F.max_pool2d(x, (1, x.shape[3])).squeeze(3)  # (batch, filters, frames)

    class MidLayer(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv = nn.Conv1d(channels, 64, 7)
            self.bn = nn.BatchNorm1d(64, eps=_EPS, momentum=_MOMENTUM)

        def forward(self, x):
            return self.bn(F.relu(self.conv(F.pad(x, (3, 3)))))

    class MidEnd(nn.ModuleList):
        """The front end's 561 channels -> three 1-D convolutions (residuals on the 2nd
        and 3rd) -> all 753 channels. Its joins live here, not at the top level, so that
        ``keep_float`` can name them (``midend``)."""

        def forward(self, fronts):
            front = torch.cat(fronts, dim=1)
            c1 = self[0](front)
            r2 = self[1](c1) + c1
            r3 = self[2](r2) + r2
            return torch.cat([front, c1, r2, r3], dim=1)  # (batch, 753, frames)

    class Standardise(nn.Module):
        """``(x - mean) / scale`` per feature: the probe's scaler (identity until fitted)."""

        def __init__(self, width: int) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(width))
            self.register_buffer("scale", torch.ones(width))

        def forward(self, x):
            return (x - self.mean) / self.scale

    class Join(nn.Module):
        """The head's layers side by side: a module, so that ``keep_float`` can name it."""

        def forward(self, *parts):
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    class TimePool(nn.Module):
        """Max and mean over time, and both interleaved (max_i, mean_i)."""

        def forward(self, mid):
            max_pool, mean_pool = mid.amax(dim=2), mid.mean(dim=2)
            return max_pool, mean_pool, torch.stack([max_pool, mean_pool], dim=2).flatten(1)

    class MusiCNN(nn.Module):
        """musicnn; ``forward`` gives logits, ``embed`` every layer a probe may use."""

        def __init__(self) -> None:
            super().__init__()
            self.input_bn = nn.BatchNorm2d(1, eps=_EPS, momentum=_MOMENTUM)
            self.frontend = nn.ModuleList(
                [FrontEnd(204, 7, 38, (3, 3)), FrontEnd(204, 7, 67, (3, 3))]
                + [FrontEnd(51, k, 1, _same_padding(k)) for k in (128, 64, 32)]
            )
            self.midend = MidEnd([MidLayer(561), MidLayer(64), MidLayer(64)])
            self.pool = TimePool()
            self.pool_bn = nn.BatchNorm1d(2 * 753, eps=_EPS, momentum=_MOMENTUM)
            self.dense = nn.Linear(2 * 753, 200)
            self.dense_relu = nn.ReLU()
            self.dense_bn = nn.BatchNorm1d(200, eps=_EPS, momentum=_MOMENTUM)
            self.dropout = nn.Dropout(0.5)
            self.head_layers = head_layers
            self.head_join = Join()
            # features of unlike scales (the pooled ones) are standardised before the head
            self.head_norm = Standardise(head_width) if len(head_layers) > 1 else nn.Identity()
            self.head = nn.Linear(head_width, n_outputs)

        def embed(self, x) -> dict:
            """Layers of ``x`` (batch, 1, mels, frames): ``max_pool`` and ``mean_pool``
            (batch, 753), ``penultimate`` (batch, 200) and ``logits``."""
            x = self.input_bn(x.transpose(2, 3))  # (batch, 1, frames, mels)
            mid = self.midend([block(x) for block in self.frontend])
            max_pool, mean_pool, pooled = self.pool(mid)
            h = self.dense_bn(self.dense_relu(self.dense(self.dropout(self.pool_bn(pooled)))))
            out = {"max_pool": max_pool, "mean_pool": mean_pool, "penultimate": h}
            out["logits"] = self.head(self.dropout(self.head_norm(self.head_input(out))))
            return out

        def head_input(self, layers: dict):
            """What the head reads (before ``head_norm``), from ``embed``'s layers."""
            return self.head_join(*[layers[name] for name in self.head_layers])

        def forward(self, x):
            return self.embed(x)["logits"]

    return MusiCNN()


def inference_form(model):
    """A copy of ``model`` (a musicnn) in eval mode that computes the same outputs with
    less work; it cannot be trained.

    Each front-end block takes its maximum over frequency before its batch norm, which
    then sees 1/30 to 1/96 of the values. The maximum commutes with the ReLU, and
    channel by channel with the batch norm's affine map where its scale ``s`` is
    positive; where ``s`` is negative the original's maximum is a minimum of ``c``: those
    channels' kernels and biases are negated, so that a maximum serves for all, and
    ``relu(sign(s) * max)`` gives back ``relu(c)`` at the place the original's batch norm
    takes. Filters that training left at zero (in the MSD checkpoint 181 and 190 of the
    204 timbral filters and 126 of the 153 temporal ones, with weights below 1e-9)
    answer their bias whatever the input: their outputs are constants, not convolutions
    (the MSD network's front end shrinks from 1.3 G multiply-adds a patch to 0.13 G).
    Float outputs match the original's to rounding; ``musemo-export`` writes this form.
    """
    torch, _ = _torch()
    nn, F = torch.nn, torch.nn.functional

    class PooledFirst(nn.Module):
        """A front-end block as convolution of its live filters (times ``sign(s)``) ->
        maximum over frequency -> ``relu(sign(s) * max)`` -> batch norm's affine map,
        beside the constant outputs of its dead filters."""

        def __init__(self, block) -> None:
            super().__init__()
            conv, bn = block.conv, block.bn
            self.pad = block.pad
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                shift = bn.bias - scale * bn.running_mean
                reach = conv.weight.abs().sum(dim=(1, 2, 3)) * scale.abs()
                live, dead = torch.nonzero(reach >= _DEAD)[:, 0], torch.nonzero(reach < _DEAD)[:, 0]
                sign = torch.where(scale[live] < 0, -1.0, 1.0)
                self.conv = nn.Conv2d(1, len(live), conv.kernel_size)
                self.conv.weight.copy_(conv.weight[live] * sign.view(-1, 1, 1, 1))
                self.conv.bias.copy_(conv.bias[live] * sign)
                constant = F.relu(conv.bias[dead]) * scale[dead] + shift[dead]
            for name, value in (("sign", sign), ("scale", scale[live]), ("shift", shift[live]),
                                ("constant", constant)):  # fmt: skip
                self.register_buffer(name, value.view(1, -1, 1), persistent=False)
            order = torch.argsort(torch.cat([live, dead]))
            self.register_buffer("order", order, persistent=False)

        def train(self, mode: bool = True):
            if mode:
                raise ParameterError("musicnn's inference form cannot train: train the original")
            return super().train(False)

        def forward(self, x):  # x: (batch, 1, frames, mels)
            y = self.conv(F.pad(x, (0, 0, *self.pad)))  # (batch, live, frames, bands)
            y = F.max_pool2d(y, (1, y.shape[3])).squeeze(3)
            y = F.relu(y * self.sign) * self.scale + self.shift  # (batch, live, frames)
            if self.constant.shape[1] == 0:
                return y
            still = self.constant.expand(y.shape[0], -1, y.shape[2])
            return torch.cat([y, still], dim=1)[:, self.order]  # (batch, filters, frames)

    fast = copy.deepcopy(model)
    for i, block in enumerate(fast.frontend):
        fast.frontend[i] = PooledFirst(block)
    return fast.eval()


def _bn(prefix: str, name: str) -> dict[str, tuple[str, str]]:
    return {
        f"{prefix}.weight": (f"{name}/gamma", "vector"),
        f"{prefix}.bias": (f"{name}/beta", "vector"),
        f"{prefix}.running_mean": (f"{name}/moving_mean", "vector"),
        f"{prefix}.running_var": (f"{name}/moving_variance", "vector"),
    }


def _tf_names() -> dict[str, tuple[str, str]]:
    """PyTorch parameter -> (TensorFlow variable, how to convert it)."""
    names = _bn("input_bn", "batch_normalization")
    for i in range(5):
        names[f"frontend.{i}.conv.weight"] = (f"conv2d{'_' * bool(i)}{i or ''}/kernel", "conv2d")
        names[f"frontend.{i}.conv.bias"] = (f"conv2d{'_' * bool(i)}{i or ''}/bias", "vector")
        names.update(_bn(f"frontend.{i}.bn", f"batch_normalization_{i + 1}"))
    for i in range(3):
        names[f"midend.{i}.conv.weight"] = (f"conv2d_{i + 5}/kernel", "conv1d")
        names[f"midend.{i}.conv.bias"] = (f"conv2d_{i + 5}/bias", "vector")
        names.update(_bn(f"midend.{i}.bn", f"batch_normalization_{i + 6}"))
    names.update(_bn("pool_bn", "batch_normalization_9"))
    names.update(
        {"dense.weight": ("dense/kernel", "dense"), "dense.bias": ("dense/bias", "vector")}
    )
    names.update(_bn("dense_bn", "batch_normalization_10"))
    names.update(
        {"head.weight": ("dense_1/kernel", "dense"), "head.bias": ("dense_1/bias", "vector")}
    )
    return names


_CONVERT = {
    "vector": lambda a: a,
    "conv2d": lambda a: a.transpose(3, 2, 0, 1),  # [kh, kw, in, out] -> [out, in, kh, kw]
    "conv1d": lambda a: a[:, :, 0, :].transpose(2, 1, 0),  # [k, in, 1, out] -> [out, in, k]
    "dense": lambda a: a.T,  # [in, out] -> [out, in]
}


def state_dict_from_tensorflow(tensors: dict[str, np.ndarray], model) -> dict:
    """Musicnn's TensorFlow variables as a state dict for ``model``; a missing or
    mis-shaped variable is refused by name."""
    torch, _ = _torch()
    expected = model.state_dict()
    state = {}
    for ours, (theirs, kind) in _tf_names().items():
        if theirs not in tensors:
            raise ParameterError(f"the musicnn checkpoint has no variable {theirs} (for {ours})")
        value = np.ascontiguousarray(_CONVERT[kind](tensors[theirs]))
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise ParameterError(
                f"musicnn variable {theirs} has shape {tensors[theirs].shape}, which does not "
                f"give {ours}'s {tuple(expected[ours].shape)}"
            )
        state[ours] = torch.from_numpy(value)
    for ours, value in expected.items():
        if ours not in state:  # batch norms' step counters
            state[ours] = value
    return state


def pretrained_musicnn(
    checkpoint: str = "MSD_musicnn",
    *,
    n_outputs: int | None = None,
    labels: Sequence[str] | None = None,
    head_input: str = "penultimate",
):
    """Musicnn with the weights of the ``musicnn`` wheel's ``checkpoint``, in eval mode.

    ``n_outputs``: None keeps the 50 tags; another number (or ``head_input="pooled"``)
    replaces the head with a new one of that many logits reading ``head_input``. When it
    reads the embedding and every one of ``labels`` (one per output) is an MSD tag
    (``happy``, ``sad``, ...), the new head starts as those tags' rows of the old one,
    i.e. as the zero-shot classifier; otherwise at random.
    """
    from .pretrained import musicnn_tensors

    _head_input(head_input)
    tagger = build_musicnn(50)
    tagger.load_state_dict(state_dict_from_tensorflow(musicnn_tensors(checkpoint), tagger))
    if head_input == "penultimate" and n_outputs in (None, 50):
        return tagger.eval()
    model = build_musicnn(50 if n_outputs is None else n_outputs, head_input=head_input)
    backbone = {k: v for k, v in tagger.state_dict().items() if not k.startswith("head.")}
    model.load_state_dict({**model.state_dict(), **backbone})
    tags = [t.casefold() for t in MSD_TAGS]
    if (
        head_input == "penultimate"
        and labels is not None
        and len(labels) == model.head.out_features
        and all(str(name).casefold() in tags for name in labels)
    ):
        torch, _ = _torch()
        rows = [tags.index(str(name).casefold()) for name in labels]
        with torch.no_grad():
            model.head.weight.copy_(tagger.head.weight[rows])
            model.head.bias.copy_(tagger.head.bias[rows])
    return model.eval()
