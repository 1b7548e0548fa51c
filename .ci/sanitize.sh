#!/usr/bin/env bash
# Sanitizers: the C++ core under AddressSanitizer + UndefinedBehaviorSanitizer (through the Python
# tests that drive it hardest), then under ThreadSanitizer (a C++ driver: many threads on one
# Engine, no interpreter in the way). Any sanitizer report fails the script.
#
#   .ci/sanitize.sh            both
#   .ci/sanitize.sh asan|tsan  one of them
#
# Builds go to build/asan and build/tsan, the Python environment to build/sanitize-venv (all
# ignored by git). HRNN_SANITIZE_JOBS sets the build parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
JOBS=${HRNN_SANITIZE_JOBS:-$(nproc)}
VENV=$ROOT/build/sanitize-venv
PYTHON=${PYTHON:-python3}
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
t_start=$SECONDS

step "environment: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja \
  numpy pandas "pytest>=7" "hypothesis>=6"
export PATH="$VENV/bin:$PATH"
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS

if [ "$WHAT" = all ] || [ "$WHAT" = asan ]; then
  step "ASan + UBSan build (pip install . -Ccmake.define.HRNN_SANITIZE=ON -Cbuild-dir=build/asan)"
  t0=$SECONDS
  # -fno-sanitize-recover: any UBSan finding aborts instead of printing and going on.
  pip install --quiet --no-build-isolation --force-reinstall --no-deps . \
    -Ccmake.define.HRNN_SANITIZE=ON -Cbuild-dir=build/asan -Ccmake.build-type=RelWithDebInfo \
    "-Ccmake.define.CMAKE_CXX_FLAGS=-fno-sanitize-recover=all -fno-omit-frame-pointer"
  echo "built in $((SECONDS - t0)) s"

  LIBASAN=$(g++ -print-file-name=libasan.so)
  LIBSTDCXX=$(g++ -print-file-name=libstdc++.so)
  [ -f "$LIBASAN" ] || { echo "no libasan.so next to g++ ($LIBASAN)"; exit 1; }
  # (allocator_may_return_null: an absurd allocation throws std::bad_alloc -> MemoryError, as in
  # the normal build, instead of ending the process; the tests check that it is handled.)
  # Python itself is not instrumented: the ASan runtime must be loaded first, and libstdc++ with
  # it (otherwise ASan's __cxa_throw interceptor finds no real one and the first C++ exception
  # aborts). Python's allocator keeps memory for good, so leak reports would be noise. Reports go
  # to files (pytest's output capture would swallow them when the process dies) and are printed.
  REPORTS=$ROOT/build/asan/reports
  rm -rf "$REPORTS" && mkdir -p "$REPORTS"
  show_reports() {
    local rc=$?
    if compgen -G "$REPORTS/*" >/dev/null; then
      echo "=== sanitizer reports:"; cat "$REPORTS"/*; rc=1
    fi
    exit $rc
  }
  trap show_reports EXIT
  export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
  export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:exitcode=99:strict_init_order=1:detect_stack_use_after_return=1:log_path=$REPORTS/asan
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=98:log_path=$REPORTS/ubsan
  export HRNN_STRESS_SECONDS=1 HRNN_FUZZ_SCALE=0.3
  # The installed (instrumented) hrnn must be the one imported: no python/ on the path.
  unset PYTHONPATH
  (cd "$ROOT" && python -c "import hrnn, sys; f = hrnn._core.__file__; print('hrnn from', f); sys.exit('not the sanitized build' if '$VENV' not in f else 0)")

  step "ASan + UBSan: C++-heavy tests"
  t0=$SECONDS
  # The C++ engine against the float64 reference (forward passes and gradients, query scores, the
  # optimizer), queries and their scoring kernels, model files (round trips and damaged files),
  # threads; then the fuzzing
  # of model files and of the query API, and the stress tests, at reduced sizes.
  # (the reference's own checks, tests/test_reference_*.py, are numpy only.)
  python -m pytest -q -p no:cacheprovider tests/test_engine_reference.py
  python -m pytest -q -p no:cacheprovider \
    tests/test_queries.py tests/test_scoring.py tests/test_query_scores.py tests/test_model_file.py \
    tests/test_concurrency.py tests/test_recent_lists.py tests/test_optimizer.py tests/test_session_start.py \
    tests/test_session_neighbors.py
  python -m pytest -q -p no:cacheprovider tests/test_fuzz_model_file.py tests/test_stress.py \
    "tests/test_fuzz_api.py::test_recommend_with_random_arguments" \
    "tests/test_fuzz_api.py::test_recommend_batch_with_random_arguments" \
    "tests/test_fuzz_api.py::test_put_events_with_random_arguments_changes_nothing_on_error"
  echo "ASan + UBSan tests: $((SECONDS - t0)) s"

  step "ASan + UBSan: the C++ thread driver"
  g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    -I cpp/include tests/sanitize/tsan_driver.cpp build/asan/libhrnn_core.a -fopenmp -pthread \
    -o build/asan/thread_driver
  LD_PRELOAD= build/asan/thread_driver 2
  unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
fi

if [ "$WHAT" = all ] || [ "$WHAT" = tsan ]; then
  step "TSan build: libhrnn_core.a with -fsanitize=thread (OpenMP off: libgomp is not instrumented)"
  t0=$SECONDS
  cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHRNN_OPENMP=OFF \
    "-DCMAKE_CXX_FLAGS=-fsanitize=thread -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
    -DPython_EXECUTABLE="$VENV/bin/python" -Dpybind11_DIR="$("$VENV/bin/python" -m pybind11 --cmakedir)" \
    >build/tsan-configure.log || { cat build/tsan-configure.log; exit 1; }
  cmake --build build/tsan --target hrnn_core
  g++ -std=c++17 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -I cpp/include \
    tests/sanitize/tsan_driver.cpp build/tsan/libhrnn_core.a -pthread -o build/tsan/tsan_driver
  echo "built in $((SECONDS - t0)) s"

  step "TSan: put_events + recommend_batch + states + dumps on one Engine"
  TSAN_OPTIONS="halt_on_error=1:exitcode=97:second_deadlock_stack=1:suppressions=$ROOT/tests/sanitize/tsan.supp" \
    build/tsan/tsan_driver 3
fi

step "sanitizers: all clean in $((SECONDS - t_start)) s"
