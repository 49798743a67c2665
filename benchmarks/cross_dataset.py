#!/usr/bin/env python
"""Trained on one set of recordings, scored on others: how far each model family carries.

    python benchmarks/cross_dataset.py --train /data/4q --score /data/emopia-sitar \\
        /data/emopia-piano --out runs/cross --models squeezenet1_0
    python benchmarks/cross_dataset.py --train /data/emopia-sitar --score /data/4q \\
        --out runs/cross --models squeezenet1_0

Every set is a two-label manifest or folder (happy / sad), e.g. ``musemo datasets 4q``
or ``musemo datasets render-midi`` (EMOPIA). Every recording is cut to its first
``--seconds`` (30: a 4Q clip's length), for training and scoring alike. Rows, per
recording of each scored set: the log-mel baseline; each CNN from scratch
(``--models``, trained on all of ``--train``, the last epoch scored); musicnn zero-shot
(threshold from ``--train``); musicnn probes (logistic regression on recording-mean
embeddings, C by grouped inner CV on ``--train``); with ``--finetune``, musicnn
fine-tuned on ``--train`` (the last epoch scored).

Writes ``OUT/cross_<train>.json`` and ``.md``; the MSD_musicnn embeddings of each set are
kept in ``OUT/embeddings/<set>.npz`` (derived from the audio: keep them private).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from real_music import (
    POSITIVE,
    _fit_score,
    add_finetune_options,
    checkpoint_probabilities,
    finetune_config,
)

from musemo._atomic import atomic_path, write_text
from musemo.data import load_dataset
from musemo.data.subclips import SubclipData
from musemo.features import FeatureSpec, musicnn_spec
from musemo.metrics import evaluation
from musemo.training import TrainConfig, fit
from musemo.training.baseline import fit_baseline
from musemo.training.musicnn import pretrained_musicnn
from musemo.training.probe import embed_subclips, probe_fold, recording_table, zero_shot_fold

LABELS = ("happy", "sad")
PROBES = ("penultimate", "pooled")


def _first_seconds(data: SubclipData, spec: FeatureSpec, seconds: float) -> SubclipData:
    """``data`` with only the sub-clips that end within its first ``seconds`` (and the
    first sub-clip of a shorter recording)."""
    keep = ((data.index[:, 1] + 1) * spec.clip_seconds <= seconds + 1e-6) | (data.index[:, 1] == 0)
    return SubclipData(
        data.recordings, data.features, data.index[keep], data.labels[keep], data.label_names
    )


def _joined(sets: list[SubclipData]) -> tuple[SubclipData, list[np.ndarray]]:
    """One ``SubclipData`` holding every set (groups prefixed by the set), and each set's
    rows in it."""
    recordings, features, index, labels, rows = [], [], [], [], []
    n_rec = n_row = 0
    for k, s in enumerate(sets):
        recordings += [dataclasses.replace(r, group=f"{k}:{r.group}") for r in s.recordings]
        features += s.features
        index.append(s.index + np.array([n_rec, 0]))
        labels.append(s.labels)
        rows.append(np.arange(n_row, n_row + len(s)))
        n_rec, n_row = n_rec + len(s.recordings), n_row + len(s)
    joined = SubclipData(
        recordings, features, np.concatenate(index), np.concatenate(labels), LABELS
    )
    return joined, rows


def _embeddings(data: SubclipData, path: Path, progress: bool) -> dict[str, np.ndarray]:
    """MSD_musicnn's embeddings of every sub-clip of ``data``, cached at ``path``."""
    keys = np.array([f"{data.recordings[r].path}#{s}" for r, s in data.index])
    if path.is_file():
        saved = np.load(path)
        if np.array_equal(saved["keys"], keys):
            return {k: saved[k] for k in saved.files if k != "keys"}
    start = time.perf_counter()
    found = embed_subclips(pretrained_musicnn("MSD_musicnn"), data, progress=progress)
    print(f"embeddings of {len(data)} patches: {time.perf_counter() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        np.savez(tmp, keys=keys, **found)
    return found


def _musicnn_rows(sets_m, names, args, out: Path) -> dict[str, dict[str, dict]]:
    """Zero-shot and probe scores of each scored set, trained on the first set."""
    joined, _ = _joined(sets_m)
    emb = [_embeddings(s, out / "embeddings" / f"{n}.npz", not args.quiet) for s, n in
           zip(sets_m, names)]  # fmt: skip
    emb = {k: np.concatenate([e[k] for e in emb]) for k in emb[0]}
    table, labels, ids = recording_table(joined, emb)
    positive = labels == LABELS.index(POSITIVE)
    groups = np.array([joined.recordings[i].group for i in ids])
    owner = np.repeat(np.arange(len(sets_m)), [len(s.recordings) for s in sets_m])[ids]
    train = np.flatnonzero(owner == 0)
    rows: dict[str, dict[str, dict]] = {}
    for k, name in enumerate(names[1:], start=1):
        val = np.flatnonzero(owner == k)
        rows.setdefault("musicnn zero-shot (p(happy) - p(sad))", {})[name] = zero_shot_fold(
            table, positive, train, val
        )
        for features in PROBES:
            rows.setdefault(f"musicnn probe ({features})", {})[name] = probe_fold(
                table, positive, groups, train, val, features=features, seed=args.seed
            )
    return rows


def _trained_scores(joined, parts, names, spec, config, run: Path, quiet: bool) -> dict:
    """``config`` trained on the first set (the last epoch kept), scored on every other."""
    fit(joined, parts[0], parts[1], spec, config, run, resume=True, progress=not quiet)
    scores = {}
    for k, name in enumerate(names[1:], start=1):
        probs = checkpoint_probabilities(run / "last.pt", joined, parts[k])
        ev = evaluation(probs, joined.labels[parts[k]], joined.index[parts[k], 0], LABELS)
        scores[name] = _fit_score(ev)
    return scores


def _cnn_rows(sets_c, names, spec, args, out: Path) -> dict[str, dict[str, dict]]:
    """The baseline's and each CNN's scores of each scored set, trained on the first."""
    joined, parts = _joined(sets_c)
    rows: dict[str, dict[str, dict]] = {}
    for k, name in enumerate(names[1:], start=1):
        rows.setdefault("baseline (log-mel stats + logistic regression)", {})[name] = _fit_score(
            fit_baseline(joined, parts[0], parts[k], seed=args.seed)
        )
    for model in args.models:
        config = TrainConfig(model=model, epochs=args.epochs, seed=args.seed)
        run = out / model / f"from_{names[0]}"
        rows[f"{model} from scratch"] = _trained_scores(
            joined, parts, names, spec, config, run, args.quiet
        )
    return rows


def _finetuned_row(sets_m, names, spec, args, out: Path) -> dict[str, dict[str, dict]]:
    """musicnn fine-tuned on the first set, scored on each other."""
    joined, parts = _joined(sets_m)
    config = finetune_config(args)
    run = out / "musicnn" / f"from_{names[0]}"
    return {
        "musicnn fine-tuned": _trained_scores(joined, parts, names, spec, config, run, args.quiet)
    }


def _table(rows: dict[str, dict[str, dict]], names: list[str], title: str) -> str:
    head = " | ".join(f"{n}: balanced acc. | {n}: ROC AUC" for n in names[1:])
    lines = [title, "", f"| model | {head} |", "|---" * (1 + 2 * len(names[1:])) + "|"]
    for model, scored in rows.items():
        cells = " | ".join(
            f"{scored[n]['balanced_accuracy']:.3f} | {scored[n]['roc_auc']:.3f}" for n in names[1:]
        )
        lines.append(f"| {model} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [args.train, *args.score]
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise SystemExit(f"the sets need folders of different names, not {names}")
    load = dict(cache=args.cache, workers=args.workers, progress=not args.quiet, label_names=LABELS)
    m_spec = musicnn_spec()
    c_spec = FeatureSpec(sample_rate=22050, n_mels=64)
    sets_m = [
        _first_seconds(load_dataset(p, m_spec, **load)[0], m_spec, args.seconds) for p in paths
    ]
    sets_c = [
        _first_seconds(load_dataset(p, c_spec, **load)[0], c_spec, args.seconds) for p in paths
    ]
    rows = _cnn_rows(sets_c, names, c_spec, args, out)
    rows.update(_musicnn_rows(sets_m, names, args, out))
    if args.finetune:
        rows.update(_finetuned_row(sets_m, names, m_spec, args, out))
    counts = ", ".join(f"{n} {len(s.recordings)}" for n, s in zip(names, sets_m))
    title = (
        f"Trained on {names[0]}, scored on {', '.join(names[1:])}; recordings: {counts}; "
        f"first {args.seconds:g} s of each, per recording"
    )
    stem = out / f"cross_{names[0]}"
    write_text(stem.with_suffix(".json"), json.dumps({"title": title, "rows": rows}, indent=2))
    write_text(stem.with_suffix(".md"), _table(rows, names, title))
    print(_table(rows, names, title))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="the set to train on")
    p.add_argument("--score", nargs="+", required=True, help="the sets to score")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cache", default=str(Path.home() / ".cache/musemo/features"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=30.0, help="of each recording, from its start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", nargs="*", default=[], help="CNNs to train from scratch")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the CNNs")
    add_finetune_options(p)
    p.add_argument("--quiet", action="store_true")
    return p


if __name__ == "__main__":
    sys.exit(main())
