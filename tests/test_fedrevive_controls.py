"""Issue 38: FedRevive's controls (perturbation, DD at matched settings), the server's time on the simulated
clock, and the authors' details (beta schedules, teachers per upload, KD augmentation, KD-loss stabilizer),
each written from the authors' definitions (NVFlare research/fed-revive/codes: utils/dfkd_utils.py, server.py,
utils/kd_utils.py)."""
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lib import fl
from lib.asyncfl import AsyncStrategy, DelayModel, Update, get_async_strategy, run_async
from lib.asyncfl.staleness import fedrevive_beta
from lib.client import LocalConfig
from lib.fedrevive import (DD_AUTHORS_SETTINGS, KDConfig, SynthesisConfig, SyntheticPool, Teacher, calibrate,
                           distill, stabilize_kd_loss)
from lib.models import build_model
from lib.params import FlatModel
from lib.partition import iid

from test_fedrevive import SHAPE, images, net, revive, run, trained_teacher  # noqa: F401  (fixture)

torch.set_num_threads(1)


# ---------------------------------------------------------------- the authors' beta schedules, by hand
def test_exponential_beta_is_the_authors_at_staleness_75():
    # _exponential_decay: 1 - exp(-lambda tau), lambda = adaptive_beta_factor = 0.005 -> 1 - e^-0.375
    assert fedrevive_beta(75, kind="exponential") == pytest.approx(0.3127107, abs=1e-7)
    assert fedrevive_beta(75, kind="exponential") != pytest.approx(0.632, abs=1e-3)   # ours before: 1 - e^-1
    assert fedrevive_beta(0, kind="exponential") == 0.0
    assert fedrevive_beta(200, kind="exponential") == pytest.approx(1 - math.exp(-1.0))
    assert fedrevive_beta(10, kind="exponential", factor=0.1) == pytest.approx(1 - math.exp(-1.0))


def test_linear_beta_is_the_authors():
    # _linear_decay: min(1, gamma tau), gamma = 0.005
    assert fedrevive_beta(0, kind="linear") == 0.0
    assert fedrevive_beta(40, kind="linear") == pytest.approx(0.2)
    assert fedrevive_beta(100, kind="linear") == pytest.approx(0.5)
    assert fedrevive_beta(200, kind="linear") == pytest.approx(1.0)
    assert fedrevive_beta(250, kind="linear") == 1.0                       # clipped (ours reached 1 at 2 s_max)
    assert fedrevive_beta(3, kind="linear", factor=0.25) == pytest.approx(0.75)


def test_stepwise_beta_is_the_authors():
    # _stepwise_decay: b = factor * nb_of_active_jobs / buffer_size = 1.5 * 100 / 1 = 150;
    # thresholds 37.5, 75, 112.5, 150 -> 0, 0.25, 0.5, 0.75, 1
    points = {0: 0.0, 37: 0.0, 38: 0.25, 74: 0.25, 75: 0.5, 112: 0.5, 113: 0.75, 149: 0.75, 150: 1.0, 900: 1.0}
    for tau, beta in points.items():
        assert fedrevive_beta(tau, kind="stepwise", concurrency=100) == beta, tau
    # B = 2 halves b (75): thresholds 18.75, 37.5, 56.25, 75
    assert [fedrevive_beta(t, kind="stepwise", concurrency=100, buffer_size=2) for t in (18, 19, 37, 38, 56, 57, 75)] \
        == [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="concurrency"):
        fedrevive_beta(10, kind="stepwise")


def test_cosine_and_constant_beta():
    assert fedrevive_beta(75, 75) == pytest.approx(0.5)                    # _cosine_decay, s_max 75
    assert fedrevive_beta(50, 999, "cosine", factor=75) == pytest.approx(0.25)   # factor is s_max
    assert fedrevive_beta(0, kind="constant", factor=0.5) == 0.5 == fedrevive_beta(400, kind="constant", factor=0.5)
    with pytest.raises(ValueError, match="constant"):
        fedrevive_beta(1, kind="constant")


