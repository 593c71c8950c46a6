"""Merging operators and FlexMerge's greedy grouping, against references written from the papers."""
import collections

import numpy as np
import pytest
import torch

from lib import merging
from lib.merging import average, dare, flexmerge, merged_model, task_arithmetic, task_vectors, ties


def test_operators_by_hand():
    taus = torch.tensor([[1.0, -2.0, 0.5, 0.0],
                         [3.0, 1.0, -0.5, 0.2],
                         [-1.0, -1.0, 0.4, 0.1]])
    assert torch.allclose(average(taus), taus.mean(0))
    assert torch.allclose(task_arithmetic(taus, 0.5), 0.5 * taus.sum(0))
    # TIES with k = 0.5 (keep 2 of 4 per row): row 0 keeps 1, -2; row 1 keeps 3, 1; row 2 keeps -1, -1
    # elected signs: col0 sum 1+3-1 = 3 -> +, col1 -2+1-1 = -2 -> -, cols 2, 3 empty -> 0
    # disjoint means: col0 mean(1, 3) = 2; col1 mean(-2, -1) = -1.5
    assert torch.allclose(ties(taus, k=0.5), torch.tensor([2.0, -1.5, 0.0, 0.0]))
    assert torch.allclose(ties(taus, k=0.5, lam=2.0), torch.tensor([4.0, -3.0, 0.0, 0.0]))
    with pytest.raises(ValueError):
        ties(taus, k=0.0)


def test_dare_drops_and_rescales_without_bias():
    taus = torch.ones(4, 20000)
    d = dare(taus, p=0.9, seed=0)
    kept = d != 0
    assert torch.allclose(d[kept], torch.full_like(d[kept], 10.0))
    assert abs(kept.float().mean().item() - 0.1) < 0.01
    assert abs(d.mean().item() - 1.0) < 0.05                         # unbiased in expectation
    assert torch.equal(d, dare(taus, p=0.9, seed=0))


