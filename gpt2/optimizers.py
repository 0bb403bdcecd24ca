"""Optimizers that torch does not ship: Muon (with its Newton-Schulz iteration) and Lion.
The registry in gpt2/optim.py builds them."""

import torch


def zeropower_via_newtonschulz5(G, steps=5, bf16=True):
    """Approximately orthogonalise G (replace its singular values by ~1); G is one matrix
    or a batch [..., rows, cols] of same-shape matrices, each orthogonalised on its own.

    Quintic Newton-Schulz iteration of Keller Jordan (modded-nanogpt, also nanochat): the
    coefficients (3.4445, -4.7750, 2.0315) maximise the slope at zero, so small singular
    values grow fast; the result has singular values in roughly [0.7, 1.2] rather than
    exactly 1, which does not hurt training. Runs in bf16 on CUDA (tensor cores) when
    bf16 is set, as modded-nanogpt does, fp32 otherwise and on the CPU (CPU bf16 matmuls
    are slow). fp32 cells pass bf16=False (gpt2/optim.py newton_schulz_bf16): bf16
    rounding of every update would otherwise decide the fine structure of an "fp32" map.
    """
    assert G.ndim >= 2
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda and bf16 else G.float()
    transposed = G.size(-2) > G.size(-1)
    if transposed:  # iterate on the smaller Gram matrix
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= 1
    shape = X.shape
    X = X.reshape(-1, *shape[-2:])  # one batch dimension: baddbmm fuses the scale-and-add
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b * A + c * A @ A
        X = torch.baddbmm(X, B, X, beta=a)  # a * X + B @ X
    X = X.reshape(shape)
    if transposed:
        X = X.mT
    return X


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz, for 2-D hidden weights only.

    Update: momentum (optionally Nesterov) of the gradient, orthogonalised, scaled by
    sqrt(max(1, rows/cols)) so tall matrices get the same per-element RMS as square ones.
    Decoupled weight decay as in AdamW.
    """

    def __init__(
        self,
        params,
        lr=0.02,
        momentum=0.95,
        nesterov=True,
        ns_steps=5,
        weight_decay=0.0,
        ns_bf16=True,
    ):
        self.ns_bf16 = ns_bf16
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            # Matrices of one shape go through Newton-Schulz together, as one batched
            # matmul chain: GPT-2 124M has 4 shapes for 48 matrices, so the step launches
            # ~25x fewer kernels than a loop over matrices (nanochat does the same).
            by_shape = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault((p.shape, p.dtype, p.device), []).append(p)
            for params in by_shape.values():
                grads = [p.grad for p in params]
                bufs = []
                for p in params:
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
                    bufs.append(self.state[p]["momentum_buffer"])
                torch._foreach_lerp_(bufs, grads, 1 - mom)
                g = torch._foreach_lerp(grads, bufs, mom) if group["nesterov"] else bufs
                update = zeropower_via_newtonschulz5(
                    torch.stack(g), group["ns_steps"], self.ns_bf16
                )
                if wd:
                    torch._foreach_mul_(params, 1 - lr * wd)
                scale = max(1.0, params[0].size(-2) / params[0].size(-1)) ** 0.5
                torch._foreach_add_(
                    params, list(update.to(params[0].dtype).unbind(0)), alpha=-lr * scale
                )
        return loss


class Lion(torch.optim.Optimizer):
    """EvoLved Sign Momentum (Chen et al. 2023): the update is the sign of an interpolation
    of momentum and gradient, so every element moves by exactly lr; hence its learning rate
    is typically 3-10x smaller than AdamW's."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(m.lerp(p.grad, 1 - beta1).sign_(), alpha=-lr)
                m.lerp_(p.grad, 1 - beta2)
        return loss
