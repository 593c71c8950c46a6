"""FedECADO and its adaptive, critically damped successor; LTE step control; sweeps."""
import math

import pytest
import torch

from lib.client import ClientResult, LocalConfig
from lib.dynamics import (StepController, critical_inductance, damped_loop, euler_lte, loop_sensitivity,
                          no_overshoot_step)
from lib.strategies import get_strategy
from lib.strategies.fedecado import FedECADO, developed_fraction
from lib.strategies.fedecado_adaptive import FedECADOAdaptive
from lib.sweep import grid, summarize, sweep, tuned


# ---------------------------------------------------------------- step-size controller

def test_lte_of_forward_euler_on_a_quadratic():
    # f = a x^2 / 2, gradient flow x' = -a x; one FE step from x0: F changes by -a (x1 - x0) = a^2 dt x0
    a, x0, dt = 4.0, 2.0, 0.1
    x1 = x0 - dt * a * x0
    lte = euler_lte(dt, torch.tensor([-a * x0]), torch.tensor([-a * x1]))
    assert lte == pytest.approx(0.5 * a ** 2 * dt ** 2 * x0)


def test_controller_accepts_within_tolerance_and_rescales():
    ctrl = StepController(gamma=0.1)
    ok, dt = ctrl.step(0.1, 0.05)
    assert ok and dt == pytest.approx(0.1 * 0.9 * math.sqrt(0.1 / 0.05))
    ok, dt = ctrl.step(0.1, 0.4)
    assert not ok and dt == pytest.approx(0.1 * 0.9 * math.sqrt(0.1 / 0.4))
    assert ctrl.step(0.1, 1e-12)[1] == pytest.approx(0.2)          # growth clipped at 2x
    assert ctrl.step(0.1, 1e6)[1] == pytest.approx(0.02)           # shrink clipped at 0.2x
    assert ctrl.step(0.1, float("nan")) == (False, pytest.approx(0.02))


def test_rescaled_step_meets_the_tolerance_on_a_quadratic():
    # LTE ~ dt^2 on a quadratic, so the rescaled step's LTE is 0.81 gamma (safety 0.9, squared)
    a, x0, gamma = 10.0, 1.0, 1e-3
    ctrl = StepController(gamma)
    lte_of = lambda dt: euler_lte(dt, torch.tensor([-a * x0]), torch.tensor([-a * (x0 - dt * a * x0)]))
    dt = 0.008
    ok, dt_new = ctrl.step(dt, lte_of(dt))
    assert not ok
    assert lte_of(dt_new) == pytest.approx(0.81 * gamma, rel=1e-6)
    assert ctrl.step(dt_new, lte_of(dt_new))[0]


@pytest.mark.parametrize("gamma", [0, -1, float("nan"), float("inf"), "0.1"])
def test_controller_rejects_bad_tolerance(gamma):
    with pytest.raises(ValueError, match="gamma"):
        StepController(gamma)


def test_no_overshoot_step():
    assert no_overshoot_step(4.0, 2.0) == 0.5
    assert no_overshoot_step(None) == math.inf


# ---------------------------------------------------------------- critical damping

def test_critical_damping_has_no_overshoot_and_underdamping_does():
    g = 2.0
    crit = critical_inductance(g)
    assert crit == pytest.approx(1.0)
    i_eq = g * (1.0 - 0.0)                       # flow at equilibrium: -grad f(x_c) = g (a - x_c)
    _, xs, is_ = damped_loop(g, crit, dt=1e-3, t_end=20)
    assert max(is_) <= i_eq * (1 + 1e-3)         # flow rises monotonically to its equilibrium
    assert min(xs) >= -1e-9                      # the client never crosses to the other side of x_c
    assert is_[-1] == pytest.approx(i_eq, rel=1e-3)
    _, xs_u, is_u = damped_loop(g, 0.1 * crit, dt=1e-3, t_end=20)
    assert max(is_u) > 1.3 * i_eq                # under-damped (smaller L): the flow overshoots ...
    assert min(xs_u) < -0.05                     # ... and the client swings past x_c
    _, _, is_o = damped_loop(g, 10 * crit, dt=1e-3, t_end=20)
    assert max(is_o) <= i_eq * (1 + 1e-3)        # over-damped: no overshoot either (only slower)


