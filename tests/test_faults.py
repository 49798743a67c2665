"""SIGKILL during feature caching, training and export; then run again.

Nothing half-written is ever read as valid, a rerun picks up where the killed one
stopped, and the end result equals an uninterrupted run's. Each kill lands at a
random moment after a chosen point of progress (seeded, so a failure replays).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fixtures_audio import TINY_SPEC_ARGS, tiny_spec, write_chord_dataset

from musemo._atomic import _host, remove_leftovers
from musemo.data import FeatureCache

MUSEMO = [sys.executable, "-m", "musemo.cli"]


def run_killed(
    args: list[str], log: Path, *, when: Callable[[], bool], delay: float, timeout: float = 600
) -> int | None:
    """Run ``musemo args``; once ``when()`` holds, wait ``delay`` s and SIGKILL the run and
    its worker processes. Returns the exit code if it ended first, else None."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([*MUSEMO, *args], stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not when():
            if proc.poll() is not None:
                return proc.returncode
            assert time.monotonic() < deadline, f"no progress: see {log}"
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is not None:
            return proc.returncode
        kill_group(proc)
        return None
    finally:
        if proc.poll() is None:
            kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run and its workers; return once none of them runs any more."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(1000):
        if not any(group == proc.pid for _, _, group in live_processes()):
            return
        time.sleep(0.005)
    raise AssertionError(f"processes of group {proc.pid} outlived SIGKILL")


