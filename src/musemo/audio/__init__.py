"""Reading audio files: libsndfile decodes (PyAV's FFmpeg what it cannot), soxr resamples."""

from .files import AUDIO_SUFFIXES, AudioFile, audio_files, load_audio

__all__ = ["AUDIO_SUFFIXES", "AudioFile", "audio_files", "load_audio"]
