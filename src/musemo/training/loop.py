"""Fine-tune one CNN on cached sub-clips, on CUDA (mixed precision) or the CPU.

A run directory holds ``last.pt`` and ``best.pt`` (written atomically every
epoch), ``metrics.json``, ``split.json``, ``curves.png``, ``confusion.png`` and
``val_recordings.npz`` (each validation recording's final mean probabilities).
The final scores are the last epoch's (not the best epoch picked on the very
split being scored); ``best.pt`` is the checkpoint with the best validation
recording accuracy, for use. With no validation rows (``holdout_split(...,
val_fraction=0)``) every sub-clip trains, nothing is scored, and the run holds ``last.pt``
(the final model), ``metrics.json`` with the training history, and ``curves.png``.
A run is repeatable: shuffling, augmentation and dropout are seeded per epoch,
so ``resume=True`` continues an interrupted run exactly. With ``probe=True`` a
pretrained musicnn stays frozen and its head is fitted once, in closed form (a logistic
regression on recording means), as a run of one epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._atomic import atomic_path, remove_leftovers, write_text, writing
from .._checks import check_int
from .._progress import progress_bar
from ..data.fourq import QUADRANT_AXES
from ..data.splits import describe_split
from ..data.subclips import UNLABELLED_ROW, SubclipData
from ..errors import ParameterError
from ..features.spec import FeatureSpec, differences_from_musicnn
from ..metrics import (
    check_aggregate,
    evaluation,
    per_recording,
    recording_means,
    recording_probabilities,
)
from .augment import read_at, shift_starts, spec_augment
from .checkpoints import (
    CHECKPOINT_FORMAT,
    Trained,
    load_checkpoint,
    narrowed_state,
    save_checkpoint,
)
from .distill import TeacherTargets, distillation_loss, tempered
from .distributed import barrier, max_difference_over_processes, sum_over_processes, world
from .models import RAW_INPUT, build_model, head_of
from .threads import ThreadGovernor

VAL_RECORDINGS = "val_recordings.npz"  # written by finish, read by cross_validate


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
    backbone_lr_scale: float = 0.1
    frozen: tuple[str, ...] = ()
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    shift: bool = True
    mixup: float = 0.0
    probe: bool = False  # the head alone, in closed form, on the frozen network (one epoch)
    aggregate: str = "probabilities"  # a recording's from its sub-clips' (metrics.AGGREGATES)
    teacher: str | None = None  # the checkpoint distilled from (training.distill.Teacher.name)
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5  # the teacher's share of the loss; the labels' is the rest
    init: str | None = None  # the checkpoint the weights start from (checkpoints.Trained.name)
    distill_features: float = 0.0  # weight of the teacher's features' squared error (0: off)
    axes: bool = False  # the probe learns valence and arousal apart, from all four quadrants

    def __post_init__(self) -> None:
        check_aggregate(self.aggregate)
        self._check_distillation()
        if self.probe:
            if self.model != "musicnn" or self.weights != "pretrained":
                raise ParameterError(
                    "probe fits a head on a pretrained network: model='musicnn', "
                    f"weights='pretrained' (not {self.model!r}, {self.weights!r})"
                )
            object.__setattr__(self, "epochs", 1)
        elif self.axes:
            raise ParameterError("axes: the probe learns valence and arousal apart: add probe")
        for name in ("epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        if not self.mixup >= 0:
            raise ParameterError(f"mixup={self.mixup!r}: a Beta(a, a) parameter >= 0 (0: off)")
        if self.lr is not None and not self.lr > 0:
            raise ParameterError(f"lr={self.lr!r}: must be positive")
        if isinstance(self.frozen, list):  # from a checkpoint's JSON-like config
            object.__setattr__(self, "frozen", tuple(self.frozen))
        if not 0 < self.backbone_lr_scale <= 1:
            raise ParameterError(
                f"backbone_lr_scale={self.backbone_lr_scale!r}: a factor in (0, 1] on the "
                "learning rate of pretrained layers"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParameterError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")

    def _check_distillation(self) -> None:
        if not self.distill_temperature > 0:
            raise ParameterError(
                f"distill_temperature={self.distill_temperature!r}: must be positive"
            )
        if not self.distill_features >= 0:
            raise ParameterError(
                f"distill_features={self.distill_features!r}: a weight >= 0 (0: off)"
            )
        if not 0 <= self.distill_alpha <= 1:
            raise ParameterError(
                f"distill_alpha={self.distill_alpha!r}: the teacher's share of the loss, in [0, 1]"
            )


# AdamW learning rates that train each model from scratch here: the networks
# without batch normalisation (SqueezeNet, VGG) diverge or stall at 1e-3.
# musicnn: its head's rate (pretrained layers get backbone_lr_scale of it).
DEFAULT_LR = {
    "squeezenet1_0": 1e-4,
    "vgg16": 1e-4,
    "mobilenet_v2": 1e-3,
    "resnet18": 1e-3,
    "musicnn": 1e-3,
}


def learning_rate(config: TrainConfig) -> float:
    """The AdamW learning rate of a run: ``config.lr``, else the model's default."""
    return config.lr if config.lr is not None else DEFAULT_LR.get(config.model, 1e-3)


