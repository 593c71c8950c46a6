"""FedRevive: asynchronous FL that revives stale updates with server-side data-free KD.

On each aggregation (B = 1 in the paper), for the buffered updates D_i with staleness tau_i::

    teachers <- the c most recent uploaded client models (newest first)
    if version >= warmup and (version - warmup) % T_gen == 0:  synthesize (generator step; pool grows)
    if version >= kd_start:                                    D_KD = distill(global, teachers, pool)
    D~_i  = (1 - beta(tau_i)) D_i + beta(tau_i) D_KD           (D_KD = 0 before kd_start: AFL-DW)
    theta <- theta + eta_s * mean_i D~_i

beta(tau) = 1 - (1/2)(1 + cos(pi tau / (2 s_max))) up to 2 s_max, then 1 (``staleness.fedrevive_beta``).
The server sees only what the engine's ``Update`` carries: models, their tracked statistics and
counts. With ``dfkd=False`` this is exactly AFL-DW.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..asyncfl.engine import AsyncStrategy
from ..asyncfl.staleness import fedrevive_beta
from ..params import FlatModel
from .distill import KDConfig, distill
from .generator import make_generator
from .synthesis import SynthesisConfig, Synthesizer
from .teachers import Teacher, estimate_class_proportions


@dataclass
class FedRevive(AsyncStrategy):
    model: torch.nn.Module | None = None      # the architecture (the server's own copy of it)
    model_input: tuple | None = None          # image shape (C, H, W) or ("text", seq_len, embed_dim)
    num_classes: int = 10
    server_lr: float = 0.1
    s_max: float = 75.0
    schedule: str = "cosine"
    num_teachers: int = 8                     # c
    t_gen: int = 10                           # generator update period (versions)
    warmup: int = 50                          # no DFKD before this version; synthesis only until kd_start
    kd_start: int = 100
    class_proportions: str = "estimated"      # "estimated" (noise probes) or "true" (client histograms)
    probes: int = 256
    probe_uploads: int = 2                    # estimate q from a client's first uploads, then freeze
    nz: int = 256
    ngf: int = 128
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    embed_std: float = 1.0
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    dfkd: bool = True
    seed: int = 0
    name = "fedrevive"

    def __post_init__(self):
        super().__post_init__()
        fedrevive_beta(0, self.s_max, self.schedule)
        if self.model is None or self.model_input is None:
            raise ValueError("FedRevive needs the model architecture and its input (model=..., model_input=...)")
        if self.class_proportions not in ("estimated", "true"):
            raise ValueError(f"class_proportions must be 'estimated' or 'true', got {self.class_proportions!r}")
        if self.num_teachers < 1 or self.t_gen < 1 or self.probe_uploads < 1:
            raise ValueError("num_teachers, t_gen and probe_uploads must be >= 1")
        if not 0 <= self.warmup <= self.kd_start:
            raise ValueError(f"need 0 <= warmup <= kd_start, got {self.warmup}, {self.kd_start}")

    @property
    def wants_label_counts(self):
        return self.class_proportions == "true"

    def init(self, x, num_clients):
        self.fm = FlatModel(self.model)
        gen = make_generator(self.model_input, self.num_classes, self.nz, self.ngf, self.seed, self.mean,
                             self.std, self.embed_std).to(x.device)
        return {"version": 0, "teachers": [], "q": {}, "q_seen": {}, "dfkd_s": [], "synth_log": [], "kd_log": [],
                "synth": Synthesizer(self.fm, gen, self.num_classes, self.synthesis, seed=self.seed + 1),
                "rng": torch.Generator().manual_seed(self.seed + 2)}

    def _class_proportions(self, state, u) -> torch.Tensor:
        if self.class_proportions == "true":
            c = torch.as_tensor(u.label_counts, dtype=torch.float32, device=u.delta.device)
            return c / c.sum()
        seen = state["q_seen"].get(u.client_id, 0)
        if seen < self.probe_uploads:                            # running mean over the first uploads
            probes = state["synth"].G.probe(self.probes, state["rng"])
            q = estimate_class_proportions(self.fm, u.x_client, probes)
            old = state["q"].get(u.client_id)
            state["q"][u.client_id] = q if old is None else (old * seen + q) / (seen + 1)
            state["q_seen"][u.client_id] = seen + 1
        return state["q"][u.client_id]

    def aggregate(self, x, state, buffer):
        v = state["version"]
        if self.dfkd:
            for u in buffer:                                     # newest first, c of them
                t = Teacher(u.client_id, u.x_client, u.buffers, self._class_proportions(state, u))
                state["teachers"] = ([t] + [s for s in state["teachers"] if s.client_id != u.client_id])[
                    : self.num_teachers]
        betas = [fedrevive_beta(u.staleness, self.s_max, self.schedule) for u in buffer]
        d_kd = None
        t0 = time.perf_counter()
        if self.dfkd and v >= self.warmup:
            synth = state["synth"]
            if (v - self.warmup) % self.t_gen == 0:
                log = synth.step(state["teachers"], student_w=x if v >= self.kd_start else None)
                state["synth_log"].append({"version": v, **{k: val for k, val in log.items() if k != "zeroed"},
                                           "zeroed": ",".join(log["zeroed"])})
            if v >= self.kd_start and len(synth.pool) and max(betas) > 0:
                d_kd, kd_loss = distill(self.fm, x, state["teachers"], synth.pool, self.kd, state["rng"])
                d_norm = float(torch.stack([u.delta for u in buffer]).norm(dim=1).mean())
                state["kd_log"].append({"version": v, "kd_loss": kd_loss, "beta": sum(betas) / len(betas),
                                        "kd_norm": float(d_kd.norm()), "update_norm": d_norm,
                                        "cosine": float(torch.nn.functional.cosine_similarity(
                                            d_kd, buffer[0].delta, dim=0))})
        if self.dfkd and v >= self.warmup:
            state["dfkd_s"].append(time.perf_counter() - t0)
        mixed = [(1 - b) * u.delta + (b * d_kd if d_kd is not None else 0.0) for b, u in zip(betas, buffer)]
        state["version"] = v + 1
        return x + self.server_lr * torch.stack(mixed).mean(0), state
