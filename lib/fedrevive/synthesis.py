"""Meta-learned data-free synthesis (Reptile-style Fast-DFKD) for FedRevive; the synthetic pool.

One synthesis call (every T_gen server versions)::

    y ~ mixture of the teachers' class proportions          (batch of 64 targets)
    z, E ~ N(0, I), trainable; G' = copy of the persistent generator G
    repeat g_steps:
        x^ = G'(z + 0.2 E[y]);  a = augment(x^)   (crop + flip, if the clients trained so)
        L_oh  = sum_m  mean_i w_m(y_i) CE(T_m(a)_i, y_i)                    teacher-weighted CE
        L_bn  = sum_m  share_m sum_layers ||mu(a) - mu_m||_2 + ||var(a) - var_m||_2   (tracked stats)
        L_adv = -mean_i [argmax agree_i] KL(p_T(a)_i || p_S(a)_i)           after the warm-up
        L = 1.0 L_oh + 0.003 L_bn + 0.1 L_adv   (a term that is NaN or > 3x its running mean is zeroed)
        Adam step on G', z, E
    pool <- best x^ of the call (lowest L), with its targets y          (FIFO, capped)
    G <- Reptile: grad(G) = theta_G - theta_G'; Adam step on G

p_T is the teacher ensemble: teacher m's logits weighted by w_m(y_i).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models import trackers
from .teachers import Teacher, teacher_weights


@dataclass
class SynthesisConfig:
    batch_size: int = 64
    g_steps: int = 2
    lr_g: float = 3e-3
    lr_z: float = 1e-3
    w_oh: float = 1.0
    w_bn: float = 0.003
    w_adv: float = 0.1
    cond_scale: float = 0.2
    explode: float = 3.0            # zero a term above explode x its running mean
    pool_size: int = 16000
    augment: bool = True            # crop (pad 4) + flip before the teachers: match how clients trained

    def __post_init__(self):
        for k in ("batch_size", "g_steps", "pool_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("lr_g", "lr_z", "explode"):
            if not getattr(self, k) > 0:
                raise ValueError(f"{k} must be > 0, got {getattr(self, k)}")
        for k in ("w_oh", "w_bn", "w_adv"):
            if getattr(self, k) < 0:
                raise ValueError(f"loss weight {k} must be >= 0, got {getattr(self, k)}")


class SyntheticPool:
    """Synthetic inputs with their target classes; FIFO with a cap. Inputs are tuples of tensors."""

    def __init__(self, capacity: int):
        self.capacity, self.xs, self.y = capacity, None, None
        self._by_class = None

    def __len__(self):
        return 0 if self.y is None else len(self.y)

    def add(self, x, y):
        x = tuple(t.detach() for t in (x if isinstance(x, tuple) else (x,)))
        if self.y is None:
            self.xs, self.y = x, y.clone()
        else:
            self.xs = tuple(torch.cat([a, b])[-self.capacity:] for a, b in zip(self.xs, x))
            self.y = torch.cat([self.y, y])[-self.capacity:]
        self._by_class = None

    def sample(self, q: torch.Tensor, n: int, gen: torch.Generator):
        """n pool inputs whose targets follow the class distribution q (any class if one is absent).

        ``q`` may be a [k x classes] matrix: then k batches of n, stacked along a new first axis."""
        if not len(self):
            raise RuntimeError("the synthetic pool is empty")
        if self._by_class is None:
            y = self.y.cpu()
            self._by_class = {j: (y == j).nonzero().squeeze(1) for j in y.unique().tolist()}
        qq = q.reshape(-1, q.shape[-1])
        want = torch.multinomial(qq.cpu().clamp_min(0) + 1e-12, n, replacement=True, generator=gen).reshape(-1)
        idx = torch.empty(len(want), dtype=torch.long)
        for j in want.unique().tolist():
            slots = (want == j).nonzero().squeeze(1)
            have = self._by_class.get(j)
            if have is None:
                have = torch.arange(len(self.y))
            idx[slots] = have[torch.randint(len(have), (len(slots),), generator=gen)]
        shape = (n,) if q.dim() == 1 else (qq.shape[0], n)
        x = tuple(t[idx].reshape(*shape, *t.shape[1:]) for t in self.xs)
        return x if len(x) > 1 else x[0]


def _kl(p_logits, q_logits):
    """Per-sample KL(softmax(p) || softmax(q))."""
    return (F.softmax(p_logits, 1) * (F.log_softmax(p_logits, 1) - F.log_softmax(q_logits, 1))).sum(1)


def synthesis_losses(fm, x, y, teachers: list[Teacher], weights: torch.Tensor, student_w=None):
    """The three loss terms on a synthetic batch (already augmented). Returns dict of scalars."""
    tracked = trackers(fm.module)
    for _, m in tracked:
        m.capture = True
    fm.module.eval()
    try:
        w_iy = weights[:, y]                                   # [teachers, batch]
        l_oh, l_bn, ens = 0.0, 0.0, 0.0
        for m, t in enumerate(teachers):
            logits = fm(t.w, x, t.buffers)
            l_oh = l_oh + (w_iy[m] * F.cross_entropy(logits, y, reduction="none")).mean()
            ens = ens + w_iy[m].unsqueeze(1) * logits
            if tracked and t.buffers is not None:
                share = w_iy[m].mean()
                for name, mod in tracked:
                    mu, var = mod.batch_stats
                    l_bn = l_bn + share * (torch.linalg.vector_norm(mu - t.buffers[name + ".running_mean"])
                                           + torch.linalg.vector_norm(var - t.buffers[name + ".running_var"]))
        l_adv = torch.zeros(())
        if student_w is not None:
            s_logits = fm(student_w.detach(), x)
            agree = (s_logits.argmax(1) == ens.argmax(1)).float()
            l_adv = -(agree * _kl(ens, s_logits)).mean()
    finally:
        for _, m in tracked:
            m.capture, m.batch_stats = False, None
        fm.module.train()
    return {"oh": l_oh, "bn": l_bn if torch.is_tensor(l_bn) else torch.zeros(()), "adv": l_adv, "ensemble": ens}


class Synthesizer:
    """A persistent generator G, meta-updated (Reptile) by short fast-weight synthesis calls."""

    def __init__(self, fm, generator, num_classes: int, cfg: SynthesisConfig | None = None, seed: int = 0):
        self.fm, self.G, self.num_classes = fm, generator, num_classes
        self.cfg = cfg or SynthesisConfig()
        self.gen = torch.Generator().manual_seed(seed)
        self.meta_opt = torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr_g, betas=(0.5, 0.999))
        self.pool = SyntheticPool(self.cfg.pool_size)
        self.running = {}                                      # running means of the loss terms
        self.calls = 0

    def _robust(self, name, value):
        """Zero a term that is NaN or explodes (> explode x its running mean); else update the mean."""
        v = float(value.detach())
        mean = self.running.get(name)
        if not torch.isfinite(value) or (mean is not None and abs(v) > self.cfg.explode * abs(mean) > 0):
            return torch.zeros(()), True
        self.running[name] = v if mean is None else 0.9 * mean + 0.1 * v
        return value, False

    def step(self, teachers: list[Teacher], student_w=None) -> dict:
        """One synthesis call; adds its best batch to the pool. ``student_w`` turns on L_adv."""
        if not teachers:
            raise ValueError("synthesis needs at least one teacher")
        c = self.cfg
        qs = torch.stack([t.q for t in teachers])
        weights = teacher_weights(qs)
        dev = qs.device
        y = torch.multinomial(qs.mean(0).cpu() + 1e-12, c.batch_size, replacement=True, generator=self.gen).to(dev)
        z = torch.randn(c.batch_size, self.G.nz, generator=self.gen).to(dev).requires_grad_(True)
        E = torch.randn(self.num_classes, self.G.nz, generator=self.gen).to(dev).requires_grad_(True)
        fast = copy.deepcopy(self.G)
        fast.train()
        opt = torch.optim.Adam([{"params": fast.parameters(), "lr": c.lr_g},
                                {"params": [z, E], "lr": c.lr_z}], betas=(0.5, 0.999))
        best, log, first_oh = (float("inf"), None), {}, None
        for _ in range(c.g_steps):
            x = fast(z + c.cond_scale * E[y])
            a = self.G.augment(x, self.gen) if c.augment and not isinstance(x, tuple) else x
            parts = synthesis_losses(self.fm, a, y, teachers, weights, student_w)
            total, zeroed = 0.0, []
            for name, wgt in (("oh", c.w_oh), ("bn", c.w_bn), ("adv", c.w_adv)):
                if wgt == 0 or (name == "adv" and student_w is None):
                    continue
                val, bad = self._robust(name, parts[name])
                zeroed += [name] if bad else []
                total = total + wgt * val
            if float(total.detach() if torch.is_tensor(total) else total) < best[0]:
                best = (float(total.detach() if torch.is_tensor(total) else total), tuple(t.detach() for t in x) if isinstance(x, tuple) else x.detach())
            log = {k: float(parts[k].detach()) for k in ("oh", "bn", "adv")} | {"total": best[0],
                                                                               "zeroed": zeroed}
            first_oh = log["oh"] if first_oh is None else first_oh
            log["oh_first"] = first_oh              # before this call's steps: how good G's start is
            if torch.is_tensor(total) and total.requires_grad:
                opt.zero_grad()
                total.backward()
                opt.step()
        self.pool.add(best[1], y)
        self.meta_opt.zero_grad()                              # Reptile: move G toward G'
        for p, q in zip(self.G.parameters(), fast.parameters()):
            p.grad = (p.detach() - q.detach()).clone()
        self.meta_opt.step()
        for b, fb in zip(self.G.buffers(), fast.buffers()):     # keep the fast copy's BN statistics
            b.copy_(fb)
        self.calls += 1
        return log
