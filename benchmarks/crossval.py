#!/usr/bin/env python
"""Grouped k-fold cross-validation of several models and settings, many runs at once.

Evidence for accuracy claims, made where the audio is not: ``pack`` turns a labelled
data set into one compressed file of log-mel sub-clips (8 bits per value, each
sub-clip relative to its own maximum over the spec's ``db_top`` range: at most
0.16 dB off; loudness-normalised features are the same codes under another
maximum, since a level change shifts a recording's dB values); ``run``
cross-validates models on it, with the baseline on the same folds, running
(variant, model, fold) trainings in parallel processes (one GPU is shared well
by many small CNN runs).

    python benchmarks/crossval.py pack /tmp/emopia_sitar /tmp/emopia.npz \
        --sr 22050 --n-mels 64 --loudness -20
    python benchmarks/crossval.py run /tmp/emopia.npz --models squeezenet1_0 \
        --epochs 30 --jobs 12 --out runs/cv

``run`` writes ``OUT/crossval.md`` and ``OUT/crossval.json`` (mean and std over
folds per variant and model) and one training run folder per job.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from musemo._atomic import atomic_path, write_text
from musemo.data import Recording, SubclipData, kfold_splits, load_dataset
from musemo.features import FeatureSpec

VARIANTS = {  # name: (features in the pack, split mode)
    "grouped": ("raw", "grouped"),
    "grouped-loudness": ("loudness", "grouped"),
    "random": ("raw", "random"),
}


# ----------------------------------------------------------------------------- pack


def quantise(x: np.ndarray, top_db: float) -> tuple[np.ndarray, float]:
    top = float(x.max())
    q = np.rint((top - x) * (255.0 / top_db))
    return np.clip(q, 0, 255).astype(np.uint8), top


def pack(args: argparse.Namespace) -> int:
    spec = FeatureSpec(sample_rate=args.sr, n_mels=args.n_mels)
    sets = {"raw": spec}
    if args.loudness is not None:
        sets["loudness"] = dataclasses.replace(spec, loudness_dbfs=args.loudness)
    arrays: dict[str, np.ndarray] = {}
    for name, s in sets.items():
        data, report = load_dataset(args.src, s, cache=args.cache, workers=args.workers)
        if report.failed:
            print(f"{name}: skipped {len(report.failed)} unreadable files", file=sys.stderr)
        q = np.empty((len(data),) + data.features[0].shape[1:], np.uint8)
        top = np.empty(len(data), np.float32)
        for i in range(len(data)):
            q[i], top[i] = quantise(np.asarray(data.subclip(i)), s.db_top)
        arrays[f"{name}_top"] = top
        if name == "raw":
            arrays["q"] = q
            arrays["index"] = data.index
            arrays["labels"] = data.labels
            arrays["label_names"] = np.array(data.label_names)
            arrays["names"] = np.array([r.path.name for r in data.recordings])
            arrays["rec_labels"] = np.array([r.label for r in data.recordings])
            arrays["groups"] = np.array([r.group for r in data.recordings])
        elif not np.array_equal(data.index, arrays["index"]):
            raise SystemExit(f"{name}: the sub-clips differ from the raw set's")
        else:  # a level change shifts a recording's dB values: the raw codes serve both
            steps = np.abs(q.astype(np.int16) - arrays["q"])
            if steps.max() > 1 or (steps > 0).mean() > 1e-4:
                raise SystemExit(f"{name}: the features are not a shift of the raw ones")
    arrays["spec"] = np.array(spec.to_json())
    if args.loudness is not None:
        arrays["loudness_dbfs"] = np.array(args.loudness)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {len(arrays['labels'])} sub-clips, {size / 2**20:.1f} MiB")
    return 0


def unpack(path: str | os.PathLike, features: str) -> tuple[SubclipData, FeatureSpec]:
    """The pack's sub-clips (``"raw"`` or ``"loudness"``) as float32 ``SubclipData``."""
    z = np.load(path)
    spec = FeatureSpec.from_json(str(z["spec"]))
    if features == "loudness":
        spec = dataclasses.replace(spec, loudness_dbfs=float(z["loudness_dbfs"]))
    q, top = z["q"], z[f"{features}_top"]
    x = top[:, None, None] - q.astype(np.float32) * np.float32(spec.db_top / 255.0)
    index = z["index"]
    recordings = [
        Recording(path=Path(n), label=str(lab), group=str(g))
        for n, lab, g in zip(z["names"], z["rec_labels"], z["groups"])
    ]
    per_rec = [x[index[:, 0] == r] for r in range(len(recordings))]
    names = tuple(str(n) for n in z["label_names"])
    return SubclipData(recordings, per_rec, index, z["labels"], names), spec


# ----------------------------------------------------------------------------- run

_STATE: dict = {}


def _init(pack_path: str, threads: int) -> None:
    import torch

    if sys.platform == "linux":  # die with the parent (a timeout must not leave runs behind)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    torch.set_num_threads(threads)
    _STATE["pack"] = pack_path


