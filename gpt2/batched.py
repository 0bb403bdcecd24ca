"""K models of one shape trained together: one forward and one backward per step for all.

A map's points share their model shape, initial weights and batches, and differ only in
a few hyperparameters. Here their weights are stacked ([K, ...] per parameter), every
matmul is one batched matmul over the K models, attention runs the K models' sequences
as one batch, and the hyperparameters that differ are [K] tensors. Each model's loss is
its own ([K]); the backward of their sum gives every model exactly its own gradient,
since no operation mixes models.

Why a batched module rather than `torch.func.vmap` over `functional_call`: vmap has no
batching rule for scaled_dot_product_attention; on the CPU it falls back to a loop over
the K models (with a warning) and timed the same as this module (1.02x at K = 8,
bench/results/llm_batched_flagship_cpu.json), and on an H100 its backward failed
outright ("LSE is not correctly aligned", bench/results/llm_batched_h100.log). The
forward below follows gpt2/model.py operation for operation, and
tests/test_gpt2_batched.py checks that each of the K models follows the one-model path.

A model whose loss turns non-finite leaves the batch at that step (its losses up to and
including the non-finite one are its result, as in gpt2/train.py); the others go on with
the rows of their tensors compacted, so a diverged point costs nothing afterwards.

Knobs that may differ inside a batch are BATCHABLE (gpt2/params.py); everything else in
a cell's params must be equal (batch_key), the seed included: the K models draw the
same batches.
"""

import math
import time

import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from kmatrix.errors import Diverged
from kmatrix.progress import report as report_progress

from .optim import GROUPS
from .optimizers import zeropower_via_newtonschulz5
from .params import head_chunk
from .train import (
    autocast_context,
    budget_progress,
    budget_spent,
    lr_multiplier,
    peak_memory_mb,
)

# ---------------------------------------------------------------------------- the model


def _linear(x, w, b=None):
    """x [K, ..., in] times each model's w [K, out, in] (+ b [K, out])."""
    K, shape = x.shape[0], x.shape
    x2 = x.reshape(K, -1, shape[-1])
    y = torch.bmm(x2, w.mT) if b is None else torch.baddbmm(b[:, None, :], x2, w.mT)
    return y.view(*shape[:-1], w.shape[1])