def test_strategies_take_the_concurrency_for_stepwise_beta():
    s = get_async_strategy("afl_dw", server_lr=1.0, schedule="stepwise")
    x = torch.zeros(2, dtype=torch.float64)
    u = Update(0, torch.ones(2, dtype=torch.float64), x, 0, 80, 1, 1, 0.1, 0.0, 0.0, 1.0, 1.0)
    new, _ = s.aggregate(x, {"concurrency": 100}, [u])                     # beta(80) = 0.5 at K = 100
    assert torch.allclose(new, torch.full((2,), 0.5, dtype=torch.float64))


# ---------------------------------------------------------------- helpers for hand-driven aggregation
def _driven(monkeypatch, name, d_kd_fn, **kw):
    import lib.fedrevive.strategy as strat
    base = dict(model=net(), model_input=SHAPE, num_classes=3, nz=8, ngf=4, warmup=0, kd_start=0, s_max=2.0,
                server_lr=1.0, synthesis=SynthesisConfig(batch_size=16, g_steps=3), kd=KDConfig(iterations=4), seed=7)
    s = get_async_strategy(name, **{**base, **kw})
    P = FlatModel(net()).flat().numel()
    x = torch.zeros(P)
    state = s.init(x, 4)
    monkeypatch.setattr(strat, "distill", lambda fm, xg, teachers, *a, **k: (d_kd_fn(teachers), 0.0))
    monkeypatch.setattr(state["synth"], "step", lambda *a, **k: {"oh": 0., "bn": 0., "adv": 0., "total": 0.,
                                                                   "zeroed": []})
    state["synth"].pool.add(torch.zeros(1, *SHAPE), torch.zeros(1, dtype=torch.long))
    return s, state, x, P


def _upload(cid, delta, tau, x):
    bufs = {k: v.clone() for k, v in FlatModel(net()).buffers.items()}
    return Update(cid, delta, x, 0, tau, 1, 1, 0.1, 0.0, 0.0, 1.0, 1.0, bufs, np.array([2, 1, 1]))


# ---------------------------------------------------------------- ask 2: the perturbation control
def test_perturbation_control_has_the_norm_of_d_kd_and_a_direction_independent_of_the_teachers(monkeypatch):
    d_kd = lambda teachers: torch.stack([t.w for t in teachers]).mean(0) + 1.0      # noqa: E731  depends on them
    directions = []
    for scale in (1.0, -3.0):                           # two different teachers -> two different D_KD
        s, state, x, P = _driven(monkeypatch, "fedrevive_perturb", d_kd)
        u = _upload(0, torch.linspace(0, 1, P) * scale, 9, x)      # tau >= 2 s_max: beta = 1, D~ = control
        new, state = s.aggregate(x, state, [u])
        ctrl = new - x                                               # server_lr 1, one update
        true = d_kd(state["teachers"])
        assert ctrl.norm() == pytest.approx(float(true.norm()), rel=1e-5)
        log = state["kd_log"][0]
        assert log["mixed_norm"] == pytest.approx(log["kd_norm"], rel=1e-5)
        assert abs(float(torch.nn.functional.cosine_similarity(ctrl, true, dim=0))) < 0.1   # not D_KD's direction
        directions.append(ctrl / ctrl.norm())
    assert torch.allclose(directions[0], directions[1], atol=1e-6)    # same seed: same direction
    assert s.server_work(state) == {"synthesis": 3, "kd": 4}          # it does FedRevive's work


def test_fedrevive_itself_mixes_d_kd_unchanged(monkeypatch):
    holder = {}
    s, state, x, P = _driven(monkeypatch, "fedrevive", lambda teachers: holder["d"])
    fixed = holder["d"] = torch.arange(P, dtype=torch.float32)
    new, state = s.aggregate(x, state, [_upload(0, torch.zeros(P), 9, x)])
    assert torch.equal(new, fixed)


