"""Batched clients: the local training of several clients as one vectorized computation.

The same local step as :func:`lib.client.local_train` (read that first: it is the reference), for C
clients at once, with their parameter vectors stacked into a [C x P] matrix::

    for each step t (all C clients take it together):
        X[c], Y[c] = client c's t-th mini-batch (its own data, its own shuffling), padded to B rows
        M[c]       = 1 for real rows, 0 for padding (a client's last batch of a pass may be short)
        L[c]       = sum_i M[c,i] CE(f(W[c], X[c,i]), Y[c,i]) / sum_i M[c,i]      (torch.func.vmap)
        G          = d(sum_c L[c]) / dW                  (row c depends on W[c] only: C gradients at once)
        G += wd W;  G += mu (W - x);  G += correction    (the hooks, row by row)
        W  = SGD-with-momentum or Adam step on G, row-wise

Each client draws its batches from its own generator with its own seed, exactly as the sequential
path does, so no client sees another's data and none skips a sample. Clients are grouped by their
number of steps (a group trains together); a group of one runs the sequential path. Results agree
with the sequential path within float tolerance (tests/test_batched.py); strategies are unchanged.

Not batched (the sequential path runs instead): models with buffers (BatchNorm, statistics trackers:
their in-place running statistics cannot be updated per client inside vmap), strategies that define
their own ``local_update`` and hooks that carry per-client ``state``.
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from .client import ClientHooks, ClientResult, LocalConfig, batches, local_train, optimizer_step
from .data import ArrayDataset
from .params import FlatModel


def can_batch(fm: FlatModel, strategy=None) -> bool:
    """Whether clients of this model (and strategy) can train batched: no buffers, the default local update
    (a synchronous strategy that does not override ``Strategy.local_update``, or an asynchronous one that
    defines none)."""
    if fm.buffers:
        return False
    if strategy is not None:
        from .strategies.base import Strategy
        own = getattr(type(strategy), "local_update", None)
        if own is not None and own is not Strategy.local_update:
            return False
    return True


def use_batched(requested: bool | None, possible: bool, device: torch.device, name: str) -> bool:
    """Whether to batch clients: ``requested`` if given (an error when it is not ``possible``), else
    ``WORKBOOK_BATCHED=0/1``, else on for a GPU and off for a CPU (where it is no faster: ``make bench``)."""
    import os
    if requested is None:
        env = os.environ.get("WORKBOOK_BATCHED")
        return ((env == "1") if env in ("0", "1") else device.type == "cuda") and possible
    if requested and not possible:
        raise ValueError(f"{name}: batched clients need a model without buffers and the default local update; "
                         f"pass batched=False")
    return bool(requested)


def local_train_batched(fm: FlatModel, x: torch.Tensor, datasets: list[ArrayDataset], local: LocalConfig,
                        hooks: list[ClientHooks] | None = None, seeds: list[int] | None = None,
                        client_ids: list[int] | None = None) -> list[ClientResult]:
    """Train every client in ``datasets`` from ``x``; the same results as calling
    :func:`lib.client.local_train` for each (within float tolerance), in the same order."""
    C = len(datasets)
    hooks = hooks or [ClientHooks() for _ in range(C)]
    seeds = seeds if seeds is not None else [0] * C
    client_ids = client_ids if client_ids is not None else list(range(C))
    if not (len(hooks) == len(seeds) == len(client_ids) == C):
        raise ValueError(f"need one hooks, seed and client id per dataset ({C}); got {len(hooks)}, {len(seeds)}, "
                         f"{len(client_ids)}")
    if fm.buffers:
        raise ValueError("batched clients need a model without buffers (BatchNorm or trackers): use local_train")
    for h, cid, d in zip(hooks, client_ids, datasets):
        if h.state:
            raise ValueError(f"client {cid}: hooks carry per-client state; batched training does not use it")
        if h.lr_scale is not None:
            raise ValueError(f"client {cid}: hooks carry per-coordinate step sizes (lr_scale); batched training "
                             f"does not use them (run with batched=False)")
        if len(d) == 0:
            raise ValueError(f"client {cid} has no data")
    steps = [h.num_steps or local.num_steps(len(d)) for h, d in zip(hooks, datasets)]
    groups = defaultdict(list)
    for i, s in enumerate(steps):
        groups[s].append(i)
    out: list[ClientResult | None] = [None] * C
    for s, idx in groups.items():
        if len(idx) == 1:
            i = idx[0]
            out[i] = local_train(fm, x, datasets[i], local, hooks[i], seed=seeds[i], client_id=client_ids[i])
            continue
        for i, r in zip(idx, _train_group(fm, x, [datasets[i] for i in idx], local, [hooks[i] for i in idx],
                                          [seeds[i] for i in idx], [client_ids[i] for i in idx], s)):
            out[i] = r
    return out


def _train_group(fm, x, datasets, local, hooks, seeds, client_ids, steps):
    C, B = len(datasets), local.batch_size
    dev = x.device
    fm.module.train()
    W = x.detach().unsqueeze(0).repeat(C, 1)
    m = torch.zeros_like(W)
    v = torch.zeros_like(W) if local.optimizer == "adam" else None
    mu = torch.tensor([h.prox_mu for h in hooks], dtype=x.dtype, device=dev).unsqueeze(1)
    use_mu = any(h.prox_mu for h in hooks)                      # decided on the host, once
    corr = None
    if any(h.correction is not None for h in hooks):
        corr = torch.stack([h.correction if h.correction is not None else torch.zeros_like(x) for h in hooks])
    gens = [batches(len(d), B, steps, torch.Generator().manual_seed(sd)) for d, sd in zip(datasets, seeds)]
    total = torch.zeros(C, dtype=torch.float64, device=dev)        # on the device: no host sync per step

    def loss_one(w, xb, yb, mb):
        ce = F.cross_entropy(fm(w, xb), yb, reduction="none")
        return (ce * mb).sum() / mb.sum()

    per_client = torch.func.vmap(loss_one)
    for t in range(1, steps + 1):
        xs, ys, ms = [], [], []
        for d, g in zip(datasets, gens):
            idx = next(g)
            k = len(idx)
            xb, yb = d.x[idx], d.y[idx]
            if k < B:                                           # pad a short batch; the mask drops the padding
                xb = torch.cat([xb, xb[:1].expand(B - k, *xb.shape[1:])])
                yb = torch.cat([yb, yb[:1].expand(B - k)])
            xs.append(xb)
            ys.append(yb)
            ms.append(torch.cat([torch.ones(k, device=dev), torch.zeros(B - k, device=dev)]))
        Wg = W.requires_grad_(True)
        losses = per_client(Wg, torch.stack(xs), torch.stack(ys), torch.stack(ms).to(x.dtype))
        (G,) = torch.autograd.grad(losses.sum(), Wg)
        W = W.detach()
        total += losses.detach().double()
        if local.weight_decay:
            G = G + local.weight_decay * W
        if use_mu:
            G = G + mu * (W - x)
        if corr is not None:
            G = G + corr
        W, m = optimizer_step(W, G, m, v, t, local)             # the same step as local_train, row-wise
    total = total.cpu()
    return [ClientResult(cid, W[c] - x, len(d), steps, float(total[c]) / steps, local.lr, local.momentum, None)
            for c, (cid, d) in enumerate(zip(client_ids, datasets))]