def _data(features: str):
    if features not in _STATE:
        _STATE[features] = unpack(_STATE["pack"], features)
    return _STATE[features]


def _job(variant: str, model: str, fold: int, k: int, config: dict, out: str) -> dict:
    from musemo.training import TrainConfig, fit, fit_baseline

    features, mode = VARIANTS[variant]
    data, spec = _data(features)
    train, val = kfold_splits(data, k=k, mode=mode, seed=0)[fold]
    t0 = time.perf_counter()
    if model == "baseline":
        final = fit_baseline(data, train, val)
        speed = None
    else:
        cfg = TrainConfig(model=model, **config)
        metrics = fit(data, train, val, spec, cfg, out, split_mode=mode, progress=False)
        final = metrics["final"]
        speed = float(np.median([h["train_subclips_per_s"] for h in metrics["history"]]))
    return {
        "variant": variant,
        "model": model,
        "fold": fold,
        "subclip_accuracy": final["subclip"]["accuracy"],
        "recording_accuracy": final["recording"]["accuracy"],
        "train_subclips_per_s": speed,
        "seconds": time.perf_counter() - t0,
    }


def summarise(results: list[dict], k: int) -> tuple[dict, str]:
    table: dict = {}
    for r in results:
        table.setdefault(r["variant"], {}).setdefault(r["model"], []).append(r)
    summary = {}
    lines = [
        f"{k}-fold cross-validation: mean ± std over folds (last epoch of each run)\n",
        "| split | model | folds | sub-clip accuracy | recording accuracy | train sub-clips/s |",
        "|---|---|---|---|---|---|",
    ]
    for variant, models in table.items():
        for model, rows in models.items():
            rows.sort(key=lambda r: r["fold"])
            entry = {"folds": rows}
            cells = []
            for key in ("subclip_accuracy", "recording_accuracy"):
                v = np.array([r[key] for r in rows])
                entry[key] = {"mean": float(v.mean()), "std": float(v.std())}
                cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
            speeds = [r["train_subclips_per_s"] for r in rows if r["train_subclips_per_s"]]
            cells.append(f"{np.median(speeds):.0f}" if speeds else "—")
            summary.setdefault(variant, {})[model] = entry
            lines.append(f"| {variant} | {model} | {len(rows)} | " + " | ".join(cells) + " |")
    return summary, "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import multiprocessing

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "mixup": args.mixup,
        "shift": not args.no_shift,
        "augment": not args.no_augment,
        "device": args.device,
        "seed": args.seed,
    }
    jobs = [
        (variant, model, fold)
        for variant in args.variants
        for model in ["baseline", *args.models]
        for fold in (args.only_folds if args.only_folds is not None else range(args.folds))
    ]
    print(f"{len(jobs)} runs in {args.jobs} processes; settings {json.dumps(config)}", flush=True)
    results = []
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ProcessPoolExecutor(
        args.jobs, mp_context=context, initializer=_init, initargs=(args.pack, args.threads)
    ) as pool:
        futures = [
            pool.submit(_job, v, m, f, args.folds, config, str(out / v / m / f"fold{f}"))
            for v, m, f in jobs
        ]
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            print(
                f"{r['variant']:>16} {r['model']:>14} fold {r['fold']}: "
                f"sub-clips {r['subclip_accuracy']:.3f} recordings {r['recording_accuracy']:.3f} "
                f"({r['seconds']:.0f} s)",
                flush=True,
            )
            summary, table = summarise(results, args.folds)
            write_text(out / "crossval.json", json.dumps({"config": config, **summary}, indent=2))
            write_text(out / "crossval.md", table)
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="cache a labelled set's sub-clips into one file")
    p.add_argument("src", help="folder or manifest of labelled recordings")
    p.add_argument("out", help="output .npz")
    p.add_argument("--sr", type=int, default=44100)
    p.add_argument("--n-mels", type=int, default=128)
    p.add_argument("--loudness", type=float, help="also pack features at this RMS level (dBFS)")
    p.add_argument("--cache", default=".musemo-cache")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    r = sub.add_parser("run", help="cross-validate models on a pack")
    r.add_argument("pack")
    r.add_argument("--models", nargs="*", default=["squeezenet1_0"], help="none: baseline only")
    r.add_argument("--variants", nargs="+", default=["grouped"], choices=list(VARIANTS))
    r.add_argument("--folds", type=int, default=5)
    r.add_argument("--only-folds", type=int, nargs="+", metavar="I", help="run these folds only")
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--lr", type=float)
    r.add_argument("--mixup", type=float, default=0.0)
    r.add_argument("--no-shift", action="store_true")
    r.add_argument("--no-augment", action="store_true")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    r.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    r.add_argument("--out", default="runs/crossval")
    args = parser.parse_args(argv)
    return pack(args) if args.command == "pack" else run(args)


if __name__ == "__main__":
    sys.exit(main())
