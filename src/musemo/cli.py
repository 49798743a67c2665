"""The ``musemo`` command line: demo, features, train, cache, evaluate, export, infer."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import AudioError, ParameterError


def _feature_spec(args: argparse.Namespace):
    from .features.spec import FeatureSpec

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


def cmd_features(args: argparse.Namespace) -> int:
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


def cmd_train(args: argparse.Namespace) -> int:
    from .data.splits import holdout_split
    from .training.experiments import compare_models, markdown_table
    from .training.loop import TrainConfig, fit
    from .training.models import MODELS

    spec = _feature_spec(args)
    config = TrainConfig(
        model=MODELS[0] if args.model == "all" else args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weights=args.weights,
        head=args.head,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        augment=not args.no_augment,
        shift=not args.no_shift,
        mixup=args.mixup,
    )
    from .training.distributed import world

    if world().size > 1 and (args.folds or args.compare or args.model == "all"):
        raise ParameterError(
            "under torchrun, train one model on one split (no --folds, --compare, all)"
        )
    data = _load_data(args, spec)
    if args.folds:
        from .training.experiments import cross_validate, crossval_table

        models = MODELS if args.model == "all" else (args.model,)
        mode = "grouped" if args.split == "both" else args.split
        summary = cross_validate(
            data,
            spec,
            models,
            config,
            args.out,
            k=args.folds,
            mode=mode,
            progress=not args.quiet,
            resume=args.resume,
        )
        print(crossval_table(summary))
        return 0
    if args.model == "all" or args.compare:
        models = MODELS if args.model == "all" else (args.model,)
        modes = ("grouped", "random") if args.split == "both" else (args.split,)
        rows = compare_models(
            data,
            spec,
            models,
            config,
            args.out,
            split_modes=modes,
            val_fraction=args.val_fraction,
            progress=not args.quiet,
            resume=args.resume,
        )
        print(markdown_table(rows))
        return 0
    mode = "grouped" if args.split == "both" else args.split
    train, val = holdout_split(data, val_fraction=args.val_fraction, mode=mode, seed=args.seed)
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
    )
    if not metrics:  # a torchrun process other than rank 0
        return 0
    final = metrics["final"]
    print(
        f"{config.model} ({mode} split, epoch {final['epoch']}): "
        f"sub-clip accuracy {final['subclip']['accuracy']:.3f}, "
        f"recording accuracy {final['recording']['accuracy']:.3f} -> {args.out}"
    )
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    _load_data(args, _feature_spec(args))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
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
    ev = evaluation(probs, data.labels, data.index[:, 0], data.label_names)
    ev["loss"] = loss
    print(
        f"{state['model']} on {args.data}: sub-clip accuracy {ev['subclip']['accuracy']:.3f} "
        f"(n={ev['subclip']['n']}), recording accuracy {ev['recording']['accuracy']:.3f} "
        f"(n={ev['recording']['n']})"
    )
    if args.json:
        write_text(args.json, json.dumps(ev, indent=2))
    return 0


def cmd_builtin(args: argparse.Namespace) -> int:
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


def cmd_render_midi(args: argparse.Namespace) -> int:
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


def cmd_export(args: argparse.Namespace) -> int:
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
    )
    print(report_markdown(report))
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
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
        help="modules left in float in int8 files, e.g. features.0 (default: the "
        "architecture's sensitive stem for mobilenet_v2, none for the others; 'none': none)",
    )
    p.add_argument("--out", help="output folder (default: the checkpoint's)")
    p.add_argument("--name", help="file name stem (default: the architecture)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument("--cache", default=str(default_cache()), help="feature cache folder")
    p.add_argument("--workers", type=int, default=1, help="processes computing features")
    p.set_defaults(func=cmd_export)


def cmd_infer(args: argparse.Namespace) -> int:
    import json
    import logging
    import warnings

    from .edge.classifier import Classifier

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    clf = Classifier(
        args.model, threads=args.threads, hop_seconds=args.hop, pad_short=not args.no_pad
    )
    if args.live:
        return _infer_live(clf, args)
    if not args.files:
        raise ParameterError("give audio files to classify, or --live")
    failed = 0
    results = []
    for path in args.files:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = clf.predict_file(path)
        except (AudioError, ParameterError, OSError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        results.append(result.to_dict())
        if not args.json:
            p = result.probabilities[result.label]
            windows = " ".join(w.label or "-" for w in result.windows)
            print(f"{path}: {result.label} ({p:.2f}) over {len(result.windows)} windows: {windows}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _infer_live(clf, args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .edge.live import classify_live, microphone

    device = int(args.device) if args.device and args.device.isdigit() else args.device
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


def add_infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an exported .onnx or .tflite model (musemo-export)")
    p.add_argument("files", nargs="*", help="audio files to classify")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--threads", type=int, default=1, help="inference threads")
    p.add_argument("--hop", type=float, help="seconds between windows (default: the model's)")
    p.add_argument("--no-pad", action="store_true", help="refuse audio shorter than one window")
    p.add_argument("--live", action="store_true", help="classify the microphone (musemo[live])")
    p.add_argument("--device", help="input device name or index for --live")
    p.add_argument("--seconds", type=float, help="stop --live after this much audio")
    p.set_defaults(func=cmd_infer)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        args.out,
        repeats=args.repeats,
        per_raga=args.per_raga,
        epochs=args.epochs,
        train=not args.features_only,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musemo", description="Music emotion recognition toolkit."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo on the built-in recording")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--repeats", type=int, default=10, help="timing repeats (default: 10)")
    demo.add_argument("--per-raga", type=int, default=8, help="recordings per raga (default: 8)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    demo.add_argument("--features-only", action="store_true", help="skip the training part")
    demo.set_defaults(func=cmd_demo)

    feats = sub.add_parser("features", help="mel spectrograms of audio files to .npy (and .png)")
    feats.add_argument("files", nargs="+", help="audio files (WAV, FLAC, OGG, MP3)")
    feats.add_argument("--out", required=True, help="output folder")
    feats.add_argument("--plot", action="store_true", help="also write a PNG per file")
    feats.add_argument("--spec", help="feature spec JSON (overrides the options below)")
    feats.add_argument(
        "--sr", type=int, default=44100, help="sample rate to resample to (default 44100)"
    )
    feats.add_argument("--n-fft", type=int, default=2048)
    feats.add_argument("--hop-length", type=int, default=512)
    feats.add_argument("--n-mels", type=int, default=128)
    feats.add_argument("--power", action="store_true", help="linear power instead of dB")
    feats.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    feats.set_defaults(func=cmd_features)

    def spec_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spec", help="feature spec JSON (default: the paper's settings)")
        p.add_argument("--sr", type=int, default=44100)
        p.add_argument("--n-fft", type=int, default=2048)
        p.add_argument("--hop-length", type=int, default=512)
        p.add_argument("--n-mels", type=int, default=128)
        p.add_argument("--clip-seconds", type=float, default=5.0, help="sub-clip length")
        p.add_argument(
            "--loudness",
            type=float,
            default=None,
            metavar="DBFS",
            help="scale each recording to this RMS level (e.g. -20) before training",
        )
        p.add_argument("--power", action="store_true", help=argparse.SUPPRESS)

    def data_options(p: argparse.ArgumentParser, *, device: bool = True) -> None:
        p.add_argument(
            "--data",
            required=True,
            help="folder of label folders (ROOT/<label>/*.wav) or a CSV manifest",
        )
        p.add_argument("--cache", default=str(default_cache()), help="feature cache folder")
        p.add_argument("--workers", type=int, default=2, help="processes computing features")
        p.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
        p.add_argument(
            "--allow-outside-root",
            action="store_true",
            help="read manifest paths that leave the manifest's folder (../, absolute)",
        )
        if device:
            p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--quiet", action="store_true")

    from .training.models import HEADS, MODELS

    train = sub.add_parser("train", help="train a CNN (or all four) on labelled recordings")
    data_options(train)
    train.add_argument("--model", default="squeezenet1_0", choices=(*MODELS, "all"))
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument(
        "--lr", type=float, default=None, help="AdamW learning rate (default: per model)"
    )
    train.add_argument("--weights", default="none", help="none, imagenet or a .pth file")
    train.add_argument("--head", default="replace", choices=HEADS)
    train.add_argument(
        "--split",
        default="grouped",
        choices=("grouped", "random", "both"),
        help="grouped by recording (honest), random sub-clips (the paper's), or both",
    )
    train.add_argument("--val-fraction", type=float, default=0.15)
    train.add_argument(
        "--folds",
        type=int,
        default=0,
        help="k-fold cross-validation (with the baseline) instead of one split",
    )
    train.add_argument(
        "--compare",
        action="store_true",
        help="also train the baseline and write a comparison table",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/train", help="run folder")
    train.add_argument("--resume", action="store_true", help="continue the run (or runs) in --out")
    train.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    train.add_argument("--no-augment", action="store_true", help="no SpecAugment masking")
    train.add_argument(
        "--no-shift",
        action="store_true",
        help="read training sub-clips where they were cut (no random offsets along the recording)",
    )
    train.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        metavar="ALPHA",
        help="mixup with Beta(ALPHA, ALPHA) weights (e.g. 0.2; default off)",
    )
    spec_options(train)
    train.set_defaults(func=cmd_train)

    cache = sub.add_parser(
        "cache",
        help="compute a data set's features into the cache (train does it first); resumable",
    )
    data_options(cache, device=False)
    spec_options(cache)
    cache.set_defaults(func=cmd_cache)

    datasets = sub.add_parser("datasets", help="make data sets to train on")
    dsub = datasets.add_subparsers(dest="dataset_command", required=True)
    builtin = dsub.add_parser("builtin", help="write the synthetic sitar-like raga set")
    builtin.add_argument("root", help="output folder")
    builtin.add_argument("--per-raga", type=int, default=4, help="recordings per raga (6 ragas)")
    builtin.add_argument("--seconds", type=float, default=30.0)
    builtin.add_argument("--seed", type=int, default=0)
    builtin.add_argument("--quiet", action="store_true")
    builtin.set_defaults(func=cmd_builtin)
    render = dsub.add_parser(
        "render-midi", help="render labelled MIDI (e.g. EMOPIA Q1/Q3) to audio with FluidSynth"
    )
    render.add_argument("src", help="folder or .zip of .mid files (EMOPIA names: Q<k>_<song>_<n>)")
    render.add_argument("out", help="output folder (<label>/<name>.wav and manifest.csv)")
    render.add_argument(
        "--program",
        default="104",
        help="General MIDI program for every channel, from 0 (104 = sitar), or keep",
    )
    render.add_argument("--soundfont", help="a General MIDI .sf2 (default: fluid-soundfont-gm)")
    render.add_argument("--sr", type=int, default=44100)
    render.add_argument(
        "--release",
        type=float,
        default=0.5,
        help="seconds kept after the MIDI ends (sitar rings for ~6 s)",
    )
    render.add_argument("--workers", type=int, default=2)
    render.add_argument("--quiet", action="store_true")
    render.set_defaults(func=cmd_render_midi)

    ev = sub.add_parser("evaluate", help="score a checkpoint on a data set")
    ev.add_argument("checkpoint")
    data_options(ev)
    ev.add_argument("--json", help="write the scores to this file")
    ev.set_defaults(func=cmd_evaluate)

    add_export_arguments(
        sub.add_parser("export", help="export a checkpoint to ONNX (fp32 and int8) with a report")
    )
    add_infer_arguments(
        sub.add_parser(
            "infer", help="classify audio files or the microphone with an exported model"
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return _run(build_parser().parse_args(argv))


def export_main(argv: list[str] | None = None) -> int:
    """The ``musemo-export`` command: ``musemo export`` on its own."""
    parser = argparse.ArgumentParser(
        prog="musemo-export", description="export a musemo checkpoint to deployable model files"
    )
    add_export_arguments(parser)
    return _run(parser.parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except (ParameterError, AudioError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
