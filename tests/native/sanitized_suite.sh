#!/usr/bin/env bash
# The feature engine's Python tests against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of the extension. Any sanitizer report aborts the run (exit status != 0).
#   bash tests/native/sanitized_suite.sh [BUILD_DIR]      (after `make test` built .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
# cmake and ninja (the generator below) from the venv (the dev extra), else from PATH
export PATH="$(dirname "$PY"):$PATH"
BUILD=$(realpath -m "${1:-build/sanitized}")
TESTS=(tests/test_extractor.py tests/test_fft.py tests/test_windows.py tests/test_decibels.py
       tests/test_parity_librosa.py tests/test_properties.py tests/test_threads.py
       tests/test_bad_input.py tests/test_fuzz.py tests/test_data.py tests/test_tf_bundle.py
       tests/test_broken_audio.py::test_each_file_is_decoded_or_refused_by_name
       tests/test_broken_audio.py::test_an_hour_long_recording)

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMUSEMO_SANITIZE=address,undefined \
  -DPython_EXECUTABLE="$("$PY" -c 'import sys; print(sys.executable)')" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD" >/dev/null

# The package as installed, with the sanitized extension in place of the normal one.
rm -rf "$BUILD/pkg" && mkdir -p "$BUILD/pkg"
(cd src && git ls-files musemo | tar -cf - -T -) | tar -xf - -C "$BUILD/pkg"
cp "$BUILD"/_native*.so "$BUILD/pkg/musemo/"

# The ASan runtime must load first; CPython's own allocations are never freed at
# exit, so leaks are checked where the engine runs alone (tests/test_native.py).
export LD_PRELOAD="$(c++ -print-file-name=libasan.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$BUILD/pkg"
export MUSEMO_FUZZ_EXAMPLES=${MUSEMO_FUZZ_EXAMPLES:-1000} MUSEMO_FUZZ_REPORT="$BUILD/fuzz.json"
"$PY" -c "import musemo._native as n, sys; assert n.__file__.startswith(sys.argv[1]), n.__file__; print('sanitized extension:', n.__file__)" "$BUILD/pkg"
"$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
"$PY" -c "import json, sys; print('fuzz cases against the sanitized engine:', json.dumps(json.load(open(sys.argv[1]))))" "$BUILD/fuzz.json"
