"""Image tasks and a pre-trained CNN to fine-tune and merge (notebook 07's vision track).

FlexMerge's vision results merge ViT-B/32 models fine-tuned on eight image datasets; offline we have the
CIFAR-10 test set and Fashion-MNIST, and an ImageNet EfficientNet-Lite0 (``lib.pretrained.image_model``).
A task is a dataset or a subset of its classes (relabelled 0..k-1), so four tasks with different label
spaces come from two datasets:

================== =================== ============================================
task               dataset             classes
================== =================== ============================================
cifar10            cifar10_testsplit   all ten
cifar10_animals    cifar10_testsplit   bird, cat, deer, dog, frog, horse
fashion_mnist      fashion_mnist       all ten
fashion_tops       fashion_mnist       T-shirt/top, Pullover, Coat, Shirt (the confusable ones)
================== =================== ============================================

Fine-tuning keeps BatchNorm frozen (its statistics and affine parameters: merging running statistics
has no meaning), and the stem and the last 1x1 convolution too, so the trainable backbone is exactly
the 16 MBConv blocks, FlexMerge's merge units here; each task has its own classifier, never merged.

For federated fine-tuning (notebook 05's full profile) :class:`TopCNN` is the network's top stages on
cached lower-stage features, with LoRA-family adapters on their 1x1 convolutions.
"""
from __future__ import annotations

import numpy as np
import torch

IMAGE_TASKS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "cifar10": ("cifar10_testsplit", None),
    "cifar10_animals": ("cifar10_testsplit", ("bird", "cat", "deer", "dog", "frog", "horse")),
    "fashion_mnist": ("fashion_mnist", None),
    "fashion_tops": ("fashion_mnist", ("T-shirt/top", "Pullover", "Coat", "Shirt")),
}


def load_image_task(name: str, n_train: int | None, n_test: int | None, seed: int = 0, data_dir=None):
    """``(train, test)`` of an image task: its dataset's splits restricted to the task's classes
    (relabelled in the order listed), then ``n_train`` / ``n_test`` examples drawn at random (seeded)."""
    from ..data import ArrayDataset, load_dataset
    if name not in IMAGE_TASKS:
        raise ValueError(f"unknown image task {name!r}; known: {', '.join(IMAGE_TASKS)}")
    dataset, keep = IMAGE_TASKS[name]
    rng = np.random.default_rng(seed)
    out = []
    for split, n in zip(load_dataset(dataset, data_dir), (n_train, n_test)):
        classes = list(keep) if keep else list(split.classes)
        old = [split.classes.index(c) for c in classes]
        y = split.y.numpy()
        idx = np.flatnonzero(np.isin(y, old))
        if n is not None and n < len(idx):
            idx = np.sort(rng.permutation(idx)[:n])
        relabel = np.full(len(split.classes), -1)
        relabel[old] = np.arange(len(old))
        out.append(ArrayDataset(split.x[idx], torch.as_tensor(relabel[y[idx]]), classes, name,
                                {"dataset": dataset}))
    return out[0], out[1]


def lite0_for_task(num_classes: int, dataset: str, size: int = 224, seed: int = 0) -> torch.nn.Module:
    """EfficientNet-Lite0 (ImageNet) with a new ``num_classes`` classifier (seeded init), reading the
    workbook's ``dataset`` tensors at ``size`` px; BatchNorm, the stem and the last 1x1 convolution are
    frozen, so its trainable parameters are the 16 MBConv blocks, then the classifier."""
    from timm.layers import freeze_batch_norm_2d

    from ..pretrained import image_model
    model = image_model("efficientnet-lite0", dataset=dataset, size=size)
    net = freeze_batch_norm_2d(model[1])             # BatchNorm2d -> FrozenBatchNorm2d: buffers only
    net.conv_stem.requires_grad_(False)
    net.conv_head.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.reset_classifier(num_classes)
    model[1] = net
    return model


def mbconv_units(model: torch.nn.Module) -> tuple[list[str], list[slice]]:
    """The 16 MBConv blocks as merge units: their names and their slices of the ``FlatModel`` vector
    (the blocks' trainable parameters come first, in order; the classifier after them)."""
    net = model[1]
    names, slices, expected, pos = [], [], [], 0
    for i, stage in enumerate(net.blocks):
        for j, block in enumerate(stage):
            own = [(n, p) for n, p in block.named_parameters() if p.requires_grad]
            expected += [f"1.blocks.{i}.{j}.{n}" for n, _ in own]
            n = sum(p.numel() for _, p in own)
            names.append(f"b{len(names) + 1} (stage {i + 1})")
            slices.append(slice(pos, pos + n))
            pos += n
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if trainable[:len(expected)] != expected:
        raise ValueError("the MBConv blocks' parameters are not first in the flat vector: was the model built "
                         "by lite0_for_task?")
    return names, slices


class TopCNN(torch.nn.Module):
    """EfficientNet-Lite0's stages from ``from_stage`` on (copies, to be adapted), its frozen head
    convolution and BatchNorm, global average pooling and a new linear ``head`` (seeded). Its input is
    what the frozen lower stages output (:func:`lower_stage_features`, cached), so federated clients run
    only the top of the network, as :class:`lib.peft.text.TopEncoder` does for text."""

    def __init__(self, model: torch.nn.Module, from_stage: int, num_classes: int, seed: int = 0):
        import copy
        super().__init__()
        net = model[1]
        if not 0 <= from_stage < len(net.blocks):
            raise ValueError(f"from_stage must be in 0..{len(net.blocks) - 1}, got {from_stage}")
        self.blocks = copy.deepcopy(net.blocks[from_stage:])
        self.conv_head, self.bn2 = copy.deepcopy(net.conv_head), copy.deepcopy(net.bn2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = torch.nn.Linear(net.num_features, num_classes)

    def forward(self, x):
        h = self.bn2(self.conv_head(self.blocks(x)))
        return self.head(h.mean((2, 3)))


@torch.no_grad()
def lower_stage_features(model: torch.nn.Module, x: torch.Tensor, from_stage: int,
                         batch_size: int = 256) -> torch.Tensor:
    """What the frozen input adapter, stem and stages ``< from_stage`` of a :func:`lite0_for_task` model
    output for the images ``x`` (the workbook's tensors): [N, C, H, W]."""
    from ..utils import progress
    model.eval()
    inp, net = model[0], model[1]
    out = []
    for i in progress(range(0, len(x), batch_size), desc="encoding the frozen lower stages"):
        h = net.bn1(net.conv_stem(inp(x[i: i + batch_size])))
        out.append(net.blocks[:from_stage](h))
    return torch.cat(out)
