"""The edge runtime: classify files, arrays and live streams with an exported model.

Torch-free by construction: it imports the features, audio decoding and the model
runtimes (onnxruntime, LiteRT), never ``musemo.data``, ``musemo.training`` or
``musemo.export`` (``tests/test_layout.py`` checks it).

    >>> from musemo.edge import Classifier
    >>> Classifier("squeezenet1_0.int8.tflite").predict_file("song.wav").label  # doctest: +SKIP
    'happy'
"""

from .backends import Backend, open_model
from .classifier import Classifier, Result, Stream, WindowResult
from .live import classify_live, microphone
from .metadata import ModelInfo

__all__ = [
    "Backend",
    "Classifier",
    "ModelInfo",
    "Result",
    "Stream",
    "WindowResult",
    "classify_live",
    "microphone",
    "open_model",
]
