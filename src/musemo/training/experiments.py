"""Several models on the same split, beside the baseline: the paper's Table 1 for your data."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import write_text
from ..data.splits import holdout_split, kfold_splits, with_unlabelled
from ..data.subclips import SubclipData
from ..features.spec import FeatureSpec
from ..metrics import held_out_calibration
from .baseline import fit_baseline
from .checkpoints import Trained
from .distill import TeacherTargets
from .loop import VAL_RECORDINGS, TrainConfig, fit

COLUMNS = (
    "split",
    "model",
    "subclip_accuracy",
    "recording_accuracy",
    "balanced_accuracy",
    "f1_macro",
    "train_subclips_per_s",
    "epochs",
)


def _row(split: str, model: str, final: dict, history: list[dict] | None) -> dict:
    speed = None
    if history:
        speed = sum(h["train_subclips_per_s"] for h in history) / len(history)
    return {
        "split": split,
        "model": model,
        "subclip_accuracy": final["subclip"]["accuracy"],
        "recording_accuracy": final["recording"]["accuracy"],
        "balanced_accuracy": final["subclip"]["balanced_accuracy"],
        "f1_macro": final["subclip"]["f1_macro"],
        "train_subclips_per_s": speed,
        "epochs": len(history) if history else None,
    }


def markdown_table(rows: list[dict]) -> str:
    """A comparison's rows (``compare_models``) as a Markdown table."""

    def cell(v):
        return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |\n" for r in rows)


def compare_models(
    data: SubclipData,
    spec: FeatureSpec,
    models: Sequence[str],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    split_modes: Sequence[str] = ("grouped", "random"),
    val_fraction: float = 0.15,
    progress: bool = True,
    resume: bool = False,
    threads: int | None = None,
) -> list[dict]:
    """Train every model on each kind of split (same split for all), with the baseline.

    Writes ``comparison.md`` and ``comparison.csv`` in ``out_dir`` and one run
    folder per (split, model); ``resume`` continues each run where it stopped;
    ``threads``: ``fit``'s.
    """
    out = Path(out_dir)
    rows = []
    for mode in split_modes:
        train, val = holdout_split(data, val_fraction=val_fraction, mode=mode, seed=config.seed)
        results = _on_one_split(
            data, spec, models, config, train, val, lambda name, m=mode: out / m / name,
            mode=mode, progress=progress, resume=resume, threads=threads,
        )  # fmt: skip
        for name, metrics in results.items():
            label = BASELINE if name == "baseline" else name
            rows.append(_row(mode, label, metrics["final"], metrics["history"]))
        _write(out, rows)
    return rows


BASELINE = "baseline (log-mel stats + logistic regression)"


def _on_one_split(
    data, spec, models, config, train, val, folder, *, mode, progress, resume, threads=None,
    teacher=None, init=None,
) -> dict[str, dict]:  # fmt: skip
    """The baseline, then each model, trained on ``train`` and scored on ``val``: name ->
    ``{"final": scores, "history": epochs}`` (the baseline has no history). Model
    ``name`` runs in ``folder(name)``, distilled from ``teacher`` and started from
    ``init`` (``fit``) if given, on the unlabelled sub-clips too (``with_unlabelled``)."""
    results = {
        "baseline": {"final": fit_baseline(data, train, val, seed=config.seed), "history": None}
    }
    for name in models:
        results[name] = fit(
            data,
            with_unlabelled(data, train, val),
            val,
            spec,
            dataclasses.replace(config, model=name),
            folder(name),
            split_mode=mode,
            resume=resume,
            progress=progress,
            teacher=teacher,
            init=init,
            threads=threads,
        )
    return results


