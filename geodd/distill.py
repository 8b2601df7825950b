"""The distillation engine: features -> matcher loss -> image step.

One outer iteration of the DM feature schedule (``papers/dm_protocol.md`` section 1.1):

1. sample a fresh randomly initialised ConvNet (never trained; seeded from the run's generator);
2. for every class draw ``batch_real`` real images and take the class's synthetic images, and apply one
   siamese DSA transform (the same for both) per class;
3. embed all classes' real images in one network call (under ``torch.inference_mode``) and all synthetic
   images in one call; instance norm is per-sample, so this equals the per-class loop of the original code;
4. loss = sum over classes of ``matcher(real_c, syn_c, c)``; one SGD step (lr 1, momentum 0.5) on all images.

Everything random comes from one ``torch.Generator`` seeded by ``seed``: the same seed, device and dtype give
the same synthetic set. The engine checkpoints every ``checkpoint_every`` iterations and resumes from the
checkpoint, shows a tqdm bar, and stops with ``NonFiniteLossError`` naming the iteration if the loss is NaN/inf.

CPU options (all off by default, so the default path is the protocol's float32): ``amp="bf16"`` runs the
network under bfloat16 autocast, ``channels_last`` changes the memory format, ``inner_steps > 1`` reuses one
sampled network, real batch and augmentation for several image steps (the real features are computed once).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import GeoddError, default_device
from .augment import DSA, strategy_for
from .data import Dataset, load, per_class_subset
from .evaluate import autocast
from .matchers import MATCHERS, Matcher, build_matcher
from .nets import make_network
from .records import (SYNSET_FORMAT, config_hash, device_info, library_versions, load_tensors, save_tensors,
                      write_json)

CHECKPOINT_FORMAT = "geodd.checkpoint/1"
SCHEDULES = ("dm",)
INIT_POLICIES = ("real", "noise")
SHORT_CLASS_POLICIES = ("duplicate", "cap", "noise")


class NonFiniteLossError(FloatingPointError):
    """The matching loss became NaN or infinite; the message names the iteration."""


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (JSON-serialisable; hashed for caching)."""

    dataset: str = "fashion-mnist"
    method: str = "dm"
    ipc: int = 10
    iterations: int = 1000
    seed: int = 0
    imf: float | None = None               # long-tailed datasets: imbalance factor
    train_per_class: int | None = None     # use a seeded per-class subset of the training set (smoke tests)
    batch_real: int = 256
    lr_img: float = 1.0
    momentum: float = 0.5
    init: str = "real"                     # real | noise
    short_class: str = "duplicate"         # ipc > n_c on long-tailed data: duplicate | cap | noise
    dsa: bool = True
    dsa_strategy: str | None = None        # None: the dataset's default (no flip for digits)
    arch: str = "convnet"
    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"
    schedule: str = "dm"
    keep: float = 1.0                      # HDD pruning: fraction of real data kept per class
    amp: str | None = None                 # None (float32) | bf16
    channels_last: bool = False
    inner_steps: int = 1                   # image steps per sampled network / real batch
    checkpoint_every: int = 0              # 0: no checkpoints
    snapshot_at: tuple[int, ...] = ()      # iterations at which a copy of the images is kept
    matcher: dict = field(default_factory=dict)  # matcher options

    def validate(self) -> None:
        if self.method not in MATCHERS:
            raise GeoddError(f"unknown method {self.method!r}; choose one of {', '.join(sorted(MATCHERS))}")
        if self.iterations <= 0:
            raise GeoddError(f"iterations must be positive, got {self.iterations}")
        if self.ipc <= 0:
            raise GeoddError(f"ipc must be positive, got {self.ipc}")
        if self.batch_real <= 0 or self.inner_steps <= 0:
            raise GeoddError("batch_real and inner_steps must be positive")
        if self.init not in INIT_POLICIES:
            raise GeoddError(f"unknown init {self.init!r}; choose one of {', '.join(INIT_POLICIES)}")
        if self.short_class not in SHORT_CLASS_POLICIES:
            raise GeoddError(f"unknown short-class policy {self.short_class!r}; choose {SHORT_CLASS_POLICIES}")
        if self.schedule not in SCHEDULES:
            raise GeoddError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 < self.keep <= 1.0:
            raise GeoddError(f"keep must be in (0, 1], got {self.keep}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["snapshot_at"] = list(self.snapshot_at)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "snapshot_at" in d:
            d["snapshot_at"] = tuple(d["snapshot_at"])
        return cls(**d)

    def key(self) -> str:
        """A readable, unique directory name for caching."""
        return f"{self.dataset}-{self.method}-ipc{self.ipc}-it{self.iterations}-s{self.seed}-{config_hash(self.as_dict())}"


@dataclass
class SynSet:
    """A synthetic set: normalised images ``[N, C, H, W]``, labels ``[N]``, and the config that made it."""

    images: torch.Tensor
    labels: torch.Tensor
    config: dict
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        save_tensors(Path(path), {"format": SYNSET_FORMAT, "images": self.images.detach().cpu(),
                                  "labels": self.labels.cpu(), "config": self.config, "mean": list(self.mean),
                                  "std": list(self.std),
                                  "snapshots": {int(k): v.cpu() for k, v in self.snapshots.items()}})

    @classmethod
    def load(cls, path: Path) -> "SynSet":
        p = load_tensors(Path(path), SYNSET_FORMAT)
        try:
            images, labels = p["images"], p["labels"]
            ok = images.ndim == 4 and labels.ndim == 1 and len(images) == len(labels)
        except (KeyError, AttributeError):
            ok = False
        if not ok:
            raise GeoddError(f"{path} is not a valid synthetic set (missing or inconsistent images/labels)")
        return cls(images, labels, p.get("config", {}), tuple(p.get("mean", ())), tuple(p.get("std", ())),
                   {int(k): v for k, v in p.get("snapshots", {}).items()})


def load_training_data(cfg: DistillConfig, root=None) -> Dataset:
    """The training set a config asks for (long-tailed, subset, pruned by HDD's rule if ``keep < 1``)."""
    train = load(cfg.dataset, "train", root=root, imf=cfg.imf)
    if cfg.train_per_class is not None:
        train = per_class_subset(train, cfg.train_per_class, seed=cfg.seed)
    return train


def _init_images(cfg: DistillConfig, train: Dataset, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for c, members in enumerate(train.indices_by_class):
        n_c = len(members)
        if n_c == 0:
            raise GeoddError(f"class {c} of {train.name} has no training images")
        k = cfg.ipc
        policy = cfg.init
        if n_c < cfg.ipc:
            if cfg.short_class == "cap":
                k = n_c
            elif cfg.short_class == "noise":
                policy = "noise"
            elif not cfg.dataset.lower().endswith("-lt"):  # balanced data: more than a class has is an error
                raise GeoddError(f"ipc={cfg.ipc} is larger than class {c} of {train.name} ({n_c} images)")
        if policy == "noise":
            images.append(torch.randn((k, train.channels, *train.im_size), generator=gen))
        else:
            # duplicate policy: repeat the class's images (DSA makes the copies differ during matching)
            order = torch.randperm(n_c, generator=gen)
            reps = order.repeat(math.ceil(k / n_c))[:k]
            images.append(train.images[members[reps]].clone())
        labels.append(torch.full((k,), c, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


def embed_batches(net: torch.nn.Module, batches: list[torch.Tensor], *, grad: bool, amp: str | None,
                  channels_last: bool = False) -> list[torch.Tensor]:
    """Embed several batches with ONE network call; returns float32 features split back per batch.

    Without ``grad`` the call runs under ``torch.inference_mode`` and the result is cloned into a normal
    tensor, so matchers may save it for backward.
    """
    sizes = [len(b) for b in batches]
    x = torch.cat(batches)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    device = x.device
    if grad:
        with autocast(device, amp):
            f = net.embed(x).float()
    else:
        with torch.inference_mode(), autocast(device, amp):
            f = net.embed(x).float()
        f = f.clone()
    return list(f.split(sizes))


def _seed_from(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=gen))


def distill(cfg: DistillConfig, *, train: Dataset | None = None, out: Path | str | None = None,
            device: torch.device | str | None = None, resume: bool = True, progress: bool = True,
            matcher: Matcher | None = None,
            callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> tuple[SynSet, dict]:
    """Distil ``cfg.dataset`` into ``cfg.ipc`` images per class; returns the synthetic set and its record.

    ``out`` (optional) receives ``synset.pt``, ``record.json`` and, with ``checkpoint_every``, a
    ``checkpoint.pt`` that a later call resumes from. ``callback(iteration, images, labels)`` runs after each
    iteration (e.g. to evaluate intermediate sets). Nothing is written to ``out`` before the run has finished,
    except the checkpoint.
    """
    cfg.validate()
    device = torch.device(device) if device is not None else default_device()
    if train is None:
        train = load_training_data(cfg)
    if cfg.keep < 1.0:
        from .prune import prune_dataset
        train = prune_dataset(train, cfg.keep, seed=cfg.seed, device=device)
    out = Path(out) if out is not None else None

    gen = torch.Generator().manual_seed(int(cfg.seed))
    images, labels = _init_images(cfg, train, gen)
    images = images.to(device).requires_grad_(True)
    syn_slices = [torch.nonzero(labels == c).flatten().to(device) for c in range(train.num_classes)]
    real_images = train.images.to(device)
    members = [m.to(device) for m in train.indices_by_class]

    matcher = matcher if matcher is not None else build_matcher(cfg.method, **cfg.matcher)
    matcher = matcher.to(device)
    matcher.set_class_counts(train.counts)
    opt = torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum)
    strategy = (strategy_for(cfg.dataset) if cfg.dsa_strategy is None else cfg.dsa_strategy) if cfg.dsa else ""
    dsa = DSA(strategy) if strategy else None

    losses: list[float] = []
    geometry_log: list[dict] = []
    snapshots: dict[int, torch.Tensor] = {}
    iter_seconds: list[float] = []
    start_it = 0
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    cfg_hash = config_hash(cfg.as_dict())
    if resume and ckpt_path is not None and ckpt_path.exists():
        ck = load_tensors(ckpt_path, CHECKPOINT_FORMAT)
        if ck["config_hash"] == cfg_hash:
            with torch.no_grad():
                images.copy_(ck["images"].to(device))
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["generator"])
            if "matcher" in ck:
                matcher.load_state_dict(ck["matcher"])
            losses, start_it = list(ck["losses"]), int(ck["iteration"])
            snapshots = {int(k): v for k, v in ck.get("snapshots", {}).items()}

    if 0 in cfg.snapshot_at and 0 not in snapshots:
        snapshots[0] = images.detach().cpu().clone()
    t_start = time.perf_counter()
    bar = tqdm(range(start_it, cfg.iterations), desc=f"distill {cfg.method} ipc{cfg.ipc}", disable=not progress,
               initial=start_it, total=cfg.iterations)
    it = start_it
    net = None
    real_feats: list[torch.Tensor] = []
    aug_seeds: list[int] = []
    for it in bar:
        t0 = time.perf_counter()
        if (it - start_it) % cfg.inner_steps == 0 or net is None:
            net = make_network(cfg.arch, train.channels, train.num_classes, train.im_size, seed=_seed_from(gen),
                               device=device, width=cfg.width, depth=cfg.depth, norm=cfg.norm)
            if cfg.channels_last:
                net = net.to(memory_format=torch.channels_last)
            for p in net.parameters():
                p.requires_grad_(False)
            real_batches = []
            aug_seeds = [_seed_from(gen) for _ in range(train.num_classes)]
            for c, m in enumerate(members):
                pick = torch.randperm(len(m), generator=gen)[:cfg.batch_real].to(device)
                x = real_images[m[pick]]
                if dsa is not None:
                    x = dsa(x, torch.Generator().manual_seed(aug_seeds[c]))
                real_batches.append(x)
            real_feats = embed_batches(net, real_batches, grad=False, amp=cfg.amp, channels_last=cfg.channels_last)
            matcher.start_iteration(it, gen, real_feats[0].shape[1], device)
            logs = matcher.update_geometry(torch.cat(real_feats),
                                           torch.cat([torch.full((len(f),), c, device=device)
                                                      for c, f in enumerate(real_feats)]))
            if logs:
                geometry_log.append({"iteration": it, **logs})
        syn_batches = []
        for c, idx in enumerate(syn_slices):
            s = images[idx]
            if dsa is not None:
                s = dsa(s, torch.Generator().manual_seed(aug_seeds[c]))
            syn_batches.append(s)
        syn_feats = embed_batches(net, syn_batches, grad=True, amp=cfg.amp, channels_last=cfg.channels_last)
        loss = sum(matcher(real_feats[c], syn_feats[c], c) for c in range(train.num_classes))
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite matching loss ({loss.item()}) at iteration {it}; "
                                     "lower lr_img or check the matcher options")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item() / train.num_classes)
        iter_seconds.append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        if it + 1 in cfg.snapshot_at:
            snapshots[it + 1] = images.detach().cpu().clone()
        if callback is not None:
            callback(it + 1, images.detach(), labels)
        if ckpt_path is not None and cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0:
            out.mkdir(parents=True, exist_ok=True)
            save_tensors(ckpt_path, {"format": CHECKPOINT_FORMAT, "config_hash": cfg_hash, "iteration": it + 1,
                                     "images": images.detach().cpu(), "optimizer": opt.state_dict(),
                                     "generator": gen.get_state(), "losses": losses, "matcher": matcher.state_dict(),
                                     "snapshots": snapshots})
    bar.close()
    total = time.perf_counter() - t_start
    synset = SynSet(images.detach().cpu(), labels, cfg.as_dict(), train.mean, train.std, snapshots)
    record = {
        "config": cfg.as_dict(), "seed": cfg.seed, "versions": library_versions(), "device": device_info(device),
        "train_counts": train.counts,
        "timings": {"total_s": total, "iterations_run": len(iter_seconds),
                    "median_iter_s": float(np.median(iter_seconds)) if iter_seconds else None,
                    "resumed_from": start_it},
        "loss": losses, "geometry": geometry_log,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        synset.save(out / "synset.pt")
        write_json(out / "record.json", record)
        if ckpt_path is not None and ckpt_path.exists():
            ckpt_path.unlink()
    return synset, record
