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
    class Tok:                  # lower_layer_features (which runs only the layers it needs) gives the same input
        def __call__(self, texts, **kw):
            return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    from lib.peft.text import lower_layer_features
    for k in (1, 3):
        feats = lower_layer_features(model, Tok(), ["t"] * 4, top_layers=k, max_length=12)
        assert torch.allclose(feats, torch.cat([out.hidden_states[3 - k], mask.unsqueeze(-1).float()], -1), atol=1e-5)
    assert len(model.encoder.layer) == 3                  # the model is left whole
    if family == "mpnet":       # the bias table is frozen: it is not among the trained (and sent) parameters
        assert not any(p.requires_grad for p in top.rel_bias.parameters())
        with torch.no_grad():       # and without it the layers compute something else
            plain = TopEncoder(model.encoder.layer[-2:], 32, 3).encode_top(packed)
        assert not torch.allclose(plain[real], out.last_hidden_state[real], atol=1e-2)
        assert all("rel_bias" not in n for n, p in top.named_parameters() if p.requires_grad)


class PointwiseNet(nn.Module):
    """A stand-in for a CNN: a 1x1 expansion, a 3x3 depthwise convolution, a 1x1 projection, a head."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv_pw, self.conv_dw = nn.Conv2d(6, 10, 1, bias=False), nn.Conv2d(10, 10, 3, padding=1, groups=10)
        self.conv_pwl, self.head = nn.Conv2d(10, 6, 1), nn.Linear(6, 3)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x):
        return self.head(self.conv_pwl(torch.relu(self.conv_dw(self.conv_pw(x)))).mean((2, 3)))


@pytest.mark.parametrize("method,heads", [("lora", 1), ("ravan", 2)])
def test_adapters_on_pointwise_convolutions_are_the_linear_update_at_every_pixel(method, heads):
    """A 1x1 convolution is a linear map of channels at each pixel; its adapter adds dW the same way."""
    x = torch.randn(2, 6, 5, 5)
    want = PointwiseNet()(x)
    model = PointwiseNet()
    names = inject(model, lambda n: n.startswith("conv_pw"), method, rank=2, heads=heads, seed=3)
    assert names == ["conv_pw", "conv_pwl"]                          # the 3x3 depthwise conv is not a candidate
    assert torch.allclose(model(x), want, atol=1e-6)                 # dW = 0 at the start
    (_, pw), (_, pwl) = adapters(model)
    with torch.no_grad():
        for layer in (pw, pwl):
            for p in layer.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape) * 0.5)
        d = pw.delta_weight()
        assert d.shape == (10, 6)
        w = pw.base.weight[:, :, 0, 0] + d                           # reference: per pixel, y = (W + dW) x
        ref = torch.einsum("oi,nihw->nohw", w, x)
        assert torch.allclose(pw(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="1x1"):
        from lib.peft import AdapterLinear
        AdapterLinear(nn.Conv2d(4, 4, 3), "lora", rank=1)


def test_budget_rank_gives_every_method_loras_count_on_any_shape():
    from lib.peft.adapters import budget_rank
    for d_out, d_in in [(672, 112), (112, 672), (384, 384), (320, 1152)]:
        lora = 4 * (d_in + d_out)
        for method, heads in [("lora", 1), ("ffa", 1), ("lora_xs", 1), ("ravan", 4)]:
            r = budget_rank(method, 4, heads)(d_out, d_in)
            sent = {"lora": r * (d_in + d_out), "ffa": r * d_out, "lora_xs": r * r, "ravan": heads * r * r}[method]
            up = {"lora": (r + 1) * (d_in + d_out), "ffa": (r + 1) * d_out, "lora_xs": (r + 1) ** 2,
                  "ravan": heads * (r + 1) ** 2}[method]
            assert sent <= lora < up, (method, d_out, d_in, r)        # the largest rank within LoRA's count
    model = PointwiseNet()
    inject(model, ["conv_pw"], "ffa", rank=budget_rank("ffa", 1))
    (_, layer), = adapters(model)
    assert communicated_count(layer) == 10 * 1 + 0 and layer.rank == 1   # ffa: r d_out <= 1 (6 + 10) -> r = 1


def test_top_decoder_reproduces_a_gemma3_model_from_cached_lower_layers():
    """The cached path for decoders: lower layers once, then TopDecoder's copies of the top layers (causal and
    sliding-window masks, rotary positions, final norm) give the full model's last hidden states."""
    import transformers
    from lib.peft.text import TopDecoder, lower_layer_features
    cfg = transformers.Gemma3TextConfig(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                        sliding_window=4, layer_types=["sliding_attention", "full_attention"] * 2,
                                        max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    lm = transformers.Gemma3ForCausalLM(cfg).eval()
    ids = torch.randint(3, 60, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0                                                   # right padding
    with torch.no_grad():
        full = lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
        hs = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        real = mask.bool()
        for k in (1, 3):
            packed = torch.cat([hs[4 - k], mask.unsqueeze(-1).float()], -1)
            top = TopDecoder(lm, k, num_classes=2)
            assert torch.allclose(top.encode_top(packed)[real], full[real], atol=1e-4), k
        wrong = TopDecoder(lm, 3, num_classes=2)
        wrong.window = None                                           # without the sliding window: different
        assert not torch.allclose(wrong.encode_top(packed)[real], full[real], atol=1e-3)

    class Tok:                                                        # lower_layer_features on the same model
        padding_side = "left"

        def __call__(self, texts, **kw):
            return {"input_ids": ids[:len(texts)], "attention_mask": mask[:len(texts)]}
    feats = lower_layer_features(lm, Tok(), ["a", "b", "c"], top_layers=3, max_length=10)
    assert torch.allclose(feats, packed, atol=1e-6) and len(lm.model.layers) == 4
    feats = lower_layer_features(lm, Tok(), ["a", "b", "c"], top_layers=4, max_length=10)
    assert torch.allclose(feats[..., :-1], hs[0], atol=1e-6)                 # all layers on top: the embeddings
    assert not any(n.startswith(("norm", "rotary")) for n, p in top.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="top_layers"):
        TopDecoder(lm, 5, num_classes=2)


def test_top_cnn_on_cached_lower_stages_is_the_whole_network():
    """EfficientNet-Lite0 (random weights): lower stages once, then TopCNN's copies of the top stages and the
    network's own classifier give the network's logits; its 1x1 convolutions take adapters."""
    import timm
    from timm.layers import freeze_batch_norm_2d
    from lib.peft.vision import TopCNN, lower_stage_features
    torch.manual_seed(0)
    net = freeze_batch_norm_2d(timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5)).eval()
    model = nn.Sequential(nn.Identity(), net)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        want = net(x)
        for start in (4, 6):
            top = TopCNN(model, start, num_classes=5).eval()
            top.head.load_state_dict(net.classifier.state_dict())
            got = top(lower_stage_features(model, x, start))
            assert torch.allclose(got, want, atol=1e-4), start
    names = inject(top, lambda n: "conv_pw" in n, "ravan", rank=4, heads=2)
    assert names == ["blocks.6.0.conv_pw", "blocks.6.0.conv_pwl"]        # the stages keep their numbers
    with torch.no_grad():
        assert torch.allclose(top(lower_stage_features(model, x, 6)), want, atol=1e-4)


def test_image_track_adapts_only_wide_pointwise_convolutions_at_equal_budgets(tmp_path, monkeypatch):
    """EfficientNet-Lite0 (the real ImageNet weights) on CIFAR-10 as a federated PEFT track: cached lower
    stages, adapters on the 1x1 convolutions with >= 112 channels, every method within LoRA's count."""
    import os

    from conftest import require_seeded_data
    from lib import pretrained
    from lib.peft.tracks import MIN_CONV, load_track
    require_seeded_data()
    monkeypatch.setenv("WORKBOOK_RESULTS", str(tmp_path))
    try:
        track = load_track("efficientnet-lite0", "cifar10", "smoke", 2, 8, 4, seed=0, image_size=64)
    except pretrained.ModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"EfficientNet-Lite0 not obtainable here: {exc}")
    assert track.train.x.shape == (8, 112, 4, 4) and track.train.num_classes == 10   # stage 5's input at 64 px
    sent = {}
    for method, heads in [("lora", 1), ("ffa", 1), ("lora_xs", 1), ("ravan", 4)]:
        net = track.adapted(method, 4, heads, seed=0)
        layers = adapters(net)
        assert [n for n, _ in layers] == [f"blocks.5.{j}.conv_{c}" for j in range(4) for c in ("pw", "pwl")] + \
            ["blocks.6.0.conv_pw", "blocks.6.0.conv_pwl", "conv_head"]
        assert all(min(l.base.weight.shape[:2]) >= MIN_CONV for _, l in layers)
        sent[method] = sum(communicated_count(l) for _, l in layers)
        with torch.no_grad():
            assert net(track.train.x[:2]).shape == (2, 10)
    lora = sent.pop("lora")
    assert all(0.9 * lora <= v <= lora for v in sent.values()), sent
    again = load_track("efficientnet-lite0", "cifar10", "smoke", 2, 8, 4, seed=0, image_size=64)
    assert torch.equal(again.train.x, track.train.x)                      # cached, deterministic
    with pytest.raises(ValueError, match="unknown model"):
        load_track("resnet", "cifar10", "smoke", 1, 8, 4)


