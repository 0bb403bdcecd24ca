"""Fused Triton kernel for the fractal engine: the whole training run of a block of pixels
in one program, weights in registers across all steps.

Why: the PyTorch engine writes every pixel's hidden activations [n_points, 16] to GPU
memory twice per step (h and dZ), ~70 KB per pixel-step in float64, so it is bound by
memory bandwidth. Here a program owns BLOCK_P pixels and keeps, for all `steps` steps,

    w0  [16, BLOCK_P*16]   the block's input weights side by side (column c is pixel c//16,
                           hidden unit c%16), so X_chunk @ w0 is ONE tl.dot for the block
    g0  [16, BLOCK_P*16]   dW0 accumulator (tl.dot(X_chunk^T, dZ, acc=g0))
    w1, g1 [BLOCK_P*16]    output weights and their gradient, laid out like w0's columns

in registers. The data (X [n, 16], Y [n], ~37 KB in float64) is shared by every program and
streamed in chunks of BN rows from L1/L2. Nothing per pixel touches memory until the three
running sums of the label formula are stored at the end.

Per step and chunk: a = X_c @ w0 (fp64 MMA), h = phi(a * s), out = per-pixel sum of h * w1
(reshape to [BN, BLOCK_P, 16] and reduce), r = out/16 - y, dZ = r * w1 * phi'(h),
g0 += X_c^T @ dZ, g1 += sum_n h * r. After the data loop: the loss, the running sums, and the
update w -= lr * g (the learning rates arrive with the gradient's constant factors folded in,
computed on the host in float64, so no float literal is rounded to fp32 in the kernel).

Runs on CUDA, or on the CPU under TRITON_INTERPRET=1 (numpy), which the tests use to check
it against the PyTorch engine. tanh uses libdevice on CUDA; the interpreter has no libdevice,
so there it uses 1 - 2 / (exp(2u) + 1).
"""

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from fractal import engine

try:
    from triton.language.extra import libdevice
except ImportError:  # older triton
    libdevice = None

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
NL_CODE = {"tanh": 0, "relu": 1, "identity": 2}
OFFSET_CODE = {"none": 0, "init": 1, "every_step": 2}


@dataclass(frozen=True)
class Config:
    """Launch configuration. block_p: pixels per program (a power of 2); bn: data rows per
    chunk (a power of 2, >= 16); tanh_exp: exp-based tanh instead of libdevice."""

    block_p: int = 4
    bn: int = 16
    num_warps: int = 4
    num_stages: int = 1
    tanh_exp: bool = False


# The sweep list of bench/fractal_bench.py: configurations that compile without register
# spills for sm_90 (ptxas, float64, tanh; registers per thread in brackets). w0 and g0 are
# 16 x block_p*16 doubles each and every [bn, block_p*16] temporary (a/h, dZ, the broadcast
# residual) as many again, spread over num_warps*32 threads at 2 registers per double, so
# block_p and bn are bounded by num_warps. 16 warps cap a thread at 128 registers and spill.
# Triton 3.6 on sm_90 needs K >= 16 in tl.dot, and bn is the K of the dW0 product: bn >= 16.
CONFIGS = [
    Config(2, 16, 2),  # [204]
    Config(4, 16, 4),  # [210]
    Config(4, 32, 4),  # [242]
    Config(8, 16, 8),  # [216]
    Config(8, 32, 8),  # [228]
    Config(16, 16, 8),
    Config(4, 16, 4, tanh_exp=True),
    Config(8, 16, 8, tanh_exp=True),
]
DEFAULT_CONFIG = Config(2, 16, 2)  # fastest in bench/results/fractal_bench.json (H200)


def config_from_env():
    """FRACTAL_TRITON_CONFIG="block_p=16,bn=16,num_warps=8" overrides the default."""
    text = os.environ.get("FRACTAL_TRITON_CONFIG")
    if not text:
        return DEFAULT_CONFIG
    kw = dict(item.split("=") for item in text.split(","))
    return Config(**{k: (v == "1" if k == "tanh_exp" else int(v)) for k, v in kw.items()})


@triton.jit
def _tanh(u, TANH_EXP: tl.constexpr):
    if TANH_EXP:
        # exact limits at +-inf (exp overflows to inf -> 1, underflows to 0 -> -1)
        return 1.0 - 2.0 / (tl.exp(2.0 * u) + 1.0)
    else:
        return libdevice.tanh(u)