def test_dd_arms_are_registered_matched_and_the_authors():
    held = (torch.randn(6, *SHAPE), torch.arange(6) % 3)
    fr = get_async_strategy("fedrevive", model=net(), model_input=SHAPE, num_classes=3)
    dd = get_async_strategy("dd_fedrevive", model=net(), model_input=SHAPE, num_classes=3, kd_data=held)
    for k in ("warmup", "kd_start", "kd", "schedule", "beta_factor", "s_max", "server_lr"):
        assert getattr(dd, k) == getattr(fr, k), k
    au = get_async_strategy("dd_fedrevive_authors", model=net(), model_input=SHAPE, num_classes=3, kd_data=held)
    assert (au.kd.lr, au.kd.temperature, au.kd.weight_decay, au.kd.stabilize) == (3e-4, 2.0, 0.0, False)
    assert (au.warmup, au.kd_start, au.schedule, au.beta_factor) == (0, 0, "constant", 0.5)
    # the settings dict overrides FedRevive's when a notebook builds the authors' arm from FedRevive's kwargs
    au2 = get_async_strategy("dd_fedrevive_authors", model=net(), model_input=SHAPE, num_classes=3, kd_data=held,
                             **{**dict(warmup=50, kd_start=100), **DD_AUTHORS_SETTINGS})
    assert (au2.warmup, au2.kd_start, au2.kd.lr) == (0, 0, 3e-4)


# ---------------------------------------------------------------- ask 4: teachers kept per upload
def test_teachers_are_kept_per_upload_repeats_included(monkeypatch):
    s, state, x, P = _driven(monkeypatch, "fedrevive", lambda t: torch.zeros(1), warmup=5, kd_start=5)
    for d in (1.0, 2.0, 3.0):                           # client 0 uploads twice around client 1 (before warmup)
        cid = 1 if d == 2.0 else 0
        _, state = s.aggregate(x, state, [_upload(cid, torch.full((P,), d), 0, x)])
    assert [t.client_id for t in state["teachers"]] == [0, 1, 0]       # newest first, the repeat kept
    assert [float(t.w[0]) for t in state["teachers"]] == [3.0, 2.0, 1.0]


# ---------------------------------------------------------------- ask 4: KD augmentation and the stabilizer
def _kd_setup(images):
    fm, teacher = trained_teacher(images, steps=30)
    train, _ = images
    pool = SyntheticPool(200)
    pool.add(train.x[:90], train.y[:90])
    return fm, teacher, pool


def test_kd_augmentation_feeds_the_same_augmented_batch_to_student_and_teachers(images):
    fm, teacher, pool = _kd_setup(images)
    x0 = fm.flat() * 0.5
    cfg = KDConfig(iterations=3, batch_per_teacher=8, lr=1e-2, stabilize=False)
    calls = []

    def blank(xb, gen):                                 # an "augmentation" that maps every input to zeros
        calls.append(xb.shape[0])
        return torch.zeros_like(xb)

    d_aug, _ = distill(fm, x0, [teacher, teacher], pool, cfg, torch.Generator().manual_seed(0), augment=blank)
    zeros = SyntheticPool(200)
    zeros.add(torch.zeros(90, *SHAPE), pool.y)          # the same labels: the same sampling draws
    d_zero, _ = distill(fm, x0, [teacher, teacher], zeros, cfg, torch.Generator().manual_seed(0))
    d_plain, _ = distill(fm, x0, [teacher, teacher], pool, cfg, torch.Generator().manual_seed(0))
    # both the student and the teachers saw the augmented (zero) inputs: exactly KD on a pool of zeros
    assert torch.allclose(d_aug, d_zero, atol=1e-7)
    assert not torch.allclose(d_aug, d_plain, atol=1e-4)
    assert calls == [8] * 6                             # once per teacher batch of each step (2 teachers x 3)


def test_kd_augmentation_follows_the_synthesizers_setting(images):
    for aug, kd_aug, on in ((True, None, True), (False, None, False), (False, True, True), (True, False, False)):
        s = revive(net(), synthesis=SynthesisConfig(batch_size=16, augment=aug), kd=KDConfig(augment=kd_aug))
        state = s.init(FlatModel(net()).flat(), 4)
        assert (s._kd_augment(state) is not None) == on


