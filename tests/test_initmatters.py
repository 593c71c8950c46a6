"""lib.initmatters: the linear probe (the premise of notebook 01's practical rows) and the alignment sweep."""
import torch
from torch import nn

from lib import initmatters as im
from lib.data import ArrayDataset


def _toy(n, seed):
    """Three classes decided by the largest of x[:3]; x[3:] is noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    return ArrayDataset(x, x[:, :3].argmax(1), ["a", "b", "c"], "toy")


def _trunk(cols):
    """A one-layer trunk that passes the listed input coordinates on, then a classifier."""
    lin = nn.Linear(20, len(cols), bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[torch.arange(len(cols)), torch.tensor(cols)] = 1.0
    return nn.Sequential(lin, nn.Linear(len(cols), 3))


def test_probe_prefers_a_trunk_whose_features_separate_the_classes():
    train, test = _toy(600, 0), _toy(600, 1)
    good = im.linear_probe(_trunk([0, 1, 2]), train, test, device="cpu")
    bad = im.linear_probe(_trunk([10, 11, 12]), train, test, device="cpu")   # noise coordinates only
    assert good > 0.9
    assert bad < 0.45          # chance is 1/3
    assert good - bad > 0.4


def test_probe_is_deterministic_and_leaves_the_trunk_alone():
    train, test = _toy(300, 2), _toy(300, 3)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in net.parameters()]
    a = im.linear_probe(net, train, test, seed=5, device="cpu")
    b = im.linear_probe(net, train, test, seed=5, device="cpu")
    assert a == b
    assert all(torch.equal(p0, p) for p0, p in zip(before, net.parameters()))
    assert im.trunk_features(net, train, device="cpu").shape == (300, 16)   # the classifier's input


def test_alignment_inits_keep_the_headline_runs_names():
    inits = im.alignment_inits()
    assert {k: inits[k] for k in im.INITS} == im.INITS
    assert sorted(v for v in inits.values() if v is not None) == sorted(im.COSINES)
    assert len(inits) == len(im.COSINES) + 1


def test_related_signal_has_the_requested_cosine():
    mu = im.signal(50, 1.0)
    for c in im.COSINES:
        v = im.related_signal(mu, c)
        assert abs(float(v @ mu / (v.norm() * mu.norm())) - c) < 1e-6
        assert abs(float(v.norm()) - 1.0) < 1e-6
