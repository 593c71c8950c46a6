"""Low-rank adapters on a frozen pre-trained model's linear layers, one parameterization per method.

A frozen ``nn.Linear`` with weight W (d_out x d_in) becomes ``y = x W^T + b + x dW^T`` with
(a 1x1 convolution is the same linear map applied at every pixel: W is its [d_out, d_in] kernel, and dW is
applied as a 1x1 convolution; EfficientNet's expansion and projection convolutions are adapted this way)

=========== ============================================ ================================ ==================
method      dW                                           trained (communicated)           per layer
=========== ============================================ ================================ ==================
lora        (alpha / r) B A,  A ~ N(0, 1/d_in), B = 0    A, B                             r (d_in + d_out)
ffa         (alpha / r) B A,  A frozen                   B                                r d_out
lora_xs     B R A,  B, A frozen orthonormal, R = 0       the r x r core R                 r^2
ravan       sum_i s_i B_i H_i A_i  (h heads), B_i, A_i   H_i (r x r), s_i                 h r^2 (+ h scalings)
            frozen, mutually orthonormal; H_i = 0,
            s_i = 1
=========== ============================================ ================================ ==================

(FedIT is LoRA + FedAvg; FFA-LoRA freezes A; LoRA-XS / Fed-SB train an r x r core between frozen bases;
Ravan trains h cores and their scalings.) Frozen weights are buffers or parameters with
``requires_grad=False``: :class:`lib.params.FlatModel` leaves them out, so the flat vector the
strategies aggregate, and the bytes counted as communication, are the adapters' trained parameters.

Ravan's upload is ``s_i H_i`` (:func:`fold_scalings`): folded into the core with s_i reset to 1, so the
server's average of cores is the exact average of the heads' updates, and its communicated count is h r^2.
"""
from __future__ import annotations

import math

import torch
from torch import nn

METHODS = ("lora", "ffa", "lora_xs", "ravan")


def _orthonormal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """A rows x cols matrix with orthonormal columns (rows >= cols), seeded."""
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=gen))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def is_pointwise_conv(m: nn.Module) -> bool:
    """A 1x1 convolution that is a linear map of channels at every pixel (stride 1, no padding, one group)."""
    return (isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) and tuple(m.stride) == (1, 1)
            and m.groups == 1 and tuple(m.dilation) == (1, 1)
            and (m.padding in ("valid", "same") or tuple(m.padding) == (0, 0)))


def adaptable(m: nn.Module) -> bool:
    """What :func:`inject` can adapt: ``nn.Linear`` and pointwise (1x1) ``nn.Conv2d``."""
    return isinstance(m, nn.Linear) or is_pointwise_conv(m)


def matrix_shape(m: nn.Module) -> tuple[int, int]:
    """(d_out, d_in) of the weight matrix an adapter updates."""
    if not adaptable(m):
        raise ValueError(f"{type(m).__name__} is not adaptable: expected nn.Linear or a 1x1, stride-1, ungrouped "
                         f"nn.Conv2d without padding")
    return tuple(m.weight.shape[:2])


class AdapterLinear(nn.Module):
    """A frozen linear layer (or pointwise convolution) plus a low-rank update dW in one of :data:`METHODS`."""

    def __init__(self, base: nn.Module, method: str, rank: int, heads: int = 1, alpha: float | None = None,
                 seed: int = 0):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown adapter method {method!r}; expected one of {', '.join(METHODS)}")
        d_out, d_in = matrix_shape(base)
        self.conv = isinstance(base, nn.Conv2d)
        if rank < 1 or heads < 1:
            raise ValueError(f"rank and heads must be >= 1, got rank {rank}, heads {heads}")
        if method in ("lora_xs", "ravan") and rank * heads > min(d_in, d_out):
            raise ValueError(f"{method}: heads x rank = {heads * rank} exceeds min(d_in, d_out) = {min(d_in, d_out)}")
        if method != "ravan" and heads != 1:
            raise ValueError(f"{method} has one head; heads={heads} is for ravan")
        self.method, self.rank, self.heads = method, rank, heads
        self.scale = (alpha if alpha is not None else rank) / rank        # alpha / r (1 unless alpha is given)
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(seed)
        if method in ("lora", "ffa"):
            a = torch.randn(rank, d_in, generator=gen) / math.sqrt(d_in)
            self.lora_A = nn.Parameter(a, requires_grad=(method == "lora"))
            self.lora_B = nn.Parameter(torch.zeros(d_out, rank))
        else:                                                               # frozen orthonormal bases
            B = _orthonormal(d_out, rank * heads, gen).reshape(d_out, heads, rank).permute(1, 0, 2)   # [h, d_out, r]
            A = _orthonormal(d_in, rank * heads, gen).reshape(d_in, heads, rank).permute(1, 2, 0)     # [h, r, d_in]
            self.register_buffer("basis_B", B.contiguous())
            self.register_buffer("basis_A", A.contiguous())
            self.core = nn.Parameter(torch.zeros(heads, rank, rank))
            if method == "ravan":
                self.scalings = nn.Parameter(torch.ones(heads))

    def delta_weight(self) -> torch.Tensor:
        if self.method in ("lora", "ffa"):
            return self.scale * self.lora_B @ self.lora_A
        core = self.core * self.scalings.view(-1, 1, 1) if self.method == "ravan" else self.core
        return torch.einsum("hor,hrs,hsi->oi", self.basis_B, core, self.basis_A)

    def forward(self, x):
        if self.conv:
            return self.base(x) + nn.functional.conv2d(x, self.delta_weight()[:, :, None, None])
        return self.base(x) + x @ self.delta_weight().T

    def trained_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def communicated_count(layer: AdapterLinear) -> int:
    """Parameters a client uploads for this layer: the trained ones, except Ravan's scalings (folded)."""
    return layer.trained_count() - (layer.heads if layer.method == "ravan" else 0)


