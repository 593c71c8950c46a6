"""Model merging: task vectors, data-free merging operators, and FlexMerge's block-wise greedy grouping
(notebook 07).

Task vectors of M models fine-tuned from one pre-trained model theta_0: tau_m = theta_m - theta_0, as
rows of an [M x P] matrix. Operators map a group's task vectors to one merged task vector:

=========== ===============================================================================================
average     mean_m tau_m
task_arith  lambda * sum_m tau_m (Ilharco et al.), or lambda * mean_m tau_m (``reduce="mean"``, as FlexMerge's
            code merges a group, with lambda = 1.5 by default)
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

import numpy as np
import torch


def task_vectors(theta0: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """[M x P] task vectors of fine-tuned flat parameter vectors ``thetas`` [M x P] from ``theta0`` [P]."""
    if thetas.dim() != 2 or thetas.shape[1] != theta0.numel():
        raise ValueError(f"expected [M x {theta0.numel()}] fine-tuned vectors, got {tuple(thetas.shape)}")
    return thetas - theta0


def average(taus: torch.Tensor) -> torch.Tensor:
    return taus.mean(0)


def task_arithmetic(taus: torch.Tensor, lam: float = 1.0, reduce: str = "sum") -> torch.Tensor:
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    return lam * (taus.sum(0) if reduce == "sum" else taus.mean(0))


def trim(taus: torch.Tensor, k: float = 0.2) -> torch.Tensor:
    """Keep each task vector's top ``k`` fraction of entries by magnitude, zero the rest (TIES' trim step).

    Applied to whole task vectors it is FlexMerge's "global trimming", done once before any grouping."""
    if not 0 < k <= 1:
        raise ValueError(f"k (the fraction kept) must be in (0, 1], got {k}")
    keep = max(1, int(round(k * taus.shape[1])))
    thresh = taus.abs().topk(keep, dim=1).values[:, -1:]             # per task vector
    return torch.where(taus.abs() >= thresh, taus, torch.zeros_like(taus))


def ties(taus: torch.Tensor, k: float | None = 0.2, lam: float = 1.0) -> torch.Tensor:
    """TIES-merging: trim to the top ``k`` fraction by magnitude per task vector (``k=None``: already
    trimmed, e.g. globally), elect signs, disjoint mean, times ``lam``."""
    trimmed = taus if k is None else trim(taus, k)
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
        if linkage == "complete":                        # the most similar constituents (sklearn's "single"
            return max(pairs)                            # on cosine distances)
        return min(pairs) if linkage == "single" else sum(pairs) / len(pairs)

    def best_pair_by_vectors(self, group_vector):
        """The pair whose merged group vectors are most cosine-similar (a group of one: its task vector), as the
        authors' ``structured_block_merge`` chooses within a block."""
        if len(self.groups) < 2:
            return None
        vec = [self.taus[g[0]] if len(g) == 1 else group_vector(self.taus[g]) for g in self.groups]
        return max(((_cos(vec[i], vec[j]), i, j) for i, j in itertools.combinations(range(len(self.groups)), 2)),
                   key=lambda t: t[0])

    def best_pair(self, linkage: str):
        if len(self.groups) < 2:
            return None
        return max(((self.similarity(i, j, linkage), i, j)
                    for i, j in itertools.combinations(range(len(self.groups)), 2)), key=lambda t: t[0])

    def merge(self, i: int, j: int) -> None:
        self.groups[i] = sorted(self.groups[i] + self.groups[j])
        del self.groups[j]


