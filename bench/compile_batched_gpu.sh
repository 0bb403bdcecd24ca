#!/usr/bin/env bash
# One GPU call for the compiled batched path, within BUDGET seconds (default 200) from
# the start, each stage saving its files under $OUT as it goes (a call cut short keeps
# what finished):
#
#     PYTHON=python3 OUT=/tmp/out KMATRIX_COMMIT=<sha> bash bench/compile_batched_gpu.sh
#
# 1. the 6-layer/384 map of fractal-129x129-gpu: one compiled model per cell against
#    batches compiled at K in KS (default 4,8,16,32) and eager at EAGER_KS (default 8),
#    same process (bench/llm_batched.py) -> llm_batched_129_compiled_gpu.json;
# 2. the batched-training tests on CUDA (tests/test_gpt2_batched.py; the GPT-2 BPE files
#    travel in data/downloads/) -> llm_batched_tests_compiled_gpu.log.
# Everything else goes to compile_batched_gpu.log. A CPU dry run: TEST_DEVICE=cpu
# LLM_EXTRA="--device cpu --steps 2 --set gpt2_n_layer=1 ..." TEST_ARGS="-k chunked".
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-bench/results}
BUDGET=${BUDGET:-200}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRACK_WANDB_DISABLED=y CUBLAS_WORKSPACE_CONFIG=:4096:8
export KMATRIX_OFFLINE=1 PIP_NO_INDEX=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
t0=$(date +%s)
LOG="$OUT/compile_batched_gpu.log"
left() { echo $((BUDGET - $(date +%s) + t0)); }
say() { echo "== $* ($(($(date +%s) - t0)) s)" | tee -a "$LOG"; }
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU") | tee "$LOG"
echo "commit ${KMATRIX_COMMIT:-unknown}, budget $BUDGET s" | tee -a "$LOG"

say "1. fractal-129x129-gpu: one compiled model per cell against compiled batches"
timeout "$(left)" "$PY" bench/llm_batched.py --defconfig fractal-129x129-gpu \
    --ks "${KS:-4,8,16,32}" --eager-ks "${EAGER_KS:-8}" --single "${SINGLE:-3}" ${LLM_EXTRA:-} \
    --out "$OUT/llm_batched_129_compiled_gpu.json" 2>&1 | grep -v Warning | tee -a "$LOG"

say "2. tests/test_gpt2_batched.py on ${TEST_DEVICE:-cuda}"
KMATRIX_TEST_DEVICE=${TEST_DEVICE:-cuda} timeout "$(left)" "$PY" -m pytest \
    tests/test_gpt2_batched.py -q -p no:cacheprovider -rs ${TEST_ARGS:-} 2>&1 |
    tee "$OUT/llm_batched_tests_compiled_gpu.log"
say "done"
