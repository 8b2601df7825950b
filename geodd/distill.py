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
SCHEDULES = ("dm", "idm")
INIT_POLICIES = ("real", "noise")
SHORT_CLASS_POLICIES = ("duplicate", "cap", "noise")
#: config fields that do not change the synthetic set (excluded from the cache key)
NON_RESULT_FIELDS = ("snapshot_at", "checkpoint_every")


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
    idm: dict = field(default_factory=dict)      # IDMOptions overrides for schedule="idm"

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
        unknown = set(self.idm) - {f.name for f in fields(IDMOptions)}
        if unknown:
            raise GeoddError(f"unknown IDM options {sorted(unknown)}")
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

    def result_hash(self) -> str:
        """A hash of every field that changes the result (snapshots and checkpoint cadence do not)."""
        return config_hash({k: v for k, v in self.as_dict().items() if k not in NON_RESULT_FIELDS})

    def key(self) -> str:
        """A readable, unique directory name for caching; equal for configs that give the same result."""
        return f"{self.dataset}-{self.method}-ipc{self.ipc}-it{self.iterations}-s{self.seed}-{self.result_hash()}"


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

    def training_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images a student trains on: the stored ones, or IDM's expanded patches (factor^2 per image)."""
        factor = self.config.get("idm", {}).get("expand", IDMOptions.expand) \
            if self.config.get("schedule") == "idm" else 1
        return partition_expand(self.images, factor), self.labels.repeat_interleave(factor * factor)

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


