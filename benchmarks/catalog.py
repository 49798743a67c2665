#!/usr/bin/env python
"""Classifying a catalog: ``musemo infer FOLDER --out TABLE`` over N recordings (default
1,000: 10-60 s each, 16-bit WAV at 22.05, 44.1 and 48 kHz, as ``cache_scale.py`` writes
them) with the model that ships, with 1 and with 2 worker processes.

Each run is timed whole (start-up included), its peak memory sampled every 20 ms as the
summed RSS of the command and its workers (and the largest single process); the two
tables are checked to hold the same answer for every file.

    python benchmarks/catalog.py                      # 1,000 recordings (~3 GB of WAV)
    python benchmarks/catalog.py --n 100 --root /tmp/catalog

Writes ``benchmarks/results/catalog.json`` (or ``--json``) atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from cache_scale import finish, tree_rss, write_folder


def run_infer(folder: Path, table: Path, workers: int) -> dict:
    """``musemo infer FOLDER --out TABLE --workers W``: seconds, peak RSS, its summary."""
    command = [sys.executable, "-m", "musemo.cli", "infer", str(folder), "--out", str(table),
               "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak, stop = {"total": 0, "largest": 0}, threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total, largest = tree_rss(proc.pid)
            peak["total"], peak["largest"] = (
                max(peak["total"], total),
                max(peak["largest"], largest),
            )
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    out = proc.communicate()[0]
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"musemo infer failed ({proc.returncode}): {out}")
    return {"workers": workers, "seconds": seconds, "peak_rss_mb": peak["total"] / 1e6,
            "peak_rss_one_process_mb": peak["largest"] / 1e6,
            "summary": out.strip().splitlines()[-1]}  # fmt: skip


def answers(table: Path) -> dict[str, tuple]:
    rows = (json.loads(line) for line in table.read_text().splitlines())
    return {r["path"]: (r["label"], round(r["p_happy"], 5)) for r in rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="recordings (default 1000)")
    p.add_argument("--root", default="/tmp/musemo-catalog", help="where data goes")
    p.add_argument("--json", default="benchmarks/results/catalog.json")
    p.add_argument("--keep", action="store_true", help="keep the recordings and tables")
    args = p.parse_args(argv)
    root = Path(args.root)
    t0 = time.perf_counter()
    hours = write_folder(root / "data", args.n)
    print(f"{args.n} recordings, {hours:.1f} h of audio ({time.perf_counter() - t0:.0f} s)")
    runs = []
    for workers in (1, 2):
        table = root / f"out-{workers}.jsonl"
        table.unlink(missing_ok=True)
        runs.append(run_infer(root / "data", table, workers))
    same = answers(root / "out-1.jsonl") == answers(root / "out-2.jsonl")
    print("\n| workers | seconds | files/s | audio h/s | peak RSS MB (all) | largest MB |\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for r in runs:
        print(f"| {r['workers']} | {r['seconds']:.1f} | {args.n / r['seconds']:.2f} | "
              f"{hours / r['seconds']:.3f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_rss_one_process_mb']:.0f} |")  # fmt: skip
    print(f"\nthe same answer for every file with 1 and 2 workers: {same}")
    report = {"recordings": args.n, "hours": hours, "runs": runs, "same_answers": same,
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                          "platform": platform.platform()}}  # fmt: skip
    finish(report, args.json, root, keep=args.keep)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