def freeze(model, names: tuple[str, ...]) -> None:
    """Stop the named modules (``model.get_submodule`` names) from learning."""
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise ParameterError(
                f"frozen module {name!r}: {type(model).__name__} has none"
            ) from exc
        module.requires_grad_(False)


def train_mode(model, frozen: tuple[str, ...], training: bool = True) -> None:
    """``model.train(training)``, the ``frozen`` modules kept in eval mode: their batch
    norms keep the statistics they came with."""
    model.train(training)
    for name in frozen:
        model.get_submodule(name).eval()


def parameter_groups(model, config: TrainConfig) -> list[dict]:
    """The optimiser's groups: with pretrained weights, every layer but the new head
    learns at ``backbone_lr_scale`` of the learning rate."""
    lr = learning_rate(config)
    learning = [p for p in model.parameters() if p.requires_grad]
    if config.weights == "none":
        return [{"params": learning, "lr": lr}]
    head = {id(p) for p in head_of(model, config.model, config.head).parameters()}
    return [
        {"params": [p for p in learning if id(p) not in head], "lr": lr * config.backbone_lr_scale},
        {"params": [p for p in learning if id(p) in head], "lr": lr},
    ]


def resolve_device(name: str):
    """The torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; CUDA asked for
    but missing is refused."""
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
    """Normalised ``(batch, 1, n_mels, frames)`` float32 arrays with their labels and the
    frames they start at on their recordings; with ``shift_rng``, each sub-clip is read
    from a random offset (``augment.shift_starts``)."""
    frames = data.features[0].shape[-1] if len(data.features) else 0
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        if shift_rng is None:
            x, starts = data.stack(part), data.index[part, 1] * frames
        else:
            starts = shift_starts(data, part, shift_rng)
            x = read_at(data, part, starts)
        x = (x - spec.input_mean) / spec.input_std
        yield x[:, None].astype(np.float32), data.labels[part], starts


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
    """Class probabilities for the given sub-clips, and the mean cross-entropy (of those
    with a label)."""
    import torch

    model.eval()
    probs, loss_sum = [], 0.0
    with torch.inference_mode():
        for x, y, _ in batches(data, rows, batch_size, spec):
            xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(xt).float()[:, : len(data.label_names)]  # not a student's features
            loss_sum += torch.nn.functional.cross_entropy(
                logits, torch.from_numpy(y).to(device), reduction="sum",
                ignore_index=UNLABELLED_ROW,
            ).item()  # fmt: skip
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
    teacher: TeacherTargets | None = None,
    init: Trained | None = None,
    threads: int | None = None,
) -> dict:
    """Train ``config.model`` on ``train_rows``, validate on ``val_rows``, write the run.

    Parameters
    ----------
    data : SubclipData
        The sub-clips (``musemo.data.load_dataset``).
    train_rows, val_rows : numpy.ndarray
        Sub-clip indices of each side of the split (``musemo.data.holdout_split``);
        ``val_rows`` empty: train on everything, score nothing.
    spec : FeatureSpec
        The features of ``data``; the input statistics of the training rows are added.
    config : TrainConfig
        How to train.
    out_dir : path
        The run folder: ``last.pt``, ``best.pt``, ``metrics.json``, ``split.json``, plots.
    split_mode : str
        Recorded in ``split.json`` (``"grouped"`` or ``"random"``).
    resume : bool
        Continue the run in ``out_dir`` from its ``last.pt`` (exactly, on the CPU).
    progress : bool
        A progress bar per epoch (on a terminal) and a line per epoch.
    on_epoch : callable, optional
        Called with each epoch's entry once its checkpoint is on disk (an exception there
        stops the run; ``resume=True`` picks it up again).
    teacher : TeacherTargets, optional
        Distil: the teacher's log-probabilities for every sub-clip of ``data``
        (``musemo.training.distill.teacher_targets``), recorded as ``config.teacher``;
        the loss is ``distill_alpha`` times the distillation loss at
        ``distill_temperature`` plus the rest times the labels' cross-entropy.
    init : Trained, optional
        Start from this checkpoint's weights and input statistics (fine-tune a trained
        model; the same model, head, labels and features), recorded as ``config.init``.
    threads : int, optional
        CPU threads of a run on the CPU. By default they follow the cores other programs
        leave free (``musemo.training.threads.ThreadGovernor``), unless
        ``OMP_NUM_THREADS`` is set.

    Returns
    -------
    dict
        The metrics written to ``out_dir/metrics.json``: ``history`` per epoch and the
        ``final`` scores (the last epoch's; without validation rows, only its epoch and
        device, with ``validated`` False). Under ``torchrun`` every process trains on
        its share of each epoch (DDP) and rank 0 validates and writes; the others
        return an empty dict.

    Raises
    ------
    ParameterError
        An empty side of the split, settings that cannot go together, a ``last.pt``
        trained otherwise, or a device out of memory.
    OutputError
        The run folder cannot be written.

    Examples
    --------
    >>> data, _ = load_dataset("data/", FeatureSpec(), cache="cache/")  # doctest: +SKIP
    >>> train, val = holdout_split(data)  # doctest: +SKIP
    >>> fit(data, train, val, FeatureSpec(), TrainConfig(epochs=20), "runs/a")  # doctest: +SKIP
    """
    import torch

    out = Path(out_dir)
    with writing(out, any_oserror=True):
        out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    train_rows, val_rows = np.asarray(train_rows), np.asarray(val_rows)
    if teacher is not None:
        config = dataclasses.replace(config, teacher=teacher.name)
    if init is not None:
        config = dataclasses.replace(config, init=init.name)
    _check_fit(train_rows, val_rows, spec, config)
    _check_teacher(teacher, data, config, train_rows, val_rows)
    _check_axes(data, config, train_rows)
    spec = _input_spec(spec, data, train_rows, config, init)
    extra = teacher.width if teacher is not None and config.distill_features else 0
    if init is not None and extra:
        raise ParameterError("--init fine-tunes a trained model: leave out --distill-features")
    split = describe_split(data, train_rows, val_rows, split_mode)
    run = _Run.start(data, spec, config, split, extra)
    if init is not None:
        run.model.load_state_dict(narrowed_state(init.state))
    run.teacher = teacher
    if run.world.main:
        write_text(out / "split.json", json.dumps(run.split, indent=2))
    if resume and (out / "last.pt").is_file():
        run.resume(out / "last.pt")
    with _governor(run.device, threads) as run.governor:
        _epochs(run, train_rows, val_rows, out, progress=progress, on_epoch=on_epoch)
    weights = torch.cat([p.detach().reshape(-1).float() for p in run.model.parameters()])
    spread = max_difference_over_processes(run.world, weights)  # every process takes part
    return run.finish(val_rows, out, weight_spread=spread) if run.world.main else {}