def test_loop_sensitivity_matches_finite_differences():
    g, T, eps = 3.0, 0.8, 1e-4
    L = critical_inductance(g)
    i_plus = damped_loop(g, L, x_c=eps, optimum=1.0, dt=1e-4, t_end=T)[2][-1]
    i_minus = damped_loop(g, L, x_c=-eps, optimum=1.0, dt=1e-4, t_end=T)[2][-1]
    assert -(i_plus - i_minus) / (2 * eps) == pytest.approx(loop_sensitivity(g, T), rel=1e-2)
    assert loop_sensitivity(g, 0.0) == 0.0
    assert loop_sensitivity(g, 1e3) == pytest.approx(g)


def test_developed_fraction_limits():
    assert developed_fraction(2.0, 0.0) == 1.0
    assert developed_fraction(2.0, 1e-4) == pytest.approx(1.0, abs=1e-3)
    assert developed_fraction(2.0, 50.0) == pytest.approx(1 / 100, rel=1e-6)


# ---------------------------------------------------------------- aggregation math by hand

def _result(cid, delta, n, **extra):
    return ClientResult(cid, torch.tensor(delta), n, 5, 0.0, 0.1, 0.0, None, extra)


def test_fedecado_aggregate_by_hand():
    s = FedECADO(gamma=0.1, server_step=2.0)
    x = torch.zeros(2)
    rs = [_result(0, [1.0, 0.0], 30, curvature=2.0, sim_time=0.5, dt=0.1),
          _result(1, [0.0, 2.0], 10, curvature=4.0, sim_time=1.0, dt=0.2)]
    new, state = s.aggregate(x, s.init(x, 2), rs)
    u0 = 2.0 * torch.tensor([1.0, 0.0]) / (1 - math.exp(-1.0))          # g D / (1 - e^{-gT})
    u1 = 4.0 * torch.tensor([0.0, 2.0]) / (1 - math.exp(-4.0))
    expect = (0.75 * u0 + 0.25 * u1) / (1 / 2.0 + 0.75 * 2.0 + 0.25 * 4.0)
    assert torch.allclose(new, expect)
    assert state["dt"] == {0: 0.1, 1: 0.2}


def test_adaptive_aggregate_by_hand():
    s = FedECADOAdaptive(gamma=0.1, server_step0=2.0)
    x = torch.zeros(2)
    rs = [_result(0, [0.3, 0.0], 10, flow=torch.tensor([1.0, 0.0]), curvature=2.0, sim_time=0.5, dt=0.1,
                  grad_evals=10, rejected=0),
          _result(1, [0.0, 0.1], 30, flow=torch.tensor([0.0, -1.0]), curvature=1.0, sim_time=1.0, dt=0.3,
                  grad_evals=12, rejected=1)]
    new, state = s.aggregate(x, s.init(x, 2), rs)
    G0, G1 = loop_sensitivity(2.0, 0.5), loop_sensitivity(1.0, 1.0)
    flow = 0.25 * torch.tensor([1.0, 0.0]) + 0.75 * torch.tensor([0.0, -1.0])
    delta = flow / (1 / 2.0 + 0.25 * G0 + 0.75 * G1)
    assert torch.allclose(new, delta)
    assert torch.allclose(state["flows"][0], torch.tensor([1.0, 0.0]) - G0 * delta)
    assert torch.allclose(state["flows"][1], torch.tensor([0.0, -1.0]) - G1 * delta)
    lte = 0.5 * 2.0 * float((flow - delta / 2.0).norm())
    assert state["H"] == pytest.approx(2.0 * StepController(0.1).factor(lte))
    assert state["dt"] == pytest.approx(0.2)                          # median of the clients' last steps


