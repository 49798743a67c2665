"""Knowledge distillation: a student network learns from a teacher's soft outputs.

The teacher is a musemo checkpoint (a run's ``last.pt``, or the run folder). Its
outputs, the log-probabilities of each of its own windows, are computed once per
(teacher, audio file) and cached beside the features (``CACHE/teachers/<checkpoint
digest>/<file digest>.npy``). A student window's target is the mean of the
log-probabilities of the teacher windows it overlaps, weighted by the overlap, so a
teacher with other windows (musicnn's 3 s at 16 kHz) teaches students of any spec, and
a sub-clip read from a random offset (``TrainConfig.shift``) learns what the teacher
said of the audio it holds.
Under cross-validation each fold's student learns from the teacher trained on the same
fold (``CV_FOLDER/fold<i>/last.pt``): a teacher that saw the held-out recordings would
hand their labels to the student.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import save_npy, writing
from ..data.subclips import SubclipData, gather
from ..errors import ParameterError
from ..features.spec import FeatureSpec
from .checkpoints import Trained, fold_checkpoints, model_from_checkpoint


class Teacher(Trained):
    """A trained network whose outputs a student learns from."""

    def window_outputs(
        self, kind: str, data: SubclipData, entries: dict[Path, Path], *,
        cache: str | os.PathLike, device: str = "cpu", progress: bool = True,
    ) -> dict[Path, np.ndarray]:  # fmt: skip
        """Each recording of ``data`` (gathered with the teacher's spec; ``entries``: its
        feature files): what the teacher says of each of its windows, ``(windows, width)``
        float32, from the cache where it has them. ``kind`` is ``"logp"``, the
        log-probabilities of its labels, or ``"features"``, what its head reads,
        standardised as the head standardises it (a musicnn teacher's). A probe's frozen
        network runs once per window in a process whatever the number of teachers."""
        folder = Path(cache) / "teachers" / self.digest / ("" if kind == "logp" else kind)
        # named as the feature cache names the file (its content's digest, hashed once)
        targets = {rec.path: folder / entries[rec.path].name for rec in data.recordings}
        todo = [r for r, rec in enumerate(data.recordings) if not _valid(targets[rec.path])]
        if todo:
            rows = np.flatnonzero(np.isin(data.index[:, 0], todo))
            out = self._outputs(kind, data, rows, device, progress)
            with writing(folder, any_oserror=True):
                folder.mkdir(parents=True, exist_ok=True)
            for r in todo:
                rec_rows = data.index[rows, 0] == r
                save_npy(targets[data.recordings[r].path], out[rec_rows].astype(np.float32))
        return {path: np.load(target) for path, target in targets.items()}

    def _outputs(self, kind: str, data: SubclipData, rows: np.ndarray, device: str, progress):
        import torch

        from .frozen import head_inputs, head_predict
        from .loop import predict, resolve_device

        where = resolve_device(device)
        model = model_from_checkpoint(self.state).to(where)
        if kind == "logp" and not self.state["config"].get("probe"):
            probs = predict(model, data, rows, self.spec, where)[0]
            return np.log(np.maximum(probs, 1e-12))
        if not hasattr(model, "head_input"):
            raise ParameterError(
                f"teacher {self.path} is a {self.state['model']}: only musicnn teachers "
                "say what their head reads (--distill-features)"
            )
        x = head_inputs(model, data, rows, self.spec, where, progress=progress)
        if kind == "logp":
            return np.log(np.maximum(head_predict(model, x, data.labels[rows], where)[0], 1e-12))
        with torch.inference_mode():
            return model.head_norm(torch.from_numpy(x).to(where)).float().cpu().numpy()


def _valid(path: Path) -> bool:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return a.dtype == np.float32 and a.ndim == 2 and np.isfinite(a).all()


@dataclasses.dataclass(frozen=True)
class TeacherWindows:
    """A teacher's outputs along each recording of a student's data: its log-probabilities
    or features of each window, ``(recordings, most windows, width)`` float32 (``counts`` valid per
    recording, the rest padding), where they lie (``window``: hop and length in seconds)
    and how the student's sub-clips and their frames lie (``clip``: hop and length in
    seconds, frames per sub-clip)."""

    values: np.ndarray
    counts: np.ndarray
    window: tuple[float, float]
    clip: tuple[float, float, int]

    def at(self, recordings: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The targets of student windows of ``recordings`` starting at frame ``starts`` of
        their recording (``training.augment.shift_starts``): the mean of the
        values of the teacher windows each overlaps, weighted by the overlap,
        ``(n, width)`` float32; a window past the teacher's last one takes the mean of
        all of the recording's."""
        hop, size, frames = self.clip
        sub, offset = np.divmod(np.asarray(starts), frames)
        s0 = sub * hop + offset * (size / frames)
        t0 = np.arange(self.values.shape[1]) * self.window[0]
        w = np.minimum(s0[:, None] + size, t0[None] + self.window[1])
        w = np.maximum(w - np.maximum(s0[:, None], t0[None]), 0.0)
        valid = np.arange(self.values.shape[1])[None] < self.counts[recordings][:, None]
        w = np.where(valid, w, 0.0)
        w = np.where(w.sum(axis=1, keepdims=True) > 0, w, valid)
        out = np.einsum("nw,nwl->nl", w, self.values[recordings]) / w.sum(axis=1, keepdims=True)
        return out.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TeacherTargets:
    """What a student learns from: the teacher's log-probabilities for each of its
    sub-clips, ``(sub-clips, labels)`` float32, which teacher gave them and, where known,
    its windows along each recording, from which a sub-clip read at another offset
    (``TrainConfig.shift``) takes the targets of where it was read; and, to distil them
    too, what its head reads in each window (``features``, standardised)."""

    name: str
    logp: np.ndarray
    windows: TeacherWindows | None = None
    features: TeacherWindows | None = None  # what its head reads (--distill-features)

    def at(self, rows: np.ndarray, starts: np.ndarray, data: SubclipData) -> np.ndarray:
        """The targets of sub-clips ``rows`` of ``data`` read from frame ``starts``."""
        if self.windows is None:
            return self.logp[rows]
        return self.windows.at(data.index[rows, 0], starts)

    @property
    def width(self) -> int:
        """How many features a student learns to say beside its labels (0: none)."""
        return 0 if self.features is None else self.features.values.shape[2]


