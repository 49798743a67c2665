#!/usr/bin/env python
"""What ``musemo infer song.mp3`` costs: one whole file, end to end, with a model file
(default: the one that ships), on one thread.

End to end is ``Classifier.predict_file``: decode, mix to mono, resample, the log-mel of
every window, every window through the model, the mean, the calibrated result. Its
parts are timed apart on the same file (decode + resample: ``load_audio``; features and
inference: all windows at once), in turn, one call of each per round; medians of
``--repeats`` rounds after two untimed ones. Then, in a fresh process: the peak resident
memory of ``musemo infer FILE`` (the command line as a user runs it) and whether it
imported torch.

    python benchmarks/infer_file.py                    # the built-in 30 s phrase as MP3
    python benchmarks/infer_file.py song.mp3 --model RUN/musicnn.int8.onnx

Prints a Markdown table and writes ``benchmarks/results/infer_file.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import soundfile as sf

from musemo._atomic import write_text
from musemo.audio import load_audio
from musemo.data.synthetic import demo_recording
from musemo.edge import Classifier
from musemo.features.clips import subclips
from musemo.timing import wall_ms_each

GOALS = {"end_to_end_ms": 150.0, "peak_rss_mb": 120.0}  # musicnn int8, 30 s, one thread
RSS_PROBE = r"""
import resource, sys
from musemo.cli import main
code = main(["infer", *sys.argv[1:]])
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
try:  # Linux: this process's own peak (ru_maxrss keeps the parent's across exec)
    peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak rss kb:", peak, file=sys.stderr)
sys.exit(code)
"""


def demo_mp3(folder: Path) -> Path:
    """The built-in 30 s phrase as a 44.1 kHz MP3: a file like a user's."""
    path = folder / "phrase.mp3"
    sf.write(path, demo_recording(sr=44100, seconds=30.0), 44100, format="MP3")
    return path


def measure(clf: Classifier, path: Path, repeats: int) -> dict:
    """End to end and its parts, medians (ms) of ``repeats`` calls."""
    s = clf.spec
    y, _ = load_audio(path, sr=s.sample_rate)
    windows = subclips(y, s)
    mels = np.stack(clf.extractor.compute_batch(list(windows)))
    x = ((mels - s.input_mean) / s.input_std)[:, None].astype(np.float32)
    row = wall_ms_each(
        {
            "decode_resample_ms": lambda: load_audio(path, sr=s.sample_rate),
            "features_ms": lambda: clf.extractor.compute_batch(list(windows)),
            "inference_ms": lambda: clf.backend.logits(x),
            "end_to_end_ms": lambda: clf.predict_file(path),
        },
        repeats=repeats,
        warmup=2,
    )
    result = clf.predict_file(path)
    return {**row, "windows": len(windows), "seconds": len(y) / s.sample_rate,
            "label": result.label, "probabilities": result.probabilities}  # fmt: skip


def peak_memory(model: Path | None, path: Path) -> dict:
    """``musemo infer [MODEL] FILE`` in a fresh process: peak RSS, torch imported."""
    args = [sys.executable, "-c", RSS_PROBE, *([str(model)] if model else []), str(path)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    lines = dict(line.split(": ", 1) for line in done.stderr.splitlines() if ": " in line)
    return {
        "peak_rss_mb": int(lines["peak rss kb"]) / 1024,
        "torch_imported": lines["torch imported"] == "True",
        "output": done.stdout.strip(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("audio", nargs="?", type=Path, help="an audio file (default: the phrase)")
    p.add_argument("--model", type=Path, help="a model file (default: the shipped one)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/infer_file.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        audio = args.audio or demo_mp3(Path(tmp))
        clf = Classifier(args.model, threads=1)
        row = {"model": clf.backend.path.name, "runtime": clf.backend.name,
               "file": audio.name if args.audio else "built-in 30 s phrase (MP3)",
               "cpu": platform.processor() or platform.machine(),
               **measure(clf, audio, args.repeats), **peak_memory(args.model, audio)}  # fmt: skip
    e, parts = row["end_to_end_ms"]["median"], ("decode_resample_ms", "features_ms", "inference_ms")
    print(f"| {row['model']} on {row['file']} ({row['seconds']:.1f} s, {row['windows']} windows) "
          f"| ms, median of {args.repeats} |\n|---|---|")  # fmt: skip
    for key in (*parts, "end_to_end_ms"):
        print(f"| {key.removesuffix('_ms').replace('_', ' ')} | {row[key]['median']:.1f} |")
    print(f"| peak RSS of `musemo infer` (MB) | {row['peak_rss_mb']:.0f} |")
    met = e <= GOALS["end_to_end_ms"] and row["peak_rss_mb"] <= GOALS["peak_rss_mb"]
    print(f"\ngoals (end to end <= {GOALS['end_to_end_ms']:g} ms, peak RSS <= "
          f"{GOALS['peak_rss_mb']:g} MB, no torch): "
          f"{'met' if met and not row['torch_imported'] else 'NOT met'}")  # fmt: skip
    write_text(args.json, json.dumps(row, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
