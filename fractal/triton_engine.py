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

Per step and chunk: z = X_c @ w0 (fp64 MMA), h = phi(z), out = per-pixel sum of h * w1
(reshape to [BN, BLOCK_P, 16] and reduce), r = out/16 - y, dZ = r * w1 * phi'(h),
g0 += X_c^T @ dZ, g1 += sum_n h * r. After the data loop: the loss, the running sums, and the
update w -= lr * g (the learning rates arrive with the gradient's constant factors folded in,
computed on the host in float64, so no float literal is rounded to fp32 in the kernel;
Triton also passes a Python float argument as fp32, so the float64 ones are annotated).

phi's input scale s (sqrt(2)/4 for tanh) is folded into the weights: the kernel keeps
w0 = s * W0 (and s * offset, s * lr0), so the dot yields phi's argument and no [BN, C]
element is multiplied by s. g0 = X^T dZ does not involve s, so it is unchanged. For the
fast tanh, s also holds 2 log2(e): it works in base 2 (see _tanh_fast).

tanh (Config.tanh): "libdevice" (CUDA's tanh), "exp" (1 - 2 / (exp(2u) + 1)) or "fast"
(_tanh_fast: 17 fp64 instructions and no branch, against libdevice's 34 in two branches).
Runs on CUDA, or on the CPU under TRITON_INTERPRET=1 (numpy), which the tests use to check
it against the PyTorch engine; the interpreter has no libdevice, so "libdevice" runs "exp"
there, while "exp" and "fast" run as on CUDA.

Early exit (EXIT, common.EXIT_CODE): after each step's update a pixel whose output-layer
weights hold an inf or NaN can only have non-finite losses from then on (every output is
a sum over those weights), so a program whose pixels all stopped leaves the step loop and
adds the remaining steps' v = 1e6 to the sums one by one (kernel_lib._finish_sums: the
image is bitwise the same). Its hardware then takes the next program: with one pixel per
program (the Gluon kernel's default) stopped pixels free their warp at once.

Optimizers (OPT, common.OPT_CODE): momentum, Nesterov, Adam, AdamW and RMSprop keep their
state (momentum buffer, m and v) in registers beside the weights and update it once per
step (_opt_update), from the true gradients (the host passes the loss's constant factors
as GC0, GC1 and the plain learning rates) and per-pixel knobs (KN, [P, 4]). Gradient
descent keeps its original arithmetic.

This file holds the tl kernel. On CUDA, train() runs by default the Gluon kernel of
fractal/gluon_kernel.py instead: the same arithmetic (both call kernel_lib) with explicit
layouts and the products transposed, 1.3x faster on an H200 (Config.kernel picks one).
"""

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from fractal.common import EXIT_CODE, NL_CODE, OFFSET_CODE, PHI_SCALE, TAIL, TANH_CODE, TANH_PADE
from fractal.common import OPT_CODE, WIDTH
from fractal.kernel_lib import INTERPRET, _finish_sums, _label_sums, _phi, libdevice

KERNELS = ("tl", "gluon")


@dataclass(frozen=True)
class Config:
    """Launch configuration. block_p: pixels per program (a power of 2); bn: data rows per
    chunk (a power of 2, >= 16); tanh: "libdevice", "exp" or "fast" (see TANH_CODE);
    maxnreg: registers per thread the compiler may use (0: its choice). Fewer registers
    let more programs share a multiprocessor and hide each other's latency. kernel: "tl"
    (this file's) or "gluon" (fractal/gluon_kernel.py: one pixel per warp, block_p ==
    num_warps, bn == 16)."""

    block_p: int = 4
    bn: int = 16
    num_warps: int = 4
    num_stages: int = 1
    tanh: str = "libdevice"
    maxnreg: int = 0
    kernel: str = "tl"

    def __post_init__(self):
        if self.tanh not in TANH_CODE:
            raise ValueError(f"tanh={self.tanh!r}; expected one of {list(TANH_CODE)}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel={self.kernel!r}; expected one of {KERNELS}")
        if self.kernel == "gluon" and (self.block_p != self.num_warps or self.bn != 16):
            raise ValueError(
                f"{self}: the Gluon kernel runs one pixel per warp on 16-row chunks: "
                "block_p == num_warps and bn == 16"
            )


# The Gluon kernel (fractal/gluon_kernel.py, one warp per pixel) is the default on CUDA; the
# tl kernel runs where Gluon cannot: under the interpreter, where this Triton's Gluon does
# not import, for float32.
DEFAULT_CONFIG = Config(1, 16, 1, tanh="fast", maxnreg=168, kernel="gluon")
PORTABLE_CONFIG = Config(2, 16, 2, tanh="fast", maxnreg=128)
# the optimizers' (tl kernel): their state (Adam: 2 more [16, 16] per pixel) on chip too
OPT_CONFIG = Config(2, 16, 2, tanh="fast", maxnreg=168)


def config_from_env():
    """FRACTAL_TRITON_CONFIG="block_p=16,bn=16,num_warps=8,tanh=fast" overrides the default."""
    text = os.environ.get("FRACTAL_TRITON_CONFIG")
    if not text:
        return DEFAULT_CONFIG
    kw = dict(item.split("=") for item in text.split(","))
    return Config(**{k: (v if k in ("tanh", "kernel") else int(v)) for k, v in kw.items()})


@triton.jit
def _forward(
    x,
    y,
    w0,
    w1,
    NL: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BN: tl.constexpr,
    D: tl.constexpr,
    TANH: tl.constexpr,
    pade,
):
    """h [BN, BLOCK_P*D] and the residual r = y_hat - y [BN, BLOCK_P] of a data chunk."""
    # phi's argument for every pixel of the block at once (w0 carries phi's input scale)
    z = tl.dot(x, w0, input_precision="ieee", out_dtype=w0.dtype)
    h = _phi(z, NL, TANH, pade)
    out = tl.sum(tl.reshape(h * w1[None, :], (BN, BLOCK_P, D)), axis=2) * 0.0625  # / 16
    return h, out - y[:, None]


@triton.jit
def _backward(
    x, h, r, w1, g0, NL: tl.constexpr, BLOCK_P: tl.constexpr, BN: tl.constexpr, D: tl.constexpr
):
    """Accumulates dW0 of the chunk into g0 and returns h * r per element, whose sum over
    rows is dW1 (the caller sums once per step: a reduction across rows needs shuffles).
    Constant factors are folded into the lrs."""
    rexp = tl.reshape(tl.broadcast_to(r[:, :, None], (BN, BLOCK_P, D)), (BN, BLOCK_P * D))
    dz = rexp * w1[None, :]
    if NL == 0:
        dz = dz * (1.0 - h * h)  # tanh' = 1 - tanh^2
    elif NL == 1:
        dz = tl.where(h > 0, dz, 0.0)
    g0 = tl.dot(tl.trans(x), dz, acc=g0, input_precision="ieee", out_dtype=g0.dtype)
    return g0, h * rexp


@triton.jit
def _opt_update(
    w0, w1, g0, g1, m0, v0, m1, v1, b1t, b2t, lr0, lr1, s, k0, k1, k2, k3, OPT: tl.constexpr
):
    """One step of the optimizer OPT (common.OPT_CODE > 0) for both layers, as the torch
    engine's Optimizer (engine.py) takes it: g0, g1 are the true gradients with respect to
    W0 and W1, lr0 and lr1 the plain learning rates; w0 is s * W0, so W0's step is
    multiplied by s (and W0 = w0 / s in L2 weight decay). Knobs per column: k0 momentum,
    beta1 or alpha; k1 beta2; k2 eps; k3 weight decay."""
    if OPT <= 2:  # torch.optim.SGD: buf = mu buf + g; heavy ball or Nesterov
        m0 = m0 * k0[None, :] + g0
        m1 = m1 * k0 + g1
        if OPT == 2:
            u0 = g0 + k0[None, :] * m0
            u1 = g1 + k0 * m1
        else:
            u0 = m0
            u1 = m1
        w0 -= (s * lr0)[None, :] * u0
        w1 -= lr1 * u1
    elif OPT <= 4:  # torch.optim.Adam (L2 weight decay) or AdamW (decoupled)
        if OPT == 3:
            g0 += (k3 / s)[None, :] * w0
            g1 += k3 * w1
        else:
            w0 = w0 * (1.0 - lr0 * k3)[None, :]
            w1 = w1 * (1.0 - lr1 * k3)
        b1t = b1t * k0
        b2t = b2t * k1
        m0 += (1.0 - k0)[None, :] * (g0 - m0)
        m1 += (1.0 - k0) * (g1 - m1)
        v0 = v0 * k1[None, :] + ((1.0 - k1)[None, :] * g0) * g0
        v1 = v1 * k1 + ((1.0 - k1) * g1) * g1
        bc1 = 1.0 - b1t
        rbc2 = 1.0 / tl.sqrt(1.0 - b2t)
        w0 -= (s * lr0 / bc1)[None, :] * m0 / (tl.sqrt(v0) * rbc2[None, :] + k2[None, :])
        w1 -= (lr1 / bc1) * m1 / (tl.sqrt(v1) * rbc2 + k2)
    else:  # torch.optim.RMSprop (no momentum, not centred)
        g0 += (k3 / s)[None, :] * w0
        g1 += k3 * w1
        v0 = v0 * k0[None, :] + ((1.0 - k0)[None, :] * g0) * g0
        v1 = v1 * k0 + ((1.0 - k0) * g1) * g1
        w0 -= (s * lr0)[None, :] * g0 / (tl.sqrt(v0) + k2[None, :])
        w1 -= lr1 * g1 / (tl.sqrt(v1) + k2)
    return w0, w1, m0, v0, m1, v1, b1t, b2t


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
    STEPS_RUN,
    KN,
    n_pixels,
    N,
    steps,
    n_tail,
    GC0: tl.float64,
    GC1: tl.float64,
    C0: tl.float64,
    C1: tl.float64,
    C2: tl.float64,
    C3: tl.float64,
    C4: tl.float64,
    C5: tl.float64,
    NL: tl.constexpr,
    OFFSET_MODE: tl.constexpr,
    MB: tl.constexpr,
    MB_PAD: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BN: tl.constexpr,
    D: tl.constexpr,
    TANH: tl.constexpr,
    EXIT: tl.constexpr,
    OPT: tl.constexpr,
):
    pid = tl.program_id(0)
    C: tl.constexpr = BLOCK_P * D
    pade = (C0, C1, C2, C3, C4, C5)  # TANH_PADE, for the fast tanh
    cols = tl.arange(0, C)
    unit = cols % D
    pcol = pid * BLOCK_P + cols // D  # the pixel of each column
    cmask = pcol < n_pixels
    k = tl.arange(0, D)

    # every pixel starts from the same weights; padding pixels get lr 0 and stay finite.
    # w0 is kept scaled by phi's input scale s (sqrt(2)/4 etc.; the host folds it into lr0)
    s = tl.load(CONST)  # an fp64 value, not an fp32 literal
    w0 = tl.load(W0 + k[:, None] * D + unit[None, :]) * s
    w1 = tl.load(W1 + unit)
    lr0 = tl.load(LR0 + pcol, mask=cmask, other=0.0)
    lr1 = tl.load(LR1 + pcol, mask=cmask, other=0.0)
    off = tl.load(OFF + pcol, mask=cmask, other=0.0) * s
    if OFFSET_MODE == 1:
        w0 += off[None, :]
    # the optimizer (common.OPT_CODE): knobs per column, state on chip beside the weights
    if OPT > 0:
        k0 = tl.load(KN + pcol * 4, mask=cmask, other=0.0)  # momentum | beta1 | alpha
        k1 = tl.load(KN + pcol * 4 + 1, mask=cmask, other=0.0)  # beta2
        k2 = tl.load(KN + pcol * 4 + 2, mask=cmask, other=1.0)  # eps
        k3 = tl.load(KN + pcol * 4 + 3, mask=cmask, other=0.0)  # weight decay
    else:
        k0 = tl.zeros([C], dtype=w0.dtype)
        k1, k2, k3 = k0, k0, k0
    m0 = tl.zeros([D, C], dtype=w0.dtype)
    v0 = tl.zeros([D, C], dtype=w0.dtype)
    m1 = tl.zeros([C], dtype=w0.dtype)
    v1 = tl.zeros([C], dtype=w0.dtype)
    b1t = tl.zeros([C], dtype=w0.dtype) + 1.0  # beta1^t, beta2^t of Adam's bias correction
    b2t = b1t

    pix = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = pix < n_pixels
    sum_v = tl.zeros([BLOCK_P], dtype=w0.dtype)
    sum_inv = tl.zeros([BLOCK_P], dtype=w0.dtype)
    sum_tail = tl.zeros([BLOCK_P], dtype=w0.dtype)
    L0 = tl.zeros([BLOCK_P], dtype=w0.dtype) + 1.0

    step = 0
    go = step < steps
    while go:
        if OFFSET_MODE == 2:  # the notebook re-adds the offset before every step
            w0 += off[None, :]
        g0 = tl.zeros([D, C], dtype=w0.dtype)
        # per-row partial sums of dW1 and the loss, reduced over rows once per step
        g1_rows = tl.zeros([BN, C], dtype=w0.dtype)
        loss_rows = tl.zeros([BN, BLOCK_P], dtype=w0.dtype)
        for n0 in range(0, N, BN):
            # rows past N load as zeros: h = 0 and r = 0, so they add nothing
            rows = n0 + tl.arange(0, BN)
            rmask = rows < N
            x = tl.load(X + rows[:, None] * D + k[None, :], mask=rmask[:, None], other=0.0)
            y = tl.load(Y + rows, mask=rmask, other=0.0)
            h, r = _forward(x, y, w0, w1, NL, BLOCK_P, BN, D, TANH, pade)
            loss_rows += r * r
            if MB == 0:
                g0, hr = _backward(x, h, r, w1, g0, NL, BLOCK_P, BN, D)
                g1_rows += hr
        loss = tl.sum(loss_rows, axis=0)
        g1 = tl.sum(g1_rows, axis=0)
        if MB > 0:  # minibatch: gradient from MB shared indices, loss still full batch
            j = tl.arange(0, MB_PAD)
            jmask = j < MB
            rows = tl.load(IDX + step * MB + j, mask=jmask, other=0)
            x = tl.load(X + rows[:, None] * D + k[None, :], mask=jmask[:, None], other=0.0)
            y = tl.load(Y + rows, mask=jmask, other=0.0)
            h, r = _forward(x, y, w0, w1, NL, BLOCK_P, MB_PAD, D, TANH, pade)
            g0, hr = _backward(x, h, r, w1, g0, NL, BLOCK_P, MB_PAD, D)
            g1 = tl.sum(hr, axis=0)

        L0, sum_v, sum_inv, sum_tail, raw = _label_sums(
            loss / N, L0, sum_v, sum_inv, sum_tail, step, steps, n_tail
        )

        if OPT == 0:  # gradient descent: the lrs carry the gradient's constant factors
            w0 -= lr0[None, :] * g0
            w1 -= lr1 * g1
        else:
            w0, w1, m0, v0, m1, v1, b1t, b2t = _opt_update(
                w0, w1, g0 * GC0, g1 * GC1, m0, v0, m1, v1, b1t, b2t, lr0, lr1, s,
                k0, k1, k2, k3, OPT,
            )  # fmt: skip
        step += 1
        go = step < steps
        if EXIT > 0:
            # w1 - w1 is NaN exactly where w1 is inf or NaN; padding pixels count as stopped
            live = tl.sum(tl.reshape(w1 - w1, (BLOCK_P, D)), axis=1) == 0.0
            if EXIT == 2:
                live = live & (raw <= 1e6)
            go = go & (tl.sum((live & pmask).to(tl.int32), axis=0) > 0)

    sum_v, sum_inv, sum_tail = _finish_sums(step, steps, n_tail, sum_v, sum_inv, sum_tail)
    tl.store(SUM_V + pix, sum_v, mask=pmask)
    tl.store(SUM_INV + pix, sum_inv, mask=pmask)
    tl.store(SUM_TAIL + pix, sum_tail, mask=pmask)
    tl.store(STEPS_RUN + pix, tl.zeros([BLOCK_P], dtype=tl.int32) + step, mask=pmask)


def _gluon_kernel():
    """The Gluon kernel, or None where this Triton has no Gluon with mma_v2 (written
    against Triton 3.6; Gluon is experimental and its API moves between versions)."""
    try:
        from fractal.gluon_kernel import fractal_gluon_kernel
    except ImportError:
        return None
    return fractal_gluon_kernel


def _pad(t, dim, size):
    """t with zeros appended along dim up to size."""
    return F.pad(t, [0, 0] * (t.dim() - 1 - dim) + [0, size - t.shape[dim]])


def _gluon_data(X, Y, idx):
    """The Gluon kernel's data: (XB, Y, XMB, YMB), rows padded with zeros to a multiple of
    16 (a zero row has h = r = 0 and adds nothing) and x in fragment order (b_fragments).
    Minibatch: each step's rows gathered here, [steps * mb_pad] rows (4 KB a step for 16)."""
    from fractal.gluon_kernel import ROWS, b_fragments

    n_pad = -(-X.shape[0] // ROWS) * ROWS
    XB, Yp = b_fragments(_pad(X, 0, n_pad)), _pad(Y, 0, n_pad).contiguous()
    if idx is None:
        return (XB, Yp, XB, Yp), n_pad, 0
    mb_pad = -(-idx.shape[1] // ROWS) * ROWS
    XMB = b_fragments(_pad(X[idx], 1, mb_pad).reshape(-1, X.shape[1]))
    YMB = _pad(Y[idx], 1, mb_pad).reshape(-1).contiguous()
    return (XB, Yp, XMB, YMB), n_pad, mb_pad


def _knob_slots(optimizer, knobs, P, dt, dev):
    """The kernel's knobs [P, 4]: (momentum | beta1 | alpha, beta2, eps, weight decay)."""
    names = {
        "momentum": ("momentum", None, None, None),
        "nesterov": ("momentum", None, None, None),
        "adam": ("beta1", "beta2", "eps", "weight_decay"),
        "adamw": ("beta1", "beta2", "eps", "weight_decay"),
        "rmsprop": ("alpha", None, "eps", "weight_decay"),
    }[optimizer]
    kn = torch.zeros(P, 4, dtype=dt, device=dev)
    for j, name in enumerate(names):
        if name is not None:
            kn[:, j] = knobs[name]
    return kn.contiguous()


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
    tail=TAIL,
    early_exit="nonfinite",
    optimizer="gd",
    knobs=None,
):
    """Same contract as the torch backend: (sum_v, sum_inv, tail_sum, steps_run), each [P]
    (steps_run: the steps each pixel trained before it stopped, int32). `optimizer`: one of
    common.OPT_CODE (the tl kernel: the Gluon one runs gradient descent only), `knobs` its
    knobs (floats or [P] tensors)."""
    if optimizer not in OPT_CODE:
        raise ValueError(f"the Triton kernel has no {optimizer}; it runs {tuple(OPT_CODE)}")
    cfg = config or config_from_env()
    X, Y, W0, W1, idx = (problem[k] for k in ("X", "Y", "W0", "W1", "idx"))
    dev, dt = X.device, X.dtype
    gluon_kernel = _gluon_kernel() if cfg.kernel == "gluon" else None
    no_gluon = INTERPRET or gluon_kernel is None or dt != torch.float64 or optimizer != "gd"
    if cfg.kernel == "gluon" and no_gluon:
        cfg = dataclasses.replace(
            OPT_CONFIG if optimizer != "gd" else PORTABLE_CONFIG, tanh=cfg.tanh
        )
    if dt != torch.float64 and cfg.tanh == "fast":  # _tanh_fast works on float64 bits
        cfg = dataclasses.replace(cfg, tanh="libdevice")
    if dev.type != "cuda" and not INTERPRET:
        raise RuntimeError("the Triton engine needs CUDA or TRITON_INTERPRET=1")
    if dev.type == "cuda" and INTERPRET:
        raise RuntimeError("TRITON_INTERPRET=1 runs kernels on the CPU: use device='cpu'")
    tanh = "exp" if cfg.tanh == "libdevice" and (INTERPRET or libdevice is None) else cfg.tanh
    n, P = X.shape[0], lr0.numel()
    mb = 0 if idx is None else idx.shape[1]
    n_grad = n if idx is None else mb
    # phi's input scale, kept in w0 (the fast tanh works in base 2: tanh(u) = f(2 u log2 e))
    scale = PHI_SCALE[nonlinearity]
    if nonlinearity == "tanh" and tanh == "fast":
        scale *= 2.0 / math.log(2.0)
    # the gradient's constant factors, folded into the learning rates as torch does; lr0
    # also carries the scale, since the kernel updates scale * W0
    c = 2.0 / (n_grad * WIDTH)
    lr0c = (lr0 * (c * PHI_SCALE[nonlinearity] * scale)).contiguous()
    lr1c = (lr1 * c).contiguous()
    kn = torch.zeros(1, 4, dtype=dt, device=dev)
    if optimizer != "gd":  # adaptive steps need the true gradients and the plain lrs
        lr0c, lr1c = lr0.contiguous(), lr1.contiguous()
        kn = _knob_slots(optimizer, knobs, P, dt, dev)
    offset = offset.contiguous()
    const = torch.tensor([scale], dtype=dt, device=dev)
    has_offset = bool((offset != 0).any())
    mode = OFFSET_CODE[offset_mode if has_offset else "none"]
    sums = [torch.empty(P, dtype=dt, device=dev) for _ in range(3)]
    steps_run = torch.empty(P, dtype=torch.int32, device=dev)
    chunk = int(chunk_pixels or (1 << 22))  # launches of ~4M pixels: memory is tiny anyway
    const_kw = dict(
        NL=NL_CODE[nonlinearity], OFFSET_MODE=mode, BLOCK_P=cfg.block_p, D=WIDTH,
        TANH=TANH_CODE[tanh], EXIT=EXIT_CODE[early_exit], num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
        **({"maxnreg": cfg.maxnreg} if cfg.maxnreg else {}),
        enable_fp_fusion=True,  # a - b * c as one FMA (_tanh_fast); Triton 3.10's default is off
    )  # fmt: skip
    if cfg.kernel == "gluon":
        data, n_pad, mb_pad = _gluon_data(X, Y, idx)
        const_kw.update(MB_PAD=mb_pad, WARPS=cfg.num_warps)
    else:
        idx_t = (
            idx.contiguous() if idx is not None else torch.zeros(1, dtype=torch.int64, device=dev)
        )
        const_kw.update(MB=mb, MB_PAD=max(16, _next_pow2(max(mb, 1))), BN=cfg.bn)
    for s in range(0, P, chunk):
        e = min(P, s + chunk)
        grid = (triton.cdiv(e - s, cfg.block_p),)
        per_pixel = (lr0c[s:e], lr1c[s:e], offset[s:e])
        out = (sums[0][s:e], sums[1][s:e], sums[2][s:e], steps_run[s:e])
        kn_chunk = kn[s:e] if optimizer != "gd" else kn
        if cfg.kernel == "gluon":
            gluon_kernel[grid](
                *data, W0, W1, *per_pixel, const, *out, e - s, n, n_pad, steps,
                min(tail, steps), *TANH_PADE, **const_kw,
            )  # fmt: skip
        else:
            fractal_kernel[grid](
                X, Y, W0, W1, *per_pixel, idx_t, const, *out, kn_chunk, e - s, n, steps,
                min(tail, steps), c * PHI_SCALE[nonlinearity], c, *TANH_PADE,
                OPT=OPT_CODE[optimizer], **const_kw,
            )  # fmt: skip
    if info is not None:
        info.update(triton_config=cfg.__dict__ | {"tanh": tanh}, chunk_pixels=chunk)
    return (*sums, steps_run)
