"""The ``musemo`` command line: demo, features, train, cache, evaluate, export, infer."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._version import __version__
from .errors import AudioError, MusemoError, ParameterError

# The feature options' defaults (the paper's features); musicnn refuses any other value.
_SPEC_DEFAULTS = {
    "sr": 44100, "n_fft": 2048, "hop_length": 512, "n_mels": 128, "power": False,
    "clip_seconds": 5.0,
}  # fmt: skip


def _musicnn_spec(args: argparse.Namespace):
    from .features.spec import musicnn_spec

    changed = [
        "--" + k.replace("_", "-") for k, v in _SPEC_DEFAULTS.items() if getattr(args, k, v) != v
    ]
    if changed:
        raise ParameterError(
            f"musicnn's features are its own (16 kHz, 96 mels, 187-frame patches): drop "
            f"{', '.join(changed)}"
        )
    return musicnn_spec(loudness_dbfs=getattr(args, "loudness", None))


def _feature_spec(args: argparse.Namespace):
    from .features.spec import FeatureSpec

    if args.spec == "musicnn" or (not args.spec and getattr(args, "model", None) == "musicnn"):
        return _musicnn_spec(args)
    if args.spec:
        return FeatureSpec.from_json(Path(args.spec).read_text(encoding="utf-8"))
    return FeatureSpec(
        sample_rate=args.sr,
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        db=not args.power,
        clip_seconds=getattr(args, "clip_seconds", 5.0),
        loudness_dbfs=getattr(args, "loudness", None),
    )


def _cmd_features(args: argparse.Namespace) -> int:
    from ._atomic import save_npy, write_text
    from ._progress import progress_bar
    from .audio import load_audio
    from .features.extractor import MelExtractor

    spec = _feature_spec(args)
    files = [Path(f) for f in args.files]
    stems = [f.stem for f in files]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        print(
            f"error: several inputs share the name {', '.join(clashes)}; outputs would overwrite "
            "each other",
            file=sys.stderr,
        )
        return 2
    if args.plot:
        from .plotting import plot_melspectrogram
    out = Path(args.out)
    extractor = MelExtractor(spec)
    write_text(out / "feature_spec.json", spec.to_json() + "\n")
    failures = []
    for path in progress_bar(files, desc="features", unit="file", show=not args.quiet):
        try:
            y, sr = load_audio(path, sr=spec.sample_rate)
            S = extractor.compute(y, sr=sr)
        except (OSError, AudioError, ParameterError) as exc:
            failures.append(f"{path}: {exc}")
            continue
        save_npy(out / f"{path.stem}.npy", S)
        if args.plot:
            plot_melspectrogram(S, spec, out / f"{path.stem}.png", title=path.name)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    done = len(files) - len(failures)
    if not args.quiet:
        print(f"{done} of {len(files)} files -> {out}")
    return 1 if failures else 0


def default_cache() -> Path:
    """Where features are cached unless --cache says otherwise."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "musemo" / "features"


def _load_data(args: argparse.Namespace, spec, label_names=None):
    from .data.subclips import load_dataset
    from .training.distributed import barrier, world

    w = world()
    if not w.main:
        barrier(w)  # under torchrun, rank 0 fills the feature cache first
    data, report = load_dataset(
        args.data,
        spec,
        cache=args.cache,
        workers=args.workers,
        progress=not args.quiet and w.main,
        strict=args.strict,
        label_names=label_names,
        allow_outside_root=args.allow_outside_root,
        run_jobs=_run_jobs(args),
    )
    if w.main:
        barrier(w)
    else:
        return data
    for path, why in report.failed:
        print(f"skipped: {path}: {why}", file=sys.stderr)
    if not args.quiet:
        counts = ", ".join(
            f"{name} {int((data.labels == k).sum())}" for k, name in enumerate(data.label_names)
        )
        print(
            f"{len(data.recordings)} recordings, {len(data)} sub-clips ({counts}); features: "
            f"{report.computed} computed, {report.reused} from the cache, "
            f"{len(report.failed)} skipped"
        )
    return data


def _train_config(args: argparse.Namespace):
    from .training.loop import TrainConfig
    from .training.models import CNNS

    model = CNNS[0] if args.model == "all" else args.model
    weights = args.weights or ("pretrained" if model == "musicnn" else "none")
    return TrainConfig(
        model=model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weights=weights,
        head=args.head,
        backbone_lr_scale=args.backbone_lr_scale,
        frozen=tuple(args.freeze),
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        augment=not args.no_augment,
        shift=not args.no_shift,
        mixup=args.mixup,
        probe=args.probe,
        aggregate=args.aggregate,
        distill_temperature=args.distill_temperature,
        distill_alpha=args.distill_alpha,
        distill_features=args.distill_features,
        axes=bool(args.auxiliary),
    )