def _tasks():
    """Four tasks over two blocks: in block 0 tasks {0, 1} and {2, 3} point alike; in block 1 all differ."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, generator=g), torch.randn(6, generator=g)
    block0 = torch.stack([a, a + 0.01, b, b + 0.01])
    block1 = torch.eye(4).repeat(1, 2)                              # orthogonal task vectors, 8 entries
    return torch.cat([block0, block1], 1), [slice(0, 6), slice(6, 14)]


def test_greedy_merges_the_most_similar_groups_first_and_counts_size():
    taus, blocks = _tasks()
    assert flexmerge(taus, blocks, 4.0) == [[[0], [1], [2], [3]], [[0], [1], [2], [3]]]     # M x: nothing merged
    g = flexmerge(taus, blocks, target_size=(2 * 6 + 4 * 8) / 14)   # two merges, both in block 0
    assert g[0] == [[0, 1], [2, 3]] and g[1] == [[0], [1], [2], [3]]
    one = flexmerge(taus, blocks, 1.0)
    assert one == [[[0, 1, 2, 3]], [[0, 1, 2, 3]]]                   # 1 x: one group per block
    lr = flexmerge(taus, blocks, target_size=(1 * 6 + 4 * 8) / 14 + 0.01, order="left-right")
    assert lr[0] == [[0, 1, 2, 3]] and len(lr[1]) == 4               # fixed order: block 0 merged first
    rl = flexmerge(taus, blocks, target_size=(4 * 6 + 1 * 8) / 14 + 0.01, order="right-left")
    assert len(rl[0]) == 4 and rl[1] == [[0, 1, 2, 3]]
    with pytest.raises(ValueError):
        flexmerge(taus, blocks, 5.0)


def test_single_and_average_linkage_differ_as_defined():
    # block vectors: 0 and 1 identical, 2 at 60 degrees from 0, 3 orthogonal-ish to all
    v = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.866, 0.0], [0.0, 0.0, 1.0]])
    groups = flexmerge(v, [slice(0, 3)], target_size=2.0, linkage="single")
    assert groups[0] == [[0, 1, 2], [3]]          # {0,1} first (cos 1), then {0,1}+{2} (min cos 0.5 > 0)
    g_avg = flexmerge(v, [slice(0, 3)], target_size=2.0, linkage="average")
    assert g_avg[0] == [[0, 1, 2], [3]]


def test_merged_model_uses_each_tasks_group_per_block():
    theta0 = torch.zeros(14)
    taus, blocks = _tasks()
    groups = flexmerge(taus, blocks, target_size=(2 * 6 + 4 * 8) / 14)
    m2 = merged_model(theta0, taus, blocks, groups, task=2, operator="average")
    assert torch.allclose(m2[:6], taus[2:4, :6].mean(0))             # block 0: the group {2, 3}, averaged
    assert torch.allclose(m2[6:], taus[2, 6:])                       # block 1: task 2 alone
    tv = task_vectors(theta0, taus + theta0)
    assert torch.equal(tv, taus)
    with pytest.raises(ValueError, match="unknown merging operator"):
        merged_model(theta0, taus, blocks, groups, 0, operator="magic")


# ---------------------------------------------------------------- as FlexMerge's code merges (notebook 07)

def test_task_arithmetic_mean_is_lambda_times_the_mean():
    taus = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    assert torch.allclose(merging.task_arithmetic(taus, 1.5, reduce="mean"), torch.tensor([3.0, 0.0]))
    assert torch.allclose(merging.task_arithmetic(taus, 1.5), torch.tensor([6.0, 0.0]))
    with pytest.raises(ValueError, match="reduce"):
        merging.task_arithmetic(taus, reduce="max")


def test_global_trim_then_ties_without_trim():
    taus = torch.tensor([[4.0, -1.0, 0.5, 3.0], [-2.0, 1.0, 5.0, 0.1]])
    t = merging.trim(taus, 0.5)                                   # two largest magnitudes of each row
    assert torch.equal(t, torch.tensor([[4.0, 0.0, 0.0, 3.0], [-2.0, 0.0, 5.0, 0.0]]))
    # elect: signs of the column sums (+, 0, +, +); disjoint mean over the agreeing entries
    assert torch.allclose(merging.ties(t, k=None), torch.tensor([4.0, 0.0, 5.0, 3.0]))


def test_singletons_keep_their_task_vector_and_sizes_count_groups():
    theta0 = torch.zeros(4)
    taus = torch.tensor([[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, -2.0, -2.0]])
    blocks = [slice(0, 2), slice(2, 4)]
    groups = [[[0, 1]], [[0], [1]]]                               # block 0 merged, block 1 kept apart
    w = merging.merged_model(theta0, taus, blocks, groups, 1, "task_arith", keep_singletons=True, lam=1.5,
                             reduce="mean")
    assert torch.allclose(w, torch.tensor([3.0, 3.0, -2.0, -2.0]))
    assert merging.size_of(groups, blocks) == 1.5
    whole = merging.whole_model_groups(taus, blocks, 1)
    assert whole == [[[0, 1]], [[0, 1]]] and merging.size_of(whole, blocks) == 1.0


def test_param_blocks_follow_the_flat_order_of_a_transformer_layer():
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.ModuleDict({"self": nn.ModuleDict({"query": nn.Linear(2, 2), "key": nn.Linear(2, 2)}),
                                            "output": nn.ModuleDict({"dense": nn.Linear(2, 2), "LayerNorm": nn.LayerNorm(2)})})
            self.output = nn.ModuleDict({"dense": nn.Linear(2, 3)})

    layers = nn.ModuleList([Layer(), Layer()])
    names, slices = merging.param_blocks(layers, ["attention.self.query", "attention.self.key", "attention.output", "output"])
    assert names == ["0:attention.self.query", "0:attention.self.key", "0:attention.output", "0:output",
                     "1:attention.self.query", "1:attention.self.key", "1:attention.output", "1:output"]
    assert [s.stop - s.start for s in slices][:4] == [6, 6, 10, 9]
    assert slices[-1].stop == sum(p.numel() for p in layers.parameters())


def test_flexmerge_end_points_monotone_size_determinism_and_errors():
    g = torch.Generator().manual_seed(0)
    M, theta0 = 4, torch.randn(30, generator=g)
    thetas = theta0 + torch.randn(M, 30, generator=g)
    taus = task_vectors(theta0, thetas)
    blocks = [slice(0, 10), slice(10, 18), slice(18, 30)]
    ta = {"operator": "task_arith", "lam": 1.5, "reduce": "mean", "keep_singletons": True}
    full = flexmerge(taus, blocks, M)                              # Mx: nothing merged
    for m in range(M):
        assert torch.allclose(merged_model(theta0, taus, blocks, full, m, **ta), thetas[m])
    one = flexmerge(taus, blocks, 1)                               # 1x: the operator on the whole models
    for m in range(M):
        assert torch.allclose(merged_model(theta0, taus, blocks, one, m, **ta), theta0 + 1.5 * taus.mean(0))
    sizes = [merging.size_of(flexmerge(taus, blocks, s), blocks) for s in (4, 3.5, 3, 2.5, 2, 1.5, 1)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 4 and sizes[-1] == 1
    assert all(a <= t + 1e-9 for a, t in zip(sizes, (4, 3.5, 3, 2.5, 2, 1.5, 1)))   # never above the target
    r1 = flexmerge(taus, blocks, 2, order="random", seed=3)
    assert r1 == flexmerge(taus, blocks, 2, order="random", seed=3)
    with pytest.raises(ValueError, match="between 1 and M"):
        flexmerge(taus, blocks, 5)
    with pytest.raises(ValueError, match="fine-tuned vectors"):
        task_vectors(theta0, torch.randn(M, 31))                   # a model of another architecture


def test_size_curve_rows_and_whole_model_integer_sizes():
    g = torch.Generator().manual_seed(1)
    taus = torch.randn(3, 12, generator=g)
    blocks = [slice(0, 6), slice(6, 12)]
    ev = lambda m, w: float(w.sum())                               # noqa: E731  (any function of the weights)
    rows = merging.size_curve(torch.zeros(12), taus, blocks, [1, 1.5, 3], ev,
                              [{"order": "greedy", "operator": "average"}, {"order": "whole-model", "operator": "average"}])
    assert len(rows) == 3 * 3 + 2 * 3                              # whole-model skips 1.5x
    at3 = [r for r in rows if r["target_size"] == 3.0 and r["order"] == "greedy"]
    assert [r["accuracy"] for r in at3] == pytest.approx([float(t.sum()) for t in taus])   # Mx: every model itself


def test_vision_tasks_backbone_and_mbconv_units():
    """The vision track's pieces: class-subset tasks relabelled, BatchNorm / stem / head conv frozen, the
    16 MBConv blocks first in the flat vector as merge units, the classifier after them."""
    import os

    from conftest import require_seeded_data
    from lib import pretrained
    from lib.params import FlatModel
    from lib.peft import vision
    require_seeded_data()
    tr, te = vision.load_image_task("fashion_tops", 40, 12, seed=3)
    assert tr.classes == ["T-shirt/top", "Pullover", "Coat", "Shirt"] and (len(tr), len(te)) == (40, 12)
    assert set(tr.y.tolist()) <= {0, 1, 2, 3}
    again, _ = vision.load_image_task("fashion_tops", 40, 12, seed=3)
    assert torch.equal(tr.x, again.x) and torch.equal(tr.y, again.y)
    full, _ = vision.load_image_task("cifar10", None, 5, seed=0)
    assert len(full) == 8000 and full.num_classes == 10
    with pytest.raises(ValueError, match="unknown image task"):
        vision.load_image_task("svhn", 10, 10)
    try:
        model = vision.lite0_for_task(4, "fashion_mnist", size=32, seed=0)
    except pretrained.ModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"EfficientNet-Lite0 not obtainable here: {exc}")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    names, slices = vision.mbconv_units(model)
    fm = FlatModel(model)
    assert len(names) == 16 and slices[0].start == 0
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))          # contiguous, in order
    assert fm.numel - slices[-1].stop == 1280 * 4 + 4                           # the classifier, after the blocks
    assert not any(n.startswith(("1.conv_stem", "1.conv_head")) for n in fm.names)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.train()
    model(tr.x[:4])                                                             # training mode: statistics stay
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # two seeds: the same backbone, different classifier initialisations
    other = FlatModel(vision.lite0_for_task(4, "fashion_mnist", size=32, seed=1)).flat()
    assert torch.equal(fm.flat()[:slices[-1].stop], other[:slices[-1].stop])
    assert not torch.equal(fm.flat()[slices[-1].stop:], other[slices[-1].stop:])


# --- a port of the authors' greedy_block_merge and random_block_merge (sacs-epfl/flexmerge @ cbf987a,
# main_merge.py and Utils/merging_datastructure.py), written from their code for these tests ---------------
def _authors_greedy_ties(theta0, taus_orig, taus_sparse, blocks, lam, steps):
    """Their greedy loop with constituent single linkage on the sparsified vectors, TIES (trim=False) times
    lam, union by rank, and client models that start as the fine-tuned ones: a block is overwritten only
    for the members of a group that just merged. Returns the clients' flat weights after each step."""
    n = taus_orig.shape[0]
    parent = {b: list(range(n)) for b in range(len(blocks))}
    rank = {b: [1] * n for b in range(len(blocks))}

    def find(b, x):
        while parent[b][x] != x:
            x = parent[b][x]
        return x

    def cos(a, c):
        return float(torch.dot(a, c) / (a.norm() * c.norm() + 1e-8))

    def disjoint_mean(v):                                          # TIES' elect + disjoint mean, no trim
        sign = torch.sign(v.sum(0))
        agree = (torch.sign(v) == sign) & (v != 0)
        return (v * agree).sum(0) / agree.sum(0).clamp_min(1)

    clients = [theta0 + taus_orig[i] for i in range(n)]           # the fine-tuned models
    out = []
    for _ in range(steps):
        best = None
        for b, sl in enumerate(blocks):
            roots = sorted({find(b, i) for i in range(n)})
            for x in range(len(roots)):
                for y in range(x + 1, len(roots)):
                    A = [i for i in range(n) if find(b, i) == roots[x]]
                    B = [i for i in range(n) if find(b, i) == roots[y]]
                    s = min(cos(taus_sparse[i, sl], taus_sparse[j, sl]) for i in A for j in B)
                    if best is None or s > best[0]:
                        best = (s, b, roots[x], roots[y])
        _, b, rx, ry = best
        members = [i for i in range(n) if find(b, i) in (rx, ry)]
        merged = lam * disjoint_mean(taus_sparse[members][:, blocks[b]])
        if rank[b][rx] >= rank[b][ry]:
            parent[b][ry] = rx
            rank[b][rx] += rank[b][rx] == rank[b][ry]
        else:
            parent[b][rx] = ry
        for i in members:
            clients[i] = clients[i].clone()
            clients[i][blocks[b]] = theta0[blocks[b]] + merged
        out.append([c.clone() for c in clients])
    return out