@triton.jit
def _forward(
    x,
    y,
    w0,
    w1,
    s_phi,
    NL: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BN: tl.constexpr,
    D: tl.constexpr,
    TANH_EXP: tl.constexpr,
):
    """h [BN, BLOCK_P*D] and the residual r = y_hat - y [BN, BLOCK_P] of a data chunk."""
    a = tl.dot(
        x, w0, input_precision="ieee", out_dtype=w0.dtype
    )  # x @ W0 for every pixel of the block at once
    if NL == 0:
        h = _tanh(a * s_phi, TANH_EXP)
    elif NL == 1:
        h = tl.maximum(a, 0.0) * s_phi
    else:
        h = a * s_phi
    out = tl.sum(tl.reshape(h * w1[None, :], (BN, BLOCK_P, D)), axis=2) * 0.0625  # / 16
    return h, out - y[:, None]


@triton.jit
def _backward(
    x, h, r, w1, g0, g1, NL: tl.constexpr, BLOCK_P: tl.constexpr, BN: tl.constexpr, D: tl.constexpr
):
    """Accumulates dW0 and dW1 of the chunk (constant factors are folded into the lrs)."""
    rexp = tl.reshape(tl.broadcast_to(r[:, :, None], (BN, BLOCK_P, D)), (BN, BLOCK_P * D))
    g1 += tl.sum(h * rexp, axis=0)
    dz = rexp * w1[None, :]
    if NL == 0:
        dz = dz * (1.0 - h * h)  # tanh' = 1 - tanh^2
    elif NL == 1:
        dz = tl.where(h > 0, dz, 0.0)
    g0 = tl.dot(tl.trans(x), dz, acc=g0, input_precision="ieee", out_dtype=g0.dtype)
    return g0, g1


@triton.jit
def fractal_kernel(
    X,
    Y,
    W0,
    W1,
    LR0,
    LR1,
    OFF,
    IDX,
    CONST,
    SUM_V,
    SUM_INV,
    SUM_TAIL,
    n_pixels,
    N,
    steps,
    n_tail,
    NL: tl.constexpr,
    OFFSET_MODE: tl.constexpr,
    MB: tl.constexpr,
    MB_PAD: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BN: tl.constexpr,
    D: tl.constexpr,
    TANH_EXP: tl.constexpr,
):
    pid = tl.program_id(0)
    C: tl.constexpr = BLOCK_P * D
    cols = tl.arange(0, C)
    unit = cols % D
    pcol = pid * BLOCK_P + cols // D  # the pixel of each column
    cmask = pcol < n_pixels
    k = tl.arange(0, D)

    # every pixel starts from the same weights; padding pixels get lr 0 and stay finite
    w0 = tl.load(W0 + k[:, None] * D + unit[None, :])
    w1 = tl.load(W1 + unit)
    lr0 = tl.load(LR0 + pcol, mask=cmask, other=0.0)
    lr1 = tl.load(LR1 + pcol, mask=cmask, other=0.0)
    off = tl.load(OFF + pcol, mask=cmask, other=0.0)
    if OFFSET_MODE == 1:
        w0 += off[None, :]
    s_phi = tl.load(CONST)  # sqrt(2)/4 etc. as an fp64 value, not an fp32 literal

    pix = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = pix < n_pixels
    sum_v = tl.zeros([BLOCK_P], dtype=w0.dtype)
    sum_inv = tl.zeros([BLOCK_P], dtype=w0.dtype)
    sum_tail = tl.zeros([BLOCK_P], dtype=w0.dtype)
    L0 = tl.zeros([BLOCK_P], dtype=w0.dtype) + 1.0

    for step in range(steps):
        if OFFSET_MODE == 2:  # the notebook re-adds the offset before every step
            w0 += off[None, :]
        g0 = tl.zeros([D, C], dtype=w0.dtype)
        g1 = tl.zeros([C], dtype=w0.dtype)
        loss = tl.zeros([BLOCK_P], dtype=w0.dtype)
        for n0 in range(0, N, BN):
            # rows past N load as zeros: h = 0 and r = 0, so they add nothing
            rows = n0 + tl.arange(0, BN)
            rmask = rows < N
            x = tl.load(X + rows[:, None] * D + k[None, :], mask=rmask[:, None], other=0.0)
            y = tl.load(Y + rows, mask=rmask, other=0.0)
            h, r = _forward(x, y, w0, w1, s_phi, NL, BLOCK_P, BN, D, TANH_EXP)
            loss += tl.sum(r * r, axis=0)
            if MB == 0:
                g0, g1 = _backward(x, h, r, w1, g0, g1, NL, BLOCK_P, BN, D)
        if MB > 0:  # minibatch: gradient from MB shared indices, loss still full batch
            j = tl.arange(0, MB_PAD)
            jmask = j < MB
            rows = tl.load(IDX + step * MB + j, mask=jmask, other=0)
            x = tl.load(X + rows[:, None] * D + k[None, :], mask=jmask[:, None], other=0.0)
            y = tl.load(Y + rows, mask=jmask, other=0.0)
            h, r = _forward(x, y, w0, w1, s_phi, NL, BLOCK_P, MB_PAD, D, TANH_EXP)
            g0, g1 = _backward(x, h, r, w1, g0, g1, NL, BLOCK_P, MB_PAD, D)

        # label formula as running sums: v = loss / first loss, non-finite -> 1e6, clip 1e6
        loss = loss / N
        L0 = tl.where(step == 0, loss, L0)
        v = loss / L0
        v = tl.where(v == v, tl.minimum(v, 1e6), 1e6)
        sum_v += v
        sum_inv += 1.0 / v
        sum_tail += tl.where(step >= steps - n_tail, v, 0.0)

        w0 -= lr0[None, :] * g0
        w1 -= lr1 * g1

    tl.store(SUM_V + pix, sum_v, mask=pmask)
    tl.store(SUM_INV + pix, sum_inv, mask=pmask)
    tl.store(SUM_TAIL + pix, sum_tail, mask=pmask)


