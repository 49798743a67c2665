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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import staging_folder, write_text, writing
from .._checks import is_number
from .._version import __version__
from ..edge.backends import open_model
from ..edge.metadata import MAX_METADATA_BYTES, ModelInfo
from ..errors import ParameterError
from ..features.spec import FeatureSpec
from ..metrics import evaluation, softmax
from .formats import FORMATS, KEEP_FLOAT, MIN_CALIBRATION, Format, _nearest, check_request
from .report import build_report, measure, report_markdown, time_together

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ExportData:
    """Normalised ``(n, 1, n_mels, frames)`` inputs: calibration sub-clips, held-out
    training sub-clips that choose between calibration methods (``check``), and the
    labelled sub-clips the exported files are scored on, per recording as the
    checkpoint's ``aggregate`` says."""

    calibration: np.ndarray
    check: np.ndarray
    x: np.ndarray
    labels: np.ndarray
    recordings: np.ndarray
    label_names: tuple[str, ...]
    source: str
    aggregate: str = "probabilities"


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
        aggregate=state["config"].get("aggregate", "probabilities"),
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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one export writes: the checked formats, precisions and modules kept in float,
    and each file's name (``"onnx/int8"`` -> ``NAME.int8.onnx``, reports too)."""

    formats: list[Format]
    precisions: tuple[str, ...]
    keep: dict[str, tuple[str, ...]]
    files: dict[str, str]
    out_dir: Path
    provenance: dict = dataclasses.field(default_factory=dict)
    temperature: float = 1.0

    def info(self, state: dict, fmt: Format, precision: str) -> ModelInfo:
        spec = FeatureSpec.from_dict(state["spec"])
        shape = (fmt.batch, 1, *spec.clip_shape)
        labels, arch = tuple(state["labels"]), state["model"]
        aggregate = state["config"].get("aggregate", "probabilities")
        return ModelInfo(
            spec, labels, arch, precision, shape, self.provenance, self.temperature, aggregate
        )


