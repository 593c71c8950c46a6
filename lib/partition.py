"""Splitting a labelled dataset across clients.

Every partitioner takes the label vector, a client count and a seed, uses its
own ``numpy.random.Generator`` (never the global RNG), assigns every sample to
at most one client, and returns a :class:`Partition`.

Two Dirichlet conventions are in the literature and give different data at the
same alpha, so each has its own name:

* ``dirichlet`` (Hsu et al. 2019; Flower's ``DirichletPartitioner``): for each
  class, draw proportions over the *clients* ``p_c ~ Dir(alpha 1_K)`` and deal
  that class's samples out accordingly. Client sizes vary. Every sample is used.
* ``dirichlet_mixture`` (FL-Simulator): each *client* draws a class mixture
  ``q_k ~ Dir(alpha * prior)`` and receives an equal number of samples drawn
  from its mixture. Client sizes are equal; samples left over stay unused.
  With ``reuse=True`` (FedRevive's authors' ``split_dirichlet``: 1,000 clients x
  350 samples from a 50,000-image training set) a class that runs out is
  reshuffled and dealt again, so clients may share samples (never twice within
  one client); this is the one partition that may use a sample more than once.

``shards`` is McMahan et al.'s pathological split: sort by label, cut into
``num_clients * shards_per_client`` shards, give each client that many shards.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Partition:
    """Client index lists plus the labels they index, with summary statistics."""

    indices: list[np.ndarray]
    labels: np.ndarray
    num_classes: int
    scheme: str
    params: dict = field(default_factory=dict)

    @property
    def num_clients(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(ix) for ix in self.indices])

    def counts(self) -> np.ndarray:
        """[clients x classes] matrix of sample counts."""
        return np.stack([np.bincount(self.labels[ix], minlength=self.num_classes) for ix in self.indices])

    def class_proportions(self) -> np.ndarray:
        c = self.counts().astype(float)
        return c / np.maximum(c.sum(1, keepdims=True), 1)

    def heterogeneity(self) -> float:
        """Mean total-variation distance between each client's label mix and the global one (0 = IID)."""
        global_p = np.bincount(self.labels[np.concatenate(self.indices)], minlength=self.num_classes)
        global_p = global_p / global_p.sum()
        return float(0.5 * np.abs(self.class_proportions() - global_p).sum(1).mean())

    def stats(self) -> dict:
        s = self.sizes
        present = (self.counts() > 0).sum(1)
        return {"scheme": self.scheme, **self.params, "clients": self.num_clients, "samples": int(s.sum()),
                "size_min": int(s.min()), "size_mean": float(s.mean()), "size_max": int(s.max()),
                "classes_per_client": float(present.mean()), "tv_distance": round(self.heterogeneity(), 4)}


def _check(labels, num_clients: int, min_size: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError("labels must be a non-empty 1-D array of class ids")
    if not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
        raise ValueError(f"num_clients must be a positive integer, got {num_clients!r}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if num_clients * max(min_size, 1) > len(labels):
        raise ValueError(f"cannot give {num_clients} clients at least {max(min_size, 1)} samples each "
                         f"from {len(labels)} samples; use fewer clients or a smaller min_size")
    return labels


def _alpha(alpha) -> float:
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be a positive finite number, got {alpha!r} "
                         f"(small alpha = strong label skew, large alpha = close to IID)")
    return float(alpha)


def iid(labels, num_clients: int, seed: int = 0, min_size: int = 1) -> Partition:
    """Shuffle, then cut into near-equal contiguous pieces."""
    labels = _check(labels, num_clients, min_size)
    rng = np.random.default_rng(seed)
    parts = np.array_split(rng.permutation(len(labels)), num_clients)
    return Partition([np.sort(p) for p in parts], labels, int(labels.max()) + 1, "iid")


def dirichlet(labels, num_clients: int, alpha: float, seed: int = 0, min_size: int = 10,
              max_retries: int = 100) -> Partition:
    """Per-class proportions over clients, p_c ~ Dir(alpha 1_K) (Hsu et al.; Flower).

    Redraws, up to ``max_retries`` times, until every client holds ``min_size`` samples.
    """
    labels = _check(labels, num_clients, min_size)
    alpha = _alpha(alpha)
    rng = np.random.default_rng(seed)
    num_classes = int(labels.max()) + 1
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    for _ in range(max_retries):
        buckets = [[] for _ in range(num_clients)]
        for idx in by_class:
            p = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(p) * len(idx)).astype(int)[:-1]
            for k, piece in enumerate(np.split(idx, cuts)):
                buckets[k].append(piece)
        parts = [np.sort(np.concatenate(b)) for b in buckets]
        if min(len(p) for p in parts) >= min_size:
            return Partition(parts, labels, num_classes, "dirichlet", {"alpha": alpha})
    raise ValueError(f"dirichlet(alpha={alpha}): no draw in {max_retries} gave every one of {num_clients} "
                     f"clients {min_size} samples; lower min_size, use fewer clients or a larger alpha")