def _next_pow2(n):
    return 1 << max(0, (n - 1).bit_length())


def train(
    problem,
    nonlinearity,
    lr0,
    lr1,
    offset,
    steps,
    offset_mode,
    config=None,
    chunk_pixels=None,
    info=None,
    tail=engine.TAIL,
):
    """Same contract as the torch backend: (sum_v, sum_inv, tail_sum), each [P]."""
    cfg = config or config_from_env()
    X, Y, W0, W1, idx = (problem[k] for k in ("X", "Y", "W0", "W1", "idx"))
    dev, dt = X.device, X.dtype
    if dev.type != "cuda" and not INTERPRET:
        raise RuntimeError("the Triton engine needs CUDA or TRITON_INTERPRET=1")
    if dev.type == "cuda" and INTERPRET:
        raise RuntimeError("TRITON_INTERPRET=1 runs kernels on the CPU: use device='cpu'")
    tanh_exp = cfg.tanh_exp or INTERPRET or libdevice is None
    n, P = X.shape[0], lr0.numel()
    mb = 0 if idx is None else idx.shape[1]
    n_grad = n if idx is None else mb
    # the gradient's constant factors, folded into the learning rates as torch does
    c = 2.0 / (n_grad * engine.WIDTH)
    lr0c = (lr0 * (c * engine.PHI_SCALE_GRAD[nonlinearity])).contiguous()
    lr1c = (lr1 * c).contiguous()
    offset = offset.contiguous()
    const = torch.tensor([engine.PHI_SCALE[nonlinearity]], dtype=dt, device=dev)
    idx_t = idx.contiguous() if idx is not None else torch.zeros(1, dtype=torch.int64, device=dev)
    has_offset = bool((offset != 0).any())
    mode = OFFSET_CODE[offset_mode if has_offset else "none"]
    sums = [torch.empty(P, dtype=dt, device=dev) for _ in range(3)]
    chunk = int(chunk_pixels or (1 << 22))  # launches of ~4M pixels: memory is tiny anyway
    for s in range(0, P, chunk):
        e = min(P, s + chunk)
        grid = (triton.cdiv(e - s, cfg.block_p),)
        fractal_kernel[grid](
            X, Y, W0, W1, lr0c[s:e], lr1c[s:e], offset[s:e], idx_t, const,
            sums[0][s:e], sums[1][s:e], sums[2][s:e],
            e - s, n, steps, min(tail, steps),
            NL=NL_CODE[nonlinearity], OFFSET_MODE=mode, MB=mb,
            MB_PAD=max(16, _next_pow2(max(mb, 1))), BLOCK_P=cfg.block_p, BN=cfg.bn,
            D=engine.WIDTH, TANH_EXP=tanh_exp, num_warps=cfg.num_warps,
            num_stages=cfg.num_stages,
        )  # fmt: skip
    if info is not None:
        info.update(triton_config=cfg.__dict__ | {"tanh_exp": tanh_exp}, chunk_pixels=chunk)
    return sums
