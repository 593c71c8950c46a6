"""PEFT adapters, Ravan's exact averaging, Robust PCA and FedRPCA, against references written from the papers."""
import numpy as np
import pytest
import torch
from torch import nn

from lib import fl
from lib.client import LocalConfig, local_train
from lib.data import ArrayDataset
from lib.params import FlatModel
from lib.peft import (adapters, blocks, communicated_count, fedrpca_combine, fold_flat, inject, mean_pairwise_cosine,
                      rank_for_budget, robust_pca)
from lib.strategies import get_strategy


class Tiny(nn.Module):
    """A stand-in for a pre-trained encoder: two projections and a head."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.query, self.value, self.head = nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 3)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x):
        return self.head(torch.relu(self.value(torch.relu(self.query(x)))))


def _data(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=g)
    x = torch.randn(n, 12, generator=g) + 1.5 * nn.functional.one_hot(y, 12).float()
    return ArrayDataset(x, y, ["a", "b", "c"], "toy")


@pytest.mark.parametrize("method,heads", [("lora", 1), ("ffa", 1), ("lora_xs", 1), ("ravan", 3)])
def test_adapters_start_at_the_pretrained_model_and_train_only_themselves(method, heads):
    base = Tiny()
    x = torch.randn(5, 12)
    want = base(x)
    model = Tiny()
    names = inject(model, ["query", "value"], method, rank=2, heads=heads, seed=1)
    assert names == ["query", "value"]
    assert torch.allclose(model(x), want)                                  # dW = 0 at the start
    fm = FlatModel(model)
    per_layer = {"lora": 2 * (12 + 12), "ffa": 2 * 12, "lora_xs": 4, "ravan": heads * 4 + heads}[method]
    assert fm.numel == 2 * per_layer                                       # frozen weights are not in the vector
    assert all("base." not in n and not n.startswith("head") for n in fm.names)
    r = local_train(fm, fm.flat(), _data(), LocalConfig(lr=0.05, steps=5, batch_size=16))
    assert r.delta.abs().sum() > 0
    for n, m in model.named_parameters():                                  # the pre-trained weights never move
        assert not m.requires_grad or n in fm.names


def test_lora_delta_weight_is_b_times_a_and_ravan_sums_scaled_heads():
    lin = nn.Linear(6, 5)
    m = Tiny()
    inject(m, ["query"], "ravan", rank=2, heads=2, seed=0)
    (_, layer), = adapters(m)
    with torch.no_grad():
        layer.core.copy_(torch.randn(2, 2, 2))
        layer.scalings.copy_(torch.tensor([0.5, 2.0]))
    want = sum(layer.scalings[i] * layer.basis_B[i] @ layer.core[i] @ layer.basis_A[i] for i in range(2))
    assert torch.allclose(layer.delta_weight(), want, atol=1e-6)
    # frozen bases: orthonormal columns (B) and rows (A), and mutually orthogonal across heads
    Bs = torch.cat(list(layer.basis_B), 1)
    assert torch.allclose(Bs.T @ Bs, torch.eye(4), atol=1e-5)
    l2 = Tiny()
    inject(l2, ["query"], "lora", rank=3, seed=0)
    (_, lo), = adapters(l2)
    with torch.no_grad():
        lo.lora_B.copy_(torch.randn(12, 3))
    x = torch.randn(4, 12)
    assert torch.allclose(lo(x), lo.base(x) + x @ (lo.lora_B @ lo.lora_A).T, atol=1e-5)
    del lin


def test_ravan_upload_folds_scalings_and_the_server_average_is_exact():
    model = Tiny()
    inject(model, ["query", "value"], "ravan", rank=2, heads=2, seed=0)
    fm = FlatModel(model)
    x = fm.flat()
    g = torch.Generator().manual_seed(3)
    clients = []
    for k in range(3):                                                       # three clients' trained adapters
        w = x + 0.1 * torch.randn(x.shape, generator=g)
        clients.append(w)
    p = torch.tensor([0.5, 0.3, 0.2])

    def dW(w):
        fm.load_into_module(w)
        return [l.delta_weight().detach().clone() for _, l in adapters(model)]

    want = [sum(p[k] * dW(clients[k])[j] for k in range(3)) for j in range(2)]   # average of the clients' dW
    folded = [fold_flat(fm, w) for w in clients]
    assert all(torch.allclose(a, b, atol=1e-6) for w, f in zip(clients, folded) for a, b in zip(dW(w), dW(f)))
    avg = sum(p[k] * folded[k] for k in range(3))
    got = dW(avg)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))     # exact: scalings folded first
    assert all(communicated_count(l) == 2 * 4 for _, l in adapters(model))


def test_ravan_round_runs_and_keeps_scalings_at_one_on_the_server():
    model = Tiny()
    inject(model, ["query", "value"], "ravan", rank=2, heads=2, seed=0)
    data = [_data(40, s) for s in range(4)]
    run = fl.run_federated(model, "ravan", data, _data(60, 9), rounds=2, clients_per_round=3,
                           local=LocalConfig(lr=0.05, steps=4, batch_size=16))
    fm = FlatModel(model)
    parts = fm.unflatten(run.x)
    assert all(torch.allclose(parts[n], torch.ones(2)) for n in parts if n.endswith("scalings"))


def test_rank_for_budget_gives_equal_communication():
    d_in = d_out = 384
    budget = 8 * (d_in + d_out)                                              # LoRA rank 8
    assert rank_for_budget("lora", budget, d_in, d_out) == 8
    assert rank_for_budget("ffa", budget, d_in, d_out) == 16
    assert rank_for_budget("lora_xs", budget, d_in, d_out) == 78            # 78^2 = 6084 <= 6144
    assert rank_for_budget("ravan", budget, d_in, d_out, heads=4) == 39     # 4 x 39^2 = 6084
    with pytest.raises(ValueError):
        rank_for_budget("lora", 10, d_in, d_out)


def test_robust_pca_recovers_low_rank_plus_sparse():
    g = torch.Generator().manual_seed(0)
    D, K = 200, 40                                       # within principal component pursuit's recovery regime
    L0 = torch.randn(D, 2, generator=g, dtype=torch.float64) @ torch.randn(2, K, generator=g, dtype=torch.float64)
    S0 = torch.zeros(D, K, dtype=torch.float64)
    idx = torch.randperm(D * K, generator=g)[: D * K // 20]                 # 5% gross errors
    S0.view(-1)[idx] = 10 * torch.randn(len(idx), generator=g, dtype=torch.float64)
    L, S, it = robust_pca(L0 + S0)
    assert torch.linalg.norm(L - L0) / torch.linalg.norm(L0) < 1e-5
    assert torch.linalg.norm(S - S0) / torch.linalg.norm(S0) < 1e-5
    assert torch.allclose(L + S, L0 + S0, atol=1e-5) and it < 1000
    assert torch.linalg.matrix_rank(L, atol=1e-6) == 2


def test_fedrpca_aggregate_is_mean_low_rank_plus_beta_mean_sparse():
    g = torch.Generator().manual_seed(1)
    common = torch.randn(30, generator=g)
    deltas = common + 0.01 * torch.randn(6, 30, generator=g)
    deltas[2, 5] += 3.0                                                      # one client-specific spike
    blocks_ = [slice(0, 10), slice(10, 30)]
    agg1, _ = fedrpca_combine(deltas, blocks_, beta=1.0)
    assert torch.allclose(agg1, deltas.mean(0), atol=1e-5)                  # beta = 1 is plain averaging
    agg3, share = fedrpca_combine(deltas, blocks_, beta=3.0)
    ref = torch.empty(30)
    for sl in blocks_:
        L, S, _ = robust_pca(deltas[:, sl].T)
        ref[sl] = L.mean(1) + 3.0 * S.mean(1)
    assert torch.allclose(agg3, ref, atol=1e-5)
    assert agg3[5] - agg1[5] > 0.5 * (3.0 / 6) * 2                          # the spike is amplified by beta
    assert 0.5 < share <= 1.0
    assert mean_pairwise_cosine(torch.stack([common, common, -common])) == pytest.approx(-1 / 3, abs=1e-6)


def test_task_arithmetic_and_fedrpca_as_strategies():
    from lib.client import ClientResult
    x = torch.zeros(4)
    res = [ClientResult(i, torch.tensor([1.0, 2.0, 0.0, float(i)]), 10, 1, 0.0, 0.1, 0.0) for i in range(3)]
    ta = get_strategy("task_arithmetic", beta=2.0)
    new, state = ta.aggregate(x, ta.init(x, 3), res)
    assert torch.allclose(new, 2.0 * torch.tensor([1.0, 2.0, 0.0, 1.0]))
    rp = get_strategy("fedrpca", beta=1.0)
    new, state = rp.aggregate(x, rp.init(x, 3), res)
    assert torch.allclose(new, torch.tensor([1.0, 2.0, 0.0, 1.0]), atol=1e-5)
    assert state["low_rank_share"] and state["mean_cosine"]
    with pytest.raises(ValueError):
        get_strategy("fedrpca", beta=0.0)


def test_inject_refuses_unknown_targets_and_methods():
    with pytest.raises(ValueError, match="matches"):
        inject(Tiny(), ["nothing"], "lora", rank=2)
    with pytest.raises(ValueError, match="unknown adapter"):
        inject(Tiny(), ["query"], "dora", rank=2)
    with pytest.raises(ValueError, match="exceeds"):
        inject(Tiny(), ["query"], "ravan", rank=4, heads=4)


def test_blocks_cover_the_flat_vector():
    m = Tiny()
    inject(m, ["query", "value"], "lora", rank=2)
    fm = FlatModel(m)
    b = blocks(fm)
    assert [n for n, _ in b] == fm.names and b[-1][1].stop == fm.numel


@pytest.mark.parametrize("method", ["lora", "ravan"])
def test_adapters_on_real_minilm_leave_its_output_unchanged_until_trained(method):
    """LoRA/Ravan on MiniLM's attention query and value projections (the real model, from its PyPI wheel)."""
    import os

    from lib import pretrained
    try:
        enc = pretrained.sentence_encoder("minilm", device="cpu")
    except pretrained.ModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MiniLM not obtainable here: {exc}")
    texts = ["The hotel room was clean and quiet.", "The stock market fell sharply today."]
    before = enc.encode(texts)
    names = inject(enc.model, ["query", "value"], method, rank=4, heads=2 if method == "ravan" else 1)
    assert len(names) == 2 * enc.model.config.num_hidden_layers
    assert torch.allclose(enc.encode(texts), before, atol=1e-5)
    fm = FlatModel(enc.model)
    d = enc.model.config.hidden_size
    per_layer = 4 * (d + d) if method == "lora" else 2 * 16 + 2
    assert fm.numel == len(names) * per_layer                # only adapters are trained or sent


