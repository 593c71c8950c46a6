"""A small GPT with rotary position embeddings (RoPE), trained from scratch with next-token (NTP) or
multi-token prediction (MTP).

MTP with ``heads = k`` puts ``k`` linear output heads on one shared trunk; head ``j`` predicts the
token ``j + 1`` positions ahead, and the loss is the mean of the heads' cross-entropies:

.. math::  \\mathcal L_{\\text{MTP}} = \\frac1k \\sum_{j=0}^{k-1} \\frac{1}{|M_j|} \\sum_{p \\in M_j}
           -\\log p_{\\theta, j}(x_{p+1+j} \\mid x_{\\le p}),

where ``M_j`` holds the positions whose target ``x_{p+1+j}`` is a trained token. ``k = 1`` is NTP.
Generation uses head 0 only, so NTP and MTP models are decoded the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import progress


@dataclass
class GPTConfig:
    vocab: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 128
    heads: int = 1          # output heads: 1 = next-token prediction, k > 1 = multi-token prediction

    def __post_init__(self):
        if self.d_model % (2 * self.n_heads):
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of 2 x n_heads ({2 * self.n_heads}) for RoPE")
        if self.heads < 1:
            raise ValueError(f"heads must be >= 1, got {self.heads}")


def rope_tables(length: int, dim: int, base: float = 10000.0):
    """cos/sin tables [length, dim/2] of rotary embeddings (Su et al.): pair (2i, 2i+1) rotates by
    angle p * base^(-2i/dim) at position p."""
    inv = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    ang = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """Rotate the last dimension of ``x`` [..., L, dim] pairwise by the tables:
    (x_{2i}, x_{2i+1}) -> (x_{2i} cos - x_{2i+1} sin, x_{2i} sin + x_{2i+1} cos), written as one complex
    product (x_{2i} + i x_{2i+1}) (cos + i sin): the same numbers, a third less time per training step on
    a CPU than strided slices and a stack."""
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(z * torch.complex(cos.to(x.dtype), sin.to(x.dtype))).flatten(-2)


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.h, self.dh = c.n_heads, c.d_model // c.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.mlp = nn.Sequential(nn.Linear(c.d_model, 4 * c.d_model), nn.GELU(), nn.Linear(4 * c.d_model, c.d_model))

    def forward(self, x, cos, sin):
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.emb = nn.Embedding(c.vocab, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln = nn.LayerNorm(c.d_model)
        self.out = nn.ModuleList(nn.Linear(c.d_model, c.vocab) for _ in range(c.heads))
        cos, sin = rope_tables(c.max_len, c.d_model // c.n_heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def trunk(self, tokens, upto: int | None = None):
        """Residual stream after block ``upto`` (default: all blocks, before the final LayerNorm)."""
        L = tokens.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        x = self.emb(tokens)
        cos, sin = self.cos[:L], self.sin[:L]
        for b in self.blocks[:upto]:
            x = b(x, cos, sin)
        return x

    def forward(self, tokens):
        """Logits of every head: [heads, B, L, vocab]."""
        h = self.ln(self.trunk(tokens))
        return torch.stack([o(h) for o in self.out])


def lm_loss(model: GPT, tokens, target_mask):
    """The MTP loss above (NTP when the model has one head). ``target_mask[b, p]``: token p is trained."""
    logits = model(tokens)
    losses = []
    for j in range(logits.shape[0]):
        lg, tgt, m = logits[j, :, :tokens.shape[1] - 1 - j], tokens[:, 1 + j:], target_mask[:, 1 + j:]
        if m.any():
            losses.append(F.cross_entropy(lg[m], tgt[m]))
    return torch.stack(losses).mean()


def train_lm(model: GPT, tokens, target_mask, steps: int, batch_size: int = 64, lr: float = 3e-3,
             seed: int = 0, warmup: int = 50, desc: str = "train GPT") -> list[float]:
    """AdamW with linear warm-up and cosine decay; batches drawn with replacement from a seeded
    generator. Returns the loss per step."""
    if tokens.shape != target_mask.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and target_mask {tuple(target_mask.shape)} differ in shape")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses = []
    for _ in progress(range(steps), desc=desc):
        idx = torch.randint(0, tokens.shape[0], (batch_size,), generator=g)
        loss = lm_loss(model, tokens[idx], target_mask[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def greedy(model: GPT, prompts, n_new: int, batch_size: int = 512):
    """Greedy continuation of equal-length ``prompts`` [N, P] by ``n_new`` tokens (head 0)."""
    model.eval()
    outs = []
    for i in range(0, prompts.shape[0], batch_size):
        x = prompts[i:i + batch_size]
        for _ in range(n_new):
            nxt = model(x)[0, :, -1].argmax(-1, keepdim=True)
            x = torch.cat([x, nxt], 1)
        outs.append(x[:, prompts.shape[1]:])
    return torch.cat(outs)


@torch.no_grad()
def hidden_states(model: GPT, tokens, layer: int | None = None, batch_size: int = 512):
    """Residual stream after block ``layer`` (default: the last) for every position: [N, L, d]."""
    model.eval()
    return torch.cat([model.trunk(tokens[i:i + batch_size], layer) for i in range(0, tokens.shape[0], batch_size)])