def live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that runs (zombies left out)."""
    # os.listdir, not Path.glob: glob stats each entry and raises when a process exits
    # between the listing and the stat (ProcessLookupError escapes pathlib in 3.11).
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path("/proc", name, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            yield int(name), int(fields[1]), int(fields[2])


def run(args: list[str], log: Path) -> None:
    done = subprocess.run([*MUSEMO, *args], capture_output=True, text=True, timeout=600)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr


def entries(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.npy") if not p.name.startswith(".")]


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp." in p.name]


@pytest.fixture(scope="module")
def chords_30s(tmp_path_factory) -> Path:
    """40 chord recordings of 30 s (1,200 sub-clips of 1 s)."""
    return write_chord_dataset(tmp_path_factory.mktemp("faults"), per_label=20, seconds=30.0)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_killed_feature_caching_resumes(tmp_path, chords_30s, workers):
    args = ["cache", "--data", str(chords_30s), "--workers", str(workers), "--quiet"]
    args += TINY_SPEC_ARGS
    run([*args, "--cache", str(tmp_path / "whole")], tmp_path / "whole.log")
    whole = FeatureCache(tmp_path / "whole", tiny_spec()).folder
    expected = {p.name: p.read_bytes() for p in entries(whole)}
    assert len(expected) == 40 and not leftovers(whole)

    folder = FeatureCache(tmp_path / "killed", tiny_spec()).folder
    rng = np.random.default_rng(workers)
    kills = left = 0
    for after in (1, 8, 16, 24, 32, 39):
        code = run_killed(
            [*args, "--cache", str(tmp_path / "killed")],
            tmp_path / "killed.log",
            when=lambda n=after: folder.is_dir() and len(entries(folder)) >= n,
            delay=rng.uniform(0, 0.05),
        )
        assert code in (None, 0)
        kills += code is None
        left += len(leftovers(folder))
        for entry in entries(folder):  # every entry on disk is whole and right
            assert entry.read_bytes() == expected[entry.name], entry
    assert kills >= 4, "the runs ended before they could be killed"
    run([*args, "--cache", str(tmp_path / "killed")], tmp_path / "killed.log")
    assert {p.name: p.read_bytes() for p in entries(folder)} == expected
    assert not leftovers(folder)
    print(f"cache, {workers} worker(s): {kills} kills, {left} temporary files left by them")


def test_a_damaged_cache_entry_is_computed_again(tmp_path, chords_30s):
    from musemo.data import scan_folder

    recordings = scan_folder(chords_30s)[:6]
    cache = FeatureCache(tmp_path, tiny_spec())
    first = cache.build(recordings, progress=False)
    damaged = first.entries[recordings[2].path]
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])  # e.g. a copy that stopped half-way
    again = cache.build(recordings, progress=False)
    assert (again.computed, again.reused) == (1, 5)
    assert damaged.read_bytes() == whole


def test_leftovers_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = _host()
    mine = tmp_path / f".entry.tmp.{host}.{os.getpid()}.k2j3.tmp.npy"  # a write in progress
    theirs = tmp_path / f".entry.tmp.{host}.{dead.pid}.x8f1.tmp.npy"
    staging = tmp_path / f".musemo-export.tmp.{host}.{dead.pid}.q0z9"
    # a write on another machine sharing the folder: its process cannot be seen from here
    elsewhere = tmp_path / f".entry.tmp.other-host.{dead.pid}.z7c4.tmp.npy"
    (staging / "sub").mkdir(parents=True)
    kept = [mine, elsewhere, tmp_path / "entry.npy", tmp_path / ".hidden"]
    for path in [*kept, theirs]:
        path.write_bytes(b"x")
    assert remove_leftovers(tmp_path) == 2
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_a_killed_worker_does_not_stop_the_others(tmp_path, chords_30s):
    """A worker process killed mid-build (as the OOM killer would): its files are
    computed again, each in a worker of its own, and the build completes."""
    import threading

    from musemo.data import scan_folder

    recordings = scan_folder(chords_30s)
    whole = FeatureCache(tmp_path / "whole", tiny_spec())
    expected = {
        p.name: p.read_bytes() for p in whole.build(recordings, progress=False).entries.values()
    }
    cache = FeatureCache(tmp_path / "killed", tiny_spec())
    killed = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            workers = pool_workers(os.getpid())
            if workers and cache.folder.is_dir() and entries(cache.folder):
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.001)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    report = cache.build(recordings, workers=2, progress=False)
    killer.join()
    assert killed, "the build ended before a worker could be killed"
    assert report.failed == [] and report.computed == len(recordings)
    assert {p.name: p.read_bytes() for p in report.entries.values()} == expected


def test_a_file_that_kills_its_worker_is_named_and_the_rest_go_through(tmp_path, chords_30s):
    """Whichever worker opens one file dies (as when decoding it runs out of memory): that
    file is listed as failed, every other file is computed."""
    import threading

    from musemo.data import Recording, scan_folder

    poison = tmp_path / "sad" / "long.wav"
    poison.parent.mkdir()
    sf_write_seconds(poison, 1800)  # long enough to be caught holding it open
    recordings = [*scan_folder(chords_30s)[:8], Recording(poison, "sad", "long")]
    cache = FeatureCache(tmp_path / "cache", tiny_spec())
    stop, kills = threading.Event(), set()

    def kill_whoever_opens_it() -> None:
        while not stop.is_set():
            for pid in pool_workers(os.getpid()):
                try:
                    fds = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
                except OSError:
                    continue
                if str(poison) in fds:
                    os.kill(pid, signal.SIGKILL)
                    kills.add(pid)
            time.sleep(0.001)

    killer = threading.Thread(target=kill_whoever_opens_it)
    killer.start()
    try:
        report = cache.build(recordings, workers=2, progress=False)
    finally:
        stop.set()
        killer.join()
    assert len(kills) == 2  # a worker of the pool, then the one it was retried in
    assert [(p, why) for p, why in report.failed] == [
        (poison, f"{poison}: the process working on it died (killed, or out of memory)")
    ]
    assert report.computed == 8 and set(report.entries) == {r.path for r in recordings[:8]}


def sf_write_seconds(path: Path, seconds: int) -> None:
    import soundfile as sf

    t = np.arange(seconds * 16000) / 16000
    sf.write(path, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, "PCM_16")


def pool_workers(parent: int) -> list[int]:
    """The multiprocessing workers ``parent`` spawned (not its resource tracker)."""
    found = []
    for pid, ppid, _ in live_processes():
        try:
            if ppid == parent and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_model(tmp_path, chords_30s):
    torch = pytest.importorskip("torch")
    from musemo.training import load_checkpoint

    args = ["train", "--data", str(chords_30s), "--cache", str(tmp_path / "cache"), "--quiet"]
    args += ["--model", "squeezenet1_0", "--epochs", "6", "--batch-size", "32", "--workers", "1"]
    args += ["--lr", "0.003", *TINY_SPEC_ARGS]
    run([*args, "--out", str(tmp_path / "whole")], tmp_path / "whole.log")
    reference = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    out = tmp_path / "killed"
    last = out / "last.pt"
    rng = np.random.default_rng(0)
    killed_at = []
    for _ in range(5):
        seen = last.stat().st_mtime_ns if last.is_file() else None
        epoch = reference["history"][0]["train_seconds"]
        code = run_killed(
            [*args, "--out", str(out), "--resume"],
            tmp_path / "killed.log",
            # after the next checkpoint, somewhere in the epoch that follows
            when=lambda seen=seen: last.is_file() and last.stat().st_mtime_ns != seen,
            delay=rng.uniform(0, 1.5 * epoch),
        )
        if code is not None:
            assert code == 0
            break
        for name in ("last.pt", "best.pt"):  # whatever is on disk loads
            if (out / name).is_file():
                load_checkpoint(out / name)
        killed_at.append(load_checkpoint(last)["epoch"])
        if (out / "metrics.json").is_file():
            json.loads((out / "metrics.json").read_text())
    else:
        run([*args, "--out", str(out), "--resume"], tmp_path / "killed.log")
    assert len(killed_at) >= 3, killed_at
    assert not leftovers(out)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["subclip"] == reference["final"]["subclip"]
    assert metrics["final"]["recording"] == reference["final"]["recording"]
    for a, b in zip(metrics["history"], reference["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    a = load_checkpoint(last)["model_state"]
    b = load_checkpoint(tmp_path / "whole" / "last.pt")["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    print(f"training: killed after epochs {killed_at}, resumed to the same model")


@pytest.mark.slow
def test_killed_cross_validation_resumes_to_the_same_scores(tmp_path, chord_recordings):
    pytest.importorskip("torch")
    from musemo.training import load_checkpoint

    folder, cache = chord_recordings
    args = ["train", "--data", str(folder), "--cache", str(cache), "--quiet", "--folds", "2"]
    args += ["--model", "squeezenet1_0", "--epochs", "3", "--workers", "1", *TINY_SPEC_ARGS]
    t0 = time.monotonic()
    run([*args, "--out", str(tmp_path / "whole")], tmp_path / "whole.log")
    seconds = time.monotonic() - t0
    reference = json.loads((tmp_path / "whole" / "crossval.json").read_text())

    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    for fold in (0, 1):  # once during each fold, after its first checkpoint
        last = out / "squeezenet1_0" / f"fold{fold}" / "last.pt"
        code = run_killed(
            [*args, "--out", str(out), "--resume"],
            tmp_path / "killed.log",
            when=last.is_file,
            delay=rng.uniform(0, 0.1 * seconds),
        )
        assert code in (None, 0)
        kills += code is None
    assert kills >= 1
    first = out / "squeezenet1_0" / "fold0" / "last.pt"
    assert load_checkpoint(first)["epoch"] == 3  # fold 0 was done before fold 1's kill
    done_at = first.stat().st_mtime_ns
    run([*args, "--out", str(out), "--resume"], tmp_path / "killed.log")
    assert first.stat().st_mtime_ns == done_at  # scored again, not trained again
    summary = json.loads((out / "crossval.json").read_text())
    assert summary == reference
    print(f"cross-validation: {kills} kills, same per-fold scores")


@pytest.mark.slow
def test_killed_export_leaves_whole_files(tmp_path, squeezenet_checkpoint, chord_recordings):
    pytest.importorskip("onnxruntime")
    from musemo.edge import Classifier, open_model

    folder, cache = chord_recordings
    args = ["export", str(squeezenet_checkpoint), "--format", "onnx", "--int8"]
    args += ["--calib", str(folder), "--cache", str(cache), "--workers", "1", "--force"]
    t0 = time.monotonic()
    run([*args, "--out", str(tmp_path / "whole")], tmp_path / "whole.log")
    seconds = time.monotonic() - t0
    reference = json.loads(next((tmp_path / "whole").glob("*.export.json")).read_text())

    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(4):
        code = run_killed(
            [*args, "--out", str(out)],
            tmp_path / "killed.log",
            when=lambda: True,
            delay=rng.uniform(0.3, 1.0) * seconds,
        )
        assert code in (None, 0)
        kills += code is None
        if not out.is_dir():
            continue
        reports = list(out.glob("*.export.json"))
        for model in out.glob("*.onnx"):  # any model file in place is whole and usable
            Classifier(model)
        for report in reports:  # a report describes files that are all there
            for entry in json.loads(report.read_text())["files"].values():
                assert (out / entry["file"]).is_file()
    assert kills >= 2
    run([*args, "--out", str(out)], tmp_path / "killed.log")
    assert not leftovers(out)
    assert remove_leftovers(out) == 0
    report = json.loads(next(out.glob("*.export.json")).read_text())
    for key, entry in reference["files"].items():
        assert report["files"][key]["scores"] == entry["scores"], key
    probe = np.random.default_rng(1).standard_normal((4, 1, *tiny_spec().clip_shape), np.float32)
    for model in (tmp_path / "whole").glob("*.onnx"):
        np.testing.assert_array_equal(
            open_model(out / model.name).logits(probe), open_model(model).logits(probe)
        )
    print(f"export: {kills} kills")


# ------------------------------------------------------------------ full or read-only disks


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_device_is_an_output_error_naming_the_path():
    from musemo import OutputError
    from musemo._atomic import writing

    with pytest.raises(OutputError, match="^cannot write out/x.npy: No space left on device$"):
        with writing("out/x.npy"), open("/dev/full", "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


needs_namespaces = pytest.mark.skipif(
    not _namespaces_work(),
    reason="needs unshare -rm (user and mount namespaces) to mount a small or read-only disk",
)


def on_small_or_read_only_disk(
    folder: Path, args: list[str], *, size_kb: int | None = None
) -> subprocess.CompletedProcess:
    """Run ``musemo args`` with ``folder`` on a ``size_kb`` disk (holding what ``folder``
    held) or, without ``size_kb``, ``folder`` read-only; the small disk's contents are
    copied back to ``folder`` afterwards. Mounts are private to the run (a
    user and mount namespace), so no privileges are needed."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = shlex.join(map(str, [*MUSEMO, *args]))
    if size_kb is None:
        script = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}\n{cmd}"
    else:
        before, after = folder.with_name("before"), folder.with_name("after")
        shutil.copytree(folder, before)
        after.mkdir()
        script = (
            f"mount -t tmpfs -o size={size_kb}k tmpfs {folder}\ncp -a {before}/. {folder}/\n"
            f"rc=0; {cmd} || rc=$?\ncp -a {folder}/. {after}/\nexit $rc"
        )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True, timeout=600
    )
    if size_kb is not None:
        shutil.rmtree(folder)
        after.rename(folder)
    return done


