#!/usr/bin/env python
"""End-to-end latency of the edge runtime: one window (5 s for the CNNs, musicnn's 2.976 s
patch), decoded audio in, label out, and the real-time factor (window length / time).

For every exported model in a folder (NAME.onnx, NAME.int8.onnx, NAME.tflite,
NAME.int8.tflite, from ``musemo-export --int8``) and each thread count, in one run:

- features: the C++ log-mel of the window (``Classifier.extractor``)
- inference: the model file in onnxruntime or LiteRT (``Classifier.backend``)
- end to end: ``Classifier.predict_array`` (checks, features, normalisation,
  inference, softmax, result)

beside the baseline a user would otherwise write: librosa's melspectrogram and
power_to_db, then the PyTorch model in eager fp32 (the checkpoint given with
``--checkpoint``, else the same architecture with random weights: the time is the
same). Median and 95th percentile of ``--repeats`` calls after warm-up.

``--memory`` adds, in fresh processes: the resident memory of the runtime with the
int8 SqueezeNet loaded, and its growth while an hour of audio streams through it
(fed as fast as it is classified).

    python benchmarks/latency.py EXPORT_DIR --checkpoint RUN/last.pt --memory
    python benchmarks/latency.py EXPORT_DIR --no-baseline        # on a Raspberry Pi

Prints a Markdown table; writes ``benchmarks/results/latency.json`` (``--json``) and
``latency.png`` (``--png``) atomically. Never quote numbers from an emulator.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

from musemo._atomic import atomic_path, write_text
from musemo.data.synthetic import demo_recording
from musemo.edge import Classifier
from musemo.timing import wall_ms

ARCHITECTURES = ("squeezenet1_0", "mobilenet_v2", "musicnn")
VARIANTS = (".onnx", ".int8.onnx", ".tflite", ".int8.tflite")
# Targets of the edge runtime, single thread, per 5 s window.
GOALS = {"e2e_int8_ms": {"squeezenet1_0": 3.5, "mobilenet_v2": 2.5}, "speedup": 10.0}
GOALS_REALTIME = {"musicnn": 50.0}  # int8, end to end, one thread
GOALS_MEMORY = {"rss_loaded_mb": 80.0, "rss_growth_mb": 5.0}
WARMUP = 10  # untimed calls before each timed series


def window_for(clf: Classifier) -> np.ndarray:
    """One window of the built-in recording at the model's sample rate."""
    s = clf.spec
    return demo_recording(sr=s.sample_rate, seconds=s.clip_seconds + 0.5)[: s.clip_samples]


def measure_runtime(path: Path, threads: int, repeats: int) -> dict:
    timed = functools.partial(wall_ms, repeats=repeats, warmup=WARMUP)
    clf = Classifier(path, threads=threads)
    y, sr, s = window_for(clf), clf.spec.sample_rate, clf.spec
    mel = clf.extractor.compute(y, threads=threads)
    x = ((mel - s.input_mean) / s.input_std)[None, None].astype(np.float32)
    return {
        "file": path.name,
        "architecture": clf.info.architecture,
        "precision": clf.info.precision,
        "runtime": clf.backend.name,
        "threads": threads,
        "input": list(x.shape),
        "window_s": s.clip_seconds,
        "label": clf.predict_array(y, sr).label,
        "features_ms": timed(lambda: clf.extractor.compute(y, threads=threads)),
        "inference_ms": timed(lambda: clf.backend.logits(x)),
        "end_to_end_ms": timed(lambda: clf.predict_array(y, sr)),
    }


