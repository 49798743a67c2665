"""Training: the four CNNs and musicnn (pretrained on the Million Song Dataset), the
training loop on CUDA or the CPU, checkpoints, augmentation, the baseline, probes of
musicnn's embeddings, model comparisons and cross-validation.

Needs the ``train`` extra (torch, torchvision, scikit-learn); torch is imported when
a function needs it, not when this package is imported.
"""

from .baseline import fit_baseline
from .checkpoints import load_checkpoint, model_from_checkpoint, save_checkpoint
from .experiments import compare_models, cross_validate
from .loop import TrainConfig, fit, predict
from .models import CNNS, MODELS, build_model
from .musicnn import pretrained_musicnn

__all__ = [
    "CNNS",
    "MODELS",
    "TrainConfig",
    "build_model",
    "compare_models",
    "cross_validate",
    "fit",
    "fit_baseline",
    "load_checkpoint",
    "model_from_checkpoint",
    "predict",
    "pretrained_musicnn",
    "save_checkpoint",
]
