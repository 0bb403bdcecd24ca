"""Triton jit helpers that the tl kernel (triton_engine.py) and the Gluon kernel
(gluon_kernel.py) share: the nonlinearity with our float64 tanh, and the label's running
sums. Both kernels import this module; it imports neither.

Runs compiled on CUDA, or on the CPU under TRITON_INTERPRET=1 (numpy).
"""

import os

import triton
import triton.language as tl

try:
    from triton.language.extra import libdevice
except ImportError:  # older triton
    libdevice = None

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_INTERPRET = tl.constexpr(INTERPRET)


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


@triton.jit
def _tanh_fast(z, pade):
    """tanh(z ln(2) / 2) in float64, i.e. tanh(u) for z = 2 u log2(e) (the caller folds
    2 log2(e) into the weights), pade = common.TANH_PADE as float64 kernel arguments (a
    float literal would be rounded to fp32, and a 64-bit immediate costs two instructions
    per use and chunk; arguments are read from the constant bank). Absolute error < 2e-16
    on the whole real line (1.97e-16 measured: values near 1 carry ~2 ulp, and like any
    1 - 2 / (e^2u + 1) form its error near 0 is absolute, not relative); +-inf -> +-1,
    NaN -> NaN.

    Works on a = |z| clamped to 64 (tanh is +-1.0 in float64 beyond |u| = 19.1) and puts the
    sign back at the end. 2^a = 2^n 2^x: n = rint(a) by the 1.5 * 2^52 trick, |x| <= 1/2,
    2^x = P(x) / P(-x) (the Pade approximant of common.TANH_PADE) and 2^n by adding n to P's
    exponent bits. Then tanh = 1 - 2 / (2^a + 1) = 1 - 2 Q / (2^n P + Q) with Q = P(-x): one
    reciprocal, seeded in fp32 (MUFU.RCP, ~2^-23) and refined by one cubic Newton step
    (~2^-69); no IEEE fp64 division. The clamp and the sign are integer operations on the
    high word. NaN passes through the arithmetic: the clamp keeps a high word above inf's
    (arithmetic NaNs are canonical, 0x7FFFFFFF on NVIDIA GPUs, 0x7FF80000 in numpy).

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
    """The nonlinearity (common.NL_CODE) of phi's argument z; tanh by TANH
    (common.TANH_CODE)."""
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
def _add_v(v, sum_v, sum_inv, sum_tail, step, steps, n_tail):
    """Adds one step's sanitised normalised loss v to the label's running sums."""
    sum_v += v
    sum_inv += 1.0 / v
    sum_tail += tl.where(step >= steps - n_tail, v, 0.0)
    return sum_v, sum_inv, sum_tail


@triton.jit
def _label_sums(loss, L0, sum_v, sum_inv, sum_tail, step, steps, n_tail):
    """One step of the label formula as running sums (engine.pixel_value): v = loss / first
    loss, non-finite -> 1e6, clipped at 1e6. Also returns v before sanitising (for the
    threshold exit)."""
    L0 = tl.where(step == 0, loss, L0)
    raw = loss / L0
    v = tl.where(raw == raw, tl.minimum(raw, 1e6), 1e6)
    sum_v, sum_inv, sum_tail = _add_v(v, sum_v, sum_inv, sum_tail, step, steps, n_tail)
    return L0, sum_v, sum_inv, sum_tail, raw


@triton.jit
def _finish_sums(start, steps, n_tail, sum_v, sum_inv, sum_tail):
    """The running sums of steps start .. steps-1 of a pixel that stopped training at
    `start`: each of them a non-finite (or clipped) loss, v = 1e6, added one step at a time
    as the full computation adds it, so the sums are bitwise the same."""
    v = sum_v * 0.0 + 1e6  # 1e6 is exact in fp32; sum_v is finite
    for s in range(start, steps):
        sum_v, sum_inv, sum_tail = _add_v(v, sum_v, sum_inv, sum_tail, s, steps, n_tail)
    return sum_v, sum_inv, sum_tail
