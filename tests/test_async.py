"""The asynchronous engine and methods: exact schedules, hand-computed aggregation, equivalences."""
import math

import numpy as np
import pytest
import torch

from lib import fl
from lib.asyncfl import DelayModel, Update, get_async_strategy, run_async
from lib.asyncfl.staleness import fedrevive_beta, hinge, polynomial
from lib.client import LocalConfig
from lib.models import build_model
from lib.partition import iid

X = torch.tensor([1.0, 1.0], dtype=torch.float64)


def upd(cid, delta, tau=0, x_sent=(0.0, 0.0), n=1, dispatch=0.0, arrival=1.0):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return Update(cid, t(delta), t(x_sent), 0, tau, n, 1, 0.1, 0.0, dispatch, arrival, arrival - dispatch)


def close(a, b):
    return torch.allclose(a, torch.tensor(b, dtype=torch.float64), atol=1e-12)


def mlp(train, seed=0):
    return build_model("mlp", train.input_shape, 3, seed=seed, hidden=(16,))


def test_staleness_and_event_order_on_a_hand_built_schedule(blobs):
    train, _ = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 2, seed=0))
    delays = DelayModel.fixed([1.0, 2.5])       # client 0: 1.0 per task, client 1: 2.5
    r = run_async(mlp(train), get_async_strategy("fedasync"), clients, None, delays, concurrency=2,
                  local=LocalConfig(steps=25), max_time=5.0, train=False)
    got = [(u["arrival_time"], u["client"], u["staleness"]) for u in r.updates]
    # t=1 c0 (v0); t=2 c0 (v1); t=2.5 c1 (from v0, now v2: tau 2); t=3 c0 (from v2, tau 1);
    # t=4 c0 (v4); t=5 c1 (dispatched t=2.5 on v3, tau 2) before c0 (dispatched t=4 on v5, tau 1)
    assert got == [(1.0, 0, 0), (2.0, 0, 0), (2.5, 1, 2), (3.0, 0, 1), (4.0, 0, 0), (5.0, 1, 2), (5.0, 0, 1)]
    assert [u["version"] for u in r.updates] == list(range(1, 8))
    p4 = 4 * sum(q.numel() for q in mlp(train).parameters())
    assert r.records[-1]["bytes_up"] == 7 * p4                 # seven uploads
    assert r.records[-1]["bytes_down"] == (2 + 7) * p4         # two initial dispatches + one per upload


def test_staleness_functions_by_hand():
    assert polynomial(3, 0.5) == 0.5 and hinge(4) == 1.0 and math.isclose(hinge(6, 10, 4), 1 / 21)
    assert fedrevive_beta(0) == 0.0 and math.isclose(fedrevive_beta(75), 0.5)
    assert fedrevive_beta(150) == 1.0 and fedrevive_beta(400) == 1.0
    # the authors' linear and stepwise (issue 38): 0.005 x 75; b = 1.5 x 100 / 1 = 150, 80 in [b/2, 3b/4)
    assert math.isclose(fedrevive_beta(75, kind="linear"), 0.375)
    assert fedrevive_beta(80, kind="stepwise", concurrency=100) == 0.5
    with pytest.raises(ValueError, match="unknown beta schedule"):
        fedrevive_beta(1, kind="sigmoid")


def test_fedasync_mixes_models():
    s = get_async_strategy("fedasync", mixing=0.5, staleness_fn="polynomial", poly_a=0.5)
    x, _ = s.aggregate(X, {}, [upd(0, [2.0, 0.0], tau=3)])      # a = 0.5 * 4^-0.5 = 0.25
    assert close(x, [1.25, 0.75])


def test_fedbuff_weights_staleness():
    s = get_async_strategy("fedbuff", buffer_size=2, server_lr=2.0)
    x, _ = s.aggregate(X, s.init(X, 2), [upd(0, [1.0, 0.0], tau=0), upd(1, [0.0, 4.0], tau=3)])
    assert close(x, [2.0, 3.0])                                # D = ([1,0] + 0.5 [0,4]) / 2


