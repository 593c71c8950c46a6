"""Batched clients (lib.batched) give the sequential path's results: same batches, no leakage, no skipped samples."""
import pytest
import torch

from lib import fl, partition
from lib.batched import can_batch, local_train_batched
from lib.client import ClientHooks, LocalConfig, local_train
from lib.data import ArrayDataset
from lib.models import build_model
from lib.params import FlatModel
from lib.strategies import get_strategy


def _clients(sizes, shape=(1, 8, 8), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, n in enumerate(sizes):
        y = torch.randint(classes, (n,), generator=g)
        x = torch.randn(n, *shape, generator=g) + y.view(-1, 1, 1, 1).float()
        out.append(ArrayDataset(x, y, [str(i) for i in range(classes)], f"client{c}"))
    return out


def _assert_same(seq, bat, rtol=1e-4):
    """Float tolerance, not bit equality: batched convolutions run as one grouped kernel whose summation
    order differs by CPU kernel set (2e-4 after 6 momentum steps under AVX2); a wrong batch, a skipped
    sample or another client's data moves an update by O(1)."""
    assert [r.client_id for r in seq] == [r.client_id for r in bat]
    for a, b in zip(seq, bat):
        assert (a.num_samples, a.num_steps) == (b.num_samples, b.num_steps)
        assert float((a.delta - b.delta).norm() / a.delta.norm()) < rtol
        assert a.loss == pytest.approx(b.loss, rel=rtol)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("local", [LocalConfig(lr=0.05, batch_size=16, steps=6, momentum=0.9, weight_decay=1e-3),
                                   LocalConfig(lr=1e-2, batch_size=16, steps=6, optimizer="adam"),
                                   LocalConfig(lr=0.05, batch_size=16, epochs=1)])     # steps differ by size: groups
def test_batched_clients_match_the_sequential_reference(model, local):
    # sizes not multiples of the batch: short last batches (padded and masked); one client smaller than a batch
    data = _clients([37, 5, 16, 50, 23])
    net = (build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(16,)) if model == "mlp" else
           build_model("cnn28", (1, 28, 28), 3, seed=0, channels=(4, 8), fc=(16,)))
    if model == "cnn":
        data = [ArrayDataset(torch.nn.functional.pad(d.x, (10, 10, 10, 10)), d.y, d.classes, d.name) for d in data]
    fm = FlatModel(net)
    x = fm.flat()
    hooks = [ClientHooks(prox_mu=0.1 * i, correction=0.01 * torch.randn(fm.numel, generator=torch.Generator().manual_seed(i)))
             for i in range(len(data))]
    seq = [local_train(fm, x, d, local, h, seed=10 + i, client_id=i) for i, (d, h) in enumerate(zip(data, hooks))]
    bat = local_train_batched(fm, x, data, local, hooks, seeds=[10 + i for i in range(len(data))],
                              client_ids=list(range(len(data))))
    _assert_same(seq, bat, rtol=1e-4 if model == "mlp" else 2e-3)


def test_a_client_only_ever_sees_its_own_data():
    """Clients whose labels are all one class: each batched client's update is its own sequential update, and
    moving another client's data changes nothing for it."""
    a, b, c = _clients([20, 20, 20])
    b2 = ArrayDataset(b.x * 0 + 100.0, b.y, b.classes, b.name)       # poison client 1's inputs
    fm = FlatModel(build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(8,)))
    x, local = fm.flat(), LocalConfig(lr=0.1, batch_size=8, steps=4)
    r1 = local_train_batched(fm, x, [a, b, c], local, seeds=[1, 2, 3])
    r2 = local_train_batched(fm, x, [a, b2, c], local, seeds=[1, 2, 3])
    assert torch.equal(r1[0].delta, r2[0].delta) and torch.equal(r1[2].delta, r2[2].delta)
    assert not torch.allclose(r1[1].delta, r2[1].delta)


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "scaffold", "fedadam"])
def test_run_federated_batched_equals_sequential(strategy):
    data = _clients([30, 12, 45, 27, 8, 33], seed=1)
    test = _clients([60], seed=2)[0]
    kw = {"fedprox": dict(mu=0.1)}.get(strategy, {})
    runs = [fl.run_federated(build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(16,)), strategy, data, test, rounds=4,
                             clients_per_round=4, local=LocalConfig(lr=0.05, batch_size=8, steps=5), seed=3,
                             strategy_kwargs=kw, batched=b) for b in (False, True)]
    assert float((runs[0].x - runs[1].x).norm() / runs[0].x.norm()) < 1e-4
    assert [r["round"] for r in runs[0].records] == [r["round"] for r in runs[1].records]


def test_models_with_buffers_and_own_local_updates_are_not_batched(monkeypatch):
    plain = FlatModel(build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(8,)))
    tracked = FlatModel(build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(8,), norm="track"))
    assert can_batch(plain, get_strategy("fedavg")) and not can_batch(tracked)
    assert not can_batch(plain, get_strategy("fedecado"))
    data, test = _clients([10, 10]), _clients([10])[0]
    with pytest.raises(ValueError, match="batched"):
        fl.run_federated(build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(8,), norm="track"), "fedavg", data, test,
                         rounds=1, clients_per_round=2, batched=True)
    with pytest.raises(ValueError, match="buffers"):
        local_train_batched(tracked, tracked.flat(), data, LocalConfig(steps=1))


def test_default_is_sequential_on_a_cpu_and_follows_the_environment(monkeypatch):
    import lib.batched as batched_mod
    calls = []
    real = batched_mod.local_train_batched
    monkeypatch.setattr(batched_mod, "local_train_batched", lambda *a, **k: calls.append(1) or real(*a, **k))
    data, test = _clients([10, 10]), _clients([10])[0]
    go = lambda: fl.run_federated(build_model("mlp", (1, 8, 8), 3, seed=0, hidden=(8,)), "fedavg", data, test,  # noqa: E731
                                  rounds=2, clients_per_round=2, local=LocalConfig(steps=2), device="cpu")
    monkeypatch.delenv("WORKBOOK_BATCHED", raising=False)
    go()
    assert not calls
    monkeypatch.setenv("WORKBOOK_BATCHED", "1")
    go()
    assert len(calls) == 2