def measure_baseline(path: Path, threads: int, repeats: int, checkpoints: dict) -> dict:
    """librosa features + PyTorch eager fp32, for the architecture of ``path``."""
    import librosa
    import torch

    from musemo.training import build_model, load_checkpoint, model_from_checkpoint

    timed = functools.partial(wall_ms, repeats=repeats, warmup=WARMUP)
    clf = Classifier(path)
    s, y = clf.spec, window_for(clf)
    arch = clf.info.architecture
    if arch in checkpoints:
        model, weights = model_from_checkpoint(load_checkpoint(checkpoints[arch])), "checkpoint"
    else:
        model, weights = build_model(arch, n_classes=len(clf.labels)), "random (timing only)"
    model.eval()
    torch.set_num_threads(threads)

    def features():
        S = librosa.feature.melspectrogram(
            y=y, sr=s.sample_rate, n_fft=s.n_fft, hop_length=s.hop_length, n_mels=s.n_mels
        )
        if s.log1p_scale is not None:
            return np.log10(1 + s.log1p_scale * S)
        return librosa.power_to_db(S, ref=s.db_ref, amin=s.db_amin, top_db=s.db_top)

    x = torch.from_numpy(((features() - s.input_mean) / s.input_std)[None, None].astype("f4"))

    def infer():
        with torch.inference_mode():
            return model(x)

    def end_to_end():
        S = features()
        xi = torch.from_numpy(((S - s.input_mean) / s.input_std)[None, None].astype("f4"))
        with torch.inference_mode():
            return clf.labels[int(torch.softmax(model(xi), 1).argmax())]

    return {
        "file": f"librosa + PyTorch eager ({arch})",
        "architecture": arch,
        "precision": "fp32",
        "runtime": "pytorch",
        "weights": weights,
        "threads": threads,
        "window_s": s.clip_seconds,
        "features_ms": timed(features),
        "inference_ms": timed(infer),
        "end_to_end_ms": timed(end_to_end),
    }


MEMORY_PROBE = r"""
import json, sys
import numpy as np
from musemo.edge import Classifier

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

clf = Classifier(sys.argv[1])
sr = clf.spec.sample_rate
clf.predict_array(np.sin(np.arange(sr * 6) * 0.05).astype(np.float32) * 0.3, sr)
loaded = rss_mb()
stream = clf.open_stream(sr=sr)
rng = np.random.default_rng(0)
chunk = int(0.5 * sr)
t = np.arange(chunk) / sr
seconds = float(sys.argv[2])
warm, windows = None, 0
for i in range(int(seconds / 0.5)):
    y = (0.2 * np.sin(2 * np.pi * (220 + i % 200) * t) + 0.01 * rng.standard_normal(chunk))
    windows += len(stream.feed(y.astype(np.float32)))
    if i == int(300 / 0.5):
        warm = rss_mb()
end = rss_mb()
print(json.dumps({"rss_loaded_mb": loaded, "rss_after_5_min_mb": warm, "rss_end_mb": end,
                  "rss_growth_mb": end - warm, "windows": windows, "seconds": seconds}))
"""


def measure_memory(path: Path, seconds: float) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["file"] = path.name
    result["wall_s"] = time.perf_counter() - t0
    return result


def goals(rows: list[dict], memory: dict | None) -> list[dict]:
    out = []
    for arch, limit in GOALS["e2e_int8_ms"].items():
        base = next(
            (
                r
                for r in rows
                if r["runtime"] == "pytorch" and r["architecture"] == arch and r["threads"] == 1
            ),
            None,
        )
        for r in rows:
            if r["architecture"] != arch or r["precision"] != "int8" or r["threads"] != 1:
                continue
            e2e = r["end_to_end_ms"]["median"]
            out.append(
                {
                    "goal": f"{r['file']} end to end (ms)",
                    "value": e2e,
                    "target": f"<= {limit}",
                    "met": e2e <= limit,
                }
            )
            if base is not None:
                speedup = base["end_to_end_ms"]["median"] / e2e
                out.append(
                    {
                        "goal": f"{r['file']} vs librosa + PyTorch",
                        "value": speedup,
                        "target": f">= {GOALS['speedup']}x",
                        "met": speedup >= GOALS["speedup"],
                    }
                )
    for r in rows:
        limit = GOALS_REALTIME.get(r["architecture"])
        if limit and r["precision"] == "int8" and r["threads"] == 1:
            rtf = realtime(r)
            out.append(
                {
                    "goal": f"{r['file']} real-time factor, end to end",
                    "value": rtf,
                    "target": f">= {limit}x",
                    "met": rtf >= limit,
                }
            )
    if memory is not None:
        for key, limit in GOALS_MEMORY.items():
            out.append(
                {
                    "goal": f"{memory['file']} {key}",
                    "value": memory[key],
                    "target": f"< {limit}",
                    "met": memory[key] < limit,
                }
            )
    return out


def realtime(row: dict) -> float:
    """Seconds of audio classified per second, end to end (median)."""
    return row["window_s"] / (row["end_to_end_ms"]["median"] / 1000)


