"""FedRevive: asynchronous FL that revives stale updates with server-side data-free KD.

On each aggregation (B = 1 in the paper), for the buffered updates D_i with staleness tau_i,
following the authors' research code (NVFlare research/fed-revive, server.py and dfkd_utils.py)::

    teachers <- the c most recent uploads (newest first; a client that uploaded twice counts twice, as the
                authors' update_kd_buffer), with class proportions q_m
    if version < warmup:        D~_i = D_i                         (no down-weighting yet: "freeze")
    else, if some beta(tau_i) > 0:
        if (version - warmup) % T_gen == 0:  synthesize (one generator call; the pool grows)   T_gen = 1
        D_KD = distill(global, teachers, pool)  if version >= kd_start, else 0   (AFL-DW until then)
        D~_i = (1 - beta(tau_i)) D_i + beta(tau_i) D_KD
    theta <- theta + eta_s * mean_i D~_i

beta(tau) = 1 - (1/2)(1 + cos(pi tau / (2 s_max))) up to 2 s_max, then 1 (``staleness.fedrevive_beta``; the
linear, exponential, stepwise and constant schedules as the authors' code defines them, ``beta_factor`` their
``adaptive_beta_factor``).

q_m: the client's label histogram, normalized (``class_proportions="true"``, the authors' code: metadata a
client sends; the server never sees data), or the server's estimate from noise probes
(``"estimated"``, the paper's text; then the histogram is read only to log the estimate's L1 error).
DD-FedRevive (:class:`DDFedRevive`) is the authors' upper bound: the same step with the pool replaced by a
real held-out split that no client holds, and no synthesis, at FedRevive's own KD settings (lr, temperature,
warm-up and KD start), so that only the inputs differ; :class:`DDFedReviveAuthors` is the authors' own DD
configuration (their ``simple_kd``), an ablation. :class:`FedRevivePerturb` is the perturbation control: D_KD
replaced by a random direction of the same norm. With ``dfkd=False`` this is AFL-DW.

Server work: each aggregation records how many synthesis steps (g_steps per synthesis call) and KD steps
(K_KD per distillation) it did in ``state["work"]`` (``server_work``) and ``state["work_log"]``; the engine can
charge them to the simulated clock (``run_async(server_step_time=...)``).
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
from .synthesis import SynthesisConfig, Synthesizer, SyntheticPool
from .teachers import Teacher, estimate_class_proportions


@dataclass
class FedRevive(AsyncStrategy):
    model: torch.nn.Module | None = None      # the architecture (the server's own copy of it)
    model_input: tuple | None = None          # image shape (C, H, W) or ("text", seq_len, embed_dim)
    num_classes: int = 10
    server_lr: float = 0.1
    s_max: float = 75.0
    schedule: str = "cosine"                  # cosine, linear, exponential, stepwise, constant (the authors')
    beta_factor: float | None = None          # their adaptive_beta_factor (None: s_max for cosine, else theirs)
    num_teachers: int = 8                     # c
    t_gen: int = 1                            # generator update period (versions); the paper's text says 10
    warmup: int = 50                          # before this version: plain updates (no beta, no DFKD)
    kd_start: int = 100                       # D_KD is mixed in from this version; synthesis only before
    class_proportions: str = "true"           # "true" (client histograms) or "estimated" (noise probes)
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
    kd_data: tuple | None = None              # (x, y) real held-out data: DD-FedRevive's pool (no synthesis)
    seed: int = 0
    name = "fedrevive"

    def __post_init__(self):
        super().__post_init__()
        fedrevive_beta(0, self.s_max, self.schedule, self.beta_factor, 1, self.buffer_size)
        if self.model is None or self.model_input is None:
            raise ValueError("FedRevive needs the model architecture and its input (model=..., model_input=...)")
        if self.class_proportions not in ("estimated", "true"):
            raise ValueError(f"class_proportions must be 'estimated' or 'true', got {self.class_proportions!r}")
        if self.num_teachers < 1 or self.t_gen < 1 or self.probe_uploads < 1:
            raise ValueError("num_teachers, t_gen and probe_uploads must be >= 1")
        if not 0 <= self.warmup <= self.kd_start:
            raise ValueError(f"need 0 <= warmup <= kd_start, got {self.warmup}, {self.kd_start}")

    wants_label_counts = True                 # q ("true"), or the estimator's error ("estimated")

    def init(self, x, num_clients):
        self.fm = FlatModel(self.model)
        gen = make_generator(self.model_input, self.num_classes, self.nz, self.ngf, self.seed, self.mean,
                             self.std, self.embed_std).to(x.device)
        synth = Synthesizer(self.fm, gen, self.num_classes, self.synthesis, seed=self.seed + 1)
        if self.kd_data is not None:                             # DD-FedRevive: real held-out data as the pool
            kx, ky = self.kd_data
            synth.pool = SyntheticPool(len(ky))
            synth.pool.add(kx.to(x.device), torch.as_tensor(ky).to(x.device))
        return {"version": 0, "teachers": [], "q": {}, "q_seen": {}, "q_l1": [], "dfkd_s": [], "synth_log": [],
                "kd_log": [], "synth": synth, "rng": torch.Generator().manual_seed(self.seed + 2),
                "kd_window": [], "work": {"synthesis": 0, "kd": 0}, "work_log": [],
                # the perturbation control's own stream: its directions do not depend on the teachers
                "control_rng": torch.Generator().manual_seed(self.seed + 3)}

    def server_work(self, state) -> dict:
        """The last aggregation's work: synthesis steps and KD steps (for the engine's server clock)."""
        return dict(state.get("work", {}))

    def _kd_augment(self, state):
        on = self.kd.augment if self.kd.augment is not None else self.synthesis.augment
        return state["synth"].G.augment if on else None

    def _control(self, state, d_kd: torch.Tensor) -> torch.Tensor:
        """What is mixed in as D_KD (FedRevive: D_KD itself; the perturbation control overrides this)."""
        return d_kd

    def _class_proportions(self, state, u) -> torch.Tensor:
        true_q = None
        if u.label_counts is not None:
            c = torch.as_tensor(u.label_counts, dtype=torch.float32, device=u.delta.device)
            true_q = c / c.sum()
        if self.class_proportions == "true":
            if true_q is None:
                raise ValueError(f"class_proportions='true' needs the client's label counts; update from client "
                                 f"{u.client_id} has none")
            return true_q
        seen = state["q_seen"].get(u.client_id, 0)
        if seen < self.probe_uploads:                            # running mean over the first uploads
            probes = state["synth"].G.probe(self.probes, state["rng"])
            q = estimate_class_proportions(self.fm, u.x_client, probes)
            old = state["q"].get(u.client_id)
            state["q"][u.client_id] = q if old is None else (old * seen + q) / (seen + 1)
            state["q_seen"][u.client_id] = seen + 1
            if true_q is not None:
                state["q_l1"].append({"version": state["version"], "client": u.client_id,
                                      "l1": float((state["q"][u.client_id] - true_q).abs().sum()),
                                      "max_q": float(state["q"][u.client_id].max()),
                                      "max_true_q": float(true_q.max())})
        return state["q"][u.client_id]

    def aggregate(self, x, state, buffer):
        v = state["version"]
        if self.dfkd:
            for u in buffer:                                     # newest first, c of them, one per upload
                t = Teacher(u.client_id, u.x_client, u.buffers, self._class_proportions(state, u))
                state["teachers"] = ([t] + state["teachers"])[: self.num_teachers]
        k = state.get("concurrency")
        betas = [fedrevive_beta(u.staleness, self.s_max, self.schedule, self.beta_factor, k, self.buffer_size)
                 for u in buffer]
        if self.dfkd and v < self.warmup:                        # the authors' "freeze": plain updates
            betas = [0.0] * len(buffer)
        d_kd = None
        work = {"synthesis": 0, "kd": 0}
        t0 = time.perf_counter()
        if self.dfkd and v >= self.warmup and max(betas) > 0:
            synth = state["synth"]
            if self.kd_data is None and (v - self.warmup) % self.t_gen == 0:
                log = synth.step(state["teachers"], student_w=x)
                work["synthesis"] = synth.cfg.g_steps
                state["synth_log"].append({"version": v, **{k: val for k, val in log.items() if k != "zeroed"},
                                           "zeroed": ",".join(log["zeroed"])})
            if v >= self.kd_start and len(synth.pool):
                info = {}
                d_kd, kd_loss = distill(self.fm, x, state["teachers"], synth.pool, self.kd, state["rng"],
                                        augment=self._kd_augment(state), loss_window=state["kd_window"], info=info)
                work["kd"] = info.get("steps", self.kd.iterations)
                kd_norm = float(d_kd.norm())
                d_kd = self._control(state, d_kd)
                d_norm = float(torch.stack([u.delta for u in buffer]).norm(dim=1).mean())
                state["kd_log"].append({"version": v, "kd_loss": kd_loss, "beta": sum(betas) / len(betas),
                                        "kd_norm": kd_norm, "mixed_norm": float(d_kd.norm()), "update_norm": d_norm,
                                        "kd_zeroed": info.get("zeroed", 0),
                                        "cosine": float(torch.nn.functional.cosine_similarity(
                                            d_kd, buffer[0].delta, dim=0))})
        state["work"] = work
        state["work_log"].append({"version": v, **work})
        if self.dfkd and v >= self.warmup and max(betas) > 0:
            state["dfkd_s"].append(time.perf_counter() - t0)
        mixed = [(1 - b) * u.delta + (b * d_kd if d_kd is not None else 0.0) for b, u in zip(betas, buffer)]
        state["version"] = v + 1
        return x + self.server_lr * torch.stack(mixed).mean(0), state


@dataclass
class FedRevivePerturb(FedRevive):
    """The perturbation control: FedRevive with D_KD replaced by a random direction of the same norm,
    ``||D_KD|| u / ||u||``, u ~ N(0, I) from a generator seeded by ``seed`` alone and drawn once per
    distillation, so its direction is independent of the teachers (and of the pool). D_KD is still computed
    (its norm, and the server's work, are FedRevive's). If this arm matches FedRevive, the distillation acts
    as a perturbation of that size, not through what the teachers know."""
    name = "fedrevive_perturb"

    def _control(self, state, d_kd):
        u = torch.randn(d_kd.shape, generator=state["control_rng"], dtype=d_kd.dtype).to(d_kd.device)
        return u * (d_kd.norm() / u.norm().clamp_min(1e-12))


@dataclass
class DDFedRevive(FedRevive):
    """DD-FedRevive: FedRevive's hybrid update with D_KD distilled on a real held-out split (``kd_data``, held
    by the server, never by a client) instead of synthetic inputs, and no synthesis. Every other setting is
    FedRevive's own (KD lr, temperature, weight decay, stabilizer, warm-up, KD start, beta schedule), so its gap
    to FedRevive measures the inputs alone. The authors' own DD configuration is :class:`DDFedReviveAuthors`."""
    name = "dd_fedrevive"

    def __post_init__(self):
        super().__post_init__()
        if self.kd_data is None or len(self.kd_data) != 2 or len(self.kd_data[1]) == 0:
            raise ValueError("DD-FedRevive needs kd_data=(x, y): a non-empty real held-out split")


