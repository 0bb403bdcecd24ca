#!/usr/bin/env bash
# The automatic zoom paths at full settings on one GPU, as a user runs them:
#
#     PYTHON=python OUT=/tmp/out bash bench/auto_paths_gpu.sh
#
# 1. defconfig-fractal-paper with only the automatic paths (the notebook's data: the run
#    in bench/results/fractal_paper_summary.json whose automatic paths went into speckle);
# 2. defconfig-fractal-paper-auto (seeded data). Both: 44 frames of 257 x 257 per path,
#    W&B disabled. Then bench/auto_paths_report.py prints per experiment the blank and
#    speckled frames and the dimension, and writes $OUT/auto_paths_gpu.json (with the
#    logs beside it). PYTHON: an environment with the project's dependencies (default
#    .venv/bin/python, which make builds when missing). EXTRA_SET: more assignments
#    (a CPU smoke test: "FRACTAL_RESOLUTION=33 FRACTAL_ZOOM_FRAMES=3 EXEC_GPUS=none ...").
#    Results go to results/<defconfig>-autocheck/, deleted first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
runs=()
for name in fractal-paper fractal-paper-auto; do
    set_ex="NAME=$name-autocheck TRACK_WANDB_DISABLED=y ${EXTRA_SET:-}"
    [ "$name" = fractal-paper ] && set_ex="$set_ex FRACTAL_PATH_PAPER=n"
    start=$(date +%s)
    make PYTHON="$PY" "defconfig-$name"
    make PYTHON="$PY" setconfig SET="$set_ex"
    rm -rf "results/$name-autocheck"  # this script's own results of an earlier run
    make PYTHON="$PY" 2>&1 | tee "$OUT/auto_paths_gpu_$name.log"
    echo "$name: $(($(date +%s) - start)) s" | tee -a "$OUT/auto_paths_gpu_$name.log"
    runs+=("$name-autocheck=$(($(date +%s) - start))")
done
"$PY" bench/auto_paths_report.py --out "$OUT/auto_paths_gpu.json" "${runs[@]}"
