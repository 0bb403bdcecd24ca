"""Compiles the fractal tl kernel for sm_90 without a GPU, once per optimizer, and writes
its registers, spills and the fp64 instruction counts of its SASS to JSON: the check to
make before a kernel change goes to a lent GPU (the Triton wheel carries ptxas and
cuobjdump).

    python bench/fractal_sass.py [--out bench/results/fractal_optim_sass.json]
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from fractal.common import EXIT_CODE, NL_CODE, OFFSET_CODE, OPT_CODE, TANH_CODE  # noqa: E402
from fractal.triton_engine import OPT_CONFIG, PORTABLE_CONFIG, fractal_kernel  # noqa: E402
from kmatrix.manifest import write_bench_result  # noqa: E402

POINTERS = ["X", "Y", "W0", "W1", "LR0", "LR1", "OFF", "IDX", "CONST", "SUM_V", "SUM_INV"]
POINTERS += ["SUM_TAIL", "STEPS_RUN", "KN"]
TYPES = {"IDX": "*i64", "STEPS_RUN": "*i32"}


def compile_kernel(optimizer, cfg):
    sig = {name: TYPES.get(name, "*fp64") for name in POINTERS}
    sig.update(n_pixels="i32", N="i32", steps="i32", n_tail="i32")
    sig.update({k: "fp64" for k in ["GC0", "GC1", "C0", "C1", "C2", "C3", "C4", "C5"]})
    const = dict(
        NL=NL_CODE["tanh"], OFFSET_MODE=OFFSET_CODE["none"], MB=0, MB_PAD=16,
        BLOCK_P=cfg.block_p, BN=cfg.bn, D=16, TANH=TANH_CODE[cfg.tanh],
        EXIT=EXIT_CODE["nonfinite"], OPT=OPT_CODE[optimizer],
    )  # fmt: skip
    for k, v in const.items():
        sig[k] = "constexpr"
    src = ASTSource(fractal_kernel, sig, const)
    opts = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages, enable_fp_fusion=True)
    if cfg.maxnreg:
        opts["maxnreg"] = cfg.maxnreg
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(k.asm["cubin"])
        cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
        sass = subprocess.run([cuobjdump, "-sass", path], capture_output=True, text=True).stdout
        res = subprocess.run([cuobjdump, "-res-usage", path], capture_output=True, text=True)
    usage = dict(re.findall(r"(REG|STACK|LOCAL):(\d+)", res.stdout))
    ops = collections.Counter(
        m.group(1).split(".")[0]
        for m in re.finditer(r"/\*[0-9a-f]{4}\*/\s+(?:@!?P\d\s+)?([A-Z0-9.]+)", sass)
    )
    fp64 = {op: n for op, n in ops.items() if op.startswith("D") and op not in ("DEPBAR",)}
    return {
        "registers": int(usage.get("REG", -1)),
        "stack_bytes": int(usage.get("STACK", -1)),
        "local_stores": ops.get("STL", 0),  # register spills
        "instructions": sum(ops.values()),
        "fp64": dict(sorted(fp64.items())),
        "mufu": ops.get("MUFU", 0),
        "config": cfg.__dict__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/fractal_optim_sass.json")
    args = ap.parse_args()
    out = {"triton": triton.__version__, "target": "sm_90", "kernel": "tl", "tanh experiment"
           "": "full batch, fast tanh, exact early exit", "optimizers": {}}  # fmt: skip
    for opt in OPT_CODE:
        cfg = PORTABLE_CONFIG if opt == "gd" else OPT_CONFIG
        out["optimizers"][opt] = compile_kernel(opt, cfg)
        print(opt, json.dumps(out["optimizers"][opt]), flush=True)
    write_bench_result(args.out, out)


if __name__ == "__main__":
    main()