def _write(out: Path, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.md", markdown_table(rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "comparison.csv", buf.getvalue())
    write_text(out / "comparison.json", json.dumps(rows, indent=2))


def cross_validate(
    data: SubclipData,
    spec: FeatureSpec,
    models: Sequence[str],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    k: int = 5,
    mode: str = "grouped",
    progress: bool = True,
    resume: bool = False,
    teachers: Sequence[TeacherTargets] | None = None,
    inits: Sequence[Trained] | None = None,
    threads: int | None = None,
) -> dict:
    """``k``-fold cross-validation of the baseline and each model on the same folds.

    One split is noise on a few hundred recordings; this reports each score's
    mean and standard deviation over the folds. Writes ``crossval.json`` and
    ``crossval.md`` in ``out_dir`` (updated after every fold) and one run per (model,
    fold); ``resume`` continues each run where it stopped (a finished one is only scored);
    ``threads``: ``fit``'s.
    Each model's ``recording_calibration`` (``musemo.metrics.held_out_calibration``)
    gives the temperature for ``musemo-export --temperature`` and the recordings'
    expected calibration error without and with it. With ``config.teacher``,
    ``teachers[i]`` are fold ``i``'s teacher outputs (``fit``'s ``teacher``;
    ``musemo.training.distill.fold_teachers`` finds each fold's teacher); ``inits[i]``,
    the checkpoint fold ``i`` starts from (``checkpoints.fold_checkpoints``).
    """
    out = Path(out_dir)
    folds = kfold_splits(data, k=k, mode=mode, seed=config.seed)
    per_fold: dict[str, list[dict]] = {}
    for i, (train, val) in enumerate(folds):
        results = _on_one_split(
            data, spec, models, config, train, val, lambda name, i=i: out / name / f"fold{i}",
            mode=mode, progress=progress, resume=resume, threads=threads,
            teacher=None if teachers is None else teachers[i],
            init=None if inits is None else inits[i],
        )  # fmt: skip
        for name, result in results.items():
            per_fold.setdefault(name, []).append({"fold": i, **_fold_scores(result["final"])})
        summary = _summarise(per_fold, k, mode)
        for name in models:
            summary["models"][name]["recording_calibration"] = held_out_calibration(
                [_held_out(out / name / f"fold{j}") for j in range(i + 1)]
            )
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "crossval.json", json.dumps(summary, indent=2))
        write_text(out / "crossval.md", crossval_table(summary))
    return summary


def _held_out(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """A finished run's validation recordings: (mean probabilities, true labels)."""
    with np.load(run / VAL_RECORDINGS) as f:
        return f["probabilities"], f["label"]


# a fold's scores in cross_validate's summary, and their headings in crossval.md
FOLD_SCORES = {
    "subclip_accuracy": "sub-clip accuracy",
    "balanced_accuracy": "sub-clip balanced accuracy",
    "recording_accuracy": "recording accuracy",
    "recording_balanced_accuracy": "recording balanced accuracy",
    "recording_roc_auc": "recording ROC AUC",
}


def _fold_scores(final: dict) -> dict:
    """``FOLD_SCORES`` of one fold's final scores (AUC: NaN with more than two labels)."""
    subclip, recording = final["subclip"], final["recording"]
    return {
        "subclip_accuracy": subclip["accuracy"],
        "balanced_accuracy": subclip["balanced_accuracy"],
        "recording_accuracy": recording["accuracy"],
        "recording_balanced_accuracy": recording["balanced_accuracy"],
        "recording_roc_auc": recording.get("roc_auc", float("nan")),
    }


def _summarise(per_fold: dict[str, list[dict]], k: int, mode: str) -> dict:
    models = {}
    for name, folds in per_fold.items():
        stats = {}
        for key in FOLD_SCORES:
            values = np.array([f[key] for f in folds])
            stats[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=0))}
        models[name] = {"folds": folds, **stats}
    return {
        "k": k,
        "mode": mode,
        "folds_done": len(next(iter(per_fold.values()))),
        "models": models,
    }


def crossval_table(summary: dict) -> str:
    """A cross-validation summary (``cross_validate``) as Markdown: mean ± std per model."""
    lines = [
        f"{summary['k']}-fold cross-validation, {summary['mode']} split "
        f"({summary['folds_done']} folds done): mean ± std over folds\n",
        "| model | " + " | ".join(FOLD_SCORES.values()) + " |",
        "|---" * (len(FOLD_SCORES) + 1) + "|",
    ]
    for name, m in summary["models"].items():
        cells = [f"{m[key]['mean']:.3f} ± {m[key]['std']:.3f}" for key in FOLD_SCORES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    calibrated = [(n, m["recording_calibration"]) for n, m in summary["models"].items()
                  if "recording_calibration" in m]  # fmt: skip
    if calibrated:
        lines.append(
            "\nPer recording, expected calibration error of the held-out folds (mean over "
            "folds; over all their recordings pooled), as trained and at the temperature "
            "fitted on the other folds:"
        )
    for name, c in calibrated:
        lines.append(
            f"- {name}: {c['ece']:.3f} / {c['ece_calibrated']:.3f}; pooled "
            f"{c['ece_pooled']:.3f} / {c['ece_pooled_calibrated']:.3f}; on all folds: "
            f"--temperature {c['temperature']:.3g}"
        )
    return "\n".join(lines) + "\n"
