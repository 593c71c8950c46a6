import math

import pandas as pd
import pytest

from lib.records import final_metric, time_to_target


def test_final_metric_means_the_last_evaluations_per_group_and_seed():
    df = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 4, "seed": [0, 0, 1, 1] * 2, "round": [0, 1] * 4,
                       "accuracy": [0.0, 0.4, 0.0, 0.6, 0.0, 0.1, 0.0, 0.3]})
    fm = final_metric(df, last=1)
    assert math.isclose(fm["a"], 0.5) and math.isclose(fm["b"], 0.2)


def test_final_metric_orders_async_records_by_simulated_time():
    df = pd.DataFrame({"method": ["a"] * 3, "sim_time": [2.0, 0.0, 1.0], "accuracy": [0.9, 0.1, 0.5]})
    assert math.isclose(final_metric(df, last=1)["a"], 0.9)


def test_time_to_target_interpolates_the_crossing_or_censors():
    df = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "sim_time": [0, 1, 2] * 2,
                       "accuracy": [0.1, 0.8, 0.9, 0.1, 0.2, 0.3]})
    t = time_to_target(df, 0.75, x="sim_time").set_index("method").iloc[:, 0]
    # 0.1 -> 0.8 between t = 0 and 1: 0.75 is reached at 0.65 / 0.7 of the way
    assert math.isclose(t["a"], 0.65 / 0.7) and math.isnan(t["b"])
    grid = time_to_target(df, 0.75, x="sim_time", interpolate=False).set_index("method").iloc[:, 0]
    assert grid["a"] == 1.0


def test_seed_values_pairs_arms_by_seed():
    from lib.records import final_per_seed, seed_values
    df = pd.DataFrame({"method": ["a", "a", "b", "b"], "seed": [1, 0, 0, 1], "round": [1] * 4,
                       "accuracy": [0.6, 0.5, 0.2, 0.3]})
    fin = final_per_seed(df, last=1)
    assert seed_values(fin, method="a").tolist() == [0.5, 0.6] and seed_values(fin, method="b").tolist() == [0.2, 0.3]
    import pytest
    with pytest.raises(ValueError, match="index levels"):
        seed_values(fin)


def _square_seeded(i):
    import torch
    return float(torch.randn(3, generator=torch.Generator().manual_seed(i)).pow(2).sum())


def test_parallel_map_keeps_order_and_matches_serial():
    from lib.utils import parallel_map
    jobs = [5, 1, 4, 2]
    serial = parallel_map(_square_seeded, jobs, workers=1)
    assert serial == [_square_seeded(j) for j in jobs]
    assert parallel_map(_square_seeded, jobs, workers=2) == serial
    import pytest
    with pytest.raises(ValueError, match="workers"):
        parallel_map(_square_seeded, jobs, workers=0)


def test_cached_runs_once_and_reuses_the_stored_result(tmp_path, monkeypatch):
    from lib import records
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path))
    calls = []
    fn = lambda: calls.append(1) or {"acc": 0.5}  # noqa: E731
    assert records.cached("nb", "run-a", "quick", fn) == {"acc": 0.5}
    assert records.cache_exists("nb", "run-a", "quick")
    assert records.cached("nb", "run-a", "quick", fn) == {"acc": 0.5} and len(calls) == 1
    records.cached("nb", "run-a", "quick", fn, enabled=False)
    assert len(calls) == 2


def test_outcomes_and_their_summary_censor_at_the_horizon():
    from lib.records import outcome_summary, outcomes
    df = pd.DataFrame({"method": ["a"] * 6, "seed": [0, 0, 0, 1, 1, 1], "sim_time": [0, 1, 2] * 2,
                       "accuracy": [0.1, 0.5, 0.9, 0.1, 0.2, 0.3]})
    o = outcomes(df, 0.7, last=1)
    assert math.isclose(o.loc[("a", 0), "time_to_target"], 1.5) and math.isnan(o.loc[("a", 1), "time_to_target"])
    s = outcome_summary(o, horizon=10).loc["a"]
    assert math.isclose(s.time_to_target, (1.5 + 10) / 2) and s.censored == 1
    assert math.isclose(s.final_accuracy, 0.6) and math.isclose(s.final_sd, pd.Series([0.9, 0.3]).std())


def _double_and_mark(job):
    import os
    open(os.path.join(os.environ["MARK_DIR"], f"ran-{job}"), "w").close()
    return job * 2


def test_cached_map_resumes_only_missing_runs_and_keys_on_the_whole_configuration(tmp_path, monkeypatch):
    from lib import records
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path / "results"))
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MARK_DIR", str(marks))
    cfg = {"clients": 10, "rounds": 5}
    keys = [records.config_key(cfg, j) for j in [1, 2, 3]]
    full = records.cached_map(_double_and_mark, [1, 2, 3], "nb", "full", keys)
    assert list(full.values()) == [2, 4, 6] and len(list(marks.iterdir())) == 3
    # an interrupted run: one stored result is missing; re-executing computes only that one, same results
    records.cache_path("nb", keys[1], "full").unlink()
    for m in marks.iterdir():
        m.unlink()
    assert records.cached_map(_double_and_mark, [1, 2, 3], "nb", "full", keys) == full
    assert [m.name for m in marks.iterdir()] == ["ran-2"]
    # one size changed: every key changes, nothing is reused
    assert not set(records.config_key(dict(cfg, clients=11), j) for j in [1, 2, 3]) & set(keys)
    import pytest
    with pytest.raises(ValueError, match="distinct key"):
        records.cached_map(_double_and_mark, [1, 2], "nb", "full", ["a", "a"])


def test_on_grid_interpolates_each_run_at_common_points_and_leaves_out_points_beyond_it():
    import pandas as pd
    from lib.records import on_grid
    df = pd.DataFrame({"method": ["a"] * 3 + ["a"] * 2, "seed": [0, 0, 0, 1, 1],
                       "uploads": [0, 10, 20, 0, 8], "accuracy": [0.1, 0.5, 0.7, 0.2, 0.6]})
    g = on_grid(df, [0, 5, 10, 15], x="uploads")
    s0 = g[g.seed == 0].set_index("uploads").accuracy
    assert s0.to_dict() == pytest.approx({0.0: 0.1, 5.0: 0.3, 10.0: 0.5, 15.0: 0.6})
    s1 = g[g.seed == 1].set_index("uploads").accuracy
    assert list(s1.index) == [0.0, 5.0] and s1[5.0] == pytest.approx(0.2 + 0.4 * 5 / 8)   # 10, 15 beyond 8
