"""The ``musemo`` command line: ``musemo demo`` and ``musemo features``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import AudioError, ParameterError


def _feature_spec(args: argparse.Namespace):
    from .spec import FeatureSpec

    if args.spec:
        return FeatureSpec.from_json(Path(args.spec).read_text(encoding="utf-8"))
    return FeatureSpec(
        sample_rate=args.sr,
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        db=not args.power,
    )


def cmd_features(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .atomic import save_npy, write_text
    from .audio import load_audio
    from .extractor import MelExtractor

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
    for path in tqdm(files, desc="features", unit="file", disable=args.quiet):
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


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, repeats=args.repeats)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musemo", description="Music emotion recognition toolkit."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo on the built-in recording")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--repeats", type=int, default=10, help="timing repeats (default: 10)")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ParameterError, AudioError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
