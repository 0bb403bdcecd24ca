#!/usr/bin/env bash
# The zoom paths at full settings on one GPU, as a user runs them:
#
#     PYTHON=python OUT=/tmp/out bash bench/auto_paths_gpu.sh
#
# RUNS (default "fractal-paper fractal-paper-auto"), one after the other:
# - fractal-paper: the defconfig as shipped (the notebook's data, the paper's paths and
#   the automatic ones), timed: the time README gives;
# - fractal-paper-auto: the defconfig (seeded data, automatic paths);
# - fractal-paper-PX (e.g. fractal-paper-513, fractal-paper-1025): fractal-paper's paper
#   paths alone at PX x PX (the resolution table);
# - fractal-paper-fall, fractal-paper-auto-fall: the two with FRACTAL_NOISE_FALL=y (the
#   noise test and the descent by the fall of the flips, not the 1/8-pixel ratio).
# - fractal-paper-ahead, fractal-paper-auto-ahead: the automatic paths alone (notebook
#   data; seeded) with 3 levels of lookahead in the descent (FRACTAL_DESCENT_LOOKAHEAD);
#   -aheadL (e.g. fractal-paper-ahead5): L levels.
# Each: W&B disabled, results/<run>/ deleted first, its log and summary.json copied to
# $OUT. After each run bench/auto_paths_report.py prints per experiment and path the
# dimension with its spread, the blank frames and those the noise test calls arithmetic,
# and writes $OUT/auto_paths_gpu.json (so a run cut short keeps what finished). PYTHON:
# an environment with the project's dependencies (default .venv/bin/python, which make
# builds when missing). EXTRA_SET: more assignments for every run (a CPU smoke test:
# "FRACTAL_RESOLUTION=33 FRACTAL_ZOOM_FRAMES=3 EXEC_GPUS=none ...").
# BUDGET: seconds each make may run (default: no limit); a run cut short still gets its
# summary of the frames that finished. KEEP=y: resume a run's results/<run>/ instead of
# deleting it (a second call on the same machine finishes the frames the first left).
# Each run's frame results without their pixels (result.json, manifest.json) go to
# $OUT/<run>_cells.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
runs=()
run() {  # run NAME DEFCONFIG "ASSIGNMENTS"
    local name=$1 def=$2 start wall
    start=$(date +%s)
    make PYTHON="$PY" "defconfig-$def"
    make PYTHON="$PY" setconfig SET="NAME=$name TRACK_WANDB_DISABLED=y $3 ${EXTRA_SET:-}"
    [ "${KEEP:-n}" = y ] || rm -rf "results/$name"  # this script's own earlier results
    local rc=0
    timeout "${BUDGET:-0}" make PYTHON="$PY" 2>&1 | tee -a "$OUT/$name.log" || rc=$?
    wall=$(($(date +%s) - start))
    echo "$name: $wall s (make exit $rc)" | tee -a "$OUT/$name.log"
    [ "$rc" = 0 ] || make PYTHON="$PY" summary 2>&1 | tail -2 | tee -a "$OUT/$name.log"
    cp "results/$name/summary/summary.json" "$OUT/${name}_summary.json"
    (cd results && find "$name/cells" -name result.json -o -name manifest.json |
        tar czf "$OUT/${name}_cells.tar.gz" -T -)
    runs+=("$name=$wall")
    "$PY" bench/auto_paths_report.py --out "$OUT/auto_paths_gpu.json" "${runs[@]}"
}
for r in ${RUNS:-fractal-paper fractal-paper-auto}; do
    case $r in
        fractal-paper | fractal-paper-auto) run "$r" "$r" "" ;;
        fractal-paper-[0-9]*) run "$r" fractal-paper "FRACTAL_RESOLUTION=${r##*-} FRACTAL_PATH_AUTO=n" ;;
        fractal-paper-fall | fractal-paper-auto-fall) run "$r" "${r%-fall}" "FRACTAL_NOISE_FALL=y" ;;
        fractal-paper-ahead*) L=${r##*-ahead}
            run "$r" fractal-paper "FRACTAL_PATH_PAPER=n FRACTAL_DESCENT_LOOKAHEAD=${L:-3}" ;;
        fractal-paper-auto-ahead*) L=${r##*-ahead}
            run "$r" fractal-paper-auto "FRACTAL_DESCENT_LOOKAHEAD=${L:-3}" ;;
        *) echo "unknown run $r (fractal-paper, fractal-paper-auto, fractal-paper-PX," \
            "fractal-paper-fall, fractal-paper-auto-fall, fractal-paper-ahead*," \
            "fractal-paper-auto-ahead*)" >&2; exit 2 ;;
    esac
done