def model_provenance(state: dict, given: Mapping[str, Any] | None) -> dict:
    """What a model file says of where it comes from: the musemo version and training
    recipe of its checkpoint, and ``given`` (training data, accuracy, licence: any JSON
    object, ``musemo-export --provenance FILE``)."""
    given = dict(given or {})
    taken = sorted(set(given) & {"musemo", "training"})
    if taken:
        raise ParameterError(f"provenance keys {taken} are written by musemo-export itself")
    split = state.get("split", {})
    training = {
        **state["config"],
        "epoch": state["epoch"],
        **{k: split[k] for k in ("train_subclips", "train_groups") if k in split},
    }
    out = {"musemo": __version__, "training": training, **given}
    size = len(json.dumps(out))
    if size > MAX_METADATA_BYTES // 2:
        raise ParameterError(f"provenance of {size} bytes is too large for a model file's metadata")
    return out


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
    provenance: Mapping[str, Any] | None = None,
    temperature: float = 1.0,
) -> dict:
    """Export a musemo checkpoint to deployable model files, with a report.

    Parameters
    ----------
    checkpoint : path
        A musemo checkpoint (``best.pt`` or ``last.pt`` of a run).
    formats : sequence of str, optional
        Names from ``FORMATS``; default: every format that takes the architecture.
    int8 : bool
        Also write calibrated int8 files (``NAME.int8.onnx``, ``NAME.int8.tflite``).
    calib : path, optional
        Recordings (folder or manifest) to calibrate and score on; needed for ``int8``.
    calib_method : str
        One of ``CALIBRATION_METHODS``; ``"auto"`` tries each method of the format and
        keeps the file closest to fp32 on held-out training sub-clips.
    calib_size : int
        Calibration sub-clips (at most).
    keep_float : sequence of str, optional
        Modules (``features.0``) left in float in the int8 files; ``None`` takes each
        format's default for the architecture (``KEEP_FLOAT``), ``()`` quantises all.
    out : path, optional
        Output folder; default: the checkpoint's.
    name : str, optional
        File name stem; default: the architecture.
    force : bool
        Replace existing files.
    cache : path, optional
        Feature cache folder; default: a temporary one, removed afterwards.
    workers : int
        Processes computing features.
    provenance : mapping, optional
        Where the model comes from (training data, accuracy, terms), stored in every
        file's metadata beside the musemo version and training recipe
        (``model_provenance``).
    temperature : float
        The files show a recording's mean probabilities at this temperature
        (``musemo.metrics.tempered``): the one ``musemo train --folds`` fits on
        held-out recordings (``crossval.json``); 1 leaves them as they are.

    Returns
    -------
    dict
        The report, also written as ``NAME.export.json`` and ``NAME.export.md``.

    Raises
    ------
    ParameterError
        An invalid request (format, architecture, method, module, existing files).
    MissingDependencyError
        A format's converter is not installed.
    OutputError
        The files cannot be written; files already there are left as they were.

    Examples
    --------
    >>> report = export_checkpoint("runs/a/best.pt", int8=True, calib="data")  # doctest: +SKIP
    >>> report["files"]["tflite/int8"]["agreement_with_torch"]  # doctest: +SKIP
    0.995
    """
    import torch

    from ..training.checkpoints import load_checkpoint, model_from_checkpoint
    from ..training.musicnn import inference_form

    state = load_checkpoint(checkpoint)
    out_dir = Path(out) if out is not None else Path(checkpoint).parent
    plan = _plan(state, formats, int8, calib, calib_method, keep_float, out_dir, name, force)
    if not is_number(temperature) or temperature <= 0:
        raise ParameterError(f"temperature={temperature!r}: must be a positive number")
    plan = dataclasses.replace(
        plan, provenance=model_provenance(state, provenance), temperature=float(temperature)
    )
    model = model_from_checkpoint(state).to(memory_format=torch.contiguous_format)
    if state["model"] == "musicnn":  # the same outputs; its int8 file a quarter faster
        model = inference_form(model)
    _check_modules(model, state["model"], plan)
    timings: dict[str, float] = {}
    data = None
    if calib is not None:
        with _step(f"features of {calib}", timings):
            data = _calibration_data(calib, state, cache, calib_size, workers)
        log.info("scoring on %s; calibrating on %d sub-clips", data.source, len(data.calibration))
    spec = FeatureSpec.from_dict(state["spec"])
    probe = data.x if data is not None and len(data.x) else builtin_input(spec)
    torch_logits = _torch_logits(model, probe)
    check_logits = _torch_logits(model, data.check) if int8 and len(data.check) else None
    with staging_folder(out_dir) as staging, writing(out_dir):
        files: dict[str, dict] = {}
        for fmt in plan.formats:
            files.update(
                _export_format(
                    fmt,
                    model,
                    state,
                    plan,
                    staging,
                    probe,
                    torch_logits,
                    check_logits,
                    data,
                    method=calib_method,
                    timings=timings,
                )  # fmt: skip
            )
        report = build_report(
            state, files, data, timings, method=calib_method, keep_float=keep_float
        )
        if data is not None and len(data.x):
            report["torch_scores"] = evaluation(
                softmax(torch_logits), data.labels, data.recordings, data.label_names,
                aggregate=data.aggregate,
            )  # fmt: skip
        write_text(staging / plan.files["report/json"], json.dumps(report, indent=2) + "\n")
        write_text(staging / plan.files["report/md"], report_markdown(report))
        _move_into_place(staging, plan)
    for rel in plan.files.values():
        log.info("wrote %s", out_dir / rel)
    return report


def _plan(state, formats, int8, calib, calib_method, keep_float, out_dir, name, force) -> _Plan:
    """Check the request against ``FORMATS`` and the files already in ``out_dir``."""
    architecture = state["model"]
    requested = None if keep_float is None else tuple(keep_float)
    if formats is None:
        formats = [f.name for f in FORMATS.values() if architecture in f.architectures]
    chosen = check_request(
        formats,
        architecture,
        int8=int8,
        calib=calib,
        calib_method=calib_method,
        keep_float=requested or (),
    )
    name = name or architecture
    precisions = ("fp32", "int8") if int8 else ("fp32",)
    files = {
        f"{fmt.name}/{p}": f"{name}{'.int8' if p == 'int8' else ''}{fmt.suffix}"
        for fmt in chosen
        for p in precisions
    }
    files["report/json"], files["report/md"] = f"{name}.export.json", f"{name}.export.md"
    existing = [f for f in files.values() if (out_dir / f).exists()]
    if existing and not force:
        raise ParameterError(
            f"{', '.join(existing)} already in {out_dir}: use --force to replace, or --out"
        )
    keep = {
        fmt.name: KEEP_FLOAT.get((fmt.name, architecture), ()) if requested is None else requested
        for fmt in chosen
    }
    return _Plan(chosen, precisions, keep, files, out_dir)


