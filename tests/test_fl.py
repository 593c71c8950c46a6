"""The synchronous loop: convergence, determinism, accounting, hooks, bad inputs."""
import pytest
import torch

from lib import fl
from lib.client import ClientHooks, LocalConfig, local_train
from lib.clock import ClientClock
from lib.models import build_model
from lib.params import FlatModel
from lib.partition import dirichlet, iid


def clients_of(train, n=6, scheme=iid, **kw):
    return fl.client_datasets(train, scheme(train.y.numpy(), n, seed=0, **kw))


def run(train, test, method="fedavg", rounds=5, seed=0, **kw):
    model = build_model("mlp", train.input_shape, 3, seed=seed, hidden=(16,))
    return fl.run_federated(model, method, clients_of(train), test, rounds=rounds, clients_per_round=3,
                            local=LocalConfig(lr=0.1, steps=5, batch_size=16), seed=seed, **kw)


def test_fedavg_converges_on_an_easy_problem(blobs):
    r = run(*blobs, rounds=10)
    assert r.records[0]["accuracy"] < 0.7
    assert r.final_accuracy > 0.95


@pytest.mark.parametrize("method", ["fedavg", "fedavgm", "fedprox", "scaffold", "fednova", "fedadam",
                                    "fedyogi", "fedexp"])
def test_every_strategy_learns_under_label_skew(blobs, method):
    train, test = blobs
    model = build_model("mlp", train.input_shape, 3, seed=0, hidden=(16,))
    kw = {"fedadam": {"server_lr": 0.05}, "fedyogi": {"server_lr": 0.05}}.get(method, {})
    r = fl.run_federated(model, method, clients_of(train, scheme=dirichlet, alpha=0.3, min_size=5), test,
                         rounds=12, clients_per_round=6, local=LocalConfig(lr=0.05, steps=5), seed=1,
                         strategy_kwargs=kw)
    assert r.final_accuracy > 0.85, (method, [x["accuracy"] for x in r.records])


def test_same_seed_same_metrics_and_other_seed_differs(blobs):
    a, b, c = run(*blobs, seed=3), run(*blobs, seed=3), run(*blobs, seed=4)
    strip = lambda r: r.frame().drop(columns=["wall_time", "eval_time"])  # noqa: E731
    assert strip(a).equals(strip(b)) and torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)


def test_bytes_and_simulated_time_accounting(blobs):
    train, test = blobs
    model = build_model("mlp", train.input_shape, 3, seed=0, hidden=(16,))
    p = FlatModel(model).numel
    clock = ClientClock(step_time=[1.0, 1.0, 1.0, 1.0, 1.0, 9.0], bandwidth=1e12)
    for method, vec in (("fedavg", 1), ("scaffold", 2)):
        r = fl.run_federated(model, method, clients_of(train), test, rounds=4, clients_per_round=6,
                             local=LocalConfig(lr=0.1, steps=2), clock=clock)
        last = r.records[-1]
        assert last["bytes_up"] == last["bytes_down"] == 4 * 6 * vec * p * 4
        assert last["sim_time"] == pytest.approx(4 * 9.0 * 2, rel=1e-6)  # slowest client, 2 steps a round


def test_steps_per_client_are_used(blobs):
    train, test = blobs
    model = build_model("mlp", train.input_shape, 3, seed=0, hidden=(16,))
    seen = {}

    class Spy(fl.get_strategy("fedavg").__class__):
        def aggregate(self, x, state, results):
            seen.update({r.client_id: r.num_steps for r in results})
            return super().aggregate(x, state, results)

    fl.run_federated(model, Spy(), clients_of(train), test, rounds=2, clients_per_round=6,
                     steps_per_client=[1, 2, 3, 4, 5, 6])
    assert seen == {i: i + 1 for i in range(6)}


def test_prox_hook_pulls_towards_the_server_point(blobs):
    train, _ = blobs
    fm = FlatModel(build_model("mlp", train.input_shape, 3, seed=0, hidden=(16,)))
    x = fm.flat()
    cfg = LocalConfig(lr=0.05, steps=20)
    free = local_train(fm, x, train, cfg, seed=0).delta.norm()
    prox = local_train(fm, x, train, cfg, ClientHooks(prox_mu=10.0), seed=0).delta.norm()
    assert prox < 0.5 * free


def test_correction_hook_shifts_every_step(blobs):
    train, _ = blobs
    fm = FlatModel(build_model("mlp", train.input_shape, 3, seed=0, hidden=(16,)))
    x = fm.flat()
    cfg = LocalConfig(lr=0.01, steps=1)
    base = local_train(fm, x, train, cfg, seed=0).delta
    shifted = local_train(fm, x, train, cfg, ClientHooks(correction=torch.ones_like(x)), seed=0).delta
    assert torch.allclose(shifted - base, torch.full_like(x, -0.01), atol=1e-6)  # one step of -lr * 1