def teacher_windows(
    data: SubclipData, spec: FeatureSpec, outputs: dict[Path, np.ndarray], teacher_spec: FeatureSpec
) -> TeacherWindows:
    """The teacher's window outputs of each of ``data``'s recordings (``outputs``: by path)
    as ``TeacherWindows``.

    Raises
    ------
    ParameterError
        A recording the teacher has no windows for (too short for them, or unreadable).
    """
    found = []
    for rec in data.recordings:
        logp = outputs.get(rec.path)
        if logp is None or not len(logp):
            raise ParameterError(f"{rec.path}: the teacher has no windows for it")
        found.append(logp)
    counts = np.array([len(f) for f in found])
    padded = np.zeros((len(found), counts.max(), found[0].shape[1]), np.float32)
    for r, logp in enumerate(found):
        padded[r, : len(logp)] = logp
    seconds = [(s.clip_hop_samples / s.sample_rate, s.clip_samples / s.sample_rate)
               for s in (teacher_spec, spec)]  # fmt: skip
    frames = data.features[0].shape[-1]
    return TeacherWindows(padded, counts, seconds[0], (*seconds[1], frames))


def teacher_targets(
    teachers: Sequence[Teacher], data: SubclipData, spec: FeatureSpec, *,
    cache: str | os.PathLike, device: str = "cpu", workers: int = 1, progress: bool = True,
    features: bool = False,
) -> list[TeacherTargets]:  # fmt: skip
    """Each teacher's targets for the student's sub-clips (``TeacherWindows.at``), and with
    ``features`` what its head reads in each window, from the features of ``data``'s
    recordings gathered once with the teachers' spec (teachers of one cross-validation
    share it)."""
    for teacher in teachers:
        if teacher.labels != tuple(data.label_names):
            raise ParameterError(
                f"teacher {teacher.path} has labels {list(teacher.labels)}, the data "
                f"{list(data.label_names)}: a teacher must know the same labels in the same order"
            )
        if teacher.spec.feature_key() != teachers[0].spec.feature_key():
            raise ParameterError(f"teachers {teachers[0].path} and {teacher.path}: other features")
    if not teachers:
        return []
    tdata, report = gather(data.recordings, teachers[0].spec, teachers[0].labels, cache=cache,
                           workers=workers, progress=progress)  # fmt: skip
    found = []
    for t in teachers:
        along = {kind: teacher_windows(data, spec, t.window_outputs(
            kind, tdata, report.entries, cache=cache, device=device, progress=progress), t.spec)
            for kind in ("logp", "features")[: 1 + features]}  # fmt: skip
        logp = along["logp"]
        nominal = logp.at(data.index[:, 0], data.index[:, 1] * logp.clip[2])
        found.append(TeacherTargets(t.name, nominal, logp, along.get("features")))
    return found


def fold_teachers(
    folder: str | os.PathLike, data: SubclipData, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> list[Teacher]:
    """The teacher of each fold: ``folder/fold<i>`` (``checkpoints.fold_checkpoints``)."""
    return fold_checkpoints(folder, data, folds, "--teacher", Teacher)


def distillation_loss(logits, target_probs, temperature: float):
    """``temperature**2`` times the KL divergence from the teacher's tempered probabilities
    ``target_probs`` to the student's tempered ``logits``, per sub-clip (Hinton et al.)."""
    import torch.nn.functional as F

    log_q = F.log_softmax(logits.float() / temperature, dim=1)
    kl = F.kl_div(log_q, target_probs, reduction="batchmean")
    return kl * temperature**2


def tempered(logp, temperature: float):
    """The teacher's probabilities at ``temperature`` from its log-probabilities (a tensor)."""
    import torch

    return torch.softmax(logp / temperature, dim=1)
