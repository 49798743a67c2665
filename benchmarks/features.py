#!/usr/bin/env python
"""Mel-spectrogram speed: musemo against librosa, torch and plain numpy/scipy, in one run.

Every row works on the same 30 s clip at 44.1 kHz (n_fft 2048, hop 512, 128 Slaney
mels, centred with zero padding). Single-thread rows report the median CPU time
(time.process_time) and wall time (time.perf_counter) of many calls; BLAS, OpenMP
and torch are pinned to one thread so that every row uses one core. Each method's
output is compared with librosa's and musemo's before any timing.

    python benchmarks/features.py            # full run, under a minute on 2 cores
    python benchmarks/features.py --quick    # smoke run, seconds

Set MUSEMO_KERNELS=avx2 (or generic) in the environment to force a kernel set.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# One thread for BLAS/OpenMP (numpy's and librosa's mel product, torch): set before
# numpy is imported, since the thread pools are sized when the libraries load.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

import numpy as np
from cache_scale import cpu_model

import musemo
from musemo.data.synthetic import demo_recording

SR = 44100
SECONDS = 30.0
N_FFT = 2048
HOP = 512
N_MELS = 128

Fn = Callable[[], Any]


# ----------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """CPU and wall seconds of each timed call."""

    cpu_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)

    @property
    def cpu_ms(self) -> float:
        return 1e3 * statistics.median(self.cpu_s)

    @property
    def wall_ms(self) -> float:
        return 1e3 * statistics.median(self.wall_s)


def timed(fn: Fn, timing: Timing) -> Any:
    """Call ``fn()`` once, appending its CPU and wall time to ``timing``."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    w1, c1 = time.perf_counter(), time.process_time()
    timing.cpu_s.append(c1 - c0)
    timing.wall_s.append(w1 - w0)
    return out


def time_round_robin(fns: dict[str, Fn], repeats: int) -> dict[str, Timing]:
    """Time each function ``repeats`` times, taking turns, so drift hits all alike."""
    for fn in fns.values():  # warm-up: plans, caches, first-touch of memory
        fn()
    timings = {name: Timing() for name in fns}
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, fn in fns.items():
                timed(fn, timings[name])
    finally:
        gc.enable()
    return timings