def _init_images(cfg: DistillConfig, train: Dataset, gen: torch.Generator,
                 factor: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` images per class: random real images (or noise); with IDM's ``factor`` each stored image tiles
    ``factor^2`` down-scaled real images."""
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
            need = k * factor * factor
            order = torch.randperm(n_c, generator=gen)
            reps = order.repeat(math.ceil(need / n_c))[:need]
            images.append(partition_pack(train.images[members[reps]].clone(), factor))
        labels.append(torch.full((k,), c, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


#: images per network call on the CPU (see ``embed_batches``); None: the whole batch in one call
CPU_CHUNK = 32


def embed_batches(net: torch.nn.Module, batches: list[torch.Tensor], *, grad: bool, amp: str | None,
                  channels_last: bool = False, chunk: int | None = -1) -> list[torch.Tensor]:
    """Embed several batches (one per class) together; returns float32 features split back per batch.

    On a GPU the concatenated batch goes through the network in ONE call. On the CPU it goes in chunks of
    ``CPU_CHUNK`` images: measured on a 2-core x86 machine, ten classes x 256 real images in one call are
    slower than the same images in 32-image calls (2.7 s vs 1.6 s per DM step at fp32, 2 threads; see
    benchmarks/README.md), because the activations of a 2560-image call (about 1.3 GB per layer) thrash the
    caches and make glibc map and unmap every activation (page faults). ``chunk``: -1 picks by device as
    above, None forces one call, a number sets the chunk size. Instance norm is per sample, so chunking
    changes no result beyond float summation order.

    Without ``grad`` the call runs under ``torch.inference_mode`` and the result is cloned into a normal
    tensor, so matchers may save it for backward.
    """
    sizes = [len(b) for b in batches]
    x = torch.cat(batches)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    device = x.device
    if chunk == -1:
        chunk = CPU_CHUNK if device.type == "cpu" else None
    pieces = x.split(chunk) if chunk else (x,)
    if grad:
        with autocast(device, amp):
            f = torch.cat([net.embed(piece) for piece in pieces]).float()
    else:
        with torch.inference_mode(), autocast(device, amp):
            f = torch.cat([net.embed(piece) for piece in pieces]).float()
        f = f.clone()
    return list(f.split(sizes))


def _seed_from(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=gen))


# ---------------------------------------------------------------------------------------------------------
# IDM (Zhao et al., CVPR 2023; papers/dm_protocol.md section 6): partition-and-expansion, a pool of partially
# trained nets, and a synthetic cross-entropy regulariser weighted by the sampled net's accuracy.


@dataclass
class IDMOptions:
    """IDM's settings (defaults: the release's CIFAR-10 commands, ``papers/dm_protocol.md`` section 6).

    ``ce_weight`` multiplies ``accuracy * CE(net(syn), c)``, with the net's running training accuracy as a
    fraction in [0, 1]. The release multiplies by the accuracy in percent, so its ``ce_weight`` equals ours / 100
    (reconstruction: our choice of units; the default 0.5 is our choice too).
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


def partition_expand(x: torch.Tensor, factor: int) -> torch.Tensor:
    """IDM's expansion: split each image into ``factor x factor`` patches and upsample each back to H x W.

    ``[N, C, H, W] -> [N * factor^2, C, H, W]`` (bilinear), so a stored image carries factor^2 training images.
    """
    if factor == 1:
        return x
    n, c, h, w = x.shape
    if h % factor or w % factor:
        raise GeoddError(f"image size {h}x{w} is not divisible by the expansion factor {factor}")
    q = x.view(n, c, factor, h // factor, factor, w // factor).permute(0, 2, 4, 1, 3, 5)
    q = q.reshape(n * factor * factor, c, h // factor, w // factor)
    return torch.nn.functional.interpolate(q, size=(h, w), mode="bilinear", align_corners=False)


def partition_pack(x: torch.Tensor, factor: int) -> torch.Tensor:
    """IDM's initialisation: down-scale groups of ``factor^2`` images by 1/factor and tile them into one image."""
    if factor == 1:
        return x
    n, c, h, w = x.shape
    small = torch.nn.functional.interpolate(x, size=(h // factor, w // factor), mode="bilinear",
                                            align_corners=False, antialias=True)
    small = small.view(n // (factor * factor), factor, factor, c, h // factor, w // factor)
    return small.permute(0, 3, 1, 4, 2, 5).reshape(n // (factor * factor), c, h, w)


class NetPool:
    """IDM's model queue: random ConvNets pushed over time, a few trained a few SGD steps every iteration."""

    def __init__(self, opts: IDMOptions, make_net: Callable[[int], torch.nn.Module], train: Dataset,
                 real_images: torch.Tensor, gen: torch.Generator, dsa: DSA | None, amp: str | None):
        self.opts, self.make_net, self.train, self.real_images = opts, make_net, train, real_images
        self.dsa, self.amp = dsa, amp
        self.nets: list[dict] = []
        self.train_seconds = 0.0
        for _ in range(opts.initial_nets):
            self.push(gen)

    def push(self, gen: torch.Generator) -> None:
        net = self.make_net(_seed_from(gen))
        opt = torch.optim.SGD(net.parameters(), lr=self.opts.net_lr, momentum=0.9, weight_decay=5e-4)
        self.nets.append({"net": net, "opt": opt, "correct": 0, "seen": 0})
        if len(self.nets) > self.opts.net_num:
            self.nets.pop(0)

    def step(self, iteration: int, gen: torch.Generator) -> None:
        """Grow the queue on schedule and train ``fetch_net_num`` random members for ``model_train_steps``."""
        t0 = time.perf_counter()
        if iteration > 0 and iteration % self.opts.net_generate_interval == 0:
            self.push(gen)
        n = len(self.real_images)
        for j in torch.randperm(len(self.nets), generator=gen)[:self.opts.fetch_net_num].tolist():
            member = self.nets[j]
            net, opt = member["net"], member["opt"]
            net.train()
            for _ in range(self.opts.model_train_steps):
                idx = torch.randint(0, n, (self.opts.train_batch,), generator=gen).to(self.real_images.device)
                x, y = self.real_images[idx], self.train.labels.to(self.real_images.device)[idx]
                if self.dsa is not None:
                    x = self.dsa(x, gen, siamese=False)
                with autocast(x.device, self.amp):
                    logits = net(x).float()
                loss = torch.nn.functional.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                member["correct"] += int((logits.argmax(1) == y).sum())
                member["seen"] += len(y)
        self.train_seconds += time.perf_counter() - t0

    def draw(self, gen: torch.Generator) -> tuple[torch.nn.Module, float]:
        """One pool net for matching (parameters frozen for the image step) and its running accuracy."""
        member = self.nets[int(torch.randint(0, len(self.nets), (1,), generator=gen))]
        return member["net"], member["correct"] / max(member["seen"], 1)


def _freeze(net: torch.nn.Module, frozen: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(not frozen)


def distill(cfg: DistillConfig, *, train: Dataset | None = None, out: Path | str | None = None,
            device: torch.device | str | None = None, resume: bool = True, progress: bool = True,
            matcher: Matcher | None = None,
            callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> tuple[SynSet, dict]:
    """Distil ``cfg.dataset`` into ``cfg.ipc`` images per class; returns the synthetic set and its record.

    ``out`` (optional) receives ``synset.pt``, ``record.json`` and, with ``checkpoint_every``, a
    ``checkpoint.pt`` that a later call resumes from. ``callback(iteration, images, labels)`` runs after each
    iteration (e.g. to evaluate intermediate sets). Nothing is written to ``out`` before the run has finished,
    except the checkpoint.

    ``cfg.schedule="idm"`` replaces the fresh random network by IDM's pool (``cfg.idm`` overrides
    ``IDMOptions``), stores partitioned images, and adds the accuracy-weighted synthetic CE term; combined with
    any matcher (``--method hdd --schedule idm`` is IDM+HDD).
    """
    cfg.validate()
    device = torch.device(device) if device is not None else default_device()
    if train is None:
        train = load_training_data(cfg)
    if cfg.keep < 1.0:
        from .prune import prune_dataset
        train = prune_dataset(train, cfg.keep, seed=cfg.seed, device=device)
    out = Path(out) if out is not None else None
    idm = IDMOptions(**cfg.idm) if cfg.schedule == "idm" else None
    factor = idm.expand if idm is not None else 1

    gen = torch.Generator().manual_seed(int(cfg.seed))
    images, labels = _init_images(cfg, train, gen, factor)
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

    def new_net(seed: int) -> torch.nn.Module:
        net = make_network(cfg.arch, train.channels, train.num_classes, train.im_size, seed=seed, device=device,
                           width=cfg.width, depth=cfg.depth, norm=cfg.norm)
        return net.to(memory_format=torch.channels_last) if cfg.channels_last else net

    losses: list[float] = []
    geometry_log: list[dict] = []
    snapshots: dict[int, torch.Tensor] = {}
    iter_seconds: list[float] = []
    start_it = 0
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    cfg_hash = cfg.result_hash()
    if resume and ckpt_path is not None and ckpt_path.exists():
        ck = load_tensors(ckpt_path, CHECKPOINT_FORMAT)
        if ck["config_hash"] == cfg_hash and idm is None:  # the IDM pool is not checkpointed: restart those
            with torch.no_grad():
                images.copy_(ck["images"].to(device))
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["generator"])
            if "matcher" in ck:
                matcher.load_state_dict(ck["matcher"])
            losses, start_it = list(ck["losses"]), int(ck["iteration"])
            snapshots = {int(k): v for k, v in ck.get("snapshots", {}).items()}
    pool = NetPool(idm, new_net, train, real_images, gen, dsa, cfg.amp) if idm is not None else None

    if 0 in cfg.snapshot_at and 0 not in snapshots:
        snapshots[0] = images.detach().cpu().clone()
    t_start = time.perf_counter()
    bar = tqdm(range(start_it, cfg.iterations), desc=f"distill {cfg.method}/{cfg.schedule} ipc{cfg.ipc}",
               disable=not progress, initial=start_it, total=cfg.iterations)
    net, acc = None, 0.0
    real_feats: list[torch.Tensor] = []
    aug_seeds: list[int] = []
    for it in bar:
        t0 = time.perf_counter()
        if (it - start_it) % cfg.inner_steps == 0 or net is None:
            if pool is not None:
                pool.step(it, gen)
                net, acc = pool.draw(gen)
            else:
                net = new_net(_seed_from(gen))
            _freeze(net, True)
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
        else:
            _freeze(net, True)
        syn_batches = []
        for c, idx in enumerate(syn_slices):
            s = partition_expand(images[idx], factor)
            if dsa is not None:
                s = dsa(s, torch.Generator().manual_seed(aug_seeds[c]))
            syn_batches.append(s)
        syn_feats = embed_batches(net, syn_batches, grad=True, amp=cfg.amp, channels_last=cfg.channels_last)
        loss = sum(matcher(real_feats[c], syn_feats[c], c) for c in range(train.num_classes))
        if pool is not None and idm.ce_weight > 0:
            # IDM's class-aware regulariser: CE of the synthetic images under the sampled (partially trained) net
            with autocast(device, cfg.amp):
                logits = net.classifier(torch.cat(syn_feats)).float()
            targets = torch.cat([torch.full((len(f),), c, device=device) for c, f in enumerate(syn_feats)])
            loss = loss + idm.ce_weight * acc * torch.nn.functional.cross_entropy(logits, targets,
                                                                                    reduction="sum") / len(targets) \
                * train.num_classes
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite matching loss ({loss.item()}) at iteration {it}; "
                                     "lower lr_img or check the matcher options")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if pool is not None:
            _freeze(net, False)
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
    timings = {"total_s": total, "iterations_run": len(iter_seconds),
               "median_iter_s": float(np.median(iter_seconds)) if iter_seconds else None, "resumed_from": start_it}
    if pool is not None:
        timings["pool_train_s"] = pool.train_seconds
    record = {"config": cfg.as_dict(), "seed": cfg.seed, "versions": library_versions(), "device": device_info(device),
              "train_counts": train.counts, "timings": timings, "loss": losses, "geometry": geometry_log}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        synset.save(out / "synset.pt")
        write_json(out / "record.json", record)
        if ckpt_path is not None and ckpt_path.exists():
            ckpt_path.unlink()
    return synset, record