def _check_train_request(args: argparse.Namespace) -> None:
    from .training.distributed import world

    several = args.folds or args.compare or args.model == "all"
    if world().size > 1 and several:
        raise ParameterError(
            "under torchrun, train one model on one split (no --folds, --compare, all)"
        )
    if args.val_fraction == 0 and several:
        raise ParameterError(
            "--val-fraction 0 trains one final model on everything, with nothing to score: "
            "leave out --folds, --compare and all (cross-validate the same settings first)"
        )
    if args.threads is not None and args.threads < 1:
        raise ParameterError(f"--threads {args.threads}: at least 1 (or leave it out to adapt)")
    if args.unlabelled and not args.teacher:
        raise ParameterError("--unlabelled audio is learnt from a teacher: add --teacher")
    if args.distill_features and not args.teacher:
        raise ParameterError("--distill-features learns a teacher's features: add --teacher")
    if args.auxiliary and not args.probe:
        raise ParameterError(
            "--auxiliary recordings teach the probe valence and arousal: add --probe"
        )
    for option, given in (("--teacher", args.teacher), ("--init", args.init)):
        if given and (args.compare or args.model == "all" or args.split != "grouped"):
            raise ParameterError(
                f"{option} trains one model on grouped splits: leave out --compare, all and "
                "--split random/both"
            )
    if args.split == "both" and not several:
        raise ParameterError(
            "--split both trains on both kinds of split: add --compare (a table beside the "
            "baseline) or --folds K, or choose --split grouped or random"
        )


def _cmd_train(args: argparse.Namespace) -> int:
    _check_train_request(args)
    spec, config = _feature_spec(args), _train_config(args)
    data = _load_data(args, spec)
    if args.unlabelled or args.auxiliary:
        data = _with_extra(args, data, spec)
    modes = ("grouped", "random") if args.split == "both" else (args.split,)
    if args.folds:
        return _train_folds(args, data, spec, config, modes)
    if args.model == "all" or args.compare:
        return _train_comparison(args, data, spec, config, modes)
    return _train_one(args, data, spec, config, modes[0])


def _run_jobs(args: argparse.Namespace):
    """What computes missing features: worker processes here, or Ray tasks (``--ray``;
    under torchrun, rank 0's: the others find the cache full)."""
    from .training.distributed import world

    if args.ray is None or not world().main:
        from .data.pool import for_each

        return for_each
    from .scale import ray_jobs

    return ray_jobs(args.ray or None)


def _with_extra(args, data, spec):
    """``data`` followed by the sub-clips of the ``--unlabelled`` audio (labels ignored) or
    of the ``--auxiliary`` recordings (4Q's other quadrants, labels kept)."""
    from .data import gather, load_recordings, unlabelled_recordings
    from .data.fourq import QUADRANT_AXES

    sources, read = args.unlabelled, unlabelled_recordings
    if args.auxiliary:
        sources, read = args.auxiliary, load_recordings
    recordings = [r for source in sources
                  for r in read(source, allow_outside_root=args.allow_outside_root)]  # fmt: skip
    others = [q for q in QUADRANT_AXES if q not in data.label_names] if args.auxiliary else []
    extra, report = gather(
        recordings, spec, data.label_names, cache=args.cache, workers=args.workers,
        progress=not args.quiet, strict=args.strict, source=" ".join(sources), auxiliary=others,
        run_jobs=_run_jobs(args),
    )  # fmt: skip
    for path, why in report.failed:
        print(f"skipped: {path}: {why}", file=sys.stderr)
    if not args.quiet:
        what = "auxiliary" if args.auxiliary else "unlabelled"
        print(f"{what}: {len(extra.recordings)} recordings, {len(extra)} sub-clips")
    return data.extended(extra)


def _models(args: argparse.Namespace) -> tuple[str, ...]:
    from .training.models import CNNS

    return CNNS if args.model == "all" else (args.model,)


def _teacher_load(args) -> dict:
    """``teacher_targets``' options from the command line."""
    return {
        "cache": args.cache, "device": args.device, "workers": args.workers,
        "progress": not args.quiet, "features": args.distill_features > 0,
    }  # fmt: skip


def _fold_teachers(args, data, spec, config) -> list:
    """Each fold's teacher outputs (``--teacher CV_FOLDER --folds K``)."""
    from .data.splits import kfold_splits
    from .training.distill import fold_teachers, teacher_targets

    folds = kfold_splits(data, k=args.folds, mode="grouped", seed=config.seed)
    return teacher_targets(fold_teachers(args.teacher, data, folds), data, spec,
                           **_teacher_load(args))  # fmt: skip


def _fold_inits(args, data, config) -> list | None:
    """Each fold's starting checkpoint (``--init CV_FOLDER --folds K``)."""
    from .data.splits import kfold_splits
    from .training.checkpoints import fold_checkpoints

    if not args.init:
        return None
    folds = kfold_splits(data, k=args.folds, mode="grouped", seed=config.seed)
    return fold_checkpoints(args.init, data, folds, "--init")


def _train_folds(args, data, spec, config, modes) -> int:
    """k-fold cross-validation for each split mode (one folder each when there are two)."""
    from .training.experiments import cross_validate, crossval_table

    teachers = _fold_teachers(args, data, spec, config) if args.teacher else None
    inits = _fold_inits(args, data, config)
    for mode in modes:
        summary = cross_validate(
            data,
            spec,
            _models(args),
            config,
            Path(args.out) / mode if len(modes) > 1 else args.out,
            k=args.folds,
            mode=mode,
            progress=not args.quiet,
            resume=args.resume,
            teachers=teachers,
            inits=inits,
            threads=args.threads,
        )
        print(crossval_table(summary))
    return 0


