"""The fractal engine's fast CUDA kernel, in Gluon (Triton's language with explicit layouts).

Same contract and arithmetic as fractal_kernel in triton_engine.py (read its docstring
first); the difference is where the data sits. One warp owns one pixel and computes the
transposed products, hidden units on the rows (M) and data rows on the columns (N):

    z^T [16, 16] = w0^T [16, 16] @ x^T [16, 16]       (DMMA.16x8x16, twice)
    g0^T [16, 16] += dz^T [16, 16] @ x [16, 16]

so that no tensor ever changes registers between the two products:

- dz^T is already in registers as the A operand of the second product: an accumulator
  holds columns (c_lo + 2 lane%4 + 8 c_hi) where the A operand wants K = (lane%4 + 4 c_lo +
  8 c_hi). _as_a renames the columns (a reshape and permute that Triton lowers to nothing)
  and the host stores x with its rows renumbered the same way (b_fragments). The same
  renaming makes w0^T the A operand of the first product, so nothing moves once per step
  either. (Before: a shuffle-and-select transpose of dz each chunk, 16 SHFL + 32 FSEL.)
- x^T and x arrive as B operands in fragment order, written once by the host: each thread
  reads each operand as 4 x 128 bits from one address register (all programs read the same
  70 KB, L1-resident), instead of 20 loads and ~50 address instructions a chunk;
- the sum over a pixel's 16 units runs down the rows: one add in-thread, three butterfly
  levels across lanes, leaving r in every lane that needs it for dz.

SASS (ptxas of Triton 3.6, sm_90, 128 registers): 358 instructions per 16-row chunk and
warp, 196 fp64 and 4 DMMA.16x8x16, against 527 and 200 for the previous layout (see
docs/fractal.md).
CUDA only (no interpreter): the tests compare it with the torch engine on a GPU.
"""

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

from fractal.kernel_lib import _finish_sums, _label_sums, _phi

ROWS = gl.constexpr(16)  # data rows per chunk: the K of dz^T @ x, one DMMA.16x8x16 deep
# _load_b's permute: the bits of a flat fragment index (high to low: lane 4..0, register
# 2..0) in the order of [K bits 3..0, N bits 3..0]
B_ORDER = gl.constexpr((6, 7, 3, 4, 5, 0, 1, 2))


def _col_of(K):
    """The accumulator column that _as_a renames to A-operand column K."""
    return ((K >> 2) & 1) + 2 * (K & 3) + 8 * (K >> 3)


def b_fragments(X):
    """X [n, 16] (n a multiple of ROWS) -> [n / ROWS, 2, 256]: for each chunk of 16 rows, the
    B operands x^T (of z^T = w0^T @ x^T, its K = input column renamed by _as_a) and x (of
    g0^T += dz^T @ x, its K = data row renamed by _as_a), each in fragment order: element
    lane * 8 + register of the mma_v2 B layout (register bits: K+4, K+8, N+8; lane bits:
    K+1, K+2, N+1, N+2, N+4)."""
    f = torch.arange(256, device=X.device)
    lane, reg = f // 8, f % 8
    k = (lane & 3) + 4 * (reg & 3)
    n = (lane >> 2) + 8 * (reg >> 2)
    chunks = X.reshape(-1, ROWS, 16)
    x_t = chunks[:, n, _col_of(k)]  # B[K, N] = x[N, col(K)]
    x = chunks[:, _col_of(k), n]  # B[K, N] = x[col(K), N]
    return torch.stack([x_t, x], dim=1).contiguous()


