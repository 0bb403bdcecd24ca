#!/usr/bin/env bash
# One GPU call for the measurements that were left open, most important first, within
# BUDGET seconds (default 420) from the start; each stage gets what is left and saves its
# files under $OUT as it finishes, so a call cut short keeps what ended:
#
#     PYTHON=python3 OUT=/tmp/out KMATRIX_COMMIT=<sha> bash bench/leftovers_gpu.sh
#
# 1. the batched-training tests on CUDA (tests/test_gpt2_batched.py; the GPT-2 BPE files
#    travel in data/downloads/, see gpt2/tokenizer.py) -> llm_batched_tests_gpu.log;
# 2. the 6-layer/384 map of fractal-129x129-gpu, batched (K in KS, default 2,4,8,16)
#    against one model per cell, same process (bench/llm_batched.py) ->
#    llm_batched_129_gpu.json;
# 3. the resolution table: fractal-paper's paper paths at 257, 513 and 1025 pixels per
#    frame, scaled down to the experiments in RES_EXPERIMENTS (default tanh) and the
#    first RES_FRAMES frames (default 8) -> paper_resolution_gpu.json (auto_paths_report)
#    and paper_resolution_gpu.tar.gz (make's logs, the summaries);
# 4. the optimizers' zooms along the structure-seeking automatic path, scaled down to
#    OPT_RESOLUTION pixels (default 257) and OPT_FRAMES frames (default 12), and Adam's
#    lr x beta1 map at OPT_RESOLUTION -> optim_zooms_gpu.json, optim_zooms_gpu.tar.gz.
# Everything else goes to leftovers_gpu.log. STAGES: which of 1-4 to run (default all);
# EXTRA_SET: more assignments for every make run; TEST_ARGS: more pytest arguments;
# LLM_EXTRA: more bench/llm_batched.py arguments (a CPU dry run: STAGES="3 4"
# EXTRA_SET="EXEC_GPUS=none" RES_PIXELS="17 33" OPT_RESOLUTION=33 ...).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-bench/results}
BUDGET=${BUDGET:-420}
mkdir -p "$OUT" results
export PYTHONUNBUFFERED=1 TRACK_WANDB_DISABLED=y CUBLAS_WORKSPACE_CONFIG=:4096:8
export KMATRIX_OFFLINE=1 PIP_NO_INDEX=1
t0=$(date +%s)
LOG="$OUT/leftovers_gpu.log"
left() { echo $((BUDGET - $(date +%s) + t0)); }
say() { echo "== $* ($(($(date +%s) - t0)) s)" | tee -a "$LOG"; }
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU") | tee "$LOG"
echo "commit ${KMATRIX_COMMIT:-unknown}, budget $BUDGET s" | tee -a "$LOG"

stage() { case " ${STAGES:-1 2 3 4} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

stage 1 && say "1. tests/test_gpt2_batched.py on ${TEST_DEVICE:-cuda}"
stage 1 && KMATRIX_TEST_DEVICE=${TEST_DEVICE:-cuda} timeout "$(left)" "$PY" -m pytest \
    tests/test_gpt2_batched.py -q -p no:cacheprovider -rs ${TEST_ARGS:-} 2>&1 | tee "$OUT/llm_batched_tests_gpu.log"

stage 2 && say "2. fractal-129x129-gpu, batched against one model per cell"
stage 2 && timeout "$(left)" "$PY" bench/llm_batched.py --defconfig fractal-129x129-gpu \
    --ks "${KS:-2,4,8,16}" --single "${SINGLE:-3}" ${LLM_EXTRA:-} \
    --out "$OUT/llm_batched_129_gpu.json" 2>&1 | grep -v Warning | tee -a "$LOG"

runs=()
run() {  # run NAME DEFCONFIG "ASSIGNMENTS": through make, timed, within the budget
    local name=$1 def=$2 start wall
    start=$(date +%s)
    [ "$(left)" -gt 5 ] || { say "no time left for $name"; return 1; }
    make --no-print-directory PYTHON="$PY" "defconfig-$def" >/dev/null
    make --no-print-directory PYTHON="$PY" setconfig \
        SET="NAME=$name TRACK_WANDB_DISABLED=y $3 ${EXTRA_SET:-}" >/dev/null || return 1
    rm -rf "results/$name"
    timeout "$(left)" make --no-print-directory PYTHON="$PY" >"results/$name.log" 2>&1
    local rc=$?
    wall=$(($(date +%s) - start))
    echo "$name: $wall s wall through make (exit $rc)" | tee -a "results/$name.log" "$LOG"
    tail -3 "results/$name.log" >>"$LOG"
    [ -f "results/$name/summary/summary.json" ] || make --no-print-directory PYTHON="$PY" summary >/dev/null 2>&1
    [ -f "results/$name/summary/summary.json" ] && runs+=("$name=$wall")
    return $rc
}
report() {  # report JSON: per run and path the dimension with its spread, so far
    [ ${#runs[@]} -gt 0 ] && "$PY" bench/auto_paths_report.py --out "$OUT/$1" "${runs[@]}" | tee -a "$LOG"
}
pack() {  # pack TAR NAME...: make's logs and the summaries (no frame pixels)
    local tar=$1
    shift
    (cd results && for n in "$@"; do
        ls "$n.log" 2>/dev/null
        find "$n/summary" -name '*.json' -o -name '*.csv' -o -name '*.png' 2>/dev/null
    done | tar czf "$OUT/$tar" -T -)
}

stage 3 && say "3. resolution: fractal-paper's paper paths at 257, 513, 1025 px"
off="FRACTAL_PATH_AUTO=n FRACTAL_ZOOM_FRAMES=${RES_FRAMES:-8}"
for e in TANH RELU IDENTITY MINIBATCH SINGLE_DATAPOINT PARAMINIT; do
    case " ${RES_EXPERIMENTS:-TANH} " in *" $e "*) ;; *) off="$off FRACTAL_EXPERIMENT_$e=n" ;; esac
done
names=()
stage 3 && for px in ${RES_PIXELS:-257 513 1025}; do
    run "paper-res-$px" fractal-paper "FRACTAL_RESOLUTION=$px $off"
    rc=$?
    names+=("paper-res-$px")
    report paper_resolution_gpu.json
    pack paper_resolution_gpu.tar.gz "${names[@]}"
    [ $rc = 0 ] || break
done

stage 4 && say "4. optimizers' zooms at ${OPT_RESOLUTION:-257} px, ${OPT_FRAMES:-12} frames; Adam's lr x beta1"
runs=()
names=()
stage 4 && for o in ${OPTIMIZERS:-momentum nesterov adamw rmsprop muon}; do
    run "optim-$o" "fractal-optim-$o" \
        "FRACTAL_RESOLUTION=${OPT_RESOLUTION:-257} FRACTAL_ZOOM_FRAMES=${OPT_FRAMES:-12}"
    rc=$?
    names+=("optim-$o")
    report optim_zooms_gpu.json
    pack optim_zooms_gpu.tar.gz "${names[@]}"
    [ $rc = 0 ] || break
done
if stage 4 && [ "$(left)" -gt 5 ]; then
    run optim-adam-beta1 fractal-optim-adam-beta1 "FRACTAL_RESOLUTION=${OPT_RESOLUTION:-257}"
    names+=("optim-adam-beta1")
    pack optim_zooms_gpu.tar.gz "${names[@]}"
fi
say "done"
