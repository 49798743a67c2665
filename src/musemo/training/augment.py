"""Training-time augmentation: random offsets along the recording and SpecAugment masks."""

from __future__ import annotations

import numpy as np

from ..data.subclips import SubclipData


def shift_starts(data: SubclipData, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random starts for the given sub-clips, up to half a sub-clip either way of their own,
    as frames on their recording's frame line (sub-clip ``k`` starts at ``k * frames``),
    kept within the recording (``read_at`` reads them).

    Needs contiguous sub-clips (``clip_hop_seconds == clip_seconds``): the windows
    then cut the recording at other places every epoch, which small data sets need.
    """
    frames = data.features[0].shape[-1]
    starts = np.empty(len(rows), np.int64)
    for k, i in enumerate(rows):
        rec, sub = data.index[int(i)]
        last = (len(data.features[rec]) - 1) * frames  # latest start on the frame line
        starts[k] = np.clip(sub * frames + rng.integers(-frames // 2, frames // 2 + 1), 0, last)
    return starts


def read_at(data: SubclipData, rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The given sub-clips' recordings read from frame ``starts`` (``shift_starts``),
    joining a sub-clip to its neighbour, ``(n, n_mels, frames)`` float32."""
    frames = data.features[0].shape[-1]
    out = np.empty((len(rows),) + data.features[0].shape[1:], np.float32)
    for k, (i, start) in enumerate(zip(rows, starts)):
        clips = data.features[data.index[int(i), 0]]
        a, offset = divmod(int(start), frames)
        out[k, :, : frames - offset] = clips[a][:, offset:]
        if offset:
            out[k, :, frames - offset :] = clips[a + 1][:, :offset]
    return out


def spec_augment(x, generator, *, n_masks: int = 2, max_time: float = 0.1, max_freq: float = 0.15):
    """SpecAugment-style masking in place: ``n_masks`` time and frequency bands set to 0
    (the normalised mean), independently for each sub-clip."""
    import torch

    b, _, n_mels, frames = x.shape
    for axis, size, max_frac in ((2, n_mels, max_freq), (3, frames, max_time)):
        for _ in range(n_masks):
            width = (torch.rand(b, generator=generator) * max_frac * size).long()
            start = (torch.rand(b, generator=generator) * (size - width)).long()
            pos = torch.arange(size)
            mask = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])
            shape = (b, 1, size, 1) if axis == 2 else (b, 1, 1, size)
            x.masked_fill_(mask.view(shape).to(x.device), 0.0)
    return x
