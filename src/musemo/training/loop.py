"""Fine-tune one CNN on cached sub-clips, on CUDA (mixed precision) or the CPU.

A run directory holds ``last.pt`` and ``best.pt`` (written atomically every
epoch), ``metrics.json``, ``split.json``, ``curves.png`` and ``confusion.png``.
The final scores are the last epoch's (not the best epoch picked on the very
split being scored); ``best.pt`` is the checkpoint with the best validation
recording accuracy, for use.
A run is repeatable: shuffling, augmentation and dropout are seeded per epoch,
so ``resume=True`` continues an interrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .._atomic import remove_leftovers, write_text, writing
from .._checks import check_int
from .._progress import progress_bar
from ..data.splits import describe_split
from ..data.subclips import SubclipData
from ..errors import ParameterError
from ..features.spec import FeatureSpec
from ..metrics import evaluation
from .augment import shifted, spec_augment
from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .distributed import barrier, sum_over_processes, world
from .models import build_model


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; everything that changes the result is here (and in the checkpoint)."""

    model: str = "squeezenet1_0"
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 1e-4
    weights: str = "none"
    head: str = "replace"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    shift: bool = True
    mixup: float = 0.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        if not self.mixup >= 0:
            raise ParameterError(f"mixup={self.mixup!r}: a Beta(a, a) parameter >= 0 (0: off)")
        if self.lr is not None and not self.lr > 0:
            raise ParameterError(f"lr={self.lr!r}: must be positive")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParameterError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")


# AdamW learning rates that train each model from scratch here: the networks
# without batch normalisation (SqueezeNet, VGG) diverge or stall at 1e-3.
DEFAULT_LR = {"squeezenet1_0": 1e-4, "vgg16": 1e-4, "mobilenet_v2": 1e-3, "resnet18": 1e-3}


def learning_rate(config: TrainConfig) -> float:
    return config.lr if config.lr is not None else DEFAULT_LR.get(config.model, 1e-3)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device={name!r} but CUDA is not available here; use --device cpu")
    return torch.device(name)