def test_afl_dw_uses_fedrevive_beta():
    s = get_async_strategy("afl_dw", server_lr=0.1)
    assert close(s.aggregate(X, {}, [upd(0, [2.0, 2.0], tau=75)])[0], [1.1, 1.1])   # (1 - 1/2) * 0.1 * 2
    assert close(s.aggregate(X, {}, [upd(0, [2.0, 2.0], tau=0)])[0], [1.2, 1.2])
    assert close(s.aggregate(X, {}, [upd(0, [2.0, 2.0], tau=150)])[0], [1.0, 1.0])


def test_ca2fl_calibrates_with_cached_updates():
    s = get_async_strategy("ca2fl", buffer_size=2)
    st = s.init(X, 3)
    x, st = s.aggregate(X, st, [upd(0, [1.0, 0.0]), upd(1, [0.0, 2.0])])
    assert close(x, [1.5, 2.0])                                # empty cache: plain mean
    x2, st = s.aggregate(X, st, [upd(0, [3.0, 0.0])])
    assert close(x2, [1.0 + 1 / 3 + 2.0, 1.0 + 2 / 3])         # (h_0 + h_1) / N=3 + ([3,0] - [1,0])
    assert close(st["h"][0], [3.0, 0.0])


def test_fedstale_mixes_fresh_and_stale():
    s = get_async_strategy("fedstale", buffer_size=1, beta=0.5)
    st = s.init(X, 4)
    st["h"].put(0, torch.tensor([2.0, 0.0], dtype=torch.float64))
    x, _ = s.aggregate(X, st, [upd(1, [0.0, 2.0])])
    # p_1 = (1 + 1) / (1 + 4/1) = 0.4: x + 0.5 * [2,0]/4 + [0,2] / 0.4 / 4
    assert close(x, [1.25, 2.25])


def test_client_store_keeps_vectors_on_the_host_and_their_sum_current():
    from lib.clientstore import ClientStore
    store = ClientStore(torch.zeros(3, dtype=torch.float64))
    assert close(store[7], [0.0, 0.0, 0.0]) and 7 not in store
    store.put(1, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    store.put(2, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    store.put(1, torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64))     # replaces client 1's vector
    assert close(store.sum, [2.0, 1.0, 0.0]) and len(store) == 2
    assert all(v.device.type == "cpu" for v in store._v.values()) and store.nbytes() == 2 * 3 * 8
    v = torch.ones(3, dtype=torch.float64)
    store.put(3, v)
    v += 1                                                               # a stored vector is a copy
    assert close(store[3], [1.0, 1.0, 1.0])


def test_fedcompass_group_mixing():
    s = get_async_strategy("fedcompass", buffer_size=2, mixing=0.8)
    x, _ = s.aggregate(X, s.init(X, 2), [upd(0, [3.0, 1.0], tau=0), upd(1, [1.0, 5.0], tau=3)])
    assert close(x, [1.8, 1.8])                                # a = [0.4, 0.2]


def test_fedcompass_assigns_more_steps_to_faster_clients():
    s = get_async_strategy("fedcompass", q_ref=20, q_min=5, q_max=40)
    st = s.init(X, 3)
    for cid, per_step in ((0, 0.1), (1, 0.2), (2, 0.4)):
        s.on_arrival(st, Update(cid, X, X, 0, 0, 1, 10, 0.1, 0.0, 0.0, 1.0, per_step * 10))
    assert [s.dispatch(st, c, 0.0).num_steps for c in range(3)] == [40, 20, 10]
    assert s.dispatch(st, 7, 0.0).num_steps == 20             # unknown client: q_ref


def test_fedfix_weights_by_windows_waited():
    s = get_async_strategy("fedfix", period=1.0)
    x, _ = s.aggregate(X, {"n": 4}, [upd(0, [4.0, 0.0], dispatch=0.0, arrival=2.5)])
    assert close(x, [4.0, 1.0])                                # ceil(2.5) / 4 = 0.75


def test_async_localsgd_delayed_nesterov():
    s = get_async_strategy("async_localsgd", server_lr=1.0, server_momentum=0.5, delay=2)
    st = s.init(X, 2)
    x, st = s.aggregate(X, st, [upd(0, [2.0, 0.0])])
    assert close(x, [2.0, 1.0])                                # plain step D / N
    x, st = s.aggregate(x, st, [upd(1, [0.0, 2.0])])
    assert close(st["m"], [1.0, 1.0]) and close(x, [2.5, 2.5])  # + D/N, then + eta beta m


def test_fedasmu_first_update_weight():
    s = get_async_strategy("fedasmu", mixing=0.6)
    x, st = s.aggregate(X, s.init(X, 1), [upd(0, [2.0, 0.0], tau=3)])   # a = 0.6 / 2 = 0.3, r = 1
    assert close(x, [1.3, 0.7])


def test_sync_fedavg_weights_by_samples():
    s = get_async_strategy("fedavg_sync", buffer_size=2)
    x, _ = s.aggregate(X, {}, [upd(0, [1.0, 0.0], n=1), upd(1, [0.0, 2.0], n=3)])
    assert close(x, [1.25, 2.5])


def test_equal_speeds_and_full_buffer_reproduce_synchronous_fedavg(blobs):
    train, test = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 6, seed=0))   # equal sizes: 100 each
    local = LocalConfig(lr=0.1, steps=5)
    sync = fl.run_federated(mlp(train), "fedavg", clients, test, rounds=4, clients_per_round=6, local=local, seed=3)
    for method in ("fedbuff", "fedavg_sync"):
        a = run_async(mlp(train), get_async_strategy(method, buffer_size=6), clients, test, DelayModel.fixed([1.0] * 6),
                      concurrency=6, local=local, seed=3, max_versions=4)
        assert a.timing["versions"] == 4 and torch.allclose(a.x, sync.x, atol=1e-6), method
        assert {u["staleness"] for u in a.updates} == {0}


