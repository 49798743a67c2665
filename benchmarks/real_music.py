#!/usr/bin/env python
"""Every model family on the same folds of real recordings: the README's accuracy table.

Made for the 4Q audio emotion set (``musemo datasets 4q SRC OUT``: Q1 happy / Q3 sad,
grouped by artist), it runs on any two-label manifest. The folds are folds of
recordings (``kfold_splits``), so the CNNs' 5 s sub-clips at 22.05 kHz and musicnn's
3 s patches at 16 kHz are split identically; the script checks that they are.

Rows, per recording: the log-mel baseline; each CNN trained from scratch (``--models``);
musicnn zero-shot (p(happy) - p(sad), threshold from the training folds); musicnn
probes (logistic regression on recording-mean embeddings, C by inner grouped CV);
musicnn fine-tuned (``--finetune``, ``fit`` with the pretrained weights), and that
fine-tuned model averaged with the two-checkpoint probe (the mean of their per-recording
p(happy), threshold 0.5, equal weights fixed beforehand). With ``--auxiliary`` (4Q's
other quadrants, ``musemo datasets 4q SRC OUT --quadrants Q2,Q4``), the two-checkpoint
probe also learns valence and arousal apart from recordings of all four quadrants
(``axes_probe_scores``); an auxiliary recording by an artist of the fold being scored
is left out of that fold's training. With both, the fine-tuned model is also averaged
with that probe (the logistic of its score as p(happy), the same rule).

    python benchmarks/real_music.py --data /data/4q --out runs/4q --models squeezenet1_0
    python benchmarks/real_music.py --data /data/4q --out runs/4q --loudness -20
    python benchmarks/real_music.py --data /data/4q --out runs/4q --auxiliary /data/4q-q2q4

Writes ``OUT/real_music.json`` and ``OUT/real_music.md`` after every fold; the musicnn
embeddings (MSD_musicnn's and MTT_musicnn's, both checkpoints of the wheel) are kept in
``OUT/embeddings.npz`` and ``OUT/mtt.npz`` (derived from the audio: keep them private).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from musemo._atomic import atomic_path, write_text
from musemo.data import kfold_splits, load_dataset
from musemo.data.fourq import QUADRANT_AXES
from musemo.features import FeatureSpec, musicnn_spec
from musemo.metrics import recording_means
from musemo.training import TrainConfig, fit
from musemo.training.baseline import fit_baseline
from musemo.training.checkpoints import load_checkpoint, model_from_checkpoint
from musemo.training.loop import predict, resolve_device
from musemo.training.musicnn import pretrained_musicnn
from musemo.training.probe import (
    PROBE_FEATURES,
    axes_probe_scores,
    embed_subclips,
    fold_scores,
    probe_inputs,
    probe_scores,
    recording_table,
    zero_shot_fold,
)

POSITIVE = "happy"
ENSEMBLE_PROBE = "pooled + MTT_musicnn"  # the probe the fine-tuned model is averaged with


def _embeddings(data, out: Path, progress: bool, stem: str = "") -> dict[str, np.ndarray]:
    """Both checkpoints' embeddings of every patch, the second's keys as
    ``MTT_musicnn/penultimate``; cached in OUT per checkpoint (``STEMembeddings.npz``,
    ``STEMmtt.npz``)."""
    keys = [str(r.path) for r in data.recordings]
    emb = {}
    for checkpoint, path in (("MSD_musicnn", "embeddings.npz"), ("MTT_musicnn", "mtt.npz")):
        path = out / f"{stem}{path}"
        saved = np.load(path) if path.is_file() else None
        if saved is not None and list(saved["paths"]) == keys:
            found = {k: saved[k] for k in saved.files if k != "paths"}
        else:
            start = time.perf_counter()
            found = embed_subclips(pretrained_musicnn(checkpoint), data, progress=progress)
            print(f"{checkpoint} embeddings of {len(data)} patches: "
                  f"{time.perf_counter() - start:.0f} s")  # fmt: skip
            with atomic_path(path) as tmp:
                np.savez(tmp, paths=np.array(keys), **found)
        prefix = "" if checkpoint == "MSD_musicnn" else f"{checkpoint}/"
        emb.update({prefix + k: v for k, v in found.items()})
    return emb


def _auxiliary(args, spec: FeatureSpec, out: Path, load: dict) -> tuple[np.ndarray, ...]:
    """The ``--auxiliary`` recordings' probe inputs, (valence, arousal) and groups."""
    data, _ = load_dataset(args.auxiliary, spec, **load)
    unknown = sorted(set(data.label_names) - set(QUADRANT_AXES))
    if unknown:
        raise SystemExit(f"--auxiliary labels {unknown}: expected 4Q quadrants "
                         f"({', '.join(QUADRANT_AXES)})")  # fmt: skip
    table, labels, ids = recording_table(data, _embeddings(data, out, not args.quiet, "aux_"))
    axes = np.array([QUADRANT_AXES[data.label_names[k]] for k in labels])
    groups = np.array([data.recordings[i].group for i in ids])
    return probe_inputs(table, ENSEMBLE_PROBE), axes, groups


