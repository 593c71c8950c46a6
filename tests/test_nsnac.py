"""Non-stationary MDPs and NS-NAC (lib.rl): RVI, variation budget, restarts, learning, bad input."""
import numpy as np
import pytest

from lib.rl import mdp, nsnac


def test_rvi_two_state_chain_by_hand():
    P = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])           # one action; stationary distribution (5/6, 1/6)
    R = np.array([[1.0], [0.0]])
    J, h, _ = mdp.relative_value_iteration(P, R)
    assert J == pytest.approx(5 / 6, abs=1e-8)


def test_rvi_picks_the_better_action_and_handles_periodic_chains():
    # state 0: action 0 stays (reward 1), action 1 moves to state 1 (reward 0); state 1 returns to 0
    P = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    R = np.array([[1.0, 0.0], [0.0, 0.0]])
    J, h, pi = mdp.relative_value_iteration(P, R)
    assert J == pytest.approx(1.0, abs=1e-8) and pi[0] == 0
    P = np.array([[[0.0, 1.0]], [[1.0, 0.0]]])           # period 2: J = 1/2
    J, _, _ = mdp.relative_value_iteration(P, np.array([[1.0], [0.0]]))
    assert J == pytest.approx(0.5, abs=1e-8)


def test_variation_budget_by_hand():
    P0 = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    P1 = np.array([[[0.5, 0.5]], [[0.0, 1.0]]])
    R0, R1 = np.array([[0.2], [0.0]]), np.array([[0.5], [0.0]])
    env = mdp.NonStationaryMDP(np.stack([P0, P1])[None], np.stack([R0, R1])[None], np.array([0, 50]), 100, "piecewise")
    assert env.variation()[0] == pytest.approx(0.3 + 1.0)    # |dR|max + ||dP||_1 max
    assert env.segment_index(49) == 0 and env.segment_index(50) == 1
    assert list(env.change_points()) == [50]


def test_piecewise_and_drift_budgets_are_controllable():
    few, many = (mdp.piecewise_mdp(T=1000, switches=k, games=3).variation().mean() for k in (1, 8))
    assert many > 4 * few
    slow, fast = (mdp.drifting_mdp(T=1000, cycles=c, games=3).variation().mean() for c in (0.5, 4))
    assert fast > 4 * slow
    assert mdp.piecewise_mdp(T=1000, switches=0).variation()[0] == 0


@pytest.mark.parametrize("bad", [dict(switches=1000), dict(switches=-1), dict(S=1), dict(games=0)])
def test_bad_environment_arguments(bad):
    with pytest.raises(ValueError):
        mdp.piecewise_mdp(**(dict(T=1000) | bad))


def test_non_stochastic_transitions_are_rejected():
    P, R = mdp.random_mdp(3, 2, rng=0)
    with pytest.raises(ValueError, match="stochastic"):
        mdp.relative_value_iteration(P * 0.9, R)
    with pytest.raises(ValueError, match="shape"):
        mdp.relative_value_iteration(P, R[:, :1])


def test_restart_interval_and_step_sizes():
    assert nsnac.restart_interval(100_000, 10.0) == int(np.ceil(1e4 ** (5 / 6)))
    assert nsnac.restart_interval(1000, 0.0) == 1000
    a, b = nsnac.step_sizes(10_000, alpha0=1.0, beta0=1.0)
    assert a == pytest.approx(0.01) and b == pytest.approx(10_000 ** (-1 / 3))
    assert a < b                                              # actor slower than critic
    with pytest.raises(ValueError):
        nsnac.restart_interval(1000, -1.0)
    with pytest.raises(ValueError, match="unknown arm"):
        nsnac.make_arms(mdp.piecewise_mdp(T=100, switches=1), ["ppo"])


def test_restart_schedules():
    env = mdp.piecewise_mdp(T=3000, switches=3, games=2, seed=0)
    arms = nsnac.make_arms(env)
    out = nsnac.run_arms(env, arms, seed=0)
    r = dict(zip(out["arms"], out["restarts"]))
    N = arms[0].N
    assert np.all(r["nsnac"] == int(np.ceil(3000 / N)) - 1)
    assert np.all(r["nac"] == 0)
    assert np.all(r["oracle"] == 3)                           # exactly the true change points
    W = arms[-1].block
    assert np.all(r["borl"] >= int(np.ceil(3000 / W)) - 1)    # at least one restart per block
    assert out["borl_choices"]["borl"].shape == (int(np.ceil(3000 / W)), 2)
    assert out["borl_choices"]["borl"].max() < len(out["borl_grid"])


