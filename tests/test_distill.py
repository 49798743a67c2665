"""Distillation: a student learns from a teacher's cached, time-aligned soft outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fixtures_audio import TINY_SPEC_ARGS, tiny_spec, write_register_dataset

from musemo import ParameterError
from musemo.cli import main
from musemo.data import holdout_split, load_dataset
from musemo.training import TrainConfig, fit, load_checkpoint
from musemo.training.checkpoints import model_from_checkpoint
from musemo.training.distill import (
    Teacher,
    TeacherTargets,
    TeacherWindows,
    distillation_loss,
    teacher_targets,
    teacher_windows,
)
from musemo.training.models import build_model


def test_each_window_learns_from_the_teacher_windows_it_overlaps(chord_dataset):
    """1 s student sub-clips over 0.6 s teacher windows: weights are the overlaps, at the
    sub-clip's own place or wherever along its recording it was read."""
    _, _, data, _, _ = chord_dataset
    teacher_spec = tiny_spec(clip_seconds=0.6)
    windows = 8  # 4.8 s: more than the recordings' four 1 s sub-clips need
    ramp = np.stack([np.arange(windows), -np.arange(windows)], axis=1).astype(np.float32)
    outputs = {rec.path: ramp for rec in data.recordings}
    along = teacher_windows(data, tiny_spec(), outputs, teacher_spec)
    frames = along.clip[2]
    first = np.flatnonzero(data.index[:, 0] == 0)
    targets = along.at(data.index[first, 0], data.index[first, 1] * frames)
    # [0, 1] s: 0.6 s of window 0, 0.4 s of window 1; [1, 2] s: 0.2 of 1, 0.6 of 2, 0.2 of 3
    expected = [0.4, 2.0, (0.4 * 3 + 0.6 * 4) / 1.0, (0.6 * 5 + 0.4 * 6) / 1.0]
    np.testing.assert_allclose(targets[:, 0], expected[: len(first)], rtol=1e-6)
    np.testing.assert_allclose(targets[:, 1], -targets[:, 0])
    # read from half a sub-clip on, [0.5, 1.5] s: 0.1 of 0, 0.6 of 1, 0.3 of 2
    half = along.at(np.array([0]), np.array([frames // 2]))
    start = (frames // 2) / frames
    w = np.array([0.6 - start, 0.6, start + 1.0 - 1.2])
    assert half[0, 0] == pytest.approx(float(w @ [0, 1, 2] / w.sum()), rel=1e-6)
    # the teacher's windows end before the student's: the mean of all of them
    short = {rec.path: ramp[:2] for rec in data.recordings}
    tail = teacher_windows(data, tiny_spec(), short, teacher_spec).at(np.array([0]), [3 * frames])
    assert tail[0, 0] == pytest.approx(0.5)
    missing = dict(outputs)
    del missing[data.recordings[3].path]
    with pytest.raises(ParameterError, match="the teacher has no windows for it"):
        teacher_windows(data, tiny_spec(), missing, teacher_spec)


def test_the_loss_is_zero_when_the_student_says_what_the_teacher_says():
    logits = torch.tensor([[2.0, -1.0], [0.3, 0.1]])
    same = torch.softmax(logits / 3.0, dim=1)
    assert float(distillation_loss(logits, same, 3.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.softmax(-logits / 3.0, dim=1)
    assert float(distillation_loss(logits, other, 3.0)) > 0.1


def test_a_student_learns_what_its_teacher_says_not_the_labels(tmp_path):
    """A teacher that says the opposite of every label: with the teacher's share at 1 the
    student learns it; with its share at 0 the student learns the labels."""
    folder = write_register_dataset(tmp_path / "tones")
    data, _ = load_dataset(folder, tiny_spec(), cache=tmp_path / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25, seed=0)
    flipped = np.log(np.where(np.eye(2)[1 - data.labels] > 0, 0.98, 0.02)).astype(np.float32)
    liar = TeacherTargets("opposite of the labels", flipped)
    accuracy = {}
    for alpha in (1.0, 0.0):
        config = TrainConfig(epochs=6, batch_size=16, distill_alpha=alpha)
        metrics = fit(data, train, val, tiny_spec(), config, tmp_path / f"a{alpha}",
                      progress=False, teacher=liar)  # fmt: skip
        accuracy[alpha] = metrics["final"]["recording"]["accuracy"]
        assert metrics["config"]["teacher"] == "opposite of the labels"
    assert accuracy[1.0] <= 0.1 and accuracy[0.0] >= 0.9, accuracy


def test_teacher_outputs_are_checked(tmp_path, chord_dataset):
    _, _, data, train, val = chord_dataset
    config = TrainConfig(epochs=1, batch_size=16)
    bad = {
        "not float32": np.zeros((len(data), 2)),
        "float32\\[5, 2\\]": np.zeros((5, 2), np.float32),
        "NaN": np.full((len(data), 2), np.nan, np.float32),
    }
    for why, logp in bad.items():
        with pytest.raises(ParameterError, match=why if why != "not float32" else "float64"):
            fit(data, train, val, tiny_spec(), config, tmp_path / "r", progress=False,
                teacher=TeacherTargets("t", logp))  # fmt: skip
    with pytest.raises(ParameterError, match="config.teacher='x' but no teacher outputs"):
        fit(data, train, val, tiny_spec(), TrainConfig(teacher="x"), tmp_path / "r", progress=False)
    for field, value in (("distill_temperature", 0.0), ("distill_alpha", 1.5)):
        with pytest.raises(ParameterError, match=field):
            TrainConfig(**{field: value})


def test_train_distils_from_a_checkpoint_and_caches_its_outputs(
    tmp_path, chord_dataset, squeezenet_checkpoint, capsys
):
    folder, cache, data, _, val = chord_dataset
    common = ["--data", str(folder), "--cache", str(cache), "--quiet", "--workers", "1"]
    args = ["train", *common, *TINY_SPEC_ARGS, "--epochs", "1", "--val-fraction", "0.25"]
    teacher = Teacher.load(squeezenet_checkpoint.parent)  # a run folder names its last.pt
    assert main([*args, "--teacher", str(teacher.path), "--out", str(tmp_path / "s")]) == 0
    state = load_checkpoint(tmp_path / "s" / "last.pt")
    assert state["config"]["teacher"] == teacher.name and teacher.digest in teacher.name
    cached = sorted((cache / "teachers" / teacher.digest).glob("*.npy"))
    assert len(cached) == len(data.recordings)
    stamps = [p.stat().st_mtime_ns for p in cached]
    (again,) = teacher_targets([teacher], data, tiny_spec(), cache=cache, progress=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read back, not recomputed
    assert again.logp.shape == (len(data), 2) and np.all(again.logp <= 0)
    # the teacher trained on other recordings than the student's validation ones: said
    err = capsys.readouterr().err
    seen = set(data.groups[val]) - set(teacher.held_out_groups())
    assert ("warning: --teacher" in err) == bool(seen)
    assert main([*args, "--teacher", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main([*args, "--teacher", str(teacher.path), "--compare"]) == 2
    assert "--teacher trains one model on grouped splits" in capsys.readouterr().err


def test_cross_validation_distils_each_fold_from_its_own_teacher(tmp_path, chord_dataset, capsys):
    folder, cache, data, _, _ = chord_dataset
    common = ["--data", str(folder), "--cache", str(cache), "--quiet", "--workers", "1"]
    folds = ["train", *common, *TINY_SPEC_ARGS, "--epochs", "1", "--folds", "2"]
    teachers = tmp_path / "teacher"
    assert main([*folds, "--out", str(teachers), "--model", "mobilenet_v2"]) == 0
    student = tmp_path / "student"
    assert main([*folds, "--out", str(student), "--teacher", str(teachers / "mobilenet_v2")]) == 0
    for i in range(2):
        config = load_checkpoint(student / "squeezenet1_0" / f"fold{i}" / "last.pt")["config"]
        assert config["teacher"].startswith(str(teachers / "mobilenet_v2" / f"fold{i}" / "last.pt"))
    summary = json.loads((student / "crossval.json").read_text())
    assert summary["folds_done"] == 2
    capsys.readouterr()
    # other folds than the teacher's: its held-out recordings would teach the student
    other_seed = [*folds, "--seed", "1", "--out", str(tmp_path / "x")]
    assert main([*other_seed, "--teacher", str(teachers / "mobilenet_v2")]) == 2
    assert "held out other groups than fold 0" in capsys.readouterr().err
    one = teachers / "mobilenet_v2" / "fold0"
    assert main([*folds, "--out", str(tmp_path / "y"), "--teacher", str(one)]) == 2
    assert "give the model folder of a cross-validation (e.g." in capsys.readouterr().err


def test_a_student_learns_its_teachers_features_as_outputs_dropped_after_training(tmp_path):
    """Teacher features that follow the label: a student with --distill-features says them
    (extra outputs), and loads as a network of its labels' outputs alone."""
    folder = write_register_dataset(tmp_path / "tones")
    data, _ = load_dataset(folder, tiny_spec(), cache=tmp_path / "cache", progress=False)
    train, val = holdout_split(data, val_fraction=0.25, seed=0)
    sign = np.where(data.labels == 0, 1.0, -1.0).astype(np.float32)
    logp = np.log(np.where(np.eye(2)[data.labels] > 0, 0.9, 0.1)).astype(np.float32)
    per_recording = np.zeros((len(data.recordings), 1, 3), np.float32)
    per_recording[data.index[:, 0], 0] = sign[:, None] * np.array([1.0, 2.0, -1.0])
    seconds = tiny_spec().clip_seconds
    windows = TeacherWindows(
        per_recording, np.ones(len(data.recordings), np.int64), (100.0, 100.0),
        (seconds, seconds, data.features[0].shape[-1]),
    )  # fmt: skip
    teacher = TeacherTargets("says the label", logp, features=windows)
    config = TrainConfig(epochs=6, batch_size=16, distill_features=1.0, shift=False)
    fit(data, train, val, tiny_spec(), config, tmp_path / "s", progress=False, teacher=teacher)
    state = load_checkpoint(tmp_path / "s" / "last.pt")
    assert state["extra_outputs"] == 3 and state["model_state"]["classifier.1.bias"].shape == (5,)
    wide = build_model("squeezenet1_0", n_classes=5)
    wide.load_state_dict(state["model_state"])
    x = torch.from_numpy(data.stack(val)[:, None])
    x = (x - state["spec"]["input_mean"]) / state["spec"]["input_std"]
    with torch.no_grad():
        out = wide.eval()(x).numpy()
        student = model_from_checkpoint(state)(x).numpy()
    np.testing.assert_allclose(student, out[:, :2], rtol=1e-4, atol=1e-4)  # labels' outputs
    said, truth = out[:, 2:], per_recording[data.index[val, 0], 0]
    assert np.mean((said - truth) ** 2) < 0.25 * np.mean(truth**2)  # held-out windows too
    plain = fit(data, train, val, tiny_spec(), TrainConfig(epochs=1, batch_size=16),
                tmp_path / "p", progress=False, teacher=teacher)  # fmt: skip
    assert load_checkpoint(tmp_path / "p" / "last.pt")["extra_outputs"] == 0
    assert plain["config"]["distill_features"] == 0.0
    no_features = TeacherTargets("t", logp)
    with pytest.raises(ParameterError, match="the teacher outputs hold no features"):
        fit(data, train, val, tiny_spec(), config, tmp_path / "n", progress=False,
            teacher=no_features)  # fmt: skip


def test_musemo_train_distils_a_musicnn_teachers_features(tmp_path, capsys):
    folder = write_register_dataset(tmp_path / "tones", per_label=4, seconds=6.1)
    common = ["train", "--data", str(folder), "--cache", str(tmp_path / "cache"), "--quiet"]
    teacher = tmp_path / "teacher"
    probe = ["--model", "musicnn", "--probe", "--head", "pooled", "--val-fraction", "0.25"]
    assert main([*common, *probe, "--out", str(teacher)]) == 0
    student = [*common, *TINY_SPEC_ARGS, "--epochs", "1", "--val-fraction", "0.25"]
    distil = ["--teacher", str(teacher), "--distill-features", "1"]
    assert main([*student, *distil, "--out", str(tmp_path / "s")]) == 0
    state = load_checkpoint(tmp_path / "s" / "last.pt")
    assert state["extra_outputs"] == 1706 and state["config"]["distill_features"] == 1.0
    digest = Teacher.load(teacher).digest
    assert len(list((tmp_path / "cache" / "teachers" / digest / "features").glob("*.npy"))) == 8
    assert main([*student, "--teacher", str(tmp_path / "s"), "--distill-features", "1"]) == 2
    assert "only musicnn teachers say what their head reads" in capsys.readouterr().err
    assert main([*student, "--distill-features", "1"]) == 2
    assert "--distill-features learns a teacher's features: add --teacher" in (
        capsys.readouterr().err
    )
    # fine-tuned from the student: a network of its labels' outputs
    init = ["--init", str(tmp_path / "s"), "--out", str(tmp_path / "ft")]
    assert main([*student, *init]) == 0
    assert load_checkpoint(tmp_path / "ft" / "last.pt")["extra_outputs"] == 0
