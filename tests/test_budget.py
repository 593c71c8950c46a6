"""The plan every notebook makes before any work: counting, measuring, and stopping when it won't fit."""
import pytest
import torch

from lib import budget, models


def test_sync_and_async_work_count_what_the_runners_do():
    w = budget.sync_work(runs=4, rounds=10, clients_per_round=3, steps_per_client=5, eval_examples=100)
    assert (w.steps, w.eval_examples) == (4 * 10 * 3 * 5, 4 * 11 * 100)
    a = budget.async_work(runs=2, concurrency=10, max_time=16.0, local_steps=25, eval_examples=50, evals_per_run=41,
                          num_clients=1000, client_vectors=1)
    # FedRevive's delays: mean task = 0.1 download + 1.3 train + 0.2 upload (expected over clients)
    assert a.steps == pytest.approx(2 * 10 * 16.0 / 1.6 * 25, rel=0.03)
    assert a.eval_examples == 2 * 41 * 50


def test_plan_measures_estimates_and_leaves_the_random_state_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path))
    monkeypatch.delenv("WORKBOOK_MAX_HOURS", raising=False)
    torch.manual_seed(3)
    before, before_threads = torch.random.get_rng_state(), torch.get_num_threads()
    p = budget.plan("nb", "smoke", lambda: models.build_model("mlp", (1, 28, 28), 10, hidden=(16,)), "mlp",
                    (1, 28, 28), 10, 32, budget.Work(runs=1, steps=1000, eval_examples=500, num_clients=50,
                                                    client_vectors=1), device="cpu")
    assert torch.equal(before, torch.random.get_rng_state())
    assert p.params == 28 * 28 * 16 + 16 + 16 * 10 + 10 and p.step_s > 0 and p.eval_s_per_example > 0
    # the runs are spread over the CPU's worker processes (here at most the one run)
    assert p.workers == 1 and p.hours == pytest.approx((1000 * p.step_s + 500 * p.eval_s_per_example) / 3600)
    monkeypatch.setenv("WORKBOOK_WORKERS", "2")
    four = budget.plan("nb", "smoke", lambda: models.build_model("mlp", (1, 28, 28), 10, hidden=(16,)), "mlp",
                       (1, 28, 28), 10, 32, budget.Work(runs=4, steps=1000, eval_examples=500), device="cpu")
    assert four.workers == 2 and "over 2 worker processes" in str(four)
    assert four.hours == pytest.approx((1000 * four.step_s + 500 * four.eval_s_per_example) / 3600 / 2)
    assert torch.get_num_threads() == before_threads                 # timed at one thread, then restored
    assert p.host_bytes >= 50 * 4 * p.params                       # the per-client vectors are counted
    assert (tmp_path / "smoke" / "plans" / "nb.json").exists()


def test_plan_stops_when_time_or_memory_would_not_suffice(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path))
    build = lambda: models.build_model("mlp", (1, 28, 28), 10, hidden=(16,))  # noqa: E731
    monkeypatch.setenv("WORKBOOK_MAX_HOURS", "0.001")
    huge = budget.Work(runs=1, steps=10 ** 7, eval_examples=0)
    with pytest.raises(budget.BudgetError, match="time: about .* WORKBOOK_MAX_HOURS"):
        budget.plan("nb", "full", build, "mlp", (1, 28, 28), 10, 32, huge, device="cpu")
    # quick and smoke are sized to minutes: an estimate over the limit (a busy machine's timing) only warns
    with pytest.warns(RuntimeWarning, match="nb \\(smoke\\): time: about"):
        budget.plan("nb", "smoke", build, "mlp", (1, 28, 28), 10, 32, huge, device="cpu")
    monkeypatch.setenv("WORKBOOK_MAX_HOURS", "8")
    with pytest.raises(budget.BudgetError, match="host memory"):
        budget.plan("nb", "smoke", build, "mlp", (1, 28, 28), 10, 32,
                    budget.Work(runs=1, steps=1, eval_examples=0, num_clients=10 ** 7, client_vectors=1), device="cpu")
    with pytest.raises(ValueError, match="at least one run"):
        budget.plan("nb", "smoke", build, "mlp", (1, 28, 28), 10, 32, budget.Work(runs=0, steps=1, eval_examples=0))
