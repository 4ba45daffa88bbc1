#!/bin/sh
# bench_gguf_write.sh BUILD_DIR WORK_DIR [--layers 8] [--hidden 1024]: the GGUF writing speed of
# docs/gguf.md "Numbers" (a benchmark, not a test). Writes a synthetic Llama (default 8 layers,
# hidden 1024, intermediate 2816, 16 heads, 4 kv heads, vocab 32000, bf16: 311 MB) as an F16
# GGUF with the test driver tests/tools/gguf_write, once with one writer and once with three
# writer processes (each computes the layout and writes its own tensors into the one file, as
# ranks do), prints both wall times and compares the two files with cmp. The vocabulary
# metadata comes from the fixtures' tok512.model (../shared/fixtures/tokenizer; QS_SHARED_DIR).
set -e
build=${1:?usage: bench_gguf_write.sh BUILD_DIR WORK_DIR [--layers N] [--hidden H]}
work=${2:?usage: bench_gguf_write.sh BUILD_DIR WORK_DIR [--layers N] [--hidden H]}
shift 2
layers=8
hidden=1024
inter=2816
while [ $# -gt 0 ]; do
    case $1 in
        --layers) layers=$2; shift 2 ;;
        --hidden) hidden=$2; inter=$((hidden * 11 / 4)); shift 2 ;;
        *) echo "bench_gguf_write.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
src=$(cd "$(dirname "$0")/../.." && pwd)
tok=${QS_SHARED_DIR:-$src/../shared}/fixtures/tokenizer/tok512.model
[ -f "$tok" ] || { echo "bench_gguf_write.sh: no $tok (set QS_SHARED_DIR)" >&2; exit 2; }
mkdir -p "$work"
rm -rf "$work/model" "$work"/f16-*.gguf
"$build/qshard" synth-model --arch llama --layers "$layers" --hidden "$hidden" \
    --intermediate "$inter" --kv-heads 4 --vocab 32000 --dtype bf16 "$work/model" >/dev/null
echo "model: synthetic Llama, $layers layers, hidden $hidden, intermediate $inter, 4 kv heads," \
     "vocab 32000, bf16, $(du -b "$work/model/model.safetensors" | cut -f1) bytes"
for w in 1 3; do
    t0=$(date +%s.%N)
    "$build/tests/gguf_write" model "$work/model" "$work/f16-$w.gguf" --type f16 \
        --tokenizer "$tok" --writers "$w"
    t1=$(date +%s.%N)
    echo "F16 GGUF, $w writer(s): $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s, $(du -b "$work/f16-$w.gguf" | cut -f1) bytes"
done
cmp "$work/f16-1.gguf" "$work/f16-3.gguf" && echo "the two files are identical (cmp)"
