"""Spectrogram features: librosa-compatible functions on the C++ engine, the feature spec
that travels with every model, the reusable extractor, and sub-clip cutting.

Torch-free; everything that computes features imports from here.
"""

from .clips import normalise_loudness, subclip_starts, subclips
from .extractor import MelExtractor
from .filters import get_window, mel_filters, mel_frequencies
from .spec import FeatureSpec, musicnn_spec
from .spectral import available_kernels, melspectrogram, power_to_db, stft_power

__all__ = [
    "FeatureSpec",
    "MelExtractor",
    "available_kernels",
    "get_window",
    "mel_filters",
    "mel_frequencies",
    "melspectrogram",
    "musicnn_spec",
    "normalise_loudness",
    "power_to_db",
    "stft_power",
    "subclip_starts",
    "subclips",
]
