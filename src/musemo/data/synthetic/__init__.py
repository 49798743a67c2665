"""Synthetic data: a plucked-string instrument and drone, a sitar-like raga set, and
labelled MIDI rendered with FluidSynth. For running the pipeline, not for claims
about music."""

from .instruments import demo_recording
from .midi import render_midi
from .ragas import make_builtin_dataset, raga_recording

__all__ = ["demo_recording", "make_builtin_dataset", "raga_recording", "render_midi"]
