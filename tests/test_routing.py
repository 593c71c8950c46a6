"""ProxRouter's pieces against their definitions: tilted weights, the two routers, AUC_n, Jaccard."""
import numpy as np
import pytest
import torch

from lib.routing import (KMeansRouter, KNNRouter, accuracy_cost_curve, auc_n, cosine_distance, jaccard_top, kmeans,
                         tilted_weights)


def test_tilted_weights_solve_the_kl_regularized_problem():
    phi = torch.tensor([[0.1, 0.5, 0.9]], dtype=torch.float64)
    p = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    tau = 0.3
    w = tilted_weights(phi, p, tau)
    want = p * torch.exp(-phi / tau)
    assert torch.allclose(w, want / want.sum())
    # the objective sum w phi + tau KL(w || p) is minimal at w among random points of the simplex
    f = lambda v: float((v * phi).sum() + tau * (v * (v / p).log()).sum())  # noqa: E731
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        v = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample()
        assert f(w) <= f(v.unsqueeze(0)) + 1e-12
    assert torch.allclose(tilted_weights(phi, p, float("inf")), p)                 # tau -> inf: the prior
    assert tilted_weights(phi, p, 1e-4).argmax() == 0                                # tau -> 0: the nearest
    with pytest.raises(ValueError):
        tilted_weights(phi, p, 0.0)


