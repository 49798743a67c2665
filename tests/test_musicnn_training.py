"""musicnn as a musemo model: fine-tuned by ``fit`` from its pretrained weights (frozen
front end, slower backbone), probed and scored zero-shot on pooled embeddings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures_audio import tiny_spec, write_register_dataset

from musemo import ParameterError
from musemo.data import holdout_split, kfold_splits, load_dataset
from musemo.features import musicnn_spec
from musemo.training import TrainConfig, fit
from musemo.training.checkpoints import load_checkpoint, model_from_checkpoint
from musemo.training.loop import parameter_groups
from musemo.training.models import build_model
from musemo.training.musicnn import MSD_TAGS, pretrained_musicnn
from musemo.training.probe import (
    best_threshold,
    embed_subclips,
    fit_probe,
    probe_fold,
    probe_inputs,
    recording_table,
    zero_shot_fold,
)


@pytest.fixture(scope="module")
def register_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("register")
    write_register_dataset(root / "audio", per_label=4, seconds=3.1)
    data, _ = load_dataset(root / "audio", musicnn_spec(), cache=root / "cache", progress=False)
    return root, data


def test_musicnn_spec_is_musicnns_front_end():
    spec = musicnn_spec()
    assert spec.clip_shape == (96, 187)
    assert (spec.sample_rate, spec.n_fft, spec.hop_length, spec.log1p_scale) == (
        16000,
        512,
        256,
        1e4,
    )
    assert musicnn_spec(loudness_dbfs=-20.0).loudness_dbfs == -20.0
    with pytest.raises(ParameterError, match="musicnn's features are fixed"):
        musicnn_spec(n_mels=128)


def test_fine_tuning_keeps_the_frozen_layers_and_raw_input(register_set, tmp_path):
    root, data = register_set
    assert len(data) == 8  # one 187-frame patch per 3.1 s recording
    train, val = holdout_split(data, val_fraction=0.25)
    config = TrainConfig(
        model="musicnn",
        weights="pretrained",
        epochs=2,
        batch_size=4,
        frozen=("input_bn", "frontend"),
    )
    result = fit(data, train, val, musicnn_spec(), config, tmp_path / "run", progress=False)
    assert len(result["history"]) == 2
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["spec"]["input_mean"], state["spec"]["input_std"]) == (0.0, 1.0)
    tuned, original = model_from_checkpoint(state), pretrained_musicnn()
    for name in ("input_bn.running_mean", "frontend.0.conv.weight", "frontend.4.bn.running_var"):
        assert torch.equal(tuned.state_dict()[name], original.state_dict()[name]), name
    assert not torch.equal(tuned.midend[0].conv.weight, original.midend[0].conv.weight)
    assert tuned.head.out_features == 2
    assert 0 <= result["final"]["recording"]["roc_auc"] <= 1


def test_a_probe_head_is_the_logistic_regression_on_recording_means(tmp_path):
    root = write_register_dataset(tmp_path / "audio", per_label=6, seconds=6.1)
    data, _ = load_dataset(root, musicnn_spec(), cache=tmp_path / "cache", progress=False)
    assert len(data) == 24  # two patches per recording
    train, val = holdout_split(data, val_fraction=0.25)
    config = TrainConfig(
        model="musicnn", weights="pretrained", head="pooled", probe=True, epochs=5, batch_size=8
    )
    assert config.epochs == 1  # fitted once
    result = fit(data, train, val, musicnn_spec(), config, tmp_path / "run", progress=False)
    assert len(result["history"]) == 1
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    model, original = model_from_checkpoint(state), pretrained_musicnn()
    for name, value in original.state_dict().items():  # the network itself is untouched
        if not name.startswith("head."):
            assert torch.equal(model.state_dict()[name], value), name
    # the same probe, fitted apart on the training recordings' mean features
    table, labels, ids = recording_table(data, embed_subclips(original, data, progress=False))
    x, groups = probe_inputs(table, "pooled"), np.array([data.recordings[i].group for i in ids])
    on_train = np.isin(ids, data.index[train, 0])
    clf, _ = fit_probe(x[on_train], labels[on_train], groups[on_train])
    with torch.no_grad():
        logits = model(torch.from_numpy(data.stack(val)[:, None])).numpy()
    # per patch, the head's logit of "sad" over "happy" is the probe's; its recording
    # mean is the probe's logit of the recording's mean features (a linear head), to the
    # solver's tolerance (lbfgs, 1706 features)
    recording = data.index[val, 0]
    expected = dict(zip(ids, clf.decision_function(x)))
    for r in np.unique(recording):
        got = np.mean(logits[recording == r, 1] - logits[recording == r, 0])
        assert got == pytest.approx(expected[r], abs=0.02) and np.sign(got) == np.sign(expected[r])
    # aggregating the patches' logits, each recording gets the probe's own probability
    logits_config = dataclasses.replace(config, aggregate="logits")
    fit(data, train, val, musicnn_spec(), logits_config, tmp_path / "logits", progress=False)
    held = np.load(tmp_path / "logits" / "val_recordings.npz")
    on_val = np.isin(ids, held["recording"])
    assert (ids[on_val] == held["recording"]).all()
    np.testing.assert_allclose(held["probabilities"], clf.predict_proba(x[on_val]), atol=0.005)
    with pytest.raises(ParameterError, match="probe fits a head on a pretrained network"):
        TrainConfig(model="squeezenet1_0", probe=True)
    with pytest.raises(ParameterError, match="head 'pooled' is musicnn's"):
        build_model("squeezenet1_0", head="pooled")


def test_pretrained_layers_learn_slower():
    model = build_model("musicnn", weights="pretrained")
    config = TrainConfig(model="musicnn", weights="pretrained", lr=1e-3, frozen=("frontend",))
    from musemo.training.loop import freeze

    freeze(model, config.frozen)
    backbone, head = parameter_groups(model, config)
    assert backbone["lr"] == pytest.approx(1e-4) and head["lr"] == 1e-3
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    frozen = {id(p) for p in model.frontend.parameters()}
    assert not frozen & {id(p) for p in backbone["params"]}
    with pytest.raises(ParameterError, match="frozen module 'nowhere'"):
        freeze(model, ("nowhere",))


def test_pretrained_musicnn_refuses_other_features(tmp_path):
    root = write_register_dataset(tmp_path / "audio", per_label=4, seconds=2.2)
    data, _ = load_dataset(root, tiny_spec(), cache=tmp_path / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25)
    config = TrainConfig(model="musicnn", weights="pretrained", epochs=1)
    with pytest.raises(ParameterError, match=r"needs its own features .*n_fft=1024"):
        fit(data, train, val, tiny_spec(), config, tmp_path / "run", progress=False)


def test_folds_are_folds_of_recordings_whatever_the_subclips(register_set, tmp_path):
    """Two specs of the same recordings (different sub-clip counts) get the same folds,
    so every model family is judged on the same recordings."""
    root, data = register_set
    other, _ = load_dataset(
        root / "audio", tiny_spec(clip_seconds=0.5), cache=tmp_path / "c", progress=False
    )
    assert len(other) != len(data)

    def val_recordings(d):
        return [
            sorted({d.recordings[r].path.name for r in d.index[b, 0]})
            for _, b in kfold_splits(d, k=4)
        ]

    assert val_recordings(data) == val_recordings(other)


def test_embeddings_zero_shot_and_probe(register_set):
    root, data = register_set
    emb = embed_subclips(pretrained_musicnn(), data, batch_size=3, progress=False)
    assert {k: v.shape for k, v in emb.items()} == {
        "tags": (8, 50), "penultimate": (8, 200), "mean_pool": (8, 753), "max_pool": (8, 753)
    }  # fmt: skip
    table, labels, ids = recording_table(data, emb)
    assert len(ids) == 8 and table["tags"].shape == (8, 50)
    positive = labels == data.label_names.index("happy")
    train, val = np.arange(8) % 4 != 0, np.arange(8) % 4 == 0
    zs = zero_shot_fold(table, positive, np.flatnonzero(train), np.flatnonzero(val))
    assert set(zs) == {"balanced_accuracy", "accuracy", "roc_auc", "threshold"}
    # the probe on features that separate the labels perfectly
    table = {k: v + 10 * positive[:, None] for k, v in table.items()}
    groups = np.array([f"g{i}" for i in range(8)])
    many = np.tile(np.arange(8), 3)  # 24 rows: enough for the inner 3-fold choice of C
    big = {
        k: v[many] + np.random.default_rng(0).normal(0, 0.01, v[many].shape)
        for k, v in table.items()
    }
    pr = probe_fold(
        big, positive[many], np.char.add(groups[many], np.repeat(["a", "b", "c"], 8)),
        np.arange(16), np.arange(16, 24), features="pooled",
    )  # fmt: skip
    assert pr["balanced_accuracy"] == 1.0 and pr["roc_auc"] == 1.0
    assert MSD_TAGS.index("happy") == 49
    with pytest.raises(ParameterError, match="need embeddings MTT_musicnn/penultimate"):
        probe_fold(big, positive[many], groups[many], np.arange(16), np.arange(16, 24),
                   features="pooled + MTT_musicnn")  # fmt: skip
    mtt = embed_subclips(pretrained_musicnn("MTT_musicnn"), data, batch_size=8, progress=False)
    assert not np.allclose(mtt["penultimate"], emb["penultimate"], atol=1e-2)


def test_best_threshold_balances_the_classes():
    score = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    positive = np.array([False, False, True, True, True])
    assert best_threshold(score, positive) == pytest.approx(0.25)
    assert best_threshold(np.zeros(4), np.array([True, False, True, False])) in (-1.0, 1.0)


def test_musemo_train_model_musicnn(register_set, tmp_path, capsys):
    from musemo.cli import main

    root, _ = register_set
    args = ["train", "--data", str(root / "audio"), "--cache", str(root / "cache"), "--quiet"]
    args += ["--model", "musicnn", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0.25"]
    assert main([*args, "--freeze", "input_bn", "frontend", "--out", str(tmp_path / "r")]) == 0
    state = load_checkpoint(tmp_path / "r" / "last.pt")
    assert state["config"]["weights"] == "pretrained"
    assert tuple(state["config"]["frozen"]) == ("input_bn", "frontend")
    assert state["spec"]["log1p_scale"] == 1e4 and state["spec"]["n_mels"] == 96
    assert main([*args, "--sr", "22050", "--out", str(tmp_path / "r2")]) == 2
    assert "musicnn's features are its own" in capsys.readouterr().err
    # the probe on the pooled features: one "epoch", the head fitted in closed form
    assert main([*args, "--probe", "--head", "pooled", "--out", str(tmp_path / "p")]) == 0
    state = load_checkpoint(tmp_path / "p" / "last.pt")
    assert state["config"]["probe"] and state["head"] == "pooled" and state["epoch"] == 1
    assert model_from_checkpoint(state).head.in_features == 1706
    args[args.index("musicnn")] = "squeezenet1_0"
    assert main([*args, "--probe", "--out", str(tmp_path / "p2")]) == 2
    assert "probe fits a head on a pretrained network" in capsys.readouterr().err


def test_a_head_for_tag_labels_starts_as_the_zero_shot_classifier():
    tagger = pretrained_musicnn()
    model = build_model("musicnn", weights="pretrained", labels=("happy", "Sad"))
    rows = [MSD_TAGS.index("happy"), MSD_TAGS.index("sad")]
    assert torch.equal(model.head.weight, tagger.head.weight[rows])
    assert torch.equal(model.head.bias, tagger.head.bias[rows])
    x = torch.randn(3, 1, 96, 187)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tagger(x)[:, rows])
    other = build_model("musicnn", weights="pretrained", labels=("joy", "grief"))
    assert not torch.equal(other.head.weight, tagger.head.weight[rows])  # not tags: random