def test_effective_rank_and_top_encoder_pooling():
    from lib.peft.text import TopEncoder, effective_rank, group_partition
    assert effective_rank(torch.outer(torch.ones(4), torch.ones(3))) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0, abs=1e-6)
    assert effective_rank(torch.zeros(3, 3)) == 0.0
    parts = group_partition(np.array(["b", "a", "b", "c"]))
    assert [p.tolist() for p in parts] == [[1], [0, 2], [3]]

    class Identity(nn.Module):
        def forward(self, h, attention_mask=None):
            return h
    enc = TopEncoder([Identity()], hidden=2, num_classes=1)
    with torch.no_grad():
        enc.head.weight.fill_(1.0)
        enc.head.bias.zero_()
    packed = torch.tensor([[[1.0, 1.0, 1.0], [3.0, 3.0, 1.0], [100.0, 100.0, 0.0]]])   # last token is padding
    with torch.no_grad():
        assert float(enc(packed)) == pytest.approx(4.0)                               # mean over real tokens: (2+6)/2


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_top_encoder_reproduces_the_full_model_from_cached_lower_layers(family):
    """The cached path (lower layers once, then TopEncoder's copies of the top layers) gives the full
    encoder's last hidden states, for BERT (MiniLM's family) and MPNet (relative position bias)."""
    import transformers
    from lib.peft.text import TopEncoder, relative_bias_of
    kw = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    model = (transformers.BertModel(transformers.BertConfig(**kw)) if family == "bert"
             else transformers.MPNetModel(transformers.MPNetConfig(**kw))).eval()
    if family == "mpnet":       # a bias table of realistic size (random init draws it near zero)
        torch.nn.init.normal_(model.encoder.relative_attention_bias.weight, 0.0, 1.0)
    ids = torch.randint(5, 50, (4, 12))
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 8:] = 0
    mask[3, 5:] = 0
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        for k in (1, 2):
            packed = torch.cat([out.hidden_states[3 - k], mask.unsqueeze(-1).float()], -1)
            top = TopEncoder(model.encoder.layer[-k:], 32, 3, relative_bias=relative_bias_of(model))
            got = top.encode_top(packed)
            real = mask.bool()
            assert torch.allclose(got[real], out.last_hidden_state[real], atol=1e-4), (family, k)
    if family == "mpnet":       # the bias table is frozen: it is not among the trained (and sent) parameters
        assert not any(p.requires_grad for p in top.rel_bias.parameters())
        with torch.no_grad():       # and without it the layers compute something else
            plain = TopEncoder(model.encoder.layer[-2:], 32, 3).encode_top(packed)
        assert not torch.allclose(plain[real], out.last_hidden_state[real], atol=1e-2)
        assert all("rel_bias" not in n for n, p in top.named_parameters() if p.requires_grad)
