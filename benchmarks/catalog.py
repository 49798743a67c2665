#!/usr/bin/env python
"""Classifying a catalog: ``musemo infer FOLDER --out TABLE`` over N recordings (default
1,000: 10-60 s each, 16-bit WAV at 22.05, 44.1 and 48 kHz, as ``cache_scale.py`` writes
them) with the model that ships, with 1 and with 2 worker processes, and with
``--ray`` on a local Ray of 2 actors too.

Each run is timed whole (start-up included), its peak memory sampled every 20 ms as the
summed RSS of the command and every process it starts (and the largest single one);
the tables are checked to hold the same answer for every file.

    python benchmarks/catalog.py                      # 1,000 recordings (~3 GB of WAV)
    python benchmarks/catalog.py --n 100 --root /tmp/catalog
    python benchmarks/catalog.py --ray                # and 2 Ray actors (musemo[ray])

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

from cache_scale import cpu_model, finish, tree_rss, write_folder

RUNS = {"1 worker": ["--workers", "1"], "2 workers": ["--workers", "2"],
        "Ray, 2 actors": ["--ray", "--workers", "2"]}  # fmt: skip


def run_infer(folder: Path, table: Path, name: str) -> dict:
    """``musemo infer FOLDER --out TABLE`` as run ``name`` says: seconds, peak RSS of the
    command and everything it starts (Ray's processes too), its summary."""
    command = [sys.executable, "-m", "musemo.cli", "infer", str(folder), "--out", str(table),
               *RUNS[name]]  # fmt: skip
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
    return {"run": name, "seconds": seconds, "peak_rss_mb": peak["total"] / 1e6,
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
    p.add_argument("--ray", action="store_true", help="also classify on a local Ray")
    args = p.parse_args(argv)
    root = Path(args.root)
    t0 = time.perf_counter()
    hours = write_folder(root / "data", args.n)
    print(f"{args.n} recordings, {hours:.1f} h of audio ({time.perf_counter() - t0:.0f} s)")
    runs, tables = [], []
    for k, name in enumerate(list(RUNS)[: 3 if args.ray else 2]):
        tables.append(root / f"out-{k}.jsonl")
        tables[-1].unlink(missing_ok=True)
        runs.append(run_infer(root / "data", tables[-1], name))
    same = all(answers(t) == answers(tables[0]) for t in tables[1:])
    print("\n| run | seconds | files/s | audio h/s | peak RSS MB (all) | largest MB |\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for r in runs:
        print(f"| {r['run']} | {r['seconds']:.1f} | {args.n / r['seconds']:.2f} | "
              f"{hours / r['seconds']:.3f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_rss_one_process_mb']:.0f} |")  # fmt: skip
    print(f"\nthe same answer for every file in every run: {same}")
    report = {"recordings": args.n, "hours": hours, "runs": runs, "same_answers": same,
              "machine": {"cpus": os.cpu_count(), "processor": cpu_model(),
                          "platform": platform.platform()}}  # fmt: skip
    finish(report, args.json, root, keep=args.keep)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