# ---------------------------------------------------------------- toy federated quadratic

class _Quadratic:
    """Client data stand-in: f_i(w) = 0.5 (w - b)^T diag(a) (w - b), exact gradients."""

    def __init__(self, a, b, n):
        self.a, self.b, self.n = torch.tensor(a), torch.tensor(b), n

    def __len__(self):
        return self.n


def _quad_oracle(fm, data, buffers):
    return lambda w, idx: (float(0.5 * (data.a * (w - data.b) ** 2).sum()), data.a * (w - data.b))


def _simulate(strategy, clients, rounds, x0):
    strategy.oracle = _quad_oracle
    x, state = x0.clone(), strategy.init(x0, len(clients))
    local = LocalConfig(batch_size=1000, steps=1)
    steps = [3, 8, 20]                                   # different amounts of local work
    for t in range(rounds):
        rs = []
        for i, d in enumerate(clients):
            hooks = strategy.configure_client(state, i)
            hooks.num_steps = steps[i]
            rs.append(strategy.local_update(None, x, d, local, hooks, seed=t * 10 + i, client_id=i))
        x, state = strategy.aggregate(x, state, rs)
    return x


QUAD = [_Quadratic([1.0, 3.0, 0.5], [2.0, -1.0, 0.0], 10),
        _Quadratic([2.0, 1.0, 1.5], [-1.0, 1.0, 3.0], 20),
        _Quadratic([0.5, 2.0, 1.0], [0.5, 0.5, -2.0], 30)]


def _global_gradient(x):
    p = torch.tensor([10.0, 20.0, 30.0]) / 60
    return sum(pi * d.a * (x - d.b) for pi, d in zip(p, QUAD))


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_adaptive_method_reaches_the_federated_equilibrium(gamma):
    x0 = torch.zeros(3)
    x = _simulate(FedECADOAdaptive(gamma=gamma), QUAD, 60, x0)
    # equilibrium of the circuit: sum_i p_i grad f_i(x_c) = 0, despite 3 / 8 / 20 local steps
    assert float(_global_gradient(x).norm()) < 1e-4 * float(_global_gradient(x0).norm())


def _fedavg_residual(lr, rounds=200):
    p, x = [1 / 6, 2 / 6, 3 / 6], torch.zeros(3)
    for _ in range(rounds):
        deltas = []
        for d, k in zip(QUAD, [3, 8, 20]):
            w = x.clone()
            for _ in range(k):
                w = w - lr * d.a * (w - d.b)
            deltas.append(w - x)
        x = x + sum(pi * di for pi, di in zip(p, deltas))
    return float(_global_gradient(x).norm())


def test_fedecado_reduces_objective_inconsistency():
    # FedAvg with 3 / 8 / 20 local steps settles away from the equilibrium (objective inconsistency);
    # FedECADO's continuous-time normalisation removes most of that, more the more accurately it integrates.
    fedavg = min(_fedavg_residual(lr) for lr in (0.05, 0.1, 0.2))
    assert fedavg > 0.5
    res = {g: float(_global_gradient(_simulate(FedECADO(gamma=g, server_step=10.0), QUAD, 100, torch.zeros(3))).norm())
           for g in (1e-3, 1e-2, 1e-1)}
    assert res[1e-2] < 0.5 * fedavg
    assert res[1e-3] < res[1e-2] < res[1e-1]


# ---------------------------------------------------------------- real runs, determinism, errors

def _tiny_run(blobs, name, **kw):
    from lib import fl, models, partition
    train, test = blobs
    part = partition.dirichlet(train.y.numpy(), 4, alpha=0.3, seed=0, min_size=10)
    m = models.build_model("mlp", train.input_shape, 3, seed=0, hidden=(16,))
    return fl.run_federated(m, name, fl.client_datasets(train, part), test, rounds=6, clients_per_round=2,
                            local=LocalConfig(batch_size=16, steps=3), steps_per_client=[2, 3, 5, 8],
                            seed=0, strategy_kwargs=kw)