@pytest.mark.parametrize("family", ["minilm", "mpnet"])
def test_merge_units_cover_every_trained_parameter_of_a_layer(family):
    """Notebook 07's merge units per encoder: six per transformer layer, in order, covering its parameters."""
    import transformers
    from lib.merging import param_blocks
    from lib.peft.text import MERGE_UNITS, TopEncoder, relative_bias_of
    kw = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=32)
    model = (transformers.BertModel(transformers.BertConfig(**kw)) if family == "minilm"
             else transformers.MPNetModel(transformers.MPNetConfig(**kw)))
    top = TopEncoder(model.encoder.layer, 16, 3, relative_bias=relative_bias_of(model))
    names, slices = param_blocks(top.layers, MERGE_UNITS[family])
    assert [n.split(":")[1] for n in names] == MERGE_UNITS[family] * 2
    assert slices[0].start == 0 and all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert slices[-1].stop == sum(p.numel() for p in top.layers.parameters())


def test_track_clients_and_labels():
    """Clients of a track's setting: one per group ("domains"), or Dirichlet label skew over 8 with half per
    round ("dirα"); labels name the main track's settings plainly and the others with their track."""
    from lib.peft.tracks import Track, clients_for, load_tracks, setting_label
    groups = np.array(["a", "b", "c", "d"] * 20)
    train = ArrayDataset(torch.randn(80, 3), torch.arange(80) % 4, list("wxyz"), "toy", {"groups": groups})
    track = Track("m", "toy", 1, train, train, lambda s: None, ["q"])
    clients, per_round = clients_for(track, "domains-hetero", 0)
    assert per_round == 4 and [len(c) for c in clients] == [20] * 4
    assert [sorted(set(c.y.tolist())) for c in clients] == [[0], [1], [2], [3]]     # group g holds label g here
    clients, per_round = clients_for(track, "dir0.1", 0)
    assert per_round == 4 and len(clients) == 8 and sum(len(c) for c in clients) == 80
    assert min(len(c) for c in clients) >= 2
    again, _ = clients_for(track, "dir0.1", 0)
    assert [len(c) for c in again] == [len(c) for c in clients]                  # seeded
    with pytest.raises(ValueError, match="client setting"):
        clients_for(track, "iid", 0)
    tracks = [(track, ["domains"]), (Track("gemma", "vitaminc", 1, train, train, lambda s: None, []), ["dir1"])]
    assert setting_label(tracks, 0, "domains") == "domains"
    assert setting_label(tracks, 1, "dir1") == "gemma · vitaminc: dir1"
    with pytest.raises(ValueError, match="model, task, top_layers"):
        load_tracks(["minilm", "multiemo", 1], [], "smoke")


