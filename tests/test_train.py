"""Training runs end to end on the CPU: run folder, checkpoints, exact resume, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fixtures_audio import TINY_SPEC_ARGS, tiny_spec

from musemo import ParameterError
from musemo.cli import main
from musemo.data import holdout_split, load_dataset
from musemo.features import FeatureSpec
from musemo.metrics import roc_auc
from musemo.training import (
    TrainConfig,
    compare_models,
    cross_validate,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    predict,
)
from musemo.training.checkpoints import save_checkpoint

CONFIG = TrainConfig(model="squeezenet1_0", epochs=2, batch_size=16, lr=3e-3)


def test_a_run_writes_everything(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    metrics = fit(data, train, val, tiny_spec(), CONFIG, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("best.pt", "last.pt", "metrics.json", "split.json", "curves.png", "confusion.png"):
        assert (run / name).stat().st_size > 0, name
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["final"] == json.loads(json.dumps(metrics["final"]))
    assert len(on_disk["history"]) == 2
    final = metrics["final"]
    assert final["labels"] == ["happy", "sad"]
    assert final["subclip"]["n"] == len(val) and final["recording"]["n"] == 4
    # scores are the last epoch's, not the best epoch picked on this very split
    assert final["epoch"] == 2
    assert final["subclip"]["accuracy"] == on_disk["history"][-1]["val_accuracy"]
    assert 0 <= final["recording"]["accuracy"] <= 1
    split = json.loads((run / "split.json").read_text())
    assert split["groups_on_both_sides"] == 0


def test_checkpoint_round_trip(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    fit(data, train, val, tiny_spec(), CONFIG, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    spec = FeatureSpec.from_dict(state["spec"])
    assert spec.input_std > 0 and state["labels"] == ["happy", "sad"]
    model = model_from_checkpoint(state)
    probs, _ = predict(model, data, val, spec, torch.device("cpu"))
    assert probs.shape == (len(val), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_resume_continues_exactly(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    whole = fit(data, train, val, tiny_spec(), CONFIG, tmp_path / "whole", progress=False)

    def interrupt(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            data,
            train,
            val,
            tiny_spec(),
            CONFIG,
            tmp_path / "split",
            progress=False,
            on_epoch=interrupt,
        )
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    resumed = fit(
        data, train, val, tiny_spec(), CONFIG, tmp_path / "split", resume=True, progress=False
    )
    a = load_checkpoint(tmp_path / "whole" / "last.pt")["model_state"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert resumed["history"][1]["train_loss"] == pytest.approx(
        whole["history"][1]["train_loss"], rel=1e-5
    )


def test_resume_refuses_other_settings(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    cfg = dataclasses.replace(CONFIG, epochs=1)
    fit(data, train, val, tiny_spec(), cfg, tmp_path / "run", progress=False)
    with pytest.raises(ParameterError, match="trained with other settings"):
        fit(
            data,
            train,
            val,
            tiny_spec(),
            dataclasses.replace(cfg, lr=1e-2),
            tmp_path / "run",
            resume=True,
            progress=False,
        )
    # a run begun before a setting existed resumes under that setting's default
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    del state["config"]["aggregate"]
    save_checkpoint(tmp_path / "run" / "last.pt", state)
    result = fit(data, train, val, tiny_spec(), cfg, tmp_path / "run", resume=True, progress=False)
    assert [h["epoch"] for h in result["history"]] == [1]
    with pytest.raises(ParameterError, match="trained with other settings"):
        fit(data, train, val, tiny_spec(), dataclasses.replace(cfg, aggregate="logits"),
            tmp_path / "run", resume=True, progress=False)  # fmt: skip


def test_checkpoints_never_unpickle_arbitrary_objects(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "musemo.checkpoint/1", "x": Payload()}, evil)
    with pytest.raises(ParameterError, match="not a readable musemo checkpoint"):
        load_checkpoint(evil)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ParameterError, match="is not a musemo checkpoint"):
        load_checkpoint(other)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ParameterError, match="not a readable"):
        load_checkpoint(corrupt)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_bad_configs():
    with pytest.raises(ParameterError, match="epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ParameterError, match="device='tpu'"):
        TrainConfig(device="tpu")
    if not torch.cuda.is_available():
        from musemo.training.loop import resolve_device

        with pytest.raises(ParameterError, match="CUDA is not available"):
            resolve_device("cuda")


def test_compare_models_with_the_baseline(tmp_path, chord_dataset):
    _, _, data, _, _ = chord_dataset
    rows = compare_models(
        data,
        tiny_spec(),
        ["squeezenet1_0"],
        dataclasses.replace(CONFIG, epochs=1),
        tmp_path / "cmp",
        split_modes=("grouped", "random"),
        val_fraction=0.25,
        progress=False,
    )
    assert [(r["split"], r["model"].split()[0]) for r in rows] == [
        ("grouped", "baseline"),
        ("grouped", "squeezenet1_0"),
        ("random", "baseline"),
        ("random", "squeezenet1_0"),
    ]
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| grouped | squeezenet1_0 |" in table
    assert (tmp_path / "cmp" / "comparison.csv").read_text().startswith("split,model,")
    # the baseline separates major from minor chords well above chance
    assert rows[0]["recording_accuracy"] >= 0.75


def test_cli_train_then_evaluate(tmp_path, chord_dataset, capsys):
    folder, cache, *_ = chord_dataset
    common = ["--data", str(folder), "--cache", str(cache), "--quiet", "--workers", "1"]
    spec = TINY_SPEC_ARGS
    out = tmp_path / "run"
    assert (
        main(
            ["train", *common, *spec, "--epochs", "1", "--out", str(out), "--val-fraction", "0.25"]
        )
        == 0
    )
    assert "squeezenet1_0 (grouped split, epoch 1)" in capsys.readouterr().out
    scores = tmp_path / "scores.json"
    assert main(["evaluate", str(out / "best.pt"), *common, "--json", str(scores)]) == 0
    assert "recording accuracy" in capsys.readouterr().out
    recording = json.loads(scores.read_text())["recording"]
    assert recording["n"] == 16 and 0 <= recording["ece"] <= 1
    assert main(["evaluate", str(tmp_path / "nothing.pt"), *common]) == 2
    # a manifest listing files outside its own folder needs --allow-outside-root
    listed = tmp_path / "listed"
    listed.mkdir()
    rows = [f"{f},{f.parent.name}" for f in sorted(folder.rglob("*.wav"))]
    (listed / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    outside = ["--data", str(listed), *common[2:]]
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.pt"), *outside]) == 2
    assert "lies outside the manifest's folder" in capsys.readouterr().err
    assert main(["evaluate", str(out / "best.pt"), *outside, "--allow-outside-root"]) == 0


def test_a_final_model_trains_on_everything(tmp_path, chord_dataset, capsys):
    """--val-fraction 0: every sub-clip trains, nothing is scored, last.pt is the model."""
    folder, cache, data, *_ = chord_dataset
    train, val = holdout_split(data, val_fraction=0)
    assert len(train) == len(data) and len(val) == 0
    common = ["--data", str(folder), "--cache", str(cache), "--quiet", "--workers", "1"]
    out = tmp_path / "final"
    args = ["train", *common, *TINY_SPEC_ARGS, "--epochs", "2", "--out", str(out)]
    assert main([*args, "--val-fraction", "0"]) == 0
    assert f"trained on all {len(data)} sub-clips, nothing held out" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.png", "last.pt", "metrics.json", "split.json"
    ]  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["validated"] is False and "recording" not in metrics["final"]
    assert [set(h) & {"val_loss", "val_accuracy"} for h in metrics["history"]] == [set(), set()]
    split = json.loads((out / "split.json").read_text())
    assert (split["train_subclips"], split["val_subclips"]) == (len(data), 0)
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 2 and state["split"]["train_groups"] == 16
    # the same settings with nothing held out are repeatable to the bit
    again = tmp_path / "again"
    assert main([*args[:-1], str(again), "--val-fraction", "0"]) == 0
    first, second = state["model_state"], load_checkpoint(again / "last.pt")["model_state"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    for several in (["--folds", "2"], ["--compare"]):
        assert main([*args, "--val-fraction", "0", *several]) == 2
        assert "--val-fraction 0 trains one final model" in capsys.readouterr().err
    with pytest.raises(ParameterError, match=r"val_fraction=0.5: must be in \[0, 0.5\)"):
        holdout_split(data, val_fraction=0.5)


def test_cross_validation_reports_mean_and_spread(tmp_path, chord_dataset):
    _, _, data, _, _ = chord_dataset
    summary = cross_validate(
        data,
        tiny_spec(),
        ["squeezenet1_0"],
        dataclasses.replace(CONFIG, epochs=1),
        tmp_path / "cv",
        k=2,
        progress=False,
    )
    assert summary["folds_done"] == 2 and set(summary["models"]) == {"baseline", "squeezenet1_0"}
    base = summary["models"]["baseline"]
    values = [f["recording_accuracy"] for f in base["folds"]]
    assert base["recording_accuracy"]["mean"] == pytest.approx(np.mean(values))
    table = (tmp_path / "cv" / "crossval.md").read_text()
    assert (
        "| baseline |" in table and "| recording balanced accuracy | recording ROC AUC |" in table
    )
    # per recording, balanced accuracy and AUC beside the sub-clips' scores
    for fold in summary["models"]["squeezenet1_0"]["folds"]:
        run = np.load(
            tmp_path / "cv" / "squeezenet1_0" / f"fold{fold['fold']}" / "val_recordings.npz"
        )
        p_sad, sad = run["probabilities"][:, 1], run["label"] == 1
        assert fold["recording_roc_auc"] == pytest.approx(roc_auc(p_sad, sad))
        recalls = [np.mean((p_sad > 0.5)[sad]), np.mean((p_sad <= 0.5)[~sad])]
        assert fold["recording_balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert (tmp_path / "cv" / "squeezenet1_0" / "fold1" / "best.pt").exists()
    # each fold's held-out recordings, calibrated on the other fold
    held_out = np.load(tmp_path / "cv" / "squeezenet1_0" / "fold0" / "val_recordings.npz")
    assert held_out["probabilities"].shape == (len(held_out["label"]), 2)
    calibration = summary["models"]["squeezenet1_0"]["recording_calibration"]
    assert calibration["temperature"] > 0 and 0 <= calibration["ece_calibrated"] <= 1
    assert "--temperature" in (tmp_path / "cv" / "crossval.md").read_text()


def test_mixup_trains_and_is_repeatable(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    cfg = dataclasses.replace(CONFIG, epochs=1, mixup=0.4)
    a = fit(data, train, val, tiny_spec(), cfg, tmp_path / "a", progress=False)
    b = fit(data, train, val, tiny_spec(), cfg, tmp_path / "b", progress=False)
    plain = fit(
        data,
        train,
        val,
        tiny_spec(),
        dataclasses.replace(cfg, mixup=0.0),
        tmp_path / "c",
        progress=False,
    )
    assert a["history"][0]["train_loss"] == pytest.approx(b["history"][0]["train_loss"], rel=1e-6)
    assert a["history"][0]["train_loss"] != pytest.approx(
        plain["history"][0]["train_loss"], rel=1e-6
    )
    with pytest.raises(ParameterError, match="mixup=-1"):
        TrainConfig(mixup=-1)


def test_a_cnn_learns_an_easy_task(tmp_path):
    """High against low tones: the loss falls and validation beats chance clearly."""
    from fixtures_audio import write_register_dataset

    folder = write_register_dataset(tmp_path / "tones")
    data, _ = load_dataset(folder, tiny_spec(), cache=tmp_path / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25, seed=0)
    config = TrainConfig(model="squeezenet1_0", epochs=6, batch_size=16)  # the default lr
    metrics = fit(data, train, val, tiny_spec(), config, tmp_path / "run", progress=False)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] / 3, losses
    assert metrics["final"]["subclip"]["accuracy"] >= 0.9
    assert metrics["final"]["recording"]["accuracy"] >= 0.9
