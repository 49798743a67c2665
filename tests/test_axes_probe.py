"""The valence and arousal probe (``--probe --auxiliary``): two probes on all four of 4Q's
quadrants, happy against sad scored as the sum of their logits, as one linear head."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fixtures_audio import write_register_dataset

from musemo import ParameterError
from musemo.cli import main
from musemo.data import gather, holdout_split, load_dataset, load_recordings
from musemo.data.splits import with_unlabelled
from musemo.features import musicnn_spec
from musemo.training import TrainConfig, fit
from musemo.training.checkpoints import load_checkpoint, model_from_checkpoint
from musemo.training.musicnn import pretrained_musicnn
from musemo.training.probe import axes_probe_scores, embed_subclips, probe_inputs, recording_table

OTHERS = {"tense": (600.0, 1200.0), "calm": (300.0, 600.0)}
AXES = TrainConfig(model="musicnn", weights="pretrained", head="pooled", probe=True, axes=True)


@pytest.fixture(scope="module")
def quadrants(tmp_path_factory):
    """happy / sad recordings, and tense / calm ones beside them, with their sub-clips."""
    root = tmp_path_factory.mktemp("quadrants")
    write_register_dataset(root / "main", per_label=6, seconds=6.1)
    write_register_dataset(root / "aux", per_label=4, seconds=6.1, registers=OTHERS)
    spec, cache = musicnn_spec(), root / "cache"
    data, _ = load_dataset(root / "main", spec, cache=cache, progress=False)
    aux, _ = gather(load_recordings(root / "aux"), spec, data.label_names, cache=cache,
                    progress=False, auxiliary=tuple(OTHERS))  # fmt: skip
    return root, data.extended(aux)


def test_the_head_scores_valence_plus_arousal(quadrants, tmp_path):
    _, data = quadrants
    train, val = holdout_split(data, val_fraction=0.25)
    train = with_unlabelled(data, train, val)
    assert (data.labels[train] == -1).sum() == 16  # the auxiliary recordings' patches train
    fit(data, train, val, musicnn_spec(), AXES, tmp_path / "run", progress=False)
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "last.pt"))
    # the same two probes fitted apart on the recordings' mean features
    table, _, ids = recording_table(
        data, embed_subclips(pretrained_musicnn(), data, progress=False)
    )
    x = probe_inputs(table, "pooled")
    labels = np.array([data.recordings[i].label for i in ids])
    axes = np.array([[q in ("happy", "calm"), q in ("happy", "tense")] for q in labels])
    groups = np.array([data.recordings[i].group for i in ids])
    on_train, on_val = np.isin(ids, data.index[train, 0]), np.isin(ids, data.index[val, 0])
    expected, _ = axes_probe_scores(x[on_train], axes[on_train], groups[on_train], x[on_val])
    with torch.no_grad():
        logits = model(torch.from_numpy(data.stack(val)[:, None])).numpy()
    happy, sad = data.label_names.index("happy"), data.label_names.index("sad")
    recording = data.index[val, 0]
    for r, score in zip(ids[on_val], expected):
        got = np.mean(logits[recording == r, happy] - logits[recording == r, sad])
        assert got == pytest.approx(score, abs=0.05) and np.sign(got) == np.sign(score)
    assert abs(expected).max() > 1  # a score that says something


def test_what_cannot_learn_valence_and_arousal_is_refused(quadrants, tmp_path):
    root, data = quadrants
    train, val = holdout_split(data, val_fraction=0.25)
    with pytest.raises(ParameterError, match="axes: the probe learns valence and arousal"):
        TrainConfig(axes=True)
    renamed = dataclasses.replace(data, label_names=("joy", "sad"))
    with pytest.raises(ParameterError, match="needs two quadrants on opposite sides"):
        fit(renamed, train, val, musicnn_spec(), AXES, tmp_path / "r", progress=False)
    with pytest.raises(ParameterError, match=r"labels \['calm', 'tense'\] in .* are not among"):
        gather(load_recordings(root / "aux"), musicnn_spec(), data.label_names,
               cache=root / "cache", progress=False, auxiliary=("angry",))  # fmt: skip


def test_musemo_train_probe_auxiliary(quadrants, tmp_path, capsys):
    root, _ = quadrants
    args = ["train", "--data", str(root / "main"), "--cache", str(root / "cache"), "--quiet"]
    args += ["--model", "musicnn", "--probe", "--head", "pooled", "--aggregate", "logits"]
    aux = ["--auxiliary", str(root / "aux")]
    assert main([*args, *aux, "--val-fraction", "0.25", "--out", str(tmp_path / "one")]) == 0
    assert load_checkpoint(tmp_path / "one" / "last.pt")["config"]["axes"] is True
    assert main([*args, *aux, "--folds", "2", "--out", str(tmp_path / "cv")]) == 0
    capsys.readouterr()
    assert main([*args[:-5], *aux, "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--auxiliary recordings teach the probe valence and arousal" in capsys.readouterr().err
