"""Architectures, registered by name: the paper's ResNet-50, the later zoo's Wide-ResNet-50-2 and ResNet-18,
and a small ResNet for CPU work.

Every model is a `Classifier`: a normaliser that owns mean/std (so inputs and attacks live in [0, 1]
pixel space), a torchvision-style ResNet trunk `net` (conv1, bn1, layer1..layer4, avgpool, fc), and a
list of residual blocks read from the module tree in input-to-output order. "The last k blocks" therefore
means the same thing for every architecture (ResNet-50: 1 = layer4.2, 3 = layer4.*, 9 = layer4.* + layer3.*).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock, Bottleneck

from compute.errors import lookup

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ("layer1", "layer2", "layer3", "layer4")


class Normalize(nn.Module):
    """(x - mean) / std with mean/std stored as buffers, so they travel with the checkpoint."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallResNet(ResNet):
    """A CPU-sized ResNet: 3x3 stride-2 stem, one BasicBlock per stage, widths 16/32/64/128.

    Reuses torchvision's ResNet forward and block builder, so it has the same module tree as ResNet-18/50.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64, 128), depth: int = 1):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, widths[0], depth)
        self.layer2 = self._make_layer(BasicBlock, widths[1], depth, stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], depth, stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], depth, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class Classifier(nn.Module):
    """normalise -> ResNet trunk -> fc; exposes blocks, penultimate features and the fc layer."""

    def __init__(self, arch: str, net: ResNet, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.arch = arch
        self.input_size = input_size
        self.normalize = Normalize(mean, std)
        self.net = net
        # Where `normalize`'s mean/std came from: 'architecture' (the ArchSpec's defaults: a freshly built model,
        # or a weights file that stored none, such as a torchvision state dict) or 'checkpoint' (stored with the
        # weights: our files, MadryLab's). The authors' normalisation rule reads it (compute.normalisation).
        self.statistics_origin = "architecture"

    @property
    def fc(self) -> nn.Linear:
        return self.net.fc

    @property
    def num_features(self) -> int:
        return self.net.fc.in_features

    @property
    def num_classes(self) -> int:
        return self.net.fc.out_features

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """Residual blocks in input-to-output order, named by their place in the module tree."""
        return [
            (f"{stage}.{idx}", block)
            for stage in STAGES
            for idx, block in enumerate(getattr(self.net, stage).children())
        ]

    def stem(self) -> nn.Sequential:
        """Everything before the first residual block."""
        net = self.net
        return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) in [0, 1] -> (N, F) penultimate features."""
        h = self.stem()(self.normalize(x))
        for _, block in self.blocks():
            h = block(h)
        return torch.flatten(self.net.avgpool(h), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))

    def reset_fc(self, num_classes: int, generator: torch.Generator | None = None) -> None:
        """Replace the final layer by a freshly initialised one for `num_classes` outputs (the paper's A.3)."""
        fc = nn.Linear(self.num_features, num_classes)
        if generator is not None:
            bound = 1.0 / self.num_features**0.5
            with torch.no_grad():
                fc.weight.uniform_(-bound, bound, generator=generator)
                fc.bias.uniform_(-bound, bound, generator=generator)
        self.net.fc = fc.to(next(self.parameters()).device)


@dataclass(frozen=True)
class ArchSpec:
    name: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    factory: Callable[[int], ResNet]
    description: str
    # False for a registration that only changes the input size of another one (same weights, same keys and
    # shapes): a checkpoint cannot tell them apart, so guessing the architecture from its keys skips it.
    guessable: bool = True


ARCHITECTURES: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    ARCHITECTURES[spec.name] = spec
    return spec


register(ArchSpec("resnet50", 224, IMAGENET_MEAN, IMAGENET_STD, lambda c: ResNet(Bottleneck, [3, 4, 6, 3], num_classes=c),
                  "torchvision ResNet-50, the paper's architecture (16 blocks)"))
register(ArchSpec("wide_resnet50_2", 224, IMAGENET_MEAN, IMAGENET_STD,
                  lambda c: ResNet(Bottleneck, [3, 4, 6, 3], num_classes=c, width_per_group=128),
                  "torchvision Wide-ResNet-50-2 (16 blocks, twice ResNet-50's inner width), in the later zoo"))
register(ArchSpec("resnet18", 32, IMAGENET_MEAN, IMAGENET_STD, lambda c: ResNet(BasicBlock, [2, 2, 2, 2], num_classes=c),
                  "torchvision ResNet-18 (8 blocks); 32x32 inputs by default"))
# The zoo's ImageNet ResNet-18s see 224x224 inputs; `resnet18` keeps 32 for its current users (same weights).
register(ArchSpec("resnet18_224", 224, IMAGENET_MEAN, IMAGENET_STD, ARCHITECTURES["resnet18"].factory,
                  "torchvision ResNet-18 (8 blocks) at 224x224, for ImageNet checkpoints (pass --arch resnet18_224)",
                  guessable=False))
register(ArchSpec("small_resnet", 28, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), lambda c: SmallResNet(c),
                  "CPU ResNet: stride-2 stem, 1 BasicBlock per stage, widths 16/32/64/128 (4 blocks)"))


def arch_names() -> list[str]:
    return sorted(ARCHITECTURES)


def build_model(arch: str, num_classes: int, input_size: int | None = None, seed: int | None = None) -> Classifier:
    """A freshly initialised model; `seed` makes the initialisation reproducible.

    A seeded model is initialised from its own generator (torch's layer initialisers draw from the default
    generator, so it is swapped in inside `fork_rng` and the caller's random state is left as it was).
    """
    spec = lookup("architecture", ARCHITECTURES, arch)
    size = input_size or spec.input_size
    if seed is None:
        return Classifier(arch, spec.factory(num_classes), size, spec.mean, spec.std)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        return Classifier(arch, spec.factory(num_classes), size, spec.mean, spec.std)