def _axes_fold(table, labels, groups, train, val, aux, seed: int) -> tuple[dict, np.ndarray]:
    """The valence + arousal probe of one fold: its training recordings and the
    auxiliary ones by other artists than the fold's, scored on ``val``; and the
    ``val`` recordings' scores (the sum of the two logits)."""
    x_aux, axes_aux, groups_aux = aux
    x = probe_inputs(table, ENSEMBLE_PROBE)
    other = ~np.isin(groups_aux, groups[val])
    axes = np.array([QUADRANT_AXES[name] for name in labels[train]])
    score, cs = axes_probe_scores(
        np.concatenate([x[train], x_aux[other]]), np.concatenate([axes, axes_aux[other]]),
        np.concatenate([groups[train], groups_aux[other]]), x[val], seed=seed,
    )  # fmt: skip
    positive = labels[val] == POSITIVE
    row = {**fold_scores(score, positive, 0.0), "C": list(cs), "auxiliary": int(other.sum())}
    return row, score


def _recording_folds(data, k: int, seed: int) -> list[tuple[set, set]]:
    """The folds as sets of recording paths (train, val)."""
    rec = data.index[:, 0]
    paths = np.array([str(r.path) for r in data.recordings])
    return [
        (set(paths[np.unique(rec[a])]), set(paths[np.unique(rec[b])]))
        for a, b in kfold_splits(data, k=k, mode="grouped", seed=seed)
    ]


def _rows_of(data, recordings: set) -> np.ndarray:
    paths = np.array([str(r.path) for r in data.recordings])
    return np.flatnonzero(np.isin(paths[data.index[:, 0]], list(recordings)))


def checkpoint_probabilities(path: Path, data, rows: np.ndarray) -> np.ndarray:
    """Class probabilities ``(len(rows), classes)`` of a checkpoint's model, on the CPU."""
    state = load_checkpoint(path)
    spec = FeatureSpec.from_dict(state["spec"])
    probs, _ = predict(model_from_checkpoint(state), data, rows, spec, resolve_device("cpu"))
    return probs


def _recording_positive(data, rows: np.ndarray, probs: np.ndarray, ids: np.ndarray):
    """Each recording's mean p(POSITIVE), in the order of the recording ids ``ids``."""
    found, means, _ = recording_means(probs, data.index[rows, 0])
    if not np.array_equal(found, ids):
        raise SystemExit("the fine-tuned model and the probe scored different recordings")
    return means[:, data.label_names.index(POSITIVE)]


def _fit_score(result: dict) -> dict:
    rec = result["final"]["recording"] if "final" in result else result["recording"]
    return {"balanced_accuracy": rec["balanced_accuracy"], "roc_auc": rec["roc_auc"]}


def _summary(per_fold: dict[str, list[dict]], k: int) -> dict:
    out = {}
    for name, folds in per_fold.items():
        out[name] = {"folds": folds}
        for key in ("balanced_accuracy", "roc_auc"):
            v = np.array([f[key] for f in folds], dtype=float)
            out[name][key] = {"mean": float(v.mean()), "std": float(v.std())}
    return {"k": k, "models": out}


