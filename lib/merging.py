"""Model merging: task vectors, data-free merging operators, and FlexMerge's block-wise greedy grouping
(issue: FlexMerge chapter; notebook 07 is not written yet).

Task vectors of M models fine-tuned from one pre-trained model theta_0: tau_m = theta_m - theta_0, as
rows of an [M x P] matrix. Operators map a group's task vectors to one merged task vector:

=========== ===============================================================================================
average     mean_m tau_m
task_arith  lambda * sum_m tau_m                                            (Ilharco et al.; lambda 0.3-1.5)
ties        trim: keep each tau_m's top-k% entries by magnitude; elect: sign of sum_m trimmed tau_m per
            entry; disjoint mean: mean over the m whose trimmed entry has the elected sign; times lambda
            (Yadav et al.)
dare        pre-processing: drop each entry with probability p, rescale the rest by 1 / (1 - p) (Yu et al.)
=========== ===============================================================================================

FlexMerge (arXiv 2505.23209, from the authors' code sacs-epfl/flexmerge): the model is a sequence of
blocks; every block starts with M singleton groups (size M x). One greedy step finds, over all blocks, the
most similar pair of groups in a block (cosine similarity of the groups' task vectors, by single linkage:
the minimum over constituent pairs, or average linkage: the mean) and merges it; only that block's
similarities change. The model's size is the number of group vectors kept over all blocks, as a multiple of
one model: from M x (nothing merged) down to 1 x (one group per block). At inference each task uses, in
every block, its group's merged vector.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch


def task_vectors(theta0: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """[M x P] task vectors of fine-tuned flat parameter vectors ``thetas`` [M x P] from ``theta0`` [P]."""
    if thetas.dim() != 2 or thetas.shape[1] != theta0.numel():
        raise ValueError(f"expected [M x {theta0.numel()}] fine-tuned vectors, got {tuple(thetas.shape)}")
    return thetas - theta0


def average(taus: torch.Tensor) -> torch.Tensor:
    return taus.mean(0)


def task_arithmetic(taus: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    return lam * taus.sum(0)


def ties(taus: torch.Tensor, k: float = 0.2, lam: float = 1.0) -> torch.Tensor:
    """TIES-merging: trim to the top ``k`` fraction by magnitude per task vector, elect signs, disjoint mean."""
    if not 0 < k <= 1:
        raise ValueError(f"k (the fraction kept) must be in (0, 1], got {k}")
    P = taus.shape[1]
    keep = max(1, int(round(k * P)))
    thresh = taus.abs().topk(keep, dim=1).values[:, -1:]             # per task vector
    trimmed = torch.where(taus.abs() >= thresh, taus, torch.zeros_like(taus))
    sign = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    count = agree.sum(0).clamp_min(1)
    return lam * (trimmed * agree).sum(0) / count


def dare(taus: torch.Tensor, p: float = 0.9, seed: int = 0) -> torch.Tensor:
    """DARE: drop each entry with probability ``p``, rescale survivors by 1 / (1 - p) (seeded)."""
    if not 0 <= p < 1:
        raise ValueError(f"the drop rate p must be in [0, 1), got {p}")
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(taus.shape, generator=g) >= p).to(taus.dtype)
    return taus * mask / (1 - p)


OPERATORS = {"average": average, "task_arith": task_arithmetic, "ties": ties}


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-12))


@dataclass
class BlockGroups:
    """One block's partition of the M task vectors into groups, and each group's merged vector."""
    taus: torch.Tensor                                   # [M x P_block]
    groups: list = field(default_factory=list)           # lists of task indices

    def __post_init__(self):
        if not self.groups:
            self.groups = [[m] for m in range(self.taus.shape[0])]

    def similarity(self, i: int, j: int, linkage: str) -> float:
        pairs = [_cos(self.taus[a], self.taus[b]) for a in self.groups[i] for b in self.groups[j]]
        return min(pairs) if linkage == "single" else sum(pairs) / len(pairs)

    def best_pair(self, linkage: str):
        if len(self.groups) < 2:
            return None
        return max(((self.similarity(i, j, linkage), i, j)
                    for i, j in itertools.combinations(range(len(self.groups)), 2)), key=lambda t: t[0])

    def merge(self, i: int, j: int) -> None:
        self.groups[i] = sorted(self.groups[i] + self.groups[j])
        del self.groups[j]


def flexmerge(taus: torch.Tensor, block_slices: list[slice], target_size: float, linkage: str = "single",
              order: str = "greedy", seed: int = 0) -> list[list[list[int]]]:
    """Group the M task vectors block by block until the merged model has ``target_size`` x one model's
    parameters (counted over the blocks; between 1 and M). ``order``: "greedy" (FlexMerge: the most similar
    pair over all blocks first), "left-right" / "right-left" (blocks in a fixed order, each merged to one
    group before the next; within a block the most similar pair first) or "random" (a random block each
    step). Returns, per block, its groups (lists of task indices)."""
    M = taus.shape[0]
    if linkage not in ("single", "average"):
        raise ValueError(f"linkage must be 'single' or 'average', got {linkage!r}")
    if order not in ("greedy", "left-right", "right-left", "random"):
        raise ValueError(f"unknown order {order!r}")
    if not 1 <= target_size <= M:
        raise ValueError(f"target_size must be between 1 and M = {M}, got {target_size}")
    sizes = [sl.stop - sl.start for sl in block_slices]
    total = sum(sizes)
    if total != taus.shape[1]:
        raise ValueError(f"the blocks cover {total} parameters, the task vectors {taus.shape[1]}")
    blocks = [BlockGroups(taus[:, sl]) for sl in block_slices]
    size = lambda: sum(len(b.groups) * s for b, s in zip(blocks, sizes)) / total  # noqa: E731
    g = torch.Generator().manual_seed(seed)
    fixed = list(range(len(blocks))) if order == "left-right" else list(reversed(range(len(blocks))))
    best = [b.best_pair(linkage) for b in blocks]                 # cached per block: only a merged block changes
    while size() > target_size + 1e-12:
        open_blocks = [k for k, b in enumerate(blocks) if len(b.groups) > 1]
        if not open_blocks:
            break
        if order == "greedy":
            k = max(open_blocks, key=lambda k: best[k][0])
        elif order == "random":
            k = open_blocks[int(torch.randint(len(open_blocks), (1,), generator=g))]
        else:
            k = next(k for k in fixed if len(blocks[k].groups) > 1)
        _, i, j = best[k]
        blocks[k].merge(i, j)
        best[k] = blocks[k].best_pair(linkage)
    return [b.groups for b in blocks]


def merged_model(theta0: torch.Tensor, taus: torch.Tensor, block_slices: list[slice], groups, task: int,
                 operator: str = "task_arith", **op_kwargs) -> torch.Tensor:
    """The flat parameters task ``task`` uses: in every block, theta_0 plus its group's merged vector."""
    if operator not in OPERATORS:
        raise ValueError(f"unknown merging operator {operator!r}; known: {', '.join(OPERATORS)}")
    out = theta0.clone()
    for sl, block_groups in zip(block_slices, groups):
        grp = next(gr for gr in block_groups if task in gr)
        out[sl] = theta0[sl] + OPERATORS[operator](taus[grp][:, sl], **op_kwargs)
    return out