@pytest.mark.slow
@needs_namespaces
def test_cache_on_a_full_disk(tmp_path, chords_30s):
    args = ["cache", "--data", str(chords_30s), "--workers", "2", "--quiet", *TINY_SPEC_ARGS]
    run([*args, "--cache", str(tmp_path / "whole")], tmp_path / "whole.log")
    expected = {
        p.name: p.read_bytes()
        for p in entries(FeatureCache(tmp_path / "whole", tiny_spec()).folder)
    }
    entry_kb = len(next(iter(expected.values()))) // 1024

    small = tmp_path / "small"
    done = on_small_or_read_only_disk(small, [*args, "--cache", str(small)], size_kb=3 * entry_kb)
    assert done.returncode == 2, done.stderr
    assert "error: cannot write" in done.stderr and "No space left on device" in done.stderr
    assert str(small) in done.stderr and "Traceback" not in done.stderr
    folder = FeatureCache(small, tiny_spec()).folder
    written = {p.name: p.read_bytes() for p in entries(folder)}
    assert 1 <= len(written) < len(expected)
    assert all(expected[name] == data for name, data in written.items())  # whole and right
    assert not leftovers(folder)


@pytest.mark.slow
@needs_namespaces
def test_read_only_cache(tmp_path, chords_30s):
    args = ["cache", "--data", str(chords_30s), "--workers", "1", *TINY_SPEC_ARGS]
    cache = tmp_path / "cache"
    run([*args, "--cache", str(cache)], tmp_path / "whole.log")
    done = on_small_or_read_only_disk(cache, [*args, "--cache", str(cache)])
    assert done.returncode == 0, done.stderr  # complete: read, nothing written
    assert "40 from the cache" in done.stdout

    other = tmp_path / "empty"
    done = on_small_or_read_only_disk(other, [*args, "--cache", str(other)])
    assert done.returncode == 2
    assert "error: cannot write" in done.stderr and "Read-only file system" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@needs_namespaces
