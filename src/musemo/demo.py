"""``musemo demo``: the main job on built-in data, end to end."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ._atomic import atomic_path, write_text
from .audio import load_audio
from .data.synthetic.instruments import demo_recording
from .features.extractor import MelExtractor
from .features.filters import get_window, mel_filters
from .features.spec import FeatureSpec
from .features.spectral import melspectrogram
from .timing import median_cpu_ms


def run_demo(
    out_dir: str | os.PathLike,
    *,
    repeats: int = 10,
    per_raga: int = 8,
    epochs: int = 30,
    train: bool = True,
) -> dict:
    """The main job on built-in data: features of a built-in recording (plotted, and
    timed against librosa and numpy), then a small synthetic raga set, its feature
    cache, SqueezeNet trained on the CPU beside the baseline, grouped and random splits,
    and the trained model exported to int8 and run by the torch-free edge runtime."""
    from .plotting import plot_melspectrogram

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = FeatureSpec()
    wav = out / "demo_recording.wav"
    with atomic_path(wav) as tmp:
        sf.write(
            tmp,
            demo_recording(sr=spec.sample_rate, seconds=30.0),
            spec.sample_rate,
            subtype="FLOAT",
        )
    print(f"1. built-in recording (30 s plucked-string phrase in raga Yaman): {wav}")

    y, sr = load_audio(wav, sr=spec.sample_rate)
    extractor = MelExtractor(spec)
    S = extractor.compute(y, sr=sr)
    png = out / "demo_melspectrogram.png"
    plot_melspectrogram(S, spec, png, title="built-in recording: log-mel spectrogram (musemo)")
    print(f"2. log-mel spectrogram {S.shape} ({extractor.kernels} kernels) plotted: {png}")

    rows = compare(y, sr=sr, repeats=repeats)
    print(
        f"3. speed, single thread, median CPU time for this {len(y) / sr:.0f} s clip "
        f"(n_fft {spec.n_fft}, hop {spec.hop_length}, {spec.n_mels} mels):"
    )
    print(f"   {'method':<28}{'ms':>9}{'x musemo':>10}{'max rel diff':>14}")
    for r in rows:
        print(
            f"   {r['method']:<28}{r['cpu_ms']:9.2f}{r['times_musemo']:10.1f}"
            f"{r['rel_err_vs_musemo']:14.1e}"
        )
    result = {
        "spec": spec.to_dict(),
        "shape": list(S.shape),
        "kernels": extractor.kernels,
        "speed": rows,
    }
    if train:
        result["training"] = _train_demo(out, per_raga=per_raga, epochs=epochs)
        result["deployment"] = _deploy_demo(out, wav)
    write_text(out / "demo.json", json.dumps(result, indent=2))
    print(f"written to {out / 'demo.json'}")
    return result


def _train_demo(out: Path, *, per_raga: int, epochs: int) -> list[dict]:
    from .data.subclips import load_dataset
    from .data.synthetic.ragas import make_builtin_dataset
    from .training.experiments import compare_models, markdown_table
    from .training.loop import TrainConfig

    # Lighter than the paper's 44.1 kHz / 128 mels, so that the CPU trains an
    # epoch in seconds: 64 x 216 per 5 s sub-clip.
    spec = FeatureSpec(sample_rate=22050, n_mels=64)
    root = make_builtin_dataset(out / "ragas", per_raga=per_raga, progress=True)
    print(f"4. built-in raga set (synthetic: it shows the pipeline, not musical truth): {root}")
    data, report = load_dataset(root, spec, cache=out / "cache", workers=2)
    print(
        f"5. {len(data.recordings)} recordings -> {len(data)} sub-clips of "
        f"{spec.clip_seconds:g} s, features {spec.clip_shape} "
        f"({report.computed} computed, {report.reused} cached)"
    )
    print(
        f"6. training squeezenet1_0 ({spec.sample_rate} Hz, {spec.n_mels} mels: lighter than the "
        f"paper's, for the CPU) for {epochs} epochs, beside the baseline, "
        "on a split grouped by recording and on the paper's random sub-clip split:"
    )
    config = TrainConfig(model="squeezenet1_0", epochs=epochs, batch_size=16, device="cpu")
    rows = compare_models(
        data,
        spec,
        ["squeezenet1_0"],
        config,
        out / "runs",
        split_modes=("grouped", "random"),
        val_fraction=0.25,
        progress=False,
    )
    print(markdown_table(rows))
    print(f"   curves and confusion matrices: {out / 'runs' / 'grouped' / 'squeezenet1_0'}/*.png")
    return rows


def _deploy_demo(out: Path, wav: Path) -> dict | None:
    """Export the grouped-split SqueezeNet (fp32 and int8, ONNX and TFLite) and classify
    the built-in recording with the edge runtime."""
    import importlib.util
    import logging

    from .export.formats import FORMATS
    from .export.pipeline import export_checkpoint
    from .export.report import report_markdown

    needs = [m for f in FORMATS.values() for m in f.requires]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        extra = "pip install 'musemo[export,tflite]'"
        print(f"7. export skipped: needs {', '.join(missing)} ({extra})")
        return None
    from .edge.classifier import Classifier

    logging.getLogger("musemo.export").setLevel(logging.WARNING)
    models = out / "models"
    print("7. exporting squeezenet1_0 to ONNX and TFLite, fp32 and calibrated int8 ...")
    report = export_checkpoint(
        out / "runs" / "grouped" / "squeezenet1_0" / "last.pt",
        int8=True,
        calib=out / "ragas",
        cache=out / "cache",
        out=models,
        force=True,
    )
    table = report_markdown(report).split("\n\n")
    print(next(t for t in table if t.startswith("| file")))
    print(f"   report: {models / 'squeezenet1_0.export.md'}")
    clf = Classifier(models / "squeezenet1_0.int8.tflite")
    result = clf.predict_file(wav)
    windows = " ".join(w.label or "-" for w in result.windows)
    print(
        f"8. edge runtime (no torch) with {clf.backend.path.name}, the model trained above on "
        f"the synthetic ragas: the built-in recording (raga Yaman, a happy raga) is "
        f"{result.label} ({result.probabilities[result.label]:.2f}); windows: {windows}"
    )
    return {"export": report, "edge": result.to_dict(), "default_model": _default_demo(wav)}


def _default_demo(wav: Path) -> dict | None:
    """The built-in recording through the model that ships (trained on real recordings),
    beside the one the demo trained."""
    from .edge.classifier import Classifier
    from .edge.shipped import default_model
    from .errors import MissingDependencyError, ParameterError

    try:
        path = default_model()
    except (ParameterError, MissingDependencyError) as exc:
        print(f"9. the default model: {exc}")
        return None
    result = Classifier(path).predict_file(wav)
    shares = ", ".join(f"{k} {v:.0%}" for k, v in result.window_shares.items())
    answer = "uncertain" if result.uncertain else result.label
    print(
        f"9. the default model ({path.name}: musicnn, trained on real recordings, the 4Q "
        f"set, see musemo models): the same recording is {answer} "
        f"(p({result.label}) {result.probabilities[result.label]:.2f}; windows {shares}). "
        "It was never trained on synthetic audio like this phrase: docs/model-card.md"
    )
    return result.to_dict()


def numpy_melspectrogram(
    y: np.ndarray, *, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128
):
    """The textbook numpy pipeline: pad, frame, window, rfft, |X|^2, mel matrix."""
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    power = np.abs(np.fft.rfft(frames * get_window("hann", n_fft).astype(y.dtype), axis=-1)) ** 2
    return mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels) @ power.T


def _single_threaded_blas():
    """Limit BLAS to one thread so every row is single-threaded CPU time."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's mel product may then use more than one core
        return contextlib.nullcontext()
    return threadpool_limits(1)


def compare(y: np.ndarray, *, sr: int, repeats: int = 10) -> list[dict]:
    """Time musemo, librosa (if installed) and numpy on ``y``: ms and difference from musemo."""
    ours = melspectrogram(y=y, sr=sr)
    methods: dict[str, Callable[[], np.ndarray]] = {
        "musemo (C++)": lambda: melspectrogram(y=y, sr=sr)
    }
    try:
        import librosa

        methods[f"librosa {librosa.__version__}"] = lambda: librosa.feature.melspectrogram(
            y=y, sr=sr
        )
    except ImportError:
        pass
    methods[f"numpy {np.__version__} by hand"] = lambda: numpy_melspectrogram(y, sr=sr)
    rows = []
    with _single_threaded_blas():
        for name, fn in methods.items():
            err = float(np.abs(fn() - ours).max() / ours.max())
            rows.append(
                {"method": name, "cpu_ms": median_cpu_ms(fn, repeats), "rel_err_vs_musemo": err}
            )
    base = rows[0]["cpu_ms"]
    for row in rows:
        row["times_musemo"] = row["cpu_ms"] / base
    return rows