def markdown(rows: list[dict], goal_rows: list[dict]) -> str:
    lines = [
        "| model | runtime | threads | window s | features ms | inference ms | "
        "end to end ms (median / p95) | real time x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, i, e = r["features_ms"], r["inference_ms"], r["end_to_end_ms"]
        lines.append(
            f"| {r['file']} | {r['runtime']} | {r['threads']} | {r['window_s']:g} | "
            f"{f['median']:.2f} | {i['median']:.2f} | {e['median']:.2f} / {e['p95']:.2f} | "
            f"{realtime(r):.0f} |"
        )
    if goal_rows:
        lines += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
        for g in goal_rows:
            met = "yes" if g["met"] else "NO"
            lines.append(f"| {g['goal']} | {g['value']:.2f} | {g['target']} | {met} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = [r for r in rows if r["threads"] == 1]
    names = [r["file"].replace("librosa + PyTorch eager", "librosa+torch") for r in single]
    feats = np.array([r["features_ms"]["median"] for r in single])
    infer = np.array([r["inference_ms"]["median"] for r in single])
    total = np.array([r["end_to_end_ms"]["median"] for r in single])
    rest = np.maximum(total - feats - infer, 0)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(single) + 1.5))
    ypos = np.arange(len(single))
    ax.barh(ypos, feats, label="features")
    ax.barh(ypos, infer, left=feats, label="inference")
    ax.barh(ypos, rest, left=feats + infer, label="the rest of end to end")
    for y, t in zip(ypos, total):
        ax.text(t, y, f" {t:.2f}", va="center", fontsize=8)
    ax.set_yticks(ypos, names)
    ax.invert_yaxis()
    ax.set_xlabel("ms per window (5 s; musicnn 2.976 s), one thread (medians of parts)")
    ax.legend(loc="upper right")
    ax.set_title("musemo edge runtime: where the milliseconds go")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", type=Path, help="folder of exported model files")
    p.add_argument("--checkpoint", nargs="*", default=[], help="checkpoints for the baseline")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--no-baseline", action="store_true", help="skip librosa + PyTorch")
    p.add_argument("--memory", action="store_true", help="measure RSS and an hour's stream")
    p.add_argument("--stream-seconds", type=float, default=3600.0)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/latency.json"))
    p.add_argument("--png", type=Path, default=Path("benchmarks/results/latency.png"))
    args = p.parse_args(argv)

    files = [args.models / f"{a}{v}" for a in ARCHITECTURES for v in VARIANTS]
    files = [f for f in files if f.is_file()]
    if not files:
        sys.exit(f"{args.models}: no exported {' / '.join(ARCHITECTURES)} model files")
    checkpoints = {}
    for ckpt in args.checkpoint:
        from musemo.training import load_checkpoint

        checkpoints[load_checkpoint(ckpt)["model"]] = ckpt
    baseline = not args.no_baseline
    if baseline:
        try:
            import librosa  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            print("librosa or torch missing: no baseline rows", file=sys.stderr)
            baseline = False

    rows = []
    for threads in args.threads:
        for f in files:
            print(f"{f.name}, {threads} thread(s) ...", file=sys.stderr)
            rows.append(measure_runtime(f, threads, args.repeats))
        if baseline:
            for arch in ARCHITECTURES:
                first = next((f for f in files if f.name.startswith(arch)), None)
                if first is not None:
                    print(f"baseline {arch}, {threads} thread(s) ...", file=sys.stderr)
                    rows.append(measure_baseline(first, threads, args.repeats, checkpoints))
    memory = None
    squeeze = args.models / "squeezenet1_0.int8.tflite"
    if args.memory and squeeze.is_file():
        print(f"memory: {squeeze.name}, {args.stream_seconds:g} s streamed ...", file=sys.stderr)
        memory = measure_memory(squeeze, args.stream_seconds)
    goal_rows = goals(rows, memory)
    print(markdown(rows, goal_rows))
    if memory is not None:
        print(
            f"\nmemory ({memory['file']}): {memory['rss_loaded_mb']:.1f} MB loaded; "
            f"{memory['seconds'] / 3600:g} h streamed ({memory['windows']} windows) in "
            f"{memory['wall_s']:.0f} s, RSS {memory['rss_after_5_min_mb']:.1f} -> "
            f"{memory['rss_end_mb']:.1f} MB"
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "window_seconds": 5.0,
        "rows": rows,
        "memory": memory,
        "goals": goal_rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.json, json.dumps(result, indent=2) + "\n")
    try:
        plot(rows, args.png)
        print(f"\nwritten: {args.json}, {args.png}", file=sys.stderr)
    except ImportError:
        print(f"\nwritten: {args.json} (no matplotlib: no chart)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
