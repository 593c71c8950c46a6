"""Merging operators and FlexMerge's greedy grouping, against references written from the papers."""
import pytest
import torch

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
