"""musemo: music emotion recognition (happy / sad) that runs on small devices.

The top level holds the feature API (librosa-compatible, on a C++ engine), audio
loading and the exceptions; the subpackages hold the rest:

- ``musemo.features``: spectrograms, the feature spec, the extractor, sub-clips;
- ``musemo.edge``: the torch-free runtime for exported models (files, arrays, streams);
- ``musemo.data``: recordings, the feature cache, splits; ``musemo.data.synthetic``;
- ``musemo.training``: the CNNs, training, checkpoints, baseline, cross-validation;
- ``musemo.export``: ONNX and TFLite export, fp32 and int8, with a report.
"""

from ._version import __version__
from .audio import load_audio
from .errors import AudioError, MusemoError, OutputError, ParameterError
from .features import (
    FeatureSpec,
    MelExtractor,
    available_kernels,
    get_window,
    mel_filters,
    mel_frequencies,
    melspectrogram,
    power_to_db,
    stft_power,
)

__all__ = [
    "AudioError",
    "FeatureSpec",
    "MelExtractor",
    "MusemoError",
    "OutputError",
    "ParameterError",
    "__version__",
    "available_kernels",
    "get_window",
    "load_audio",
    "mel_filters",
    "mel_frequencies",
    "melspectrogram",
    "power_to_db",
    "stft_power",
]