def _governor(device, threads: int | None):
    """The CPU threads' governor of a run on ``device`` (none on a GPU)."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    return ThreadGovernor(threads)


def _epochs(run, train_rows, val_rows, out: Path, *, progress: bool, on_epoch) -> None:
    """The epochs ``run`` has still to train, each validated and saved."""
    config = run.config
    for epoch in range(len(run.history) + 1, config.epochs + 1):
        if config.probe:
            loss_sum, correct, labelled, seen, seconds = run.fit_head(train_rows, progress=progress)
        else:
            loss_sum, correct, labelled, seen, seconds = run.train_epoch(
                train_rows, epoch, progress=progress
            )
        if run.world.main:
            accuracy = correct / labelled if labelled else math.nan
            entry = run.validate(val_rows, epoch, loss_sum / seen, accuracy, seen, seconds)
            run.save(out, epoch)
            if progress:
                print(_epoch_line(config, entry))
            write_text(out / "metrics.json", json.dumps({"history": run.history}, indent=2))
            if on_epoch is not None:
                on_epoch(entry)
        barrier(run.world)


def _check_fit(train_rows, val_rows, spec: FeatureSpec, config: TrainConfig) -> None:
    if len(train_rows) == 0:
        raise ParameterError("training needs training sub-clips (the split left none)")
    wrong = differences_from_musicnn(spec)
    if config.model == "musicnn" and config.weights == "pretrained" and wrong:
        raise ParameterError(
            "pretrained musicnn needs its own features (musemo.features.musicnn_spec()); "
            f"this spec has {', '.join(wrong)}"
        )
    if config.shift and spec.clip_hop_samples != spec.clip_samples:
        raise ParameterError(
            "shift (random offsets along the recording) needs sub-clips that neither overlap "
            f"nor leave gaps, but clip_hop_seconds={spec.clip_hop_seconds} and "
            f"clip_seconds={spec.clip_seconds}; turn shift off (--no-shift)"
        )


def _input_spec(
    spec: FeatureSpec, data: SubclipData, rows: np.ndarray, config, init: Trained | None
) -> FeatureSpec:
    """``spec`` with the input statistics the network learns with: those of ``init``'s
    training data when it starts from one (checked to fit), else of ``rows``."""
    if init is None:
        if config.init is not None:
            raise ParameterError(f"config.init={config.init!r} but no checkpoint to start from")
        mean, std = (0.0, 1.0) if config.model in RAW_INPUT else input_stats(data, rows)
        return dataclasses.replace(spec, input_mean=mean, input_std=std)
    state = init.state
    found = {"model": state["model"], "head": state["head"], "labels": list(init.labels)}
    wanted = {"model": config.model, "head": config.head, "labels": list(data.label_names)}
    wrong = [f"{k} {found[k]!r} (here {wanted[k]!r})" for k in found if found[k] != wanted[k]]
    ignore = {"input_mean": 0.0, "input_std": 1.0}
    if {**init.spec.to_dict(), **ignore} != {**spec.to_dict(), **ignore}:
        wrong.append("other features (train with its feature spec: --spec)")
    if wrong:
        raise ParameterError(f"--init {init.path} cannot start this run: it has {'; '.join(wrong)}")
    if config.weights not in ("none", "pretrained"):
        raise ParameterError(f"weights={config.weights!r}: the weights come from --init")
    return dataclasses.replace(spec, input_mean=init.spec.input_mean, input_std=init.spec.input_std)


def _check_teacher(
    teacher: TeacherTargets | None, data: SubclipData, config, train_rows, val_rows
) -> None:
    if (data.labels[val_rows] == UNLABELLED_ROW).any():
        raise ParameterError("validation sub-clips need labels: unlabelled audio only trains")
    if teacher is None:
        if (data.labels[train_rows] == UNLABELLED_ROW).any() and not config.axes:
            raise ParameterError("unlabelled sub-clips learn from a teacher: give one (--teacher)")
        if config.teacher is not None:
            raise ParameterError(f"config.teacher={config.teacher!r} but no teacher outputs")
        return
    if config.probe:
        raise ParameterError("probe fits its head in closed form, on labels: no teacher")
    if config.distill_features and not teacher.width:
        raise ParameterError(
            f"distill_features={config.distill_features}: the teacher outputs hold no "
            "features (teacher_targets(..., features=True), a musicnn teacher)"
        )
    shape = (len(data), len(data.label_names))
    if teacher.logp.shape != shape or teacher.logp.dtype != np.float32:
        raise ParameterError(
            f"teacher outputs {teacher.logp.dtype}{list(teacher.logp.shape)}, "
            f"not float32{list(shape)}"
        )
    windows = teacher.windows
    if windows is not None and windows.values.shape[::2] != (len(data.recordings), shape[1]):
        raise ParameterError(
            f"teacher windows {list(windows.values.shape)}: not one row per recording "
            f"({len(data.recordings)}) and label"
        )
    if not np.isfinite(teacher.logp).all() or not np.isfinite(getattr(windows, "values", 0)).all():
        raise ParameterError(f"teacher {teacher.name}: its outputs hold NaN or infinity")


def _check_axes(data: SubclipData, config: TrainConfig, train_rows: np.ndarray) -> None:
    """``config.axes`` needs two labels on opposite sides of both of Russell's axes (happy
    and sad, or tense and calm) and training recordings of 4Q's quadrants only."""
    if not config.axes:
        return
    names = data.label_names
    found = [QUADRANT_AXES.get(name) for name in names]
    if len(names) != 2 or None in found or any(a == b for a, b in zip(*found)):
        raise ParameterError(
            f"labels {list(names)}: learning valence and arousal apart needs two quadrants "
            "on opposite sides of both (happy and sad, or tense and calm)"
        )
    used = {data.recordings[i].label for i in np.unique(data.index[train_rows, 0])}
    if used - set(QUADRANT_AXES):
        raise ParameterError(
            f"labels {sorted(used - set(QUADRANT_AXES))} among the training recordings: "
            f"the valence and arousal probe knows 4Q's quadrants ({', '.join(QUADRANT_AXES)})"
        )


