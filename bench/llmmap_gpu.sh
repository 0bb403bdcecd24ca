#!/bin/bash
# Transects and zoom sequences of a pre-training and a fine-tuning LLM map on one GPU (run
# through the device tool from the repository root; $OUT the folder whose files come
# back). PROBES lists name:cap pairs (defconfig, wall-clock cap in seconds); BUDGET caps
# the whole script: a probe gets the smaller of its cap and what is left less RESERVE
# seconds for its summary and report (a zoom's summary walks every frame). A probe cut off
# keeps the depths or frames it finished, its report says so, and running the script
# again on the same machine resumes it (its wall time adds up across calls). data/
# travels with the tree (the prepared Shakespeare, the BPE files and the tarball).
#
#   PROBES="llmmap-pretrain-transects:500" SCALE="LLMMAP_POINTS=1025" TAG=_1025_h100 \
#       OUT=$OUT bash bench/llmmap_gpu.sh
#
# A probe can also move between machines (a session's device time ends): PACK=y packs
# each probe's results and wall times into $OUT/<name><TAG>.tar.xz.00, .01, ... (15 MiB
# parts); UNPACK=<folder of such parts> unpacks them before the probe runs, and HOLD=N
# then holds out N finished cells (among the HOLD_LATEST last finished, if set: the stage
# under way computes them again in its own batches) that the resumed run computes again,
# compared loss by loss in $OUT/<name><TAG>_resume_check.json (bench/resume_check.py).
#
# Each probe leaves $OUT/<name><TAG>.json (bench/llmmap_report.py), its results.csv and
# summary.json beside it, and its make log in $OUT/llmmap_gpu<TAG>.log.
set -o pipefail
export PYTHONUNBUFFERED=1 TRACK_WANDB_DISABLED=y CUBLAS_WORKSPACE_CONFIG=:4096:8
export KMATRIX_OFFLINE=1 PIP_NO_INDEX=1
OUT=${OUT:-bench/results}
SCALE=${SCALE:-}  # e.g. "SWEEP_X_POINTS=3 ...": a dry run at tiny size on the CPU
TAG=${TAG:-}
PROBES=${PROBES:-"llmmap-pretrain-transects:100 llmmap-ft-transects:90 \
llmmap-pretrain-zoom:100 llmmap-ft-zoom:80"}
BUDGET=${BUDGET:-570}
RESERVE=${RESERVE:-60}
M="make PYTHON=${PYTHON:-python3}"
LOG="$OUT/llmmap_gpu$TAG.log"
t_start=$(date +%s)
left() { echo $((BUDGET - $(date +%s) + t_start)); }
mkdir -p "$OUT" results
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
echo "commit ${KMATRIX_COMMIT:-unknown}; probes $PROBES; scale '$SCALE'" >>"$LOG"
probe() {  # name, cap in seconds
    local name=$1 cap=$2 t0 t1 status walls held base
    [ "$(($(left) - RESERVE))" -lt "$cap" ] && cap=$(($(left) - RESERVE))
    [ "$cap" -le 10 ] && { echo "no time left for $name" >>"$LOG"; return; }
    $M defconfig-$name >/dev/null && $M setconfig SET="TRACK_WANDB_DISABLED=y $SCALE" >/dev/null
    walls="results/.wall-$name$TAG"  # the wall times of earlier calls (a resumed probe)
    held="results/.held-$name$TAG"
    if [ -n "${UNPACK:-}" ] && [ ! -d "results/$name" ]; then
        cat "$UNPACK/$name$TAG".tar.xz.* | xz -d | tar -C results -xf - || return
        [ -n "${HOLD:-}" ] && echo "HOLD=$HOLD HOLD_LATEST=${HOLD_LATEST:-0}" >>"$LOG" &&
            python3 bench/resume_check.py hold --name "$name" \
            --count "$HOLD" --latest "${HOLD_LATEST:-0}" --held "$held" >>"$LOG"
    fi
    t0=$(date +%s.%N)
    timeout -k 15 -s INT "$cap" $M 2>&1 | grep -v '^\[' >>"$LOG"
    status=${PIPESTATUS[0]}
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)" >>"$walls"
    # a finished run rendered its summary; one cut off by its cap did not
    [ "$status" -ne 0 ] && $M summary 2>&1 | tail -2 >>"$LOG"
    base="$OUT/${name//-/_}$TAG"
    python3 bench/llmmap_report.py --name "$name" --wall "$(python3 -c "print(sum(map(float, open('$walls'))))")" \
        --out "$base.json" >>"$LOG" 2>&1
    cp "results/$name/summary/results.csv" "${base}_results.csv" 2>>"$LOG"
    for f in "results/$name/summary/probe-"*.png; do cp "$f" "${base}_${f##*/}"; done 2>>"$LOG"
    cp "results/$name/summary/summary.json" "${base}_summary.json" 2>>"$LOG"
    [ -d "$held" ] && python3 bench/resume_check.py compare --name "$name" --held "$held" \
        --out "${base}_resume_check.json" >>"$LOG" 2>&1
    [ "${PACK:-}" = y ] && tar -C results -cf - "$name" "${walls#results/}" |
        xz -T0 -3 | split -b 15M -d - "$OUT/$name$TAG.tar.xz."
}
# the checkpoint the fine-tuning maps start from
case "$PROBES" in
*llmmap-ft-*)
    $M defconfig-fractal-ft-pretrain >/dev/null && $M setconfig SET="TRACK_WANDB_DISABLED=y" >/dev/null
    timeout 60 $M 2>&1 | grep -v '^\[' >>"$LOG"
    ;;
esac
for p in $PROBES; do
    probe "${p%%:*}" "${p##*:}"
done
