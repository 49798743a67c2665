"""A probe's frozen network runs once per sub-clip in a process: over a cross-validation's
folds, their scoring and the final fit, with the results of a process that starts afresh."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fixtures_audio import write_register_dataset

from musemo.data import holdout_split, kfold_splits, load_dataset
from musemo.features import musicnn_spec
from musemo.training import TrainConfig, cross_validate, fit, frozen
from musemo.training.checkpoints import model_from_checkpoint
from musemo.training.distill import Teacher, teacher_targets
from musemo.training.loop import VAL_RECORDINGS, predict
from musemo.training.models import build_model

PROBE = TrainConfig(model="musicnn", weights="pretrained", head="pooled", probe=True)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    write_register_dataset(root / "audio", per_label=9, seconds=6.1)
    data, _ = load_dataset(root / "audio", musicnn_spec(), cache=root / "cache", progress=False)
    assert len(data) == 36 > frozen.BLOCK  # two patches a recording, two blocks
    return data


@pytest.fixture
def forwards(monkeypatch):
    """The rows each pass of the frozen network computed, in order."""
    seen: list[np.ndarray] = []
    forward = frozen._forward

    def counted(model, data, rows, spec, device):
        seen.append(rows)
        return forward(model, data, rows, spec, device)

    monkeypatch.setattr(frozen, "_forward", counted)
    return seen


def test_cross_validation_and_the_final_fit_run_each_subclip_once(patches, forwards, tmp_path):
    data = patches
    cross_validate(data, musicnn_spec(), ["musicnn"], PROBE, tmp_path / "cv", k=3, progress=False)
    computed = np.concatenate(forwards)
    assert sorted(computed.tolist()) == list(range(len(data)))  # each once, none twice
    train, none = holdout_split(data, val_fraction=0)
    fit(data, train, none, musicnn_spec(), PROBE, tmp_path / "final", progress=False)
    assert len(np.concatenate(forwards)) == len(data)  # the final fit computed nothing
    # each fold alone, in a process that has computed nothing: the same probabilities
    for i, (train, val) in enumerate(kfold_splits(data, k=3, mode="grouped", seed=PROBE.seed)):
        frozen._MEMO.clear()
        fit(data, train, val, musicnn_spec(), PROBE, tmp_path / f"alone{i}", progress=False)
        np.testing.assert_array_equal(
            np.load(tmp_path / f"alone{i}" / VAL_RECORDINGS)["probabilities"],
            np.load(tmp_path / "cv" / "musicnn" / f"fold{i}" / VAL_RECORDINGS)["probabilities"],
        )


def test_values_are_the_networks_and_do_not_depend_on_what_came_first(patches, forwards):
    data, spec = patches, dataclasses.replace(musicnn_spec(), input_mean=0.0, input_std=1.0)
    model = build_model("musicnn", weights="pretrained", head="pooled")
    rows = np.array([35, 3, 33])
    frozen._MEMO.clear()
    first = frozen.head_inputs(model, data, rows, spec, "cpu", progress=False)
    assert [r.tolist() for r in forwards] == [list(range(32)), [32, 33, 34, 35]]  # blocks
    with torch.inference_mode():
        x = torch.from_numpy(data.stack(rows)[:, None])
        direct = model.head_input(model.embed(x)).numpy()
    np.testing.assert_allclose(first, direct, rtol=1e-5, atol=1e-6)
    frozen._MEMO.clear()
    everything = frozen.head_inputs(model, data, np.arange(len(data)), spec, "cpu", progress=False)
    np.testing.assert_array_equal(everything[rows], first)
    # another network (another backbone) is another entry; the head's weights are not
    with torch.no_grad():
        model.head.weight.add_(1.0)
    frozen.head_inputs(model, data, rows, spec, "cpu", progress=False)
    assert len(forwards) == 4  # nothing new for a changed head
    with torch.no_grad():
        model.midend[0].conv.weight.mul_(2.0)
    changed = frozen.head_inputs(model, data, rows, spec, "cpu", progress=False)
    assert len(forwards) == 6 and not np.array_equal(changed, first)


def test_what_is_kept_goes_with_the_data(tmp_path):
    write_register_dataset(tmp_path / "audio", per_label=1, seconds=3.1)
    data, _ = load_dataset(tmp_path / "audio", musicnn_spec(), cache=tmp_path / "c", progress=False)
    model = build_model("musicnn", weights="pretrained", head="pooled")
    frozen._MEMO.clear()
    spec = dataclasses.replace(musicnn_spec(), input_mean=0.0, input_std=1.0)
    frozen.head_inputs(model, data, np.arange(len(data)), spec, "cpu", progress=False)
    assert len(frozen._MEMO) == 1
    del data
    gc.collect()
    assert not frozen._MEMO


def test_probe_teachers_share_one_pass_and_say_what_their_networks_say(patches, forwards, tmp_path):
    data, spec = patches, musicnn_spec()
    cross_validate(data, spec, ["musicnn"], PROBE, tmp_path / "cv", k=2, progress=False)
    teachers = [Teacher.load(tmp_path / "cv" / "musicnn" / f"fold{i}") for i in range(2)]
    forwards.clear()
    cache = tmp_path / "cache"
    targets = teacher_targets(teachers, data, spec, cache=cache, progress=False)
    assert len(np.concatenate(forwards)) == len(data)  # two teachers, one pass
    for teacher, got in zip(teachers, targets):
        model = model_from_checkpoint(teacher.state)
        probs, _ = predict(model, data, np.arange(len(data)), teacher.spec, torch.device("cpu"))
        np.testing.assert_allclose(np.exp(got.logp), probs, atol=1e-5)