def _ravan_after_a_round():
    """A Ravan-adapted Tiny whose cores are non-zero (as after a first round), its FlatModel and point."""
    from lib.peft.adapters import ravan_slices
    model = Tiny()
    inject(model, ["query", "value"], "ravan", rank=2, heads=2, seed=0)
    fm = FlatModel(model)
    x = fm.flat()
    g = torch.Generator().manual_seed(5)
    for core, _, _ in ravan_slices(fm):
        x[core] = 0.3 * torch.randn(core.stop - core.start, generator=g)
    return fm, x


def test_ravan_scalings_move_only_by_about_the_lr_with_one_step_size_and_far_more_with_their_own():
    """Adam moves a coordinate by about lr per step: at lr 1e-3 and 4 steps a scaling cannot leave
    [1 - 0.004, 1 + 0.004] (the single-lr ablation); with scaling_lr = 100 it moves by tenths."""
    from lib.peft import Ravan
    from lib.peft.adapters import ravan_slices
    fm, x = _ravan_after_a_round()
    local = LocalConfig(lr=1e-3, steps=4, batch_size=16, optimizer="adam")
    spread = {}
    for mult in (1.0, 100.0):
        strat = Ravan(scaling_lr=mult)
        hooks = strat.configure_client(strat.init(x, 1), 0)
        r = strat.local_update(fm, x, _data(40, 1), local, hooks, seed=3, client_id=0)
        spread[mult] = r.extra["scaling_spread"]
        strat.aggregate(x, {}, [r])
        assert strat.last_scaling_spread == pytest.approx(spread[mult])
        w = x + r.delta
        assert all(torch.allclose(w[s], torch.ones(s.stop - s.start)) for _, s, _ in ravan_slices(fm))  # folded
    assert 0 < spread[1.0] <= 4 * 1e-3 * 1.001
    assert spread[100.0] > 25 * spread[1.0] and spread[100.0] > 0.1


