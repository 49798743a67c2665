"""Pictures people would rather see than read (matplotlib, written atomically)."""

from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_path
from .filters import mel_frequencies
from .spec import FeatureSpec


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'musemo[plot]'") from exc
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
