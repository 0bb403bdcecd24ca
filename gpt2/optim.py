"""Optimizers over the model's parameter groups, in one registry.

Adding an optimizer touches this file once (a builder plus one OPTIMIZERS entry with its
hyperparameters' defaults) and gpt2/Kconfig (an OPTIMIZER_<NAME> bool and a menu of its
<NAME>_* settings, whose defaults a test checks against the entry's). Tests and the
benchmark take every optimizer and its defaults from here. An optimizer torch does not
ship goes in gpt2/optimizers.py.

Every builder gets
    groups: {"matrix" | "embedding" | "unembedding" | "vector": [params]}, frozen groups
            already removed
    lrs:    {group: absolute learning rate}
    hp:     {kconfig-name: value}, the names listed in the entry's `hp`
and returns a list of torch optimizers (Muon needs two). Each param group carries
"name" (the model group) and "base_lr" (the scheduler multiplies it), as in nanochat.
torch is imported inside the builders: planning a matrix reads this registry and never
needs torch.
"""

from typing import Callable, NamedTuple

GROUPS = ("matrix", "embedding", "unembedding", "vector")


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


def fused_adamw(groups):
    """Whether AdamW runs as one fused kernel (on CUDA: ~10% faster step)."""
    return any(p.is_cuda for ps in groups.values() for p in ps)


def _adamw(groups, lrs, hp):
    import torch

    pg = _groups(groups, lrs, hp["adamw_weight_decay"])
    if not pg:
        return []
    betas = (hp["adamw_beta1"], hp["adamw_beta2"])
    return [torch.optim.AdamW(pg, betas=betas, eps=hp["adamw_eps"], fused=fused_adamw(groups))]


def newton_schulz_bf16(precision):
    """Whether Muon's Newton-Schulz iteration may round to bf16 on a GPU: in bf16 and fp16
    cells, as modded-nanogpt does; never in fp32 cells, whose maps must not be decided by
    bf16 rounding (hp["muon_ns_bf16"], set by gpt2/runner.py for both training paths)."""
    return precision != "fp32"


def _muon(groups, lrs, hp):
    from gpt2.optimizers import Muon

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
                ns_bf16=hp.get("muon_ns_bf16", True),
            )
        )
    # embeddings, head and 1-D params are not matrices Muon should orthogonalise: AdamW
    return opts + _adamw(rest, lrs, hp)


def _sgd(groups, lrs, hp):
    import torch

    pg = _groups(groups, lrs, hp["sgd_weight_decay"])
    if not pg:
        return []
    return [torch.optim.SGD(pg, momentum=hp["sgd_momentum"], nesterov=bool(hp["sgd_nesterov"]))]


def _lion(groups, lrs, hp):
    from gpt2.optimizers import Lion

    pg = _groups(groups, lrs, hp["lion_weight_decay"])
    if not pg:
        return []
    return [Lion(pg, betas=(hp["lion_beta1"], hp["lion_beta2"]))]


# ---------------------------------------------------------------------------- registry


class Spec(NamedTuple):
    build: Callable  # (groups, lrs, hp) -> [torch.optim.Optimizer]
    lr: str  # Kconfig name of the base learning rate (the matrix group's)
    aux_lr: str  # base lr of embedding/unembedding/vector (differs for Muon: AdamW's)
    defaults: dict  # every hyperparameter it reads (lr, aux_lr and hp) -> its default

    @property
    def hp(self):
        """Kconfig names of the hyperparameters other than the learning rates."""
        return tuple(k for k in self.defaults if k not in (self.lr, self.aux_lr))


_ADAMW = dict(
    adamw_lr=6e-4, adamw_beta1=0.9, adamw_beta2=0.95, adamw_eps=1e-8, adamw_weight_decay=0.1
)

OPTIMIZERS = {
    "adamw": Spec(_adamw, "adamw_lr", "adamw_lr", _ADAMW),
    "muon": Spec(
        _muon,
        "muon_lr",
        "adamw_lr",
        dict(
            muon_lr=0.02,
            muon_momentum=0.95,
            muon_nesterov=True,
            muon_ns_steps=5,
            muon_weight_decay=0.0,
            **_ADAMW,
        ),
    ),
    "sgd": Spec(
        _sgd,
        "sgd_lr",
        "sgd_lr",
        dict(sgd_lr=0.1, sgd_momentum=0.9, sgd_nesterov=True, sgd_weight_decay=0.0),
    ),
    "lion": Spec(
        _lion,
        "lion_lr",
        "lion_lr",
        dict(lion_lr=1e-4, lion_beta1=0.9, lion_beta2=0.99, lion_weight_decay=0.1),
    ),
}


def default_lrs(name):
    """{group: lr} of an optimizer at its defaults (tests, the benchmark)."""
    spec = OPTIMIZERS[name]
    aux = spec.defaults[spec.aux_lr]
    return {g: spec.defaults[spec.lr] if g == "matrix" else aux for g in GROUPS}


def default_hp(name):
    """The optimizer's other hyperparameters at their defaults."""
    spec = OPTIMIZERS[name]
    return {k: spec.defaults[k] for k in spec.hp}


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
