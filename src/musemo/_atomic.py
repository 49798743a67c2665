"""Atomic file writes: a temporary file beside the target, then a rename.

Temporary names carry the writer's host and process id, so a later run can tell the
leftovers of a killed process on this host (``remove_leftovers``) from another run's
work, here or on another host sharing the folder (an NFS home).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import OutputError

# errors that say the output cannot be written, whatever the writer was doing
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_LEFTOVER = re.compile(r"^\..*\.tmp\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[^.]+")


def _host() -> str:
    """This machine's name as it goes into temporary names (letters, digits, dashes)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _temp_prefix(stem: str) -> str:
    """The prefix of a temporary file or folder this process makes beside its output."""
    return f".{stem}.tmp.{_host()}.{os.getpid()}."


@contextlib.contextmanager
def writing(path: str | os.PathLike, *, any_oserror: bool = False) -> Iterator[None]:
    """Turn a full disk or read-only folder while writing ``path`` into an ``OutputError``.

    With ``any_oserror`` every ``OSError`` is about the output (e.g. making its folder).
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if not any_oserror and exc.errno not in _WRITE_ERRNOS:
            raise
        err = OutputError(f"cannot write {path}: {exc.strerror or exc}")
        err.errno = exc.errno
        raise err from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success it replaces ``path``.

    On error the temporary file is removed and ``path`` is left as it was; a full
    disk or a read-only folder raises ``OutputError`` naming ``path``.
    """
    path = Path(path)
    with writing(path, any_oserror=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=_temp_prefix(path.stem), suffix=f".tmp{path.suffix}", dir=path.parent
        )
        os.close(fd)
    try:
        with writing(path):
            yield Path(tmp)
        with writing(path, any_oserror=True):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staging_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder inside ``folder`` (made if missing), removed on exit;
    leftovers of killed processes in ``folder`` are removed first."""
    folder = Path(folder)
    with writing(folder, any_oserror=True):
        folder.mkdir(parents=True, exist_ok=True)
        remove_leftovers(folder)
        staging = Path(tempfile.mkdtemp(prefix=_temp_prefix("musemo-staging"), dir=folder))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed one not yet reaped, a zombie, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def remove_leftovers(folder: str | os.PathLike) -> int:
    """Remove the temporary files and folders in ``folder`` of processes on this host
    that died mid-write (e.g. killed); another host's are left alone, as its process
    cannot be seen from here. Returns how many were removed."""
    removed = 0
    host = _host()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _LEFTOVER.match(entry.name)
            if m is None or m["host"] != host or _alive(int(m["pid"])):
                continue
            with contextlib.suppress(OSError):  # gone already, or a read-only disk
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
    return removed


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` without ever leaving a half-written file at ``path``."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise TypeError("save_npy writes numeric arrays only")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        # f.write, not np.save's tofile: a full disk then raises ENOSPC, not a bare OSError
        f.write(memoryview(array.reshape(-1)).cast("B"))


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
