"""Feature schedules: which network embeds the real and synthetic images at each outer iteration.

- ``FreshNets`` (DM, ``docs/methods/dm.md``): a new, randomly initialised, never trained network each time.
- ``NetPool`` (IDM, ``docs/methods/idm.md``): a queue of networks that grows on a schedule; a few members are
  trained a few SGD steps on real data every time, and one member is drawn with its running accuracy, which
  weights IDM's synthetic cross-entropy term. IDM also stores each synthetic image as ``factor^2`` down-scaled
  tiles (``partition_pack``) that are expanded back for matching and training (``partition_expand``).

Both take their draws from the run's named random streams (``geodd.streams``): network seeds from ``nets``, the
pool's training from ``pool``, so a seed fixes the schedule and DM and IDM runs share their networks' seeds.
Shown in notebooks 00 (DM) and 02 (IDM).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import GeoddError
from .augment import DSA
from .data import Dataset
from .options import require
from .precision import autocast
from .streams import Streams

SCHEDULES = ("dm", "idm")


def seed_from(gen: torch.Generator) -> int:
    """A fresh 62-bit seed drawn from ``gen`` (for a network's init or one augmentation).
    Not called in a notebook; used by ``geodd.schedules``, ``geodd.distill``."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))


@dataclass
class IDMOptions:
    """IDM's pool and loss weight (``docs/methods/idm.md`` "Settings"). The pool sizes default to the release's
    CIFAR-10 command; ``ce_weight``'s default 0.5 is ours and weak: the registry's IDM variants
    (``geodd.methods``) set the release's value.

    ``ce_weight`` multiplies ``accuracy * CE(net(syn), c)``, with the net's running training accuracy as a
    fraction in [0, 1]. The release multiplies by the accuracy in percent, so geodd's weight is 100 times the
    release's (its 0.5 is our 50; ``docs/methods/idm.md`` "Units of the CE weight"; reconstruction: our choice of
    units).
    Not called in a notebook; used by ``geodd.schedules``, ``geodd.distill``, ``geodd.synset``.
    """

    net_num: int = 100                 # pool capacity
    initial_nets: int = 3
    net_generate_interval: int = 30    # push a new random net every N iterations
    fetch_net_num: int = 2             # pool nets trained per iteration
    model_train_steps: int = 10        # SGD steps per fetched net per iteration
    train_batch: int = 256
    net_lr: float = 0.01
    ce_weight: float = 0.5
    expand: int = 2                    # partition-and-expansion factor per side (1 = off)

    def check(self) -> None:
        for name in ("net_num", "initial_nets", "net_generate_interval", "train_batch", "expand"):
            require(getattr(self, name) >= 1, f"IDM option {name!r} must be at least 1, got {getattr(self, name)}")
        for name in ("fetch_net_num", "model_train_steps"):
            require(getattr(self, name) >= 0, f"IDM option {name!r} must be non-negative, got {getattr(self, name)}")
        require(self.net_lr > 0, f"IDM option 'net_lr' must be positive, got {self.net_lr}")
        require(self.ce_weight >= 0, f"IDM option 'ce_weight' must be non-negative, got {self.ce_weight}")


def partition_expand(x: torch.Tensor, factor: int) -> torch.Tensor:
    """IDM's expansion: split each image into ``factor x factor`` patches and upsample each back to H x W.

    ``[N, C, H, W] -> [N * factor^2, C, H, W]`` (bilinear), so a stored image carries factor^2 training images.
    Shown in notebook 02 (02_hdd_pruning).
    """
    if factor == 1:
        return x
    n, c, h, w = x.shape
    if h % factor or w % factor:
        raise GeoddError(f"image size {h}x{w} is not divisible by the expansion factor {factor}")
    q = x.view(n, c, factor, h // factor, factor, w // factor).permute(0, 2, 4, 1, 3, 5)
    q = q.reshape(n * factor * factor, c, h // factor, w // factor)
    return F.interpolate(q, size=(h, w), mode="bilinear", align_corners=False)


def partition_pack(x: torch.Tensor, factor: int) -> torch.Tensor:
    """IDM's initialisation: down-scale groups of ``factor^2`` images by 1/factor and tile them into one image.
    Not called in a notebook; used by ``geodd.distill``."""
    if factor == 1:
        return x
    n, c, h, w = x.shape
    small = F.interpolate(x, size=(h // factor, w // factor), mode="bilinear", align_corners=False, antialias=True)
    small = small.view(n // (factor * factor), factor, factor, c, h // factor, w // factor)
    return small.permute(0, 3, 1, 4, 2, 5).reshape(n // (factor * factor), c, h, w)


def set_frozen(net: torch.nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) a network's parameters: matching differentiates the images only.
    Not called in a notebook; used by ``geodd.schedules``, ``geodd.distill``."""
    for p in net.parameters():
        p.requires_grad_(not frozen)


class FreshNets:
    """DM's schedule: every call gives a new randomly initialised network (accuracy 0: no CE term).
    Not called in a notebook; used by ``geodd.distill``."""

    expand = 1
    train_seconds = 0.0

    def __init__(self, make_net: Callable[[int], torch.nn.Module]):
        self.make_net = make_net
        self.seed: int | None = None  # the seed of the last network given out

    def next_net(self, iteration: int, streams: Streams) -> tuple[torch.nn.Module, float]:
        """A new network seeded from the ``nets`` stream."""
        self.seed = seed_from(streams["nets"])
        net = self.make_net(self.seed)
        set_frozen(net, True)
        return net, 0.0

    def state_dict(self) -> dict:
        """What a checkpoint needs to give the current network back: its seed."""
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state.get("seed")

    def current_net(self) -> tuple[torch.nn.Module, float]:
        """The last network given out (rebuilt from its seed, after ``load_state_dict``)."""
        if self.seed is None:
            raise GeoddError("no network has been drawn yet")
        net = self.make_net(self.seed)
        set_frozen(net, True)
        return net, 0.0

    def release(self, net: torch.nn.Module) -> None:
        """After the image steps with ``net``: nothing to do (the net is discarded)."""


class NetPool:
    """IDM's model queue: random ConvNets pushed over time, a few trained a few SGD steps every iteration.
    Not called in a notebook; used by ``geodd.distill``."""

    def __init__(self, opts: IDMOptions, make_net: Callable[[int], torch.nn.Module], train: Dataset,
                 real_images: torch.Tensor, streams: Streams, dsa: DSA | None, amp: str | None):
        self.opts, self.make_net, self.train, self.real_images = opts, make_net, train, real_images
        self.real_labels = train.labels.to(real_images.device)
        self.dsa, self.amp = dsa, amp
        self.expand = opts.expand
        self.nets: list[dict] = []
        self.train_seconds = 0.0
        self.drawn: int | None = None  # the index of the member given out last
        for _ in range(opts.initial_nets):
            self.push(streams)

    def _member(self, seed: int) -> dict:
        net = self.make_net(seed)
        opt = torch.optim.SGD(net.parameters(), lr=self.opts.net_lr, momentum=0.9, weight_decay=5e-4)
        return {"net": net, "opt": opt, "correct": 0, "seen": 0}

    def push(self, streams: Streams) -> None:
        """A new member seeded from the ``nets`` stream (the oldest leaves a full queue)."""
        self.nets.append(self._member(seed_from(streams["nets"])))
        if len(self.nets) > self.opts.net_num:
            self.nets.pop(0)

    def _train_member(self, member: dict, gen: torch.Generator) -> None:
        net, opt = member["net"], member["opt"]
        net.train()
        for _ in range(self.opts.model_train_steps):
            idx = torch.randint(0, len(self.real_images), (self.opts.train_batch,), generator=gen)
            idx = idx.to(self.real_images.device)
            x, y = self.real_images[idx], self.real_labels[idx]
            if self.dsa is not None:
                x = self.dsa(x, gen, siamese=False)
            with autocast(x.device, self.amp):
                logits = net(x).float()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            member["correct"] += int((logits.argmax(1) == y).sum())
            member["seen"] += len(y)

    def step(self, iteration: int, streams: Streams) -> None:
        """Grow the queue on schedule and train ``fetch_net_num`` random members for ``model_train_steps``
        (every draw of the training from the ``pool`` stream)."""
        t0 = time.perf_counter()
        gen = streams["pool"]
        if iteration > 0 and iteration % self.opts.net_generate_interval == 0:
            self.push(streams)
        for j in torch.randperm(len(self.nets), generator=gen)[:self.opts.fetch_net_num].tolist():
            self._train_member(self.nets[j], gen)
        self.train_seconds += time.perf_counter() - t0

    def draw(self, gen: torch.Generator) -> tuple[torch.nn.Module, float]:
        """One pool net for matching and its running accuracy (a fraction)."""
        self.drawn = int(torch.randint(0, len(self.nets), (1,), generator=gen))
        member = self.nets[self.drawn]
        return member["net"], member["correct"] / max(member["seen"], 1)

    def state_dict(self) -> dict:
        """The whole pool for a checkpoint: every member's network and optimiser state and accuracy counters,
        the index of the member given out last, and the training time so far."""
        return {"members": [{"net": m["net"].state_dict(), "opt": m["opt"].state_dict(), "correct": m["correct"],
                             "seen": m["seen"]} for m in self.nets],
                "drawn": self.drawn, "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        """Replace the pool by a checkpoint's (networks are rebuilt, then take the saved parameters)."""
        nets = []
        for saved in state["members"]:
            member = self._member(0)
            member["net"].load_state_dict(saved["net"])
            member["opt"].load_state_dict(saved["opt"])
            member["correct"], member["seen"] = int(saved["correct"]), int(saved["seen"])
            nets.append(member)
        self.nets, self.drawn = nets, state.get("drawn")
        self.train_seconds = float(state.get("train_seconds", 0.0))

    def current_net(self) -> tuple[torch.nn.Module, float]:
        """The member given out last, frozen, and its accuracy (after ``load_state_dict``)."""
        if self.drawn is None:
            raise GeoddError("no network has been drawn yet")
        member = self.nets[self.drawn]
        set_frozen(member["net"], True)
        return member["net"], member["correct"] / max(member["seen"], 1)

    def next_net(self, iteration: int, streams: Streams) -> tuple[torch.nn.Module, float]:
        """Train the pool one round, then draw a member (``pool`` stream); it is frozen for the image steps."""
        self.step(iteration, streams)
        net, acc = self.draw(streams["pool"])
        set_frozen(net, True)
        return net, acc

    def release(self, net: torch.nn.Module) -> None:
        """After the image steps with ``net``: unfreeze it, so the pool can train it again."""
        set_frozen(net, False)


def synthetic_ce(net: torch.nn.Module, syn_feats: list[torch.Tensor], weight: float, amp: str | None,
                 device) -> torch.Tensor:
    """IDM's class-aware regulariser: ``weight`` (ce_weight x the net's accuracy) times the mean cross-entropy of
    the synthetic images under the sampled net, times the number of classes (it sums over classes like the
    matching loss). Not called in a notebook; used by ``geodd.distill``."""
    with autocast(device, amp):
        logits = net.classifier(torch.cat(syn_feats)).float()
    targets = torch.cat([torch.full((len(f),), c, device=device) for c, f in enumerate(syn_feats)])
    return weight * F.cross_entropy(logits, targets, reduction="sum") / len(targets) * len(syn_feats)
