"""The C++ engine on its own, built with strict warnings: natively for every
kernel set, and cross-compiled for aarch64 (Raspberry Pi) and run under qemu."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"
CHECK = ROOT / "tests" / "native" / "check_engine.cpp"
FLAGS = ["-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{CPP}"]
X86_KERNELS = {
    "avx2": (8, ["-mavx2", "-mfma"]),
    "avx512": (16, ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"]),
}


SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def build(
    cxx: str,
    out: Path,
    *,
    x86: bool,
    extra: tuple[str, ...] = (),
    compile_flags: tuple[str, ...] = (),
) -> Path:
    kernels = {"generic": (4, [])} | (X86_KERNELS if x86 else {})
    objects = []
    for isa, (lanes, isa_flags) in kernels.items():
        obj = out / f"kernels_{isa}.o"
        subprocess.run(
            [
                cxx,
                *FLAGS,
                *compile_flags,
                "-fno-math-errno",
                f"-DMUSEMO_ISA={isa}",
                f"-DMUSEMO_LANES={lanes}",
                *isa_flags,
                "-c",
                str(CPP / "kernels.cpp"),
                "-o",
                str(obj),
            ],
            check=True,
        )
        objects.append(str(obj))
    defines = ["-DMUSEMO_HAVE_AVX2", "-DMUSEMO_HAVE_AVX512"] if x86 else []
    exe = out / "check_engine"
    subprocess.run(
        [
            cxx,
            *FLAGS,
            *compile_flags,
            *defines,
            str(CHECK),
            str(CPP / "spectrogram.cpp"),
            *objects,
            "-o",
            str(exe),
            "-pthread",
            *extra,
        ],
        check=True,
    )
    return exe


def assert_all_passed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith(" 0 failed")


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_engine_natively(tmp_path):
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    exe = build("c++", tmp_path, x86=x86)
    assert_all_passed(subprocess.run([str(exe)], capture_output=True, text=True, timeout=300))


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_engine_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """Every kernel set, with leak detection: any report fails the run."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    flags = tuple(SANITIZE)
    try:
        exe = build("c++", tmp_path, x86=x86, compile_flags=flags, extra=flags)
    except subprocess.CalledProcessError:
        pytest.skip("this compiler cannot build with -fsanitize=address,undefined")
    env = {
        **os.environ,
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600, env=env)
    assert "Sanitizer" not in proc.stderr, proc.stderr[-4000:]
    assert_all_passed(proc)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None or shutil.which("qemu-aarch64") is None,
    reason="needs g++-aarch64-linux-gnu and qemu-user (.ci/run installs them)",
)
def test_engine_on_aarch64_under_qemu(tmp_path):
    exe = build("aarch64-linux-gnu-g++", tmp_path, x86=False, extra=("-static",))
    proc = subprocess.run(["qemu-aarch64", str(exe)], capture_output=True, text=True, timeout=600)
    assert "generic" in proc.stdout
    assert_all_passed(proc)
