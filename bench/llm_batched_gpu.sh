#!/bin/bash
# The batched-training tests and benchmark on one GPU (run through the device tool from
# the repository root, $OUT the folder whose files come back; bench/results/ keeps them).
# The data travels with the tree: data/ with the prepared Shakespeare (BPE and
# characters) and data/downloads/gpt2-bpe (the tests tokenize a small corpus).
set -o pipefail
export PYTHONUNBUFFERED=1 TRACK_WANDB_DISABLED=y CUBLAS_WORKSPACE_CONFIG=:4096:8
export KMATRIX_OFFLINE=1 PIP_NO_INDEX=1
OUT=${OUT:-bench/results}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/llm_batched_gpu.txt"
KMATRIX_TEST_DEVICE=cuda python3 -m pytest tests/test_gpt2_batched.py -q -p no:cacheprovider \
    2>&1 | tee "$OUT/llm_batched_tests_gpu.log"
B="python3 bench/llm_batched.py"
$B --defconfig fractal-16x16 --ks 1,16,64,256 --single 8 --vmap \
    --out "$OUT/llm_batched_flagship_gpu.json" 2>&1 | grep -v Warning | tee "$OUT/llm_batched_gpu.log"
$B --defconfig fractal-char-65x65-gpu --ks 16,64,256 --single 2 \
    --out "$OUT/llm_batched_char_gpu.json" 2>&1 | grep -v Warning | tee -a "$OUT/llm_batched_gpu.log"
[ "$1" = "--129" ] && $B --defconfig fractal-129x129-gpu --ks 2,4 --single 3 \
    --out "$OUT/llm_batched_129_gpu.json" 2>&1 | grep -v Warning | tee -a "$OUT/llm_batched_gpu.log"