def test_unmerged_blocks_keep_the_fine_tuned_weights_as_in_the_authors_code():
    g = torch.Generator().manual_seed(5)
    M, blocks = 4, [slice(0, 6), slice(6, 14), slice(14, 20)]
    theta0, taus = torch.randn(20, generator=g), torch.randn(M, 20, generator=g)
    sparse = merging.trim(taus, 0.3)                               # global trimming, once
    steps = 6
    theirs = _authors_greedy_ties(theta0, taus, sparse, blocks, 1.5, steps)
    size = float(M)
    for t in range(steps):
        groups = flexmerge(sparse, blocks, size - 1e-9)            # our greedy: one merge more than before
        size = merging.size_of(groups, blocks)
        for m in range(M):
            ours = merged_model(theta0, sparse, blocks, groups, m, "ties", keep_singletons=True, originals=taus,
                                k=None, lam=1.5)
            assert torch.allclose(ours, theirs[t][m], atol=1e-6), (t, m)
    # the rule matters: without the originals an unmerged block would hold the trimmed vector
    first = flexmerge(sparse, blocks, (3 * 6 + 4 * 8 + 4 * 6) / 20 + 1e-9)
    singleton_task = next(m for m in range(M) if any(len(g) == 1 and g[0] == m for g in first[0]))
    trimmed = merged_model(theta0, sparse, blocks, first, singleton_task, "ties", keep_singletons=True, k=None)
    kept = merged_model(theta0, sparse, blocks, first, singleton_task, "ties", keep_singletons=True,
                        originals=taus, k=None)
    assert not torch.allclose(trimmed, kept) and torch.allclose(kept[6:14], theta0[6:14] + taus[singleton_task, 6:14])