def _table(summary: dict, title: str) -> str:
    lines = [title, "", "| model | balanced accuracy | ROC AUC | folds |", "|---|---|---|---|"]
    for name, m in summary["models"].items():
        b, a = m["balanced_accuracy"], m["roc_auc"]
        lines.append(
            f"| {name} | {b['mean']:.3f} ± {b['std']:.3f} | {a['mean']:.3f} ± {a['std']:.3f} "
            f"| {len(m['folds'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    m_spec = musicnn_spec(loudness_dbfs=args.loudness)
    c_spec = FeatureSpec(sample_rate=22050, n_mels=64, loudness_dbfs=args.loudness)
    load = dict(cache=args.cache, workers=args.workers, progress=progress)
    data_m, _ = load_dataset(args.data, m_spec, **load)
    data_c, _ = load_dataset(args.data, c_spec, **load)
    folds = _recording_folds(data_m, args.folds, args.seed)
    if folds != _recording_folds(data_c, args.folds, args.seed):
        raise SystemExit("the two feature sets got different folds")
    emb = _embeddings(data_m, out, progress)
    table, labels, ids = recording_table(data_m, emb)
    positive = labels == data_m.label_names.index(POSITIVE)
    aux = _auxiliary(args, m_spec, out, load) if args.auxiliary else None
    paths = np.array([str(data_m.recordings[i].path) for i in ids])
    groups = np.array([data_m.recordings[i].group for i in ids])
    per_fold: dict[str, list[dict]] = {}
    title = (
        f"{len(paths)} recordings, {len(set(groups))} groups, {args.folds}-fold grouped CV, "
        f"per recording (loudness: {args.loudness or 'as recorded'})"
    )
    started = time.perf_counter()
    for i, (train_set, val_set) in enumerate(folds[: args.max_folds]):
        train = np.flatnonzero(np.isin(paths, list(train_set)))
        val = np.flatnonzero(np.isin(paths, list(val_set)))
        rows = per_fold
        rows.setdefault("baseline (log-mel stats + logistic regression)", []).append(
            _fit_score(fit_baseline(data_c, _rows_of(data_c, train_set), _rows_of(data_c, val_set)))
        )
        rows.setdefault("musicnn zero-shot (p(happy) - p(sad))", []).append(
            zero_shot_fold(table, positive, train, val)
        )
        probes = {}
        for features in PROBE_FEATURES:
            probes[features], c = probe_scores(
                table, positive, groups, train, val, features=features, seed=args.seed
            )
            rows.setdefault(f"musicnn probe ({features})", []).append(
                {**fold_scores(probes[features], positive[val], 0.5), "C": c}
            )
        if aux is not None:
            names = np.array(data_m.label_names)[labels]
            row, axes_score = _axes_fold(table, names, groups, train, val, aux, args.seed)
            rows.setdefault(f"musicnn probe ({ENSEMBLE_PROBE}), valence + arousal", []).append(row)
        for model in args.models:
            config = TrainConfig(model=model, epochs=args.epochs, seed=args.seed)
            result = fit(
                data_c, _rows_of(data_c, train_set), _rows_of(data_c, val_set), c_spec, config,
                out / model / f"fold{i}", resume=True, progress=progress,
            )  # fmt: skip
            rows.setdefault(f"{model} from scratch", []).append(_fit_score(result))
        if args.finetune:
            run, val_rows = out / "musicnn" / f"fold{i}", _rows_of(data_m, val_set)
            result = fit(
                data_m, _rows_of(data_m, train_set), val_rows, m_spec, finetune_config(args),
                run, resume=True, progress=progress,
            )  # fmt: skip
            rows.setdefault("musicnn fine-tuned", []).append(_fit_score(result))
            probs = checkpoint_probabilities(run / "last.pt", data_m, val_rows)
            tuned = _recording_positive(data_m, val_rows, probs, ids[val])
            rows.setdefault(f"musicnn fine-tuned + probe ({ENSEMBLE_PROBE})", []).append(
                fold_scores((tuned + probes[ENSEMBLE_PROBE]) / 2, positive[val], 0.5)
            )
            if aux is not None:  # the axes score as a probability: its logistic
                both = (tuned + 1 / (1 + np.exp(-axes_score))) / 2
                rows.setdefault("musicnn fine-tuned + valence + arousal probe", []).append(
                    fold_scores(both, positive[val], 0.5)
                )
        summary = _summary(per_fold, args.folds)
        write_text(out / "real_music.json", json.dumps(summary, indent=2))
        write_text(out / "real_music.md", _table(summary, title))
        print(
            f"fold {i + 1}/{args.folds} done at {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    print(_table(summary, title))
    return 0


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    """``--finetune`` and its settings, shared with ``cross_dataset.py``."""
    p.add_argument("--finetune", action="store_true", help="also fine-tune musicnn")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--freeze", nargs="*", default=["input_bn", "frontend"],
                   help="musicnn modules kept frozen while fine-tuning")  # fmt: skip


def finetune_config(args: argparse.Namespace) -> TrainConfig:
    """musicnn from the wheel's weights, trained as ``--finetune`` asks."""
    return TrainConfig(
        model="musicnn", weights="pretrained", epochs=args.finetune_epochs, seed=args.seed,
        frozen=tuple(args.freeze),
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="two-label manifest or folder (happy / sad)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cache", default=str(Path.home() / ".cache/musemo/features"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--max-folds", type=int, default=None, help="stop after this many folds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loudness", type=float, default=None, metavar="DBFS")
    p.add_argument(
        "--auxiliary",
        metavar="MANIFEST",
        help="4Q's other quadrants, for the valence + arousal probe",
    )
    p.add_argument("--models", nargs="*", default=[], help="CNNs to train from scratch")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the CNNs")
    add_finetune_options(p)
    p.add_argument("--quiet", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(main())
