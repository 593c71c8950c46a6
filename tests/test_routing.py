"""ProxRouter's pieces against their definitions: tilted weights, the two routers, AUC_n, Jaccard."""
import numpy as np
import pytest
import torch

from lib.routing import (KMeansRouter, KNNRouter, accuracy_cost_curve, auc_n, cosine_distance, jaccard_top, kmeans,
                         tilted_weights)


def test_tilted_weights_solve_the_kl_regularized_problem():
    phi = torch.tensor([[0.1, 0.5, 0.9]], dtype=torch.float64)
    p = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    tau = 0.3
    w = tilted_weights(phi, p, tau)
    want = p * torch.exp(-phi / tau)
    assert torch.allclose(w, want / want.sum())
    # the objective sum w phi + tau KL(w || p) is minimal at w among random points of the simplex
    f = lambda v: float((v * phi).sum() + tau * (v * (v / p).log()).sum())  # noqa: E731
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        v = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample()
        assert f(w) <= f(v.unsqueeze(0)) + 1e-12
    assert torch.allclose(tilted_weights(phi, p, float("inf")), p)                 # tau -> inf: the prior
    assert tilted_weights(phi, p, 1e-4).argmax() == 0                                # tau -> 0: the nearest
    with pytest.raises(ValueError):
        tilted_weights(phi, p, 0.0)


def _clusters(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(3, 8)
    lab = torch.arange(n) % 3
    x = centers[lab] + 0.05 * torch.randn(n, 8, generator=g)
    # two models: model 0 is right on cluster 0 only, model 1 on clusters 1 and 2
    correct = torch.stack([(lab == 0).double(), (lab != 0).double()], 1)
    return x, lab, correct


def test_kmeans_finds_separated_clusters_and_the_router_picks_the_right_model():
    x, lab, correct = _clusters()
    c, a = kmeans(x, 3, seed=0)
    assert len(set(zip(lab.tolist(), a.tolist()))) == 3                            # a bijection of labels
    r = KMeansRouter(x, correct, k=3, seed=0)
    assert torch.allclose(r.prior.sum(), torch.tensor(1.0, dtype=torch.float64))
    xq, labq, _ = _clusters(30, seed=1)
    for tau in (0, 0.05, 1.0):
        choice = r.utilities(xq, tau).argmax(1)
        assert torch.equal(choice, (labq != 0).long())


def test_knn_router_base_is_plain_averaging_over_the_k_nearest():
    x, lab, correct = _clusters()
    r = KNNRouter(x, correct, k=5)
    q = x[:4] + 0.01
    near = cosine_distance(q, x).topk(5, dim=1, largest=False).indices
    assert torch.allclose(r.utilities(q, float("inf")), correct[near].mean(1))
    assert torch.allclose(r.utilities(q, 1e-4), correct[near[:, 0]])               # hard: the nearest one


def test_accuracy_cost_curve_and_auc_n():
    correct = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    costs = torch.tensor([1.0, 10.0])
    est = correct.clone()                                                           # an oracle router
    c, a = accuracy_cost_curve(est, correct, costs, lambdas=[0.0, 1.0])
    # lambda 0: ties go to the first (cheap) model, so the oracle pays 10 only where the cheap one fails:
    # mean cost (1 + 10 + 10 + 1) / 4 = 5.5 at accuracy 1; lambda 1: always the cheap model, accuracy 0.5
    assert list(c) == [1.0, 5.5] and list(a) == [0.5, 1.0]
    # the curve's upper envelope is 0.5 up to cost 10 and 1.0 at 10: AUC_n ~ 50% of the range
    assert auc_n(np.array([1.0, 10.0]), np.array([0.5, 1.0]), (1.0, 10.0)) == pytest.approx(50.0, abs=0.2)
    assert auc_n(np.array([1.0]), np.array([1.0]), (1.0, 10.0)) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        auc_n(c, a, (2.0, 2.0))


def test_jaccard_top():
    a, b = np.array([0.9, 0.8, 0.1, 0.2]), np.array([0.9, 0.1, 0.8, 0.2])
    assert jaccard_top(a, b, 2) == pytest.approx(1 / 3)
    assert jaccard_top(a, a, 3) == 1.0