# The authors' DD-FedRevive (SampleConfigFiles/*/dd_fedrevive.json, kd_augmentation "simple_kd", and
# perform_kd_with_buffer in codes/utils/kd_utils.py): Adam(3e-4, no weight decay), T = 2, 10 steps of 32 per
# teacher, no stabilizer, from the first update (no freeze / warm-up), and a constant beta 0.5 (their
# simple_kd_settings "beta": 0.5) for every update, fresh ones included. Their server lr is twice FedRevive's
# (cifar10 0.2 vs 0.1, femnist 0.1 vs 0.05): pass server_lr accordingly.
def _authors_dd_kd() -> KDConfig:
    return KDConfig(lr=3e-4, temperature=2.0, weight_decay=0.0, stabilize=False)


DD_AUTHORS_SETTINGS = dict(warmup=0, kd_start=0, schedule="constant", beta_factor=0.5, kd=_authors_dd_kd())


@dataclass
class DDFedReviveAuthors(DDFedRevive):
    """The authors' own DD-FedRevive configuration (an ablation): see ``DD_AUTHORS_SETTINGS``. Their KD step
    differs from their DFKD one in its lr (3e-4 vs 1e-4), temperature (2 vs 1), start (version 0 vs K) and
    beta (constant 0.5 vs cosine), so beside FedRevive it mixes input quality with these settings."""
    warmup: int = 0
    kd_start: int = 0
    schedule: str = "constant"
    beta_factor: float | None = 0.5
    kd: KDConfig = field(default_factory=_authors_dd_kd)
    name = "dd_fedrevive_authors"