def test_training_on_a_full_disk_keeps_the_last_checkpoint(tmp_path, chords_30s):
    pytest.importorskip("torch")
    from musemo.training import load_checkpoint

    args = ["train", "--data", str(chords_30s), "--cache", str(tmp_path / "cache"), "--quiet"]
    args += ["--model", "squeezenet1_0", "--epochs", "2", "--workers", "1", *TINY_SPEC_ARGS]
    run([*args, "--out", str(tmp_path / "whole")], tmp_path / "whole.log")
    checkpoint_kb = (tmp_path / "whole" / "last.pt").stat().st_size // 1024

    out = tmp_path / "small"
    # room for epoch 1's best.pt and last.pt, not for the temporary file of epoch 2's
    done = on_small_or_read_only_disk(
        out, [*args, "--out", str(out)], size_kb=int(2.5 * checkpoint_kb)
    )
    assert done.returncode == 2, done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    assert f"cannot write {out}" in done.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    assert not leftovers(out)


@pytest.mark.slow
@needs_namespaces
@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_export_to_a_full_or_read_only_disk_keeps_the_earlier_export(
    tmp_path, squeezenet_checkpoint, chord_recordings, disk
):
    pytest.importorskip("onnxruntime")
    folder, cache = chord_recordings
    args = [
        "export", str(squeezenet_checkpoint), "--format", "onnx", "--int8", "--calib",
        str(folder), "--cache", str(cache), "--workers", "1", "--force",
    ]  # fmt: skip
    out = tmp_path / "out"
    run([*args, "--out", str(out)], tmp_path / "first.log")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    size = sum(len(b) for b in before.values()) // 1024 + 64
    done = on_small_or_read_only_disk(
        out,
        [*args, "--out", str(out)],
        size_kb=size if disk == "full" else None,
    )
    assert done.returncode == 2, done.stderr
    assert f"error: cannot write {out}" in done.stderr and "Traceback" not in done.stderr
    why = "No space left on device" if disk == "full" else "Read-only file system"
    assert why in done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