def test_stabilizer_zeroes_an_exploding_kd_loss_as_the_authors():
    cfg = KDConfig()
    w = [1.0] * 9
    out, bad = stabilize_kd_loss(torch.tensor(50.0), w, cfg)            # 9 kept: the test does not act yet
    assert not bad and float(out) == 50.0 and len(w) == 10
    w = [1.0] * 10
    out, bad = stabilize_kd_loss(torch.tensor(3.5), w, cfg)             # > 3 x mean 1: zeroed, not kept
    assert bad and float(out) == 0.0 and w == [1.0] * 10
    out, bad = stabilize_kd_loss(torch.tensor(2.9), w, cfg)             # kept
    assert not bad and float(out) == pytest.approx(2.9) and len(w) == 11
    out, bad = stabilize_kd_loss(torch.tensor(float("nan")), w, cfg)    # NaN: zeroed
    assert bad and float(out) == 0.0 and len(w) == 11
    w = [1.0] * 25
    stabilize_kd_loss(torch.tensor(1.0), w, cfg)
    assert len(w) == 20                                                 # a window of the last 20


def test_an_exploding_kd_loss_does_not_move_the_student(images):
    fm, teacher, pool = _kd_setup(images)
    x0 = fm.flat() * 0.5
    cfg = KDConfig(iterations=3, batch_per_teacher=8, lr=1e-2, weight_decay=0.0)
    info = {}
    window = [1e-9] * 10                                # a calm history: every loss here is > 3x its mean
    d, _ = distill(fm, x0, [teacher], pool, cfg, torch.Generator().manual_seed(0), loss_window=window, info=info)
    assert info == {"zeroed": 3, "steps": 3} and torch.count_nonzero(d) == 0 and window == [1e-9] * 10
    d2, _ = distill(fm, x0, [teacher], pool, KDConfig(iterations=3, batch_per_teacher=8, lr=1e-2, weight_decay=0.0,
                                                    stabilize=False), torch.Generator().manual_seed(0))
    assert d2.norm() > 0


# ---------------------------------------------------------------- ask 3: the server's time on the clock
@dataclass
class _Working(AsyncStrategy):
    """Buffered async (B = 1) whose every aggregation reports one KD step of work."""
    name = "working"

    def server_work(self, state):
        return {"kd": 1}


def test_server_time_queues_uploads_and_advances_the_clock(blobs):
    train, _ = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 2, seed=0))
    model = build_model("mlp", train.input_shape, 3, seed=0, hidden=(4,))
    r = run_async(model, _Working(), clients, None, DelayModel.fixed([1.0, 2.5]), concurrency=2,
                  local=LocalConfig(steps=25), max_time=6.0, train=False, server_step_time={"kd": 0.7})
    got = [(u["arrival_time"], u["handled_time"], u["applied_time"], u["client"], u["staleness"]) for u in r.updates]
    # t=1 c0 handled (v0 -> v1 at 1.7; c0 re-dispatched at 1.7, back at 2.7); t=2.5 c1 (from v0, tau 1; done 3.2);
    # t=2.7 c0 waits for the server until 3.2 (from v1, now v2: tau 1; done 3.9; back at 4.9); t=4.9 c0 (tau 0,
    # done 5.6); c1, re-dispatched at 3.2 on v2, back at 5.7 (now v4: tau 2, done 6.4); next: c0 at 6.6 > 6
    want = [(1.0, 1.0, 1.7, 0, 0), (2.5, 2.5, 3.2, 1, 1), (2.7, 3.2, 3.9, 0, 1), (4.9, 4.9, 5.6, 0, 0),
            (5.7, 5.7, 6.4, 1, 2)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:3] == pytest.approx(w[:3]) and g[3:] == w[3:]
    for a, b in zip(r.updates, r.updates[1:]):         # never applied before the server is free
        assert b["handled_time"] >= a["applied_time"] - 1e-12
    assert all(u["applied_time"] - u["handled_time"] == pytest.approx(0.7) for u in r.updates)
    assert r.timing["server_busy"] == pytest.approx(5 * 0.7)
    assert [e["duration"] for e in r.state["server_log"]] == pytest.approx([0.7] * 5)
    free = run_async(model, _Working(), clients, None, DelayModel.fixed([1.0, 2.5]), concurrency=2,
                     local=LocalConfig(steps=25), max_time=6.0, train=False)
    assert "handled_time" not in free.updates[0] and len(free.updates) > len(r.updates)   # off by default