def _epoch_line(config: TrainConfig, e: dict) -> str:
    val = (
        f"val loss {e['val_loss']:.3f} acc {e['val_accuracy']:.3f} "
        f"recordings {e['val_recording_accuracy']:.3f}"
        if "val_loss" in e
        else "no validation"
    )
    return (
        f"{config.model} epoch {e['epoch']}/{config.epochs}: loss {e['train_loss']:.3f} "
        f"acc {e['train_accuracy']:.3f} | {val} | {e['train_subclips_per_s']:.1f} sub-clips/s"
    )


def _label_loss(logits, labels):
    """The mean cross-entropy over the sub-clips with a label (0 when none has one)."""
    import torch.nn.functional as F

    total = F.cross_entropy(logits.float(), labels, ignore_index=UNLABELLED_ROW, reduction="sum")
    return total / (labels != UNLABELLED_ROW).sum().clamp(min=1)  # no host sync on CUDA


@dataclasses.dataclass
class _Run:
    """One training run's state: the network, its optimiser, schedule and scaler, the
    history so far and the best epoch (validation recording accuracy, then loss)."""

    data: SubclipData
    spec: FeatureSpec
    config: TrainConfig
    split: dict
    world: Any
    device: Any
    amp_dtype: Any
    model: Any
    net: Any
    optimiser: Any
    scheduler: Any
    scaler: Any
    extra_outputs: int  # outputs after the labels': a student's for its teacher's features
    history: list = dataclasses.field(default_factory=list)
    teacher: Any = None  # TeacherTargets when distilling
    governor: Any = None  # ThreadGovernor on the CPU
    best: dict = dataclasses.field(default_factory=lambda: {"key": (-1.0, -math.inf), "epoch": 0})

    @classmethod
    def start(
        cls, data: SubclipData, spec: FeatureSpec, config: TrainConfig, split: dict, extra: int
    ):
        """A run of a new network with an output per label and ``extra`` more (a student's
        for its teacher's features)."""
        import torch

        w = world()
        device = resolve_device(config.device)
        if device.type == "cuda" and w.size > 1:
            device = torch.device("cuda", w.local_rank)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        amp_dtype = _amp_dtype(device, config.amp)
        torch.manual_seed(config.seed)
        model = build_model(
            config.model,
            n_classes=len(data.label_names) + extra,
            weights=config.weights,
            head=config.head,
            labels=data.label_names,
        ).to(device)
        freeze(model, config.frozen)
        # channels_last: faster on CUDA and, through oneDNN, 1.2-1.6x on the CPU too.
        model = model.to(memory_format=torch.channels_last)
        net = model
        if w.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [w.local_rank] if device.type == "cuda" else None
            net = DistributedDataParallel(model, device_ids=ids)
        optimiser = torch.optim.AdamW(
            parameter_groups(model, config), weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        return cls(
            data, spec, config, split, w, device, amp_dtype, model, net, optimiser, scheduler,
            scaler, extra,
        )  # fmt: skip

    def checkpoint(self, epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config.model,
            "head": self.config.head,
            "labels": list(self.data.label_names),
            "spec": self.spec.to_dict(),
            "config": dataclasses.asdict(self.config),
            "split": self.split,
            "epoch": epoch,
            "model_state": self.model.state_dict(),
            "extra_outputs": self.extra_outputs,
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best_key": list(self.best["key"]),
            "best_epoch": self.best["epoch"],
        }

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        # a setting added since the run began: it ran with that setting's default
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        same_config = {**defaults, **state["config"]} == dataclasses.asdict(self.config)
        if not same_config or state["spec"] != self.spec.to_dict():
            raise ParameterError(
                f"{path} was trained with other settings or data; "
                "use a new --out folder or the same settings"
            )
        self.model.load_state_dict(state["model_state"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = state["history"]
        self.best = {"key": tuple(state["best_key"]), "epoch": state["best_epoch"]}

    def train_epoch(self, rows: np.ndarray, epoch: int, *, progress: bool):
        """One pass over this process's share of ``rows``; returns the loss sum, correct
        count, labelled and all sub-clips seen over all processes, and this process's
        seconds."""
        import torch

        c, w = self.config, self.world
        generator = torch.Generator().manual_seed(c.seed * 100_003 + epoch)
        torch.manual_seed(c.seed * 100_003 + epoch)  # dropout
        order = rows[torch.randperm(len(rows), generator=generator).numpy()]
        if w.size > 1:  # equal shares, so every process runs the same number of steps
            order = order[: len(order) // w.size * w.size][w.rank :: w.size]
        train_mode(self.model, self.config.frozen)
        t0 = time.perf_counter()
        loss_sum = correct = labelled = 0.0
        shift_rng = np.random.default_rng([c.seed, epoch]) if c.shift else None
        bar = progress_bar(
            batches(self.data, order, c.batch_size, self.spec, shift_rng=shift_rng),
            total=math.ceil(len(order) / c.batch_size),
            desc=f"{c.model} epoch {epoch}/{c.epochs}",
            unit="batch",
            show=progress and w.main,
            leave=False,
        )
        for b, (x, y, starts) in enumerate(bar):
            soft = said = None
            if self.teacher is not None:  # what the teacher said of the audio read
                rows_b = order[b * c.batch_size : (b + 1) * c.batch_size]
                logp = torch.from_numpy(self.teacher.at(rows_b, starts, self.data))
                soft = tempered(logp, c.distill_temperature)
                if self.extra_outputs:
                    recordings = self.data.index[rows_b, 0]
                    said = torch.from_numpy(self.teacher.features.at(recordings, starts))
            loss, hits = self.step(x, y, generator, soft, said)
            if self.governor is not None:
                self.governor.update()
            loss_sum += loss * len(y)
            correct += hits
            labelled += int((y != UNLABELLED_ROW).sum())
            bar.set_postfix(loss=f"{loss:.3f}")
        bar.close()
        self.scheduler.step()
        seconds = time.perf_counter() - t0
        totals = sum_over_processes(w, [loss_sum, correct, labelled, len(order)], self.device)
        return (*totals, seconds)

    def fit_head(self, rows: np.ndarray, *, progress: bool):
        """The head in closed form (``config.probe``): a logistic regression on what it
        reads, averaged per recording, C by grouped inner cross-validation
        (``probe.fit_probe``; with ``config.axes``, valence and arousal apart,
        ``probe.axes_probe_as_linear``); its scaler goes into ``head_norm`` where the model
        has one (the pooled head), else is folded into the head. Returns the training loss
        sum, the correct count, the labelled and all sub-clips and the seconds, as
        ``train_epoch`` does."""
        import torch

        from .frozen import head_inputs

        if self.world.size > 1:
            raise ParameterError("probe runs in one process: leave torchrun out")
        t0 = time.perf_counter()
        x = head_inputs(self.model, self.data, rows, self.spec, self.device, progress=progress)
        x = x.astype(np.float64)
        norm = self.model.head_norm
        standardises = hasattr(norm, "scale")
        weight, bias, mean, scale = self._probe_layer(x, rows, fold=not standardises)
        with torch.no_grad():
            for param, value in ((self.model.head.weight, weight), (self.model.head.bias, bias)):
                param.copy_(torch.from_numpy(value))
            if standardises:
                norm.mean.copy_(torch.from_numpy(mean))
                norm.scale.copy_(torch.from_numpy(scale))
        labelled = self.data.labels[rows] != UNLABELLED_ROW
        logits = torch.from_numpy((x[labelled] - mean) / scale @ weight.T + bias)
        truth = torch.from_numpy(self.data.labels[rows][labelled])
        loss = torch.nn.functional.cross_entropy(logits, truth, reduction="sum").item()
        correct = int((logits.argmax(dim=1) == truth).sum())
        return loss, correct, int(labelled.sum()), len(rows), time.perf_counter() - t0

    def _probe_layer(self, x: np.ndarray, rows: np.ndarray, *, fold: bool) -> tuple:
        """The probe fitted on the recording means of ``x`` as (weight, bias, mean, scale)."""
        from .probe import axes_probe_as_linear, fit_probe, probe_as_linear

        ids, means, _ = recording_means(x, self.data.index[rows, 0])
        recordings = [self.data.recordings[i] for i in ids]
        groups = np.array([r.group for r in recordings])
        seed, names = self.config.seed, self.data.label_names
        if self.config.axes:
            axes = np.array([QUADRANT_AXES[r.label] for r in recordings])
            label_axes = np.array([QUADRANT_AXES[name] for name in names])
            return axes_probe_as_linear(means, axes, groups, label_axes, fold=fold, seed=seed)[:4]
        y = np.array([names.index(r.label) for r in recordings], dtype=np.int64)
        clf, _ = fit_probe(means, y, groups, seed=seed)
        return probe_as_linear(clf, len(names), fold=fold)

    def step(self, x: np.ndarray, y: np.ndarray, generator, soft=None, said=None):
        """One optimiser step on a batch (augmented, mixed up if asked; with ``soft``, the
        teacher's tempered probabilities, distilled, and with ``said`` its features); its
        loss and how many sub-clips the network got right."""
        import torch

        c, device = self.config, self.device
        xt = torch.from_numpy(x)
        if c.augment:
            spec_augment(xt, generator)
        if device.type == "cuda":  # page-locked, so the copy overlaps the GPU's work
            xt = xt.pin_memory()
        xt = xt.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yt = torch.from_numpy(y).to(device, non_blocking=True)
        lam, partner = 1.0, None
        if c.mixup > 0:  # blend each sub-clip with another, and their labels alike
            lam = float(torch.distributions.Beta(c.mixup, c.mixup).sample())
            partner = torch.randperm(len(y), generator=generator).to(device)
            xt = lam * xt + (1 - lam) * xt[partner]
            soft = None if soft is None else lam * soft + (1 - lam) * soft[partner.cpu()]
            said = None if said is None else lam * said + (1 - lam) * said[partner.cpu()]
        try:
            with torch.autocast(
                device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
            ):
                out = self.net(xt)
                logits = out[:, : len(self.data.label_names)]
                loss = _label_loss(logits, yt)
                if partner is not None:
                    loss = lam * loss + (1 - lam) * _label_loss(logits, yt[partner])
                if soft is not None:
                    a = c.distill_alpha
                    kd = distillation_loss(logits, soft.to(device), c.distill_temperature)
                    loss = a * kd + (1 - a) * loss
                if said is not None:  # the features the teacher's head reads, standardised
                    said_out = out[:, len(self.data.label_names) :].float()
                    mse = torch.nn.functional.mse_loss(said_out, said.to(device))
                    loss = loss + c.distill_features * mse
            self.optimiser.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
        except torch.OutOfMemoryError as exc:
            raise ParameterError(
                f"{device} ran out of memory training {c.model} with batch size "
                f"{c.batch_size}: try --batch-size {max(1, c.batch_size // 2)}"
            ) from exc
        self.scaler.update()
        return loss.item(), int((logits.argmax(dim=1) == yt).sum().item())

    def evaluate(self, rows: np.ndarray) -> tuple[dict, float, np.ndarray]:
        """Scores of ``rows``, their mean loss and class probabilities (a probe's from the
        frozen network's outputs that this process holds: ``frozen.head_inputs``)."""
        if self.config.probe:
            from .frozen import head_inputs, head_predict

            x = head_inputs(self.model, self.data, rows, self.spec, self.device, progress=False)
            probs, loss = head_predict(self.model, x, self.data.labels[rows], self.device)
        else:
            probs, loss = predict(
                self.model, self.data, rows, self.spec, self.device, amp_dtype=self.amp_dtype
            )
        d = self.data
        scores = evaluation(
            probs, d.labels[rows], d.index[rows, 0], d.label_names, aggregate=self.config.aggregate
        )
        return scores, loss, probs

    def validate(self, rows, epoch: int, train_loss, train_accuracy, seen, seconds) -> dict:
        """Score ``rows`` (when there are any) after an epoch; add the epoch to the history."""
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "lr": self.optimiser.param_groups[0]["lr"],
            "train_seconds": seconds,
            "train_subclips_per_s": seen / seconds,
            "processes": self.world.size,
            "cpu_threads": self.governor.threads if self.governor is not None else None,
        }
        if len(rows):
            ev, val_loss, _ = self.evaluate(rows)
            entry["val_loss"] = val_loss
            entry["val_accuracy"] = ev["subclip"]["accuracy"]
            entry["val_recording_accuracy"] = ev["recording"]["accuracy"]
        self.history.append(entry)
        return entry

    def save(self, out: Path, epoch: int) -> None:
        """``best.pt`` when this epoch is the best so far (on validation), then ``last.pt``."""
        e = self.history[-1]
        key = (e["val_recording_accuracy"], -e["val_loss"]) if "val_loss" in e else None
        if key is not None and key > tuple(self.best["key"]):
            self.best = {"key": key, "epoch": epoch}
            save_checkpoint(out / "best.pt", self.checkpoint(epoch))
        save_checkpoint(out / "last.pt", self.checkpoint(epoch))

    def finish(self, rows: np.ndarray, out: Path, *, weight_spread: float) -> dict:
        """The final scores, ``metrics.json`` and the plots. The scores are the last
        epoch's: picking the best epoch on the validation split and reporting that split
        would flatter the model; ``best.pt`` (chosen on validation) is kept for use.
        ``weight_spread``: how far the processes' final weights differ (0 when one)."""
        final: dict = {"validated": bool(len(rows))}
        if len(rows):
            scores, val_loss, probs = self.evaluate(rows)
            _write_recordings(out / VAL_RECORDINGS, probs, self.data, rows, self.config.aggregate)
            final.update(scores, val_loss=val_loss, best_epoch=self.best["epoch"])
        final.update(
            epoch=self.history[-1]["epoch"],
            device=str(self.device),
            amp=str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            processes=self.world.size,
            weights_max_difference_between_processes=weight_spread,
        )
        metrics = {
            "model": self.config.model,
            "config": dataclasses.asdict(self.config),
            "split": self.split,
            "history": self.history,
            "final": final,
        }
        write_text(out / "metrics.json", json.dumps(metrics, indent=2))
        _plots(metrics, out)
        return metrics


def _write_recordings(path: Path, probs: np.ndarray, data: SubclipData, rows, aggregate) -> None:
    """Each validation recording's probabilities (``aggregate`` of its sub-clips') and true
    label, the last epoch's (``VAL_RECORDINGS``: what ``cross_validate`` calibrates on)."""
    recording = data.index[rows, 0]
    ids, truth, _ = per_recording(probs, recording, data.labels[rows], aggregate=aggregate)
    means = recording_probabilities(probs, recording, aggregate=aggregate)[1]
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, recording=ids, label=truth, probabilities=means)


def _plots(metrics: dict, out: Path) -> None:
    try:
        from ..plotting import plot_confusion, plot_curves
    except ImportError:  # pragma: no cover - matplotlib missing
        return
    name = metrics["model"]
    plot_curves(metrics["history"], out / "curves.png", title=f"{name}: training curves")
    final = metrics["final"]
    if not final["validated"]:
        return
    plot_confusion(
        {"sub-clips": final["subclip"]["confusion"], "recordings": final["recording"]["confusion"]},
        final["labels"],
        out / "confusion.png",
        title=f"{name}: validation, epoch {final['epoch']}",
    )