def _clusters(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(3, 8)
    lab = torch.arange(n) % 3
    x = centers[lab] + 0.05 * torch.randn(n, 8, generator=g)
    # two models: model 0 is right on cluster 0 only, model 1 on clusters 1 and 2
    correct = torch.stack([(lab == 0).double(), (lab != 0).double()], 1)
    return x, lab, correct


def test_kmeans_finds_separated_clusters_and_the_router_picks_the_right_model():
    x, lab, correct = _clusters()
    c, a = kmeans(x, 3, seed=0)
    assert len(set(zip(lab.tolist(), a.tolist()))) == 3                            # a bijection of labels
    r = KMeansRouter(x, correct, k=3, seed=0)
    assert torch.allclose(r.prior.sum(), torch.tensor(1.0, dtype=torch.float64))
    xq, labq, _ = _clusters(30, seed=1)
    for tau in (0, 0.05, 1.0):
        choice = r.utilities(xq, tau).argmax(1)
        assert torch.equal(choice, (labq != 0).long())


def test_knn_router_base_is_plain_averaging_over_the_k_nearest():
    x, lab, correct = _clusters()
    r = KNNRouter(x, correct, k=5)
    q = x[:4] + 0.01
    near = cosine_distance(q, x).topk(5, dim=1, largest=False).indices
    assert torch.allclose(r.utilities(q, float("inf")), correct[near].mean(1))
    assert torch.allclose(r.utilities(q, 1e-4), correct[near[:, 0]])               # hard: the nearest one


def test_accuracy_cost_curve_and_auc_n():
    correct = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    costs = torch.tensor([1.0, 10.0])
    est = correct.clone()                                                           # an oracle router
    c, a = accuracy_cost_curve(est, correct, costs, lambdas=[0.0, 1.0])
    # lambda 0: ties go to the first (cheap) model, so the oracle pays 10 only where the cheap one fails:
    # mean cost (1 + 10 + 10 + 1) / 4 = 5.5 at accuracy 1; lambda 1: always the cheap model, accuracy 0.5
    assert list(c) == [1.0, 5.5] and list(a) == [0.5, 1.0]
    # the curve's upper envelope is 0.5 up to cost 10 and 1.0 at 10: AUC_n ~ 50% of the range
    assert auc_n(np.array([1.0, 10.0]), np.array([0.5, 1.0]), (1.0, 10.0)) == pytest.approx(50.0, abs=0.2)
    assert auc_n(np.array([1.0]), np.array([1.0]), (1.0, 10.0)) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        auc_n(c, a, (2.0, 2.0))


def test_jaccard_top():
    a, b = np.array([0.9, 0.8, 0.1, 0.2]), np.array([0.9, 0.1, 0.8, 0.2])
    assert jaccard_top(a, b, 2) == pytest.approx(1 / 3)
    assert jaccard_top(a, a, 3) == 1.0


def test_leave_task_out_hides_the_outlier_from_base_and_prox_only():
    from lib.routing import leave_task_out
    x, lab, correct = _clusters(120)
    x = x.double()
    correct = torch.cat([correct, torch.ones(120, 1, dtype=torch.float64)], 1)   # model 2: right everywhere, dearest
    costs = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    train = (torch.arange(120) % 2 == 0).numpy()
    rows = {r["router"]: r for r in leave_task_out(x, correct, lab.numpy(), costs, 0, train, router="kmeans", k=3,
                                                   inv_tau=20, inv_taus=[1, 100])}
    # task 0 needs model 0 (or the dear model 2); trained without task 0, the routers rate model 0 at zero and
    # prefer model 1 (as good as model 2 on what they saw, and cheaper): wrong on every outlier query
    assert rows["Base"]["outlier"] == pytest.approx(0.0) and rows["Prox"]["outlier"] == pytest.approx(0.0)
    assert rows["AllSee"]["outlier"] == pytest.approx(100.0)
    assert rows["Base"]["inlier"] == pytest.approx(100.0)
    n_out, n_in = int(((lab == 0).numpy() & ~train).sum()), int(((lab != 0).numpy() & ~train).sum())
    assert rows["Base"]["overall"] == pytest.approx(100.0 * n_in / (n_in + n_out))
    knn = {r["router"]: r for r in leave_task_out(x, correct, lab.numpy(), costs, 0, train, router="knn", k=10,
                                                  inv_tau=20)}
    assert knn["AllSee"]["outlier"] == pytest.approx(100.0) and knn["Base"]["outlier"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="router must be"):
        leave_task_out(x, correct, lab.numpy(), costs, 0, train, router="svm", k=3, inv_tau=20)


def test_pool_specs_budgets_and_stratified_splits():
    from lib.routing import pool as rp
    specs = rp.make_specs(["a", "b", "c"], layers=[1, 3], copies=2, budget=60, alpha=0.5, min_per_task=5, seed=0)
    assert [s.name for s in specs] == ["L1-a", "L1-b", "L3-a", "L3-b"]
    for s in specs:
        assert sum(s.per_task.values()) == 60 and min(s.per_task.values()) >= 5
    assert [s.per_task for s in specs] == [s.per_task for s in rp.make_specs(["a", "b", "c"], [1, 3], 2, 60, 0.5, 5, 0)]
    with pytest.raises(ValueError, match="budget"):
        rp.make_specs(["a", "b"], [1], 1, 5, 0.5, 5, 0)
    task = np.repeat([0, 1, 2], [10, 20, 30])
    tr, te = rp.split_queries(task, 0.5, seed=1)
    assert not (tr & te).any() and (tr | te).all()
    assert [int(tr[task == t].sum()) for t in range(3)] == [5, 10, 15]


def test_pool_measures_correctness_of_real_classifiers():
    from lib.routing import pool as rp
    rng = np.random.default_rng(0)
    feats, labels, tri, qi, toks = {}, {}, {}, {}, {}
    for t, informative_layer in [("easy", 2), ("hard", 1)]:
        y = rng.integers(0, 2, 400)
        f = torch.tensor(rng.normal(0, 1, (400, 3, 4)), dtype=torch.float32)
        f[:, informative_layer, 0] += torch.tensor(4.0 * (2 * y - 1), dtype=torch.float32)   # only one layer sees the label
        feats[t], labels[t], tri[t], qi[t], toks[t] = f, y, np.arange(300), np.arange(300, 400), np.full(400, 10)
    specs = [rp.ModelSpec("L1", 1, {"easy": 100, "hard": 100}), rp.ModelSpec("L2", 2, {"easy": 100, "hard": 100})]
    pool = rp.build_pool(specs, feats, labels, tri, qi, toks, {1: 1_000_000, 2: 2_000_000}, seed=0)
    acc = pool.accuracy_by_task()
    assert pool.correct.shape == (200, 2) and list(pool.task[:100]) == [0] * 100
    assert acc[0, 1] > 0.95 and acc[0, 0] < 0.7          # task "easy": only the layer-2 model reads the signal
    assert acc[1, 0] > 0.95 and acc[1, 1] < 0.7          # task "hard": only layer 1 does
    np.testing.assert_allclose(pool.costs, [10.0, 20.0])  # parameters x tokens, in millions
    qi["easy"] = np.arange(250, 350)
    with pytest.raises(ValueError, match="overlap"):
        rp.build_pool(specs, feats, labels, tri, qi, toks, {1: 1, 2: 2}, seed=0)


def test_few_shot_outliers_reach_the_knn_router():
    from lib.routing import leave_task_out
    x, lab, correct = _clusters(120)
    correct = torch.cat([correct, torch.ones(120, 1, dtype=torch.float64)], 1)
    costs = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    train = (torch.arange(120) % 2 == 0).numpy()
    rows = {r["router"]: r for r in leave_task_out(x.double(), correct, lab.numpy(), costs, 0, train, router="knn", k=10,
                                                   inv_tau=20, few_shot=10)}
    assert rows["Prox"]["outlier"] == pytest.approx(100.0)      # the 10 seen outliers are every outlier's neighbours
    assert len(rows["Base"]["curve outlier"]) == 40 and max(rows["Base"]["curve outlier"]) <= 1.0
    with pytest.raises(ValueError, match="few_shot"):
        leave_task_out(x.double(), correct, lab.numpy(), costs, 0, train, router="knn", k=10, inv_tau=20, few_shot=99)


# ---------------------------------------------------------------- the measured LLM correctness table
from types import SimpleNamespace  # noqa: E402

from lib.routing import llm as rl  # noqa: E402
from lib.data import MCItem  # noqa: E402


class CharTok:
    """A character tokenizer that drops spaces (so " 4" is one token, as a BPE word is): ids 2..61 by code
    point, BOS = 1 with special tokens, pad 0."""
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True, truncation=False, max_length=None):
        ids = [2 + ord(ch) % 60 for ch in text if ch != " "]
        return SimpleNamespace(input_ids=([1] if add_special_tokens else []) + ids)


