"""Training on a shared machine: how busy other programs keep this process's cores, the
thread count that follows them, and training runs with it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fixtures_audio import TINY_SPEC_ARGS, tiny_spec

from musemo import ParameterError
from musemo.cli import main
from musemo.training import TrainConfig, fit
from musemo.training.threads import PROC_STAT, CpuShare, ThreadGovernor, threads_for, usable_cores

needs_two_cores = pytest.mark.skipif(
    usable_cores() < 2 or not PROC_STAT.exists(),
    reason="needs two cores and /proc/stat",
)
CONFIG = TrainConfig(model="squeezenet1_0", epochs=1, batch_size=16, lr=3e-3)


@contextlib.contextmanager
def spinning():
    """Another program keeping one of this process's cores busy."""
    core = max(os.sched_getaffinity(0))
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.3)  # running
        yield
    finally:
        proc.kill()
        proc.wait()


def settles(governor: ThreadGovernor, threads: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if governor.update() == threads:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("cores", "others", "threads"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1), (1, 0.9, 1), (8, 2.6, 5)],
)
def test_threads_for_the_cores_left(cores, others, threads):
    assert threads_for(cores, others) == threads


@needs_two_cores
def test_cpu_share_counts_other_programs_not_this_one():
    share = CpuShare()
    with spinning():
        share.others()
        time.sleep(1.0)
        busy = share.others()
    assert 0.7 < busy < 1.3, busy
    share.others()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:  # this process's own work
        pass
    assert share.others() < 0.5


@needs_two_cores
def test_governor_gives_way_to_a_busy_core_and_takes_it_back(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before, cores = torch.get_num_threads(), usable_cores()
    with ThreadGovernor(interval=0.25) as governor:
        assert governor.adapts and governor.threads == torch.get_num_threads() == cores
        with spinning():
            assert settles(governor, cores - 1)
            assert torch.get_num_threads() == cores - 1
        assert settles(governor, cores)
    assert torch.get_num_threads() == before


def test_a_fixed_count_stays(monkeypatch):
    before = torch.get_num_threads()
    with ThreadGovernor(1, interval=0.0) as governor:
        assert not governor.adapts and governor.update() == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))  # torchrun's, or the user's
    with ThreadGovernor(interval=0.0) as governor:
        assert not governor.adapts and governor.update() == before
    with pytest.raises(ParameterError, match="threads=0"):
        ThreadGovernor(0)


def test_training_records_its_threads(tmp_path, chord_dataset, monkeypatch):
    _, _, data, train, val = chord_dataset
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    adapted = fit(data, train, val, tiny_spec(), CONFIG, tmp_path / "a", progress=False)
    assert 1 <= adapted["history"][0]["cpu_threads"] <= usable_cores()
    fixed = fit(data, train, val, tiny_spec(), CONFIG, tmp_path / "b", progress=False, threads=1)
    assert fixed["history"][0]["cpu_threads"] == 1
    assert torch.get_num_threads() == before
    twice = fit(data, train, val, tiny_spec(), CONFIG, tmp_path / "c", progress=False, threads=1)
    timing = {"train_seconds", "train_subclips_per_s"}
    untimed = [[{k: v for k, v in e.items() if k not in timing} for e in run["history"]]
               for run in (fixed, twice)]  # fmt: skip
    assert untimed[0] == untimed[1]  # a fixed count repeats the run


def test_cli_threads(tmp_path, chord_dataset, capsys):
    folder, cache, *_ = chord_dataset
    args = ["train", "--data", str(folder), "--cache", str(cache), "--quiet", "--workers", "1"]
    args += [*TINY_SPEC_ARGS, "--epochs", "1", "--val-fraction", "0.25"]
    assert main([*args, "--threads", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--threads 0: at least 1" in capsys.readouterr().err
    assert main([*args, "--threads", "1", "--out", str(tmp_path / "b")]) == 0
    metrics = (tmp_path / "b" / "metrics.json").read_text()
    assert '"cpu_threads": 1' in metrics
