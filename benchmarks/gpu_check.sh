#!/usr/bin/env bash
# The one script a session with an NVIDIA GPU runs (issue 7): build hrnn with CUDA, run the CUDA
# tests (CUDA == CPU engine), then the GPU benchmark; every figure and log goes under $OUT
# (./gpu-out by default). Sized for an H200 inside 10 minutes; needs no network (CMake, a C++
# compiler, nvcc, numpy, pandas, pytest, pybind11 from the machine's image).
#
#   OUT=/path/to/figures bash benchmarks/gpu_check.sh
#
# BENCH_ARGS=--quick: a smaller benchmark; SANITIZE_ON_FAIL=1: memcheck up to the first failing CUDA
# test; MEMCHECK=1: memcheck on a few small CUDA tests; PROFILE=1: every kernel's time in one
# recommend_batch (PROFILE=fit: in a short fit; ncu, benchmarks/gpu_profile.py).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
PY=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
step() { printf '\n=== %s (%s, %d s)\n' "$1" "$(date +%T)" "$SECONDS"; }
status=0

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
nvcc --version | tail -2

step "build (HRNN_CUDA=ON, sm_90)"
GEN=; command -v ninja >/dev/null && GEN="-G Ninja"
cmake -S . -B build/gpu $GEN -DCMAKE_BUILD_TYPE=Release -DHRNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >"$OUT/configure.log" \
  || { cat "$OUT/configure.log"; exit 1; }
cmake --build build/gpu -j"$JOBS" || exit 1
# The package from the source tree with this build's extension beside it.
rm -rf build/gpu/pkg && mkdir -p build/gpu/pkg && cp -r python/hrnn build/gpu/pkg/
rm -f build/gpu/pkg/hrnn/_core*.so && cp build/gpu/_core*.so build/gpu/pkg/hrnn/
export PYTHONPATH=$ROOT/build/gpu/pkg:$ROOT/tests PYTHONUNBUFFERED=1
"$PY" -c "import hrnn; print(hrnn.build_info())"

step "CUDA tests (tests/test_cuda.py)"
if ! timeout 240 "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs --junitxml="$OUT/test_cuda.xml"; then
  status=1
  if [ -n "${SANITIZE_ON_FAIL:-}" ] && command -v compute-sanitizer >/dev/null; then
    step "compute-sanitizer memcheck, up to the first failing CUDA test"
    timeout 120 compute-sanitizer --tool memcheck --print-limit 20 \
      "$PY" -m pytest tests/test_cuda.py -x -q -p no:cacheprovider 2>&1 | tail -80
  fi
fi

step "GPU benchmark (benchmarks/gpu_bench.py)"
# BENCH_ARGS=--quick for a smoke run.
timeout 330 "$PY" benchmarks/gpu_bench.py --out "$OUT/gpu_bench.json" ${BENCH_ARGS:-} || status=1

if [ -n "${MEMCHECK:-}" ] && command -v compute-sanitizer >/dev/null; then
  step "compute-sanitizer memcheck on the small scoring tests"
  timeout 120 compute-sanitizer --tool memcheck --print-limit 20 "$PY" -m pytest tests/test_cuda.py -q \
    -p no:cacheprovider -k "small_catalogue or top_k_equals_the_cpu or window_matches" 2>&1 | tail -40 || status=1
fi

if [ -n "${PROFILE:-}" ] && command -v ncu >/dev/null; then
  what=score; [ "$PROFILE" = fit ] && what=fit
  step "kernel times of a short CUDA $what (ncu)"
  [ $what = score ] && timeout 45 "$PY" benchmarks/gpu_profile.py --score-timing
  timeout 80 ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$OUT/ncu_$what.csv" \
    "$PY" benchmarks/gpu_profile.py --$what && "$PY" benchmarks/gpu_profile.py --summarise "$OUT/ncu_$what.csv"
fi

step "done: status $status"
exit $status
