#!/usr/bin/env python
"""Training and inference throughput of the four CNNs and musicnn, in sub-clips per second.

Each model trains (forward, cross-entropy, backward, AdamW step) on batches of
random log-mel-shaped input, exactly as ``musemo.training.fit`` runs it: channels_last,
and on CUDA the mixed precision of ``--amp`` (bf16, or fp16 with a GradScaler).
Warm-up steps (cudnn autotuning, allocator) are not timed; the throughput is the
median over timed windows of several steps, synchronised with the GPU. Each model
gets its own input unless ``--shape`` says otherwise: the paper's 128 x 431 log-mel for
the CNNs, a 96 x 187 patch for musicnn; ``--freeze`` keeps modules out of training as
``musemo train --freeze`` does (musicnn fine-tuned with ``input_bn frontend``).

    python benchmarks/train_speed.py --device cuda                 # 5 models x fp32/bf16/fp16
    python benchmarks/train_speed.py --device cpu --models squeezenet1_0 --steps 5
    python benchmarks/train_speed.py --shape 64 216 --batch-size 64
    python benchmarks/train_speed.py --models musicnn --freeze input_bn frontend
    python benchmarks/train_speed.py --device cpu --busy 1 --threads auto 2   # shared machine

On the CPU ``--threads`` takes counts and ``auto``, the ``ThreadGovernor`` that training
runs with (torch's threads follow the cores other programs leave free); ``--busy N``
keeps N cores busy with other processes while measuring, as a laptop's other programs
do. With ``auto`` the warm-up lasts until the governor has had time to settle.

Writes ``benchmarks/results/train_speed.json`` (or ``--json``) atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch
from cache_scale import cpu_model

from musemo._atomic import write_text
from musemo.errors import ParameterError
from musemo.features import FeatureSpec, musicnn_spec
from musemo.training import MODELS, build_model
from musemo.training.loop import freeze, train_mode
from musemo.training.threads import ThreadGovernor

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def input_shape(name: str, shape: tuple[int, int] | None) -> tuple[int, int]:
    """``shape``, else the model's own input (n_mels, frames)."""
    if shape is not None:
        return shape
    return (musicnn_spec() if name == "musicnn" else FeatureSpec()).clip_shape


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str,
    precision: str,
    *,
    device: torch.device,
    shape: tuple[int, int],
    batch_size: int,
    warmup: int,
    steps: int,
    windows: int,
    frozen: tuple[str, ...] = (),
    governor: ThreadGovernor | None = None,
) -> dict:
    """Train and inference sub-clips/s of one model at one precision, the ``frozen``
    modules out of training (no gradient, batch norms in eval mode); on the CPU, the
    ``governor`` sets the threads between steps as in training."""
    torch.manual_seed(0)
    model = build_model(name, n_classes=2).to(device).to(memory_format=torch.channels_last)
    freeze(model, frozen)
    learning = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(learning, lr=1e-4)
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = torch.randn(batch_size, 1, *shape, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 2, (batch_size,), device=device)

    def train_step() -> None:
        if governor is not None:
            governor.update()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    def infer_step() -> None:
        if governor is not None:
            governor.update()
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
        ):
            model(x)

    out = {"model": name, "precision": precision, "batch_size": batch_size,
           "shape": list(shape), "frozen": list(frozen)}  # fmt: skip
    for label, step in (("train", train_step), ("infer", infer_step)):
        train_mode(model, frozen, training=label == "train")
        adapts = governor is not None and governor.adapts
        settle = time.perf_counter() + (3 * governor.interval if adapts else 0)
        for i in itertools.count():
            if i >= warmup and time.perf_counter() >= settle:
                break
            step()
        _sync(device)
        rates = []
        for _ in range(windows):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            _sync(device)
            rates.append(steps * batch_size / (time.perf_counter() - t0))
        out[f"{label}_subclips_per_s"] = statistics.median(rates)
        if governor is not None:
            out[f"{label}_threads"] = governor.threads
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return out


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy(cores: int):
    """``cores`` processes that keep a core busy each while the block runs."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(cores)]
    for p in spinners:
        p.start()
    try:
        yield
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def thread_setting(text: str) -> int | None:
    """``--threads``: a count, or ``auto`` (None) for the governor."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a count or auto") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS))
    parser.add_argument("--shape", nargs=2, type=int, metavar=("MELS", "T"),
                        help="input of every model (default: each model's own)")  # fmt: skip
    parser.add_argument("--freeze", nargs="+", default=[], metavar="MODULE",
                        help="modules kept frozen, e.g. input_bn frontend (musicnn)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows (median)")
    parser.add_argument("--threads", nargs="+", type=thread_setting, default=[None],
                        metavar="N|auto", help="CPU threads (default: auto)")  # fmt: skip
    parser.add_argument("--busy", type=int, default=0, metavar="CORES",
                        help="cores kept busy by other processes while measuring")  # fmt: skip
    parser.add_argument("--json", default="benchmarks/results/train_speed.json")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    precisions = args.precisions or (list(PRECISIONS) if device.type == "cuda" else ["fp32"])
    if device.type != "cuda" and precisions != ["fp32"]:
        parser.error("mixed precision is measured on CUDA only")
    cpu = device.type == "cpu"
    if not cpu and (args.busy or args.threads != [None]):
        parser.error("--threads and --busy measure the CPU")
    if cpu:
        hardware = f"{cpu_model()}, {multiprocessing.cpu_count()} cores, {args.busy} kept busy"
    else:
        torch.backends.cudnn.benchmark = True
        hardware = torch.cuda.get_device_name(device)
    frozen = f" | frozen: {' '.join(args.freeze)}" if args.freeze else ""
    print(f"# {hardware} | torch {torch.__version__}{frozen}")
    print("| model | input | precision | batch | threads | train sub-clips/s "
          "| inference sub-clips/s | peak GiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    with busy(args.busy):
        for name in args.models:
            for precision in precisions:
                for threads in args.threads if cpu else [None]:
                    row = _measure_row(parser, args, device, name, precision, threads)
                    rows.append(row)
                    print(_table_row(row, threads, cpu), flush=True)
    result = {
        "hardware": hardware,
        "busy_cores": args.busy,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "rows": rows,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def _measure_row(parser, args, device, name: str, precision: str, threads: int | None) -> dict:
    governor = ThreadGovernor(threads) if device.type == "cpu" else None
    try:
        with governor or contextlib.nullcontext():
            row = measure(
                name,
                precision,
                device=device,
                shape=input_shape(name, args.shape and tuple(args.shape)),
                batch_size=args.batch_size,
                warmup=args.warmup,
                steps=args.steps,
                windows=args.windows,
                frozen=tuple(args.freeze),
                governor=governor,
            )
    except ParameterError as exc:  # e.g. --freeze names a module the model lacks
        parser.error(str(exc))
    row["threads"] = "auto" if threads is None else threads
    return row


def _table_row(row: dict, threads: int | None, cpu: bool) -> str:
    peak = row.get("peak_memory_gib")
    used = "—"
    if cpu:
        used = f"{row['threads']}"
        if threads is None:
            used += f" ({row['train_threads']}/{row['infer_threads']})"
    return (
        f"| {row['model']} | {'x'.join(map(str, row['shape']))} | {row['precision']} "
        f"| {row['batch_size']} | {used} | {row['train_subclips_per_s']:.0f} "
        f"| {row['infer_subclips_per_s']:.0f} | {'—' if peak is None else f'{peak:.1f}'} |"
    )


if __name__ == "__main__":
    sys.exit(main())