def test_borl_block_length_follows_cheung_et_al():
    # BORL (Cheung, Simchi-Levi, Zhu 2020): H = 3 S^(2/3) A^(1/2) T^(1/2), written out here
    T, S, A = 30_000, 5, 3
    assert nsnac.borl_block(T, S, A) == int(np.ceil(3 * 5 ** (2 / 3) * 3 ** 0.5 * np.sqrt(30_000)))
    assert 14 * np.sqrt(T) < nsnac.borl_block(T, S, A) < 16 * np.sqrt(T)
    assert nsnac.borl_block(T, S, A, 0.5) == int(np.ceil(np.sqrt(T)))
    assert nsnac.borl_block(100, 5, 3) == 100                 # never longer than the horizon
    with pytest.raises(ValueError, match="cheung"):
        nsnac.borl_block(T, S, A, "sqrt")


def test_borl_variants_keep_their_own_bandits_and_restart_rules():
    env = mdp.piecewise_mdp(T=2000, switches=1, games=2, seed=3)
    never = [(env.T, 0.1, 0.5)] * 3                           # every setting: never restart on its own
    arms = [nsnac.ArmSpec("borl", grid=never, block=250, block_restart=True, label="restart"),
            nsnac.ArmSpec("borl", grid=never, block=400, block_restart=False, label="keep")]
    out = nsnac.run_arms(env, arms, seed=0)
    r = dict(zip(out["arms"], out["restarts"]))
    assert np.all(r["restart"] == 2000 // 250 - 1) and np.all(r["keep"] == 0)
    assert out["borl_choices"]["restart"].shape == (8, 2) and out["borl_choices"]["keep"].shape == (5, 2)
    with pytest.raises(ValueError, match="distinct"):
        nsnac.run_arms(env, [arms[0], arms[0]])


def test_exp3_exploration_rate_and_grids_of_different_sizes():
    # Auer et al.'s EXP3 tuning gamma = min(1, sqrt(M ln M / ((e - 1) n))) over n = ceil(T / W) blocks, by hand
    T, S, A = 30_000, 5, 3
    W = nsnac.borl_block(T, S, A)
    n = int(np.ceil(T / W))
    assert nsnac.exp3_gamma(T, S, A, 15) == (1.0, n)          # 15 settings: uniform at T = 3e4 (15 ln 15 / 1.72 > n)
    assert nsnac.exp3_gamma(T, S, A, 5)[0] == pytest.approx(np.sqrt(5 * np.log(5) / ((np.e - 1) * n)))
    assert nsnac.exp3_gamma(T, S, A, 5)[0] < 1
    # a 5-setting and a 2-setting bandit share one batch; neither draws beyond its own grid
    env = mdp.piecewise_mdp(T=3000, switches=1, games=2, seed=2)
    five = nsnac.ArmSpec("borl", grid=[(N, 0.1, 0.5) for N in (10, 50, 200, 1000, 3000)], block=100, label="five")
    two = nsnac.ArmSpec("borl", grid=[(100, 0.1, 0.5), (3000, 0.1, 0.5)], block=100, label="two")
    out = nsnac.run_arms(env, [five, two], seed=0)
    assert out["borl_choices"]["five"].max() < 5 and out["borl_choices"]["two"].max() < 2
    assert len(np.unique(out["borl_choices"]["five"])) > 2    # gamma < 1 but still exploring: several settings drawn
    assert out["borl_grids"] == {"five": five.grid, "two": two.grid}
    few = [a for a in nsnac.borl_variants(env) if a.label == "borl_few"][0]
    assert len(few.grid) == len(nsnac.borl_grid(env.T)) and len(nsnac.make_arms(env, ["borl"])[0].grid) == 3 * len(few.grid)


def test_nac_is_near_optimal_on_a_stationary_mdp():
    env = mdp.piecewise_mdp(S=4, A=2, T=20_000, switches=0, games=3, seed=4)
    out = nsnac.run_arms(env, nsnac.make_arms(env, ["nac"]), seed=1)
    t, R = out["t"], out["regret"][0].mean(0)
    half = np.searchsorted(t, 10_000)
    late = (R[-1] - R[half]) / (t[-1] - t[half])              # per-step regret over the second half
    first = R[np.searchsorted(t, 1000)] / 1000
    assert late < 0.03 and late < first / 3


def test_runs_are_deterministic_under_a_seed():
    env = mdp.drifting_mdp(T=2000, cycles=2, games=2, seed=1)
    arms = nsnac.make_arms(env, ["nsnac", "borl"])
    a, b = nsnac.run_arms(env, arms, seed=5), nsnac.run_arms(env, arms, seed=5)
    np.testing.assert_array_equal(a["regret"], b["regret"])
    c = nsnac.run_arms(env, arms, seed=6)
    assert not np.array_equal(a["regret"], c["regret"])
