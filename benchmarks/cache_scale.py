#!/usr/bin/env python
"""Feature caching of a large folder: wall time, peak memory, and resuming after a kill.

Writes N labelled recordings (default 1,000: 10-60 s each, at 22.05, 44.1 and 48 kHz,
16-bit WAV), then runs ``musemo cache`` on them at the paper's settings (44.1 kHz,
n_fft 2048, hop 512, 128 mels, 5 s sub-clips) three times:

1. interrupted: SIGKILLed (with its workers) once half the entries are on disk;
2. resumed: the same command again, which computes only what is missing;
3. cached: once more, with everything on disk (hashing and reading only).

Peak memory is sampled every 20 ms as the summed RSS of the command and its worker
processes (and the largest single process). A whole uninterrupted run is timed too,
in a cache of its own, and the resumed cache is checked to equal it byte for byte.

    python benchmarks/cache_scale.py                      # 1,000 recordings (~3 GB of WAV)
    python benchmarks/cache_scale.py --n 100 --workers 2 --root /tmp/scale

Writes ``benchmarks/results/cache_scale.json`` (or ``--json``) atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musemo._atomic import write_text
from musemo.features import FeatureSpec

RATES = (22050, 44100, 48000)


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_folder(root: Path, n: int, seed: int = 0) -> float:
    """``root/<happy|sad>/<k>.wav``: chords with noise, 10-60 s. Returns hours of audio."""
    seconds = 0.0
    for k in range(n):
        rng = np.random.default_rng([seed, k])  # each file its own: a rerun skips written ones
        label = ("happy", "sad")[k % 2]
        path = root / label / f"{k:04d}.wav"
        sr, length = int(rng.choice(RATES)), float(rng.uniform(10, 60))
        seconds += length
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(sr * length)) / sr
        third = 1.26 if label == "happy" else 1.19
        f0 = rng.uniform(110, 440)
        y = sum(0.2 * np.sin(2 * np.pi * f0 * r * t) for r in (1.0, third, 1.5))
        y = y + 0.01 * rng.standard_normal(len(t))
        sf.write(path, y.astype(np.float32), sr, subtype="PCM_16")
    return seconds / 3600


def tree_rss(root_pid: int) -> tuple[int, int]:
    """(summed, largest) RSS in bytes of ``root_pid`` and its descendants."""
    parent, rss = {}, {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid = int(status.parent.name)
        parent[pid] = int(fields["PPid"])
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    tree = {root_pid}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    sizes = [rss.get(pid, 0) for pid in tree]
    return sum(sizes), max(sizes)


def run_cache(args: list[str], *, kill_at: int | None = None, folder: Path) -> dict:
    """Run ``musemo cache``; with ``kill_at``, SIGKILL it once that many entries exist."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "musemo.cli", "cache", *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    peak = {"total": 0, "largest": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total, largest = tree_rss(proc.pid)
            peak["total"] = max(peak["total"], total)
            peak["largest"] = max(peak["largest"], largest)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    killed = False
    while proc.poll() is None:
        if kill_at is not None and folder.is_dir():
            if sum(1 for p in folder.glob("[!.]*.npy")) >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.01)
    out = proc.communicate()[0]
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if not killed and proc.returncode != 0:
        raise SystemExit(f"musemo cache failed ({proc.returncode})")
    return {
        "seconds": seconds,
        "killed": killed,
        "peak_rss_mb": peak["total"] / 1e6,
        "peak_rss_one_process_mb": peak["largest"] / 1e6,
        "summary": out.strip().splitlines()[-1] if out.strip() else "",
        "entries_after": sum(1 for p in folder.glob("[!.]*.npy")),
    }


def finish(report: dict, json_path: str, root: Path, *, keep: bool) -> None:
    """Write ``report`` atomically; remove the data under ``root`` unless ``keep``."""
    write_text(json_path, json.dumps(report, indent=2) + "\n")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="recordings (default 1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default="/tmp/musemo-cache-scale", help="where data goes")
    parser.add_argument("--json", default="benchmarks/results/cache_scale.json")
    parser.add_argument("--keep", action="store_true", help="keep the recordings and caches")
    args = parser.parse_args(argv)

    root = Path(args.root)
    data = root / "data"
    t0 = time.perf_counter()
    hours = write_folder(data, args.n)
    print(f"{args.n} recordings, {hours:.1f} h of audio ({time.perf_counter() - t0:.0f} s)")
    spec = FeatureSpec()  # the paper's settings
    common = ["--data", str(data), "--workers", str(args.workers)]

    results = {}
    for name in ("whole", "killed"):
        shutil.rmtree(root / name, ignore_errors=True)
    whole_folder = root / "whole" / spec.feature_key()
    results["uninterrupted"] = run_cache(
        [*common, "--cache", str(root / "whole")], folder=whole_folder
    )
    folder = root / "killed" / spec.feature_key()
    cmd = [*common, "--cache", str(root / "killed")]
    results["interrupted"] = run_cache(cmd, kill_at=args.n // 2, folder=folder)
    results["resumed"] = run_cache(cmd, folder=folder)
    results["cached"] = run_cache(cmd, folder=folder)

    same = sorted(p.name for p in folder.glob("[!.]*.npy")) == sorted(
        p.name for p in whole_folder.glob("[!.]*.npy")
    ) and all(
        (whole_folder / p.name).read_bytes() == p.read_bytes() for p in folder.glob("[!.]*.npy")
    )
    print(f"\n{'run':<14} {'seconds':>8} {'entries':>8} {'peak RSS MB':>12} {'largest MB':>11}")
    for name, r in results.items():
        print(
            f"{name:<14} {r['seconds']:8.1f} {r['entries_after']:8d} "
            f"{r['peak_rss_mb']:12.0f} {r['peak_rss_one_process_mb']:11.0f}"
        )
    print(f"\nresumed cache equals the uninterrupted one: {same}")
    for name in ("uninterrupted", "resumed", "cached"):
        print(f"{name}: {results[name]['summary']}")
    report = {
        "recordings": args.n,
        "hours": hours,
        "workers": args.workers,
        "spec": spec.to_dict(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": results,
        "resumed_equals_uninterrupted": same,
    }
    finish(report, args.json, root, keep=args.keep)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