def test_async_determinism(blobs):
    train, test = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 8, seed=0))
    run = lambda seed: run_async(mlp(train), get_async_strategy("fedbuff", buffer_size=3), clients, test,  # noqa: E731
                                 DelayModel("fedrevive", 8, seed=1), concurrency=4,
                                 local=LocalConfig(lr=0.1, steps=3), seed=seed, max_versions=6)
    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a.x, b.x) and a.updates == b.updates
    assert not torch.equal(a.x, c.x)


def test_delay_models_are_seeded_and_coupling_reorders_speeds():
    a, b = DelayModel("fedrevive", 50, seed=2), DelayModel("fedrevive", 50, seed=2)
    assert np.array_equal(a.train_mean, b.train_mean) and set(a.train_mean) <= {1.0, 1.3, 1.6}
    order = np.arange(50)[::-1]
    c = DelayModel("lognormal", 50, seed=0).couple_to_data(order)
    assert np.all(np.diff(c.train_mean[order]) >= 0)            # last in the order = slowest


@pytest.mark.parametrize("call,match", [
    (lambda: DelayModel("gamma", 5), "unknown delay model 'gamma'; known: fedrevive"),
    (lambda: DelayModel.fixed([1.0, -0.5]), "non-negative"),
    (lambda: get_async_strategy("fedbuf"), "unknown asynchronous method 'fedbuf'; known:"),
    (lambda: get_async_strategy("fedbuff", staleness=2), "has no hyperparameter"),
    (lambda: get_async_strategy("fedasync", mixing=1.5), "mixing must be in"),
    (lambda: get_async_strategy("fedcompass", q_min=50), "q_min <= q_ref <= q_max"),
])
def test_bad_async_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_buffer_larger_than_concurrency_is_rejected(blobs):
    train, test = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 6, seed=0))
    with pytest.raises(ValueError, match="buffer_size 8 is larger than the concurrency 4"):
        run_async(mlp(train), get_async_strategy("fedbuff", buffer_size=8), clients, test,
                  DelayModel.fixed([1.0] * 6), concurrency=4, max_versions=2)