def tiny_lm():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=128, n_embd=16, n_layer=1, n_head=2)).eval()


def test_choice_logliks_match_a_hand_computation_per_choice():
    """The prompt run once, its cache shared by the choices (right-padded, of different lengths): each
    choice's score is its tokens' mean log-probability after the context, computed here one choice at a
    time, prompt included, with no cache and no padding."""
    model, tok = tiny_lm(), CharTok()
    ctx, choices = "Q: 2+2?\nA:", ["4", "five", "twenty two"]        # one token, four, nine
    got, n_tokens = rl.choice_logliks(model, tok, ctx, choices)
    assert [len(tok(" " + c, add_special_tokens=False).input_ids) for c in choices] == [1, 4, 9]
    c_ids = tok(ctx).input_ids
    for g, ch in zip(got, choices):
        cont = tok(" " + ch, add_special_tokens=False).input_ids
        ids = torch.tensor([c_ids + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        ref = sum(float(logp[len(c_ids) - 1 + j, t]) for j, t in enumerate(cont)) / len(cont)
        assert g == pytest.approx(ref, abs=1e-5)
    assert n_tokens == sum(len(c_ids) + len(tok(" " + c, add_special_tokens=False).input_ids) for c in choices)
    # every choice one token: the prompt's last logits decide alone
    one, _ = rl.choice_logliks(model, tok, ctx, ["4", "5"])
    with torch.no_grad():
        last = torch.log_softmax(model(input_ids=torch.tensor([c_ids])).logits[0, -1], -1)
    assert one == pytest.approx([float(last[tok("4", add_special_tokens=False).input_ids[0]]),
                                 float(last[tok("5", add_special_tokens=False).input_ids[0]])], abs=1e-5)


def _items(n, task):
    # the correct choice repeats the question's last word: a similarity scorer that matches text finds it
    return [MCItem(f"{task} question {i} word{i}", [f"other{i}", f"word{i}", f"x{i}"], [1], task) for i in range(n)]


class WordEncoder:
    """Bag-of-words embeddings (a fixed hash, crc32), so identical words give cosine 1; counts words as tokens."""
    max_length = 64
    model = torch.nn.Linear(3, 2)                      # 8 parameters: the cost's parameter count
    tokenizer = staticmethod(lambda t, **k: SimpleNamespace(input_ids=t.split()))

    def encode(self, texts, batch_size=64):
        import zlib
        out = torch.zeros(len(texts), 4096)
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, zlib.crc32(w.encode()) % 4096] += 1.0
        return torch.nn.functional.normalize(out, dim=1)


def test_correctness_table_measures_every_scorer_and_resumes_from_its_cache(tmp_path):
    calls = []
    load = lambda sc: calls.append(sc.name) or WordEncoder()  # noqa: E731
    kw = dict(n_per_task=6, shots_pool=2, cache_dir=tmp_path, items_of=lambda t: _items(10, t),
              instruction_of=lambda t: "")
    sc = [rl.Scorer("words", "similarity", "w")]
    pool, evaluated = rl.correctness_table(["a", "b"], sc, load=load, **kw)
    assert pool.correct.shape == (12, 1) and pool.correct.all()          # the matching word is always found
    assert list(pool.task) == [0] * 6 + [1] * 6 and pool.tasks == ["a", "b"]
    q_tokens = np.mean([len(it.question.split()) + sum(len(c.split()) for c in it.choices)
                        for t in "ab" for it in evaluated[t]])
    assert pool.costs[0] == pytest.approx(8 * q_tokens / 1e6)            # parameters x tokens, in millions
    again, _ = rl.correctness_table(["a", "b"], sc, load=lambda s: pytest.fail("scored again"), **kw)
    assert np.array_equal(again.correct, pool.correct) and calls == ["words", "words"]


def test_prompts_never_show_the_evaluated_item_and_list_the_options():
    items = _items(20, "t")
    ev, shots = rl.split_items(items, 12, 5, seed=3)
    assert len(ev) == 12 and len(shots) == 5 and not {i.question for i in ev} & {i.question for i in shots}
    p = rl.prompt(ev[0], shots[:2], instruction="Pick one.")
    assert p.startswith("Pick one.\n\n") and p.endswith(f"Q: {ev[0].question}\nOptions: {' | '.join(ev[0].choices)}\nA:")
    assert p.count("Q: ") == 3 and f"A: {shots[0].choices[shots[0].answer]}\n\n" in p


def test_bad_llm_table_inputs():
    with pytest.raises(ValueError, match="kind must be 'lm' or 'similarity'"):
        rl.Scorer("x", "oracle", "m")
    with pytest.raises(ValueError, match="0 for a similarity scorer"):
        rl.Scorer("x", "similarity", "m", shots=2)
    with pytest.raises(ValueError, match="names must be unique"):
        rl.correctness_table(["a"], [rl.Scorer("x", "similarity", "m")] * 2, 3, load=lambda s: None,
                             items_of=lambda t: _items(5, t), instruction_of=lambda t: "")
    with pytest.raises(ValueError, match="3 shots but only 2 prompt examples"):
        rl.correctness_table(["a"], [rl.Scorer("g", "lm", "m", shots=3)], 3, shots_pool=2, load=lambda s: None,
                             items_of=lambda t: _items(8, t), instruction_of=lambda t: "")


def test_split_items_shuffles_each_items_options_and_keeps_its_answer():
    """A file that lists the correct choice first (as BIG-bench's temporal_sequences does) must not leak
    it through the option order of the prompt."""
    items = [MCItem(f"q{i}", [f"right{i}", f"w{i}a", f"w{i}b", f"w{i}c"], [0], "t") for i in range(200)]
    ev, shots = rl.split_items(items, 150, 5, seed=0)
    for it in ev + shots:
        assert it.choices[it.answer] == f"right{it.question[1:]}" and sorted(it.choices) == sorted(
            items[int(it.question[1:])].choices)
    first = np.mean([it.answer == 0 for it in ev])
    assert 0.15 < first < 0.35                                    # about 1/4, not always 0
    again, _ = rl.split_items(items, 150, 5, seed=0)
    assert [it.choices for it in again] == [it.choices for it in ev]
    synonyms = MCItem("q", ["3", "x", "three", "y"], [0, 2], "t")
    shuffled = rl.shuffle_choices(synonyms, np.random.default_rng(1))
    assert sorted(shuffled.choices[a] for a in shuffled.answers) == ["3", "three"]
    assert items[0].choices[0] == "right0"                        # the caller's items are left as they were


# ---------------------------------------------------------------- outliers with inputs of their own (issue 40)
def test_outlier_groups_keep_tasks_on_the_same_inputs_together():
    from lib.routing import pool as rp
    texts = {"intent": ["play a song", "book a table"],
             "sentiment": ["Great hotel.", "Awful  pills.", "ok product"],
             "domain": ["great hotel.", "awful pills.", "OK product"],          # the same sentences, case/space aside
             "facts": ["The sky is green. Claim: it is blue."]}
    share = rp.shared_inputs(texts)
    assert share.loc["sentiment", "domain"] == pytest.approx(1.0) and share.loc["domain", "sentiment"] == pytest.approx(1.0)
    assert share.loc["intent", "facts"] == 0.0
    # leaving out "sentiment" alone would leave its inputs among the inliers: it goes out with "domain"
    assert rp.outlier_groups(texts) == [("intent",), ("sentiment", "domain"), ("facts",)]
    # one shared sentence in three is enough to join (tol 0), not with a tolerance above it
    texts["facts"] = ["play a song", "x", "y", "z", "w"]
    assert rp.outlier_groups(texts)[0] == ("intent", "facts")
    assert ("intent",) in rp.outlier_groups(texts, tol=0.6)


def test_leave_task_out_leaves_a_group_of_tasks_out_together():
    from lib.routing import leave_task_out
    x, lab, correct = _clusters(120)
    correct = torch.cat([correct, torch.ones(120, 1, dtype=torch.float64)], 1)
    costs = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)
    train = (torch.arange(120) % 2 == 0).numpy()
    one = {r["router"]: r for r in leave_task_out(x.double(), correct, lab.numpy(), costs, 0, train, router="kmeans",
                                                  k=3, inv_tau=20)}
    both = {r["router"]: r for r in leave_task_out(x.double(), correct, lab.numpy(), costs, [0, 1], train,
                                                   router="kmeans", k=3, inv_tau=20)}
    # with tasks 0 and 1 out, only task 2's queries are inliers, and AllSee still sees everything
    assert both["AllSee"]["outlier"] == pytest.approx(100.0)
    assert both["Base"]["inlier"] == pytest.approx(100.0)
    assert both["Base"]["outlier"] != pytest.approx(one["Base"]["outlier"])
    with pytest.raises(ValueError, match="no query belongs"):
        leave_task_out(x.double(), correct, lab.numpy(), costs, [7], train, router="kmeans", k=3, inv_tau=20)


def test_gap_premise_fails_on_a_pool_with_nothing_to_route():
    from lib import evidence
    from lib.routing import gap_premise
    base = np.array([40.0, 35.0, 50.0, 45.0, 38.0])
    held = gap_premise(base + np.array([3.0, 5.0, 4.0, 6.0, 2.0]), base)
    assert held.met and "AllSee - Base" in held.value
    tie = gap_premise(base.copy(), base)                         # instances that tie (a pool at chance)
    below = gap_premise(base - np.array([1.0, -1.0, 3.0, 2.0, 0.5]), base)
    assert not tie.met and not below.met
    ev = evidence.compare(base + 2, base, magnitude=3.5, unit="points", premise=tie)
    assert ev.verdict == "premise not met" and "seeing the outlier task helps" in ev.reason
