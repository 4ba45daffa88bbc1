#!/bin/sh
# bench_blas.sh: Debian's OpenBLAS (what qshard links) against Debian's BLIS on qshard's BLAS
# and LAPACK calls (tests/bench/bench_blas.c), one thread, alternating inside one run. Not a
# test: a benchmark command (docs/performance.md "BLAS choice"; the decision in docs/design.md).
#
# Usage: sh tests/bench/bench_blas.sh BUILD_DIR OUT_DIR [ROUNDS=2] [SECS=2]
# Needs: BUILD_DIR/tests/bench_blas (the OpenBLAS build: cmake target bench_blas) and
# BUILD_DIR/tests/bench_sgemm; Debian packages libblis-dev libblis4-pthread (BLIS 0.9.0) and
# liblapack3 (reference LAPACK). Installing BLIS does not change what qshard links: its
# libblas.so.3 alternative has a lower priority than OpenBLAS's (check with
# `update-alternatives --display libblas.so.3-x86_64-linux-gnu`).
#
# The BLIS build: bench_blas.c with -DQS_BLAS_BLIS against BLIS's pthread libblis.so.4 and the
# reference liblapack.so.3 (BLIS has no LAPACK), found through DT_RPATH so that reference LAPACK
# calls BLIS's BLAS (checked below with ldd). Contenders, each run once per round in this order:
#   openblas            OpenBLAS as qshard runs it (its own core detection)
#   openblas-skylakex   OPENBLAS_CORETYPE=SkylakeX: OpenBLAS's AVX-512 kernels
#   blis                BLIS with its own detection
#   blis-skx            BLIS_ARCH_TYPE=0 (skx, AVX-512)
#   blis-zen3           BLIS_ARCH_TYPE=6 (zen3, AVX2)
# The GEMM peak of the same run: BUILD_DIR/tests/bench_sgemm 5 (one process, OpenBLAS as
# linked) at the start and at the end.
set -eu
B=${1:?usage: bench_blas.sh BUILD_DIR OUT_DIR [ROUNDS] [SECS]}
O=${2:?usage: bench_blas.sh BUILD_DIR OUT_DIR [ROUNDS] [SECS]}
rounds=${3:-2}
secs=${4:-2}
src=$(cd "$(dirname "$0")" && pwd)
lib=/usr/lib/x86_64-linux-gnu
mkdir -p "$O"
[ -x "$B/tests/bench_blas" ] || { echo "bench_blas.sh: $B/tests/bench_blas missing" >&2; exit 2; }
[ -f "$lib/blis-pthread/libblis.so.4" ] || {
    echo "bench_blas.sh: BLIS missing (apt-get install libblis-dev libblis4-pthread)" >&2; exit 2; }
inc=$(dirname "$(ls /usr/include/x86_64-linux-gnu/blis-*/blis.h | head -1)")
cc -O2 -std=gnu11 -DQS_BLAS_BLIS -I"$inc" "$src/bench_blas.c" -o "$O/bench_blas_blis" \
    -Wl,--disable-new-dtags -Wl,-rpath,"$lib/blis-pthread:$lib/lapack" \
    "$lib/blis-pthread/libblis.so.4" "$lib/lapack/liblapack.so.3" -lm -lpthread
echo "BLIS build: $(ldd "$O/bench_blas_blis" | grep -E 'blis|blas|lapack' | tr -s ' \t' ' ' | tr '\n' ';')"
export OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "uptime before: $(uptime)"
echo "busiest processes:"; ps -eo pcpu,etime,args --sort=-pcpu | sed -n '2,7p' | cut -c1-160
echo "GEMM peak before (bench_sgemm 5, OpenBLAS): $("$B/tests/bench_sgemm" 5)"
r=1
while [ "$r" -le "$rounds" ]; do
    for c in openblas openblas-skylakex blis blis-skx blis-zen3; do
        echo "== round $r $c (load $(cut -d' ' -f1 /proc/loadavg))"
        case $c in
            openblas) "$B/tests/bench_blas" --secs "$secs" ;;
            openblas-skylakex) OPENBLAS_CORETYPE=SkylakeX "$B/tests/bench_blas" --secs "$secs" ;;
            # the generic kernels are slow: the 11008 LAPACK cases are left out
            blis) "$O/bench_blas_blis" --secs "$secs" --max-n 4096 ;;
            blis-skx) BLIS_ARCH_TYPE=0 "$O/bench_blas_blis" --secs "$secs" ;;
            blis-zen3) BLIS_ARCH_TYPE=6 "$O/bench_blas_blis" --secs "$secs" ;;
        esac
    done
    r=$((r + 1))
done
echo "GEMM peak after (bench_sgemm 5, OpenBLAS): $("$B/tests/bench_sgemm" 5)"
echo "uptime after: $(uptime)"
echo "busiest processes:"; ps -eo pcpu,etime,args --sort=-pcpu | sed -n '2,7p' | cut -c1-160