def _check_modules(model, architecture: str, plan: _Plan) -> None:
    modules = [m for m, _ in model.named_modules() if m]
    for m in dict.fromkeys(m for kept in plan.keep.values() for m in kept):
        if m not in modules:
            raise ParameterError(
                f"--keep-float {m!r}: {architecture} has no such module"
                f"{_nearest(m, modules)}; name modules such as {', '.join(modules[:3])}"
            )


def _calibration_data(calib, state: dict, cache, calib_size: int, workers: int) -> ExportData:
    """``export_data`` with the given cache folder, or a temporary one removed afterwards."""
    folder = (
        contextlib.nullcontext(cache)
        if cache is not None
        else tempfile.TemporaryDirectory(prefix="musemo-features-")
    )
    with folder as path:
        return export_data(calib, state, cache=path, calib_size=calib_size, workers=workers)


def _torch_logits(model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    with torch.inference_mode():
        parts = [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def _export_format(
    fmt, model, state, plan, staging, probe, torch_logits, check_logits, data, *, method, timings
) -> dict[str, dict]:
    """Write, measure and time one format's files (fp32, then int8) in ``staging``."""
    source = fmt.prepare(model, probe)
    files, runs = {}, {}  # runs: each written file's inference, loaded once
    for precision in plan.precisions:
        key = f"{fmt.name}/{precision}"
        path, info = staging / plan.files[key], plan.info(state, fmt, precision)
        with _step(f"{fmt.name} {precision} export", timings):
            if precision == "fp32":
                fmt.write_fp32(source, info, path, probe)
            else:
                methods = fmt.calibration if method == "auto" else (method,)
                fp32 = staging / plan.files[f"{fmt.name}/fp32"]
                trials = _quantize_best(
                    fmt, source, info, path, data, methods, plan.keep[fmt.name], check_logits,
                    fp32=fp32,
                )  # fmt: skip
        with _step(f"{fmt.name} {precision} measurements", timings):
            runs[key] = open_model(path).logits
            files[key] = measure(path, runs[key], probe, torch_logits, data)
        if precision == "int8":
            files[key]["calibration"] = trials
    with _step(f"{fmt.name} latency", timings):
        time_together(files, runs, probe[:1])
    return files


def _move_into_place(staging: Path, plan: _Plan) -> None:
    """Move the staged files into the output folder. An old report goes first and the new
    one comes last, so a report on disk always describes the model files beside it, even
    if this process is killed."""
    reports = [plan.files[k] for k in ("report/json", "report/md")]
    models = [rel for rel in plan.files.values() if rel not in reports]
    with writing(plan.out_dir, any_oserror=True):
        for rel in reports:
            (plan.out_dir / rel).unlink(missing_ok=True)
        for rel in models + reports:
            os.replace(staging / rel, plan.out_dir / rel)


def _quantize_best(fmt, model, info, path, data, methods, keep_float, check_logits, *, fp32):
    """Write the int8 file calibrated with each of ``methods``; keep the one closest to
    PyTorch on the held-out training sub-clips (agreement, then mean top-class
    probability difference). Returns each method's figures and the choice."""
    calibration = [x[None] for x in data.calibration]
    p_torch = softmax(check_logits) if check_logits is not None else None
    trials: dict[str, dict] = {}
    for method in methods:
        candidate = path.with_name(f"{method}.{path.name}")
        fmt.write_int8(
            model, info, candidate, calibration, method=method, keep_float=keep_float, fp32=fp32
        )
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