@pytest.mark.parametrize("name", ["fedecado", "fedecado_adaptive"])
def test_deterministic_and_learns(blobs, name):
    a, b = _tiny_run(blobs, name, gamma=0.1), _tiny_run(blobs, name, gamma=0.1)
    assert torch.equal(a.x, b.x)
    assert a.records[-1]["accuracy"] > a.records[0]["accuracy"] + 0.2, [r["accuracy"] for r in a.records]
    assert a.records[-1]["grad_evals"] >= 2 * 6 * 2 * 2      # >= two gradients per step, >= 2 steps per client


@pytest.mark.parametrize("name,kw,match", [
    ("fedecado_adaptive", {"gamma": 0}, "gamma"),
    ("fedecado_adaptive", {"gamma": -1e-3}, "gamma"),
    ("fedecado_adaptive", {"curvature_memory": 1.0}, "curvature_memory"),
    ("fedecado_adaptive", {"dt0": float("nan")}, "dt0"),
    ("fedecado", {"server_step": 0}, "server_step"),
    ("fedecado", {"max_tries": 0}, "max_tries"),
    ("fedecado", {"lr": 0.1}, "no hyperparameter"),
])
def test_bad_hyperparameters(name, kw, match):
    with pytest.raises(ValueError, match=match):
        get_strategy(name, **kw)


def test_critical_inductance_rejects_bad_curvature():
    with pytest.raises(ValueError, match="curvature"):
        critical_inductance(0.0)


# ---------------------------------------------------------------- sweep helper

def _fake_run(config, seed):
    if config["lr"] > 1:
        raise FloatingPointError("diverged")
    return [{"method": config["method"], "round": r, "accuracy": config["lr"] * r + 0.01 * seed} for r in range(3)]