class BatchedGPT:
    """The weights of K copies of a gpt2.model.GPT (stacked from `model`'s current ones)
    and the forward of all K at once. `model` keeps the shape, the rotary tables and the
    FLOP count; params maps its parameter names to [K, ...] leaf tensors."""

    def __init__(self, model, K, compile_backend=None):
        self.model, self.config, self.K = model, model.config, K
        self.compile_backend = compile_backend  # torch.compile's backend, None: eager
        self.params = {
            name: p.detach().unsqueeze(0).repeat(K, *[1] * p.dim()).requires_grad_(p.requires_grad)
            for name, p in model.named_parameters()
        }
        if compile_backend:
            mark_batch_dynamic(self.params.values())
        ids = {id(p): n for n, p in model.named_parameters()}
        self.groups = {g: [ids[id(p)] for p in ps] for g, ps in model.param_groups().items()}

    def compact(self, keep):
        """Keep only the rows `keep` (a LongTensor of row indices)."""
        self.K = len(keep)
        for name, p in self.params.items():
            self.params[name] = p.detach()[keep].requires_grad_(p.requires_grad)
        if self.compile_backend:
            mark_batch_dynamic(self.params.values())

    def _norm(self, x, prefix):
        if self.config.arch == "gpt2":
            P = self.params
            y = F.layer_norm(x, (x.size(-1),), eps=1e-5) * P[prefix + ".weight"][:, None, None]
            bias = P.get(prefix + ".bias")
            return y if bias is None else y + bias[:, None, None]
        return F.rms_norm(x, (x.size(-1),))

    def _lin(self, x, prefix):
        return _linear(x, self.params[prefix + ".weight"], self.params.get(prefix + ".bias"))

    def _attn(self, x, i):
        K, B, T, C = x.shape
        H = self.config.n_head
        pre = f"transformer.h.{i}.attn"
        q, k, v = self._lin(x, pre + ".c_attn").split(C, dim=-1)
        q, k, v = (t.reshape(K * B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        rotary = self.model.transformer.h[i].attn.rotary
        if rotary is not None:
            q, k = F.rms_norm(rotary(q), (q.size(-1),)), F.rms_norm(rotary(k), (k.size(-1),))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self._lin(y.transpose(1, 2).reshape(K, B, T, C), pre + ".c_proj")

    def _mlp(self, x, i):
        pre = f"transformer.h.{i}.mlp"
        x = self._lin(x, pre + ".c_fc")
        x = F.relu(x).square() if self.config.arch == "nanochat" else F.gelu(x)
        return self._lin(x, pre + ".c_proj")

    def _block(self, x, i):
        x = x + self._attn(self._norm(x, f"transformer.h.{i}.ln_1"), i)
        return x + self._mlp(self._norm(x, f"transformer.h.{i}.ln_2"), i)

    def trunk(self, idx, ckpt=False):
        """The K models' final hidden states [K, B, T, C] on the batch idx [B, T]."""
        P, cfg = self.params, self.config
        x = P["transformer.wte.weight"][:, idx]  # [K, B, T, C]
        if cfg.arch == "gpt2":
            x = x + P["transformer.wpe.weight"][:, None, : idx.shape[1]]
        else:
            x = F.rms_norm(x, (x.size(-1),))
        for i in range(cfg.n_layer):
            if ckpt and torch.is_grad_enabled():
                x = checkpoint(self._block, x, i, use_reentrant=False)
            else:
                x = self._block(x, i)
        return self._norm(x, "transformer.ln_f")

    def losses(self, idx, targets, grad_checkpoint=None):
        """[K] mean cross-entropy of each model on the same batch idx, targets [B, T]."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} > block_size {self.config.block_size}")
        ckpt = self.config.grad_checkpoint if grad_checkpoint is None else grad_checkpoint
        trunk = _compiled(_trunk, self.compile_backend) if self.compile_backend else _trunk
        x = trunk(self, idx, bool(ckpt))
        P = self.params
        head = P.get("lm_head.weight", P["transformer.wte.weight"])  # gpt2: tied to wte
        return head_losses(x.flatten(1, 2), head, targets.reshape(-1), self.compile_backend)


def _trunk(bm, idx, ckpt):
    """BatchedGPT.trunk as a plain function: what torch.compile compiles, once per worker
    and model shape (its guards see the same model object and the parameter names; the
    number of models K is a dynamic size, so compaction does not recompile)."""
    return bm.trunk(idx, ckpt)


# GPT2_COMPILE's torch.compile backend for batches (tests count compiles with another)
COMPILE_BACKEND = "inductor"
_COMPILED = {}


def _compiled(fn, backend):
    """fn compiled with backend, kept for the process: one compiled function, so the
    compiles are counted and bounded by Dynamo's own cache (see mark_batch_dynamic)."""
    key = (fn, backend if isinstance(backend, str) else id(backend))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, backend=backend)
    return _COMPILED[key]


def mark_batch_dynamic(tensors, dims=(0,)):
    """Dim 0 (the K models) of these tensors is a dynamic size for torch.compile: the
    first compile serves every K, so a batch whose models diverge and leave (compaction)
    or a worker's last, smaller batch reuse it. Dynamo still specialises a size of 1: a
    batch down to one model compiles once more. So the compiles of a worker are at most
    2 (K > 1, K = 1) x 2 (training, evaluation) per model shape and precision, and the
    same for the loss's chunk (head_losses)."""
    for t in tensors:
        for d in dims[: t.dim()]:
            torch._dynamo.maybe_mark_dynamic(t, d)


def _ce_chunk(logits, t, inv_valid, want_grad: bool):
    """Cross-entropy of a chunk of logits [K, n, V] (any dtype, reduced in fp32) against
    targets t [n] (-1 ignored): the [K] sums of the per-token losses / valid tokens and,
    if want_grad, their gradient with respect to the logits (softmax - one-hot) / valid,
    in the logits' dtype (the matmuls' under autocast)."""
    dtype, logits = logits.dtype, logits.float()
    mask = (t != -1).to(logits.dtype)
    safe = t.clamp(min=0)
    lse = torch.logsumexp(logits, dim=-1)  # [K, n]
    picked = logits.gather(-1, safe.view(1, -1, 1).expand(logits.shape[0], -1, 1))[..., 0]
    loss = ((lse - picked) * mask).sum(1) * inv_valid
    if not want_grad:
        return loss, None
    hit = torch.arange(logits.shape[-1], device=t.device) == safe[:, None]  # [n, V]
    grad = (torch.exp(logits - lse[..., None]) - hit.to(logits.dtype)) * (mask * inv_valid)[
        ..., None
    ]
    return loss, grad.to(dtype)


def _chunked_head_loss(x, head, targets, backend, grad_x, grad_head):
    """([K] losses, d losses / d x or None, d losses / d head or None) of head(x) over
    chunks of tokens; x [K, N, C], head [K, V, C], targets [N]."""
    K, N, _ = x.shape
    chunk = head_chunk(N, head.shape[1])
    inv_valid = 1.0 / (targets != -1).sum().clamp(min=1).to(torch.float32)
    ce = _compiled(_ce_chunk, backend) if backend else _ce_chunk
    loss = torch.zeros(K, device=x.device, dtype=torch.float32)
    gx = torch.empty_like(x) if grad_x else None
    gw = torch.zeros_like(head, dtype=torch.float32) if grad_head else None
    kind = x.device.type
    # the matmuls' dtype: autocast's, as the one-model path's lm_head; cast once, not per chunk
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else head.dtype
    xm, hm = x.to(dtype), head.to(dtype)
    for s in range(0, N, chunk):
        xc, t = xm[:, s : s + chunk], targets[s : s + chunk]
        logits = torch.bmm(xc, hm.mT)
        if backend:
            mark_batch_dynamic([logits, t], dims=(0, 1))
        part, g = ce(logits, t, inv_valid, grad_x or grad_head)
        loss += part
        if gx is not None:
            gx[:, s : s + chunk] = torch.bmm(g, hm)
        if gw is not None:
            gw += torch.bmm(g.mT, xc)
    return loss, gx, gw


class _HeadLoss(torch.autograd.Function):
    """[K] mean cross-entropy of head(x) over chunks of tokens: each chunk's logits are
    made, reduced and their gradient taken at once (the gradients of x and head are
    computed in the forward and only scaled in the backward), so one chunk's logits exist
    at a time. Under autocast the matmuls run in its dtype, as the one-model path's
    lm_head, and the reduction in fp32, as its cross-entropy."""

    @staticmethod
    def forward(ctx, x, head, targets, backend):
        grads = ctx.needs_input_grad
        loss, gx, gw = _chunked_head_loss(x, head, targets, backend, grads[0], grads[1])
        ctx.save_for_backward(gx, gw)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        gx, gw = ctx.saved_tensors
        scale = grad_loss.view(-1, 1, 1)
        gx = None if gx is None else gx * scale.to(gx.dtype)
        gw = None if gw is None else gw * scale
        return gx, gw, None, None


def head_losses(x, head, targets, backend=None):
    """[K] mean cross-entropy of each model's logits head(x) [K, N, V]: in one piece with
    F.cross_entropy when the logits fit one chunk and nothing is compiled (its fused kernel
    is faster than _ce_chunk's separate steps uncompiled: the flagship's and the character
    maps' batches), else chunk by chunk (see _HeadLoss). The choice depends on N and V,
    never on K, so a model's losses do not depend on the batch it trains in."""
    N, V = x.shape[1], head.shape[1]
    if backend is None and head_chunk(N, V) == N:
        logits = _linear(x, head).float()  # fp32 cross-entropy, as the one-model path
        per_token = F.cross_entropy(
            logits.view(-1, V), targets.repeat(x.shape[0]), ignore_index=-1, reduction="none"
        ).view(x.shape[0], -1)
        return per_token.sum(1) / (targets != -1).sum()
    if torch.is_grad_enabled() and (x.requires_grad or head.requires_grad):
        return _HeadLoss.apply(x, head, targets, backend)
    return _chunked_head_loss(x, head, targets, backend, False, False)[0]


# ------------------------------------------------------------------------ the optimizers


def _col(t, like):
    """A [K] hyperparameter (float64) as a [K, 1, ...] column in like's dtype."""
    return t.to(like.dtype).view(-1, *[1] * (like.dim() - 1))


def adamw_step(p, g, state, h, lr, wd, t, backend=None):
    """torch.optim.AdamW (foreach), each row with its own lr, betas, eps and decay. With
    a compile backend (GPT2_COMPILE) the update is one fused kernel: a map's embedding and
    head, [K, vocab, width] each, are most of the bytes a step moves, and eager AdamW
    passes over them about ten times (bench/results/llm_batched_ft_*_h100.json)."""
    if not state:
        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
    b1, b2 = h["adamw_beta1"], h["adamw_beta2"]
    rows = [1 - lr * wd, 1 - b1, b2, 1 - b2, (1 - b2**t).sqrt(), h["adamw_eps"]]
    rows.append(-(lr / (1 - b1**t)))  # the step size, negated
    flat = [x.view(x.shape[0], -1) for x in (p, g, state["exp_avg"], state["exp_avg_sq"])]
    cols = [_col(r, flat[0]) for r in rows]
    if backend:
        mark_batch_dynamic(flat + cols, dims=(0, 1))  # one graph for every shape and K
        _compiled(_adamw_update, backend)(*flat, *cols)
    else:
        _adamw_update(*flat, *cols)


def _adamw_update(p, g, m, v, decay, w1, b2, w2, bias2, eps, neg_step):
    """AdamW's update of rows [K, n] in place, each row with its own [K, 1] factors: the
    same operations, in the same order, as torch.optim.AdamW's foreach step."""
    p.mul_(decay)
    m.lerp_(g, w1)
    v.mul_(b2).addcmul_(g, g * w2)
    denom = (v.sqrt() / bias2).add_(eps)
    p.add_((m / denom) * neg_step)


def sgd_step(p, g, state, h, lr, wd, t):
    """torch.optim.SGD: L2 decay into the gradient, momentum buffer, Nesterov."""
    mom = h["sgd_momentum"]
    g = g + p * _col(wd, p)
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = g.clone()
    else:
        state["momentum_buffer"].mul_(_col(mom, p)).add_(g)
    buf = state["momentum_buffer"]
    g = g + buf * _col(mom, p) if h["sgd_nesterov"] else buf
    p.add_(g * _col(-lr, p))


def lion_step(p, g, state, h, lr, wd, t):
    """gpt2.optimizers.Lion."""
    if not state:
        state["exp_avg"] = torch.zeros_like(p)
    m = state["exp_avg"]
    p.mul_(_col(1 - lr * wd, p))
    p.add_(m.lerp(g, _col(1 - h["lion_beta1"], p)).sign_() * _col(-lr, p))
    m.lerp_(g, _col(1 - h["lion_beta2"], p))


def muon_step(ps, gs, states, h, lr, wd, t):
    """gpt2.optimizers.Muon on same-shape matrices [K, m, n]: one Newton-Schulz chain
    over every model and every matrix of the shape ([len(ps) * K, m, n])."""
    mom = h["muon_momentum"]
    updates = []
    for p, g, state in zip(ps, gs, states):
        if not state:
            state["momentum_buffer"] = torch.zeros_like(g)
        buf = state["momentum_buffer"]
        buf.lerp_(g, _col(1 - mom, g))
        updates.append(g.lerp(buf, _col(mom, g)) if h["muon_nesterov"] else buf)
    ortho = zeropower_via_newtonschulz5(
        torch.cat(updates), int(h["muon_ns_steps"]), h.get("muon_ns_bf16", True)
    )
    scale = max(1.0, ps[0].size(-2) / ps[0].size(-1)) ** 0.5
    for p, u in zip(ps, ortho.split(ps[0].shape[0])):
        p.mul_(_col(1 - lr * wd, p))
        p.add_(u.to(p.dtype) * _col(-lr * scale, p))


# One batched step per optimizer of gpt2/optim.py's registry, and which rule (and whose
# weight decay) each parameter group follows: Muon's non-matrix groups run AdamW.
STEPS = {
    "adamw": lambda group: (adamw_step, "adamw_weight_decay"),
    "muon": lambda group: (
        (muon_step, "muon_weight_decay")
        if group == "matrix"
        else (adamw_step, "adamw_weight_decay")
    ),
    "sgd": lambda group: (sgd_step, "sgd_weight_decay"),
    "lion": lambda group: (lion_step, "lion_weight_decay"),
}


class BatchedOptimizer:
    """An optimizer of gpt2/optim.py over a BatchedGPT's trained groups, each model with
    its own hyperparameters.

    lrs: {group: [K] base learning rate}; hp: {name: [K] tensor} for float knobs, plain
    values for the shared ones (Nesterov, Newton-Schulz steps). Tensors are float64 so
    derived values (1 - beta, lr / (1 - beta^t)) round as the one-model path's Python
    floats do before they meet the fp32 weights.
    """

    def __init__(self, name, model, lrs, hp, train_groups=GROUPS):
        self.name, self.model, self.lrs, self.hp = name, model, dict(lrs), dict(hp)
        self.t = 0
        self.rules = {}  # param name -> (step function, group, weight decay name)
        for group, names in model.groups.items():
            for n in names:
                model.params[n].requires_grad_(group in train_groups)
                if group in train_groups:
                    fn, decay = STEPS[name](group)
                    self.rules[n] = (fn, group, decay)
        self.state = {n: {} for n in self.rules}

    def compact(self, keep):
        for st in self.state.values():
            for k, v in st.items():
                st[k] = v[keep]
        self.lrs = {g: v[keep] for g, v in self.lrs.items()}
        self.hp = {k: v[keep] if torch.is_tensor(v) else v for k, v in self.hp.items()}

    def params(self):
        return [self.model.params[n] for n in self.rules]

    @torch.no_grad()
    def step(self, multiplier):
        """One step at lr = base lr x multiplier (the schedule's); clears the gradients."""
        self.t += 1
        P, zero = self.model.params, None
        muon = {}  # shape -> [names]: one Newton-Schulz chain per shape
        for n, (fn, group, decay) in self.rules.items():
            p = P[n]
            if p.grad is None:
                continue
            lr = self.lrs[group] * multiplier
            if group == "vector":
                zero = torch.zeros_like(lr) if zero is None else zero
            wd = zero if group == "vector" else self.hp[decay]
            if fn is muon_step:
                muon.setdefault((tuple(p.shape), decay, group), []).append(n)
            elif fn is adamw_step:
                fn(p, p.grad, self.state[n], self.hp, lr, wd, self.t, self.model.compile_backend)
            else:
                fn(p, p.grad, self.state[n], self.hp, lr, wd, self.t)
        for (_, decay, group), names in muon.items():
            lr = self.lrs[group] * multiplier
            ps = [P[n] for n in names]
            muon_step(
                ps, [p.grad for p in ps], [self.state[n] for n in names], self.hp, lr,
                self.hp[decay], self.t,
            )  # fmt: skip
        for p in P.values():
            p.grad = None

    def current_lrs(self, multiplier):
        """{group: [K] lr now} of the trained groups."""
        return {g: self.lrs[g] * multiplier for g in {r[1] for r in self.rules.values()}}


@torch.no_grad()
def clip_grad_norms(params, max_norm):
    """torch.nn.utils.clip_grad_norm_ per model: [K] norms, each model clipped to its own
    max_norm (0 = off). Returns the [K] total norms."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads])  # [P, K]
    total = torch.linalg.vector_norm(norms, dim=0)
    coef = (max_norm.to(total.dtype) / (total + 1e-6)).clamp(max=1.0)
    coef = torch.where(max_norm > 0, coef, torch.ones_like(coef))
    for g in grads:
        g.mul_(_col(coef, g))
    return total


# ---------------------------------------------------------------------------- training


@torch.no_grad()
def evaluate_batched(model, batches, precision, device):
    """[K] mean validation loss of each model."""
    total = torch.zeros(model.K, device=device)
    for x, y in batches:
        with autocast_context(precision, device):
            total += model.losses(x, y, grad_checkpoint=False).float()
    return total / len(batches)


def train_batched(model, opt, get_batch, s, device="cpu", val_batches=None, logs=None):
    """Train the K models of a BatchedGPT until the budget of s (a TrainSettings, as in
    gpt2/train.py) runs out. Returns K outcomes in the models' order: the result dict
    train() would return, or the Diverged exception it would raise.

    logs: K functions that print one line to each model's log.
    """
    if not (s.max_steps or s.max_tokens or s.max_seconds):
        raise ValueError("no budget: set max_steps, max_tokens or max_seconds")
    K = model.K
    logs = logs or [lambda *a: None] * K
    rows = list(range(K))  # the model (0..K-1) in each row of the stacked tensors
    out = [None] * K
    losses, val_losses, history = ([[] for _ in range(K)] for _ in range(3))
    step, tokens, elapsed = 0, 0, 0.0
    lrs_now = {}

    def diverged(k, message, loss_value, steps):
        metrics = {
            "steps": steps,
            "tokens": tokens,
            "final_train_loss": loss_value,
            "final_val_loss": val_losses[k][-1][1] if val_losses[k] else None,
            "train_seconds": elapsed,
        }
        logs[k](f"diverged: {message}")
        out[k] = Diverged(message, metrics, losses=losses[k], val_losses=val_losses[k])

    def drop(bad_rows):
        """Compaction: the rows of diverged models leave every stacked tensor."""
        if bad_rows:
            keep = [r for r in range(len(rows)) if r not in bad_rows]
            index = torch.tensor(keep, device=device, dtype=torch.long)
            model.compact(index)
            opt.compact(index)
            rows[:] = [rows[r] for r in keep]

    def record_val(at_step):
        values = evaluate_batched(model, val_batches, s.precision, device).tolist()
        bad = set()
        for r, v in enumerate(values):
            k = rows[r]
            val_losses[k].append([at_step, v])
            if not math.isfinite(v):
                msg = f"non-finite validation loss {v} at step {at_step}"
                diverged(k, msg, losses[k][-1], at_step)
                bad.add(r)
        drop(bad)

    params = opt.params()
    while rows and not budget_spent(step, tokens, elapsed, s):
        t0 = time.perf_counter()
        progress = budget_progress(step, tokens, elapsed, s) or 0.0
        multiplier = lr_multiplier(step, s, progress)
        loss_sum = torch.zeros(model.K, device=device)
        for _ in range(s.grad_accum):
            x, y = get_batch()
            with autocast_context(s.precision, device):
                loss = model.losses(x, y) / s.grad_accum
            loss_sum += loss.detach()
            loss.sum().backward()
        values = loss_sum.tolist()
        tokens += s.tokens_per_step
        bad = set()
        for r, v in enumerate(values):
            losses[rows[r]].append(v)
            if not math.isfinite(v):
                diverged(rows[r], f"non-finite loss {v} at step {step}", v, step + 1)
                bad.add(r)
        if bad:  # before the step: the survivors' gradients are untouched by the dropped
            keep = [r for r in range(len(rows)) if r not in bad]
            grads = {n: p.grad[keep] for n, p in model.params.items() if p.grad is not None}
            drop(bad)
            for n, g in grads.items():
                model.params[n].grad = g
            params = opt.params()
        if rows:
            if s.grad_clip:
                clip_grad_norms(params, opt.hp["grad_clip"])
            lrs_now = opt.current_lrs(multiplier)
            opt.step(multiplier)
        step += 1
        elapsed += time.perf_counter() - t0
        dt = time.perf_counter() - t0
        if s.max_steps:  # the driver's heartbeat shows the batch's budget spent
            report_progress(step, s.max_steps, "steps")
        elif s.max_tokens:
            report_progress(tokens, s.max_tokens, "tokens")
        last = budget_spent(step, tokens, elapsed, s)
        if rows and s.eval_interval and step % s.eval_interval == 0 and val_batches and not last:
            record_val(step)
            params = opt.params()
        if rows and (step == 1 or last or (s.log_interval and step % s.log_interval == 0)):
            tps = s.tokens_per_step / dt  # each model saw these tokens in dt
            mem = peak_memory_mb(device)
            for r, k in enumerate(rows):
                lr_k = {g: float(v[r]) for g, v in lrs_now.items()}
                row = {
                    "step": step,
                    "loss": losses[k][-1],
                    "tokens_per_s": tps,
                    "mfu": model.model.estimate_mfu(tps, s.seq_len),
                    "peak_mem_mb": mem,
                    "batched_models": len(rows),
                    **{f"lr/{g}": v for g, v in lr_k.items()},
                }
                history[k].append(row)
                logs[k](
                    f"step {step:5d} loss {row['loss']:.4f} lr {max(lr_k.values()):.2e} "
                    f"{tps:,.0f} tok/s per model, {len(rows)} models, mem {mem:.0f} MiB"
                )
    if rows and val_batches:
        record_val(step)
    tps_avg = tokens / elapsed if elapsed else 0.0
    for r, k in enumerate(rows):
        out[k] = {
            "status": "ok",
            "metrics": {
                "final_train_loss": losses[k][-1] if losses[k] else float("nan"),
                "final_val_loss": val_losses[k][-1][1] if val_losses[k] else float("nan"),
                "tokens_per_s": tps_avg,
                "mfu": model.model.estimate_mfu(tps_avg, s.seq_len),
                "peak_mem_mb": peak_memory_mb(device),
                "steps": step,
                "tokens": tokens,
                "train_seconds": elapsed,
            },
            "losses": losses[k],
            "val_losses": val_losses[k],
            "lrs": {g: float(v[r]) for g, v in lrs_now.items()},
            "history": history[k],
        }
    return out
