"""The fractal engine's fast CUDA kernel, in Gluon (Triton's language with explicit layouts).

Same contract and arithmetic as fractal_kernel in triton_engine.py (read its docstring
first); the difference is where the data sits. Triton chose layouts for that kernel which
moved data every chunk: w0 converted to the dot-operand layout through shuffles in every
chunk (loop-invariant, but not hoisted), x staged through shared memory with barriers, ~90
instructions per element of which 28 fp64. Here the layouts are explicit:

- one warp owns one pixel (BLOCK_P pixels over WARPS warps, warps side by side along the
  hidden units), so every reduction is inside a warp and no chunk needs a barrier;
- w0 [D, C] stays in the MMA accumulator layout (where g0 lands, for the update) and is
  converted to the B-operand layout once per step, not once per chunk;
- x [BN, D] and x^T [D, BN] are loaded straight from memory (L1-resident: all programs read
  the same 35 KB) into the A-operand layouts of z = x @ w0 and g0 = x^T @ dz;
- the sum over a pixel's 16 hidden units runs inside each quad of lanes (2 shuffles), and
  leaves r in the lanes that need it for dz.

SASS (ptxas of Triton 3.6, sm_90): 527 instructions per chunk and warp (8 elements per
thread), 200 of them fp64 and 4 DMMA.16x8x16, against the tl kernel's 717 and 225 at the
same work. The fp64 pipe, which DMMA shares, is then ~66% busy (ncu); see docs/fractal.md.
CUDA only (no interpreter): the tests compare it with the torch engine on a GPU.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

from fractal.triton_engine import _label_sums, _tanh


@gluon.jit
def _forward(xa, y, w0b, w1, zero_acc, NL: gl.constexpr, TANH: gl.constexpr, BN: gl.constexpr,
             BLOCK_P: gl.constexpr, D: gl.constexpr):  # fmt: skip
    """h, h * w1 [BN, C] and the residual r [BN, BLOCK_P] of a data chunk."""
    z = mma_v2(xa, w0b, zero_acc, input_precision="ieee")  # phi's argument (w0 holds s)
    if NL == 0:
        h = _tanh(z, TANH, True)
    elif NL == 1:
        h = gl.maximum(z, 0.0)
    else:
        h = z
    hw = h * w1[None, :]
    out = gl.sum(gl.reshape(hw, [BN, BLOCK_P, D]), axis=2)  # [BN, BLOCK_P], in-quad sums
    return h, hw, out * 0.0625 - y[:, None]


@gluon.jit
def _backward(xta, h, hw, r, w1, g0, g1_rows, NL: gl.constexpr, BN: gl.constexpr,
              BLOCK_P: gl.constexpr, D: gl.constexpr):  # fmt: skip
    """Accumulates dW0 into g0 (x^T @ dz) and h * r into g1_rows, summed over rows once a
    step. Constant factors are folded into the learning rates."""
    C: gl.constexpr = BLOCK_P * D
    rexp = gl.reshape(gl.expand_dims(r, 2).broadcast_to([BN, BLOCK_P, D]), [BN, C])
    rexp = gl.convert_layout(rexp, h.type.layout)  # no data movement
    if NL == 0:
        dz = rexp * gl.fma(-hw, h, w1[None, :])  # r w1 (1 - h^2), reusing h * w1
    elif NL == 1:
        dz = gl.where(h > 0, rexp * w1[None, :], 0.0)
    else:
        dz = rexp * w1[None, :]
    g1_rows = gl.fma(h, rexp, g1_rows)
    op_b: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=g0.type.layout, k_width=1)
    g0 = mma_v2(xta, gl.convert_layout(dz, op_b), g0, input_precision="ieee")
    return g0, g1_rows


@gluon.jit
def fractal_gluon_kernel(
    X, Y, W0, W1, LR0, LR1, OFF, IDX, CONST, SUM_V, SUM_INV, SUM_TAIL,
    n_pixels, N, N_PAD, steps, n_tail,
    NL: gl.constexpr, OFFSET_MODE: gl.constexpr, MB: gl.constexpr, MB_PAD: gl.constexpr,
    BLOCK_P: gl.constexpr, BN: gl.constexpr, D: gl.constexpr, TANH: gl.constexpr,
    WARPS: gl.constexpr,
):  # fmt: skip
    """X, Y padded with zero rows to N_PAD, a multiple of BN (zero rows add nothing)."""
    C: gl.constexpr = BLOCK_P * D
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, WARPS], instr_shape=[16, 8]
    )
    op_a: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=1)
    op_b: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=1)

    pid = gl.program_id(0)
    cols = gl.arange(0, C, layout=gl.SliceLayout(0, mma))
    unit = cols % D
    pcol = pid * BLOCK_P + cols // D  # the pixel of each column
    cmask = pcol < n_pixels
    k = gl.arange(0, D, layout=gl.SliceLayout(1, mma))

    # every pixel starts from the same weights; padding pixels get lr 0 and stay finite
    s = gl.load(CONST)  # phi's input scale, kept in w0
    w0 = gl.load(W0 + k[:, None] * D + unit[None, :]) * s  # [D, C]
    w1 = gl.load(W1 + unit)
    lr0 = gl.load(LR0 + pcol, mask=cmask, other=0.0)
    lr1 = gl.load(LR1 + pcol, mask=cmask, other=0.0)
    off = gl.load(OFF + pcol, mask=cmask, other=0.0) * s
    if OFFSET_MODE == 1:
        w0 += off[None, :]

    zero_acc = gl.zeros([BN, C], gl.float64, layout=mma)
    zero_rows = gl.sum(gl.reshape(zero_acc, [BN, BLOCK_P, D]), axis=2)  # [BN, BLOCK_P]
    xr = gl.arange(0, BN, layout=gl.SliceLayout(1, op_a))
    xc = gl.arange(0, D, layout=gl.SliceLayout(0, op_a))
    x_offs = xr[:, None] * D + xc[None, :]  # x chunk [BN, D], A operand of x @ w0
    tr = gl.arange(0, D, layout=gl.SliceLayout(1, op_a))
    tc = gl.arange(0, BN, layout=gl.SliceLayout(0, op_a))
    xt_offs = tc[None, :] * D + tr[:, None]  # x^T [D, BN], A operand of x^T @ dz
    yr = gl.arange(0, BN, layout=gl.SliceLayout(1, zero_rows.type.layout))

    sum_v = gl.sum(zero_rows, axis=0)  # [BLOCK_P] zeros, in the per-pixel layout
    sum_inv = sum_v
    sum_tail = sum_v
    L0 = sum_v + 1.0

    for step in range(steps):
        if OFFSET_MODE == 2:  # the notebook re-adds the offset before every step
            w0 += off[None, :]
        w0b = gl.convert_layout(w0, op_b)  # once per step
        g0 = gl.zeros([D, C], gl.float64, layout=mma)
        g1_rows = zero_acc
        loss_rows = zero_rows
        for n0 in range(0, N_PAD, BN):
            xa = gl.load(X + n0 * D + x_offs)
            y = gl.load(Y + n0 + yr)
            h, hw, r = _forward(xa, y, w0b, w1, zero_acc, NL, TANH, BN, BLOCK_P, D)
            loss_rows = gl.fma(r, r, loss_rows)
            if MB == 0:
                xta = gl.load(X + n0 * D + xt_offs)
                g0, g1_rows = _backward(xta, h, hw, r, w1, g0, g1_rows, NL, BN, BLOCK_P, D)
        if MB > 0:  # minibatch: gradient from MB shared rows, loss still full batch
            mb_zero = gl.zeros([MB_PAD, C], gl.float64, layout=mma)
            mb_rows = gl.sum(gl.reshape(mb_zero, [MB_PAD, BLOCK_P, D]), axis=2)
            j = gl.arange(0, MB_PAD, layout=gl.SliceLayout(1, op_a))
            rows = gl.load(IDX + step * MB + j, mask=j < MB, other=0)
            xa = gl.load(X + rows[:, None] * D + xc[None, :], mask=(j < MB)[:, None], other=0.0)
            jt = gl.arange(0, MB_PAD, layout=gl.SliceLayout(0, op_a))
            rows_t = gl.load(IDX + step * MB + jt, mask=jt < MB, other=0)
            xta = gl.load(X + rows_t[None, :] * D + tr[:, None], mask=(jt < MB)[None, :], other=0.0)
            jy = gl.arange(0, MB_PAD, layout=gl.SliceLayout(1, mb_rows.type.layout))
            rows_y = gl.load(IDX + step * MB + jy, mask=jy < MB, other=0)
            y = gl.load(Y + rows_y, mask=jy < MB, other=0.0)
            h, hw, r = _forward(xa, y, w0b, w1, mb_zero, NL, TANH, MB_PAD, BLOCK_P, D)
            g0, g1_rows = _backward(xta, h, hw, r, w1, g0, mb_zero, NL, MB_PAD, BLOCK_P, D)
        loss = gl.sum(loss_rows, axis=0)
        g1 = gl.sum(g1_rows, axis=0)

        L0, sum_v, sum_inv, sum_tail = _label_sums(
            loss / N, L0, sum_v, sum_inv, sum_tail, step, steps, n_tail
        )

        w0 -= lr0[None, :] * g0
        w1 -= lr1 * g1

    pix = pid * BLOCK_P + gl.arange(0, BLOCK_P, layout=sum_v.type.layout)
    pmask = pix < n_pixels
    gl.store(SUM_V + pix, sum_v, mask=pmask)
    gl.store(SUM_INV + pix, sum_inv, mask=pmask)
    gl.store(SUM_TAIL + pix, sum_tail, mask=pmask)