def input_stats(data: SubclipData, rows: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the features of the given sub-clips (float64 sums)."""
    total = total_sq = count = 0.0
    for i in rows:
        x = np.asarray(data.subclip(int(i)), dtype=np.float64)
        total += x.sum()
        total_sq += np.square(x).sum()
        count += x.size
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 1e-12))
    return float(mean), float(std)


# ----------------------------------------------------------------------------- batches


def batches(
    data: SubclipData,
    rows: np.ndarray,
    batch_size: int,
    spec: FeatureSpec,
    *,
    shift_rng: np.random.Generator | None = None,
):
    """Normalised ``(batch, 1, n_mels, frames)`` float32 arrays with their labels;
    with ``shift_rng``, each sub-clip is read from a random offset (see ``shifted``)."""
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        x = shifted(data, part, shift_rng) if shift_rng is not None else data.stack(part)
        x = (x - spec.input_mean) / spec.input_std
        yield x[:, None].astype(np.float32), data.labels[part]


def predict(
    model,
    data: SubclipData,
    rows: np.ndarray,
    spec: FeatureSpec,
    device,
    *,
    batch_size: int = 64,
    amp_dtype=None,
) -> tuple[np.ndarray, float]:
    """Class probabilities for the given sub-clips, and the mean cross-entropy."""
    import torch

    model.eval()
    probs, loss_sum = [], 0.0
    with torch.inference_mode():
        for x, y in batches(data, rows, batch_size, spec):
            xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(xt).float()
            loss_sum += torch.nn.functional.cross_entropy(
                logits, torch.from_numpy(y).to(device), reduction="sum"
            ).item()
            probs.append(torch.softmax(logits, dim=1).cpu().numpy())
    out = np.concatenate(probs) if probs else np.empty((0, len(data.label_names)))
    return out, loss_sum / max(1, len(rows))


# ----------------------------------------------------------------------------- training


def _amp_dtype(device, enabled: bool):
    import torch

    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def fit(
    data: SubclipData,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    spec: FeatureSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    split_mode: str = "grouped",
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``config.model`` on ``train_rows``, validate on ``val_rows``, write the run.

    ``on_epoch`` is called with each epoch's entry once its checkpoint is on disk
    (an exception there stops the run; ``resume=True`` picks it up again).
    Under ``torchrun`` every process trains on its share of each epoch (DDP) and
    rank 0 validates and writes. Returns the metrics written to
    ``out_dir/metrics.json`` (an empty dict in the other processes).
    """
    import torch

    w = world()
    out = Path(out_dir)
    with writing(out, any_oserror=True):
        out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    device = resolve_device(config.device)
    if device.type == "cuda" and w.size > 1:
        device = torch.device("cuda", w.local_rank)
    amp_dtype = _amp_dtype(device, config.amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_rows = np.asarray(train_rows)
    val_rows = np.asarray(val_rows)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ParameterError("training needs sub-clips on both sides of the split")
    if config.shift and spec.clip_hop_samples != spec.clip_samples:
        raise ParameterError(
            "shift (random offsets along the recording) needs sub-clips that neither overlap "
            f"nor leave gaps, but clip_hop_seconds={spec.clip_hop_seconds} and "
            f"clip_seconds={spec.clip_seconds}; turn shift off (--no-shift)"
        )

    mean, std = input_stats(data, train_rows)
    spec = dataclasses.replace(spec, input_mean=mean, input_std=std)
    split = describe_split(data, train_rows, val_rows, split_mode)
    if w.main:
        write_text(out / "split.json", json.dumps(split, indent=2))

    torch.manual_seed(config.seed)
    model = build_model(
        config.model, n_classes=len(data.label_names), weights=config.weights, head=config.head
    ).to(device)
    # channels_last: faster on CUDA and, through oneDNN, 1.2-1.6x on the CPU too.
    model = model.to(memory_format=torch.channels_last)
    net = model
    if w.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[w.local_rank] if device.type == "cuda" else None
        )
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=learning_rate(config), weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    history: list[dict] = []
    best = {"key": (-1.0, -math.inf), "epoch": 0}
    start_epoch = 1
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and last_path.is_file():
        state = load_checkpoint(last_path)
        if state["config"] != dataclasses.asdict(config) or state["spec"] != spec.to_dict():
            raise ParameterError(
                f"{last_path} was trained with other settings or data; "
                "use a new --out folder or the same settings"
            )
        model.load_state_dict(state["model_state"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = state["history"]
        best = {"key": tuple(state["best_key"]), "epoch": state["best_epoch"]}
        start_epoch = state["epoch"] + 1

    def checkpoint(epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": config.model,
            "head": config.head,
            "labels": list(data.label_names),
            "spec": spec.to_dict(),
            "config": dataclasses.asdict(config),
            "split": split,
            "epoch": epoch,
            "model_state": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "history": history,
            "best_key": list(best["key"]),
            "best_epoch": best["epoch"],
        }

    recording = data.index[:, 0]
    for epoch in range(start_epoch, config.epochs + 1):
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout
        order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
        if w.size > 1:  # equal shares, so every process runs the same number of steps
            order = order[: len(order) // w.size * w.size][w.rank :: w.size]
        model.train()
        t0 = time.perf_counter()
        loss_sum = correct = 0.0
        n_batches = math.ceil(len(order) / config.batch_size)
        shift_rng = np.random.default_rng([config.seed, epoch]) if config.shift else None
        bar = progress_bar(
            batches(data, order, config.batch_size, spec, shift_rng=shift_rng),
            total=n_batches,
            desc=f"{config.model} epoch {epoch}/{config.epochs}",
            unit="batch",
            show=progress and w.main,
            leave=False,
        )
        for x, y in bar:
            xt = torch.from_numpy(x)
            if config.augment:
                spec_augment(xt, generator)
            if device.type == "cuda":  # page-locked, so the copy overlaps the GPU's work
                xt = xt.pin_memory()
            xt = xt.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yt = torch.from_numpy(y).to(device, non_blocking=True)
            lam, partner = 1.0, None
            if config.mixup > 0:  # blend each sub-clip with another, and their labels alike
                lam = float(torch.distributions.Beta(config.mixup, config.mixup).sample())
                partner = torch.randperm(len(y), generator=generator).to(device)
                xt = lam * xt + (1 - lam) * xt[partner]
            try:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = net(xt)
                    loss = torch.nn.functional.cross_entropy(logits.float(), yt)
                    if partner is not None:
                        loss = lam * loss + (1 - lam) * torch.nn.functional.cross_entropy(
                            logits.float(), yt[partner]
                        )
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
            except torch.OutOfMemoryError as exc:
                raise ParameterError(
                    f"{device} ran out of memory training {config.model} with batch size "
                    f"{config.batch_size}: try --batch-size {max(1, config.batch_size // 2)}"
                ) from exc
            scaler.update()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == yt).sum().item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        scheduler.step()
        seconds = time.perf_counter() - t0
        loss_sum, correct, seen = sum_over_processes(w, [loss_sum, correct, len(order)], device)
        if not w.main:
            barrier(w)
            continue
        probs, val_loss = predict(model, data, val_rows, spec, device, amp_dtype=amp_dtype)
        ev = evaluation(probs, data.labels[val_rows], recording[val_rows], data.label_names)
        entry = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": ev["subclip"]["accuracy"],
            "val_recording_accuracy": ev["recording"]["accuracy"],
            "lr": optimiser.param_groups[0]["lr"],
            "train_seconds": seconds,
            "train_subclips_per_s": seen / seconds,
            "processes": w.size,
        }
        history.append(entry)
        key = (entry["val_recording_accuracy"], -val_loss)
        if key > tuple(best["key"]):
            best = {"key": key, "epoch": epoch}
            save_checkpoint(best_path, checkpoint(epoch))
        save_checkpoint(last_path, checkpoint(epoch))
        if progress:
            print(
                f"{config.model} epoch {epoch}/{config.epochs}: loss {entry['train_loss']:.3f} "
                f"acc {entry['train_accuracy']:.3f} | val loss {val_loss:.3f} "
                f"acc {entry['val_accuracy']:.3f} recordings {entry['val_recording_accuracy']:.3f} "
                f"| {entry['train_subclips_per_s']:.1f} sub-clips/s"
            )
        write_text(out / "metrics.json", json.dumps({"history": history}, indent=2))
        if on_epoch is not None:
            on_epoch(entry)
        barrier(w)

    if not w.main:
        return {}
    # The reported scores are the last epoch's: picking the best epoch on the
    # validation split and reporting that split would flatter the model.
    # best.pt (chosen on validation) is kept for use, its epoch noted.
    probs, val_loss = predict(model, data, val_rows, spec, device, amp_dtype=amp_dtype)
    final = evaluation(probs, data.labels[val_rows], recording[val_rows], data.label_names)
    final.update(
        epoch=history[-1]["epoch"],
        best_epoch=best["epoch"],
        val_loss=val_loss,
        device=str(device),
        amp=str(amp_dtype).replace("torch.", "") if amp_dtype else None,
    )
    metrics = {
        "model": config.model,
        "config": dataclasses.asdict(config),
        "split": split,
        "history": history,
        "final": final,
    }
    write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    _plots(metrics, out)
    return metrics


def _plots(metrics: dict, out: Path) -> None:
    try:
        from ..plotting import plot_confusion, plot_curves
    except ImportError:  # pragma: no cover - matplotlib missing
        return
    name = metrics["model"]
    plot_curves(metrics["history"], out / "curves.png", title=f"{name}: training curves")
    final = metrics["final"]
    plot_confusion(
        {"sub-clips": final["subclip"]["confusion"], "recordings": final["recording"]["confusion"]},
        final["labels"],
        out / "confusion.png",
        title=f"{name}: validation, epoch {final['epoch']}",
    )