def limit_blas_threads() -> None:
    """Belt and braces beside the environment variables: one BLAS thread via threadpoolctl.

    Acts on the libraries loaded so far, so call it after the optional imports.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1)


# ----------------------------------------------------------------------------- methods


def rel_error(a: Any, ref: np.ndarray | None) -> float | None:
    """max |a - ref| / max |ref|, in float64."""
    if ref is None:
        return None
    a64 = np.asarray(a, dtype=np.float64)
    ref64 = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a64 - ref64)) / np.max(np.abs(ref64)))


def hand_power(y: np.ndarray, window: np.ndarray, rfft: Callable[..., np.ndarray]) -> np.ndarray:
    """|STFT|^2 by hand, shaped (frames, bins): zero-pad, frame, window, rfft."""
    padded = np.pad(y, N_FFT // 2, mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    spec = rfft(frames * window, axis=-1)
    return spec.real**2 + spec.imag**2  # |X|^2 without the square root of np.abs


@dataclass
class Method:
    """One row of a table: a name and either a function or the reason it is skipped."""

    name: str
    fn: Fn | None = None
    to_numpy: Callable[[Any], np.ndarray] = np.asarray
    skipped: str = ""


def numpy_methods(
    y: np.ndarray, mel: np.ndarray, window: np.ndarray
) -> tuple[list[Method], list[Method]]:
    """numpy.fft and scipy.fft pipelines by hand: (mel methods, power methods)."""
    mel_rows: list[Method] = []
    power_rows: list[Method] = []
    ffts: list[tuple[str, Callable[..., np.ndarray] | None, str]] = [
        (f"numpy {np.__version__} rfft by hand", np.fft.rfft, "")
    ]
    try:
        import scipy
        import scipy.fft

        ffts.append((f"scipy {scipy.__version__} rfft by hand", scipy.fft.rfft, ""))
    except ImportError:
        ffts.append(("scipy rfft by hand", None, "scipy is not installed"))
    for name, rfft, why in ffts:
        if rfft is None:
            mel_rows.append(Method(name, skipped=why))
            power_rows.append(Method(name, skipped=why))
            continue
        mel_rows.append(Method(name, lambda f=rfft: mel @ hand_power(y, window, f).T))
        power_rows.append(Method(name, lambda f=rfft: hand_power(y, window, f), lambda p: p.T))
    return mel_rows, power_rows


def librosa_methods(y: np.ndarray) -> tuple[Method, Method]:
    """librosa.feature.melspectrogram and np.abs(librosa.stft(y)) ** 2."""
    try:
        import librosa
    except ImportError:
        why = "librosa is not installed"
        return Method("librosa", skipped=why), Method("librosa", skipped=why)
    name = f"librosa {librosa.__version__}"
    kw = {"n_fft": N_FFT, "hop_length": HOP, "center": True, "pad_mode": "constant"}
    mel = Method(
        f"{name} feature.melspectrogram",
        lambda: librosa.feature.melspectrogram(y=y, sr=SR, n_mels=N_MELS, **kw),
    )
    power = Method(f"{name} np.abs(stft)**2", lambda: np.abs(librosa.stft(y, **kw)) ** 2)
    return mel, power


def torch_methods(y: np.ndarray, mel: np.ndarray) -> tuple[Method, Method]:
    """torch.stft and the mel matrix, as torchaudio's MelSpectrogram does it."""
    try:
        import torch
    except ImportError:
        why = "torch is not installed"
        return Method("torch.stft + mel matmul", skipped=why), Method("torch.stft", skipped=why)
    torch.set_num_threads(1)
    y_t = torch.from_numpy(y)
    window = torch.hann_window(N_FFT)
    mel_t = torch.from_numpy(mel)

    def power() -> Any:
        spec = torch.stft(
            y_t,
            N_FFT,
            hop_length=HOP,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return spec.real**2 + spec.imag**2

    def to_numpy(t: Any) -> np.ndarray:
        return t.numpy()

    name = f"torch {torch.__version__}"
    return (
        Method(f"{name} stft + mel matmul", lambda: mel_t @ power(), to_numpy),
        Method(f"{name} stft", power, to_numpy),
    )


def mel_methods(y: np.ndarray) -> tuple[list[Method], list[Method]]:
    """All rows of the mel table and of the STFT table, musemo first, librosa second."""
    mel = musemo.mel_filters(sr=SR, n_fft=N_FFT, n_mels=N_MELS)
    window = musemo.get_window("hann", N_FFT).astype(np.float32)
    lib_mel, lib_power = librosa_methods(y)
    torch_mel, torch_power = torch_methods(y, mel)
    np_mel, np_power = numpy_methods(y, mel, window)
    mels = [
        Method(
            "musemo.melspectrogram",
            lambda: musemo.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS),
        ),
        lib_mel,
        torch_mel,
        *np_mel,
    ]
    powers = [
        Method("musemo.stft_power", lambda: musemo.stft_power(y, n_fft=N_FFT, hop_length=HOP)),
        lib_power,
        torch_power,
        *np_power,
    ]
    return mels, powers


def compare(methods: list[Method], repeats: int) -> list[dict[str, Any]]:
    """Check every method against librosa and musemo, then time them all round-robin."""
    runnable = [m for m in methods if m.fn is not None]
    outputs = {m.name: m.to_numpy(m.fn()) for m in runnable}
    ours = outputs[methods[0].name]
    ref = outputs.get(methods[1].name)  # librosa, when installed
    for m in runnable:
        if outputs[m.name].shape != ours.shape:
            raise SystemExit(f"{m.name}: shape {outputs[m.name].shape}, musemo {ours.shape}")
    timings = time_round_robin({m.name: m.fn for m in runnable}, repeats)
    lib_cpu = timings[methods[1].name].cpu_ms if ref is not None else None
    rows = []
    for m in methods:
        if m.fn is None:
            rows.append({"method": m.name, "skipped": m.skipped})
            continue
        t = timings[m.name]
        rows.append(
            {
                "method": m.name,
                "cpu_ms": t.cpu_ms,
                "wall_ms": t.wall_ms,
                "cpu_ms_min": 1e3 * min(t.cpu_s),
                "wall_ms_min": 1e3 * min(t.wall_s),
                "speedup_vs_librosa": None if lib_cpu is None else lib_cpu / t.cpu_ms,
                "rel_err_vs_librosa": rel_error(outputs[m.name], ref),
                "rel_err_vs_musemo": rel_error(outputs[m.name], ours),
                "repeats": repeats,
            }
        )
    return rows