@needs_namespaces
def test_a_catalog_on_a_full_disk_keeps_whole_rows(tmp_path, chords_30s):
    small = tmp_path / "small"
    table = small / "tags.jsonl"
    done = on_small_or_read_only_disk(small, ["infer", chords_30s, "--out", table], size_kb=8)
    assert done.returncode == 2, done.stderr
    assert f"error: cannot write {table}: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr
    lines = table.read_bytes().split(b"\n")
    assert lines[-1] == b"" and 10 <= len(lines) - 1 < 40  # whole rows only, some written
    rows = [json.loads(line) for line in lines[:-1]]
    assert all(r["label"] in ("happy", "sad") for r in rows)


@pytest.mark.slow
@needs_namespaces
def test_a_parquet_catalog_on_a_full_disk_keeps_whole_rows(tmp_path, chords_30s):
    pytest.importorskip("pyarrow")
    from musemo.edge.tables import ParquetTable

    small = tmp_path / "small"
    table = small / "tags.parquet"
    done = on_small_or_read_only_disk(small, ["infer", chords_30s, "--out", table], size_kb=8)
    assert done.returncode == 2, done.stderr
    assert f"error: cannot write {table}/" in done.stderr and "No space left" in done.stderr
    assert "Traceback" not in done.stderr
    rows = ParquetTable(table, ("happy", "sad")).rows()  # the journal rolled, on a roomy disk
    assert 10 <= len(rows) < 40 and all(r["label"] in ("happy", "sad") for r in rows)
    again = subprocess.run([*MUSEMO, "infer", chords_30s, "--out", table], capture_output=True)
    assert again.returncode == 0 and len(ParquetTable(table, ("happy", "sad")).rows()) == 40
