#!/bin/sh
# report_example.sh BUILD_DIR OUT_DIR: the run report shown in docs/slurm.md ("Timings and the
# run report"), regenerated. Makes a 4-layer synthetic Llama (the demo's shape) in
# OUT_DIR/model, runs tests/study/report_example.yaml on 2 ranks into OUT_DIR/run and prints
# OUT_DIR/run/report.md without its Config section (as the docs show it). Timings and peak
# RSS depend on the machine; the rest is the same at any rank count. Not a test.
# Env: QS_MPIEXEC (default "mpiexec --oversubscribe").
set -e
build=${1:?usage: report_example.sh BUILD_DIR OUT_DIR}
out=${2:?usage: report_example.sh BUILD_DIR OUT_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/model" "$out/run"
"$build/qshard" synth-model --arch llama --layers 4 --hidden 256 --intermediate 704 \
    --heads 4 --kv-heads 2 --vocab 512 --dtype bf16 --tokens 65536 "$out/model" >/dev/null
${QS_MPIEXEC:-mpiexec --oversubscribe} -n 2 "$build/qshard" run \
    "$src/tests/study/report_example.yaml" --quiet --set "model=$out/model" \
    --set "run_dir=$out/run" --set "calib.tokens=$out/model/tokens.u32" \
    --set "eval.tokens=$out/model/tokens.u32"
sed '/^## Config/,$d' "$out/run/report.md"
