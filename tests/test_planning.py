"""Notebook 11's library: the task generators, the MI estimator, the VQ-VAE, the RoPE GPT."""
import math

import numpy as np
import pytest
import torch

from lib.planning import analysis, gpt, mi, tasks, vq


# ---- task generators -------------------------------------------------------------------------
def test_every_grammar_string_parses_and_corruptions_mostly_do_not():
    g = tasks.make_grammar(levels=4, symbols=3, seed=1)
    data = tasks.cfg_dataset(g, 60, 16, 64, seed=2)
    rejected = 0
    for row, n in zip(data.tokens, data.lengths):
        s = row[1:1 + n].tolist()
        assert row[0] == data.bos and row[n + 1] == data.eos and (row[n + 2:] == data.pad).all()
        assert g.parses(s)
        t = list(s)
        t[len(t) // 2] = (t[len(t) // 2] + 1) % g.n_terminals
        rejected += not g.parses(t)
        assert not g.parses(s + [0] * 200)           # too long for any derivation
    assert rejected > 0                               # the parser can say no
    assert not g.parses([]) and not g.parses([g.n_terminals])


def test_grammar_parser_on_a_hand_made_grammar():
    # root -> A A | A B ; A -> 0 1 ; B -> 1 1 0   (two levels; terminals 0, 1)
    g = tasks.Grammar(rules=(((( 0, 0), (0, 1)),), (((0, 1),), ((1, 1, 0),))), n_terminals=2)
    assert g.parses([0, 1, 0, 1]) and g.parses([0, 1, 1, 1, 0])
    assert not g.parses([0, 1, 1, 0]) and not g.parses([0, 1]) and not g.parses([1, 1, 0, 0, 1])


@pytest.mark.parametrize("path_len", [4, 6])
def test_pf_instances_have_two_disjoint_valid_paths_and_a_decoy(path_len):
    d = tasks.pf_dataset(40, path_len, 24, seed=3)
    for i in range(len(d.tokens)):
        e = d.edges(i)
        assert len(e) == 3 * (path_len - 1)
        a, b, dec = (d.paths[i, k].tolist() for k in range(3))
        s, t = a[0], a[-1]
        assert tasks.pf_valid(d, i, a) and tasks.pf_valid(d, i, b) and not tasks.pf_valid(d, i, dec)
        assert set(a[1:-1]).isdisjoint(b[1:-1]) and dec[0] == s and t not in dec
        # exactly two valid paths: enumerate every walk from s along the edges
        succ = {}
        for u, v in e:
            succ.setdefault(u, []).append(v)
        found, stack = [], [[s]]
        while stack:
            p = stack.pop()
            if p[-1] == t:
                found.append(p)
            for v in succ.get(p[-1], []):
                stack.append(p + [v])
        assert sorted(found) == sorted([a, b])
        assert d.tokens[i, d.answer_start - 3:d.answer_start - 1].tolist() == [s, t]
        assert d.tokens[i, d.answer_start:d.answer_start + path_len].tolist() == a
        # the decoy branch awareness feeds ends at the target like a valid path, shares the decoy branch's
        # nodes, and is still invalid: only its last hop is missing from the graph
        fed = d.decoy_to_target()[i].tolist()
        assert fed[-1] == t and fed[:-1] == dec[:-1] and not tasks.pf_valid(d, i, fed)
        assert all((u, v) in e for u, v in zip(fed[:-2], fed[1:-1])) and (fed[-2], t) not in e


def test_generators_are_deterministic_and_check_their_input():
    assert torch.equal(tasks.pf_dataset(5, 4, 16, 7).tokens, tasks.pf_dataset(5, 4, 16, 7).tokens)
    g = tasks.make_grammar(seed=4)
    assert g == tasks.make_grammar(seed=4)
    with pytest.raises(ValueError, match="node labels"):
        tasks.pf_dataset(5, 6, 10, 0)
    with pytest.raises(ValueError, match="path_len"):
        tasks.pf_dataset(5, 2, 10, 0)
    with pytest.raises(ValueError, match="min_len"):
        tasks.cfg_dataset(g, 5, 10, 5, 0)


# ---- mutual information ----------------------------------------------------------------------
def test_mi_matches_a_known_joint_distribution():
    # X uniform on 4 symbols, Y = X with probability 0.7, else uniform on the 4: closed form I(X;Y)
    rng = np.random.default_rng(0)
    n = 200_000
    x = rng.integers(0, 4, n)
    y = np.where(rng.random(n) < 0.7, x, rng.integers(0, 4, n))
    p_same, p_other = 0.7 + 0.3 / 4, 0.3 / 4
    exact = math.log(4) + p_same * math.log(p_same) + 3 * p_other * math.log(p_other)   # H(Y) - H(Y|X)
    assert mi.mutual_information(x, y) == pytest.approx(exact, abs=5e-3)
    assert mi.mutual_information(x, x) == pytest.approx(math.log(4), abs=5e-3)


def test_miller_madow_and_the_shuffled_baseline_remove_the_bias_on_independent_codes():
    rng = np.random.default_rng(1)
    n, K = 2000, 16
    x, y = rng.integers(0, K, n), rng.integers(0, K, n)
    plug = mi.mutual_information(x, y, correction=None)
    mm = mi.mutual_information(x, y)
    assert plug == pytest.approx((K - 1) ** 2 / (2 * n), rel=0.3)       # the plug-in bias
    assert abs(mm) < 0.2 * plug                                         # Miller-Madow removes most of it
    assert abs(mi.excess_mi(x, y)) < 0.2 * plug


def test_conditional_mi_and_nmi():
    rng = np.random.default_rng(2)
    z = rng.integers(0, 4, 100_000)
    x = z.copy()
    y = z.copy()                       # X and Y share everything through Z
    assert mi.mutual_information(x, y) == pytest.approx(math.log(4), abs=0.01)
    assert abs(mi.conditional_mi(x, y, z)) < 0.01
    np.testing.assert_allclose(mi.normalized([0.5, 1.0, 0.25]), [0.5, 1.0, 0.25])
    with pytest.raises(ValueError, match="positive maximum"):
        mi.normalized([0.0, -1.0])
    with pytest.raises(ValueError, match="integers"):
        mi.entropy(np.array([0.5, 1.5]))


# ---- VQ-VAE ------------------------------------------------------------------------------------
def test_vq_codes_are_nearest_codebook_entries_and_recover_clusters():
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 5, (4, 8))
    lab = rng.integers(0, 4, 2000)
    X = torch.tensor(centers[lab][:, None, :] + rng.normal(0, 0.3, (2000, 1, 8)), dtype=torch.float32)
    model = vq.train_vq(X, K=8, steps=300, seed=0)
    z = model.encode(X[:50])
    k, dist = model.assign(z)
    brute = torch.cdist(z, model.codebook.detach()).argmin(1)
    assert torch.equal(k, brute)
    codes = model.codes(X).numpy()
    # the codes carry the cluster identity: I(code; cluster) close to H(cluster)
    assert mi.mutual_information(codes, lab) > 0.9 * math.log(4)
    assert torch.equal(model.codes(X), vq.train_vq(X, K=8, steps=300, seed=0).codes(X))   # deterministic
    with pytest.raises(ValueError, match="expected sets"):
        model.codes(X[:, 0])


