"""Exceptions raised by musemo: one base class, and the standard class each one also is."""

from __future__ import annotations


class MusemoError(Exception):
    """Base of musemo's own errors; each is also the standard exception it resembles."""


class ParameterError(MusemoError, ValueError):
    """A parameter or an input array is invalid; the message names it and its value."""


class AudioError(MusemoError, ValueError):
    """An audio file cannot be read or decoded; the message names the file."""


class OutputError(MusemoError, OSError):
    """A result cannot be written (full disk, read-only folder, ...); the message names
    the path. Whatever was there before is left as it was."""


class MissingDependencyError(MusemoError, ImportError):
    """An optional dependency is not installed; the message names what needs it and the
    ``pip install 'musemo[extra]'`` that brings it."""

    def __init__(self, what: str, extra: str, detail: str = "") -> None:
        tail = f" ({detail})" if detail else ""
        super().__init__(f"{what}: pip install 'musemo[{extra}]'{tail}")
        self.extra = extra