def _train_comparison(args, data, spec, config, modes) -> int:
    from .training.experiments import compare_models, markdown_table

    rows = compare_models(
        data,
        spec,
        _models(args),
        config,
        args.out,
        split_modes=modes,
        val_fraction=args.val_fraction,
        progress=not args.quiet,
        resume=args.resume,
        threads=args.threads,
    )
    print(markdown_table(rows))
    return 0


def _train_one(args, data, spec, config, mode: str) -> int:
    from .data.splits import holdout_split, with_unlabelled
    from .training.checkpoints import Trained, warn_if_seen
    from .training.loop import fit

    train, val = holdout_split(data, val_fraction=args.val_fraction, mode=mode, seed=args.seed)
    _warn_if_small(data, val, args.val_fraction)
    train = with_unlabelled(data, train, val)
    teacher = init = None
    if args.teacher:
        from .training.distill import Teacher, teacher_targets

        source = Teacher.load(args.teacher, "--teacher")
        warn_if_seen(source, data, val, "--teacher")
        teacher = teacher_targets([source], data, spec, **_teacher_load(args))[0]
    if args.init:
        init = Trained.load(args.init, "--init")
        warn_if_seen(init, data, val, "--init")
    metrics = fit(
        data,
        train,
        val,
        spec,
        config,
        args.out,
        split_mode=mode,
        resume=args.resume,
        progress=not args.quiet,
        teacher=teacher,
        init=init,
        threads=args.threads,
    )
    if not metrics:  # a torchrun process other than rank 0
        return 0
    final = metrics["final"]
    if not final["validated"]:
        print(f"{config.model} (epoch {final['epoch']}): trained on all "
              f"{len(train)} sub-clips, nothing held out -> {args.out}/last.pt")  # fmt: skip
        return 0
    print(
        f"{config.model} ({mode} split, epoch {final['epoch']}): "
        f"sub-clip accuracy {final['subclip']['accuracy']:.3f}, "
        f"recording accuracy {final['recording']['accuracy']:.3f} -> {args.out}"
    )
    return 0


SMALL_VALIDATION = 20  # recordings: below it one standard error of accuracy passes 11 points


def _warn_if_small(data, val, val_fraction: float) -> None:
    """Say what a small validation side holds, how little its score means and what to do."""
    import numpy as np

    recordings, first = np.unique(data.index[val, 0], return_index=True)
    if not 0 < len(recordings) < SMALL_VALIDATION:
        return
    counts = np.bincount(data.labels[val][first], minlength=len(data.label_names))
    held = ", ".join(f"{name} {count}" for name, count in zip(data.label_names, counts))
    print(
        f"warning: validation holds {len(recordings)} recordings ({held}): at that size its "
        f"accuracy is noise (one standard error up to ±{50 / np.sqrt(len(recordings)):.0f} "
        f"points); --val-fraction (now {val_fraction:g}) sets the share held out, "
        "--val-fraction 0 trains on every recording with nothing to score, and --folds K "
        "scores each recording once",
        file=sys.stderr,
    )


def _cmd_cache(args: argparse.Namespace) -> int:
    _load_data(args, _feature_spec(args))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ._atomic import write_text
    from .features.spec import FeatureSpec
    from .metrics import evaluation
    from .training.checkpoints import load_checkpoint, model_from_checkpoint
    from .training.loop import predict, resolve_device

    state = load_checkpoint(args.checkpoint)
    spec = FeatureSpec.from_dict(state["spec"])
    data = _load_data(args, spec, label_names=state["labels"])
    device = resolve_device(args.device)
    model = model_from_checkpoint(state).to(device)
    rows = np.arange(len(data))
    probs, loss = predict(model, data, rows, spec, device)
    aggregate = state["config"].get("aggregate", "probabilities")
    ev = evaluation(probs, data.labels, data.index[:, 0], data.label_names, aggregate=aggregate)
    ev["loss"] = loss
    print(
        f"{state['model']} on {args.data}: sub-clip accuracy {ev['subclip']['accuracy']:.3f} "
        f"(n={ev['subclip']['n']}), recording accuracy {ev['recording']['accuracy']:.3f} "
        f"(n={ev['recording']['n']}), its calibration error (ECE) {ev['recording']['ece']:.3f}"
    )
    if args.json:
        write_text(args.json, json.dumps(ev, indent=2))
    return 0