def test_random_order_picks_a_random_pair_not_the_most_similar_as_the_authors_do():
    # one block where tasks 0 and 1 are nearly identical and every other pair orthogonal
    e = torch.eye(8)
    taus = torch.stack([e[0], e[0] + 0.01 * e[1], e[2], e[3]])
    blocks = [slice(0, 8)]
    first = collections.Counter()
    for seed in range(600):
        groups = flexmerge(taus, blocks, 3.0, order="random", seed=seed)[0]
        first[tuple(next(g for g in groups if len(g) == 2))] += 1
    assert set(first) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    assert max(first.values()) / 600 < 0.25 and min(first.values()) / 600 > 0.10   # uniform over 6 pairs
    assert flexmerge(taus, blocks, 3.0, order="greedy")[0] == [[0, 1], [2], [3]]  # greedy takes the similar pair
    # the authors' draw: a random block among those with more than one group, then rng.choice of two groups
    rng = np.random.default_rng(0)
    blocks2 = [slice(0, 4), slice(4, 8)]
    hits = collections.Counter(int(rng.choice([0, 1])) for _ in range(600))
    ours = collections.Counter(next(k for k, b in enumerate(flexmerge(taus, blocks2, 3.5, order="random", seed=s))
                                    if len(b) < 4) for s in range(600))
    assert abs(ours[0] / 600 - hits[0] / 600) < 0.1 and 0.4 < ours[0] / 600 < 0.6


