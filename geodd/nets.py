"""Networks: the distillation-standard ConvNet and the cross-architecture zoo.

All networks take normalised images ``[N, C, H, W]`` and expose ``embed(x) -> [N, D]`` (the
features that distribution matching compares) and ``forward(x) -> logits``. Forms follow the
DC/DM code base (``docs/methods/dm.md`` "Settings"): ConvNet = 3 x [conv3x3(128) -> instance norm
-> ReLU -> avgpool2], with padding 3 on the first conv of 1-channel input, so 28x28 images are
treated as 32x32 and the embedding is 128*4*4 = 2048-d.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import GeoddError

ARCHITECTURES = ("convnet", "mlp", "lenet", "alexnet", "vgg11", "resnet18")


def _norm(kind: str, channels: int, shape: tuple[int, int]) -> nn.Module:
    if kind == "instancenorm":  # per-sample, per-channel with affine, as in the DC code (GroupNorm(C, C))
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.LayerNorm([channels, *shape], elementwise_affine=True)
    if kind == "groupnorm":
        return nn.GroupNorm(4, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise GeoddError(f"unknown norm {kind!r}; choose instancenorm, batchnorm, layernorm, groupnorm or none")


def _act(kind: str) -> nn.Module:
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "leakyrelu": lambda: nn.LeakyReLU(0.01), "swish": nn.SiLU}
    if kind not in acts:
        raise GeoddError(f"unknown activation {kind!r}; choose one of {sorted(acts)}")
    return acts[kind]()


class ConvNet(nn.Module):
    """The DC/DM ConvNet (width 128, depth 3, instance norm, ReLU, average pooling by default).
    Not called in a notebook; used by ``geodd.nets``."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int] = (32, 32), width: int = 128,
                 depth: int = 3, act: str = "relu", norm: str = "instancenorm", pool: str = "avgpooling"):
        super().__init__()
        layers: list[nn.Module] = []
        c, (h, w) = channels, im_size
        for d in range(depth):
            pad = 3 if (channels == 1 and d == 0) else 1
            layers.append(nn.Conv2d(c, width, kernel_size=3, padding=pad))
            h, w = h + 2 * pad - 2, w + 2 * pad - 2
            layers += [_norm(norm, width, (h, w)), _act(act)]
            if pool == "avgpooling":
                layers.append(nn.AvgPool2d(2, 2))
            elif pool == "maxpooling":
                layers.append(nn.MaxPool2d(2, 2))
            elif pool != "none":
                raise GeoddError(f"unknown pooling {pool!r}; choose avgpooling, maxpooling or none")
            if pool != "none":
                h, w = h // 2, w // 2
            c = width
        self.features = nn.Sequential(*layers)
        self.embed_dim = c * h * w
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """DC's MLP: flatten -> 128 -> 128 -> classes, ReLU. Not called in a notebook; used by ``geodd.nets``."""

    def __init__(self, channels: int, num_classes: int, im_size: tuple[int, int]):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(channels * im_size[0] * im_size[1], 128), nn.ReLU(),
                                  nn.Linear(128, 128), nn.ReLU())
        self.embed_dim = 128
        self.classifier = nn.Linear(128, num_classes)

    def embed(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.embed(x))


class _FeatureNet(nn.Module):
    """A conv trunk + flatten + (optional hidden MLP) + linear head; the embed size is measured, not hard-coded."""

    def __init__(self, trunk: nn.Module, hidden: nn.Module, channels: int, num_classes: int, im_size):
        super().__init__()
        self.features, self.hidden = trunk, hidden
        with torch.no_grad():
            d = self.hidden(self.features(torch.zeros(1, channels, *im_size)).flatten(1)).shape[1]
        self.embed_dim = d
        self.classifier = nn.Linear(d, num_classes)

    def embed(self, x):
        return self.hidden(self.features(x).flatten(1))

    def forward(self, x):
        return self.classifier(self.embed(x))