def test_ravan_head_budget_freezes_the_other_heads_for_that_client_only():
    from lib.peft import Ravan
    from lib.peft.adapters import ravan_slices
    fm, x = _ravan_after_a_round()
    local = LocalConfig(lr=1e-2, steps=3, batch_size=16, optimizer="adam")
    strat = Ravan(scaling_lr=10.0, head_budget={1: 1})
    for cid, trained in ((0, 2), (1, 1)):
        hooks = strat.configure_client(strat.init(x, 2), cid)
        d = strat.local_update(fm, x, _data(40, 2), local, hooks, seed=11, client_id=cid).delta
        for core, scal, heads in ravan_slices(fm):
            per = (core.stop - core.start) // heads
            moved = [bool(d[core.start + h * per: core.start + (h + 1) * per].abs().sum() > 0) for h in range(heads)]
            assert sum(moved) == trained, (cid, moved)
    with pytest.raises(ValueError, match="head budget"):
        Ravan(head_budget={0: 0})
    with pytest.raises(ValueError, match="scaling_lr"):
        Ravan(scaling_lr=-1)


def test_batched_training_refuses_per_coordinate_step_sizes():
    from lib.batched import local_train_batched
    from lib.client import ClientHooks
    model = Tiny()
    inject(model, ["query"], "lora", rank=2)
    fm = FlatModel(model)
    x = fm.flat()
    with pytest.raises(ValueError, match="lr_scale"):
        local_train_batched(fm, x, [_data(20, 0)], LocalConfig(steps=1), [ClientHooks(lr_scale=torch.ones_like(x))],
                            [0], [0])


