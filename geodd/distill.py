"""The distillation engine: a short driver over named steps.

``distill(cfg)`` runs, for each outer iteration (``docs/methods/dm.md`` "Equations"):

1. **resume** (once): with a run folder ``out``, lock it (``geodd.io.RunLock``), return a finished run of the same
   config as it is, refuse another config's run or checkpoint (unless ``overwrite``), and continue exactly from a
   checkpoint of this config: inside a network's ``inner_steps`` too, with IDM's whole pool;
2. **sample features** (once per sampled network, every ``inner_steps`` image steps): the feature schedule
   (``geodd.schedules``: DM's fresh random ConvNet, or IDM's pool) gives a network; for every class draw
   ``batch_real`` real images, apply one siamese DSA transform per class, and embed all classes' real images
   together without gradients; the matcher's per-network hooks run here;
3. **image step**: embed the synthetic images under the same augmentations, sum the per-class matcher losses
   (plus IDM's synthetic CE term), and take one SGD step (lr 1, momentum 0.5) on all images;
4. **checkpoint** every ``checkpoint_every`` iterations (checksummed; ``_checkpoint`` lists what it holds), and
5. **record** at the end: ``synset.pt`` and ``record.json`` (config, seed, versions, device, precision, timings,
   loss curve, geometry log).

Everything random comes from named streams forked from ``seed`` (``geodd.streams``: init, nets, real, dsa,
matcher, pool): the same seed, device and dtype give the same synthetic set, and two methods with the same seed
see the same networks, real batches and augmentations (the record's ``trace`` shows it). A NaN or infinite loss stops the run with ``NonFiniteLossError`` naming the iteration.

Precision (``geodd.precision``): ``amp="auto"`` is bf16 where the device computes it natively, else fp32; the
default ``None`` is the protocol's float32. ``channels_last`` changes the memory format; ``inner_steps > 1``
reuses one sampled network, real batch and augmentation for several image steps (``docs/methods/dm.md``
"inner_steps"). Shown in notebook 00 (00_dm_baseline) and used by every notebook.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import GeoddError, resolve_device
from .augment import DSA, strategy_for
from .data import Dataset, load, per_class_subset, proportional_subset
from .io import LOCK_NAME, RunLock, check_output_dir, device_info, fingerprint, library_versions, load_tensors, \
    read_json, save_tensors, write_json
from .matchers import MATCHERS, Matcher, build_matcher, matcher_options
from .nets import make_network
from .options import check as check_options, check_types, from_mapping, is_options, overrides, require
from .precision import autocast, normalise, resolve
from .streams import SCHEME as RNG_SCHEME, Streams, Trace
from .schedules import SCHEDULES, FreshNets, IDMOptions, NetPool, partition_expand, partition_pack, seed_from, \
    set_frozen, synthetic_ce
from .synset import SynSet

CHECKPOINT_FORMAT = "geodd.checkpoint/3"
CHECKPOINT_NAME = "checkpoint.pt"
#: seeds are unsigned 64-bit for torch; geodd takes [0, 2**63) so every seed is also a valid signed int64
SEED_LIMIT = 2**63
INIT_POLICIES = ("real", "noise")
SHORT_CLASS_POLICIES = ("duplicate", "cap", "noise")
#: config fields that do not change the synthetic set (excluded from the cache key)
NON_RESULT_FIELDS = ("snapshot_at", "checkpoint_every")


class NonFiniteLossError(FloatingPointError):
    """The matching loss became NaN or infinite; the message names the iteration.
    Not called in a notebook; used by ``geodd.distill``, ``geodd.cli``."""


def _power(n: int) -> str:
    """``2**63`` for a power of two, else the number."""
    return f"2**{n.bit_length() - 1}" if n > 1024 and n & (n - 1) == 0 else str(n)


def _in_range(obj, name: str, lo: int, hi: int | None = None) -> None:
    """``obj.name`` (an integer, or None where optional) lies in [lo, hi) (``DistillConfig.check``)."""
    v = getattr(obj, name)
    if v is None:
        return
    bound = {0: "non-negative", 1: "positive"}.get(lo, f"at least {lo}")
    require(v >= lo and (hi is None or v < hi),
            f"{name} must be {bound if hi is None else f'in [{lo}, {_power(hi)})'}, got {v}")


def _typed(options: Any, cls: type, what: str) -> Any:
    """``options`` (a mapping, an options object, or None) as an instance of ``cls``, checked."""
    if is_options(type(options)) and not isinstance(options, cls):
        options = overrides(options)  # e.g. dataclasses.replace(cfg, method=...) kept another method's options
    return from_mapping(cls, options, what=what)


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (JSON-serialisable through ``as_dict``; hashed for caching).

    ``matcher`` and ``idm`` take a mapping of option overrides or the typed options object; they are stored as
    the typed object (``geodd.matchers.MATCHERS`` gives each method's options class, ``IDMOptions`` IDM's) and
    serialised as their non-default values.
    Shown in notebook 03 (03_csdm_amplitude_phase).
    """

    dataset: str = "fashion-mnist"
    method: str = "dm"
    ipc: int = 10
    iterations: int = 1000
    seed: int = 0
    imf: float | None = None               # long-tailed datasets: imbalance factor
    train_per_class: int | None = None     # a seeded per-class subset (smoke tests); on -lt data the largest
    #                                        class keeps this many and the others in proportion (same imbalance)
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
    amp: str | None = None                 # None (float32) | bf16 | auto (geodd.precision)
    channels_last: bool = False
    inner_steps: int = 1                   # image steps per sampled network / real batch
    checkpoint_every: int = 0              # 0: no checkpoints
    snapshot_at: tuple[int, ...] = ()      # iterations at which a copy of the images is kept
    matcher: Any = field(default_factory=dict)  # the method's options (see geodd.matchers.MATCHERS)
    idm: Any = field(default_factory=dict)      # IDMOptions (used with schedule="idm")

    def __post_init__(self) -> None:
        if self.method not in MATCHERS:
            raise GeoddError(f"unknown method {self.method!r}; choose one of {', '.join(sorted(MATCHERS))}")
        self.matcher = matcher_options(self.method, self.matcher)
        self.idm = _typed(self.idm, IDMOptions, "idm")
        self.snapshot_at = tuple(self.snapshot_at)
        if not isinstance(self.amp, (str, type(None))):
            raise GeoddError(f"amp must be auto, bf16, fp32 or None, got {self.amp!r}")
        self.amp = None if normalise(self.amp) == "fp32" else normalise(self.amp)  # fp32 is stored as None
        check_options(self, what="distill config")  # type, finiteness and range of every field: ``check``

    def check(self) -> None:
        """Every plain field's type, finiteness, sign and range, through ``geodd.options.require`` (the typed
        ``matcher``/``idm`` options are checked by ``geodd.options`` too). Runs when a config is made, so the
        library, the notebooks and the CLI share one set of rules. Values are checked, never converted (an int
        ``lr_img`` stays an int), so cache keys do not change."""
        check_types(self, skip=("matcher", "idm"))  # types, bools, finiteness from the annotations
        for name, lo, hi in (("ipc", 1, None), ("iterations", 1, None), ("seed", 0, SEED_LIMIT),
                             ("train_per_class", 1, None), ("batch_real", 1, None), ("width", 1, None),
                             ("depth", 1, None), ("inner_steps", 1, None), ("checkpoint_every", 0, None)):
            _in_range(self, name, lo, hi)
        require(self.imf is None or self.imf >= 1, f"imf must be at least 1, got {self.imf}")
        require(self.lr_img > 0, f"lr_img must be positive, got {self.lr_img}")
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        for name, choices in (("init", INIT_POLICIES), ("short_class", SHORT_CLASS_POLICIES),
                              ("schedule", SCHEDULES)):
            require(getattr(self, name) in choices,
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        require(0.0 < self.keep <= 1.0, f"keep must be in (0, 1], got {self.keep}")
        for s in self.snapshot_at:
            require(s >= 0, f"snapshot_at entries must be non-negative, got {s!r}")

    def validate(self) -> None:
        """The checks of ``check`` (they also run when a config is made; kept for callers that mutate a config)."""
        check_options(self, what="distill config")

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["snapshot_at"] = list(self.snapshot_at)
        d["matcher"] = overrides(self.matcher)
        d["idm"] = overrides(self.idm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def result_hash(self) -> str:
        """A hash of every field that changes the result (snapshots and checkpoint cadence do not)."""
        kept = {k: v for k, v in self.as_dict().items() if k not in NON_RESULT_FIELDS}
        return fingerprint({**kept, "_rng": RNG_SCHEME})  # the random-stream scheme changes every result

    def key(self) -> str:
        """A readable, unique directory name for caching; equal for configs that give the same result."""
        return f"{self.dataset}-{self.method}-ipc{self.ipc}-it{self.iterations}-s{self.seed}-{self.result_hash()}"


def load_training_data(cfg: DistillConfig, root=None) -> Dataset:
    """The training set a config asks for (long-tailed, subset, pruned by HDD's rule if ``keep < 1``).
    ``train_per_class`` on a long-tailed (``-lt``) dataset subsamples in proportion (``proportional_subset``), so
    the imbalance factor in the record stays true.
    Used in notebook 04 (04_geodm_product_space) through its study module."""
    train = load(cfg.dataset, "train", root=root, imf=cfg.imf)
    if cfg.train_per_class is not None:
        if cfg.dataset.lower().endswith("-lt"):  # keep the imbalance: the head class gets train_per_class
            train = proportional_subset(train, cfg.train_per_class, seed=cfg.seed)
        else:
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


def uses_batch_statistics(net: torch.nn.Module) -> bool:
    """True if ``net`` normalises with statistics of the batch it is given (batch norm in training mode), so the
    images that share a call change each other's features."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in net.modules())


def embed_batches(net: torch.nn.Module, batches: list[torch.Tensor], *, grad: bool, amp: str | None,
                  channels_last: bool = False, chunk: int | None = -1) -> list[torch.Tensor]:
    """Embed several batches (one per class) together; returns float32 features split back per batch.

    On a GPU the concatenated batch goes through the network in ONE call. On the CPU it goes in chunks of
    ``CPU_CHUNK`` images: measured on a 2-core x86 machine, ten classes x 256 real images in one call are
    slower than the same images in 32-image calls (2.7 s vs 1.6 s per DM step at fp32, 2 threads; see
    benchmarks/README.md), because the activations of a 2560-image call (about 1.3 GB per layer) thrash the
    caches and make glibc map and unmap every activation (page faults). ``chunk``: -1 picks by device as
    above, None forces one call, a number sets the chunk size. Instance norm is per sample, so chunking
    changes no result beyond float summation order. A net with batch statistics (``uses_batch_statistics``)
    gets one call per batch whatever ``chunk`` says, as in the original per-class loop: a shared call would mix
    the classes' statistics.

    Without ``grad`` the call runs under ``torch.inference_mode`` and the result is cloned into a normal
    tensor, so matchers may save it for backward. Used in every notebook through the engine.
    """
    sizes = [len(b) for b in batches]
    x = torch.cat(batches)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if uses_batch_statistics(net):
        pieces = x.split(sizes)
    else:
        if chunk == -1:
            chunk = CPU_CHUNK if x.device.type == "cpu" else None
        pieces = x.split(chunk) if chunk else (x,)
    if grad:
        with autocast(x.device, amp):
            f = torch.cat([net.embed(piece) for piece in pieces]).float()
    else:
        with torch.inference_mode(), autocast(x.device, amp):
            f = torch.cat([net.embed(piece) for piece in pieces]).float()
        f = f.clone()
    return list(f.split(sizes))


@dataclass
class _Run:
    """The state of one distillation run, shared by the named steps of ``distill``."""

    cfg: DistillConfig
    train: Dataset
    device: torch.device
    amp: str | None                      # the resolved autocast argument (bf16 or None)
    streams: Streams
    images: torch.Tensor
    labels: torch.Tensor
    syn_slices: list[torch.Tensor]
    real_images: torch.Tensor
    members: list[torch.Tensor]
    matcher: Matcher
    opt: torch.optim.Optimizer
    dsa: DSA | None
    factor: int
    losses: list[float] = field(default_factory=list)
    geometry_log: list[dict] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    iter_seconds: list[float] = field(default_factory=list)
    start_it: int = 0
    schedule: Any = None
    net: torch.nn.Module | None = None
    net_acc: float = 0.0
    real_feats: list[torch.Tensor] = field(default_factory=list)
    aug_seeds: list[int] = field(default_factory=list)
    net_it: int = 0                      # the iteration at which the current network was sampled
    real_picks: list[torch.Tensor] = field(default_factory=list)  # its real batch: indices into each class
    divergence: dict | None = None       # the first sign of divergence (``check_divergence``)
    trace: Trace = field(default_factory=Trace)  # digests of the draws (``geodd.streams``)

    def new_net(self, seed: int) -> torch.nn.Module:
        cfg = self.cfg
        net = make_network(cfg.arch, self.train.channels, self.train.num_classes, self.train.im_size, seed=seed,
                           device=self.device, width=cfg.width, depth=cfg.depth, norm=cfg.norm)
        self.trace.network(net)
        return net.to(memory_format=torch.channels_last) if cfg.channels_last else net

    def augment(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """Class ``c``'s DSA transform of this network's round (the same for real and synthetic images)."""
        return self.dsa(x, torch.Generator().manual_seed(self.aug_seeds[c])) if self.dsa is not None else x


def _setup(cfg: DistillConfig, train: Dataset, device: torch.device, matcher: Matcher | None) -> _Run:
    """Initial images (from the ``init`` stream), matcher, optimiser and augmentation."""
    streams = Streams(cfg.seed)
    factor = cfg.idm.expand if cfg.schedule == "idm" else 1
    images, labels = _init_images(cfg, train, streams["init"], factor)
    images = images.to(device).requires_grad_(True)
    matcher = (matcher if matcher is not None else build_matcher(cfg.method, cfg.matcher)).to(device)
    matcher.set_class_counts(train.counts)
    strategy = (strategy_for(cfg.dataset) if cfg.dsa_strategy is None else cfg.dsa_strategy) if cfg.dsa else ""
    return _Run(cfg=cfg, train=train, device=device, amp=resolve(cfg.amp, device).autocast_arg, streams=streams,
                images=images, labels=labels,
                syn_slices=[torch.nonzero(labels == c).flatten().to(device) for c in range(train.num_classes)],
                real_images=train.images.to(device), members=[m.to(device) for m in train.indices_by_class],
                matcher=matcher, opt=torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum),
                dsa=DSA(strategy) if strategy else None, factor=factor)


class CheckpointError(GeoddError):
    """A checkpoint that cannot be resumed (damaged, or from another configuration); the message says how to
    start over. Not called in a notebook; used by ``geodd.distill``."""


def _start_over(path: Path) -> str:
    return f"start over with --overwrite (library: overwrite=True), or delete {path}"


def read_checkpoint(path: Path, cfg: DistillConfig) -> dict:
    """The checkpoint at ``path`` if it belongs to ``cfg``; a damaged (truncated, checksum-failing, foreign) file
    or one of another configuration is a ``CheckpointError`` that names it and says how to start over.
    Not called in a notebook; used by ``geodd.distill``."""
    try:
        ck = load_tensors(path, CHECKPOINT_FORMAT, checksum=True)
    except GeoddError as exc:
        raise CheckpointError(f"cannot resume: {exc}; {_start_over(path)}") from None
    if ck.get("config_hash") != cfg.result_hash():
        theirs = ck.get("config_key", "unknown")
        raise CheckpointError(f"{path} is a checkpoint of another configuration ({theirs}), not of this one "
                              f"({cfg.key()}); {_start_over(path)}")
    return ck


def _embed_real(run: _Run) -> None:
    """The current network's real features from its real batch (``run.real_picks``) and augmentations."""
    batches = [run.augment(run.real_images[m[pick.to(run.device)]], c)
               for c, (m, pick) in enumerate(zip(run.members, run.real_picks))]
    run.real_feats = embed_batches(run.net, batches, grad=False, amp=run.amp, channels_last=run.cfg.channels_last)


def _resume(run: _Run, ck: dict) -> None:
    """Continue exactly where checkpoint ``ck`` (checked by ``read_checkpoint``) stopped: images, optimiser,
    generator, matcher, the schedule (IDM's whole pool), and, inside a network's ``inner_steps``, that network,
    its real batch and augmentations (the real features are recomputed from them by the same code path)."""
    with torch.no_grad():
        run.images.copy_(ck["images"].to(run.device))
    run.opt.load_state_dict(ck["optimizer"])
    run.matcher.load_state_dict(ck["matcher"])
    run.schedule.load_state_dict(ck["schedule"])
    run.streams.set_state(ck["streams"])  # after the schedule was made: IDM's pool draws its first nets from it
    run.losses, run.start_it = list(ck["losses"]), int(ck["iteration"])
    run.snapshots = {int(k): v for k, v in ck.get("snapshots", {}).items()}
    run.geometry_log = list(ck.get("geometry", []))
    net = ck.get("net")
    if net is not None:
        run.net, _ = run.schedule.current_net()
        run.net_acc, run.net_it = float(net["acc"]), int(net["it"])
        run.aug_seeds = [int(a) for a in net["aug_seeds"]]
        run.real_picks = list(net["picks"])
        saved = {k: v.clone() for k, v in run.net.state_dict().items()}
        _embed_real(run)
        run.net.load_state_dict(saved)  # embedding may move batch-norm running statistics: keep the saved ones
    run.trace = Trace(ck["trace"])  # last: rebuilding the schedule's networks above recorded them again


def _make_schedule(run: _Run) -> FreshNets | NetPool:
    if run.cfg.schedule == "idm":
        return NetPool(run.cfg.idm, run.new_net, run.train, run.real_images, run.streams, run.dsa, run.amp)
    return FreshNets(run.new_net)


def _sample_features(run: _Run, it: int) -> None:
    """A network from the schedule, one real batch and one augmentation per class, and their features; then the
    matcher's once-per-network hooks. Each draw comes from its own stream (``geodd.streams``)."""
    cfg, streams = run.cfg, run.streams
    run.net, run.net_acc = run.schedule.next_net(it, streams)
    run.net_it = it
    run.aug_seeds = [seed_from(streams["dsa"]) for _ in range(run.train.num_classes)]
    run.real_picks = [torch.randperm(len(m), generator=streams["real"])[:cfg.batch_real] for m in run.members]
    run.trace.round(run.real_picks, run.aug_seeds)
    _embed_real(run)
    run.matcher.start_iteration(it, streams["matcher"], run.real_feats[0].shape[1], run.device)
    labels = torch.cat([torch.full((len(f),), c, device=run.device) for c, f in enumerate(run.real_feats)])
    logs = run.matcher.update_geometry(torch.cat(run.real_feats), labels)
    if logs:
        run.geometry_log.append({"iteration": it, **logs})


def _image_step(run: _Run, it: int) -> float:
    """One SGD step on the synthetic images; returns the loss per class."""
    cfg, net = run.cfg, run.net
    set_frozen(net, True)
    syn_batches = [run.augment(partition_expand(run.images[idx], run.factor), c)
                   for c, idx in enumerate(run.syn_slices)]
    syn_feats = embed_batches(net, syn_batches, grad=True, amp=run.amp, channels_last=cfg.channels_last)
    loss = sum(run.matcher(run.real_feats[c], syn_feats[c], c) for c in range(run.train.num_classes))
    if cfg.schedule == "idm" and cfg.idm.ce_weight > 0:
        loss = loss + synthetic_ce(net, syn_feats, cfg.idm.ce_weight * run.net_acc, run.amp, run.device)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"non-finite matching loss ({loss.item()}) at iteration {it}; "
                                 "lower lr_img or check the matcher options")
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.schedule.release(net)
    return loss.item() / run.train.num_classes


def _checkpoint(run: _Run, done: int, out: Path) -> None:
    """Everything ``_resume`` needs to continue exactly, with a checksum (``geodd.io.save_tensors``)."""
    net = None
    if run.net is not None and done - run.net_it < run.cfg.inner_steps:  # inside a network's inner steps
        net = {"it": run.net_it, "acc": run.net_acc, "aug_seeds": list(run.aug_seeds),
               "picks": [p.cpu() for p in run.real_picks]}
    save_tensors(out / CHECKPOINT_NAME, {
        "format": CHECKPOINT_FORMAT, "config_hash": run.cfg.result_hash(), "config_key": run.cfg.key(),
        "iteration": done, "images": run.images.detach().cpu(), "optimizer": run.opt.state_dict(),
        "streams": run.streams.get_state(), "trace": run.trace.as_dict(), "losses": run.losses, "matcher": run.matcher.state_dict(),
        "snapshots": run.snapshots, "geometry": run.geometry_log, "schedule": run.schedule.state_dict(),
        "net": net}, checksum=True)


#: divergence: images beyond this magnitude, or a loss whose window means rise ``DIVERGENCE_WINDOWS`` times in a
#: row to more than ``DIVERGENCE_RISE`` times the first of them (windows of ``DIVERGENCE_WINDOW`` iterations)
DIVERGENCE_MAX_ABS = 1e3
DIVERGENCE_WINDOW = 10
DIVERGENCE_WINDOWS = 3
DIVERGENCE_RISE = 2.0


class DivergenceWarning(RuntimeWarning):
    """The run looks divergent (a loss that keeps rising, or images far outside the data's range); warned once
    per run and recorded as ``record["divergence"]``. Not called in a notebook; used by ``geodd.distill``."""


def loss_rising(losses: list[float], window: int = DIVERGENCE_WINDOW, windows: int = DIVERGENCE_WINDOWS,
                rise: float = DIVERGENCE_RISE) -> bool:
    """True if the means of the last ``windows + 1`` windows of ``window`` losses rise every time and the last
    is more than ``rise`` times the first (a loss that keeps rising, not a noisy one).
    Not called in a notebook; used by ``geodd.distill``."""
    n = (windows + 1) * window
    if len(losses) < n:
        return False
    tail = np.asarray(losses[-n:], dtype=float).reshape(windows + 1, window).mean(1)
    return bool(np.all(np.diff(tail) > 0) and tail[-1] > rise * abs(tail[0]))


def check_divergence(run: _Run, it: int) -> None:
    """Warn once (``DivergenceWarning``) and remember the first sign of divergence in ``run.divergence``."""
    if run.divergence is not None:
        return
    reason = None
    peak = float(run.images.detach().abs().max())
    if peak > DIVERGENCE_MAX_ABS:
        reason = f"images reach |x| = {peak:.3g} > {DIVERGENCE_MAX_ABS:g}"
    elif loss_rising(run.losses):
        reason = (f"the loss kept rising over the last {(DIVERGENCE_WINDOWS + 1) * DIVERGENCE_WINDOW} iterations "
                  f"(to {run.losses[-1]:.4g})")
    if reason is not None:
        run.divergence = {"iteration": it + 1, "reason": reason}
        warnings.warn(f"geodd: warning: the run may diverge at iteration {it + 1}: {reason}; lower lr_img",
                      DivergenceWarning, stacklevel=3)


def _record(run: _Run, total: float) -> tuple[SynSet, dict]:
    cfg = run.cfg
    synset = SynSet(run.images.detach().cpu(), run.labels, cfg.as_dict(), run.train.mean, run.train.std,
                    run.snapshots)
    timings = {"total_s": total, "iterations_run": len(run.iter_seconds),
               "median_iter_s": float(np.median(run.iter_seconds)) if run.iter_seconds else None,
               "mean_iter_s": float(np.mean(run.iter_seconds)) if run.iter_seconds else None,
               "resumed_from": run.start_it}
    if cfg.schedule == "idm":
        timings["pool_train_s"] = run.schedule.train_seconds
    record = {"config": cfg.as_dict(), "seed": cfg.seed, "versions": library_versions(),
              "device": device_info(run.device), "precision": resolve(cfg.amp, run.device)._asdict(),
              "train_counts": run.train.counts, "timings": timings, "loss": run.losses,
              "geometry": run.geometry_log, "trace": run.trace.as_dict()}
    if run.divergence is not None:
        record["divergence"] = run.divergence
    return synset, record


def _config_key(config: dict) -> tuple[str, str]:
    """(result hash, readable key) of a stored config; ("?", "unreadable config") if it is not one."""
    try:
        other = DistillConfig.from_dict(config)
        return other.result_hash(), other.key()
    except (GeoddError, TypeError, ValueError):
        return "?", "an unreadable configuration"


def finished_run(cfg: DistillConfig, out: Path | str) -> tuple[SynSet, dict] | None:
    """The synthetic set and record in run folder ``out`` if it holds a finished run of ``cfg`` (same result
    hash, with every wanted snapshot); None if it holds no finished run. A finished run of another configuration
    is a ``GeoddError`` that says how to replace it. Not called in a notebook; used by ``geodd.distill``,
    ``geodd.cli``."""
    out = Path(out)
    if not (out / "record.json").exists():
        return None
    record = read_json(out / "record.json")  # geodd.runs.read_record's rule, without importing the layer above
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise GeoddError(f"{out / 'record.json'} is not a geodd run record (no config); pass --overwrite "
                         "(library: overwrite=True) to replace it")
    their_hash, their_key = _config_key(record["config"])
    if their_hash != cfg.result_hash():
        raise GeoddError(f"{out} holds a finished run of another configuration ({their_key}); pass --overwrite "
                         "(library: overwrite=True) to replace it and lose its evaluations, or choose another --out")
    synset = SynSet.load(out / "synset.pt")
    if not set(cfg.snapshot_at) <= set(synset.snapshots):
        raise GeoddError(f"{out} holds this configuration without the snapshots {sorted(cfg.snapshot_at)}; pass "
                         "--overwrite (library: overwrite=True) to recompute it")
    return synset, record


def _ours(name: str) -> bool:
    """Files a run folder may hold before its run has finished: the lock, the checkpoint, temporary files."""
    return name in (LOCK_NAME, CHECKPOINT_NAME) or (name.startswith(".") and name.endswith(".tmp"))


def _check_folder(cfg: DistillConfig, out: Path, overwrite: bool, resume: bool) -> tuple[tuple | None, dict | None]:
    """(finished run or None, checkpoint to resume or None) for run folder ``out``; refuses a folder that holds
    another configuration's run or checkpoint, or foreign files, unless ``overwrite``."""
    if overwrite or not out.exists():
        return None, None
    done = finished_run(cfg, out)
    if done is not None:
        return done, None
    foreign = sorted(p.name for p in out.iterdir() if not _ours(p.name))
    if foreign:
        raise GeoddError(f"{out} is not empty ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) and "
                         "holds no run of this configuration; pass --overwrite (library: overwrite=True) or choose "
                         "another --out")
    ckpt = out / CHECKPOINT_NAME
    if ckpt.exists():
        ck = read_checkpoint(ckpt, cfg)
        return None, ck if resume else None
    return None, None


def distill(cfg: DistillConfig, *, train: Dataset | None = None, out: Path | str | None = None,
            device: torch.device | str | None = None, resume: bool = True, overwrite: bool = False,
            progress: bool = True, matcher: Matcher | None = None,
            callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> tuple[SynSet, dict]:
    """Distil ``cfg.dataset`` into ``cfg.ipc`` images per class; returns the synthetic set and its record.

    ``out`` (optional) is the run folder: it receives ``synset.pt``, ``record.json`` and, with
    ``checkpoint_every``, a ``checkpoint.pt`` (with a checksum) that a later call resumes from exactly.
    Before any work, the device and ``out`` are checked and ``out`` is locked (``geodd.io.RunLock``: a second
    process gets a ``LockedError`` naming the holder). A folder that holds a finished run of ``cfg`` is
    returned as it is (its evaluations kept); one that holds another configuration's run or checkpoint, or
    other files, is refused unless ``overwrite`` (which starts afresh and replaces the run at the end); a
    damaged checkpoint is refused with how to start over. ``resume=False`` ignores a checkpoint of ``cfg``.
    ``callback(iteration, images, labels)`` runs after each iteration (e.g. to evaluate intermediate sets).
    Nothing but the lock and the checkpoint is written to ``out`` before the run has finished. A run whose
    images exceed |x| > 1e3 or whose loss keeps rising gets one ``DivergenceWarning`` and ``record["divergence"]``.
    ``cfg.schedule="idm"`` uses IDM's pool (``cfg.idm``), stores partitioned images and adds the
    accuracy-weighted synthetic CE term; it combines with any matcher (``hdd`` + ``idm`` is IDM+HDD).
    Used in notebook 04 (04_geodm_product_space) through its study module.
    """
    cfg.validate()
    device = resolve_device(device)
    if out is None:
        return _distill(cfg, train, None, device, None, progress, matcher, callback)
    out = Path(out)
    check_output_dir(out)
    with RunLock(out):
        done, ck = _check_folder(cfg, out, overwrite, resume)
        if done is not None:
            return done
        return _distill(cfg, train, out, device, ck, progress, matcher, callback)


def _distill(cfg: DistillConfig, train: Dataset | None, out: Path | None, device: torch.device, ck: dict | None,
             progress: bool, matcher: Matcher | None, callback) -> tuple[SynSet, dict]:
    train = load_training_data(cfg) if train is None else train
    if cfg.keep < 1.0:
        from .prune import prune_dataset
        train = prune_dataset(train, cfg.keep, seed=cfg.seed, device=device)

    run = _setup(cfg, train, device, matcher)
    run.schedule = _make_schedule(run)
    if ck is not None:
        _resume(run, ck)
        del ck
    if 0 in cfg.snapshot_at and 0 not in run.snapshots:
        run.snapshots[0] = run.images.detach().cpu().clone()
    t_start = time.perf_counter()
    bar = tqdm(range(run.start_it, cfg.iterations), desc=f"distill {cfg.method}/{cfg.schedule} ipc{cfg.ipc}",
               disable=not progress, initial=run.start_it, total=cfg.iterations)
    for it in bar:
        t0 = time.perf_counter()
        if run.net is None or it - run.net_it >= cfg.inner_steps:
            _sample_features(run, it)
        run.losses.append(_image_step(run, it))
        run.iter_seconds.append(time.perf_counter() - t0)
        check_divergence(run, it)
        bar.set_postfix(loss=f"{run.losses[-1]:.4g}", refresh=False)
        if it + 1 in cfg.snapshot_at:
            run.snapshots[it + 1] = run.images.detach().cpu().clone()
        if callback is not None:
            callback(it + 1, run.images.detach(), run.labels)
        if out is not None and cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0:
            _checkpoint(run, it + 1, out)
    bar.close()
    synset, record = _record(run, time.perf_counter() - t_start)
    if out is not None:
        synset.save(out / "synset.pt")
        write_json(out / "record.json", record)
        (out / CHECKPOINT_NAME).unlink(missing_ok=True)
        for stale in out.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # left by a killed run (this one holds the lock)
            stale.unlink(missing_ok=True)
    return synset, record
