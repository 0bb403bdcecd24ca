#!/bin/bash
# Transects and zoom sequences of a pre-training and a fine-tuning LLM map on one GPU (run
# through the device tool from the repository root; $OUT the folder whose files come
# back). Each probe has a wall-clock cap (seconds, the second word of each line below):
# a probe cut off keeps the depths or frames it finished, and its report says so. data/
# travels with the tree (the prepared Shakespeare, the BPE files and the tarball).
set -o pipefail
export PYTHONUNBUFFERED=1 TRACK_WANDB_DISABLED=y CUBLAS_WORKSPACE_CONFIG=:4096:8
export KMATRIX_OFFLINE=1 PIP_NO_INDEX=1
OUT=${OUT:-bench/results}
SCALE=${SCALE:-}  # e.g. "SWEEP_X_POINTS=3 ...": a dry run at tiny size on the CPU
M="make PYTHON=${PYTHON:-python3}"
LOG="$OUT/llmmap_gpu.log"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$LOG"
probe() {  # name, cap in seconds
    local name=$1 cap=$2 t0 t1
    $M defconfig-$name >/dev/null && $M setconfig SET="TRACK_WANDB_DISABLED=y $SCALE" >/dev/null
    t0=$(date +%s.%N)
    timeout -k 15 -s INT "$cap" $M 2>&1 | grep -v '^\[' >>"$LOG"
    t1=$(date +%s.%N)
    $M summary 2>&1 | tail -2 >>"$LOG"
    python3 bench/llmmap_report.py --name "$name" --wall "$(python3 -c "print($t1 - $t0)")" \
        --out "$OUT/${name//-/_}.json" >>"$LOG" 2>&1
    tar czf "$OUT/llmmap_summaries.tgz" results/*/summary 2>>"$LOG"
}
# the checkpoint the fine-tuning maps start from
$M defconfig-fractal-ft-pretrain >/dev/null && $M setconfig SET="TRACK_WANDB_DISABLED=y" >/dev/null
timeout 45 $M 2>&1 | grep -v '^\[' >>"$LOG"
probe llmmap-pretrain-transects ${CAP1:-100}
probe llmmap-ft-transects ${CAP2:-90}
probe llmmap-pretrain-zoom ${CAP3:-100}
probe llmmap-ft-zoom ${CAP4:-80}