# ----------------------------------------------------------------------------- batch


def make_clips(base: np.ndarray, n_clips: int, seconds: float, seed: int = 1) -> list[np.ndarray]:
    """Distinct clips of ``seconds`` (no two share memory): the recording rotated by
    random offsets, then cut."""
    rng = np.random.default_rng(seed)
    n = int(SR * seconds)
    return [np.roll(base, int(s))[:n].copy() for s in rng.integers(0, base.size, n_clips)]


def user_sys_s() -> tuple[float, float]:
    """User and system (kernel) CPU seconds of this process so far, all threads."""
    try:
        import resource
    except ImportError:  # not Unix: coarser clock, same split
        t = os.times()
        return t.user, t.system
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def bench_batch(
    clips: list[np.ndarray], threads_list: list[int], repeats: int
) -> list[dict[str, Any]]:
    """MelExtractor.compute_batch over all clips at each thread count: wall, clips/s, scaling.

    Thread counts take turns (order flipped every repeat) so drift and order hit all alike;
    one untimed run first touches the output memory.
    """
    ext = musemo.MelExtractor(musemo.FeatureSpec(sample_rate=SR, db=False))
    check = clips[:4]
    single = [ext.compute(c) for c in check]
    for threads in threads_list:  # correctness, and the pool's threads start
        for a, b in zip(ext.compute_batch(check, threads=threads), single):
            if not np.array_equal(a, b):
                raise SystemExit(f"compute_batch(threads={threads}) differs from compute()")
    ext.compute_batch(clips, threads=max(threads_list))  # untimed: first touch of memory
    samples: dict[int, dict[str, list[float]]] = {
        t: {"wall": [], "user": [], "sys": []} for t in threads_list
    }
    for rep in range(repeats):
        for threads in threads_list if rep % 2 == 0 else threads_list[::-1]:
            gc.collect()
            u0, s0 = user_sys_s()
            w0 = time.perf_counter()
            out = ext.compute_batch(clips, threads=threads)
            w1 = time.perf_counter()
            u1, s1 = user_sys_s()
            del out
            samples[threads]["wall"].append(w1 - w0)
            samples[threads]["user"].append(u1 - u0)
            samples[threads]["sys"].append(s1 - s0)
    n = len(clips)
    clip_seconds = clips[0].size / SR
    rows = []
    for threads in threads_list:
        got = samples[threads]
        wall = statistics.median(got["wall"])
        rows.append(
            {
                "threads": threads,
                "clips": n,
                "clip_seconds": clip_seconds,
                "wall_s": wall,
                "wall_s_min": min(got["wall"]),
                "clips_per_s": n / wall,
                "x_realtime": n * clip_seconds / wall,
                "user_ms_per_clip": 1e3 * statistics.median(got["user"]) / n,
                "sys_ms_per_clip": 1e3 * statistics.median(got["sys"]) / n,
                "cores_busy": statistics.median(
                    (u + k) / w for u, k, w in zip(got["user"], got["sys"], got["wall"])
                ),
                "wall_s_all": got["wall"],
                "repeats": repeats,
            }
        )
    base = next((r for r in rows if r["threads"] == 1), rows[0])
    for r in rows:
        r["scaling_vs_1_thread"] = r["clips_per_s"] / base["clips_per_s"]
    return rows


# ----------------------------------------------------------------------------- overhead


