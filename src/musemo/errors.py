"""Exceptions raised by musemo."""

from __future__ import annotations


class ParameterError(ValueError):
    """A parameter or an input array is invalid; the message names it and its value."""


class AudioError(ValueError):
    """An audio file cannot be read or decoded; the message names the file."""


class OutputError(OSError):
    """A result cannot be written (full disk, read-only folder, ...); the message names
    the path. Whatever was there before is left as it was."""