def test_scaled_averaging_on_adapter_blocks_only_leaves_the_head_a_plain_average():
    from lib.client import ClientResult
    g = torch.Generator().manual_seed(2)
    D = torch.randn(4, 12, generator=g)
    D[:, 10:] = torch.tensor([[1.0, -1.0], [3.0, 1.0], [0.0, 2.0], [-2.0, 5.0]])    # the "head": last 2 coordinates
    res = [ClientResult(i, D[i], 10, 1, 0.0, 0.1, 0.0) for i in range(4)]
    x = torch.zeros(12)
    adapters_only = (("lora_A", slice(0, 4)), ("lora_B", slice(4, 10)))
    plain = D.mean(0)
    ta = get_strategy("task_arithmetic", beta=3.0, blocks=adapters_only)
    new, state = ta.aggregate(x, ta.init(x, 4), res)
    assert torch.allclose(new[:10], 3.0 * plain[:10]) and torch.allclose(new[10:], plain[10:])   # head not scaled
    assert state["mean_cosine_blocks"][0] == pytest.approx(mean_pairwise_cosine(D[:, :10]), abs=1e-6)
    assert state["mean_cosine"][0] == pytest.approx(mean_pairwise_cosine(D), abs=1e-6)
    whole = get_strategy("task_arithmetic", beta=3.0, cosine_blocks=adapters_only)   # no blocks: FedAvg, server lr 3
    new_w, state_w = whole.aggregate(x, whole.init(x, 4), res)
    assert torch.allclose(new_w, 3.0 * plain)
    assert state_w["mean_cosine_blocks"][0] == pytest.approx(mean_pairwise_cosine(D[:, :10]), abs=1e-6)
    rp = get_strategy("fedrpca", beta=3.0, blocks=adapters_only)
    new, state = rp.aggregate(x, rp.init(x, 4), res)
    assert torch.allclose(new[10:], plain[10:], atol=1e-6)              # outside the blocks: the plain average
    ref = torch.empty(10)
    for sl in (slice(0, 4), slice(4, 10)):
        L, S, _ = robust_pca(D[:, sl].T)
        ref[sl] = L.mean(1) + 3.0 * S.mean(1)
    assert torch.allclose(new[:10], ref, atol=1e-5)


def test_robust_pca_is_near_the_exact_optimum_of_principal_component_pursuit():
    """Ours (Lin, Chen & Ma's inexact ALM, the low-rank step first, penalty growth 1.1) against a slow exact
    solve: ADMM at a fixed penalty run to convergence. Both satisfy L + S = M; ours is within 0.1% of the optimal
    objective, where Lin et al.'s growth of 1.5 stops more than 1% above it."""
    g = torch.Generator().manual_seed(7)
    M = torch.randn(60, 8, generator=g, dtype=torch.float64)             # updates of 8 clients: no clean structure
    lam = 1 / 60 ** 0.5
    obj = lambda L, S: float(torch.linalg.matrix_norm(L, ord="nuc") + lam * S.abs().sum())  # noqa: E731
    L, S, _ = robust_pca(M)
    mu = 8 * 60 / (4 * M.abs().sum())                                    # a fixed penalty (Candes et al. 2011)
    Le, Se, Y = torch.zeros_like(M), torch.zeros_like(M), torch.zeros_like(M)
    for _ in range(20000):
        u, sv, vh = torch.linalg.svd(M - Se + Y / mu, full_matrices=False)
        Le = (u * (sv - 1 / mu).clamp_min(0)) @ vh
        Z = M - Le + Y / mu
        Se = torch.sign(Z) * (Z.abs() - lam / mu).clamp_min(0)
        Y = Y + mu * (M - Le - Se)
    assert torch.allclose(Le + Se, M, atol=1e-6) and torch.allclose(L + S, M, atol=1e-5)
    assert obj(L, S) >= obj(Le, Se) - 1e-6                               # the exact solve is the optimum
    assert obj(L, S) <= 1.001 * obj(Le, Se)
    fast = robust_pca(M, rho=1.5)                                        # Lin et al.'s growth stops short
    assert obj(*fast[:2]) > 1.01 * obj(Le, Se)
    with pytest.raises(ValueError, match="rho"):
        robust_pca(M, rho=1.0)