def _cmd_builtin(args: argparse.Namespace) -> int:
    from .data.synthetic.ragas import make_builtin_dataset

    root = make_builtin_dataset(
        args.root,
        per_raga=args.per_raga,
        seconds=args.seconds,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(f"built-in raga set (synthetic) -> {root} (manifest.csv, README.txt)")
    return 0


def _cmd_render_midi(args: argparse.Namespace) -> int:
    from .data.synthetic.midi import RenderToolError, render_midi

    program = None if args.program == "keep" else int(args.program)
    try:
        result = render_midi(
            args.src,
            args.out,
            program=program,
            soundfont=args.soundfont,
            sr=args.sr,
            release=args.release,
            workers=args.workers,
            progress=not args.quiet,
        )
    except RenderToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, why in result.skipped:
        print(f"skipped: {name}: {why}", file=sys.stderr)
    print(
        f"{result.written} rendered, {result.existing} already there, "
        f"{result.unlabelled} without a label, {len(result.skipped)} skipped -> "
        f"{result.root / 'manifest.csv'}"
    )
    return 1 if result.skipped else 0


def _cmd_4q(args: argparse.Namespace) -> int:
    from .data.fourq import prepare_4q

    quadrants = [q.strip().upper() for q in args.quadrants.split(",") if q.strip()]
    report = prepare_4q(args.src, args.out, quadrants=quadrants)
    for path in report.unlisted:
        print(f"skipped: {path}: not in the metadata file", file=sys.stderr)
    for song in report.missing:
        print(f"missing: {song}: listed in the metadata, no audio file", file=sys.stderr)
    counts = ", ".join(f"{label} {n}" for label, n in report.counts.items())
    print(
        f"{sum(report.counts.values())} recordings ({counts}) by {report.artists} artists; "
        f"{report.other_quadrants} of other quadrants left out, {len(report.unlisted)} files "
        f"not in the metadata, {len(report.missing)} listed files missing -> {report.manifest}"
    )
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .training.pretrained import add_wheel, download_wheel, find_wheel

    if args.wheel:
        path = add_wheel(args.wheel)
    else:
        path = find_wheel() or download_wheel()
    print(f"musicnn weights: {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import logging

    from .export.pipeline import export_checkpoint
    from .export.report import report_markdown

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    report = export_checkpoint(
        args.checkpoint,
        formats=[f.strip() for f in args.format.split(",")] if args.format else None,
        int8=args.int8,
        calib=args.calib,
        calib_method=args.calib_method,
        calib_size=args.calib_size,
        keep_float=[] if args.keep_float == ["none"] else args.keep_float,
        out=args.out,
        name=args.name,
        force=args.force,
        cache=args.cache,
        workers=args.workers,
        provenance=_provenance_file(args.provenance) if args.provenance else None,
        temperature=args.temperature,
    )
    print(report_markdown(report))
    return 0


def _provenance_file(path: str) -> dict:
    """``--provenance FILE``: a JSON object."""
    import json

    try:
        given = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParameterError(f"--provenance {path}: {exc}") from exc
    if not isinstance(given, dict):
        raise ParameterError(
            f"--provenance {path}: must hold a JSON object, not {type(given).__name__}"
        )
    return given


def _cmd_infer(args: argparse.Namespace) -> int:
    import json
    import logging

    from .edge.classifier import Classifier

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    model, files = _infer_model(args)
    if args.out:
        return _infer_catalog(args, model, files)
    if args.workers is not None or args.ray is not None:
        raise ParameterError(
            "--workers and --ray classify into a table: add --out results.jsonl (.csv, .parquet)"
        )
    clf = Classifier(
        model, threads=args.threads, hop_seconds=args.hop, pad_short=not args.no_pad,
        uncertain_margin=args.uncertain,
    )  # fmt: skip
    if args.live:
        return _infer_live(clf, args)
    if not files:
        raise ParameterError("give audio files or folders to classify, or --live")
    paths, failed = _infer_inputs(files)
    results = []
    for path in paths:
        result = _infer_one(clf, path)
        if result is None:
            failed += 1
            continue
        results.append(result.to_dict())
        if not args.json:
            print(_infer_line(path, result))
    if args.json:
        print(json.dumps(results, indent=2))
    elif len(paths) > 1 or failed:
        print(_infer_summary(results, clf.labels, failed))
    return 1 if failed else 0


def _infer_catalog(args: argparse.Namespace, model: str | None, files: list[str]) -> int:
    """``musemo infer ... --out TABLE``: every file a row, resumable, N workers (on Ray
    with ``--ray``)."""
    from .edge.catalog import classify_catalog

    if args.live or args.json:
        raise ParameterError("--out writes a table of files: leave out --live and --json")
    paths, failed = _infer_inputs(files)
    if not paths:
        raise ParameterError("give audio files, folders or manifests to classify")
    options = {"threads": args.threads, "hop_seconds": args.hop, "pad_short": not args.no_pad,
               "uncertain_margin": args.uncertain}  # fmt: skip
    if args.ray is None:
        workers = args.workers or 1
        report = classify_catalog(paths, args.out, model=model, workers=workers, **options)
        where = f"{workers} worker{'s' * (workers > 1)}"
    else:
        from .scale import classify_on_ray

        report = classify_on_ray(
            paths, args.out, model=model, address=args.ray or None, workers=args.workers,
            **options,
        )  # fmt: skip
        where = f"Ray at {args.ray}" if args.ray else "a local Ray"
    print(f"{report.files} files: {report.classified} classified, {report.failed} failed, "
          f"{report.skipped} already in {report.out}; {report.seconds:.1f} s, "
          f"{report.files_per_second:.1f} files/s classified or failed ({where})")  # fmt: skip
    return 1 if report.failed or failed else 0


def _infer_model(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The model to run (``--model``, or a first input that is a model file; None: the
    default one) and the audio inputs."""
    from .edge.backends import BACKENDS

    inputs = list(args.inputs)
    if inputs and Path(inputs[0]).suffix.lower() in BACKENDS:
        if args.model:
            raise ParameterError(f"two models: --model {args.model} and {inputs[0]}")
        return inputs[0], inputs[1:]
    return args.model, inputs


def _infer_inputs(inputs: list[str]) -> tuple[list[str], int]:
    """The files to classify: each input file, the audio files below each folder and the
    paths a manifest (``.csv`` with a ``path`` column) lists; with how many inputs were
    folders without audio (each said on stderr)."""
    from .audio import AUDIO_SUFFIXES, audio_files
    from .edge.catalog import manifest_paths

    paths, empty = [], 0
    for given in inputs:
        if Path(given).suffix.lower() == ".csv" and Path(given).is_file():
            paths += manifest_paths(given)
            continue
        if not Path(given).is_dir():
            paths.append(given)
            continue
        found = audio_files(given)
        if not found:
            empty += 1
            print(f"error: {given} holds no audio files ({', '.join(AUDIO_SUFFIXES)})",
                  file=sys.stderr)  # fmt: skip
        paths += [str(p) for p in found]
    return paths, empty


def _infer_one(clf, path: str):
    """The result for one file, its warnings and errors said on stderr (None: failed)."""
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = clf.predict_file(path)
    except (AudioError, ParameterError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return result


def _infer_line(path: str, result) -> str:
    """``PATH: happy (0.83), 3 of 4 windows happy: happy happy sad happy``."""
    p = result.probabilities[result.label]
    verdict = (
        f"uncertain ({result.label} {p:.2f})" if result.uncertain else f"{result.label} ({p:.2f})"
    )
    heard = sum(not w.silent for w in result.windows)
    agreeing = sum(w.label == result.label for w in result.windows)
    return f"{path}: {verdict}, {agreeing} of {heard} windows {result.label}: " + _window_labels(
        [w.label or "-" for w in result.windows]
    )


def _window_labels(labels: list[str], most: int = 20) -> str:
    """Each window's label in order (``-``: silent) while there are at most ``most``;
    past that, runs of one label (``happy×312 sad×2 ...``), the first ``most`` of them."""
    if len(labels) <= most:
        return " ".join(labels)
    runs: list[list] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    shown = " ".join(f"{label}×{n}" for label, n in runs[:most])
    rest = len(runs) - most
    return shown + (f" ... ({rest} more runs; --json lists every window)" if rest > 0 else "")


def _infer_summary(results: list[dict], labels: tuple[str, ...], failed: int) -> str:
    """``5 files: happy 3, sad 1, uncertain 1; 1 could not be classified``."""
    counts = {k: sum(r["label"] == k and not r["uncertain"] for r in results) for k in labels}
    counts["uncertain"] = sum(r["uncertain"] for r in results)
    line = f"{len(results)} files: " + ", ".join(f"{k} {n}" for k, n in counts.items())
    return line + (f"; {failed} could not be classified" if failed else "")


def _infer_live(clf, args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .edge.live import classify_live, microphone

    device = args.input_device
    device = int(device) if device and device.isdigit() else device
    chunks, sr = microphone(device=device, seconds=args.seconds)
    every = clf.spec.clip_hop_samples / clf.spec.sample_rate
    print(f"listening at {sr} Hz; a result every {every:g} s (Ctrl-C stops)", file=sys.stderr)

    def show(w) -> None:
        if args.json:
            print(json.dumps(dataclasses.asdict(w)), flush=True)
        elif w.silent:
            print(f"{w.start:8.1f} s  (silence)", flush=True)
        else:
            print(f"{w.start:8.1f} s  {w.label} ({w.probabilities[w.label]:.2f})", flush=True)

    classify_live(clf, chunks, sr=sr, on_result=show)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        args.out,
        repeats=args.repeats,
        per_raga=args.per_raga,
        epochs=args.epochs,
        train=not args.features_only,
    )
    return 0


# ----------------------------------------------------------------------------- options


class _HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help (options without one say in words what
    happens when they are not given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _command(sub, name: str, about: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=about, description=about, formatter_class=_HelpFormatter)
    p.set_defaults(func=func)
    return p


def _quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars or summaries")


def _spec_options(p: argparse.ArgumentParser, *, clips: bool = True) -> None:
    p.add_argument(
        "--spec",
        help="feature spec JSON, or 'musicnn' for musicnn's features (overrides the feature "
        "options below)",
    )
    d = _SPEC_DEFAULTS
    p.add_argument("--sr", type=int, default=d["sr"], help="sample rate to resample to (Hz)")
    p.add_argument("--n-fft", type=int, default=d["n_fft"], help="STFT window length (samples)")
    p.add_argument("--hop-length", type=int, default=d["hop_length"], help="STFT hop (samples)")
    p.add_argument("--n-mels", type=int, default=d["n_mels"], help="mel bands")
    p.add_argument("--power", action="store_true", help="linear power instead of dB")
    if clips:
        p.add_argument(
            "--clip-seconds", type=float, default=d["clip_seconds"], help="sub-clip length (s)"
        )
        p.add_argument(
            "--loudness",
            type=float,
            default=None,
            metavar="DBFS",
            help="scale each recording to this RMS level (e.g. -20) before it is cut "
            "(default: off)",
        )


def _data_options(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="folder of label folders (ROOT/<label>/*.wav) or a CSV manifest",
    )
    p.add_argument("--cache", default=str(default_cache()), help="feature cache folder")
    p.add_argument("--workers", type=int, default=2, help="processes computing features")
    p.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS", help="compute missing features on Ray "
        "first: a local one, or the cluster at ADDRESS (its head's HOST:PORT, or auto; the "
        "data and --cache on storage every node shares; musemo[ray])",
    )  # fmt: skip
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="read manifest paths that leave the manifest's folder (../, absolute)",
    )
    if device:
        p.add_argument("--device", default="auto", help="compute device: auto, cpu, cuda or cuda:N")
    _quiet_option(p)


def _add_demo(sub) -> None:
    p = _command(sub, "demo", "run the demo on the built-in recording", _cmd_demo)
    p.add_argument("--out", default="demo_out", help="output folder")
    p.add_argument("--repeats", type=int, default=10, help="timing repeats")
    p.add_argument("--per-raga", type=int, default=8, help="recordings per raga")
    p.add_argument("--epochs", type=int, default=30, help="training epochs")
    p.add_argument("--features-only", action="store_true", help="skip the training part")


def _add_features(sub) -> None:
    p = _command(
        sub, "features", "mel spectrograms of audio files to .npy (and .png)", _cmd_features
    )
    p.add_argument("files", nargs="+", help="audio files (WAV, FLAC, OGG, MP3)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--plot", action="store_true", help="also write a PNG per file")
    _spec_options(p, clips=False)
    _quiet_option(p)


def _add_train(sub) -> None:
    from .metrics import AGGREGATES
    from .training.models import HEADS, MODELS

    p = _command(
        sub, "train", "train a CNN (or all four) or fine-tune musicnn on labelled recordings",
        _cmd_train,
    )  # fmt: skip
    _data_options(p)
    p.add_argument(
        "--model",
        default="squeezenet1_0",
        choices=(*MODELS, "all"),
        help="network (all: the four CNNs; musicnn: pretrained on the Million Song Dataset, "
        "with its own features)",
    )
    p.add_argument("--epochs", type=int, default=10, help="passes over the training sub-clips")
    p.add_argument("--batch-size", type=int, default=32, help="sub-clips per step")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads, fixed (default: the cores other programs leave free, followed as "
        "they change; a fixed count repeats a run bit for bit)",
    )
    p.add_argument(
        "--lr", type=float, default=None, help="AdamW learning rate (default: the model's own)"
    )
    p.add_argument(
        "--weights",
        help="initial weights: none, imagenet or a .pth for the CNNs; pretrained or none for "
        "musicnn (default: none for the CNNs, pretrained for musicnn)",
    )
    p.add_argument(
        "--freeze",
        nargs="*",
        default=[],
        metavar="MODULE",
        help="modules that do not learn, e.g. input_bn frontend for musicnn (default: none)",
    )
    p.add_argument(
        "--backbone-lr-scale",
        type=float,
        default=0.1,
        help="learning rate of pretrained layers, as a share of --lr",
    )
    p.add_argument(
        "--head",
        default="replace",
        choices=HEADS,
        help="replace the last layer, add one after it (paper), or (musicnn) a last layer "
        "on its embedding and pooled mid-level features (pooled)",
    )
    p.add_argument(
        "--split",
        default="grouped",
        choices=("grouped", "random", "both"),
        help="grouped by recording (honest), random sub-clips (the paper's), or both "
        "(with --compare or --folds)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="held-out share of one split (0: train a final model on everything)",
    )
    p.add_argument(
        "--folds", type=int, default=0, help="k-fold cross-validation with the baseline (0: off)"
    )
    p.add_argument(
        "--compare", action="store_true", help="also train the baseline; write a comparison table"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of splits, shuffling, augmentation")
    p.add_argument("--out", default="runs/train", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run (or runs) in --out")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--no-augment", action="store_true", help="no SpecAugment masking")
    p.add_argument(
        "--no-shift",
        action="store_true",
        help="read training sub-clips where they were cut (no random offsets along the recording)",
    )
    p.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="mixup with Beta(ALPHA, ALPHA) weights (0: off)",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="musicnn: fit the head alone, in closed form, on the frozen pretrained network "
        "(a logistic regression on recording means, C by grouped inner CV; one epoch)",
    )
    p.add_argument(
        "--aggregate",
        default="probabilities",
        choices=AGGREGATES,
        help="a recording's probabilities from its sub-clips': their mean, or the softmax of "
        "their mean log-probability (logits: what a --probe head was fitted to predict); "
        "exported models keep it",
    )
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="start from this trained model's weights to fine-tune it (a checkpoint or run "
        "folder of the same model, labels and features; with --folds, its cross-validation "
        "folder holding fold0, fold1, ...)",
    )
    p.add_argument(
        "--teacher",
        metavar="CHECKPOINT",
        help="distil: learn from this trained model's outputs (a checkpoint or run folder; "
        "with --folds, the teacher's cross-validation folder holding fold0, fold1, ...)",
    )
    p.add_argument(
        "--distill-temperature",
        type=float,
        default=2.0,
        metavar="T",
        help="temperature of the teacher's and the student's probabilities in distillation",
    )
    p.add_argument(
        "--distill-alpha",
        type=float,
        default=0.5,
        metavar="A",
        help="the teacher's share of the loss (1: its outputs alone; the labels' is the rest)",
    )
    p.add_argument(
        "--distill-features",
        type=float,
        default=0.0,
        metavar="W",
        help="also learn what a musicnn teacher's head reads in each window (its standardised "
        "embedding and pooled features, as extra outputs dropped after training), their "
        "squared error weighted W (0: off)",
    )
    p.add_argument(
        "--unlabelled",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="with --teacher: audio without labels to learn from as well (folders of audio "
        "files, or manifests whose labels are ignored); it never validates",
    )
    p.add_argument(
        "--auxiliary",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="with --probe: recordings of 4Q's other quadrants (tense, calm; a manifest or "
        "label folders, e.g. from musemo datasets 4q --quadrants Q2,Q4): the probe learns "
        "valence and arousal apart from all four, happy vs sad scored as their sum; they "
        "never validate",
    )
    _spec_options(p)


def _add_cache(sub) -> None:
    p = _command(
        sub, "cache", "compute a data set's features into the cache (resumable)", _cmd_cache
    )
    _data_options(p, device=False)
    _spec_options(p)


def _add_datasets(sub) -> None:
    datasets = sub.add_parser("datasets", help="make data sets to train on")
    dsub = datasets.add_subparsers(dest="dataset_command", required=True)
    p = _command(dsub, "builtin", "write the synthetic sitar-like raga set", _cmd_builtin)
    p.add_argument("root", help="output folder")
    p.add_argument("--per-raga", type=int, default=4, help="recordings per raga (6 ragas)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each recording")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole set")
    _quiet_option(p)
    p = _command(
        dsub,
        "render-midi",
        "render labelled MIDI (e.g. EMOPIA Q1/Q3) with FluidSynth",
        _cmd_render_midi,
    )
    p.add_argument("src", help="folder or .zip of .mid files (EMOPIA names: Q<k>_<song>_<n>)")
    p.add_argument("out", help="output folder (<label>/<name>.wav and manifest.csv)")
    p.add_argument(
        "--program",
        default="104",
        help="General MIDI program for every channel, from 0 (104 = sitar), or keep",
    )
    p.add_argument("--soundfont", help="a General MIDI .sf2 (default: fluid-soundfont-gm)")
    p.add_argument("--sr", type=int, default=44100, help="sample rate (Hz)")
    p.add_argument(
        "--release",
        type=float,
        default=0.5,
        help="seconds kept after the MIDI ends (a sitar rings ~6 s)",
    )
    p.add_argument("--workers", type=int, default=2, help="processes rendering")
    _quiet_option(p)
    _add_4q(dsub)


def _add_4q(dsub) -> None:
    p = _command(
        dsub,
        "4q",
        "the 4Q audio emotion set (Panda et al. 2018) as a manifest, grouped by artist",
        _cmd_4q,
    )
    p.add_argument("src", help="the data set (holding MER_audio_taffc_dataset/, or that folder)")
    p.add_argument("out", help="output folder (<label>/<song>.mp3 links and manifest.csv)")
    p.add_argument(
        "--quadrants",
        default="Q1,Q3",
        help="quadrants to keep: Q1 happy, Q2 tense, Q3 sad, Q4 calm (Q1,Q2,Q3,Q4: all)",
    )


def _add_fetch(sub) -> None:
    p = _command(
        sub, "fetch", "get pretrained weights into musemo's cache (musicnn: its pip wheel)",
        _cmd_fetch,
    )  # fmt: skip
    p.add_argument("what", choices=("musicnn",), help="which weights")
    p.add_argument("--wheel", help="a copied musicnn-0.1.0 wheel to use instead of downloading")


def _add_evaluate(sub) -> None:
    p = _command(sub, "evaluate", "score a checkpoint on a data set", _cmd_evaluate)
    p.add_argument("checkpoint", help="a musemo checkpoint")
    _data_options(p)
    p.add_argument("--json", help="write the scores to this file")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``musemo export`` and ``musemo-export``."""
    from .export.formats import CALIBRATION_METHODS, FORMATS

    p.add_argument("checkpoint", help="a musemo checkpoint (best.pt or last.pt of a run)")
    p.add_argument(
        "--format",
        help=f"comma-separated formats: {', '.join(FORMATS)} "
        "(default: every format that takes the model)",
    )
    p.add_argument("--int8", action="store_true", help="also write calibrated int8 models")
    p.add_argument("--calib", help="recordings (folder or manifest) to calibrate and score on")
    p.add_argument(
        "--calib-method",
        default="auto",
        help=f"int8 calibration: {', '.join(CALIBRATION_METHODS)} (onnx takes "
        "minmax/percentile/entropy, tflite minmax/histogram; auto tries each and keeps the "
        "closest to fp32 on held-out training sub-clips)",
    )
    p.add_argument("--calib-size", type=int, default=256, help="calibration sub-clips")
    p.add_argument(
        "--keep-float",
        nargs="+",
        metavar="MODULE",
        help="modules left in float in int8 files, e.g. features.0 (default: each format's "
        "default for the architecture, see the README; 'none': none)",
    )
    p.add_argument("--out", help="output folder (default: the checkpoint's)")
    p.add_argument("--name", help="file name stem (default: the architecture)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument("--cache", default=str(default_cache()), help="feature cache folder")
    p.add_argument("--workers", type=int, default=1, help="processes computing features")
    p.add_argument(
        "--provenance", metavar="FILE",
        help="a JSON object stored in every file's metadata: training data, accuracy, terms",
    )  # fmt: skip
    p.add_argument(
        "--temperature", type=float, default=1.0,
        help="show recordings' probabilities at this calibrated temperature (musemo train "
        "--folds writes it to crossval.json)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_export)


def _add_infer(sub) -> None:
    from .edge.classifier import UNCERTAIN_MARGIN

    p = _command(
        sub, "infer", "classify audio files or the microphone (default: the shipped model)",
        _cmd_infer,
    )  # fmt: skip
    p.add_argument(
        "inputs", nargs="*", metavar="[MODEL] FILE",
        help="audio files to classify, folders (their audio files, recursively) or manifests "
        "(.csv with a path column); a first .onnx or .tflite file is the model to run",
    )  # fmt: skip
    p.add_argument(
        "--model", help="an exported .onnx or .tflite model (musemo-export; default: the one "
        "that ships, see musemo models)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument(
        "--out", metavar="TABLE", help="write a row per file to this .jsonl, .csv or .parquet "
        "(a folder of shards) table instead; a rerun skips the files it holds (same content, "
        "same model)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, help="processes classifying for --out (default: 1; with --ray, "
        "one actor per CPU of the cluster)",
    )  # fmt: skip
    p.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS", help="classify for --out on Ray: a "
        "local one, or the cluster at ADDRESS (HOST:PORT of its head, or auto; musemo[ray])",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="inference threads")
    p.add_argument("--hop", type=float, help="seconds between windows (default: the model's)")
    p.add_argument("--no-pad", action="store_true", help="refuse audio shorter than one window")
    p.add_argument(
        "--uncertain", type=float, default=UNCERTAIN_MARGIN, metavar="MARGIN",
        help="say 'uncertain' when the top label's probability leads the next one's by less "
        "than this (two labels: 0.2 is 0.4 < p < 0.6; 0: always a label)",
    )  # fmt: skip
    p.add_argument("--live", action="store_true", help="classify the microphone (musemo[live])")
    p.add_argument(
        "--input-device",
        help="input device name or index for --live (default: the system's default input)",
    )
    p.add_argument(
        "--seconds", type=float, help="stop --live after this much audio (default: never)"
    )


def _add_models(sub) -> None:
    p = _command(sub, "models", "list the models that ship with musemo", _cmd_models)
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _cmd_models(args: argparse.Namespace) -> int:
    import json

    from .edge.shipped import BUILD_HINT, DEFAULT_MODEL, MODELS_DIR, shipped_models

    found = shipped_models()
    if not found:
        print(f"no models ship with this musemo ({MODELS_DIR} holds none): {BUILD_HINT}",
              file=sys.stderr)  # fmt: skip
        return 1
    rows = [_model_row(m, default=m.name == DEFAULT_MODEL) for m in found]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        mark = " (default)" if r["default"] else ""
        print(f"{r['file']}{mark}: {r['architecture']} {r['precision']}, "
              f"{r['bytes'] / 1e6:.2f} MB, labels {'/'.join(r['labels'])}")  # fmt: skip
        for key in ("data", "accuracy"):
            if key in r["provenance"]:
                print(f"  {key}: {r['provenance'][key]}")
    return 0


def _model_row(m, *, default: bool) -> dict:
    """What ``musemo models`` says of one shipped file."""
    return {
        "name": m.name, "file": m.path.name, "default": default, "bytes": m.bytes,
        "architecture": m.info.architecture, "precision": m.info.precision,
        "labels": list(m.info.labels), "provenance": m.info.provenance,
    }  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``musemo`` argument parser, one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="musemo",
        description="Music emotion recognition toolkit.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"musemo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_demo,
        _add_features,
        _add_train,
        _add_cache,
        _add_datasets,
        _add_evaluate,
        _add_fetch,
    ):
        add(sub)
    about = "export a checkpoint to ONNX and TFLite (fp32 and int8) with a report"
    add_export_arguments(
        sub.add_parser("export", help=about, description=about, formatter_class=_HelpFormatter)
    )
    _add_infer(sub)
    _add_models(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``musemo`` command; returns its exit status."""
    return _run(build_parser().parse_args(argv))


def export_main(argv: list[str] | None = None) -> int:
    """The ``musemo-export`` command: ``musemo export`` on its own."""
    parser = argparse.ArgumentParser(
        prog="musemo-export",
        description="export a musemo checkpoint to deployable model files",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"musemo {__version__}")
    add_export_arguments(parser)
    return _run(parser.parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except (MusemoError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
