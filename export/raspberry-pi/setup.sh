#!/usr/bin/env bash
# Install musemo's edge runtime from this source tree into a virtual environment.
#
#   bash export/raspberry-pi/setup.sh            # venv in ~/musemo-venv
#   MUSEMO_VENV=/opt/musemo bash export/raspberry-pi/setup.sh
#
# Installs the apt packages it needs (compiler, cmake, PortAudio) unless
# MUSEMO_SKIP_APT=1, then musemo with its edge, live and formats extras, building its C++
# feature engine for this CPU. Torch and tensorflow are never installed.
set -euo pipefail

kit="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$kit/../.." && pwd)"
venv="${MUSEMO_VENV:-$HOME/musemo-venv}"
python="${PYTHON:-python3}"

arch="$(uname -m)"
if [ "$arch" != aarch64 ]; then
  echo "note: this is $arch, not aarch64 (64-bit Raspberry Pi OS); going on anyway" >&2
fi
"$python" - <<'PY'
import sys
if sys.version_info < (3, 9):
    sys.exit(f"musemo needs Python 3.9 or newer, this is {sys.version.split()[0]}")
PY

if [ "${MUSEMO_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends \
    python3-venv python3-dev g++ cmake ninja-build libportaudio2
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The edge, live and formats extras (onnxruntime, LiteRT, sounddevice, PyAV: its
# aarch64 wheels bundle FFmpeg for M4A, WebM, WMA) and nothing else: the training and
# export extras (torch, ...) stay off the device.
"$venv/bin/python" -m pip install --quiet "$repo[edge,live,formats]"

"$venv/bin/python" - <<'PY'
import sys
import musemo
import musemo.edge  # noqa: F401
heavy = [m for m in ("torch", "tensorflow") if m in sys.modules]
assert not heavy, f"the edge runtime imported {heavy}"
print(f"musemo {musemo.__version__} ready; feature kernels: {musemo.available_kernels()}")
PY
echo "classify a file:  $venv/bin/musemo infer song.wav   (the default model; or: infer MODEL.int8.tflite song.wav)"
echo "listen live:      $venv/bin/musemo infer --live"