def dirichlet_mixture(labels, num_clients: int, alpha: float, seed: int = 0,
                      samples_per_client: int | None = None, min_size: int = 1, reuse: bool = False) -> Partition:
    """Per-client class mixtures q_k ~ Dir(alpha * prior), equal sizes (FL-Simulator).

    prior = the global class frequencies. Each client draws its samples one class
    at a time from its mixture; a class that runs out is removed and the mixture
    renormalised, so the sizes are exact and no sample is used twice.

    ``reuse=True``: a class that runs out is reshuffled and dealt again (the FedRevive
    authors' ``split_dirichlet`` wraps around each class the same way), so
    ``num_clients * samples_per_client`` may exceed the data; clients may then share
    samples, but no client holds one twice (a class smaller than a client's draw of it
    falls back to the client's other classes).
    """
    labels = _check(labels, num_clients, min_size)
    alpha = _alpha(alpha)
    rng = np.random.default_rng(seed)
    num_classes = int(labels.max()) + 1
    n = samples_per_client or len(labels) // num_clients
    if n * num_clients > len(labels) and not reuse:
        raise ValueError(f"{num_clients} clients x {n} samples exceeds the {len(labels)} samples available "
                         f"(reuse=True deals each class again once it runs out)")
    if n > len(labels):
        raise ValueError(f"samples_per_client={n} exceeds the {len(labels)} samples available")
    if n < max(min_size, 1):
        raise ValueError(f"samples_per_client={n} is below min_size={min_size}")
    prior = np.bincount(labels, minlength=num_classes) / len(labels)
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    pools = [list(rng.permutation(m)) for m in members]
    mixtures = rng.dirichlet(alpha * prior * num_classes, size=num_clients)
    parts = []
    for k in range(num_clients):
        q, take, held = mixtures[k].copy(), [], set()
        for _ in range(n):
            if reuse:       # deal an exhausted class again, without what this client already holds
                for c in range(num_classes):
                    if not pools[c]:
                        pools[c] = [i for i in rng.permutation(members[c]) if i not in held]
            avail = np.array([len(p) > 0 for p in pools])
            w = q * avail
            if w.sum() <= 0:  # mixture concentrated on exhausted classes: fall back to what is left
                w = avail * prior
            c = rng.choice(num_classes, p=w / w.sum())
            take.append(pools[c].pop())
            held.add(take[-1])
        parts.append(np.sort(np.array(take)))
    return Partition(parts, labels, num_classes, "dirichlet_mixture",
                     {"alpha": alpha, **({"reuse": True} if reuse else {})})


def shards(labels, num_clients: int, shards_per_client: int = 2, seed: int = 0, min_size: int = 1) -> Partition:
    """Sort by label, cut into equal shards, give each client ``shards_per_client`` (McMahan et al.)."""
    labels = _check(labels, num_clients, min_size)
    if shards_per_client < 1:
        raise ValueError(f"shards_per_client must be >= 1, got {shards_per_client}")
    total = num_clients * shards_per_client
    if total > len(labels):
        raise ValueError(f"{total} shards cannot be cut from {len(labels)} samples")
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, total)
    deal = rng.permutation(total).reshape(num_clients, shards_per_client)
    parts = [np.sort(np.concatenate([pieces[s] for s in row])) for row in deal]
    return Partition(parts, labels, int(labels.max()) + 1, "shards", {"shards_per_client": shards_per_client})


PARTITIONERS = {"iid": iid, "dirichlet": dirichlet, "dirichlet_mixture": dirichlet_mixture, "shards": shards}


def partition(labels, scheme: str, num_clients: int, seed: int = 0, **kwargs) -> Partition:
    """Dispatch by name: ``partition(y, "dirichlet", 20, alpha=0.1)``."""
    if scheme not in PARTITIONERS:
        raise ValueError(f"unknown partition scheme {scheme!r}; known: {', '.join(PARTITIONERS)}")
    return PARTITIONERS[scheme](labels, num_clients, seed=seed, **kwargs)
