#!/usr/bin/env python
"""Build the model that ships inside musemo, ``happy-sad.int8.onnx``, from the 4Q audio
emotion set, and write its report.

    make model DATA4Q=/data/4q
    python export/default_model.py --data4q /data/4q   # the same, in an installed musemo

The steps, each timed:

1. the 4Q set's Q1 (happy) and Q3 (sad) as a manifest grouped by artist
   (``musemo datasets 4q``);
2. ``--folds``-fold cross-validation of ``RECIPE``, grouped by artist: per recording,
   balanced accuracy, ROC AUC and calibration error, and the temperature fitted on
   held-out recordings (``musemo train --folds``);
3. the same recipe trained on every recording (``musemo train --val-fraction 0``);
4. ``musemo-export --int8 --format onnx`` with that temperature and the provenance
   (data, accuracy, terms) inside the file;
5. the int8 file into the package's ``models/`` folder (``--install``) and the report
   into ``docs/default-model.md`` (``--report``).

Everything is seeded (``--seed``): the same data and seed give the same file. The work
folder (``--out``) keeps the runs and features; they are derived from the audio, so
keep them private like the audio itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from musemo._atomic import atomic_path, write_text
from musemo._version import __version__
from musemo.data import holdout_split, load_dataset
from musemo.data.fourq import prepare_4q
from musemo.edge.shipped import DEFAULT_MODEL, MODELS_DIR
from musemo.export import export_checkpoint
from musemo.features import musicnn_spec
from musemo.training import TrainConfig, cross_validate, fit

# How the default model learns: musicnn's Million Song Dataset checkpoint, frozen; a
# logistic regression (C by grouped inner CV) on each recording's mean embedding and
# mean- and max-pooled mid-level features, as one linear layer on the network; a
# recording's answer from the mean of its patches' logits, which is that regression on
# its mean features (on 4Q's held-out folds: better calibrated than the mean of the
# probabilities, 0.019 against 0.054 pooled ECE, and no less accurate).
RECIPE = TrainConfig(
    model="musicnn", weights="pretrained", head="pooled", probe=True, aggregate="logits"
)
RECIPE_TEXT = (
    "musicnn (MSD checkpoint, frozen) + logistic regression on the recording-mean "
    "embedding and pooled mid-level features; a recording's probabilities from the mean "
    "of its patches' logits (musemo train --model musicnn --probe --head pooled "
    "--aggregate logits)"
)
DATA_TEXT = (
    "4Q audio emotion dataset (Panda, Malheiro & Paiva, IEEE TAFFC 2018), quadrants Q1 "
    "(happy) and Q3 (sad): {n} recordings of 30 s by {artists} artists"
)
TERMS = (
    "the 4Q audio is for research use only; this model is derived from it and shares "
    "those terms: research and personal use, no commercial use without the rights holders"
)
DOCS = Path(__file__).resolve().parent.parent / "docs"


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Time one step into ``timings`` and say when it starts and ends (stderr)."""
    print(f"default model: {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t0
    print(f"default model: {name}: {timings[name]:.0f} s", file=sys.stderr, flush=True)


def summary_scores(cv: dict) -> dict:
    """The recipe's per-recording scores over the folds (mean, std, each fold) and its
    calibration, from ``cross_validate``'s summary."""
    model, keys = cv["models"][RECIPE.model], ("recording_balanced_accuracy", "recording_roc_auc")
    scores = {k: {**model[k], "folds": [f[k] for f in model["folds"]]} for k in keys}
    scores["baseline_recording_balanced_accuracy"] = cv["models"]["baseline"][keys[0]]
    return {**scores, "calibration": model["recording_calibration"], "folds": cv["k"]}


def provenance(scores: dict, n: int, artists: int) -> dict:
    """What the model file says of itself (``musemo models`` shows data and accuracy)."""
    ba, auc = scores["recording_balanced_accuracy"], scores["recording_roc_auc"]
    accuracy = (
        f"balanced accuracy {ba['mean']:.3f} ± {ba['std']:.3f}, ROC AUC {auc['mean']:.3f} "
        f"± {auc['std']:.3f} per recording ({scores['folds']}-fold CV grouped by artist)"
    )
    return {
        "name": DEFAULT_MODEL,
        "data": DATA_TEXT.format(n=n, artists=artists),
        "accuracy": accuracy,
        "cross_validation": {k: scores[k] for k in ("recording_balanced_accuracy",
                                                    "recording_roc_auc", "folds")},
        "recipe": RECIPE_TEXT,
        "terms": TERMS,
        "card": "docs/model-card.md in musemo's source",
    }  # fmt: skip


def install(exported: Path, folder: Path) -> Path:
    """Copy the exported file into ``folder`` atomically (a half-copied model never
    lands there)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / exported.name
    with atomic_path(target) as tmp:
        shutil.copyfile(exported, tmp)
        os.chmod(tmp, 0o644)  # package data: readable by everyone who installs it
    return target


def report_markdown(scores: dict, export: dict, model: Path, facts: dict) -> str:
    """``docs/default-model.md``: how the shipped file was built and how it scored."""
    ba, auc, cal = (scores[k] for k in ("recording_balanced_accuracy", "recording_roc_auc",
                                        "calibration"))  # fmt: skip
    base = scores["baseline_recording_balanced_accuracy"]
    fp32, int8 = export["files"]["onnx/fp32"], export["files"]["onnx/int8"]
    torch_rec = export["torch_scores"]["recording"]
    rows = "\n".join(
        f"| {i} | {b:.3f} | {a:.3f} |" for i, (b, a) in enumerate(zip(ba["folds"], auc["folds"]))
    )
    mean = f"**{ba['mean']:.3f} ± {ba['std']:.3f}** | **{auc['mean']:.3f} ± {auc['std']:.3f}**"
    timings = "\n".join(f"| {name} | {s:.0f} |" for name, s in facts["timings"].items())
    return f"""# The default model: how it was built

Written by `export/default_model.py` (`make model DATA4Q=...`); every number below is
from that run. What the model is for and how far to trust it: [model-card.md](model-card.md).

- **File**: `src/musemo/models/{model.name}`, {model.stat().st_size / 1e6:.2f} MB,
  sha256 `{facts["sha256"]}`
- **Recipe**: {RECIPE_TEXT}; seed {RECIPE.seed}
- **Data**: {facts["data"]}
- **Built with**: musemo {__version__}, Python {platform.python_version()}, on
  {facts["cpu"]}; command `{facts["command"]}`

## Cross-validation of the recipe ({scores["folds"]} folds, grouped by artist)

Per recording (the softmax of the mean of its 3 s patches' logits), threshold 0.5:

| fold | balanced accuracy | ROC AUC |
|---|---|---|
{rows}
| **mean ± std** | {mean} |

The log-mel baseline on the same folds: balanced accuracy {base["mean"]:.3f} ± {base["std"]:.3f}.

Calibration (expected calibration error of the recordings' probabilities, 10 bins):
{cal["ece"]:.3f} as trained and {cal["ece_calibrated"]:.3f} at the temperature fitted on
the other folds, as the mean of the folds' (about 90 recordings each, where even a
calibrated model averages about 0.07); over all {facts["n"]} held-out recordings pooled,
**{cal["ece_pooled"]:.3f}** as trained and **{cal["ece_pooled_calibrated"]:.3f}** at the
other folds' temperature. The shipped file applies the temperature fitted on all folds,
{cal["temperature"]:.3g}, to each recording's probabilities.

## The shipped model

The same recipe trained on all {facts["n"]} recordings ({facts["patches"]} patches),
exported to int8 ONNX (`musemo-export --int8 --format onnx`; calibration method
`{int8["calibration"]["method"]}`, chosen on held-out patches): {fp32["bytes"] / 1e6:.2f} MB
in fp32, {int8["bytes"] / 1e6:.2f} MB in int8. On the patches of half the recordings
(which it was trained on, so this measures the conversion, not accuracy), the int8 file's
label agrees with PyTorch's on {int8["agreement_with_torch"]:.3f} of them (the fp32 file's
on {fp32["agreement_with_torch"]:.3f}); per recording, PyTorch labels
{torch_rec["accuracy"]:.3f} of those {torch_rec["n"]} recordings as annotated, the int8 file
{int8["scores"]["recording"]["accuracy"]:.3f}.

| step | seconds |
|---|---|
{timings}
"""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out, timings = Path(args.out), {}
    recipe = dataclasses.replace(RECIPE, seed=args.seed)
    spec = musicnn_spec()
    with step("manifest", timings):
        fourq = prepare_4q(args.data4q, out / "data")
    load = dict(cache=out / "features", workers=args.workers, progress=not args.quiet)
    with step("features", timings):
        data, _ = load_dataset(fourq.manifest, spec, **load)
    with step(f"{args.folds}-fold cross-validation", timings):
        cv = cross_validate(
            data, spec, (recipe.model,), recipe, out / "cv", k=args.folds,
            progress=not args.quiet, resume=True,
        )  # fmt: skip
    scores = summary_scores(cv)
    with step("training on every recording", timings):
        train, none = holdout_split(data, val_fraction=0)
        fit(data, train, none, spec, recipe, out / "final", progress=not args.quiet)
    temperature = scores["calibration"]["temperature"]
    n, artists = sum(fourq.counts.values()), fourq.artists
    with step("int8 export", timings):
        export = export_checkpoint(
            out / "final" / "last.pt", formats=["onnx"], int8=True, calib=fourq.manifest,
            out=out / "export", name=DEFAULT_MODEL, force=True, cache=out / "features",
            workers=args.workers, provenance=provenance(scores, n, artists),
            temperature=temperature,
        )  # fmt: skip
    model = install(out / "export" / f"{DEFAULT_MODEL}.int8.onnx", Path(args.install))
    facts = {
        "timings": timings, "n": n, "patches": len(data), "cpu": _cpu(),
        "data": DATA_TEXT.format(n=n, artists=artists),
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "command": "python export/default_model.py " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    write_text(args.report, report_markdown(scores, export, model, facts))
    write_text(out / "scores.json", json.dumps({"scores": scores, **facts}, indent=2))
    ba = scores["recording_balanced_accuracy"]
    print(f"{model} ({model.stat().st_size / 1e6:.2f} MB): balanced accuracy {ba['mean']:.3f} "
          f"± {ba['std']:.3f} on {args.folds}-fold CV; report {args.report}")  # fmt: skip
    return 0


def _cpu() -> str:
    """The CPU's model name and core count (``/proc/cpuinfo`` where there is one)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if "model name" in line)
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data4q", required=True, help="the 4Q set (holding MER_audio_taffc_dataset/)")
    p.add_argument("--out", default="build/default-model", help="work folder (runs, features)")
    p.add_argument("--install", default=str(MODELS_DIR), help="where the model file goes")
    p.add_argument("--report", default=str(DOCS / "default-model.md"), help="the report")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes computing features")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


if __name__ == "__main__":
    sys.exit(main())
