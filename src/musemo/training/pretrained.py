"""Where musicnn's pretrained weights come from: the ``musicnn`` wheel (ISC licence).

The wheel declares ``numpy<1.17`` and ``tensorflow>=1.14``, so it is not a dependency:
musemo reads the TensorFlow checkpoint straight out of the wheel file, which it keeps
in its cache (``~/.cache/musemo/weights``, or ``$MUSEMO_WEIGHTS``), or out of a copy
installed with ``pip install --no-deps musicnn``. ``musemo fetch musicnn`` downloads
the wheel with pip, or takes a copied one (``--wheel PATH``), and checks its SHA-256.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, writing
from .._digest import file_sha256
from ..errors import ParameterError
from .tf_bundle import read_index, read_tensors

WHEEL = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
REQUIREMENT = "musicnn==0.1.0"
CHECKPOINTS = ("MSD_musicnn", "MTT_musicnn")
_BUNDLE = (".index", ".data-00000-of-00001")


def weights_dir() -> Path:
    """The folder musemo keeps downloaded weights in."""
    if os.environ.get("MUSEMO_WEIGHTS"):
        return Path(os.environ["MUSEMO_WEIGHTS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "musemo" / "weights"


def _installed_package() -> Path | None:
    """The folder of an installed ``musicnn`` package, found without importing it
    (its ``__init__`` needs TensorFlow)."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _not_found() -> ParameterError:
    return ParameterError(
        f"musicnn's pretrained weights are not on this machine. Run `musemo fetch musicnn` "
        f"(it downloads {WHEEL} with pip), or on a machine without network copy that wheel "
        f"(pip download --no-deps {REQUIREMENT}) to {weights_dir() / WHEEL}, or run "
        f"`musemo fetch musicnn --wheel PATH`"
    )


def add_wheel(path: str | os.PathLike) -> Path:
    """Check a musicnn wheel's SHA-256 and copy it into :func:`weights_dir` atomically."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"no such file: {path}")
    found = file_sha256(path)
    if found != WHEEL_SHA256:
        raise ParameterError(
            f"{path} is not {WHEEL}: its SHA-256 is {found}, expected {WHEEL_SHA256}"
        )
    target = weights_dir() / WHEEL
    with writing(target, any_oserror=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    return target


def download_wheel() -> Path:
    """Download the musicnn wheel with pip (no dependencies) into :func:`weights_dir`."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        done = subprocess.run(
            [*cmd, "-d", tmp, REQUIREMENT], capture_output=True, text=True, check=False
        )
        wheel = Path(tmp) / WHEEL
        if done.returncode != 0 or not wheel.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ParameterError(
                f"cannot download {REQUIREMENT} with pip ({lines[-1] if lines else 'no output'}). "
                f"On a machine without network, copy {WHEEL} to {weights_dir() / WHEEL}, "
                f"or run `musemo fetch musicnn --wheel PATH`"
            )
        return add_wheel(wheel)


def find_wheel() -> Path | None:
    """The cached wheel, when there is one."""
    path = weights_dir() / WHEEL
    return path if path.is_file() else None


def _bundle_bytes(checkpoint: str) -> tuple[bytes, bytes]:
    """The ``.index`` and ``.data`` files of one of the wheel's checkpoints."""
    wheel = find_wheel()
    if wheel is not None:
        try:
            with zipfile.ZipFile(wheel) as z:
                return tuple(z.read(f"musicnn/{checkpoint}/{part}") for part in _BUNDLE)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ParameterError(f"{wheel} is not a usable musicnn wheel: {exc}") from exc
    package = _installed_package()
    if package is not None and (package / checkpoint / _BUNDLE[0]).is_file():
        return tuple((package / checkpoint / part).read_bytes() for part in _BUNDLE)
    raise _not_found()


def musicnn_tensors(checkpoint: str = "MSD_musicnn") -> dict[str, np.ndarray]:
    """Every model tensor of one musicnn checkpoint (the optimiser's slots skipped),
    each checked against its CRC-32C."""
    if checkpoint not in CHECKPOINTS:
        raise ParameterError(f"checkpoint {checkpoint!r}: choose one of {', '.join(CHECKPOINTS)}")
    index, data = _bundle_bytes(checkpoint)
    try:
        names = [k for k in read_index(index) if "Adam" not in k and not k.startswith("beta")]
    except ValueError as exc:
        raise ParameterError(f"unreadable checkpoint index: {exc}") from exc
    return read_tensors(index, data, names)
