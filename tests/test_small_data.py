"""A beginner's first folder: a few recordings per label train with a grouped hold-out
of one recording per label, the output says how little that score means, and the
model exports to int8."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_audio import TINY_SPEC_ARGS, tiny_spec, write_chord_dataset

from musemo import ParameterError
from musemo.cli import export_main, main
from musemo.data import holdout_split, load_dataset


def small_set(root: Path, per_label: int, seconds: float = 12.0):
    folder = write_chord_dataset(root / f"set{per_label}", per_label=per_label, seconds=seconds)
    return load_dataset(folder, tiny_spec(), cache=root / "cache", progress=False)[0]


@pytest.mark.parametrize(("per_label", "held_per_label"), [(2, 1), (6, 1), (14, 2)])
def test_a_small_set_holds_out_whole_recordings_of_each_label(tmp_path, per_label, held_per_label):
    data = small_set(tmp_path, per_label, seconds=3.0)
    train, val = holdout_split(data)  # 0.15: 7 parts, or as many as a label has recordings
    assert not set(data.groups[train]) & set(data.groups[val])
    recordings, first = np.unique(data.index[val, 0], return_index=True)
    assert np.bincount(data.labels[val][first]).tolist() == [held_per_label] * 2
    assert len(train) + len(val) == len(data.index)


def test_one_recording_per_label_is_refused_with_the_way_out(tmp_path):
    data = small_set(tmp_path, 1, seconds=3.0)
    with pytest.raises(ParameterError, match=r"at least 2 per label.*--val-fraction 0 trains"):
        holdout_split(data)
    train, val = holdout_split(data, val_fraction=0)
    assert len(val) == 0 and len(train) == len(data.index)


def train_command(folder: Path, out: Path, *extra: str) -> list[str]:
    cache = str(out.parent / "cache")
    return ["train", "--data", str(folder), "--cache", cache, "--quiet", "--workers", "1",
            "--epochs", "1", *TINY_SPEC_ARGS, "--out", str(out), *extra]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("per_label", [2, 6])
def test_musemo_train_on_a_few_recordings_says_the_score_is_noise(tmp_path, capsys, per_label):
    folder = write_chord_dataset(tmp_path / "set", per_label=per_label, seconds=12.0)
    assert main(train_command(folder, tmp_path / "run")) == 0
    said = capsys.readouterr()
    assert "validation holds 2 recordings (happy 1, sad 1)" in said.err
    assert "noise" in said.err and "±35 points" in said.err and "--val-fraction" in said.err
    assert "recording accuracy" in said.out
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["val_groups"]) == 2 and split["groups_on_both_sides"] == 0


@pytest.mark.slow
def test_a_larger_hold_out_trains_without_the_warning(tmp_path, capsys):
    folder = write_chord_dataset(tmp_path / "set", per_label=70, seconds=1.0)
    assert main(train_command(folder, tmp_path / "run")) == 0
    assert "validation holds" not in capsys.readouterr().err


@pytest.mark.slow
def test_twenty_four_recordings_train_and_export_to_int8(tmp_path, capsys):
    folder = write_chord_dataset(tmp_path / "set", per_label=12, seconds=12.0)
    assert main(train_command(folder, tmp_path / "run", "--model", "squeezenet1_0")) == 0
    out = tmp_path / "export"
    code = export_main([str(tmp_path / "run" / "best.pt"), "--int8", "--format", "onnx",
                        "--calib", str(folder), "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (out / "squeezenet1_0.int8.onnx").is_file()
    run = [sys.executable, "-m", "musemo", "infer", str(out / "squeezenet1_0.int8.onnx"),
           str(next((folder / "happy").iterdir()))]  # fmt: skip
    done = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\.wav: (uncertain \()?(happy|sad)", done.stdout), done.stdout
