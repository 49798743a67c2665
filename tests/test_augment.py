"""Training-time augmentation: random offsets along the recording, SpecAugment masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures_audio import tiny_spec

from musemo import ParameterError
from musemo.data import Recording, SubclipData
from musemo.training import TrainConfig, fit
from musemo.training.augment import read_at, shift_starts, spec_augment

N_MELS, FRAMES = 3, 10


@pytest.fixture
def frame_numbered_data() -> SubclipData:
    """Three recordings of 4, 1 and 2 sub-clips whose every value is its frame's
    position on its recording's frame line (plus 1000 x the recording)."""
    features, index = [], []
    for r, n in enumerate((4, 1, 2)):
        line = 1000 * r + np.arange(n * FRAMES, dtype=np.float32)
        clips = np.broadcast_to(line.reshape(n, 1, FRAMES), (n, N_MELS, FRAMES)).copy()
        features.append(clips)
        index += [(r, s) for s in range(n)]
    recordings = [Recording(path=f"r{r}.wav", label="x", group=f"r{r}") for r in range(3)]
    index = np.array(index, dtype=np.int64)
    return SubclipData(recordings, features, index, np.zeros(len(index), np.int64), ("x", "y"))


def _shifted(data, rows, *, seed: int) -> np.ndarray:
    return read_at(data, rows, shift_starts(data, rows, np.random.default_rng(seed)))


def test_windows_are_contiguous_and_stay_in_their_recording(frame_numbered_data):
    data = frame_numbered_data
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(len(data)), 200)
    starts = shift_starts(data, rows, rng)
    out = read_at(data, rows, starts)
    assert out.shape == (len(rows), N_MELS, FRAMES) and out.dtype == np.float32
    offsets = set()
    for x, i, said in zip(out, rows, starts):
        rec, sub = data.index[i]
        n_frames = len(data.features[rec]) * FRAMES
        start = x[0, 0] - 1000 * rec
        assert start == said  # read where the start says
        np.testing.assert_array_equal(x, x[:1] + 0 * x)  # every band the same frames
        np.testing.assert_array_equal(x[0], x[0, 0] + np.arange(FRAMES))  # contiguous
        assert 0 <= start <= n_frames - FRAMES  # inside the recording
        assert abs(start - sub * FRAMES) <= FRAMES // 2  # near where the sub-clip was cut
        offsets.add(int(start - sub * FRAMES))
    assert offsets == set(range(-FRAMES // 2, FRAMES // 2 + 1))  # every offset is drawn


def test_a_single_subclip_recording_is_read_as_cut(frame_numbered_data):
    data = frame_numbered_data
    rows = np.array([4] * 20)  # recording 1 has one sub-clip
    np.testing.assert_array_equal(_shifted(data, rows, seed=1), data.stack(rows).astype(np.float32))


def test_offsets_repeat_with_the_seed(frame_numbered_data):
    rows = np.arange(len(frame_numbered_data))
    a = _shifted(frame_numbered_data, rows, seed=5)
    b = _shifted(frame_numbered_data, rows, seed=5)
    c = _shifted(frame_numbered_data, rows, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_shift_refuses_overlapping_subclips(tmp_path, frame_numbered_data):
    spec = dataclasses.replace(tiny_spec(), clip_hop_seconds=tiny_spec().clip_seconds / 2)
    rows = np.arange(len(frame_numbered_data))
    with pytest.raises(ParameterError, match="--no-shift"):
        fit(frame_numbered_data, rows, rows, spec, TrainConfig(epochs=1), tmp_path, progress=False)


def test_spec_augment_masks_bands_and_frames_with_zero():
    x = torch.ones(64, 1, 32, 40)
    spec_augment(x, torch.Generator().manual_seed(0), n_masks=1, max_time=0.3, max_freq=0.3)
    masked = x == 0
    assert masked.any() and not masked.all()
    for clip in masked[:, 0]:
        rows, cols = clip.all(dim=1), clip.all(dim=0)
        # every zero lies in a fully masked band or a fully masked frame
        assert bool((clip == (rows[:, None] | cols[None, :])).all())
        assert rows.sum() <= 0.3 * 32 and cols.sum() <= 0.3 * 40
