"""Constants of the paper's network and label that the engine and both kernels share.

Pure Python (no torch, no triton), so every module of the fractal workload can import it
without pulling in a compiler: engine.py (PyTorch), triton_engine.py (the tl kernel),
gluon_kernel.py (the Gluon kernel) and kernel_lib.py (their shared jit helpers).
"""

import math

WIDTH = 16  # hidden width; the input dimension is the same
MAX_VAL = 1e6  # normalised losses are clipped here; non-finite ones become this
TAIL = 20  # converged iff the mean of the last TAIL normalised losses < 1

# h = phi(a * PHI_SCALE) with a = x @ W0 (the 1/sqrt(16) folded in), and phi'(z) =
# PHI_SCALE * core(h), where core is (1 - h^2) | [a > 0] | 1: the chain rule brings the
# same factor out of the argument, so one number serves both directions.
PHI_SCALE = {"tanh": math.sqrt(2.0) / 4.0, "relu": math.sqrt(2.0) / 4.0, "identity": 0.25}

EXPERIMENTS = {  # the six experiments of the paper
    "tanh": dict(nonlinearity="tanh", axes="lr_vs_lr", batch="full", n_points=272),
    "relu": dict(nonlinearity="relu", axes="lr_vs_lr", batch="full", n_points=272),
    "identity": dict(nonlinearity="identity", axes="lr_vs_lr", batch="full", n_points=16),
    "minibatch": dict(nonlinearity="tanh", axes="lr_vs_lr", batch="minibatch", n_points=272),
    "single_datapoint": dict(nonlinearity="tanh", axes="lr_vs_lr", batch="full", n_points=1),
    "paraminit": dict(nonlinearity="tanh", axes="paraminit_vs_lr", batch="full", n_points=272),
}
OPENING_WINDOW = (-3.0, 6.0, -3.0, 6.0)  # log10 ranges (x_min, x_max, y_min, y_max)

NL_CODE = {"tanh": 0, "relu": 1, "identity": 2}
OFFSET_CODE = {"none": 0, "init": 1, "every_step": 2}
TANH_CODE = {"libdevice": 0, "exp": 1, "fast": 2}

# When a pixel stops training before its last step (engine.compute_image's early_exit):
# "none" never; "nonfinite" once an output-layer weight is inf or NaN, after which every
# loss is non-finite (exact: the image is unchanged); "threshold" also once the loss passes
# MAX_VAL times the first loss (exact only if it never comes back below: opt-in).
EXIT_CODE = {"none": 0, "nonfinite": 1, "threshold": 2}

# The [6/6] Pade approximant of 2^x = P(x) / P(-x), P(x) = E(x^2) + x O(x^2), E(0) = 1:
# P(t) = sum_k (12 - k)! 6! / (12! k! (6 - k)!) t^k at t = x ln 2, coefficients rounded to
# float64 (tests/test_fractal_engine.py rebuilds them with mpmath). (e6, e4, e2, o5, o3, o1).
# Relative error of P(x)/P(-x) on |x| <= 1/2: 1.2e-17, mostly the coefficients' rounding.
TANH_PADE = (
    1.6670487438724687e-07, 0.00029145845780692353, 0.054596933399795614,
    1.0101180413960942e-05, 0.005045828060438326, 0.34657359027997264,
)  # fmt: skip