def per_call_us(fn: Fn, calls: int, batch: int) -> dict[str, float]:
    """Median over batches of the mean time per call, in microseconds (CPU and wall)."""
    for _ in range(min(calls, 200)):
        fn()
    n_batches = max(1, calls // batch)
    cpu, wall = [], []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n_batches):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(batch):
                fn()
            w1, c1 = time.perf_counter(), time.process_time()
            cpu.append((c1 - c0) / batch)
            wall.append((w1 - w0) / batch)
    finally:
        gc.enable()
    return {
        "cpu_us": 1e6 * statistics.median(cpu),
        "wall_us": 1e6 * statistics.median(wall),
        "calls": n_batches * batch,
        "batch": batch,
    }


def bench_overhead(y: np.ndarray, calls: int) -> list[dict[str, Any]]:
    """Per-call cost on one frame (2048 samples, uncentred): the streaming case."""
    frame = np.ascontiguousarray(y[SR : SR + N_FFT])
    ext = musemo.MelExtractor(musemo.FeatureSpec(sample_rate=SR, center=False, db=False))
    fns = {
        "MelExtractor(center=False).compute": lambda: ext.compute(frame),
        "musemo.melspectrogram(center=False)": lambda: musemo.melspectrogram(
            y=frame, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, center=False
        ),
    }
    outs = [fn() for fn in fns.values()]
    if outs[0].shape != (N_MELS, 1) or not np.array_equal(outs[0], outs[1]):
        raise SystemExit(f"one-frame outputs disagree: shapes {[o.shape for o in outs]}")
    batch = min(1000, calls)
    return [{"call": name, **per_call_us(fn, calls, batch)} for name, fn in fns.items()]


# ----------------------------------------------------------------------------- machine


def version_of(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("prefix", "internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: p.get(k) for k in keys} for p in threadpool_info()]


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": version_of("scipy"),
        "librosa": version_of("librosa"),
        "torch": version_of("torch"),
        "musemo": musemo.__version__,
        "musemo_kernels": musemo.MelExtractor().kernels,
        "musemo_available_kernels": musemo.available_kernels(),
        "MUSEMO_KERNELS": os.environ.get("MUSEMO_KERNELS"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "blas": blas_info(),
    }


# ----------------------------------------------------------------------------- output


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'method':<42} {'CPU ms':>9} {'wall ms':>9} {'x librosa':>10} "
        f"{'err vs librosa':>15} {'err vs musemo':>14}"
    )
    print(f"\n{title}\n{head}\n{'-' * len(head)}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['method']:<42} skipped: {r['skipped']}")
            continue
        print(
            f"{r['method']:<42} {r['cpu_ms']:>9.2f} {r['wall_ms']:>9.2f} "
            f"{fmt(r['speedup_vs_librosa'], '.2f', suffix='x'):>10} "
            f"{fmt(r['rel_err_vs_librosa'], '.1e'):>15} {fmt(r['rel_err_vs_musemo'], '.1e'):>14}"
        )