@gluon.jit
def _as_a(t, op_a: gl.constexpr):
    """t [M, K] in the MMA accumulator layout as the A operand, without moving data: column
    c = c_lo + 2 t + 8 c_hi becomes K = t + 4 c_lo + 8 c_hi (b_fragments renames B's rows
    to match, so the product is unchanged)."""
    M: gl.constexpr = t.shape[0]
    K: gl.constexpr = t.shape[1]
    t = gl.permute(gl.reshape(t, [M, K // 8, 4, 2]), [0, 1, 3, 2])
    return gl.convert_layout(gl.reshape(t, [M, K]), op_a)


@gluon.jit
def _load_b(ptr, WARPS: gl.constexpr, op_b: gl.constexpr):
    """One b_fragments operand [16, 16]: 8 contiguous doubles per thread, renamed into the
    B layout (the reshape and permute cost nothing: same registers, same lanes)."""
    flat: gl.constexpr = gl.BlockedLayout([8], [32], [WARPS], [0])
    f = gl.load(ptr + gl.arange(0, 256, layout=flat))
    f = gl.permute(gl.reshape(f, [2, 2, 2, 2, 2, 2, 2, 2]), B_ORDER.value)
    return gl.convert_layout(gl.reshape(f, [16, 16]), op_b)


@gluon.jit
def _forward(w0a, xtb, y, w1, zero_acc, pade, NL: gl.constexpr, TANH: gl.constexpr,
             BLOCK_P: gl.constexpr, D: gl.constexpr):  # fmt: skip
    """h^T, (h * w1)^T [BLOCK_P * D, 16] and the residual r [BLOCK_P, 16] of a chunk."""
    z = mma_v2(w0a, xtb, zero_acc, input_precision="ieee")  # phi's argument (w0 holds s)
    h = _phi(z, NL, TANH, pade)
    hw = h * w1[:, None]
    out = gl.sum(gl.reshape(hw, [BLOCK_P, D, ROWS]), axis=1)  # [BLOCK_P, ROWS]
    return h, hw, out * 0.0625 - y[None, :]


@gluon.jit
def _backward(xb, h, hw, r, w1, g0, g1_rows, NL: gl.constexpr, BLOCK_P: gl.constexpr,
              D: gl.constexpr):  # fmt: skip
    """Accumulates dW0^T into g0 (dz^T @ x) and h * r into g1_rows, summed over the rows once
    a step. Constant factors are folded into the learning rates."""
    C: gl.constexpr = BLOCK_P * D
    rexp = gl.reshape(gl.expand_dims(r, 1).broadcast_to([BLOCK_P, D, ROWS]), [C, ROWS])
    rexp = gl.convert_layout(rexp, h.type.layout)  # no data movement
    if NL == 0:
        dz = rexp * gl.fma(-hw, h, w1[:, None])  # r w1 (1 - h^2), reusing h * w1
    elif NL == 1:
        dz = gl.where(h > 0, rexp * w1[:, None], 0.0)
    else:
        dz = rexp * w1[:, None]
    g1_rows = gl.fma(h, rexp, g1_rows)
    op_a: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=g0.type.layout, k_width=1)
    g0 = mma_v2(_as_a(dz, op_a), xb, g0, input_precision="ieee")
    return g0, g1_rows


@gluon.jit
def fractal_gluon_kernel(
    XB, Y, XMB, YMB, W0, W1, LR0, LR1, OFF, CONST, SUM_V, SUM_INV, SUM_TAIL, STEPS_RUN,
    n_pixels, N, N_PAD, steps, n_tail,
    C0: gl.float64, C1: gl.float64, C2: gl.float64, C3: gl.float64, C4: gl.float64,
    C5: gl.float64,
    NL: gl.constexpr, OFFSET_MODE: gl.constexpr, MB_PAD: gl.constexpr,
    BLOCK_P: gl.constexpr, D: gl.constexpr, TANH: gl.constexpr, WARPS: gl.constexpr,
    EXIT: gl.constexpr,
):  # fmt: skip
    """XB: b_fragments of X padded with zero rows to N_PAD (zero rows add nothing), Y padded
    likewise. Minibatch (MB_PAD > 0): XMB, YMB hold each step's rows, gathered and padded to
    MB_PAD by the host, as b_fragments. C0..C5: TANH_PADE (for the fast tanh). EXIT: as in
    fractal_kernel; with one pixel per program a stopped pixel frees its warp at once."""
    C: gl.constexpr = BLOCK_P * D
    pade = (C0, C1, C2, C3, C4, C5)
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[WARPS, 1], instr_shape=[16, 8]
    )
    op_a: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=1)
    op_b: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=1)

    pid = gl.program_id(0)
    rows = gl.arange(0, C, layout=gl.SliceLayout(1, mma))
    unit = rows % D
    prow = pid * BLOCK_P + rows // D  # the pixel of each row
    pmask_rows = prow < n_pixels
    k = gl.arange(0, D, layout=gl.SliceLayout(0, mma))

    # every pixel starts from the same weights; padding pixels get lr 0 and stay finite
    s = gl.load(CONST)  # phi's input scale, kept in w0
    w0 = gl.load(W0 + k[None, :] * D + unit[:, None]) * s  # w0^T [C, D]
    w1 = gl.load(W1 + unit)
    lr0 = gl.load(LR0 + prow, mask=pmask_rows, other=0.0)
    lr1 = gl.load(LR1 + prow, mask=pmask_rows, other=0.0)
    off = gl.load(OFF + prow, mask=pmask_rows, other=0.0) * s
    if OFFSET_MODE == 1:
        w0 += off[:, None]

    zero_acc = gl.zeros([C, ROWS], gl.float64, layout=mma)
    zero_rows = gl.sum(gl.reshape(zero_acc, [BLOCK_P, D, ROWS]), axis=1)  # [BLOCK_P, ROWS]
    yr = gl.arange(0, ROWS, layout=gl.SliceLayout(0, zero_rows.type.layout))

    sum_v = gl.sum(zero_rows, axis=1)  # [BLOCK_P] zeros, in the per-pixel layout
    sum_inv = sum_v
    sum_tail = sum_v
    L0 = sum_v + 1.0

    pmask = (pid * BLOCK_P + gl.arange(0, BLOCK_P, layout=sum_v.type.layout)) < n_pixels
    step = 0
    go = step < steps
    while go:
        if OFFSET_MODE == 2:  # the notebook re-adds the offset before every step
            w0 += off[:, None]
        w0a = _as_a(w0, op_a)  # no data movement; XB's x^T rows are renamed to match
        g0 = gl.zeros([C, D], gl.float64, layout=mma)
        g1_rows = zero_acc
        loss_rows = zero_rows
        for n0 in range(0, N_PAD, ROWS):  # the full batch: the loss, and the gradient
            xtb = _load_b(XB + n0 * 32, WARPS, op_b)
            y = gl.load(Y + n0 + yr)
            h, hw, r = _forward(w0a, xtb, y, w1, zero_acc, pade, NL, TANH, BLOCK_P, D)
            loss_rows = gl.fma(r, r, loss_rows)
            if MB_PAD == 0:
                xb = _load_b(XB + n0 * 32 + 256, WARPS, op_b)
                g0, g1_rows = _backward(xb, h, hw, r, w1, g0, g1_rows, NL, BLOCK_P, D)
        if MB_PAD > 0:  # minibatch: the gradient from this step's shared rows
            for m0 in range(0, MB_PAD, ROWS):
                row0 = step * MB_PAD + m0
                xtb = _load_b(XMB + row0 * 32, WARPS, op_b)
                y = gl.load(YMB + row0 + yr)
                h, hw, r = _forward(w0a, xtb, y, w1, zero_acc, pade, NL, TANH, BLOCK_P, D)
                xb = _load_b(XMB + row0 * 32 + 256, WARPS, op_b)
                g0, g1_rows = _backward(xb, h, hw, r, w1, g0, g1_rows, NL, BLOCK_P, D)
        loss = gl.sum(loss_rows, axis=1)
        g1 = gl.sum(g1_rows, axis=1)

        L0, sum_v, sum_inv, sum_tail, raw = _label_sums(
            loss / N, L0, sum_v, sum_inv, sum_tail, step, steps, n_tail
        )

        w0 -= lr0[:, None] * g0
        w1 -= lr1 * g1
        step += 1
        go = step < steps
        if EXIT > 0:
            # w1 - w1 is NaN exactly where w1 is inf or NaN (summed per pixel like `out`)
            bad = gl.reshape((w1 - w1)[:, None] + zero_acc, [BLOCK_P, D, ROWS])
            live = gl.sum(gl.sum(bad, axis=1), axis=1) == 0.0
            if EXIT == 2:
                live = live & (raw <= 1e6)
            go = go & (gl.sum((live & pmask).to(gl.int32), axis=0) > 0)

    sum_v, sum_inv, sum_tail = _finish_sums(step, steps, n_tail, sum_v, sum_inv, sum_tail)
    pix = pid * BLOCK_P + gl.arange(0, BLOCK_P, layout=sum_v.type.layout)
    gl.store(SUM_V + pix, sum_v, mask=pmask)
    gl.store(SUM_INV + pix, sum_inv, mask=pmask)
    gl.store(SUM_TAIL + pix, sum_tail, mask=pmask)
    gl.store(STEPS_RUN + pix, (sum_v * 0.0).to(gl.int32) + step, mask=pmask)
