"""``musemo-export``: a trained checkpoint to deployable model files, with a report.

One table (``FORMATS``) says which formats exist, which architectures each takes
and whether it has an int8 variant. Every step is timed and logged; all files of
one export are written to a staging folder and moved into place only when every
step succeeded, so a failed export leaves nothing behind and an existing file is
replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .atomic import staging_folder, write_text, writing
from .backends import open_model
from .errors import ParameterError
from .metrics import evaluation, softmax
from .model_metadata import ModelInfo
from .models import MODELS
from .spec import FeatureSpec
from .speed import wall_ms_each

log = logging.getLogger("musemo.export")


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format: file suffix, architectures, int8 calibration methods (none: no
    int8), batch size, and what it needs installed."""

    name: str
    suffix: str
    architectures: tuple[str, ...]
    calibration: tuple[str, ...]
    batch: int  # -1: free
    requires: tuple[str, ...]
    extra: str


FORMATS = {
    "onnx": Format(
        name="onnx",
        suffix=".onnx",
        architectures=MODELS,
        calibration=("minmax", "percentile", "entropy"),
        batch=-1,
        requires=("onnx", "onnxruntime", "onnxscript"),
        extra="export",
    ),
    "tflite": Format(
        name="tflite",
        suffix=".tflite",
        architectures=("squeezenet1_0", "mobilenet_v2", "resnet18"),
        calibration=("minmax", "histogram"),
        batch=1,
        requires=("litert_torch", "ai_edge_litert"),
        extra="tflite",
    ),
}
# "auto" quantises with each of the format's methods and keeps the best on held-out
# training sub-clips.
CALIBRATION_METHODS = ("auto", *dict.fromkeys(m for f in FORMATS.values() for m in f.calibration))

# What int8 must keep, from the export issue; the report shows each beside its measurement.
GOALS = {
    "accuracy_drop_pp": 0.5,
    "agreement": 0.99,
    "speedup": 2.0,
    "int8_size_mb": {"squeezenet1_0": 0.9, "mobilenet_v2": 2.7},
}
MIN_CALIBRATION = 32

# Modules left in float in int8 files unless the caller names others, per (format,
# architecture). MobileNetV2's stem conv and first block see the one-channel log-mel at
# full resolution: keeping them in float cut the int8 logit error on held-out *training*
# sub-clips by 38% (one-at-a-time sensitivity of every layer,
# benchmarks/int8_sensitivity.py) for under 1% of its multiply-adds. SqueezeNet's
# one-channel 7x7 stem becomes an int8 depthwise convolution in LiteRT that made the whole
# int8 model only 1.7x faster than fp32; in float it runs 3.1x faster (onnxruntime runs
# its float stem slower: none there).
KEEP_FLOAT = {
    ("onnx", "mobilenet_v2"): ("features.0", "features.1"),
    ("tflite", "mobilenet_v2"): ("features.0", "features.1"),
    ("tflite", "squeezenet1_0"): ("features.0",),
}


