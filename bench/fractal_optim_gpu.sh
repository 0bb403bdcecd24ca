#!/usr/bin/env bash
# The optimizer work on one GPU, in one go:
#
#     PYTHON=python3 OUT=/tmp/out bash bench/fractal_optim_gpu.sh [zoom defconfigs...]
#
# 1. the kernel tests (tl kernel per optimizer against the torch backend, and the gradient-
#    descent kernels as before) -> $OUT/fractal_optim_tests.log;
# 2. bench/fractal_optim_bench.py (pixel-steps/s per optimizer at 1024 x 1024) ->
#    $OUT/fractal_optim_bench.json;
# 3. each given defconfig (default: fractal-optim-adam) through make, W&B disabled, timed
#    -> $OUT/<name>.tar.gz (make's log, the summary, config and every cell's result and
#    meta: the frames' pixels stay behind), within BUDGET seconds from the start;
# 4. bench/fractal_optim_maps.py maps (the opening windows at MAPS_RESOLUTION, default
#    513) -> $OUT/fractal_optim_maps.*.
# A copied tree is no git checkout of its branch: set KMATRIX_COMMIT to the commit copied.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
"$PY" -m pytest tests/test_fractal_optim.py -q -k "kernel" 2>&1 | tee "$OUT/fractal_optim_tests.log"
"$PY" -m pytest tests/test_fractal_engine.py -q -k "triton" 2>&1 | tee -a "$OUT/fractal_optim_tests.log"
echo "tests: $(($(date +%s) - t0)) s" | tee -a "$OUT/fractal_optim_tests.log"
"$PY" bench/fractal_optim_bench.py --out "$OUT/fractal_optim_bench.json"
# the zoom runs get what is left of BUDGET seconds (default: no limit); a run stopped
# there keeps the frames it finished (deepest first), and make summary pools them
for name in "${@:-fractal-optim-adam}"; do
    start=$(date +%s)
    left=$((${BUDGET:-100000} - start + t0))
    make PYTHON="$PY" "defconfig-$name" >/dev/null
    make PYTHON="$PY" setconfig SET="TRACK_WANDB_DISABLED=y" >/dev/null
    rm -rf "results/$name" && mkdir -p results
    timeout "$left" make PYTHON="$PY" 2>&1 | tee "results/$name.log"
    echo "$name: $(($(date +%s) - start)) s wall through make" | tee -a "results/$name.log"
    make PYTHON="$PY" summary >/dev/null 2>&1 || true
    mv "results/$name.log" "results/$name/make.log"
    (cd results && find "$name" -name '*.json' -o -name '*.csv' -o -name '*.log' \
        -o -name '*.png' -path '*summary*' | tar czf "$OUT/$name.tar.gz" -T -)
done
"$PY" bench/fractal_optim_maps.py maps --out-dir "$OUT" --resolution "${MAPS_RESOLUTION:-513}"
echo "all: $(($(date +%s) - t0)) s"
