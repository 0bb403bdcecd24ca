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

This file holds the tl kernel. On CUDA, train() runs by default the Gluon kernel of
fractal/gluon_kernel.py instead: the same arithmetic (it calls _phi from here) with
explicit layouts and the products transposed, 1.3x faster on an H200 (Config.kernel
picks one).
"""

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from fractal import engine

try:
    from triton.language.extra import libdevice
except ImportError:  # older triton
    libdevice = None

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_INTERPRET = tl.constexpr(INTERPRET)
NL_CODE = {"tanh": 0, "relu": 1, "identity": 2}
OFFSET_CODE = {"none": 0, "init": 1, "every_step": 2}
TANH_CODE = {"libdevice": 0, "exp": 1, "fast": 2}
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


# The sweep list of bench/fractal_bench.py. tl kernel: w0 and g0 are 16 x block_p*16
# doubles each and every [bn, block_p*16] temporary as many again, spread over num_warps*32
# threads at 2 registers per double, so block_p and bn are bounded by num_warps; Triton on
# sm_90 needs K >= 16 in tl.dot, and bn is the K of the dW0 product: bn >= 16. The kernels
# are latency-bound at ~200 registers (2 warps per scheduler), so capping registers with
# maxnreg buys occupancy for a few spills to L1, and wins. Fastest on an H200
# (bench/results/fractal_bench.json, 256 x 256, 200 steps): Gluon at 168 registers 71.4 M
# pixel-steps/s (68.2 M at 128, 69.2 M uncapped), the tl kernel at 128 registers 55.9 M.
CONFIGS = [
    Config(2, 16, 2, tanh="fast"),
    Config(2, 16, 2, tanh="fast", maxnreg=128),
    Config(4, 16, 4, tanh="fast", maxnreg=128),
    Config(2, 16, 2, tanh="libdevice", maxnreg=128),
    Config(1, 16, 1, tanh="fast", kernel="gluon"),
    Config(1, 16, 1, tanh="fast", maxnreg=128, kernel="gluon"),
    Config(1, 16, 1, tanh="fast", maxnreg=144, kernel="gluon"),
    Config(1, 16, 1, tanh="fast", maxnreg=168, kernel="gluon"),
    Config(1, 16, 1, tanh="libdevice", maxnreg=128, kernel="gluon"),
    Config(2, 16, 2, tanh="fast", maxnreg=168, kernel="gluon"),
]
# The Gluon kernel (fractal/gluon_kernel.py, one warp per pixel) is the default on CUDA; the
# tl kernel runs where Gluon cannot: under the interpreter, where this Triton's Gluon does
# not import, for float32.
DEFAULT_CONFIG = Config(1, 16, 1, tanh="fast", maxnreg=168, kernel="gluon")
PORTABLE_CONFIG = Config(2, 16, 2, tanh="fast", maxnreg=128)


def config_from_env():
    """FRACTAL_TRITON_CONFIG="block_p=16,bn=16,num_warps=8,tanh=fast" overrides the default."""
    text = os.environ.get("FRACTAL_TRITON_CONFIG")
    if not text:
        return DEFAULT_CONFIG
    kw = dict(item.split("=") for item in text.split(","))
    return Config(**{k: (v if k in ("tanh", "kernel") else int(v)) for k, v in kw.items()})


@triton.jit
def _rcp_approx(d):
    """1 / d in float32 to ~1 ulp: one MUFU.RCP (Triton's '/' is an IEEE division, ~10
    instructions). The interpreter has no PTX, so it divides."""
    if _INTERPRET:
        return 1.0 / d
    else:
        return tl.inline_asm_elementwise(
            "rcp.approx.ftz.f32 $0, $1;", "=f,f", [d], dtype=tl.float32, is_pure=True, pack=1
        )


# The [6/6] Pade approximant of 2^x = P(x) / P(-x), P(x) = E(x^2) + x O(x^2), E(0) = 1:
# P(t) = sum_k (12 - k)! 6! / (12! k! (6 - k)!) t^k at t = x ln 2, coefficients rounded to
# float64 (tests/test_fractal_engine.py rebuilds them with mpmath). (e6, e4, e2, o5, o3, o1).
# Relative error of P(x)/P(-x) on |x| <= 1/2: 1.2e-17, mostly the coefficients' rounding.
TANH_PADE = (
    1.6670487438724687e-07, 0.00029145845780692353, 0.054596933399795614,
    1.0101180413960942e-05, 0.005045828060438326, 0.34657359027997264,
)  # fmt: skip


@triton.jit
def _tanh_fast(z, pade):
    """tanh(z ln(2) / 2) in float64, i.e. tanh(u) for z = 2 u log2(e) (the caller folds
    2 log2(e) into the weights), pade = TANH_PADE as float64 kernel arguments (a float literal
    would be rounded to fp32, and a 64-bit immediate costs two instructions per use and
    chunk; arguments are read from the constant bank). Absolute error < 2e-16 on the whole
    real line (1.97e-16 measured: values near 1 carry ~2 ulp, and like any
    1 - 2 / (e^2u + 1) form its error near 0 is absolute, not relative); +-inf -> +-1,
    NaN -> NaN.

    Works on a = |z| clamped to 64 (tanh is +-1.0 in float64 beyond |u| = 19.1) and puts the
    sign back at the end. 2^a = 2^n 2^x: n = rint(a) by the 1.5 * 2^52 trick, |x| <= 1/2,
    2^x = P(x) / P(-x) (the Pade approximant above) and 2^n by adding n to P's exponent bits.
    Then tanh = 1 - 2 / (2^a + 1) = 1 - 2 Q / (2^n P + Q) with Q = P(-x): one reciprocal,
    seeded in fp32 (MUFU.RCP, ~2^-23) and refined by one cubic Newton step (~2^-69); no IEEE
    fp64 division. The clamp and the sign are integer operations on the high word. NaN
    passes through the arithmetic: the clamp keeps a high word above inf's (arithmetic
    NaNs are canonical, 0x7FFFFFFF on NVIDIA GPUs, 0x7FF80000 in numpy).

    SASS for sm_90: 17 fp64 instructions (13 DFMA/DMUL, 4 DADD), 2 F2F, MUFU.RCP and FMUL,
    against 19 for a degree-11 polynomial for 2^x and libdevice's 34 in two branches.
    """
    bits = z.to(tl.int64, bitcast=True)
    hi = (bits >> 32).to(tl.int32)
    ahi = hi & 0x7FFFFFFF
    ahi = tl.where(ahi > 0x7FF00000, ahi, tl.minimum(ahi, 0x40500000))  # 64.0's high word
    a = ((ahi.to(tl.int64) << 32) | (bits & 0xFFFFFFFF)).to(tl.float64, bitcast=True)
    m = a + 6755399441055744.0  # 1.5 * 2^52: rounds a to an integer n in m's low bits
    x = a - (m - 6755399441055744.0)  # exact, |x| <= 1/2
    x2 = x * x
    E = tl.fma(tl.fma(tl.fma(x2, pade[0], pade[1]), x2, pade[2]), x2, 1.0)
    O = tl.fma(tl.fma(x2, pade[3], pade[4]), x2, pade[5])
    P = tl.fma(x, O, E)
    Q = E - x * O  # one DFMA with a negated operand (Triton's -x would be 0 - x, an fp64 add)
    # P * 2^n: bits(m) << 52 is n << 52, as bits(1.5 * 2^52) << 52 wraps to 0
    Pn = P.to(tl.int64, bitcast=True) + (m.to(tl.int64, bitcast=True) << 52)
    den = Pn.to(tl.float64, bitcast=True) + Q  # 2^n P + Q >= 2 Q > 0
    # w = -2 / den, so that tanh = 1 + Q w is one rounding: seeded to ~2^-23 in fp32 (the
    # factor -2 is exact there), then w (1 + q + q^2) with q = 1 + den w / 2, i.e.
    # w + w q2 (1/2 + q2 / 4) with q2 = 2 q = den w + 2 (~2^-69)
    w = (_rcp_approx(den.to(tl.float32)) * -2.0).to(tl.float64)
    q2 = tl.fma(den, w, 2.0)
    w = tl.fma(w, q2 * tl.fma(q2, 0.25, 0.5), w)
    t = tl.fma(Q, w, 1.0)  # tanh(|u|) = 1 - 2 Q / (2^n P + Q)
    t = t.to(tl.int64, bitcast=True) | ((hi & -2147483648).to(tl.int64) << 32)  # z's sign
    return t.to(tl.float64, bitcast=True)


@triton.jit
def _phi(z, NL: tl.constexpr, TANH: tl.constexpr, pade):
    """The nonlinearity (NL_CODE) of phi's argument z; tanh by TANH (TANH_CODE). Shared with
    the Gluon kernel."""
    if NL == 1:
        return tl.maximum(z, 0.0)
    elif NL == 2:
        return z
    elif TANH == 0:
        return libdevice.tanh(z)
    elif TANH == 1:
        # exact limits at +-inf (exp overflows to inf -> 1, underflows to 0 -> -1)
        return 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
    else:
        return _tanh_fast(z, pade)  # z in base 2: the weights carry 2 log2(e)


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
def _label_sums(loss, L0, sum_v, sum_inv, sum_tail, step, steps, n_tail):
    """One step of the label formula as running sums (engine.pixel_value): v = loss / first
    loss, non-finite -> 1e6, clipped at 1e6. Shared with the Gluon kernel."""
    L0 = tl.where(step == 0, loss, L0)
    v = loss / L0
    v = tl.where(v == v, tl.minimum(v, 1e6), 1e6)
    sum_v += v
    sum_inv += 1.0 / v
    sum_tail += tl.where(step >= steps - n_tail, v, 0.0)
    return L0, sum_v, sum_inv, sum_tail


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

        L0, sum_v, sum_inv, sum_tail = _label_sums(
            loss / N, L0, sum_v, sum_inv, sum_tail, step, steps, n_tail
        )

        w0 -= lr0[None, :] * g0
        w1 -= lr1 * g1

    tl.store(SUM_V + pix, sum_v, mask=pmask)
    tl.store(SUM_INV + pix, sum_inv, mask=pmask)
    tl.store(SUM_TAIL + pix, sum_tail, mask=pmask)


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
    gluon_kernel = _gluon_kernel() if cfg.kernel == "gluon" else None
    if cfg.kernel == "gluon" and (INTERPRET or gluon_kernel is None or dt != torch.float64):
        cfg = dataclasses.replace(PORTABLE_CONFIG, tanh=cfg.tanh)
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
    scale = engine.PHI_SCALE[nonlinearity]
    if nonlinearity == "tanh" and tanh == "fast":
        scale *= 2.0 / math.log(2.0)
    # the gradient's constant factors, folded into the learning rates as torch does; lr0
    # also carries the scale, since the kernel updates scale * W0
    c = 2.0 / (n_grad * engine.WIDTH)
    lr0c = (lr0 * (c * engine.PHI_SCALE_GRAD[nonlinearity] * scale)).contiguous()
    lr1c = (lr1 * c).contiguous()
    offset = offset.contiguous()
    const = torch.tensor([scale], dtype=dt, device=dev)
    has_offset = bool((offset != 0).any())
    mode = OFFSET_CODE[offset_mode if has_offset else "none"]
    sums = [torch.empty(P, dtype=dt, device=dev) for _ in range(3)]
    chunk = int(chunk_pixels or (1 << 22))  # launches of ~4M pixels: memory is tiny anyway
    const_kw = dict(
        NL=NL_CODE[nonlinearity], OFFSET_MODE=mode, BLOCK_P=cfg.block_p, D=engine.WIDTH,
        TANH=TANH_CODE[tanh], num_warps=cfg.num_warps, num_stages=cfg.num_stages,
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
        out = (sums[0][s:e], sums[1][s:e], sums[2][s:e])
        if cfg.kernel == "gluon":
            gluon_kernel[grid](
                *data, W0, W1, *per_pixel, const, *out, e - s, n, n_pad, steps,
                min(tail, steps), *TANH_PADE, **const_kw,
            )  # fmt: skip
        else:
            fractal_kernel[grid](
                X, Y, W0, W1, *per_pixel, idx_t, const, *out, e - s, n, steps,
                min(tail, steps), *TANH_PADE, **const_kw,
            )  # fmt: skip
    if info is not None:
        info.update(triton_config=cfg.__dict__ | {"tanh": tanh}, chunk_pixels=chunk)
    return sums