def test_grid_is_the_cartesian_product():
    g = grid(method=["a", "b"], lr=[0.1, 1.0, 10.0])
    assert len(g) == 6 and g[0] == {"method": "a", "lr": 0.1} and g[-1] == {"method": "b", "lr": 10.0}
    with pytest.raises(ValueError, match="list"):
        grid(lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        grid(lr=[])


def test_sweep_returns_tidy_records_and_keeps_divergence():
    df = sweep(_fake_run, grid(method=["a"], lr=[0.1, 0.2, 5.0]), seeds=[0, 1], workers=1)
    assert set(["method", "lr", "seed", "round", "accuracy", "diverged", "config"]) <= set(df.columns)
    assert len(df) == 2 * 3 * 2 + 2 * 1                 # 2 configs x 2 seeds x 3 rounds + 2 diverged rows
    table = summarize(df, knobs=["lr"])
    row = table.set_index("lr").loc[0.2]
    assert row["final_accuracy"] == pytest.approx((0.4 + 0.41) / 2)
    assert table.set_index("lr").loc[5.0, "diverged"]
    three = summarize(df, knobs=["lr"], last=3).set_index("lr")
    assert three.loc[0.2, "final_accuracy"] == pytest.approx(((0 + 0.2 + 0.4) + (0.01 + 0.21 + 0.41)) / 6)
    best = tuned(table).iloc[0]
    assert best["best"] == pytest.approx(0.405) and best["worst"] == pytest.approx(0.205)
    assert best["diverged"] == 1 and best["grid_size"] == 3


# ---------------------------------------------------------------- the rebuilt pieces (issue: sources' forms)

def test_closed_form_step_is_the_lte_bound_solved_for_dt():
    from lib.dynamics import closed_form_step
    f_old, f_new = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([1.5, -2.2, -0.5])   # max |dF| = 1.0
    assert closed_form_step(0.1, f_new, f_old) == pytest.approx(2 * 0.1 / 1.0)
    assert closed_form_step(10.0, f_new, f_old) == 0.5                              # ECCO-DNN's cap
    assert closed_form_step(0.1, f_old, f_old, cap=0.3) == 0.3                      # no change: the cap
    assert euler_lte(closed_form_step(0.1, f_new, f_old), f_old, f_new, norm=math.inf) == pytest.approx(0.1)


def test_backward_euler_window_against_the_exact_solution():
    from lib.dynamics import backward_euler_window
    F, G, T = torch.tensor([2.0, -1.0]), 3.0, 1.5
    exact = F / G * (1 - math.exp(-G * T))                     # C y' = F - G y, y(0) = 0, C = 1
    y, _, n, _ = backward_euler_window(lambda tau: F, G, T, 0.5, StepController(1e-3))
    assert torch.allclose(y, exact, rtol=1e-2) and 10 < n < 64
    coarse = backward_euler_window(lambda tau: F, G, T, 0.5, StepController(1e-1))[0]
    assert (coarse - exact).norm() > 3 * (y - exact).norm()          # a looser tolerance, a larger error
    y1, _, n1, _ = backward_euler_window(lambda tau: F, G, T, 10.0, StepController(1e6))
    assert n1 == 1 and torch.allclose(y1, F / (1 / T + G))   # one step over the window: the one-step server
    # a forcing that only switches on halfway reaches less far than one on from the start
    late = backward_euler_window(lambda tau: F * (tau > T / 2), G, T, 0.5, StepController(1e-3))[0]
    assert torch.all(late.abs() < y.abs())


def _residuals(gammas, **kw):
    out = []
    for g in gammas:
        s = FedECADOAdaptive(gamma=g, **kw)
        s.oracle = _quad_oracle
        x, state = torch.zeros(3), s.init(torch.zeros(3), 3)
        local = LocalConfig(lr=0.05, batch_size=1000, steps=1)
        for t in range(300):
            rs = []
            for i, d in enumerate(QUAD):
                hooks = s.configure_client(state, i)
                hooks.num_steps = [3, 8, 20][i]
                rs.append(s.local_update(None, x, d, local, hooks, seed=t * 10 + i, client_id=i))
            x, state = s.aggregate(x, state, rs)
        out.append(float(_global_gradient(x).norm()))
    return torch.tensor(out)


def test_a_simulated_time_window_removes_the_sensitivity_to_gamma():
    # fixed step counts: the time clients cover shrinks with gamma, and so does progress per round;
    # a fixed window (T_i = lr x steps_i): gamma only sets the integration accuracy
    gammas = [1e-4, 1e-2, 1.0]
    fixed = _residuals(gammas)
    window = _residuals(gammas, window=True, lte="closed_form", server="window")
    assert fixed.max() / fixed.min() > 1e5
    assert window.max() / window.min() < 3 and window.max() < 1e-2


def test_window_clients_cover_their_window_within_the_step_budget():
    s = FedECADOAdaptive(gamma=1e-6, window=True, max_step_factor=2.0)
    s.oracle = _quad_oracle
    hooks = s.configure_client(s.init(torch.zeros(3), 1), 0)
    hooks.num_steps = 4
    r = s.local_update(None, torch.zeros(3), QUAD[0], LocalConfig(lr=0.05, batch_size=1000, steps=1), hooks, 0, 0)
    assert r.extra["steps_taken"] == 8 and r.extra["window_reached"] < 1          # budget binds at tiny gamma
    s2 = FedECADOAdaptive(gamma=1.0, window=True, lte="closed_form")
    s2.oracle = _quad_oracle
    r2 = s2.local_update(None, torch.zeros(3), QUAD[0], LocalConfig(lr=0.05, batch_size=1000, steps=1), hooks, 0, 0)
    assert r2.extra["sim_time"] == pytest.approx(0.2) and r2.extra["window_reached"] == pytest.approx(1.0)
    assert r2.extra["grad_evals"] == 2 * r2.extra["steps_taken"] and r2.extra["rejected"] == 0   # no retries


# ---------------------------------------------------------------- FedECADO as its paper runs it

def test_paper_fedecado_client_is_plain_sgd_with_the_secant_across_its_displacement():
    s = FedECADO(client="sgd", server="window")
    s.oracle = _quad_oracle
    hooks = s.configure_client(s.init(torch.zeros(3), 1), 0)
    hooks.num_steps = 4
    x_c, d, lr = torch.tensor([0.5, 0.5, 0.5]), QUAD[0], 0.05
    r = s.local_update(None, x_c, d, LocalConfig(lr=lr, batch_size=1000, steps=1), hooks, 0, 0)
    w = x_c.clone()
    for _ in range(4):                                   # w <- w - lr * a (w - b), the paper's given lr and steps
        w = w - lr * d.a * (w - d.b)
    assert torch.allclose(r.delta, w - x_c)
    # a quadratic's gradient difference is a * dx: the secant is ||a * D|| / ||D||
    assert r.extra["curvature"] == pytest.approx(float((d.a * (w - x_c)).norm() / (w - x_c).norm()), rel=1e-5)
    assert r.extra["sim_time"] == pytest.approx(lr * 4) and r.extra["grad_evals"] == 4 + 2


def test_paper_fedecado_server_integrates_the_window_to_the_tolerance():
    x = torch.zeros(2)
    rs = [_result(0, [1.0, 0.0], 30, curvature=2.0, sim_time=0.5, dt=0.1, grad_evals=7),
          _result(1, [0.0, 2.0], 10, curvature=4.0, sim_time=1.0, dt=0.1, grad_evals=12)]
    p = torch.tensor([0.75, 0.25])
    u = torch.stack([2.0 * torch.tensor([1.0, 0.0]) / (1 - math.exp(-1.0)),      # g D / (1 - e^{-gT})
                     4.0 * torch.tensor([0.0, 2.0]) / (1 - math.exp(-4.0))])
    G, T = 0.75 * 2.0 + 0.25 * 4.0, 1.0
    exact = (p @ u) / G * (1 - math.exp(-G * T))        # C y' = sum p_i (u_i - g_i y) over [0, max T_i]
    fine = FedECADO(gamma=1e-3, client="sgd", server="window", server_step=0.5)   # < 64 sub-steps
    new, state = fine.aggregate(x, fine.init(x, 2), rs)
    assert torch.allclose(new, exact, rtol=2e-2)
    assert state["history"][-1]["server_substeps"] > 5 and state["history"][-1]["grad_evals"] == 19
    loose = FedECADO(gamma=10.0, client="sgd", server="window", server_step=0.5)
    new_loose = loose.aggregate(x, loose.init(x, 2), rs)[0]
    assert (new_loose - exact).norm() > 3 * (new - exact).norm()         # gamma is the server's tolerance


@pytest.mark.parametrize("lr", [0.05, 0.1])
def test_paper_fedecado_reduces_objective_inconsistency(lr):
    s = FedECADO(gamma=1e-2, client="sgd", server="window")
    s.oracle = _quad_oracle
    x, state = torch.zeros(3), s.init(torch.zeros(3), 3)
    for t in range(200):
        rs = []
        for i, d in enumerate(QUAD):
            hooks = s.configure_client(state, i)
            hooks.num_steps = [3, 8, 20][i]
            rs.append(s.local_update(None, x, d, LocalConfig(lr=lr, batch_size=1000, steps=1), hooks, t * 10 + i, i))
        x, state = s.aggregate(x, state, rs)
    # FedAvg at the same lr settles about 3x-4x further from sum_i p_i grad f_i = 0 (see above)
    assert float(_global_gradient(x).norm()) < 0.4 * _fedavg_residual(lr)


@pytest.mark.parametrize("kw,match", [({"client": "adam"}, "client"), ({"server": "two_step"}, "server")])
def test_paper_fedecado_rejects_unknown_modes(kw, match):
    with pytest.raises(ValueError, match=match):
        get_strategy("fedecado", **kw)


# ---------------------------------------------------------------- choosing on a validation split

def test_select_on_validation_picks_the_best_mean_over_seeds_and_never_reads_the_test_set():
    import pandas as pd
    from lib.sweep import select_on_validation
    rows = []
    for label, vals, test in [("mu=0.001", [0.50, 0.60], 0.99), ("mu=0.01", [0.58, 0.58], 0.10), ("mu=0.1", [0.70, 0.30], 0.5)]:
        for s, v in enumerate(vals):
            for r in (1, 2, 3):
                rows.append({"arm": "fedprox", "method": label, "seed": s, "round": r, "val_accuracy": v if r > 1 else 0.0,
                             "accuracy": test})
    rows += [{"arm": "fedavg", "method": "fedavg", "seed": s, "round": r, "val_accuracy": 0.4, "accuracy": 0.4}
             for s in (0, 1) for r in (1, 2, 3)]
    t = select_on_validation(pd.DataFrame(rows), last=2)
    chosen = t[t.selected].set_index("arm")["method"]
    assert chosen["fedprox"] == "mu=0.01" and chosen["fedavg"] == "fedavg"      # 0.58 > 0.55 = 0.50 mean
    assert t.set_index("method").loc["mu=0.001", "final_val_accuracy"] == pytest.approx(0.55)
    with pytest.raises(ValueError, match="val_accuracy"):
        select_on_validation(pd.DataFrame(rows).drop(columns="val_accuracy"))


def test_a_validation_split_is_stratified_disjoint_and_evaluated_beside_the_test_set(blobs):
    from lib import fl, models, partition
    train, test = blobs
    rest, val = train.split_validation(0.2, seed=0)
    assert len(rest) + len(val) == len(train)
    for c in range(train.num_classes):
        assert int((val.y == c).sum()) == round(0.2 * int((train.y == c).sum()))
    key = lambda d: {tuple(row.tolist()) for row in d.x.reshape(len(d), -1)}  # noqa: E731
    assert not key(rest) & key(val)
    part = partition.dirichlet(rest.y.numpy(), 4, alpha=0.5, seed=0, min_size=5)
    m = models.build_model("mlp", rest.input_shape, 3, seed=0, hidden=(16,))
    r = fl.run_federated(m, "fedavg", fl.client_datasets(rest, part), test, rounds=2, clients_per_round=2,
                         local=LocalConfig(batch_size=16, steps=3), seed=0, validation=val)
    assert all(0 <= rec["val_accuracy"] <= 1 for rec in r.records)
    m2 = models.build_model("mlp", rest.input_shape, 3, seed=0, hidden=(16,))
    r2 = fl.run_federated(m2, "fedavg", fl.client_datasets(rest, part), test, rounds=2, clients_per_round=2,
                          local=LocalConfig(batch_size=16, steps=3), seed=0)
    assert [a["accuracy"] for a in r.records] == [b["accuracy"] for b in r2.records]   # evaluating it changes nothing


def test_select_on_validation_refuses_unequal_seeds_and_never_chooses_a_config_without_a_value():
    import pandas as pd
    from lib.sweep import select_on_validation
    rows = [{"arm": "a", "method": m, "seed": s, "round": r, "val_accuracy": v}
            for m, v in [("x", 0.5), ("y", float("nan"))] for s in (0, 1) for r in (1, 2)]
    t = select_on_validation(pd.DataFrame(rows), last=1)
    assert t[t.selected].method.tolist() == ["x"] and pd.isna(t.set_index("method").final_val_accuracy["y"])
    rows += [{"arm": "a", "method": "z", "seed": 0, "round": 1, "val_accuracy": 0.9}]          # z ran on seed 0 only
    with pytest.raises(ValueError, match="different seeds"):
        select_on_validation(pd.DataFrame(rows))
