"""The two-layer CNN model of "Initialization Matters" (arXiv 2502.08024).

RECONSTRUCTED from the benign-overfitting line (Cao et al. 2022; Kou et al. 2023),
which the paper's abstract builds on; the notebook says so where it relies on it.

Data: two patches x = [y mu, xi], y in {-1, +1}, xi ~ N(0, sigma_p^2 (I - mu mu^T / ||mu||^2)).
Model: F_j(W, x) = (1/m) sum_r sum_p ReLU(<w_{j,r}, x^(p)>) for j in {+1, -1};
       f = F_{+1} - F_{-1};  logistic loss log(1 + exp(-y f)).
The logistic loss on f is cross-entropy on the logits [F_{-1}, F_{+1}], so the
model is an ordinary module (class 0 = label -1, class 1 = label +1) and FedAvg
runs through the shared loop (full-batch local GD = batch size = client size).

A filter w_{j,r} is *aligned* iff <w_{j,r}, j mu> > 0: it is active on its own
class's signal patch. The paper's claim: heterogeneity harms learning only
through misaligned filters, and pre-training leaves fewer of them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .data import ArrayDataset


class TwoLayerCNN(nn.Module):
    def __init__(self, d: int, m: int, sigma0: float = 0.01, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(sigma0 * torch.randn(2, m, d, generator=g))  # W[0]: class -1, W[1]: class +1
        self.m = m

    def forward(self, x):  # x: [n, patches, d]
        act = torch.relu(torch.einsum("jrd,npd->njrp", self.W, x))
        return act.sum(dim=(2, 3)) / self.m  # logits [F_{-1}, F_{+1}]


def signal(d: int, norm: float) -> torch.Tensor:
    mu = torch.zeros(d)
    mu[0] = norm
    return mu


def related_signal(mu: torch.Tensor, cosine: float) -> torch.Tensor:
    """A source-task signal mu' with ||mu'|| = ||mu|| and cos(mu, mu') = ``cosine``."""
    if not -1 <= cosine <= 1:
        raise ValueError(f"cosine must be in [-1, 1], got {cosine}")
    u = torch.zeros_like(mu)
    u[1] = mu.norm()
    return cosine * mu + math.sqrt(1 - cosine ** 2) * u


def make_data(mu: torch.Tensor, labels: torch.Tensor, sigma_p: float, seed: int) -> ArrayDataset:
    """Samples x = [y mu, xi] for the given labels (0 -> y = -1, 1 -> y = +1); noise orthogonal to mu."""
    g = torch.Generator().manual_seed(seed)
    y = labels.float() * 2 - 1
    xi = sigma_p * torch.randn(len(labels), mu.numel(), generator=g)
    unit = mu / mu.norm()
    xi = xi - (xi @ unit)[:, None] * unit[None, :]
    x = torch.stack([y[:, None] * mu[None, :], xi], dim=1)
    return ArrayDataset(x, labels.long(), ["y=-1", "y=+1"], "two_patch")


def balanced_labels(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.arange(n) % 2)[torch.randperm(n, generator=g)]


def alignment(W: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """<w_{j,r}, j mu> for every filter: [2, m] (row 0: class -1, row 1: class +1)."""
    sign = torch.tensor([-1.0, 1.0])[:, None]
    return sign * torch.einsum("jrd,d->jr", W, mu)


def misaligned_fraction(W: torch.Tensor, mu: torch.Tensor) -> float:
    return float((alignment(W, mu) <= 0).float().mean())


INITS = {"random": None, "pre-trained, cos 0.8": 0.8, "pre-trained, cos 0 (control)": 0.0}
COSINES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)   # the alignment sweep: cos(mu, mu') of the pre-training signal


def alignment_inits(cosines=COSINES) -> dict:
    """:data:`INITS` plus a pre-trained init at each cosine of the sweep. Cosines 0.8 and 0 keep their
    :data:`INITS` names, so those runs are the same runs as the headline ones (same seeds, same data)."""
    names = {cos: name for name, cos in INITS.items() if cos is not None}
    out = dict(INITS)
    for cos in cosines:
        out.setdefault(names.get(float(cos), f"pre-trained, cos {cos:g}"), float(cos))
    return out


def synthetic_experiment(seed: int, dim: int = 400, filters: int = 20, clients: int = 10, per_client: int = 20,
                         local_steps: int = 30, rounds: int = 10, mu_norm: float = 1.0, sigma_p: float = 1.0,
                         sigma_0: float = 0.05, inits: dict | None = None):
    """One seed of the notebook's synthetic study: FedAvg with full-batch local GD from each init
    (random; pre-trained on a source signal at the given cosine to mu, ``None`` = random), under IID
    and single-label (label skew) clients. Returns the tidy per-round frame with ``misaligned`` and
    ``train_error`` tracked every round."""
    from . import fl, partition
    from .client import LocalConfig, evaluate, train_centrally
    from .params import FlatModel
    inits = INITS if inits is None else inits
    s = seed
    local = LocalConfig(lr=0.5, steps=local_steps, batch_size=per_client)       # full-batch local GD
    mu = signal(dim, mu_norm)
    labels = balanced_labels(clients * per_client, seed=100 + s)
    train = make_data(mu, labels, sigma_p, seed=200 + s)
    test = make_data(mu, balanced_labels(2000, 300 + s), sigma_p, seed=400 + s)
    splits = {"IID": partition.iid(labels.numpy(), clients, seed=s),
              "label skew": partition.shards(labels.numpy(), clients, shards_per_client=1, seed=s)}
    frames = []
    for init, cos in inits.items():
        fm = FlatModel(TwoLayerCNN(dim, filters, sigma_0, seed=500 + s))
        w0 = fm.flat()
        if cos is not None:
            source = make_data(related_signal(mu, cos), balanced_labels(400, 600 + s), sigma_p, 700 + s)
            w0 = train_centrally(fm, w0, source, LocalConfig(lr=0.5, steps=100, batch_size=400), seed=s)

        def track(x, fm=fm):
            return {"misaligned": misaligned_fraction(fm.unflatten(x)["W"], mu),
                    "train_error": 1 - evaluate(fm, x, train)[0]}
        for split, part in splits.items():
            run = fl.run_federated(fm, "fedavg", fl.client_datasets(train, part), test, rounds=rounds,
                                   clients_per_round=clients, local=local, seed=s, x0=w0, metrics=track, label=init)
            frames.append(run.frame().assign(init=init, split=split, test_error=lambda d: 1 - d.accuracy))
    import pandas as pd
    return pd.concat(frames, ignore_index=True)


def pretrain(model: nn.Module, data: ArrayDataset, lr: float, epochs: int, seed: int, batch_size: int = 32,
             device=None) -> tuple[torch.Tensor, float]:
    """Train ``model`` centrally on the source task (the "pre-trained" init of Part 2) on ``device``
    (default: the GPU when present). Returns the flat weights on the CPU and the training accuracy."""
    from .client import LocalConfig, evaluate, train_centrally
    from .fl import place
    fm, _, data, _ = place(model, [], data, device)
    w = train_centrally(fm, fm.flat(), data, LocalConfig(lr=lr, batch_size=batch_size, epochs=epochs), seed=seed)
    return w.cpu(), evaluate(fm, w, data)[0]


def trunk_features(model: nn.Module, data: ArrayDataset, device=None, batch_size: int = 1024) -> torch.Tensor:
    """The frozen trunk's features of every example: the input of ``model``'s last ``nn.Linear`` layer
    (its classifier), computed in eval mode without gradients. Returned on the CPU, ``[n, features]``."""
    from .utils import default_device
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("model has no Linear layer: no classifier to probe under")
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device)
    grabbed = []
    hook = last[-1].register_forward_hook(lambda mod, inp, out: grabbed.append(inp[0].detach().flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(data), batch_size):
                model(data.x[i: i + batch_size].to(device))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(grabbed)


def linear_probe(model: nn.Module, train: ArrayDataset, test: ArrayDataset, *, l2: float = 1e-4,
                 max_iter: int = 300, seed: int = 0, device=None) -> float:
    """Linear-probe accuracy: a fresh linear classifier trained centrally on ``train`` on top of the frozen
    trunk of ``model`` (:func:`trunk_features`), evaluated on ``test``. The standard test that a trunk's
    features transfer to a task: compared between a pre-trained and a random trunk of the same network.

    The features are standardised with the training set's mean and standard deviation (so a trunk's
    scale does not decide the comparison); the head is multinomial logistic regression with an L2 penalty
    ``l2`` on its weights, fitted full-batch by L-BFGS from a seeded start (deterministic under ``seed``).
    The trunk is not changed."""
    f_tr, f_te = trunk_features(model, train, device), trunk_features(model, test, device)
    y_tr, y_te = train.y.cpu().long(), test.y.cpu().long()
    k = int(max(y_tr.max(), y_te.max())) + 1
    mean, sd = f_tr.mean(0), f_tr.std(0).clamp_min(1e-6)
    f_tr, f_te = (f_tr - mean) / sd, (f_te - mean) / sd
    g = torch.Generator().manual_seed(seed)
    W = (0.01 * torch.randn(f_tr.shape[1], k, generator=g)).requires_grad_()
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(f_tr @ W + b, y_tr) + 0.5 * l2 * (W ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return float(((f_te @ W + b).argmax(1) == y_te).float().mean())
