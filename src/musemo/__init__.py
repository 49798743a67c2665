"""musemo: music emotion recognition with a fast, librosa-exact spectrogram engine."""

from .audio import load_audio
from .errors import AudioError, OutputError, ParameterError
from .extractor import MelExtractor
from .features import available_kernels, melspectrogram, power_to_db, stft_power
from .filters import get_window, mel_filters, mel_frequencies
from .spec import FeatureSpec

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "FeatureSpec",
    "MelExtractor",
    "OutputError",
    "ParameterError",
    "available_kernels",
    "get_window",
    "load_audio",
    "mel_filters",
    "mel_frequencies",
    "melspectrogram",
    "power_to_db",
    "stft_power",
]