def flexmerge(taus: torch.Tensor, block_slices: list[slice], target_size: float, linkage: str = "single",
              order: str = "greedy", seed: int = 0, group_vector=None) -> list[list[list[int]]]:
    """Group the M task vectors block by block until the merged model has ``target_size`` x one model's
    parameters (counted over the blocks; between 1 and M). ``order``: "greedy" (FlexMerge: the most similar
    pair over all blocks first), "left-right" / "right-left" (blocks in a fixed order, each merged to one
    group before the next; within a block the pair whose merged vectors ``group_vector(taus[group])`` are most
    cosine-similar, as the authors' ``structured_block_merge``; without ``group_vector``, by ``linkage``)
    or "random" (the authors'
    ``random_block_merge``: each step a random block among those not yet merged to one group, then a random
    pair of its groups, similarity unused; ``np.random.default_rng(seed)``). Returns, per block, its groups
    (lists of task indices)."""
    M = taus.shape[0]
    if linkage not in ("single", "average", "complete"):
        raise ValueError(f"linkage must be 'single', 'average' or 'complete', got {linkage!r}")
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
    rng = np.random.default_rng(seed)
    fixed = list(range(len(blocks))) if order == "left-right" else list(reversed(range(len(blocks))))
    structured = order in ("left-right", "right-left") and group_vector is not None
    pair = (lambda b: b.best_pair_by_vectors(group_vector)) if structured else (lambda b: b.best_pair(linkage))  # noqa: E731
    best = [pair(b) for b in blocks] if order != "random" else [None] * len(blocks)   # cached: only a merged block changes
    while size() > target_size + 1e-12:
        open_blocks = [k for k, b in enumerate(blocks) if len(b.groups) > 1]
        if not open_blocks:
            break
        if order == "greedy":
            k = max(open_blocks, key=lambda k: best[k][0])
        elif order == "random":                              # a random block, then a random pair in it
            k = open_blocks[int(rng.integers(len(open_blocks)))]
            i, j = sorted(int(x) for x in rng.choice(len(blocks[k].groups), size=2, replace=False))
            blocks[k].merge(i, j)
            continue
        else:
            k = next(k for k in fixed if len(blocks[k].groups) > 1)
        _, i, j = best[k]
        blocks[k].merge(i, j)
        best[k] = pair(blocks[k])
    return [b.groups for b in blocks]


def merged_model(theta0: torch.Tensor, taus: torch.Tensor, block_slices: list[slice], groups, task: int,
                 operator: str = "task_arith", keep_singletons: bool = False, originals: torch.Tensor | None = None,
                 **op_kwargs) -> torch.Tensor:
    """The flat parameters task ``task`` uses: in every block, theta_0 plus its group's merged vector.

    ``keep_singletons``: a group of one keeps its task vector unchanged (FlexMerge's code merges only
    when two groups join; an operator's lambda never touches an unmerged block). ``originals``: the task
    vectors before any pre-processing (TIES' global trimming, DARE's drop): an unmerged block keeps its
    fine-tuned weights, ``theta_0 + originals[m]``, as the authors' code does ("we retain the unsparsified
    version": a task's block is overwritten only when its group merges); ``taus`` are what merges."""
    if operator not in OPERATORS:
        raise ValueError(f"unknown merging operator {operator!r}; known: {', '.join(OPERATORS)}")
    out = theta0.clone()
    for sl, block_groups in zip(block_slices, groups):
        grp = next(gr for gr in block_groups if task in gr)
        if keep_singletons and len(grp) == 1:
            out[sl] = theta0[sl] + (taus if originals is None else originals)[grp[0], sl]
        else:
            out[sl] = theta0[sl] + OPERATORS[operator](taus[:, sl][grp], **op_kwargs)
    return out


def whole_model_groups(taus: torch.Tensor, block_slices: list[slice], n_models: int, linkage: str = "single"):
    """The whole-model clustering baseline: the M task vectors grouped into ``n_models`` clusters by
    agglomerative clustering of the whole vectors, one grouping shared by every block (size n_models x). As the
    authors' ``cluster_merge`` (sklearn's AgglomerativeClustering on cosine distances with their linkage flag):
    ``linkage="single"`` is sklearn's single linkage, the *closest* constituents (the most similar pair),
    the opposite of greedy FlexMerge's "single"; "average" is the mean either way."""
    sim = {"single": "complete", "average": "average"}.get(linkage)
    if sim is None:
        raise ValueError(f"linkage must be 'single' or 'average', got {linkage!r}")
    groups = flexmerge(taus, [slice(0, taus.shape[1])], n_models, linkage=sim)[0]
    return [[list(g) for g in groups] for _ in block_slices]


def size_of(groups, block_slices: list[slice]) -> float:
    """A grouping's size as a multiple of one model (group vectors kept, counted over the blocks)."""
    sizes = [sl.stop - sl.start for sl in block_slices]
    return sum(len(g) * s for g, s in zip(groups, sizes)) / sum(sizes)


