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

# Optimizers a pixel can be trained with, and their knobs with torch's defaults (the
# project's Muon's for muon). gd is the paper's plain gradient descent. momentum and
# nesterov are torch.optim.SGD's heavy ball and Nesterov momentum; adam and adamw are
# torch.optim.Adam (weight decay added to the gradient) and AdamW (decoupled); rmsprop is
# torch.optim.RMSprop (no momentum, not centred); muon orthogonalises the input layer's
# 16 x 16 update by Newton-Schulz (gpt2/optimizers.py's Muon: Nesterov momentum, 5 steps)
# and trains the output layer with Adam (beta1, beta2, eps), as Muon is used in practice.
OPTIMIZERS = {
    "gd": {},
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9),
    "adam": dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    "adamw": dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01),
    "rmsprop": dict(alpha=0.99, eps=1e-8, weight_decay=0.0),
    "muon": dict(momentum=0.95, beta1=0.9, beta2=0.999, eps=1e-8),
}
# Knobs that are decay rates in [0, 1): as an image axis they are spaced as log10(1 - knob)
# (1 - beta1 from 1e-3 to 1 spans beta1 0 .. 0.999); the others as log10(knob).
DECAY_KNOBS = ("momentum", "beta1", "beta2", "alpha")
# The optimizers the tl kernel runs (triton_engine.py); the others train on the torch
# backend. Kernel knob slots: (momentum | beta1 | alpha, beta2, eps, weight_decay).
OPT_CODE = {"gd": 0, "momentum": 1, "nesterov": 2, "adam": 3, "adamw": 4, "rmsprop": 5}
MUON_NS = (3.4445, -4.7750, 2.0315)  # gpt2/optimizers.py's quintic Newton-Schulz, 5 steps
MUON_NS_STEPS = 5
