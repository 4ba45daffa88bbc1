#!/bin/sh
# bench_gguf.sh BUILD_DIR [WORK_DIR]: the GGUF numbers of docs/quant.md. Not a test.
#
# 1. Calibrates tinyllama-a (../shared/fixtures) on the 128 x 256-token windows of
#    calib_offsets_128x256.txt with one rank (`qshard run` with quant.method rtn, so the other
#    stages are quick; reconstruct.inputs float, for which calibrate writes its layer files):
#    WORK_DIR/run/calib/layer-NNN.h5 hold the Hessians. Skipped when
#    WORK_DIR/run/calib/manifest.json exists (the calibration is deterministic).
# 2. bench_gguf errors: relative output error of every GGUF type and quantizer variant
#    (--quick: Q4_0 only).
# 3. bench_gguf speed: throughput on a 4096 x 4096 layer (--quick: 1024 x 1024).
# --quick is a check that the commands run, not the docs' numbers.
# Env: QS_SHARED_DIR (default ../shared next to the source tree), QS_MPIEXEC.
set -e
build=${1:?usage: bench_gguf.sh BUILD_DIR [WORK_DIR] [--quick]}
work=${2:-/tmp/qs-gguf-bench}
quick=${3:-}
src=$(cd "$(dirname "$0")/../.." && pwd)
fx=${QS_SHARED_DIR:-$src/../shared}/fixtures
[ -d "$fx/tinyllama-a" ] || { echo "bench_gguf.sh: no fixtures at $fx" >&2; exit 2; }
mkdir -p "$work"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ ! -f "$work/run/calib/manifest.json" ]; then
    cat > "$work/calib.yaml" <<EOF
model: $fx/tinyllama-a
run_dir: $work/run
calib:
  tokens: $fx/tokens/calib.u32
  nsamples: 128
  seqlen: 256
  sampling: file
  offsets_file: $fx/tokens/calib_offsets_128x256.txt
quant:
  method: rtn
  bits: [4]
  group_size: [128]
reconstruct:
  inputs: float        # calibrate writes its Hessians for float inputs only
EOF
    ${QS_MPIEXEC:-mpiexec --oversubscribe} -n 1 "$build/qshard" run "$work/calib.yaml" --quiet
fi
"$build/tests/bench_gguf" errors "$fx/tinyllama-a" "$work/run" ${quick:+Q4_0}
"$build/tests/bench_gguf" speed $quick
