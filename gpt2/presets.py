"""Model sizes and configuration of the gpt2 workload, without torch: planning a matrix
(cell parameters, validation) reads these, and never needs to import torch."""

from dataclasses import dataclass, replace

GPT2_VOCAB = 50257  # tokens of the GPT-2 BPE


def pad_vocab(n, multiple=64):
    """Round a vocabulary up: 50257 -> 50304 makes the head's matmul tile cleanly."""
    return (n + multiple - 1) // multiple * multiple


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence (positions / rotary table)
    vocab_size: int = 50304  # already padded
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    arch: str = "gpt2"  # "gpt2" | "nanochat"
    bias: bool = True  # arch gpt2: biases in Linear and LayerNorm (nanoGPT's bench.py: off)
    grad_checkpoint: bool = False  # recompute each block in backward: less memory, ~30% slower

    @property
    def has_bias(self):
        return self.bias and self.arch == "gpt2"  # nanochat has no biases anywhere


# Size presets. tiny trains on 2 CPU cores in minutes; the others are GPT-2 small/medium.
PRESETS = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "124M": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "350M": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024),
}
ARCHS = ("gpt2", "nanochat")


def config_from_preset(preset, **overrides):
    """GPTConfig for a preset name; keyword overrides (None values ignored) win."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {sorted(PRESETS)}")
    cfg = GPTConfig(**PRESETS[preset])
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
