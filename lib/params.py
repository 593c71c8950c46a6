"""A model's trainable parameters as one flat vector.

Strategies never see an ``nn.Module``: the server model, every client model and
every update are 1-D tensors of length P (FL-Simulator's layout). Averaging is
then one reduction over a [clients x P] stack, and the forward pass is a pure
function of the vector (``torch.func.functional_call``), so a later step can
batch clients with ``torch.func.vmap`` without touching any strategy.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


class FlatModel:
    """Wraps a module; ``fm(w, x)`` runs the module with flat parameters ``w``."""

    def __init__(self, module: nn.Module):
        self.module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.numel = sum(self.numels)
        self.buffers = {n: b.detach().clone() for n, b in module.named_buffers()}

    def flat(self) -> torch.Tensor:
        """A detached copy of the module's current parameters as one vector."""
        return torch.cat([p.detach().reshape(-1) for n, p in self.module.named_parameters()
                          if n in set(self.names)]).clone()

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        if w.shape != (self.numel,):
            raise ValueError(f"expected a flat vector of {self.numel} parameters, got shape {tuple(w.shape)}")
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(w, self.numels), self.shapes)}

    def __call__(self, w: torch.Tensor, x, buffers: dict | None = None) -> torch.Tensor:
        """Forward with parameters ``w``; ``x`` is one input or a tuple of inputs (e.g. embeddings, mask)."""
        state = {**(self.buffers if buffers is None else buffers), **self.unflatten(w)}
        return functional_call(self.module, state, x if isinstance(x, tuple) else (x,))

    def bind(self, w: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        """Leaf tensors that view ``w``, each with a ``.grad`` that views ``g`` (both flat, length P).

        ``loss.backward(inputs=list(leaves.values()))`` then writes the flat gradient straight into
        ``g`` (autograd accumulates in place into an existing ``.grad``), with no concatenation of
        per-tensor gradients; an in-place update of ``w`` is what the next forward pass sees. Zero
        ``g`` before each backward. Used by local training; same numbers as ``autograd.grad`` on ``w``.
        """
        if w.shape != (self.numel,) or g.shape != (self.numel,):
            raise ValueError(f"expected flat vectors of {self.numel} parameters, got {tuple(w.shape)} and {tuple(g.shape)}")
        leaves = {}
        for n, wt, gt, s in zip(self.names, torch.split(w, self.numels), torch.split(g, self.numels), self.shapes):
            leaf = wt.view(s).detach().requires_grad_(True)
            leaf.grad = gt.view(s)
            leaves[n] = leaf
        return leaves

    def load_into_module(self, w: torch.Tensor) -> nn.Module:
        """Copy a flat vector into the wrapped module's parameters (for saving or inspection)."""
        with torch.no_grad():
            for n, t in self.unflatten(w).items():
                self.module.get_parameter(n).copy_(t)
        return self.module

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device) -> "FlatModel":
        """Move the module and the stored buffers to ``device`` (in place; returns self)."""
        self.module.to(device)
        self.buffers = {n: b.to(device) for n, b in self.buffers.items()}
        return self

    def bytes(self, dtype_bytes: int = 4) -> int:
        """Size of one model vector on the wire (float32 by default)."""
        return self.numel * dtype_bytes
