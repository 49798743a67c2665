"""Pictures people would rather see than read (matplotlib, written atomically)."""

from __future__ import annotations

import os

import numpy as np

from ._atomic import atomic_path
from .errors import MissingDependencyError
from .features.filters import mel_frequencies
from .features.spec import FeatureSpec


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("plotting needs matplotlib", "plot") from exc
    return plt


def plot_melspectrogram(
    S: np.ndarray, spec: FeatureSpec, path: str | os.PathLike, *, title: str = ""
) -> None:
    """Save a (log-)mel spectrogram ``(n_mels, t)`` as a PNG with time and Hz axes."""
    plt = _pyplot()
    n_mels, n_frames = S.shape
    seconds = n_frames * spec.hop_length / spec.sample_rate
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    img = ax.imshow(
        S,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, seconds, 0, n_mels),
        interpolation="nearest",
    )
    centres = mel_frequencies(n_mels + 2, fmin=spec.fmin, fmax=spec.effective_fmax, htk=spec.htk)[
        1:-1
    ]
    ticks = np.linspace(0, n_mels - 1, 7).round().astype(int)
    ax.set_yticks(ticks + 0.5)
    ax.set_yticklabels([f"{centres[t]:.0f}" for t in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band centre (Hz)")
    ax.set_title(
        title or f"mel spectrogram ({n_mels} mels, n_fft {spec.n_fft}, hop {spec.hop_length})"
    )
    fig.colorbar(img, ax=ax, label="dB" if spec.db else "power")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_curves(history: list[dict], path: str | os.PathLike, *, title: str = "") -> None:
    """Training and validation loss and accuracy per epoch (the paper's Fig. 8); the
    training side alone for a run without validation."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    validated = all("val_loss" in h for h in history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="training")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="training (sub-clips)")
    if validated:
        ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
        ax_acc.plot(
            epochs, [h["val_accuracy"] for h in history], "o-", label="validation (sub-clips)"
        )
        ax_acc.plot(
            epochs,
            [h["val_recording_accuracy"] for h in history],
            "s--",
            label="validation (recordings)",
        )
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_confusion(
    matrices: dict[str, list[list[int]]],
    labels: list[str],
    path: str | os.PathLike,
    *,
    title: str = "",
) -> None:
    """One confusion matrix per entry of ``matrices`` (e.g. sub-clips and recordings)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.5 * len(matrices), 4), dpi=100)
    axes = np.atleast_1d(axes)
    for ax, (name, m) in zip(axes, matrices.items()):
        m = np.asarray(m)
        ax.imshow(m, cmap="Blues")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black",
                )
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        acc = np.trace(m) / max(1, m.sum())
        ax.set_title(f"{name}: accuracy {acc:.3f}")
    fig.suptitle(title or "confusion")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
