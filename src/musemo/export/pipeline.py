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
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .._atomic import staging_folder, write_text, writing
from ..edge.backends import open_model
from ..edge.metadata import ModelInfo
from ..errors import ParameterError
from ..features.spec import FeatureSpec
from ..metrics import evaluation, softmax
from .formats import FORMATS, KEEP_FLOAT, MIN_CALIBRATION, Format, _nearest, check_request
from .report import _measure, _report, _time_together, report_markdown

log = logging.getLogger("musemo.export")


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
    from ..data.subclips import load_dataset

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
    from ..data.synthetic.instruments import demo_recording
    from ..features.extractor import MelExtractor

    y = demo_recording(sr=spec.sample_rate, seconds=spec.clip_seconds + 0.1)[: spec.clip_samples]
    x = (MelExtractor(spec).compute(y) - spec.input_mean) / spec.input_std
    return x[None, None].astype(np.float32)


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

    from ..training.checkpoints import load_checkpoint, model_from_checkpoint

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
        from .tflite import litert_ready

        return litert_ready(model, probe[:8])
    return model


def _write(fmt, model, info, path, probe, calibration, method, keep_float, *, fp32=None) -> None:
    """Write one model file (the fp32 file of the format exists before its int8 one)."""
    if fmt.name == "onnx":
        from .onnx import export_onnx, quantize_onnx

        if info.precision == "fp32":
            export_onnx(model, info, path)
        else:
            quantize_onnx(fp32, info, path, calibration, method=method, keep_float=keep_float)
    else:
        from .tflite import export_tflite, quantize_tflite

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