def _authors_structured_ta(taus, blocks, lam, steps, backward=False):
    """Their structured_block_merge with Task Arithmetic: blocks in a fixed order; within a block the pair of
    groups whose group task vectors (a singleton: its task vector; a merged group: lam * mean of its members)
    have the highest cosine (strict >, pairs in root order), union by rank. Returns each block's partition
    after every step, as sorted lists."""
    n = taus.shape[0]
    order = list(reversed(range(len(blocks)))) if backward else list(range(len(blocks)))
    parent = {b: list(range(n)) for b in order}
    rank = {b: [1] * n for b in order}
    vec = {b: {i: taus[i, blocks[b]] for i in range(n)} for b in order}

    def find(b, x):
        while parent[b][x] != x:
            x = parent[b][x]
        return x

    out, cur = [], 0
    for _ in range(steps):
        b = order[cur]
        roots = sorted({find(b, i) for i in range(n)})
        best = (-1.1, None, None)
        for x in range(len(roots)):
            for y in range(x + 1, len(roots)):
                A, B = vec[b][roots[x]], vec[b][roots[y]]
                c = float(torch.dot(A, B) / (A.norm() * B.norm() + 1e-8))
                if c > best[0]:
                    best = (c, roots[x], roots[y])
        _, rx, ry = best
        members = [i for i in range(n) if find(b, i) in (rx, ry)]
        merged = lam * taus[members][:, blocks[b]].mean(0)
        root = rx if rank[b][rx] >= rank[b][ry] else ry
        other = ry if root == rx else rx
        if rank[b][rx] == rank[b][ry]:
            rank[b][root] += 1
        parent[b][other] = root
        vec[b][root] = merged
        if len({find(b, i) for i in range(n)}) == 1:
            cur += 1
        parts = []
        for bb in range(len(blocks)):
            groups = {}
            for i in range(n):
                groups.setdefault(find(bb, i), []).append(i)
            parts.append(sorted(sorted(g) for g in groups.values()))
        out.append(parts)
    return out


def test_fixed_orders_choose_pairs_by_the_merged_group_vectors_as_the_authors_do():
    g = torch.Generator().manual_seed(11)
    M, blocks = 5, [slice(0, 7), slice(7, 12)]
    taus = torch.randn(M, 12, generator=g)
    taus[1] += 2 * taus[0]                                         # some structure, so pairs differ by order
    ta = lambda v: merging.task_arithmetic(v, 1.5, reduce="mean")  # noqa: E731
    for backward in (False, True):
        theirs = _authors_structured_ta(taus, blocks, 1.5, 2 * (M - 1), backward=backward)
        size = float(M)
        for t in range(2 * (M - 1)):
            ours = flexmerge(taus, blocks, size - 1e-9, order="right-left" if backward else "left-right",
                             group_vector=ta)
            size = merging.size_of(ours, blocks)
            assert [sorted(sorted(x) for x in b) for b in ours] == theirs[t], (backward, t)
    # the rule differs from constituent linkage on these vectors (so the test can tell them apart)
    def steps(**kw):
        out, size = [], float(M)
        for _ in range(2 * (M - 1)):
            out.append(flexmerge(taus, blocks, size - 1e-9, order="left-right", **kw))
            size = merging.size_of(out[-1], blocks)
        return out
    assert steps() != steps(group_vector=ta)


def test_whole_model_clustering_is_sklearn_style_single_linkage_on_cosine_distances():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist
    g = torch.Generator().manual_seed(9)
    base, d = torch.randn(30, generator=g), torch.randn(6, 30, generator=g)
    taus = torch.stack([base + 0.6 * i * d[0] + 0.3 * d[i] for i in range(6)])   # a chain along one direction
    blocks = [slice(0, 30)]
    # on a chain the two linkages disagree: greedy FlexMerge's "single" (least similar pair) is not sklearn's
    assert any(sorted(map(sorted, flexmerge(taus, blocks, k, linkage="single")[0]))
               != sorted(map(sorted, merging.whole_model_groups(taus, blocks, k, linkage="single")[0])) for k in (3, 4))
    Z = linkage(pdist(taus.numpy(), "cosine"), "single")
    for k in range(1, 6):
        ref = fcluster(Z, k, "maxclust")
        ref_groups = sorted(sorted(int(i) for i in np.flatnonzero(ref == c)) for c in set(ref))
        ours = merging.whole_model_groups(taus, blocks, k, linkage="single")[0]
        assert sorted(sorted(x) for x in ours) == ref_groups, k
    with pytest.raises(ValueError, match="linkage"):
        merging.whole_model_groups(taus, blocks, 2, linkage="ward")
