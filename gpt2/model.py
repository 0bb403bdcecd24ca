"""GPT-2 and a nanochat-style variant, in one file.

arch "gpt2": learned positions, GELU, LayerNorm, tied embedding/unembedding (Radford et
al. 2019, following nanoGPT), with or without biases. arch "nanochat": rotary positions, QK norm,
ReLU^2 MLP, parameter-free RMSNorm, untied head, no biases (following nanochat).
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from gpt2.presets import ARCHS

PEAK_FLOPS = 989e12  # H100/H200 SXM bf16 dense: the MFU denominator


class RMSNorm(nn.Module):
    """Parameter-free RMSNorm (nanochat): the gain would only fight Muon's update scale."""

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),))


def make_norm(config):
    return nn.LayerNorm(config.n_embd, bias=config.has_bias) if config.arch == "gpt2" else RMSNorm()


class Rotary(nn.Module):
    """Rotary position embedding tables, (1, 1, T, head_dim/2), kept in fp32."""

    def __init__(self, head_dim, max_len, base=10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        # not persistent: derived from the config, so checkpoints stay small and exact
        self.register_buffer("cos", freqs.cos()[None, None], persistent=False)
        self.register_buffer("sin", freqs.sin()[None, None], persistent=False)

    def forward(self, x):
        # x: (B, H, T, D); rotate pairs (i, i + D/2) by a position-dependent angle
        T, d = x.size(-2), x.size(-1) // 2
        cos, sin = self.cos[:, :, :T], self.sin[:, :, :T]
        x1, x2 = x[..., :d], x[..., d:]
        y = torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)
        return y.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.has_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.has_bias)
        self.c_proj.RESIDUAL_PROJ = True
        self.rotary = None
        if config.arch == "nanochat":
            self.rotary = Rotary(config.n_embd // config.n_head, config.block_size)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rotary is not None:
            # QK norm keeps attention logits bounded whatever the learning rate
            q, k = F.rms_norm(self.rotary(q), (q.size(-1),)), F.rms_norm(
                self.rotary(k), (k.size(-1),)
            )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.has_bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.has_bias)
        self.c_proj.RESIDUAL_PROJ = True
        self.relu2 = config.arch == "nanochat"

    def forward(self, x):
        x = self.c_fc(x)
        x = F.relu(x).square() if self.relu2 else F.gelu(x)
        return self.c_proj(x)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1, self.attn = make_norm(config), CausalSelfAttention(config)
        self.ln_2, self.mlp = make_norm(config), MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        if config.arch not in ARCHS:
            raise ValueError(f"unknown arch {config.arch!r}; known: {ARCHS}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=make_norm(config),
            )
        )
        if config.arch == "gpt2":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.arch == "gpt2":
            self.lm_head.weight = self.transformer.wte.weight  # weight tying, as GPT-2
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """(Re-)initialise every parameter in place from torch's global RNG: seeding then
        calling this gives the same weights as building a new model, so a worker can reuse
        one model (and its compiled graph) for many cells."""
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "RESIDUAL_PROJ", False):
                # scaled init of the residual projections, per the GPT-2 paper: keeps the
                # residual stream's variance independent of depth
                std = 0.02 / math.sqrt(2 * self.config.n_layer)
            if module is self.lm_head and self.config.arch == "nanochat":
                # small untied head: logits start near zero, so the loss starts at ln(V)
                std = 0.001
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} > block_size {self.config.block_size}")
        x = self.transformer.wte(idx)
        if self.config.arch == "gpt2":
            x = x + self.transformer.wpe(torch.arange(T, device=idx.device))
        else:
            x = F.rms_norm(x, (x.size(-1),))  # nanochat normalises the embedding
        for block in self.transformer.h:
            if self.config.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            # fp32 cross-entropy: under autocast the logits are bf16/fp16
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def param_groups(self):
        """Parameters by role, each parameter in exactly one group:

        matrix       2-D weights inside the blocks (what Muon orthogonalises)
        embedding    token embedding wte (+ learned positions wpe for gpt2)
        unembedding  the lm_head; for the tied gpt2 head wte IS lm_head, and it is listed
                     once, under "embedding" (so unembedding is empty for arch gpt2)
        vector       1-D biases and LayerNorm gains (gpt2 only; nanochat has none)
        """
        groups = {"matrix": [], "embedding": [], "unembedding": [], "vector": []}
        seen = set()
        for name, p in self.named_parameters():  # named_parameters lists a tied weight once
            if id(p) in seen:
                continue
            seen.add(id(p))
            if name.startswith("transformer.wte") or name.startswith("transformer.wpe"):
                groups["embedding"].append(p)
            elif name.startswith("lm_head"):
                groups["unembedding"].append(p)
            elif p.dim() >= 2:
                groups["matrix"].append(p)
            else:
                groups["vector"].append(p)
        return groups

    def num_params(self, non_embedding=True):
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.config.arch == "gpt2":
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len=None):
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L H Q T,
        with T the trained sequence length (default block_size)."""
        cfg = self.config
        N = self.num_params()
        L, H, Q = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
        T = seq_len or cfg.block_size
        return 6 * N + 12 * L * H * Q * T

    def estimate_mfu(self, tokens_per_s, seq_len=None, peak_flops=PEAK_FLOPS):
        """Model FLOPs utilisation: achieved FLOP/s over the device's peak (default: H100/H200
        bf16 dense, whatever the precision)."""
        return self.flops_per_token(seq_len) * tokens_per_s / peak_flops
