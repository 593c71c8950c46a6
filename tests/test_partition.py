import numpy as np
import pytest

from lib.partition import dirichlet, dirichlet_mixture, iid, partition, shards

LABELS = np.repeat(np.arange(10), 200)  # 2,000 samples, 10 balanced classes


@pytest.mark.parametrize("scheme,kw", [("iid", {}), ("dirichlet", {"alpha": 0.3}), ("shards", {}),
                                       ("dirichlet", {"alpha": 0.05, "min_size": 5})])
def test_every_sample_assigned_exactly_once(scheme, kw):
    p = partition(LABELS, scheme, 20, seed=1, **kw)
    allix = np.concatenate(p.indices)
    assert len(allix) == len(LABELS) and len(np.unique(allix)) == len(LABELS)


def test_mixture_uses_each_sample_at_most_once_with_equal_sizes():
    p = dirichlet_mixture(LABELS, 20, alpha=0.3, seed=1)
    allix = np.concatenate(p.indices)
    assert len(np.unique(allix)) == len(allix) == 2000
    assert set(p.sizes) == {100}


@pytest.mark.parametrize("fn,kw", [(iid, {}), (dirichlet, {"alpha": 0.5}), (dirichlet_mixture, {"alpha": 0.5}),
                                   (shards, {})])
def test_seeded_determinism(fn, kw):
    a, b, c = fn(LABELS, 10, seed=7, **kw), fn(LABELS, 10, seed=7, **kw), fn(LABELS, 10, seed=8, **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not all(np.array_equal(x, y) for x, y in zip(a.indices, c.indices))


@pytest.mark.parametrize("fn", [dirichlet, dirichlet_mixture])
def test_large_alpha_approaches_iid_and_small_alpha_is_skewed(fn):
    h_iid = iid(LABELS, 10, seed=0).heterogeneity()
    h_big = fn(LABELS, 10, alpha=1000.0, seed=0).heterogeneity()
    h_small = fn(LABELS, 10, alpha=0.05, seed=0, min_size=1).heterogeneity()
    # both within multinomial sampling noise of an IID split (TV ~ 0.07-0.11 at 200 samples a client)
    assert h_big < 0.15 and h_big < h_iid + 0.05
    assert h_small > 0.5


def test_min_size_respected():
    p = dirichlet(LABELS, 50, alpha=0.5, seed=3, min_size=15)
    assert p.sizes.min() >= 15


def test_shards_give_few_classes_per_client():
    p = shards(LABELS, 20, shards_per_client=2, seed=0)
    assert (p.counts() > 0).sum(1).max() <= 2


def test_stats_and_counts_are_consistent():
    p = dirichlet(LABELS, 10, alpha=0.5, seed=0)
    s = p.stats()
    assert s["samples"] == 2000 and p.counts().sum() == 2000 and s["clients"] == 10
    assert np.allclose(p.class_proportions().sum(1), 1.0)


@pytest.mark.parametrize("call,match", [
    (lambda: dirichlet(LABELS, 10, alpha=0.0), "alpha must be a positive"),
    (lambda: dirichlet(LABELS, 10, alpha=-1.0), "alpha must be a positive"),
    (lambda: iid(LABELS, 3000), "cannot give 3000 clients"),
    (lambda: dirichlet(LABELS, 100, alpha=0.5, min_size=50), "cannot give 100 clients at least 50"),
    (lambda: dirichlet(LABELS, 50, alpha=0.01, min_size=30, max_retries=3), "no draw in 3"),
    (lambda: partition(LABELS, "pathological", 10), "unknown partition scheme 'pathological'; known: iid"),
    (lambda: dirichlet_mixture(LABELS, 10, alpha=1.0, samples_per_client=500), "exceeds"),
])
def test_impossible_partitions_fail_clearly(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mixture_with_reuse_deals_classes_again_like_the_fedrevive_authors():
    # 40 clients x 100 samples from 2,000: each class is dealt about twice, equal sizes, no sample twice in a client
    p = dirichlet_mixture(LABELS, 40, alpha=0.5, seed=2, samples_per_client=100, reuse=True)
    assert set(p.sizes) == {100}
    assert all(len(np.unique(ix)) == len(ix) for ix in p.indices)
    allix = np.concatenate(p.indices)
    assert len(np.unique(allix)) < len(allix)                        # shared across clients
    assert np.bincount(allix, minlength=2000).max() <= 4             # dealt again, not drawn at random
    assert p.heterogeneity() > 0.3                                   # still skewed mixtures
    q = dirichlet_mixture(LABELS, 40, alpha=0.5, seed=2, samples_per_client=100, reuse=True)
    assert all(np.array_equal(a, b) for a, b in zip(p.indices, q.indices))
    # without reuse the same request fails; while no class runs out, reuse draws exactly the old split
    with pytest.raises(ValueError, match="reuse=True"):
        dirichlet_mixture(LABELS, 40, alpha=0.5, seed=2, samples_per_client=100)
    a = dirichlet_mixture(LABELS, 2, alpha=0.5, seed=3, samples_per_client=100)
    b = dirichlet_mixture(LABELS, 2, alpha=0.5, seed=3, samples_per_client=100, reuse=True)
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))
