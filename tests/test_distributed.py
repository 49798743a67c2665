"""Data-parallel training under torchrun, on the CPU (gloo): two processes, one run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from fixtures_audio import TINY_SPEC_ARGS, write_chord_dataset


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    folder = write_chord_dataset(tmp_path / "chords", per_label=8)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "musemo.cli",
        "train",
        "--data",
        str(folder),
        "--cache",
        str(tmp_path / "cache"),
        "--workers",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--val-fraction",
        "0.25",
        *TINY_SPEC_ARGS,
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("squeezenet1_0 (grouped split, epoch 2)") == 1  # rank 0 reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["processes"] for h in metrics["history"]] == [2, 2]
    # each epoch covers the training split once, shared by the two processes
    split = json.loads((out / "split.json").read_text())
    for h in metrics["history"]:
        seen = round(h["train_subclips_per_s"] * h["train_seconds"])
        assert seen == split["train_subclips"] // 2 * 2
    assert (out / "best.pt").exists() and (out / "curves.png").exists()
    # gathered from both processes at the end: DDP kept the two replicas identical
    assert metrics["final"]["processes"] == 2
    assert metrics["final"]["weights_max_difference_between_processes"] == 0.0


@pytest.mark.slow
def test_the_replica_check_sees_a_difference(tmp_path):
    """The check behind weights_max_difference_between_processes, on two real gloo
    processes whose tensors differ by 0.25 in one value."""
    script = tmp_path / "spread.py"
    script.write_text(
        "import torch\n"
        "from musemo.training.distributed import max_difference_over_processes, world\n"
        "w = world()\n"
        "x = torch.zeros(5)\n"
        "x[3] = 0.25 * w.rank\n"
        "print(f'rank {w.rank}: {max_difference_over_processes(w, x)}')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "rank 0: 0.25" in proc.stdout and "rank 1: 0.25" in proc.stdout


@pytest.mark.slow
def test_two_nodes_meet_at_a_c10d_rendezvous(tmp_path):
    """README's several-machines command, as two "nodes" on this one (each a torchrun of
    one process) sharing a folder for the data, the cache and the run."""
    import os
    import socket

    folder = write_chord_dataset(tmp_path / "chords", per_label=8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=musemo-test",
            "-m", "musemo.cli", "train", "--data", str(folder), "--cache", str(tmp_path / "cache"),
            "--workers", "1", "--device", "cpu", "--quiet", "--epochs", "2", "--batch-size", "8",
            "--out", str(tmp_path / "run"), "--val-fraction", "0.25", *TINY_SPEC_ARGS]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(node, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env) for _ in range(2)]  # fmt: skip
    said = [n.communicate(timeout=600)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(said)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["processes"] for h in metrics["history"]] == [2, 2]
    assert metrics["final"]["weights_max_difference_between_processes"] == 0.0
