#!/bin/sh
# bench_prepare_ab.sh: GPTQ prepare of several qshard builds, alternating inside one run
# (docs/performance.md "prepare: three formulations in one run"). Not a test.
#
# Usage: sh tests/bench/bench_prepare_ab.sh DIR ROUNDS NAME=BUILD_DIR:THREADS ...
# Each round runs, in the order given, BUILD_DIR/tests/bench_gptq --shape 4096x4096
# --shape 4096x11008 --threads THREADS --dir DIR --zero-min1 0 (DIR: the shapes' H and W,
# made by the first run when absent: the same bytes for every build). A build of an older
# commit: git archive COMMIT | tar -x -C SRC; cmake -S SRC -B SRC/build
# -DCMAKE_BUILD_TYPE=RelWithDebInfo; cmake --build SRC/build --target bench_gptq (the commit
# must have bench_gptq's --shape: 666a7fb or later).
set -eu
dir=${1:?usage: bench_prepare_ab.sh DIR ROUNDS NAME=BUILD_DIR:THREADS ...}
rounds=${2:?usage: bench_prepare_ab.sh DIR ROUNDS NAME=BUILD_DIR:THREADS ...}
shift 2
mkdir -p "$dir"
echo "uptime before: $(uptime)"
echo "busiest processes:"; ps -eo pcpu,etime,args --sort=-pcpu | sed -n '2,7p' | cut -c1-160
r=1
while [ "$r" -le "$rounds" ]; do
    for v in "$@"; do
        name=${v%%=*} rest=${v#*=}
        b=${rest%:*} t=${rest##*:}
        echo "== round $r $name threads $t (load $(cut -d' ' -f1 /proc/loadavg))"
        OPENBLAS_NUM_THREADS=1 "$b/tests/bench_gptq" --shape 4096x4096 --shape 4096x11008 \
            --threads "$t" --dir "$dir" --zero-min1 0 | grep -E '^sgemm| x '
    done
    r=$((r + 1))
done
echo "uptime after: $(uptime)"
