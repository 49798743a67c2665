"""What an export measured: each file against PyTorch, its scores, size and latency;
the report as JSON and Markdown."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..features.spec import FeatureSpec
from ..metrics import evaluation, softmax
from ..timing import wall_ms_each
from .formats import FORMATS

DECISIVE = 0.55  # a PyTorch top-class probability at least this is a decisive input


def time_together(files: dict, runs: dict, x: np.ndarray) -> None:
    """One-thread latency of one format's files (``runs``: key -> inference), timed in
    turn (``wall_ms_each``), so the int8 speed-up compares calls made side by side."""
    timed = wall_ms_each({k: functools.partial(run, x) for k, run in runs.items()}, repeats=50)
    for k, t in timed.items():
        files[k]["latency_ms_1_thread"] = t


def measure(path: Path, run, probe, torch_logits, data) -> dict:
    """One written file against PyTorch on ``probe`` (logits, agreement, probabilities),
    its size, and its scores on ``data`` when there is any."""
    logits = run(probe)
    p_torch, p_file = softmax(torch_logits), softmax(logits)
    same = logits.argmax(1) == torch_logits.argmax(1)
    decisive = p_torch.max(1) >= DECISIVE
    dp = np.abs(p_file - p_torch).max(1)
    entry = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "max_abs_diff_vs_torch": float(np.abs(logits - torch_logits).max()),
        "agreement_with_torch": float(same.mean()),
        "agreement_decisive": float(same[decisive].mean()) if decisive.any() else None,
        "decisive_inputs": int(decisive.sum()),
        "probability_abs_diff": {
            "median": float(np.median(dp)),
            "p95": float(np.percentile(dp, 95)),
            "max": float(dp.max()),
        },
    }
    if data is not None and len(data.x):
        entry["scores"] = evaluation(
            softmax(logits), data.labels, data.recordings, data.label_names,
            aggregate=data.aggregate,
        )  # fmt: skip
    return entry


def build_report(state, files, data, timings, *, method, keep_float) -> dict:
    """The report of one export: each file's measurements and, per format with int8,
    what int8 changed against fp32 (speed, size, accuracy, agreement with PyTorch)."""
    report = {
        "checkpoint_model": state["model"],
        "labels": list(state["labels"]),
        "input_shape": [1, 1, *FeatureSpec.from_dict(state["spec"]).clip_shape],
        "calibration": None,
        "scored_on": data.source if data is not None else "the built-in demo recording",
        "files": files,
        "seconds": timings,
        "int8_vs_fp32": {},
    }
    for fmt in FORMATS:
        f32, i8 = files.get(f"{fmt}/fp32"), files.get(f"{fmt}/int8")
        if f32 is not None and i8 is not None:
            report["int8_vs_fp32"][fmt] = _int8_vs_fp32(f32, i8)
    if report["int8_vs_fp32"]:
        report["calibration"] = {
            "method": method,
            "subclips": len(data.calibration),
            "kept_float": "default" if keep_float is None else list(keep_float),
        }
    return report


def _int8_vs_fp32(f32: dict, i8: dict) -> dict:
    change = {
        "speedup": f32["latency_ms_1_thread"]["median"] / i8["latency_ms_1_thread"]["median"],
        "size_ratio": f32["bytes"] / i8["bytes"],
        "int8_mb": i8["bytes"] / 1e6,
        "agreement_with_torch": i8["agreement_with_torch"],
        "agreement_decisive": i8["agreement_decisive"],
    }
    if "scores" in f32:
        change["subclip_accuracy_change_pp"] = 100 * (
            i8["scores"]["subclip"]["accuracy"] - f32["scores"]["subclip"]["accuracy"]
        )
    return change


def report_markdown(report: dict) -> str:
    """The export report as Markdown: one row per file, then what int8 changed per format."""
    lines = [
        f"# Export of {report['checkpoint_model']} "
        f"(input {'x'.join(map(str, report['input_shape']))})\n",
        f"Scored on {report['scored_on']}.",
        *_calibration_lines(report),
        "",
        *_file_table(report),
        f"\nDecisive inputs: PyTorch's top class has probability >= {DECISIVE}; "
        "the others sit on the decision boundary, where any rounding can flip them.",
    ]
    for fmt, change in report["int8_vs_fp32"].items():
        lines += ["", f"## int8 against fp32, {fmt}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {_LABELS[k]} | {_cell(k, v)} |" for k, v in change.items()]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items())
    lines += ["", f"Steps: {seconds}."]
    return "\n".join(lines) + "\n"


def _calibration_lines(report: dict) -> list[str]:
    """How the int8 files were calibrated, and each method tried on held-out sub-clips."""
    c = report["calibration"]
    if not c:
        return []
    files = [f for f in report["files"].values() if "calibration" in f]
    chosen = "; ".join(
        f"{f['file']}: {f['calibration']['method']}, kept in float: "
        f"{', '.join(f['calibration']['kept_float']) or 'nothing'}"
        for f in files
    )
    lines = [
        f"int8: per-channel int8 weights, int8 activations calibrated on {c['subclips']} "
        f"training sub-clips (calibration {c['method']}, modules in float "
        f"{'by default' if c['kept_float'] == 'default' else 'as asked'}): {chosen}."
    ]
    for f in files:
        if f["calibration"]["candidates"]:
            tried = "; ".join(
                f"{m} agreement {t['agreement']:.3f}, mean probability diff "
                f"{t['probability_abs_diff_mean']:.4f}"
                for m, t in f["calibration"]["candidates"].items()
            )
            lines.append(
                f"{f['file']}: on {f['calibration']['checked_on']} held-out training "
                f"sub-clips, {tried}."
            )
    return lines


def _file_table(report: dict) -> list[str]:
    lines = [
        "| file | size MB | max abs diff vs PyTorch (logits) | probability diff p95 | "
        "agreement with PyTorch (all / decisive) | sub-clip acc. | recording acc. | "
        "latency ms (1 thread, median / p95) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in report["files"].values():
        scores = f.get("scores")
        acc = f"{scores['subclip']['accuracy']:.3f}" if scores else "—"
        rec = f"{scores['recording']['accuracy']:.3f}" if scores else "—"
        lat = f["latency_ms_1_thread"]
        decisive = "—" if f["agreement_decisive"] is None else f"{f['agreement_decisive']:.3f}"
        lines.append(
            f"| {f['file']} | {f['bytes'] / 1e6:.2f} | {f['max_abs_diff_vs_torch']:.2e} | "
            f"{f['probability_abs_diff']['p95']:.4f} | "
            f"{f['agreement_with_torch']:.3f} / {decisive} | {acc} | {rec} | "
            f"{lat['median']:.2f} / {lat['p95']:.2f} |"
        )
    if "torch_scores" in report:
        t = report["torch_scores"]
        lines.append(
            f"| PyTorch fp32 (reference) | — | — | — | — | {t['subclip']['accuracy']:.3f} | "
            f"{t['recording']['accuracy']:.3f} | — |"
        )
    return lines


_LABELS = {
    "speedup": "speed-up (median latency, 1 thread, timed in turn)",
    "size_ratio": "size ratio",
    "int8_mb": "int8 file MB",
    "agreement_with_torch": "top-1 agreement with PyTorch",
    "agreement_decisive": "top-1 agreement with PyTorch, decisive inputs",
    "subclip_accuracy_change_pp": "sub-clip accuracy change (points)",
}


def _cell(key: str, value) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if key.endswith("_pp") else f"{value:.3f}"
