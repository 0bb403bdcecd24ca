"""Optimizers over the model's parameter groups, in one registry.

Adding an optimizer touches this file once (a builder plus one OPTIMIZERS entry) and the
top-level Kconfig (an OPTIMIZER_<NAME> bool and its <NAME>_* hyperparameters).

Every builder gets
    groups: {"matrix" | "embedding" | "unembedding" | "vector": [params]}, frozen groups
            already removed
    lrs:    {group: absolute learning rate}
    hp:     {kconfig-name: value}, the names listed in the entry's `hp`
and returns a list of torch optimizers (Muon needs two). Each param group carries
"name" (the model group) and "base_lr" (the scheduler multiplies it), as in nanochat.
"""

from typing import Callable, NamedTuple

import torch


def _groups(groups, lrs, decay):
    """torch param groups; weight decay only on 2-D weights (not biases and norm gains)."""
    out = []
    for name, params in groups.items():
        if params:
            wd = decay if name != "vector" else 0.0
            out.append(
                dict(params=params, name=name, lr=lrs[name], base_lr=lrs[name], weight_decay=wd)
            )
    return out


def _on_cuda(groups):
    return any(p.is_cuda for ps in groups.values() for p in ps)


def _adamw(groups, lrs, hp):
    pg = _groups(groups, lrs, hp["adamw_weight_decay"])
    if not pg:
        return []
    return [
        torch.optim.AdamW(
            pg,
            betas=(hp["adamw_beta1"], hp["adamw_beta2"]),
            eps=hp["adamw_eps"],
            fused=_on_cuda(groups),  # one kernel for all params: ~10% faster step on GPU
        )
    ]


# ---------------------------------------------------------------------------- Muon


def zeropower_via_newtonschulz5(G, steps=5):
    """Approximately orthogonalise G (replace its singular values by ~1); G is one matrix
    or a batch [..., rows, cols] of same-shape matrices, each orthogonalised on its own.

    Quintic Newton-Schulz iteration of Keller Jordan (modded-nanogpt, also nanochat): the
    coefficients (3.4445, -4.7750, 2.0315) maximise the slope at zero, so small singular
    values grow fast; the result has singular values in roughly [0.7, 1.2] rather than
    exactly 1, which does not hurt training. Runs in bf16 on CUDA (tensor cores), fp32
    elsewhere (CPU bf16 matmuls are slow).
    """
    assert G.ndim >= 2
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda else G.float()
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

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, weight_decay=0.0):
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
                update = zeropower_via_newtonschulz5(torch.stack(g), group["ns_steps"])
                if wd:
                    torch._foreach_mul_(params, 1 - lr * wd)
                scale = max(1.0, params[0].size(-2) / params[0].size(-1)) ** 0.5
                torch._foreach_add_(
                    params, list(update.to(params[0].dtype).unbind(0)), alpha=-lr * scale
                )
        return loss


def _muon(groups, lrs, hp):
    matrix = {k: v for k, v in groups.items() if k == "matrix"}
    rest = {k: v for k, v in groups.items() if k != "matrix"}
    opts = []
    if matrix.get("matrix"):
        opts.append(
            Muon(
                _groups(matrix, lrs, hp["muon_weight_decay"]),
                momentum=hp["muon_momentum"],
                nesterov=bool(hp["muon_nesterov"]),
                ns_steps=int(hp["muon_ns_steps"]),
            )
        )
    # embeddings, head and 1-D params are not matrices Muon should orthogonalise: AdamW
    return opts + _adamw(rest, lrs, hp)


# ---------------------------------------------------------------------------- SGD, Lion


def _sgd(groups, lrs, hp):
    pg = _groups(groups, lrs, hp["sgd_weight_decay"])
    if not pg:
        return []
    return [torch.optim.SGD(pg, momentum=hp["sgd_momentum"], nesterov=bool(hp["sgd_nesterov"]))]


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


def _lion(groups, lrs, hp):
    pg = _groups(groups, lrs, hp["lion_weight_decay"])
    if not pg:
        return []
    return [Lion(pg, betas=(hp["lion_beta1"], hp["lion_beta2"]))]


# ---------------------------------------------------------------------------- registry


class Spec(NamedTuple):
    build: Callable  # (groups, lrs, hp) -> [torch.optim.Optimizer]
    lr: str  # Kconfig name of the base learning rate (the matrix group's)
    aux_lr: str  # base lr of embedding/unembedding/vector (differs for Muon: AdamW's)
    hp: tuple  # Kconfig names of the other hyperparameters the builder reads


_ADAMW_HP = ("adamw_beta1", "adamw_beta2", "adamw_eps", "adamw_weight_decay")

OPTIMIZERS = {
    "adamw": Spec(_adamw, "adamw_lr", "adamw_lr", _ADAMW_HP),
    "muon": Spec(
        _muon,
        "muon_lr",
        "adamw_lr",
        ("muon_momentum", "muon_nesterov", "muon_ns_steps", "muon_weight_decay") + _ADAMW_HP,
    ),
    "sgd": Spec(_sgd, "sgd_lr", "sgd_lr", ("sgd_momentum", "sgd_nesterov", "sgd_weight_decay")),
    "lion": Spec(_lion, "lion_lr", "lion_lr", ("lion_beta1", "lion_beta2", "lion_weight_decay")),
}

GROUPS = ("matrix", "embedding", "unembedding", "vector")


def build_optimizers(name, model_groups, lrs, hp, train_groups=GROUPS):
    """Optimizers for `name` over the model's groups. Groups not in `train_groups` are
    frozen (requires_grad False, in no optimizer), so they cost no optimizer state."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(OPTIMIZERS)}")
    active = {}
    for g, params in model_groups.items():
        train = g in train_groups
        for p in params:
            p.requires_grad_(train)
        if train:
            active[g] = params
    return OPTIMIZERS[name].build(active, lrs, hp)


def set_lr(optimizers, multiplier):
    """Scale every group's base lr (schedule); returns {group name: lr}."""
    lrs = {}
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * multiplier
            lrs[group["name"]] = group["lr"]
    return lrs
