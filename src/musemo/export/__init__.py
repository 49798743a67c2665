"""Export: a trained checkpoint to ONNX and TFLite files, fp32 and calibrated int8,
each carrying its feature spec and labels, with a report of what int8 cost and gained."""

from .formats import FORMATS, Format
from .pipeline import export_checkpoint
from .report import report_markdown

__all__ = ["FORMATS", "Format", "export_checkpoint", "report_markdown"]
