#!/usr/bin/env bash
# Proof of the Pi kit on emulated aarch64: a Debian bookworm arm64 root file system
# (debootstrap + qemu-user-static), this kit's setup.sh run inside it, and the int8
# ONNX and TFLite models checked against this machine's answers (reference.py).
#
#   sudo bash export/raspberry-pi/emulated_check.sh [WORKDIR]
#
# Needs root, apt and a working binfmt_misc. Exit status: 0 checked and equal,
# 1 a real difference or failure, 77 this machine cannot emulate aarch64 (skipped).
# Correctness only: never quote latency from emulation.
set -euo pipefail

kit="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$kit/../.." && pwd)"
work="${1:-${TMPDIR:-/tmp}/musemo-aarch64}"
rootfs="$work/rootfs"
python_host="${PYTHON:-$repo/.venv/bin/python}"
start=$(date +%s)

say() { echo "[aarch64 $(( $(date +%s) - start ))s] $*"; }
skip() { echo "SKIPPED: $*" >&2; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, mounts)"
command -v apt-get >/dev/null || skip "needs apt-get"

# --- emulation ----------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || skip "cannot install ${need[*]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || skip "cannot mount binfmt_misc (not allowed in this container)"
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
  || skip "qemu-aarch64 is not registered with binfmt_misc"

# --- the reference, on this machine -------------------------------------------
mkdir -p "$work"
rm -rf "$work/models"  # always from this source tree; only the root file system is reused
say "training, exporting and answering on $(uname -m)"
"$python_host" "$kit/reference.py" make "$work/models" >"$work/reference.log" 2>&1 \
  || { tail -30 "$work/reference.log"; exit 1; }

# --- the root file system -----------------------------------------------------
mirror="${MUSEMO_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then  # the mirror this machine's apt already uses
  mirror="$(apt-get indextargets --format '$(REPO_URI)' 'Codename: bookworm' 2>/dev/null \
    | grep -v security | head -1)"
fi
[ -n "$mirror" ] || skip "no Debian bookworm mirror configured (set MUSEMO_DEBIAN_MIRROR)"
if [ ! -f "$rootfs/.musemo-ready" ]; then
  say "debootstrap bookworm arm64 (minbase)"
  rm -rf "$rootfs"
  debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-dev,g++,cmake,ninja-build,ca-certificates,libsndfile1 \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -30 "$work/debootstrap.log"; exit 1; }
  touch "$rootfs/.musemo-ready"
fi

# --- mounts: proc, a Pi-like cpuinfo (onnxruntime's import crashes on the host's
# text under emulation), DNS, and this machine's CA bundle for pip -------------
mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
for cpu in 0 1; do  # two Cortex-A72 cores, as a Raspberry Pi 4 reports them
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$cpu"
  printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
  printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
done >"$work/cpuinfo"
printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n' >>"$work/cpuinfo"
mount --bind "$work/cpuinfo" "$rootfs/proc/cpuinfo" && mounted+=("$rootfs/proc/cpuinfo")
mkdir -p "$rootfs/sys/devices/system/cpu"  # cpuinfo (in onnxruntime) reads these too
echo 0-1 >"$rootfs/sys/devices/system/cpu/possible"
echo 0-1 >"$rootfs/sys/devices/system/cpu/present"
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
cert="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
[ -f "$cert" ] && cp -L "$cert" "$rootfs/etc/ssl/certs/host-ca.crt"

# --- this source tree and the models, copied in -------------------------------
rm -rf "$rootfs/root/musemo-src" "$rootfs/root/models"
mkdir -p "$rootfs/root/musemo-src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) \
  | tar -xf - -C "$rootfs/root/musemo-src"
cp -r "$work/models" "$rootfs/root/models"

# LiteRT's int8 kernels give wrong answers on qemu's default CPU model.
run() {
  chroot "$rootfs" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    QEMU_CPU=cortex-a72 PIP_CERT=/etc/ssl/certs/host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
    ${http_proxy:+http_proxy="$http_proxy"} ${https_proxy:+https_proxy="$https_proxy"} "$@"
}
say "$(run /usr/bin/python3 --version) in $(run /usr/bin/uname -m); running setup.sh"
run /usr/bin/env MUSEMO_SKIP_APT=1 MUSEMO_VENV=/opt/musemo-venv \
  bash /root/musemo-src/export/raspberry-pi/setup.sh >"$work/setup.log" 2>&1 \
  || { tail -40 "$work/setup.log"; exit 1; }
tail -3 "$work/setup.log"

say "classifying with the int8 models"
if run /opt/musemo-venv/bin/python /root/musemo-src/export/raspberry-pi/reference.py check /root/models; then
  status=0
else
  status=1
fi
say "done ($(du -shx "$work" 2>/dev/null | cut -f1) in $work)"
exit $status