def print_batch(rows: list[dict[str, Any]]) -> None:
    n, seconds = rows[0]["clips"], rows[0]["clip_seconds"]
    out_mb = n * N_MELS * (1 + int(SR * seconds) // HOP) * 4 / 1e6
    head = (
        f"{'threads':>7} {'wall s':>8} {'clips/s':>9} {'x realtime':>11} "
        f"{'user ms/clip':>13} {'sys ms/clip':>12} {'cores busy':>11} {'scaling':>8}"
    )
    print(f"\nBatch: MelExtractor.compute_batch, {n} clips of {seconds:g} s (medians)")
    print(f"{head}\n{'-' * len(head)}")
    for r in rows:
        print(
            f"{r['threads']:>7} {r['wall_s']:>8.3f} {r['clips_per_s']:>9.1f} "
            f"{r['x_realtime']:>11.0f} {r['user_ms_per_clip']:>13.2f} "
            f"{r['sys_ms_per_clip']:>12.2f} {r['cores_busy']:>11.2f} "
            f"{r['scaling_vs_1_thread']:>7.2f}x"
        )
    print(
        f"(user/sys: CPU time of all threads; sys is mostly page faults on the {out_mb:.0f} MB\n"
        " of new output arrays per run; cores busy = CPU time / wall time: near 1 with 2 threads\n"
        " means the machine did not run both threads at once, whatever the library does)"
    )


def print_overhead(rows: list[dict[str, Any]]) -> None:
    print(f"\nPer-call overhead, one frame ({N_FFT} samples, center=False -> {N_MELS}x1):")
    for r in rows:
        print(
            f"  {r['call']:<38} {r['wall_us']:>7.1f} us wall {r['cpu_us']:>7.1f} us CPU  "
            f"(median of {r['calls'] // r['batch']} batches of {r['batch']} calls)"
        )


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, help="timed calls per method (default 30; quick: 3)")
    p.add_argument("--clips", type=int, help="clips in the batch (default 400; quick: 16)")
    p.add_argument("--batch-repeats", type=int, help="runs of the batch (default 5; quick: 3)")
    p.add_argument("--calls", type=int, help="one-frame calls (default 20000; quick: 2000)")
    p.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="batch thread counts (default 1 2)"
    )
    p.add_argument("--quick", action="store_true", help="a fast smoke run")
    p.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "features.json",
        help="where to write the results (default benchmarks/results/features.json)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (
        ("repeats", 30, 3),
        ("clips", 400, 16),
        ("batch_repeats", 5, 3),
        ("calls", 20000, 2000),
    ):
        value = getattr(args, name)
        if value is None:
            setattr(args, name, small if quick else full)
        elif value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(t < 1 for t in args.threads):
        p.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    y = demo_recording(sr=SR, seconds=SECONDS)
    mels, powers = mel_methods(y)  # imports librosa, scipy and torch where installed
    limit_blas_threads()
    info = machine_info()

    print(f"CPU: {info['cpu']} ({info['cpu_count']} logical CPUs), {info['platform']}")
    print(
        f"Python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
        f"librosa {info['librosa']}, torch {info['torch']}"
    )
    print(
        f"musemo {info['musemo']}, kernels {info['musemo_kernels']!r} "
        f"(available {info['musemo_available_kernels']})"
    )
    for lib in info["blas"]:
        print(
            f"Thread pool: {lib['prefix']} ({lib['internal_api']} {lib['version']}), "
            f"{lib['num_threads']} thread(s)"
        )
    print(
        f"Clip: musemo.data.synthetic.demo_recording, {SECONDS:g} s at {SR} Hz float32; "
        f"n_fft {N_FFT}, hop {HOP}, {N_MELS} mels\n"
        f"Single thread; medians of {args.repeats} calls; x librosa is by CPU time; "
        "err = max|a - b| / max|b|"
    )

    mel_rows = compare(mels, args.repeats)
    print_table("Mel spectrogram, one clip (power 2, float32)", mel_rows)
    stft_rows = compare(powers, args.repeats)
    print_table("STFT power |X|^2 alone, one clip", stft_rows)

    clips = make_clips(y, args.clips, SECONDS)
    batch_rows = bench_batch(clips, args.threads, args.batch_repeats)
    del clips
    print_batch(batch_rows)
    # The paper's data set as the training cache sees it: 400 clips x 5 sub-clips of 5 s.
    clips = make_clips(y, 5 * args.clips, 5.0, seed=2)
    subclip_rows = bench_batch(clips, args.threads, args.batch_repeats)
    del clips
    print_batch(subclip_rows)

    overhead_rows = bench_overhead(y, args.calls)
    print_overhead(overhead_rows)

    data = {
        "benchmark": "features",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "machine": info,
        "settings": {
            "signal": f"musemo.data.synthetic.demo_recording(sr={SR}, seconds={SECONDS:g}) float32",
            "sr": SR,
            "seconds": SECONDS,
            "n_fft": N_FFT,
            "hop_length": HOP,
            "n_mels": N_MELS,
            "repeats": args.repeats,
            "clips": args.clips,
            "batch_repeats": args.batch_repeats,
            "calls": args.calls,
            "threads": args.threads,
        },
        "mel": mel_rows,
        "stft": stft_rows,
        "batch": batch_rows,
        "batch_subclips": subclip_rows,
        "overhead": overhead_rows,
    }
    write_json(args.json, data)
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s; results written to {args.json}")


if __name__ == "__main__":
    main()