def _nearest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_request(
    formats: Sequence[str],
    architecture: str,
    *,
    int8: bool,
    calib,
    calib_method: str,
    keep_float: Sequence[str] = (),
) -> list[Format]:
    """The requested formats, or a ParameterError saying what is wrong and what is valid."""
    chosen = []
    for name in formats:
        if name not in FORMATS:
            raise ParameterError(
                f"unknown format {name!r}{_nearest(name, list(FORMATS))}: "
                f"use one or more of {', '.join(FORMATS)}"
            )
        fmt = FORMATS[name]
        if architecture not in fmt.architectures:
            raise ParameterError(
                f"{name} export takes {', '.join(fmt.architectures)}, not {architecture}"
            )
        if int8 and calib_method != "auto" and calib_method not in fmt.calibration:
            raise ParameterError(
                f"calibration method {calib_method!r}"
                f"{_nearest(calib_method, ('auto', *fmt.calibration))}: {name} calibrates "
                f"with auto, {', '.join(fmt.calibration)}"
            )
        missing = [m for m in fmt.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise ParameterError(
                f"{name} export needs {', '.join(missing)}: pip install 'musemo[{fmt.extra}]'"
            )
        chosen.append(fmt)
    if not chosen:
        raise ParameterError(f"no format given: use one or more of {', '.join(FORMATS)}")
    if keep_float and not int8:
        raise ParameterError("--keep-float applies to int8 files: add --int8")
    if int8 and calib is None:
        raise ParameterError(
            "--int8 needs --calib DATA: real recordings (a folder or manifest) from the "
            "model's training data, to calibrate the int8 ranges on"
        )
    return chosen


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class ExportData:
    """Normalised ``(n, 1, n_mels, frames)`` inputs: calibration sub-clips, held-out
    training sub-clips that choose between calibration methods (``check``), and the
    labelled sub-clips the exported files are scored on."""

    calibration: np.ndarray
    check: np.ndarray
    x: np.ndarray
    labels: np.ndarray
    recordings: np.ndarray
    label_names: tuple[str, ...]
    source: str


def export_data(
    calib: str | os.PathLike,
    state: dict,
    *,
    cache: str | os.PathLike,
    calib_size: int = 256,
    seed: int = 0,
    workers: int = 1,
) -> ExportData:
    """Features of ``calib`` computed with the checkpoint's spec.

    Sub-clips of the checkpoint's validation recordings (its ``split.json``) are
    scored and never calibrated on; of the others, up to ``calib_size`` calibrate and
    up to ``calib_size`` further ones (at most half) form ``check``.
    Data holding none of the validation recordings is split in two by recording.
    """
    from .data import load_dataset

    spec = FeatureSpec.from_dict(state["spec"])
    data, report = load_dataset(
        calib, spec, cache=cache, workers=workers, progress=False, label_names=state["labels"]
    )
    if report.failed:
        log.warning("calibration data: skipped %d unreadable files", len(report.failed))
    groups = data.groups
    held_out = set(state.get("split", {}).get("val_groups", []))
    scored = np.isin(groups, list(held_out))
    source = f"{int(scored.sum())} sub-clips of the checkpoint's validation recordings"
    if not scored.any():
        rng = np.random.default_rng(seed)
        names = np.unique(groups)
        half = set(rng.permutation(names)[: len(names) // 2].tolist())
        scored = np.isin(groups, list(half))
        source = (
            f"{int(scored.sum())} sub-clips of half the recordings of {calib} (it holds none "
            "of the checkpoint's validation recordings; the other half calibrates)"
        )
    candidates = np.flatnonzero(~scored)
    if len(candidates) < MIN_CALIBRATION:
        raise ParameterError(
            f"{calib} gives {len(candidates)} sub-clips outside the validation split; "
            f"int8 calibration needs at least {MIN_CALIBRATION}"
        )
    rng = np.random.default_rng(seed)
    # Held-out training sub-clips choose the calibration method: up to calib_size, but
    # never more than half the candidates nor so many that calibration gets too few.
    n = len(candidates)
    n_check = max(0, min(calib_size, n // 2, n - MIN_CALIBRATION))
    n_calib = min(calib_size, n - n_check)
    order = rng.permutation(candidates)
    chosen = np.sort(order[:n_calib])
    check = np.sort(order[n_calib : n_calib + n_check])
    rows = np.flatnonzero(scored)

    def inputs(idx: np.ndarray) -> np.ndarray:
        if not len(idx):
            return np.empty((0, 1, *spec.clip_shape), np.float32)
        x = (data.stack(idx) - spec.input_mean) / spec.input_std
        return x[:, None].astype(np.float32)

    return ExportData(
        calibration=inputs(chosen),
        check=inputs(check),
        x=inputs(rows),
        labels=data.labels[rows],
        recordings=data.index[rows, 0],
        label_names=data.label_names,
        source=source,
    )


def builtin_input(spec: FeatureSpec) -> np.ndarray:
    """One normalised sub-clip of the built-in demo recording, for checks without data."""
    from .extractor import MelExtractor
    from .synth import demo_recording

    y = demo_recording(sr=spec.sample_rate, seconds=spec.clip_seconds + 0.1)[: spec.clip_samples]
    x = (MelExtractor(spec).compute(y) - spec.input_mean) / spec.input_std
    return x[None, None].astype(np.float32)


# ----------------------------------------------------------------------------- measuring


@contextlib.contextmanager
def _step(what: str, timings: dict) -> Iterator[None]:
    log.info("%s ...", what)
    t0 = time.perf_counter()
    yield
    timings[what] = time.perf_counter() - t0
    log.info("%s: done in %.1f s", what, timings[what])


# ----------------------------------------------------------------------------- export


def export_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    formats: Sequence[str] | None = None,
    int8: bool = False,
    calib: str | os.PathLike | None = None,
    calib_method: str = "auto",
    calib_size: int = 256,
    keep_float: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    force: bool = False,
    cache: str | os.PathLike | None = None,
    workers: int = 1,
) -> dict:
    """Export a musemo checkpoint; returns the report (also written as NAME.export.json/.md).

    Writes ``NAME.onnx``, ``NAME.tflite`` (``formats``, default: every format that
    takes the architecture) and, with ``int8``, ``NAME.int8.onnx`` and
    ``NAME.int8.tflite`` into ``out`` (default: the checkpoint's folder).
    ``keep_float`` names modules (``features.0``) left in float in the int8 files;
    ``None`` takes each format's default for the architecture (``KEEP_FLOAT``), ``()``
    quantises all. ``cache``: a feature cache folder (default: a temporary one).
    """
    import torch

    from .train import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(checkpoint)
    architecture = state["model"]
    requested_keep = None if keep_float is None else tuple(keep_float)
    if formats is None:
        formats = [f.name for f in FORMATS.values() if architecture in f.architectures]
    chosen = check_request(
        formats,
        architecture,
        int8=int8,
        calib=calib,
        calib_method=calib_method,
        keep_float=requested_keep or (),
    )
    spec = FeatureSpec.from_dict(state["spec"])
    labels = tuple(state["labels"])
    out_dir = Path(out) if out is not None else Path(checkpoint).parent
    name = name or architecture
    precisions = ("fp32", "int8") if int8 else ("fp32",)
    planned = {
        f"{fmt.name}/{p}": f"{name}{'.int8' if p == 'int8' else ''}{fmt.suffix}"
        for fmt in chosen
        for p in precisions
    }
    planned["report/json"], planned["report/md"] = f"{name}.export.json", f"{name}.export.md"
    existing = [f for f in planned.values() if (out_dir / f).exists()]
    if existing and not force:
        raise ParameterError(
            f"{', '.join(existing)} already in {out_dir}: use --force to replace, or --out"
        )

    timings: dict[str, float] = {}
    model = model_from_checkpoint(state).to(memory_format=torch.contiguous_format)
    modules = [m for m, _ in model.named_modules() if m]
    keep = {
        fmt.name: requested_keep
        if requested_keep is not None
        else KEEP_FLOAT.get((fmt.name, architecture), ())
        for fmt in chosen
    }
    for m in dict.fromkeys(m for kept in keep.values() for m in kept):
        if m not in modules:
            raise ParameterError(
                f"--keep-float {m!r}: {architecture} has no such module"
                f"{_nearest(m, modules)}; name modules such as {', '.join(modules[:3])}"
            )
    data = None
    if calib is not None:
        # without a cache folder, features go to a temporary one, removed afterwards
        cache_folder = (
            contextlib.nullcontext(cache)
            if cache is not None
            else tempfile.TemporaryDirectory(prefix="musemo-features-")
        )
        with _step(f"features of {calib}", timings), cache_folder as folder:
            data = export_data(calib, state, cache=folder, calib_size=calib_size, workers=workers)
        log.info("scoring on %s; calibrating on %d sub-clips", data.source, len(data.calibration))
    probe = data.x if data is not None and len(data.x) else builtin_input(spec)
    with torch.inference_mode():
        torch_logits = np.concatenate(
            [model(torch.from_numpy(probe[i : i + 64])).numpy() for i in range(0, len(probe), 64)]
        )
    check_logits = None
    if int8:
        with torch.inference_mode():
            check_logits = model(torch.from_numpy(data.check)).numpy() if len(data.check) else None

    with staging_folder(out_dir) as staging, writing(out_dir):
        files: dict[str, dict] = {}
        for fmt in chosen:
            source = _convertible(fmt, model, probe)
            runs = {}  # key: the written file's inference, loaded once
            for precision in precisions:
                key = f"{fmt.name}/{precision}"
                path = staging / planned[key]
                info = ModelInfo(
                    spec, labels, architecture, precision, (fmt.batch, 1, *spec.clip_shape)
                )
                what = f"{fmt.name} {precision}"
                with _step(f"{what} export", timings):
                    if precision == "fp32":
                        _write(fmt, source, info, path, probe, [], "", ())
                    else:
                        methods = fmt.calibration if calib_method == "auto" else (calib_method,)
                        trials = _quantize_best(
                            fmt,
                            source,
                            info,
                            path,
                            data,
                            methods,
                            keep[fmt.name],
                            check_logits,
                            fp32=staging / planned[f"{fmt.name}/fp32"],
                        )
                with _step(f"{what} measurements", timings):
                    runs[key] = open_model(path).logits
                    files[key] = _measure(path, runs[key], probe, torch_logits, data)
                if precision == "int8":
                    files[key]["calibration"] = trials
            with _step(f"{fmt.name} latency", timings):
                _time_together(files, runs, probe[:1])
        report = _report(
            state,
            files,
            data,
            timings,
            int8=int8,
            method=calib_method,
            keep_float=requested_keep,
        )
        if data is not None and len(data.x):
            report["torch_scores"] = evaluation(
                softmax(torch_logits), data.labels, data.recordings, data.label_names
            )
        write_text(staging / planned["report/json"], json.dumps(report, indent=2) + "\n")
        write_text(staging / planned["report/md"], report_markdown(report))
        # An old report goes first and the new one comes last, so a report on disk
        # always describes the model files beside it, even if this process is killed.
        reports = [planned[k] for k in ("report/json", "report/md")]
        models = [rel for rel in planned.values() if rel not in reports]
        with writing(out_dir, any_oserror=True):
            for rel in reports:
                (out_dir / rel).unlink(missing_ok=True)
            for rel in models + reports:
                os.replace(staging / rel, out_dir / rel)
    for rel in planned.values():
        log.info("wrote %s", out_dir / rel)
    return report


def _convertible(fmt: Format, model, probe: np.ndarray):
    """The model as ``fmt``'s converter needs it (for TFLite, a ``litert_ready`` copy)."""
    if fmt.name == "tflite":
        from .tflite_export import litert_ready

        return litert_ready(model, probe[:8])
    return model


def _write(fmt, model, info, path, probe, calibration, method, keep_float, *, fp32=None) -> None:
    """Write one model file (the fp32 file of the format exists before its int8 one)."""
    if fmt.name == "onnx":
        from .onnx_export import export_onnx, quantize_onnx

        if info.precision == "fp32":
            export_onnx(model, info, path)
        else:
            quantize_onnx(fp32, info, path, calibration, method=method, keep_float=keep_float)
    else:
        from .tflite_export import export_tflite, quantize_tflite

        if info.precision == "fp32":
            export_tflite(model, info, path, probe)
        else:
            quantize_tflite(model, info, path, calibration, method=method, keep_float=keep_float)


def _quantize_best(fmt, model, info, path, data, methods, keep_float, check_logits, *, fp32):
    """Write the int8 file calibrated with each of ``methods``; keep the one closest to
    PyTorch on the held-out training sub-clips (agreement, then mean top-class
    probability difference). Returns each method's figures and the choice."""
    calibration = [x[None] for x in data.calibration]
    p_torch = softmax(check_logits) if check_logits is not None else None
    trials: dict[str, dict] = {}
    for method in methods:
        candidate = path.with_name(f"{method}.{path.name}")
        _write(fmt, model, info, candidate, None, calibration, method, keep_float, fp32=fp32)
        if check_logits is not None and len(methods) > 1:
            logits = open_model(candidate).logits(data.check)
            trials[method] = {
                "agreement": float((logits.argmax(1) == check_logits.argmax(1)).mean()),
                "probability_abs_diff_mean": float(np.abs(softmax(logits) - p_torch).max(1).mean()),
            }
            log.info("%s int8 with %s calibration: %s", fmt.name, method, trials[method])
    best = min(
        methods,
        key=lambda m: (
            -trials[m]["agreement"] if m in trials else 0,
            trials[m]["probability_abs_diff_mean"] if m in trials else 0,
        ),
    )
    os.replace(path.with_name(f"{best}.{path.name}"), path)
    for method in methods:
        path.with_name(f"{method}.{path.name}").unlink(missing_ok=True)
    return {
        "method": best,
        "kept_float": list(keep_float),
        "checked_on": len(data.check) if trials else 0,
        "candidates": trials,
    }


DECISIVE = 0.55  # a PyTorch top-class probability at least this is a decisive input


def _time_together(files: dict, runs: dict, x: np.ndarray) -> None:
    """One-thread latency of one format's files (``runs``: key -> inference), timed in
    turn (``wall_ms_each``), so the int8 speed-up compares calls made side by side."""
    timed = wall_ms_each({k: functools.partial(run, x) for k, run in runs.items()}, repeats=50)
    for k, t in timed.items():
        files[k]["latency_ms_1_thread"] = t


def _measure(path: Path, run, probe, torch_logits, data) -> dict:
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
            softmax(logits), data.labels, data.recordings, data.label_names
        )
    return entry


def _report(state, files, data, timings, *, int8, method, keep_float) -> dict:
    architecture = state["model"]
    report = {
        "checkpoint_model": architecture,
        "labels": list(state["labels"]),
        "input_shape": [1, 1, *FeatureSpec.from_dict(state["spec"]).clip_shape],
        "calibration": None,
        "scored_on": data.source if data is not None else "the built-in demo recording",
        "files": files,
        "seconds": timings,
        "goals": {},
    }
    if int8:
        report["calibration"] = {
            "method": method,
            "subclips": len(data.calibration),
            "kept_float": "default" if keep_float is None else list(keep_float),
        }
        for fmt in FORMATS:
            f32, i8 = files.get(f"{fmt}/fp32"), files.get(f"{fmt}/int8")
            if f32 is None or i8 is None:
                continue
            goals = {}
            if "scores" in f32:
                drop = 100 * (
                    f32["scores"]["subclip"]["accuracy"] - i8["scores"]["subclip"]["accuracy"]
                )
                goals["accuracy_drop_pp"] = _goal(drop, GOALS["accuracy_drop_pp"], "<=")
            goals["agreement"] = _goal(i8["agreement_with_torch"], GOALS["agreement"], ">=")
            if i8["agreement_decisive"] is not None:
                goals["agreement_decisive"] = _goal(
                    i8["agreement_decisive"], GOALS["agreement"], ">="
                )
            speedup = f32["latency_ms_1_thread"]["median"] / i8["latency_ms_1_thread"]["median"]
            goals["speedup"] = _goal(speedup, GOALS["speedup"], ">=")
            limit = GOALS["int8_size_mb"].get(architecture)
            if limit is not None:
                goals["int8_size_mb"] = _goal(i8["bytes"] / 1e6, limit, "<=")
            report["goals"][fmt] = goals
    return report


def _goal(value: float, target: float, relation: str) -> dict:
    met = value <= target if relation == "<=" else value >= target
    return {"value": value, "goal": f"{relation} {target:g}", "met": bool(met)}


def report_markdown(report: dict) -> str:
    """The export report as Markdown: one row per file, then the int8 goals."""
    lines = [
        f"# Export of {report['checkpoint_model']} "
        f"(input {'x'.join(map(str, report['input_shape']))})\n",
        f"Scored on {report['scored_on']}.",
    ]
    if report["calibration"]:
        c = report["calibration"]
        chosen = "; ".join(
            f"{f['file']}: {f['calibration']['method']}, kept in float: "
            f"{', '.join(f['calibration']['kept_float']) or 'nothing'}"
            for f in report["files"].values()
            if "calibration" in f
        )
        lines.append(
            f"int8: per-channel int8 weights, int8 activations calibrated on {c['subclips']} "
            f"training sub-clips (calibration {c['method']}, modules in float "
            f"{'by default' if c['kept_float'] == 'default' else 'as asked'}): {chosen}."
        )
        for f in report["files"].values():
            trials = f.get("calibration", {}).get("candidates")
            if trials:
                tried = "; ".join(
                    f"{m} agreement {t['agreement']:.3f}, mean probability diff "
                    f"{t['probability_abs_diff_mean']:.4f}"
                    for m, t in trials.items()
                )
                lines.append(
                    f"{f['file']}: on {f['calibration']['checked_on']} held-out training "
                    f"sub-clips, {tried}."
                )
    lines += [
        "",
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
    lines.append(
        f"\nDecisive inputs: PyTorch's top class has probability >= {DECISIVE}; "
        "the others sit on the decision boundary, where any rounding can flip them."
    )
    for fmt, goals in report["goals"].items():
        lines += ["", f"## int8 goals, {fmt}", "", "| goal | measured | target | met |"]
        lines.append("|---|---|---|---|")
        for key, g in goals.items():
            lines.append(
                f"| {key} | {g['value']:.3f} | {g['goal']} | {'yes' if g['met'] else 'NO'} |"
            )
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report["seconds"].items())
    lines += ["", f"Steps: {seconds}."]
    return "\n".join(lines) + "\n"
