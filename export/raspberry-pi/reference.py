#!/usr/bin/env python
"""Models, audio and answers to check another machine's edge runtime against.

``make``: on the training machine (torch installed), train a tiny SqueezeNet and
MobileNetV2 on synthetic chords for a few steps and fine-tune the pretrained musicnn
(its wheel fetched: ``musemo fetch musicnn``) for one epoch, export each to int8 ONNX
and TFLite, and write sample audio plus this machine's answers (per-window labels and
probabilities) to ``OUT/reference.json``, with those of the default model that ships
inside musemo (``Classifier()``: its windows and each file's calibrated probabilities).

``check``: on the other machine (the edge runtime only), classify the same audio with
the same files and compare with the reference: the same label wherever the reference
is decisive (top probability >= 0.5 + MARGIN) and probabilities within TOLERANCE; for
the default model, within DEFAULT_TOLERANCE and every file's label the same.

    python export/raspberry-pi/reference.py make OUT
    python export/raspberry-pi/reference.py check OUT
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

TOLERANCE = 0.03  # max |probability difference| between machines, per window
DEFAULT_TOLERANCE = 1e-3  # the same for the shipped default model, windows and files
MARGIN = 0.05  # windows closer than this to the decision boundary may flip
SR = 16000
MODELS = ("squeezenet1_0", "mobilenet_v2", "musicnn")
FILES = [f"{a}.int8.{ext}" for a in MODELS for ext in ("onnx", "tflite")]


def _answers(out: Path) -> dict:
    """Per (model, file): each window's probabilities; for the default model (key
    ``default|FILE``) the file's calibrated probabilities as one more row."""
    from musemo.edge import Classifier

    answers = {}
    for name in (*FILES, "default"):
        clf = Classifier(None if name == "default" else out / name)
        for wav in sorted((out / "audio").rglob("*.wav")):
            result = clf.predict_file(wav)
            rows = [[w.probabilities[k] for k in clf.labels] for w in result.windows]
            if name == "default":
                rows.append([result.probabilities[k] for k in clf.labels])
            answers[f"{name}|{wav.relative_to(out)}"] = rows
    return answers


def _config(model: str):
    from musemo.training import TrainConfig

    if model == "musicnn":
        return TrainConfig(
            model=model, weights="pretrained", frozen=("input_bn", "frontend"), epochs=1,
            batch_size=16, device="cpu",
        )  # fmt: skip
    return TrainConfig(model=model, epochs=2, batch_size=16, device="cpu")


def make(out: Path) -> None:
    import soundfile as sf

    from musemo import FeatureSpec
    from musemo.data import holdout_split, load_dataset
    from musemo.data.synthetic.chords import write_chord_set
    from musemo.data.synthetic.instruments import demo_recording
    from musemo.export import export_checkpoint
    from musemo.features import musicnn_spec
    from musemo.training import fit

    cnn_spec = FeatureSpec(sample_rate=SR, n_fft=1024, hop_length=256, n_mels=64, clip_seconds=1.0)
    # 9 s recordings: three 2.976 s musicnn patches each, enough to calibrate int8
    train_root = write_chord_set(out / "train", per_label=10, seconds=9.0, sr=SR, seed=0)
    write_chord_set(out / "audio", per_label=3, seconds=3.5, sr=SR, seed=1)
    # and the demo's 30 s phrase: ten of the default model's windows
    sf.write(out / "audio" / "phrase.wav", demo_recording(sr=SR, seconds=30.0), SR)
    for model in MODELS:
        spec = musicnn_spec() if model == "musicnn" else cnn_spec
        data, _ = load_dataset(train_root, spec, cache=out / "cache", progress=False)
        train, val = holdout_split(data, val_fraction=0.25, seed=0)
        fit(data, train, val, spec, _config(model), out / "runs" / model, progress=False)
        export_checkpoint(
            out / "runs" / model / "last.pt",
            int8=True,
            calib=train_root,
            calib_size=48,
            cache=out / "cache",
            out=out,
            force=True,
        )
    reference = {"machine": platform.machine(), "answers": _answers(out)}
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"reference of {len(reference['answers'])} (model, file) pairs written to {out}")


def check(out: Path) -> int:
    reference = json.loads((out / "reference.json").read_text())
    here = _answers(out)
    worst, flips, windows = {"exported": 0.0, "default": 0.0}, [], 0
    for key, want in reference["answers"].items():
        got, want = np.array(here[key]), np.array(want)
        windows += len(want)
        kind = "default" if key.startswith("default|") else "exported"
        worst[kind] = max(worst[kind], float(np.abs(got - want).max()))
        decisive = want.max(1) >= 0.5 + MARGIN
        if kind == "default":  # the file's label (the last row) must not flip at all
            decisive[-1] = True
        flipped = decisive & (got.argmax(1) != want.argmax(1))
        flips += [f"{key} row {i}" for i in np.flatnonzero(flipped)]
    print(
        f"{platform.machine()} against {reference['machine']}: {len(here)} (model, file) "
        f"pairs, {windows} rows; largest probability difference {worst['exported']:.4f} "
        f"(tolerance {TOLERANCE}), with the default model {worst['default']:.2e} "
        f"(tolerance {DEFAULT_TOLERANCE:g}); label flips: {len(flips)}"
    )
    for f in flips:
        print(f"  flipped: {f}")
    close = worst["exported"] <= TOLERANCE and worst["default"] <= DEFAULT_TOLERANCE
    return 0 if close and not flips else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    target = Path(sys.argv[2])
    if sys.argv[1] == "make":
        target.mkdir(parents=True, exist_ok=True)
        make(target)
    else:
        sys.exit(check(target))