# ---- the GPT -----------------------------------------------------------------------------------
def test_rope_is_a_rotation_and_depends_on_relative_position_only():
    cos, sin = gpt.rope_tables(16, 8)
    q, k = torch.randn(8), torch.randn(8)
    rq, rk = gpt.apply_rope(q.expand(16, 8), cos, sin), gpt.apply_rope(k.expand(16, 8), cos, sin)
    assert torch.allclose(rq.norm(dim=1), q.norm().expand(16), atol=1e-5)
    assert torch.allclose(rq[3] @ rk[1], rq[9] @ rk[7], atol=1e-5)       # offset 2 both times


def test_rope_rotates_each_pair_by_its_angle():
    # Su et al.: pair (2i, 2i+1) at position p turns by p * base^(-2i/dim), written out pair by pair
    L, dim = 5, 6
    cos, sin = gpt.rope_tables(L, dim)
    x = torch.randn(2, L, dim)
    want = torch.empty_like(x)
    for p in range(L):
        for i in range(dim // 2):
            a = p * 10000.0 ** (-2 * i / dim)
            x1, x2 = x[:, p, 2 * i], x[:, p, 2 * i + 1]
            want[:, p, 2 * i], want[:, p, 2 * i + 1] = x1 * math.cos(a) - x2 * math.sin(a), x1 * math.sin(a) + x2 * math.cos(a)
    assert torch.allclose(gpt.apply_rope(x, cos, sin), want, atol=1e-5)
    # a non-contiguous view (q, k come out of a permute) gives the same as its contiguous copy
    qkv = torch.randn(2, L, 3, 2, dim)
    q = qkv.permute(2, 0, 3, 1, 4)[0]
    assert torch.equal(gpt.apply_rope(q, cos, sin), gpt.apply_rope(q.contiguous(), cos, sin))


def test_gpt_is_causal_and_mtp_heads_predict_further_tokens():
    torch.manual_seed(0)
    m = gpt.GPT(gpt.GPTConfig(vocab=10, d_model=32, n_layers=2, n_heads=2, max_len=16, heads=2))
    x = torch.randint(0, 10, (3, 12))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 10
    assert torch.allclose(m(x)[:, :, :8], m(y)[:, :, :8], atol=1e-6)      # the future never leaks back
    # head j is trained on the token j + 1 ahead: the loss by hand
    mask = torch.ones_like(x, dtype=torch.bool)
    lg = m(x)
    ref = (torch.nn.functional.cross_entropy(lg[0, :, :-1].reshape(-1, 10), x[:, 1:].reshape(-1))
           + torch.nn.functional.cross_entropy(lg[1, :, :-2].reshape(-1, 10), x[:, 2:].reshape(-1))) / 2
    assert torch.allclose(gpt.lm_loss(m, x, mask), ref, atol=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 20, dtype=torch.long))