def param_blocks(module, units: list[str], split: dict[str, int] | None = None) -> tuple[list[str], list[slice]]:
    """Merge units of a module's trainable parameters, in the flat order of ``FlatModel``: consecutive
    parameters whose name contains the same entry of ``units`` (e.g. per transformer layer "attention.self.query",
    ..., "output.dense") form one block; a parameter matching none joins the block before it. ``split`` cuts a
    unit into that many contiguous, near-equal chunks (FlexMerge's code splits MLPs into groups the same way;
    for a row-major weight a chunk is a set of output neurons)."""
    names, slices, start, pos = [], [], 0, 0
    current = None
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        layer = next((part for part in name.split(".") if part.isdigit()), "")
        key = next((u for u in units if u in name), None)
        if key is not None:
            key = f"{layer}:{key}" if layer else key
        if key is not None and key != current:
            if current is not None:
                names.append(current)
                slices.append(slice(start, pos))
            current, start = key, pos
        pos += p.numel()
    if current is not None:
        names.append(current)
        slices.append(slice(start, pos))
    if split:
        out_n, out_s = [], []
        for n, sl in zip(names, slices):
            k = next((v for u, v in split.items() if n.endswith(":" + u) or n == u), 1)
            cuts = np.linspace(sl.start, sl.stop, k + 1).round().astype(int)
            out_n += [n if k == 1 else f"{n}[{i}]" for i in range(k)]
            out_s += [slice(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]
        names, slices = out_n, out_s
    return names, slices


def size_curve(theta0: torch.Tensor, taus: torch.Tensor, block_slices: list[slice], sizes, evaluate_task,
               runs: list[dict], seed: int = 0, originals: torch.Tensor | None = None):
    """Per-task accuracy of merged models across model sizes: one row per (run, size, task).

    ``taus`` select and merge (for TIES and DARE: the pre-processed vectors, as the authors' greedy merge
    uses them for both); ``originals`` (the unprocessed task vectors) are what an unmerged block keeps.

    ``runs``: dicts with ``order`` ("greedy", "left-right", "right-left", "random" or "whole-model"),
    ``operator`` and optional ``linkage`` and operator keywords (``lam``, ``reduce``, ``k``); every run keeps
    singletons unmerged. ``evaluate_task(task, flat)`` returns the accuracy of task ``task`` with the merged
    parameters ``flat``. Whole-model clustering has integer sizes only (it skips the others)."""
    from .utils import progress
    M = taus.shape[0]
    rows = []
    jobs = [(r, s) for r in runs for s in sizes if not (r["order"] == "whole-model" and float(s) != int(s))]
    for run, size in progress(jobs, desc="merging"):
        kw = {k: v for k, v in run.items() if k not in ("order", "operator", "linkage", "label")}
        linkage = run.get("linkage", "single")
        if run["order"] == "whole-model":
            groups = whole_model_groups(taus, block_slices, int(size), linkage)
        else:
            op = OPERATORS[run["operator"]]
            groups = flexmerge(taus, block_slices, size, linkage=linkage, order=run["order"], seed=seed,
                               group_vector=lambda v, op=op, kw=kw: op(v, **kw))
        actual = size_of(groups, block_slices)
        for m in range(M):
            w = merged_model(theta0, taus, block_slices, groups, m, run["operator"], keep_singletons=True,
                             originals=originals, **kw)
            rows.append({"label": run.get("label", f"{run['order']} / {run['operator']}"), "order": run["order"],
                         "operator": run["operator"], "linkage": linkage, "target_size": float(size),
                         "size": actual, "task": m, "accuracy": evaluate_task(m, w)})
    return rows


def unmerged_longest(block_names: list[str], taus: torch.Tensor, block_slices: list[slice], linkage: str = "single"):
    """The greedy order's merge step at which each block first loses a group (later = kept apart longer)."""
    blocks = [BlockGroups(taus[:, sl]) for sl in block_slices]
    best = [b.best_pair(linkage) for b in blocks]
    first = {}
    step = 0
    while any(len(b.groups) > 1 for b in blocks):
        k = max((k for k, b in enumerate(blocks) if len(b.groups) > 1), key=lambda k: best[k][0])
        first.setdefault(block_names[k], step)
        _, i, j = best[k]
        blocks[k].merge(i, j)
        best[k] = blocks[k].best_pair(linkage)
        step += 1
    return first


def informative_tasks(individual, chance, margin: float) -> list[bool]:
    """Which tasks enter a normalized-accuracy mean: those whose individually fine-tuned accuracy is above
    chance (the majority class's share of the test set) by at least ``margin``, decided from the fine-tuned
    models alone, before any merging. A task at chance has normalized accuracy noise / noise, near or above 1
    whatever merging does to it."""
    individual, chance = np.asarray(individual, float), np.asarray(chance, float)
    if individual.shape != chance.shape:
        raise ValueError(f"one individual accuracy per chance level, got {individual.shape} and {chance.shape}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin is a share of accuracy in [0, 1), got {margin}")
    return [bool(v) for v in individual - chance >= margin]