def rank_for_budget(method: str, budget: int, d_in: int, d_out: int, heads: int = 1) -> int:
    """The largest rank whose communicated parameters per layer stay within ``budget``."""
    per = {"lora": lambda r: r * (d_in + d_out), "ffa": lambda r: r * d_out,
           "lora_xs": lambda r: r * r, "ravan": lambda r: heads * r * r}
    if method not in per:
        raise ValueError(f"unknown adapter method {method!r}")
    r = 0
    while per[method](r + 1) <= budget:
        r += 1
    if r < 1:
        raise ValueError(f"{method}: a budget of {budget} parameters per layer is below one rank")
    return r


def budget_rank(method: str, lora_rank: int, heads: int = 1):
    """``rank(d_out, d_in)`` for :func:`inject`: every adapted matrix communicates what LoRA at rank
    ``lora_rank`` communicates on it, ``lora_rank * (d_in + d_out)`` (equal budgets per matrix, whatever its
    shape); a rank whose heads would exceed ``min(d_in, d_out)`` raises (choose larger matrices)."""
    def rank(d_out: int, d_in: int) -> int:
        return rank_for_budget(method, lora_rank * (d_in + d_out), d_in, d_out, heads)
    return rank


def inject(model: nn.Module, targets, method: str, rank, heads: int = 1, alpha: float | None = None,
           seed: int = 0) -> list[str]:
    """Freeze every parameter of ``model``, then replace the ``nn.Linear`` (and pointwise ``nn.Conv2d``)
    modules whose names match ``targets`` (a list of name suffixes, or a predicate on the name) by
    :class:`AdapterLinear`. ``rank``: an int, or ``rank(d_out, d_in)`` per matrix (:func:`budget_rank`).
    Returns the replaced names; raises if none matched."""
    for p in model.parameters():
        p.requires_grad_(False)
    match = targets if callable(targets) else (lambda n: any(n == t or n.endswith("." + t) for t in targets))
    names = [n for n, m in model.named_modules() if adaptable(m) and match(n)]
    if not names:
        raise ValueError(f"no nn.Linear or 1x1 nn.Conv2d in the model matches {targets!r}")
    for i, name in enumerate(names):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        r = rank(*matrix_shape(base)) if callable(rank) else rank
        setattr(parent, child, AdapterLinear(base, method, r, heads, alpha, seed=seed + i))
    return names


def adapters(model: nn.Module) -> list[tuple[str, AdapterLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLinear)]


@torch.no_grad()
def fold_scalings(model: nn.Module) -> None:
    """Ravan's upload: H_i <- s_i H_i and s_i <- 1 in every Ravan layer (dW is unchanged)."""
    for _, m in adapters(model):
        if m.method == "ravan":
            m.core.mul_(m.scalings.view(-1, 1, 1))
            m.scalings.fill_(1.0)


def fold_flat(fm, w: torch.Tensor) -> torch.Tensor:
    """:func:`fold_scalings` on a flat trained-parameter vector of ``fm`` (a :class:`lib.params.FlatModel`)."""
    parts = fm.unflatten(w.clone())
    for name, m in adapters(fm.module):
        if m.method == "ravan":
            core, s = parts[name + ".core"], parts[name + ".scalings"]
            core.mul_(s.view(-1, 1, 1))
            s.fill_(1.0)
    return torch.cat([parts[n].reshape(-1) for n in fm.names])


def blocks(fm) -> list[tuple[str, slice]]:
    """Slices of ``fm``'s flat vector, one per trained adapter tensor (FedRPCA decomposes each separately)."""
    out, start = [], 0
    for n, k in zip(fm.names, fm.numels):
        out.append((n, slice(start, start + k)))
        start += k
    return out


def ravan_slices(fm) -> list[tuple[slice, slice, int]]:
    """(cores, scalings, heads) of every Ravan layer: slices of ``fm``'s flat trained vector (the cores as
    ``heads`` consecutive r x r blocks)."""
    pos = dict(blocks(fm))
    out = []
    for name, m in adapters(fm.module):
        if m.method == "ravan" and name + ".core" in pos and name + ".scalings" in pos:
            out.append((pos[name + ".core"], pos[name + ".scalings"], m.heads))
    return out