def LeNet(channels: int, num_classes: int, im_size):
    """DC's LeNet: conv5(6) -> pool -> conv5(16) -> pool -> 120 -> 84 -> classes.
    Not called in a notebook; used by ``geodd.nets``."""
    trunk = nn.Sequential(nn.Conv2d(channels, 6, 5, padding=2 if channels == 1 else 0), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
    with torch.no_grad():
        flat = trunk(torch.zeros(1, channels, *im_size)).numel()
    hidden = nn.Sequential(nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
    return _FeatureNet(trunk, hidden, channels, num_classes, im_size)


def AlexNet(channels: int, num_classes: int, im_size):
    """DC's AlexNet variant for 32x32: five convs (128-192-256-192-192), three max-pools.
    Not called in a notebook; used by ``geodd.nets``."""
    trunk = nn.Sequential(
        nn.Conv2d(channels, 128, 5, padding=4 if channels == 1 else 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    return _FeatureNet(trunk, nn.Identity(), channels, num_classes, im_size)


def VGG11(channels: int, num_classes: int, im_size, norm: str = "instancenorm"):
    """DC's VGG11 with instance norm; first conv padded by 3 for 1-channel input.
    Not called in a notebook; used by ``geodd.nets``."""
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    layers: list[nn.Module] = []
    c, h = channels, im_size[0]
    for i, v in enumerate(cfg):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            h //= 2
            continue
        pad = 3 if (channels == 1 and i == 0) else 1
        layers.append(nn.Conv2d(c, v, 3, padding=pad))
        h = h + 2 * pad - 2
        layers += [_norm(norm, v, (h, h)), nn.ReLU()]
        c = v
    layers.append(nn.AdaptiveAvgPool2d(1))
    return _FeatureNet(nn.Sequential(*layers), nn.Identity(), channels, num_classes, im_size)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(norm, cout, (1, 1)) if norm != "layernorm" else nn.GroupNorm(1, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(norm, cout, (1, 1)) if norm != "layernorm" else nn.GroupNorm(1, cout)
        self.short = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       _norm(norm, cout, (1, 1)) if norm != "layernorm" else nn.GroupNorm(1, cout))

    def forward(self, x):
        out = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(out)) + self.short(x))


def ResNet18(channels: int, num_classes: int, im_size, norm: str = "instancenorm"):
    """DC's ResNet18 (BasicBlock [2, 2, 2, 2], 3x3 stem, instance norm), global average pooling.
    Not called in a notebook; used by ``geodd.nets``."""
    layers: list[nn.Module] = [nn.Conv2d(channels, 64, 3, 1, 1, bias=False), _norm(norm, 64, (1, 1)), nn.ReLU()]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [_BasicBlock(cin, cout, stride, norm), _BasicBlock(cout, cout, 1, norm)]
        cin = cout
    layers.append(nn.AdaptiveAvgPool2d(1))
    return _FeatureNet(nn.Sequential(*layers), nn.Identity(), channels, num_classes, im_size)


_CONVNET_VARIANT = re.compile(r"^convnet(?:_?(?P<kind>d|w)(?P<num>\d+)|_?(?P<norm>bn|ln|gn|nn|in))?$")
_NORM_CODES = {"bn": "batchnorm", "ln": "layernorm", "gn": "groupnorm", "nn": "none", "in": "instancenorm"}


def get_network(arch: str, channels: int, num_classes: int, im_size: tuple[int, int], *, width: int = 128,
                depth: int = 3, norm: str = "instancenorm", act: str = "relu", pool: str = "avgpooling") -> nn.Module:
    """Build a network by name: ``convnet`` (and DC's variants ``convnetD4``, ``convnetW64``, ``convnetBN``, ...),
    ``mlp``, ``lenet``, ``alexnet``, ``vgg11``, ``resnet18``. Names are case-insensitive.
    Not called in a notebook; used by ``geodd.nets``, ``geodd.cli``."""
    name = arch.lower().replace("-", "")
    m = _CONVNET_VARIANT.match(name)
    if m:
        if m.group("kind") == "d":
            depth = int(m.group("num"))
        elif m.group("kind") == "w":
            width = int(m.group("num"))
        elif m.group("norm"):
            norm = _NORM_CODES[m.group("norm")]
        return ConvNet(channels, num_classes, tuple(im_size), width=width, depth=depth, act=act, norm=norm, pool=pool)
    builders = {"mlp": MLP, "lenet": LeNet, "alexnet": AlexNet, "vgg11": VGG11, "resnet18": ResNet18}
    if name not in builders:
        raise GeoddError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)} "
                         "(or a ConvNet variant such as convnetD4, convnetW64, convnetBN)")
    return builders[name](channels, num_classes, tuple(im_size))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under ``torch.manual_seed(seed)`` without disturbing the caller's global RNG state.
    Not called in a notebook; used by ``geodd.nets``, ``geodd.generative.model``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def make_network(arch: str, channels: int, num_classes: int, im_size, *, seed: int, device=None,
                 **kwargs) -> nn.Module:
    """``get_network`` with PyTorch's default initialisation drawn from ``seed`` (never the clock).
    Used in notebooks 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase) through their
    study modules."""
    with seeded(seed):
        net = get_network(arch, channels, num_classes, im_size, **kwargs)
    return net.to(device) if device is not None else net