def test_server_time_evaluates_the_old_model_until_the_work_is_done(blobs):
    train, test = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 2, seed=0))
    model = build_model("mlp", train.input_shape, 3, seed=0, hidden=(4,))
    r = run_async(model, _Working(server_lr=1.0), clients, test, DelayModel.fixed([1.0, 2.5]), concurrency=2,
                  local=LocalConfig(steps=25, lr=0.5), max_time=3.0, eval_every_time=0.5,
                  server_step_time={"kd": 0.7})
    f = r.frame()
    acc = dict(zip(f.sim_time, f.accuracy))
    ver = dict(zip(f.sim_time, f.version))
    assert acc[0.5] == acc[1.0] == acc[1.5] == acc[0.0]   # the first new model exists only at 1.7
    assert acc[2.0] != acc[0.0] and ver[2.0] == 1
    assert f.sim_time.max() <= 3.0                        # nothing evaluated past max_time


def test_fedrevive_reports_its_work_and_zero_step_times_change_nothing(images):
    free = run(net(), revive(net()), images)
    zero = run_async(net(), revive(net()), *_setting(images), **_run_kw(), server_step_time={"synthesis": 0.0,
                                                                                            "kd": 0.0})
    assert torch.equal(free.x, zero.x)
    work = free.state["work_log"]
    g, k = revive(net()).synthesis.g_steps, revive(net()).kd.iterations
    assert any(w["synthesis"] == g for w in work) and any(w["kd"] == k for w in work)
    assert all(w["synthesis"] in (0, g) and w["kd"] in (0, k) for w in work)
    priced = run_async(net(), revive(net()), *_setting(images), **_run_kw(), server_step_time={"synthesis": 0.01,
                                                                                              "kd": 0.02})
    log = priced.state["server_log"]
    by_version = {w["version"] + 1: w for w in priced.state["work_log"]}
    for e in log:
        w = by_version[e["version"]]
        assert e["duration"] == pytest.approx(0.01 * w["synthesis"] + 0.02 * w["kd"])
    assert priced.timing["server_busy"] == pytest.approx(sum(e["duration"] for e in log))
    assert priced.timing["server_busy"] > 0
    with pytest.raises(ValueError, match="does not price"):
        run_async(net(), revive(net()), *_setting(images), **_run_kw(), server_step_time={"synthesis": 0.01})


def _setting(images):
    from test_fedrevive import setting
    clients, test, delays = setting(images)
    return clients, test, delays, 4


def _run_kw():
    return dict(seed=0, max_versions=12, local=LocalConfig(lr=1e-2, optimizer="adam", steps=5, batch_size=16),
                eval_every=4)


def test_calibrate_measures_seconds_per_step_and_converts_to_time_units():
    s = revive(net(), synthesis=SynthesisConfig(batch_size=8, g_steps=2), kd=KDConfig(iterations=2,
                                                                                       batch_per_teacher=4),
               num_teachers=2)
    cal = calibrate(s, seconds_per_unit=2.0, device="cpu", repeats=1)
    assert cal["synthesis_s"] > 0 and cal["kd_s"] > 0 and cal["device"] == "cpu" and cal["teachers"] == 2
    assert cal["server_step_time"] == {"synthesis": cal["synthesis_s"] / 2.0, "kd": cal["kd_s"] / 2.0}
    with pytest.raises(ValueError):
        calibrate(s, seconds_per_unit=0.0)