@pytest.mark.parametrize("model", ["mlp", "cnn28"])
def test_local_step_matches_the_update_rule(model):
    """local_train against the rule in lib.client's docstring, written out with autograd.grad on the
    flat vector: g = grad + wd w + mu (w - x) + c; m = rho m + g; w = w - lr m (bit for bit)."""
    import torch.nn.functional as F
    from lib.client import batches
    from lib.data import ArrayDataset
    gen = torch.Generator().manual_seed(3)
    data = ArrayDataset(torch.randn(70, 1, 28, 28, generator=gen), torch.randint(0, 10, (70,), generator=gen),
                        [str(i) for i in range(10)], "noise")
    fm = FlatModel(build_model(model, (1, 28, 28), 10, seed=0, **({"hidden": (32,)} if model == "mlp" else {})))
    x = fm.flat()
    c = 0.01 * torch.randn(x.shape, generator=gen)
    cfg = LocalConfig(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=16, steps=7)
    ours = local_train(fm, x, data, cfg, ClientHooks(prox_mu=0.1, correction=c), seed=4).delta
    w, m = x.clone(), torch.zeros_like(x)
    for idx in batches(len(data), 16, 7, torch.Generator().manual_seed(4)):
        w.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(fm(w, data.x[idx]), data.y[idx]), w)
        w = w.detach()
        g = g + 1e-3 * w + 0.1 * (w - x) + c
        m = 0.9 * m + g
        w = w - 0.05 * m
    assert torch.equal(ours, w - x)


@pytest.mark.parametrize("kw,match", [
    ({"clients_per_round": 7}, "clients_per_round must be in 1..6"),
    ({"rounds": 0}, "rounds must be >= 1"),
    ({"steps_per_client": [1, 2]}, "steps_per_client has 2 entries for 6 clients"),
    ({"clock": ClientClock.uniform(3)}, "the clock describes 3 clients"),
])
def test_bad_run_arguments(blobs, kw, match):
    train, test = blobs
    model = build_model("mlp", train.input_shape, 3, seed=0)
    args = dict(rounds=2, clients_per_round=3) | kw
    with pytest.raises(ValueError, match=match):
        fl.run_federated(model, "fedavg", clients_of(train), test, **args)


@pytest.mark.parametrize("kw,match", [({"lr": 0.0}, "lr must be a positive"), ({"momentum": 1.0}, "momentum"),
                                      ({"epochs": None}, "local epochs"), ({"batch_size": 0}, "batch_size")])
def test_bad_local_config(kw, match):
    with pytest.raises(ValueError, match=match):
        LocalConfig(**kw)


def test_divergence_is_reported(blobs):
    with pytest.raises(FloatingPointError, match="diverged"):
        run(*blobs, method="fedavg", strategy_kwargs={"server_lr": 1e30}, rounds=3)


def test_unknown_model():
    with pytest.raises(ValueError, match="known models: mlp"):
        build_model("vgg11", (1, 28, 28), 10)


@pytest.mark.parametrize("name,shape", [("cnn28", (1, 28, 28)), ("cnn32", (3, 32, 32)), ("resnet18", (3, 32, 32))])
def test_model_shapes(name, shape):
    m = build_model(name, shape, 10, seed=0)
    assert m(torch.zeros(2, *shape)).shape == (2, 10)


def test_text_model_ignores_padding():
    m = build_model("text", (8,), 4, seed=0, vocab_size=50)
    a = torch.tensor([[5, 6, 0, 0, 0, 0, 0, 0]])
    b = torch.tensor([[5, 6, 0, 0]])  # same tokens, other padding length
    assert torch.equal(m(a), m(b)) and m(a).shape == (1, 4)


def test_full_profile_models_build_and_flatten():
    """Regressions of the full paths: MLP(hidden=None), cnn28 with trackers, ResNet-18's parameter count
    stays the same after a forward pass (its stem was registered twice)."""
    import torch
    from lib import models
    from lib.params import FlatModel
    assert models.build_model("mlp", (1, 28, 28), 10, hidden=None)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    cnn = models.build_model("cnn28", (1, 28, 28), 10, norm="track", seed=0)
    assert len(models.trackers(cnn)) == 2 and cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    net = models.build_model("resnet18", (3, 32, 32), 10, seed=0, width=8)
    fm = FlatModel(net)
    p = fm.flat().numel()
    assert p == sum(q.numel() for q in net.parameters())
    out = fm(fm.flat(), torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 10) and FlatModel(net).flat().numel() == p