def test_fedasmu_device_mixing_pulls_towards_the_fresh_model(blobs):
    train, _ = blobs
    from lib.params import FlatModel
    fm = FlatModel(mlp(train))
    x_sent = fm.flat()
    fresh = x_sent + 1.0                                        # a much newer global model
    local = LocalConfig(lr=0.05, steps=4)
    none = get_async_strategy("fedasmu", device_mixing=0.0).local_update(fm, x_sent, train, local, None, 1, 0, fresh, 4)
    full = get_async_strategy("fedasmu", device_mixing=1.0).local_update(fm, x_sent, train, local, None, 1, 0, fresh, 4)
    assert (none - 0).abs().mean() < 0.5                        # trained from its own snapshot only
    assert ((full - (fresh - x_sent)).abs().mean()) < 0.5       # restarted halfway from the fresh model


@pytest.mark.parametrize("method,kw,delays", [
    ("fedbuff", {"buffer_size": 3}, "fedrevive"),          # many tasks in flight on one version
    ("fedasync", {}, "fedrevive"),                         # a new version at every upload: groups of one or two
    ("fedcompass", {}, "fedrevive"),                       # hooks set per-client step counts: grouped by steps
])
def test_batched_inflight_clients_match_the_sequential_engine(blobs, method, kw, delays, monkeypatch):
    """Batching the tasks in flight on the same version changes no upload: same arrivals, staleness and
    (within float tolerance) the same models, with the same per-client seeds."""
    import lib.batched as batched_mod
    sizes, real = [], batched_mod.local_train_batched
    monkeypatch.setattr(batched_mod, "local_train_batched",
                        lambda fm, x, ds, *a, **k: sizes.append(len(ds)) or real(fm, x, ds, *a, **k))
    train, test = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 12, seed=0))
    runs = {}
    for batched in (False, True):
        runs[batched] = run_async(mlp(train), get_async_strategy(method, **kw), clients, test,
                                  DelayModel(delays, 12, seed=1, ref_steps=5), concurrency=6,
                                  local=LocalConfig(lr=0.1, steps=5, batch_size=16), seed=3, max_versions=12,
                                  batched=batched, batch_clients=4)
    a, b = runs[False], runs[True]
    assert [(u["client"], u["staleness"], u["arrival_time"]) for u in a.updates] == \
           [(u["client"], u["staleness"], u["arrival_time"]) for u in b.updates]
    assert float((a.x - b.x).norm() / a.x.norm()) < 1e-5
    assert [r["accuracy"] for r in a.records] == pytest.approx([r["accuracy"] for r in b.records], abs=0.01)
    assert max(sizes) == 4 and sum(sizes) >= 12            # tasks really were trained together, capped at 4


def test_batched_engine_refuses_what_it_cannot_batch(blobs):
    train, _ = blobs
    clients = fl.client_datasets(train, iid(train.y.numpy(), 4, seed=0))
    with pytest.raises(ValueError, match="batched clients need"):
        run_async(mlp(train), get_async_strategy("fedasmu"), clients, None, DelayModel.fixed([1.0] * 4), 2,
                  local=LocalConfig(steps=2), max_versions=2, batched=True)
    with pytest.raises(ValueError, match="batch_clients must be >= 1"):
        run_async(mlp(train), get_async_strategy("fedbuff", buffer_size=2), clients, None,
                  DelayModel.fixed([1.0] * 4), 2, local=LocalConfig(steps=2), max_versions=2, batched=True,
                  batch_clients=0)


def test_a_validation_split_is_evaluated_beside_the_test_set_and_changes_nothing(blobs):
    train, test = blobs
    rest, val = train.split_validation(0.25, seed=0)
    clients = fl.client_datasets(rest, iid(rest.y.numpy(), 6, seed=0))
    run = lambda v: run_async(mlp(rest), get_async_strategy("fedbuff", buffer_size=3), clients, test,  # noqa: E731
                              DelayModel("fedrevive", 6, seed=1), concurrency=3, local=LocalConfig(lr=0.1, steps=3),
                              seed=2, max_versions=6, eval_every=2, validation=v)
    a, b = run(val), run(None)
    fa, fb = a.frame(), b.frame()
    assert "val_accuracy" in fa and "val_accuracy" not in fb
    assert fa.val_accuracy.between(0, 1).all() and fa.accuracy.tolist() == fb.accuracy.tolist()
    assert torch.equal(a.x, b.x)
