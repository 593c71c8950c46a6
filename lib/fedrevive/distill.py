"""Multi-teacher knowledge distillation of the global model on the synthetic pool (or, for
DD-FedRevive, on real held-out data: the same step, another pool).

    S <- theta_g (the current global model);  Adam(lr 1e-4, weight decay 1e-5), fresh state
    repeat K_KD times:
        x_m = aug(32 pool inputs with targets ~ q_m), for each teacher m      (aug: the synthesizer's)
        L = T^2 sum_m sum_{i in x_m} KL(p_m(x_i) / T || p_S(x_i) / T) / (c * 32)     (T = 1)
        L <- 0 if L is NaN/inf, or > 3x the mean of the kept KD losses (once 10 are kept)   (stabilizer)
        Adam step on S
    D_KD = theta_S - theta_g

As the authors' ``perform_dfkd_with_buffer`` (NVFlare research/fed-revive/codes/utils/dfkd_utils.py):
the loss is ``KLDiv(T, reduction="sum")`` summed over teachers, divided by the stacked batch (the mean over
all c x 32 inputs, each against its own teacher); each teacher's batch goes through ``synthesizer.aug`` once
and that same augmented batch feeds the student and the teacher; the loss passes
``synthesizer._stabilize_loss(loss, kd_loss_window, 1)``: a window of the last 20 *accepted* KD losses, kept
across calls, a loss above 3x its mean (once 10 are kept) is multiplied by 0 (Adam still steps, on the
weight decay alone) and not kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .synthesis import SyntheticPool
from .teachers import Teacher


@dataclass
class KDConfig:
    iterations: int = 10            # K_KD
    batch_per_teacher: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-5
    temperature: float = 1.0
    # KD inputs through the synthesizer's augmentation first (the authors' perform_dfkd_with_buffer): None = as
    # the synthesizer does (SynthesisConfig.augment: the clients' training transform), True / False to force
    augment: bool | None = None
    stabilize: bool = True          # the authors' KD-loss stabilizer (zero a loss > explode x its running mean)
    explode: float = 3.0
    window: int = 20                # accepted KD losses kept (the test acts once 10 are kept)

    def __post_init__(self):
        if self.iterations < 1 or self.batch_per_teacher < 1:
            raise ValueError("KD iterations and batch_per_teacher must be >= 1")
        if not (self.lr > 0 and self.temperature > 0) or self.weight_decay < 0:
            raise ValueError("KD lr and temperature must be > 0, weight_decay >= 0")
        if not self.explode > 0 or self.window < 10:
            raise ValueError("KD explode must be > 0 and window >= 10")


def stabilize_kd_loss(loss: torch.Tensor, window: list, cfg: KDConfig) -> tuple[torch.Tensor, bool]:
    """The authors' ``_stabilize_loss`` for the KD loss: ``(loss, False)``, the value appended to ``window``
    (the oldest dropped beyond ``cfg.window``), or ``(loss * 0, True)`` when the loss is NaN/inf or, with at
    least 10 values kept and their mean > 0, above ``cfg.explode`` x that mean (then nothing is kept)."""
    v = float(loss.detach())
    if not torch.isfinite(loss.detach()):
        return loss.nan_to_num(0.0, 0.0, 0.0) * 0.0, True
    if len(window) >= 10:
        mean = sum(window) / len(window)
        if mean > 0 and v > cfg.explode * mean:
            return loss * 0.0, True
    window.append(v)
    del window[: -cfg.window]
    return loss, False


def distill(fm, x_global: torch.Tensor, teachers: list[Teacher], pool: SyntheticPool, cfg: KDConfig,
            gen: torch.Generator, augment=None, loss_window: list | None = None,
            info: dict | None = None) -> tuple[torch.Tensor, float]:
    """D_KD: the distilled student's change from the global model, and the last KD loss.

    ``augment(x, gen)``: applied once to each teacher's batch of each step (no gradient), the same augmented
    inputs then go to the student and to that teacher (the authors' order). ``loss_window``: the stabilizer's
    kept losses, carried across calls by the caller (None: a fresh window). ``info``, if given, receives
    ``zeroed`` (steps whose loss the stabilizer zeroed) and ``steps``.
    All teachers run at once (``torch.func.vmap`` over their parameter vectors) on all K_KD batches."""
    s = x_global.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([s], lr=cfg.lr, weight_decay=cfg.weight_decay)
    T, loss = cfg.temperature, torch.zeros(())
    W = torch.stack([t.w for t in teachers])                     # [c, P]
    Q = torch.stack([t.q for t in teachers])                     # [c, classes]
    c, n, k = len(teachers), cfg.batch_per_teacher, cfg.iterations
    fm.module.eval()
    # all K_KD batches are drawn up front and the (fixed) teachers label them in one batched call
    x = pool.sample(Q, k * n, gen)                               # [c, k*n, ...] (a tuple for text)
    if augment is not None and not isinstance(x, tuple):         # one augmentation call per teacher batch
        with torch.no_grad():
            x = torch.stack([torch.cat([augment(x[m, i * n:(i + 1) * n], gen) for i in range(k)])
                             for m in range(c)])
    window = [] if loss_window is None else loss_window
    zeroed = 0
    with torch.no_grad():
        p_all = F.softmax(torch.func.vmap(lambda w, xb: fm(w, xb))(W, x) / T, -1)      # [c, k*n, classes]
    for i in range(k):
        sl = slice(i * n, (i + 1) * n)
        xb = tuple(t[:, sl].reshape(c * n, *t.shape[2:]) for t in x) if isinstance(x, tuple) else \
            x[:, sl].reshape(c * n, *x.shape[2:])
        p_t = p_all[:, sl].reshape(c * n, -1)
        log_s = F.log_softmax(fm(s, xb) / T, 1)
        loss = T * T * (p_t * (p_t.clamp_min(1e-12).log() - log_s)).sum(1).mean()   # mean over c x n inputs
        if cfg.stabilize:
            loss, bad = stabilize_kd_loss(loss, window, cfg)
            zeroed += bad
        opt.zero_grad()
        loss.backward()
        opt.step()
    fm.module.train()
    if info is not None:
        info.update(zeroed=zeroed, steps=k)
    return (s.detach() - x_global), float(loss.detach())


def dfkd_step_equivalents(num_teachers: int = 8, kd: KDConfig | None = None, synthesis=None, t_gen: int = 1,
                          synthesize: bool = True) -> float:
    """The server's DFKD work per update, in training steps of batch 32 (a forward pass ~ 1/3 of a step),
    for sizing runs (``lib.budget``): the KD step (K_KD student steps on c x n inputs, the teachers labelling
    c x K_KD x n inputs once) plus, every ``t_gen`` updates, a synthesis call (g_steps x c teacher passes with
    gradients to the inputs, on the synthesis batch)."""
    from .synthesis import SynthesisConfig
    kd = kd or KDConfig()
    synthesis = synthesis or SynthesisConfig()
    c, n = num_teachers, kd.batch_per_teacher
    work = kd.iterations * c * n / 32 + c * kd.iterations * n / 32 / 3
    if synthesize:
        work += synthesis.g_steps * (c + 1) * synthesis.batch_size / 32 / t_gen
    return work
