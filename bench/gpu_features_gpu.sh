#!/bin/bash
# Out-of-memory fallback, GPU usage per cell and Ray on one GPU, through make as a user
# runs it (from the repository root; $OUT: the folder whose files come back, at most 8).
#   bash bench/gpu_features_gpu.sh oom    a gpt2 matrix whose micro-batch does not fit a
#                                         GPU cut to 3% of its memory
#                                         (KMATRIX_GPU_MEMORY_FRACTION): the fallback
#                                         halves it; the summary plots the GPU usage
#   bash bench/gpu_features_gpu.sh ray    a gpt2 matrix through EXEC_EXECUTOR_RAY, two
#                                         cells per GPU (Ray installed from wheels, see
#                                         docs/ray.md)
#   bash bench/gpu_features_gpu.sh variants
#                                         the named variants of gpt2-ablation-cpu, then
#                                         the flagship (a diverged corner), on
#                                         the GPU: the apples-to-apples check must stay
#                                         quiet on both
# SIZE=tiny: the same on a CPU in seconds (a dry run of this script).
set -o pipefail
export PYTHONUNBUFFERED=1 TRACK_WANDB_DISABLED=y KMATRIX_OFFLINE=1 PIP_NO_INDEX=1
OUT=${OUT:-/tmp/gpu-features-out}
PY=${PYTHON:-python3}
RESULTS=${RESULTS:-/tmp/gpu-features-results}
mkdir -p "$OUT" "$RESULTS"
M="make --no-print-directory PYTHON=$PY"
cat README.md docs/*.md > "$RESULTS/corpus.txt"  # a text every checkout has
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    | tee "$OUT/gpu.txt"

# a 4-layer character model; at 256 sequences of 256 characters one step needs ~4 GiB
BATCH=256 STEPS=150 LAYERS=4 WIDTH=256 BLOCK=256 FLOOR=8
[ "$SIZE" = tiny ] && BATCH=8 STEPS=3 LAYERS=1 WIDTH=32 BLOCK=16 FLOOR=1
BASE="GPT2_DATA_FILES=y GPT2_DATA_PATHS=$RESULTS/corpus.txt GPT2_TOKENIZER_CHAR=y \
GPT2_DATA_DIR=$RESULTS/data GPT2_N_LAYER=$LAYERS GPT2_N_HEAD=4 GPT2_N_EMBD=$WIDTH \
GPT2_BLOCK_SIZE=$BLOCK GPT2_MAX_STEPS=$STEPS GPT2_WARMUP_STEPS=2 GPT2_EVAL_BATCHES=2 \
GPT2_LOG_INTERVAL=25 EXEC_BATCH=n EXEC_RESULTS_ROOT=$RESULTS"

run() {  # name, log, extra settings
    local name=$1 log=$2
    shift 2
    { $M defconfig-gpt2-tiny-cpu && $M setconfig SET="NAME=$name $BASE $*" && $M plan && $M; } \
        2>&1 | tee "$log"
    $PY bench/gpu_features.py --results "$RESULTS/$name" --label "$name${COMMIT:+ at $COMMIT}" --log "$log" \
        --out "$OUT/$name.json" | tail -5
    tar czf "$OUT/$name-results.tgz" --exclude checkpoint.pt -C "$RESULTS" "$name"
}

case "$1" in
oom)
    # 3% of an 80 GiB GPU is ~2.4 GiB: 256 sequences do not fit, the fallback halves them
    [ "$SIZE" = tiny ] && export GPT2_FAKE_OOM_ABOVE=2 || export KMATRIX_GPU_MEMORY_FRACTION=0.03
    run gpu-oom "$OUT/gpu-oom.log" GPT2_BATCH_SIZE=$BATCH GPT2_OOM_MIN_BATCH=$FLOOR \
        EXEC_GPUS=auto
    cp "$RESULTS/gpu-oom/summary/gpu_usage.png" "$OUT/" 2>/dev/null
    ;;
ray)
    "$PY" -c "import ray; print('ray', ray.__version__)" || exit 1
    # two seeds x two optimizers: four cells on two Ray actors sharing the GPU
    run gpu-ray "$OUT/gpu-ray.log" GPT2_BATCH_SIZE=32 EXEC_EXECUTOR_RAY=y EXEC_JOBS_PER_GPU=2 \
        SEEDS="\"0 1\"" EXEC_GPUS=auto
    ;;
variants)
    GPUS=auto
    [ "$SIZE" = tiny ] && GPUS=none
    for name in gpt2-ablation-cpu fractal-16x16; do
        log="$OUT/gpu-$name.log"
        SMALL=""
        [ "$SIZE" = tiny ] && SMALL="GPT2_MAX_STEPS=3 GPT2_WARMUP_STEPS=1"
        [ "$SIZE$name" = tinyfractal-16x16 ] && SMALL="$SMALL SWEEP_X_POINTS=2 \
SWEEP_Y_POINTS=2 GPT2_MODEL_TINY=y GPT2_N_LAYER=1 GPT2_N_EMBD=32 GPT2_BLOCK_SIZE=16"
        { $M defconfig-$name &&
            $M setconfig SET="EXEC_GPUS=$GPUS EXEC_RESULTS_ROOT=$RESULTS $SMALL" && $M &&
            $M summary; } 2>&1 | grep -v '^\[' | tee "$log"
        $PY bench/gpu_features.py --results "$RESULTS/$name" --log "$log" \
            --label "$name on the GPU${COMMIT:+ at $COMMIT}" --out "$OUT/gpu-$name.json" | tail -5
    done
    ;;
*)
    echo "usage: $0 oom|ray|variants" >&2
    exit 2
    ;;
esac
