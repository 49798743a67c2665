"""Fine-tuning: a run that starts from a trained checkpoint's weights (``--init``)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fixtures_audio import TINY_SPEC_ARGS, tiny_spec

from musemo import ParameterError
from musemo.cli import main
from musemo.training import TrainConfig, fit, load_checkpoint
from musemo.training.checkpoints import Trained


def _largest_change(run, start: dict) -> float:
    state = load_checkpoint(run / "last.pt")["model_state"]
    return max(float((state[k].float() - v.float()).abs().max()) for k, v in start.items())


def test_a_run_starts_from_the_checkpoint_weights_and_input_statistics(
    tmp_path, chord_dataset, squeezenet_checkpoint
):
    _, _, data, train, val = chord_dataset
    init = Trained.load(squeezenet_checkpoint)
    still = TrainConfig(epochs=1, batch_size=16, lr=1e-12)  # weights barely move
    metrics = fit(data, train, val, tiny_spec(), still, tmp_path / "a", progress=False, init=init)
    assert metrics["config"]["init"] == init.name and init.digest in init.name
    assert _largest_change(tmp_path / "a", init.state["model_state"]) < 1e-6
    spec = load_checkpoint(tmp_path / "a" / "last.pt")["spec"]
    assert (spec["input_mean"], spec["input_std"]) == (init.spec.input_mean, init.spec.input_std)
    fit(data, train, val, tiny_spec(), still, tmp_path / "b", progress=False)
    assert _largest_change(tmp_path / "b", init.state["model_state"]) > 1e-2  # a fresh network


def test_a_checkpoint_that_cannot_start_the_run_is_refused(
    tmp_path, chord_dataset, squeezenet_checkpoint
):
    _, _, data, train, val = chord_dataset
    init = Trained.load(squeezenet_checkpoint)
    cases = {
        "model 'squeezenet1_0' \\(here 'mobilenet_v2'\\)": (TrainConfig(model="mobilenet_v2"), {}),
        "head 'replace' \\(here 'paper'\\)": (TrainConfig(head="paper"), {}),
        "other features": (TrainConfig(), {"n_mels": 32}),
        "the weights come from --init": (TrainConfig(weights="imagenet"), {}),
    }
    for why, (config, spec) in cases.items():
        with pytest.raises(ParameterError, match=why):
            fit(data, train, val, tiny_spec(**spec), config, tmp_path / "r", progress=False,
                init=init)  # fmt: skip
    with pytest.raises(ParameterError, match="config.init='x' but no checkpoint"):
        fit(data, train, val, tiny_spec(), TrainConfig(init="x"), tmp_path / "r", progress=False)
    with pytest.raises(ParameterError, match="--init .*no such checkpoint"):
        Trained.load(tmp_path / "nothing", "--init")


def test_cross_validation_fine_tunes_each_fold_from_its_own_run(
    tmp_path, chord_dataset, squeezenet_checkpoint, capsys
):
    folder, cache, data, _, val = chord_dataset
    common = ["--data", str(folder), "--cache", str(cache), "--quiet", "--workers", "1"]
    folds = ["train", *common, *TINY_SPEC_ARGS, "--epochs", "1", "--folds", "2"]
    first = tmp_path / "first"
    assert main([*folds, "--out", str(first)]) == 0
    tuned = tmp_path / "tuned"
    assert main([*folds, "--out", str(tuned), "--init", str(first / "squeezenet1_0")]) == 0
    for i in range(2):
        config = load_checkpoint(tuned / "squeezenet1_0" / f"fold{i}" / "last.pt")["config"]
        assert config["init"].startswith(str(first / "squeezenet1_0" / f"fold{i}" / "last.pt"))
    capsys.readouterr()
    other_seed = [*folds, "--seed", "1", "--out", str(tmp_path / "x")]
    assert main([*other_seed, "--init", str(first / "squeezenet1_0")]) == 2
    assert "--init" in (err := capsys.readouterr().err) and "other groups than fold 0" in err
    # one checkpoint for one run: said when it learnt from the groups scored here
    one = ["train", *common, *TINY_SPEC_ARGS, "--epochs", "1", "--val-fraction", "0.25"]
    assert main([*one, "--init", str(squeezenet_checkpoint), "--out", str(tmp_path / "o")]) == 0
    trained = Trained.load(squeezenet_checkpoint)
    seen = set(data.groups[val]) - set(trained.held_out_groups())
    assert ("warning: --init" in capsys.readouterr().err) == bool(seen)
    assert main([*one, "--init", str(squeezenet_checkpoint), "--compare"]) == 2
    assert "--init trains one model on grouped splits" in capsys.readouterr().err
    assert np.isfinite(load_checkpoint(tmp_path / "o" / "last.pt")["history"][0]["train_loss"])