def test_gpt_learns_to_follow_a_copy_task():
    torch.manual_seed(0)
    x = torch.randint(0, 6, (2000, 5))
    tok = torch.cat([x, torch.full((2000, 1), 6), x], 1)                # a b c d e | a b c d e
    mask = torch.zeros_like(tok, dtype=torch.bool)
    mask[:, 6:] = True
    m = gpt.GPT(gpt.GPTConfig(vocab=7, d_model=32, n_layers=2, n_heads=2, max_len=16))
    gpt.train_lm(m, tok, mask, steps=400, batch_size=64, lr=3e-3, seed=0)
    out = gpt.greedy(m, tok[:200, :6], 5)
    assert (out == tok[:200, 6:]).float().mean() > 0.9


def test_analysis_refuses_positions_outside_the_strings():
    g = tasks.make_grammar(seed=0)
    data = tasks.cfg_dataset(g, 20, 16, 40, seed=0)
    m = gpt.GPT(gpt.GPTConfig(vocab=data.vocab, d_model=16, n_layers=1, n_heads=2, max_len=48))
    with pytest.raises(ValueError, match="inside every string"):
        analysis.cfg_horizon(m, data, t=10, block=4, taus=range(1, 30), K=4, vq_steps=2)


# ---- natural text: history reliance -------------------------------------------------------------
def _blocks(rule, n=3000, seed=0):
    """Windows of 9 states: block 2 (positions 0-3) and block 1 (4-7) each repeat one of 4 centres; the
    last state (8) is the centre ``rule(c1, c2)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (4, 6))
    c1, c2 = rng.integers(0, 4, n), rng.integers(0, 4, n)
    H = np.concatenate([np.repeat(centres[c2][:, None], 4, 1), np.repeat(centres[c1][:, None], 4, 1),
                        centres[rule(c1, c2)][:, None]], 1)
    return torch.tensor(H + rng.normal(0, 0.2, H.shape), dtype=torch.float32)


def test_history_reliance_finds_which_block_the_prediction_reads():
    from lib.planning import natural
    r = natural.history_reliance(_blocks(lambda c1, c2: c1), block=4, n_blocks=2, K=8, vq_steps=300)
    assert r["mi"][0] > 0.8 * math.log(4) and abs(r["mi"][1]) < 0.05 and abs(r["cmi"][1]) < 0.05
    # the prediction needs both blocks together: neither alone says anything, block 2 given block 1 says all
    r = natural.history_reliance(_blocks(lambda c1, c2: (c1 + c2) % 4), block=4, n_blocks=2, K=8, vq_steps=300)
    assert abs(r["mi"][0]) < 0.05 and abs(r["mi"][1]) < 0.05 and r["cmi"][1] > 0.8 * math.log(4)
    with pytest.raises(ValueError, match="blocks"):
        natural.history_reliance(_blocks(lambda c1, c2: c1), block=4, n_blocks=3, K=8, vq_steps=2)


def test_token_windows():
    from lib.planning import natural
    w = natural.token_windows(list(range(100)), 10, 20, seed=1)
    assert w.shape == (20, 10) and torch.equal(w[:, 1:] - w[:, :-1], torch.ones(20, 9, dtype=torch.long))
    assert len(set(w[:, 0].tolist())) == 20
    assert torch.equal(w, natural.token_windows(list(range(100)), 10, 20, seed=1))
    with pytest.raises(ValueError, match="windows of 10"):
        natural.token_windows(list(range(20)), 10, 50, seed=0)


def test_excess_conditional_mi_uses_a_within_z_baseline():
    rng = np.random.default_rng(3)
    n = 20_000
    z = rng.integers(0, 4, n)
    y = (z + (rng.random(n) < 0.3)) % 4            # Y mostly follows Z
    x_none = (z * 3 + rng.integers(0, 2, n)) % 8   # X depends on Z only: nothing beyond Z
    x_more = (y * 2 + rng.integers(0, 2, n)) % 8   # X reads Y itself
    assert abs(mi.excess_conditional_mi(x_none, y, z)) < 0.005
    assert mi.excess_conditional_mi(x_more, y, z) > 0.2
    # the within-Z permutation keeps Y's link to Z, so the baseline is the estimator's bias, not a shift
    assert abs(mi.excess_conditional_mi(x_none, y, z, seed=1) - mi.excess_conditional_mi(x_none, y, z, seed=2)) < 0.005
