#!/usr/bin/env bash
# One prepared run on a CUDA machine: build musemo there, run the CUDA tests,
# measure training throughput (fp32 / bf16 / fp16), and cross-validate on a pack
# written by `benchmarks/crossval.py pack`. Each stage has its own time limit and
# what it measured lands in $OUT even when a later stage runs out of time.
#
#   OUT=/tmp/gpu CV_RUNS='...' bash benchmarks/gpu.sh [PACK] [SECONDS_PER_CV_RUN]
#
# Wheels in .whl/ (e.g. soundfile, soxr for a machine without them) are installed
# to /tmp/site first.
set -u
out=${OUT:-/tmp/gpu}
pack=${1:-}
cv_seconds=${2:-300}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
stage() { echo; echo "=== $(date +%T) $*"; }
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

stage "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
nproc

stage "install"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install -q --no-index --no-deps \
  --no-build-isolation --target /tmp/musemo . || exit 1
export PYTHONPATH=/tmp/musemo${PYTHONPATH:+:$PYTHONPATH}
python3 -c 'import musemo; print("musemo", musemo.__version__, musemo.available_kernels())' || exit 1

stage "CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" --junitxml="$out/pytest.xml" \
  tests/test_cuda.py tests/test_augment.py

stage "training throughput, each model's own input (CNNs 128x431, musicnn 96x187)"
timeout 240 python3 benchmarks/train_speed.py --device cuda --windows 3 --json "$out/train_speed.json"

stage "musicnn fine-tuning throughput, front end frozen (as the README's fine-tuned row)"
timeout 90 python3 benchmarks/train_speed.py --device cuda --windows 3 --models musicnn \
  --freeze input_bn frontend --json "$out/train_speed_musicnn_frozen.json"

# Cross-validation runs, '|'-separated argument lists for crossval.py run, e.g.
#   CV_RUNS='--models squeezenet1_0 --epochs 30|--models resnet18 --mixup 0.2'
# Run folders go to RAM (/dev/shm): checkpoints are rewritten every epoch.
cv_root=/dev/shm; [ -w /dev/shm ] || cv_root=/tmp
if [ -n "$pack" ]; then
  i=0
  IFS='|' read -r -a runs <<< "${CV_RUNS:---models squeezenet1_0}"
  for run_args in "${runs[@]}"; do
    i=$((i + 1))
    stage "cross-validation $i on $pack: $run_args (${cv_seconds} s at most)"
    # shellcheck disable=SC2086
    timeout "$cv_seconds" python3 benchmarks/crossval.py run "$pack" --device cuda \
      --jobs "$(($(nproc) - 2))" --out "$cv_root/cv$i" $run_args
    cp "$cv_root/cv$i/crossval.md" "$out/crossval$i.md" 2>/dev/null
    cp "$cv_root/cv$i/crossval.json" "$out/crossval$i.json" 2>/dev/null
  done
fi
stage "done"
