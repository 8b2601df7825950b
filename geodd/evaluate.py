"""The standard evaluation protocol (``docs/methods/evaluation.md``).

A fresh, randomly initialised network is trained on the synthetic set with hard labels: SGD (lr 0.01,
momentum 0.9, weight decay 5e-4), batch 256, cross-entropy, DSA (non-siamese) during training, 1000 epochs
with the learning rate multiplied by 0.1 once at half (the optimiser is re-created there, as in the DC code).
It is then tested once on the full test set. Several such nets give the mean +- std. Epochs, runs, the
architecture and the precision are parameters; ``amp="bf16"`` trains under bfloat16 autocast and ``amp="auto"``
does so where the device computes bf16 natively (``geodd.precision``; the ``cpu`` profile's speed-up; the
published protocol is float32). Every notebook evaluates through this module.

Several nets are trained together (``train_nets_batched``, ``evaluate_sets``): each keeps its own set, seed,
shuffling and DSA draws, and the group takes one SGD step over its stacked weights, so each net ends where
``train_net`` would have taken it, up to float rounding (``docs/methods/evaluation.md``, "Batched evaluation").
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from . import GeoddError, resolve_device
from .augment import DSA, strategy_for
from .data import Dataset
from .nets import MLP, ConvNet, _FeatureNet, make_network
from .options import require
from .precision import autocast, resolve

#: the published protocol's constants (DC/DM ``evaluate_synset``)
LR_NET, MOMENTUM, WEIGHT_DECAY, BATCH_TRAIN, EPOCHS = 0.01, 0.9, 5e-4, 256, 1000


@dataclass
class EvalResult:
    """Accuracies of ``runs`` fresh networks; ``per_class`` is the per-class accuracy averaged over runs.
    Not called in a notebook; used by ``geodd.evaluate``."""

    arch: str
    accs: list[float]
    per_class: list[float]
    epochs: int
    seconds: float
    groups: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"

    @property
    def mean(self) -> float:
        return float(np.mean(self.accs))

    @property
    def std(self) -> float:
        return float(np.std(self.accs))

    def as_dict(self) -> dict:
        return {"arch": self.arch, "mean": self.mean, "std": self.std, "accs": self.accs,
                "per_class": self.per_class, "epochs": self.epochs, "seconds": self.seconds,
                "precision": self.precision, **(
                    {"groups": self.groups} if self.groups else {})}

    def __str__(self) -> str:
        return f"{self.arch}: {100 * self.mean:.2f} +- {100 * self.std:.2f} % over {len(self.accs)} runs"


@torch.inference_mode()
def held_out_accuracy(net: torch.nn.Module, test: Dataset, *, batch_size: int = 1024, amp: str | None = None,
                  device: torch.device | None = None) -> tuple[float, list[float]]:
    """Top-1 accuracy and per-class accuracy of ``net`` on ``test`` (eval mode, no augmentation).
    Used in notebook 05 (05_ot_generative) through its study module."""
    device = device or next(net.parameters()).device
    net.eval()
    correct = torch.zeros(test.num_classes, dtype=torch.long)
    for start in range(0, len(test), batch_size):
        x = test.images[start:start + batch_size].to(device, non_blocking=True)
        y = test.labels[start:start + batch_size]
        with autocast(device, amp):
            pred = net(x).argmax(1).cpu()
        correct += torch.bincount(y[pred == y], minlength=test.num_classes)
    counts = torch.bincount(test.labels, minlength=test.num_classes).clamp_min(1)
    per_class = (correct.double() / counts).tolist()
    return float(correct.sum()) / len(test), per_class



def train_net(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = EPOCHS,
              lr: float = LR_NET, batch_size: int = BATCH_TRAIN, dsa: DSA | None = None, seed: int = 0,
              amp: str | None = None, progress: bool = False) -> torch.nn.Module:
    """Train ``net`` with the protocol's SGD and the single x0.1 learning-rate drop at half (in place).
    Used in notebook 01 (01_manifold_embeddings) through its study module."""
    if epochs <= 0:
        raise GeoddError(f"epochs must be positive, got {epochs}")
    device = next(net.parameters()).device
    images, labels = images.to(device), labels.to(device)
    gen = torch.Generator().manual_seed(int(seed))
    net.train()
    decay_at = epochs // 2

    def make_opt(rate):
        return torch.optim.SGD(net.parameters(), lr=rate, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    opt = make_opt(lr)
    for ep in tqdm(range(epochs), desc="train", disable=not progress, leave=False):
        if ep == decay_at and ep > 0:
            opt = make_opt(lr * 0.1)  # re-created, so momentum restarts (DC code behaviour)
        order = torch.randperm(len(images), generator=gen).to(device)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            x, y = images[idx], labels[idx]
            if dsa is not None:
                x = dsa(x, gen, siamese=False)
            with autocast(device, amp):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net


#: nets trained together at most (``evaluate_sets``). ``benchmarks/bench_eval.py`` measured 1 to 16: the CPU time
#: per net stops falling at about 8
MAX_GROUP = 8
#: images in one SGD step summed over a group's members. A ConvNet-128 at 28x28 (padded to 32) took 2.4 MB per image
#: of peak memory in float32 (8 nets at IPC 10: +1.95 GB), so a group's step stays near 2.5 GB whatever the IPC
#: (at IPC 1 MAX_GROUP binds)
GROUP_IMAGES = 1024
#: how a group is trained: one grouped convolution per layer, ``torch.vmap``, or one net after another
BATCH_METHODS = ("auto", "grouped", "vmap", "sequential")
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Identity, nn.AvgPool2d, nn.MaxPool2d,
                nn.AdaptiveAvgPool2d)


def group_size(n_images: int, batch_size: int = BATCH_TRAIN, max_group: int = MAX_GROUP) -> int:
    """How many nets train together on sets of ``n_images``: ``max_group``, fewer where the group's images per
    SGD step would pass ``GROUP_IMAGES`` (at least 1). Not called in a notebook; used by ``geodd.evaluate``."""
    per_step = max(1, min(int(n_images), int(batch_size)))
    return max(1, min(int(max_group), GROUP_IMAGES // per_step))


def _chain(net: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """``net`` as its forward's flat list of (parameter prefix, layer) for the grouped path; None where it is not
    a chain of layers the grouped path knows (then vmap or one net after another)."""
    flat = ("", nn.Flatten())
    if isinstance(net, ConvNet):  # classifier(features(x).flatten(1))
        parts = [("features", net.features), flat, ("classifier", net.classifier)]
    elif isinstance(net, _FeatureNet):  # classifier(hidden(features(x).flatten(1)))
        parts = [("features", net.features), flat, ("hidden", net.hidden), ("classifier", net.classifier)]
    elif isinstance(net, MLP):  # classifier(body(x)), body starting with Flatten
        parts = [("body", net.body), ("classifier", net.classifier)]
    else:
        return None
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, mod: nn.Module) -> bool:
        if isinstance(mod, nn.Sequential):
            return all(walk(f"{prefix}.{name}", child) for name, child in mod.named_children())
        ok = (isinstance(mod, _ELEMENTWISE) or (isinstance(mod, nn.Flatten) and mod.start_dim == 1
                                                 and mod.end_dim == -1)
              or (isinstance(mod, nn.Conv2d) and mod.padding_mode == "zeros")
              or (isinstance(mod, nn.GroupNorm) and mod.affine) or isinstance(mod, nn.Linear))
        out.append((prefix, mod))
        return ok

    return out if all(walk(prefix, mod) for prefix, mod in parts) else None


def batch_method(net: nn.Module) -> str:
    """How nets like ``net`` train together: ``"grouped"`` (ConvNet, LeNet, AlexNet, VGG11, MLP without batch
    norm: one grouped convolution per layer), ``"vmap"`` (other nets without buffers, e.g. ResNet-18 with instance
    norm or ConvNet with layer norm) or ``"sequential"`` (nets with buffers: batch norm updates running statistics
    in place, which vmap cannot batch). Not called in a notebook; used by ``geodd.evaluate``."""
    if any(True for _ in net.buffers()):
        return "sequential"
    return "grouped" if _chain(net) is not None else "vmap"


def _grouped_forward(chain: list[tuple[str, nn.Module]], params: dict[str, torch.Tensor],
                     x: torch.Tensor) -> torch.Tensor:
    """Logits [M, B, K] of M stacked nets on x [M, B, C, H, W]: images travel as [B, M*C, H, W] (member m owns
    channels m*C..(m+1)*C), so a conv is one convolution with M times the groups, a GroupNorm one group norm with
    M times the groups, and pooling and activations act per channel; vectors travel as [M, B, D] (batched matmul)."""
    m, b = x.shape[:2]
    h, flat = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:]), False
    for key, layer in chain:
        if isinstance(layer, (nn.Flatten, nn.Linear)) and not flat:
            h, flat = h.reshape(b, m, -1).transpose(0, 1), True
        if isinstance(layer, nn.Linear):
            w, bias = params[key + ".weight"], params.get(key + ".bias")
            h = torch.bmm(h, w.transpose(1, 2)) if bias is None else torch.baddbmm(bias.unsqueeze(1), h,
                                                                                   w.transpose(1, 2))
        elif isinstance(layer, nn.Conv2d):
            w, bias = params[key + ".weight"], params.get(key + ".bias")
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), None if bias is None else bias.reshape(-1), layer.stride,
                         layer.padding, layer.dilation, m * layer.groups)
        elif isinstance(layer, nn.GroupNorm):
            h = F.group_norm(h, m * layer.num_groups, params[key + ".weight"].reshape(-1),
                             params[key + ".bias"].reshape(-1), layer.eps)
        elif not isinstance(layer, nn.Flatten):
            h = layer(h)
    return h


def _group_forward(kind: str, template: nn.Module, params: dict, buffers: dict):
    """The function x [M, B, ...] -> logits [M, B, K] of the stacked nets, by the grouped path or by vmap."""
    if kind == "grouped":
        chain = _chain(template)
        if chain is None:
            raise GeoddError(f"{type(template).__name__} cannot train by grouped convolution; use method='vmap'")
        return lambda x: _grouped_forward(chain, params, x)
    batched = torch.vmap(lambda p, b, x: functional_call(template, (p, b), (x,)))
    return lambda x: batched(params, buffers, x)


def _member_batch(images: torch.Tensor, labels: torch.Tensor, idx: list[torch.Tensor], dsa: DSA | None,
                  gens: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Member m's batch ``images[m][idx[m]]``, augmented with member m's generator exactly as ``train_net`` does
    (per-sample DSA drawn in the same order), stacked to [M, B, C, H, W] and labels [M, B]."""
    xs = []
    for m, (order, gen) in enumerate(zip(idx, gens)):
        x = images[m][order]
        xs.append(dsa(x, gen, siamese=False) if dsa is not None else x)
    return torch.stack(xs), torch.stack([labels[m][order] for m, order in enumerate(idx)])


def _check_group(nets: list[nn.Module], sets: list[tuple[torch.Tensor, torch.Tensor]], seeds: list[int]) -> None:
    """One-line errors for a group that cannot train together: sizes that differ, sets of different shapes or
    nets of different architectures."""
    if not nets or not len(nets) == len(sets) == len(seeds):
        raise GeoddError(f"a group needs one set and one seed per net, got {len(nets)} nets, {len(sets)} sets and "
                         f"{len(seeds)} seeds")
    shapes = {(tuple(x.shape), tuple(y.shape)) for x, y in sets}
    if len(shapes) > 1:
        raise GeoddError(f"nets train together only on sets of one shape, got {sorted(shapes)}; group by shape")
    layouts = {tuple((k, tuple(v.shape)) for k, v in net.state_dict().items()) for net in nets}
    if len(layouts) > 1:
        raise GeoddError("nets train together only when they share one architecture")


def train_nets_batched(nets: list[nn.Module], sets: list[tuple[torch.Tensor, torch.Tensor]], *, seeds: list[int],
                       epochs: int = EPOCHS, lr: float = LR_NET, batch_size: int = BATCH_TRAIN,
                       dsa: DSA | None = None, amp: str | None = None, method: str = "auto",
                       progress: bool = False) -> list[nn.Module]:
    """Train ``nets[m]`` on ``sets[m]`` with seed ``seeds[m]`` as ``train_net`` would, all together (in place).

    Member m draws its epoch permutation and its per-sample DSA from its own generator in ``train_net``'s order;
    the group's forward runs by grouped convolution or ``torch.vmap`` (``batch_method``), the loss is the sum of
    the members' mean cross-entropies (so each net gets its own gradient), and one SGD with momentum and weight
    decay, elementwise and so equal to M optimisers, steps the stacked weights; it is re-created at half the
    epochs. The weights equal ``train_net``'s up to float rounding. ``method="auto"`` trains one net, or nets
    with buffers (batch norm), with ``train_net`` itself; so does ``"vmap"`` under bf16 (vmap does not autocast).
    Not called in a notebook; used by ``geodd.evaluate``.
    """
    if epochs <= 0:
        raise GeoddError(f"epochs must be positive, got {epochs}")
    require(method in BATCH_METHODS, f"unknown batch method {method!r}; choose one of {', '.join(BATCH_METHODS)}")
    _check_group(nets, sets, seeds)
    kind = batch_method(nets[0]) if method == "auto" else method
    if kind == "vmap" and amp is not None:
        kind = "sequential"  # vmap does not autocast the ops it batches (they ran in float32): bf16 nets go one by one
    if kind == "sequential" or (method == "auto" and len(nets) == 1):
        return [train_net(net, x, y, epochs=epochs, lr=lr, batch_size=batch_size, dsa=dsa, seed=s, amp=amp)
                for net, (x, y), s in zip(nets, sets, seeds)]
    device = next(nets[0].parameters()).device
    params, buffers = stack_module_state(nets)
    forward = _group_forward(kind, nets[0], params, buffers)
    images = torch.stack([x.to(device) for x, _ in sets])
    labels = torch.stack([y.to(device) for _, y in sets])
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    for net in nets:
        net.train()

    def make_opt(rate):
        return torch.optim.SGD(list(params.values()), lr=rate, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    opt, n = make_opt(lr), images.shape[1]
    for ep in tqdm(range(epochs), desc=f"train {len(nets)} nets", disable=not progress, leave=False):
        if ep == epochs // 2 and ep > 0:
            opt = make_opt(lr * 0.1)  # re-created, so momentum restarts (as in train_net)
        orders = [torch.randperm(n, generator=g).to(device) for g in gens]
        for start in range(0, n, batch_size):
            x, y = _member_batch(images, labels, [o[start:start + batch_size] for o in orders], dsa, gens)
            with autocast(device, amp):
                logits = forward(x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(len(nets), -1)
            opt.zero_grad(set_to_none=True)
            loss.mean(1).sum().backward()
            opt.step()
    with torch.no_grad():
        for m, net in enumerate(nets):
            for name, p in net.named_parameters():
                p.copy_(params[name][m])
    return nets


def class_groups(counts: list[int]) -> dict[str, list[int]]:
    """Split classes into head / medium / tail thirds by training count (largest first).

    Reconstruction: our choice (the CSDM paper does not state its split). With C classes the head and tail get
    floor(C/3) classes each and the medium group the rest; ties keep class order.
    Not called in a notebook; used by ``geodd.evaluate``.
    """
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    third = len(counts) // 3
    return {"head": order[:third], "medium": order[third:len(counts) - third], "tail": order[len(counts) - third:]}


def group_accuracy(per_class: list[float], counts: list[int]) -> dict[str, float]:
    """Balanced accuracy plus head / medium / tail accuracy (each the mean over its classes).
    Not called in a notebook; used by ``geodd.evaluate``."""
    out = {"balanced": float(np.mean(per_class))}
    for name, members in class_groups(counts).items():
        out[name] = float(np.mean([per_class[c] for c in members])) if members else float("nan")
    return out


#: evaluation seeds: the net of run r uses seed * 1000 + r, which must stay a valid 64-bit seed
EVAL_SEED_LIMIT = 2**53


def check_settings(*, runs: int = 1, epochs: int = 1, seed: int = 0, lr: float = LR_NET,
                   batch_size: int = BATCH_TRAIN) -> None:
    """The evaluation settings' types and ranges, as one-line ``GeoddError``s (``geodd.options.require``):
    runs, epochs and batch_size are integers >= 1, seed an integer in [0, 2**53), lr a positive finite number.
    Not called in a notebook; used by ``geodd.evaluate``, ``geodd.runs``, ``geodd.cli``."""
    for name, v in (("runs", runs), ("epochs", epochs), ("batch_size", batch_size)):
        require(isinstance(v, numbers.Integral) and not isinstance(v, bool), f"{name} must be an integer, got {v!r}")
        require(v >= 1, f"{name} must be positive, got {v}")
    require(isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed < EVAL_SEED_LIMIT,
            f"seed must be an integer in [0, 2**53), got {seed!r}")
    require(isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0,
            f"lr must be a positive finite number, got {lr!r}")


def check_set(images: torch.Tensor, labels: torch.Tensor, test: Dataset, what: str = "the synthetic set") -> None:
    """Refuse, before any training, a set that cannot be evaluated on ``test``: images that are not
    [N, C, H, W] with the test set's channels and size, non-finite pixels, labels that are not integers in
    [0, num_classes) or do not match the images one to one. Not called in a notebook; used by
    ``geodd.evaluate``, ``geodd.runs``."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (test.channels, *test.im_size):
        raise GeoddError(f"{what} has images of shape {tuple(images.shape[1:])}, but {test.name} has "
                         f"{(test.channels, *test.im_size)}; does the record name the right dataset?")
    if labels.ndim != 1 or len(labels) != len(images):
        raise GeoddError(f"{what} has {len(images)} images but labels of shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise GeoddError(f"{what} has {labels.dtype} labels; they must be integers")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= test.num_classes):
        raise GeoddError(f"{what} has labels in [{int(labels.min())}, {int(labels.max())}], outside the "
                         f"{test.num_classes} classes of {test.name}")
    if not images.dtype.is_floating_point:
        raise GeoddError(f"{what} has {images.dtype} images; they must be floating point")
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise GeoddError(f"{what} has {bad} non-finite pixel values (NaN or inf); the distillation diverged")


def evaluate_images(images: torch.Tensor, labels: torch.Tensor, test: Dataset, *, arch: str = "convnet",
                    runs: int = 5, epochs: int = EPOCHS, lr: float = LR_NET, batch_size: int = BATCH_TRAIN,
                    dsa_strategy: str | None = None, seed: int = 0, amp: str | None = None,
                    device: torch.device | None = None, train_counts: list[int] | None = None,
                    progress: bool = True) -> EvalResult:
    """Train ``runs`` fresh ``arch`` nets on (images, labels) and test each on ``test``.

    ``dsa_strategy=None`` uses the dataset's DSA strategy (the protocol); pass ``""`` for no augmentation.
    ``train_counts`` (the long-tailed training counts) adds head/medium/tail accuracies. The ``runs`` nets train
    together (``evaluate_sets``).
    Used in notebooks 02 (02_hdd_pruning), 04 (04_geodm_product_space) through their study modules.
    """
    return evaluate_sets([(images, labels)], test, arch=arch, runs=runs, epochs=epochs, lr=lr,
                         batch_size=batch_size, dsa_strategy=dsa_strategy, seeds=[seed], amp=amp, device=device,
                         train_counts=[train_counts], progress=progress)[0]


def _plan(sets: list[tuple[torch.Tensor, torch.Tensor]], runs: int, batch_size: int,
          max_group: int) -> list[list[tuple[int, int]]]:
    """The (set, run) jobs in groups that train together: jobs on sets of one shape, in order, cut into groups of
    ``group_size``."""
    by_shape: dict[tuple, list[tuple[int, int]]] = {}
    for i, (x, y) in enumerate(sets):
        key = (tuple(x.shape), x.dtype, tuple(y.shape))
        by_shape.setdefault(key, []).extend((i, r) for r in range(runs))
    groups = []
    for key, jobs in by_shape.items():
        size = group_size(key[0][0], batch_size, max_group)
        groups += [jobs[k:k + size] for k in range(0, len(jobs), size)]
    return groups


def evaluate_sets(sets: list[tuple[torch.Tensor, torch.Tensor]], test: Dataset, *, arch: str = "convnet",
                  runs: int = 1, epochs: int = EPOCHS, lr: float = LR_NET, batch_size: int = BATCH_TRAIN,
                  dsa_strategy: str | None = None, seeds: list[int] | None = None, amp: str | None = None,
                  device: torch.device | None = None, train_counts: list[list[int] | None] | None = None,
                  max_group: int = MAX_GROUP, method: str = "auto", progress: bool = True) -> list[EvalResult]:
    """``evaluate_images`` for several synthetic sets at once: one ``EvalResult`` per set, in order.

    Net r of set i uses seed ``seeds[i] * 1000 + r`` as in ``evaluate_images``; the ``len(sets) * runs`` nets
    train in groups of up to ``max_group`` (fewer for large sets, ``group_size``) on sets of one shape
    (``train_nets_batched``), and each is then tested on its own. A set's ``seconds`` is its nets' share of their
    groups' time. ``train_counts[i]`` adds head/medium/tail accuracies to set i's result.
    Not called in a notebook; used by ``geodd.evaluate``, ``geodd.runs``, ``geodd.studies.common``.
    """
    seeds = [0] * len(sets) if seeds is None else [int(s) for s in seeds]
    counts = [None] * len(sets) if train_counts is None else list(train_counts)
    require(len(seeds) == len(sets) == len(counts), f"evaluate_sets needs one seed and one train_counts per set, "
                                                   f"got {len(sets)} sets, {len(seeds)} seeds, {len(counts)} counts")
    require(isinstance(max_group, numbers.Integral) and max_group >= 1, f"max_group must be >= 1, got {max_group!r}")
    for i, (images, labels) in enumerate(sets):
        check_settings(runs=runs, epochs=epochs, seed=seeds[i], lr=lr, batch_size=batch_size)
        check_set(images, labels, test, what=f"synthetic set {i}" if len(sets) > 1 else "the synthetic set")
    device = resolve_device(device)
    amp = resolve(amp, device).autocast_arg
    strategy = strategy_for(test.name) if dsa_strategy is None else dsa_strategy
    dsa = DSA(strategy) if strategy else None
    tested: dict[tuple[int, int], tuple[float, list[float]]] = {}
    seconds = [0.0] * len(sets)
    for group in tqdm(_plan(sets, runs, batch_size, max_group), desc=f"evaluate {arch}", disable=not progress,
                      leave=False):
        t0 = time.perf_counter()
        nets = [make_network(arch, test.channels, test.num_classes, test.im_size, seed=seeds[i] * 1000 + r,
                             device=device) for i, r in group]
        train_nets_batched(nets, [sets[i] for i, _ in group], seeds=[seeds[i] * 1000 + r for i, r in group],
                           epochs=epochs, lr=lr, batch_size=batch_size, dsa=dsa, amp=amp, method=method)
        for job, net in zip(group, nets):
            tested[job] = held_out_accuracy(net, test, amp=amp, device=device)
        for i, _ in group:
            seconds[i] += (time.perf_counter() - t0) / len(group)
    results = []
    for i in range(len(sets)):
        accs = [tested[i, r][0] for r in range(runs)]
        pcm = np.mean([tested[i, r][1] for r in range(runs)], axis=0).tolist()
        groups = group_accuracy(pcm, counts[i]) if counts[i] is not None else {}
        results.append(EvalResult(arch, accs, pcm, epochs, seconds[i], groups, amp or "fp32"))
    return results


def random_subset(train: Dataset, ipc: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` random real images per class (the "Random" baseline), seeded.
    Shown in notebooks 00 (00_dm_baseline) and 05 (05_ot_generative)."""
    gen = torch.Generator().manual_seed(int(seed))
    idx = []
    for c, members in enumerate(train.indices_by_class):
        if len(members) < ipc:
            raise GeoddError(f"class {c} of {train.name} has {len(members)} images, fewer than ipc={ipc}")
        idx.append(members[torch.randperm(len(members), generator=gen)[:ipc]])
    idx = torch.cat(idx)
    return train.images[idx].clone(), train.labels[idx].clone()


def whole_dataset(train: Dataset, test: Dataset, *, arch: str = "convnet", epochs: int = 2, runs: int = 1,
                  batch_size: int = BATCH_TRAIN, lr: float = LR_NET, seed: int = 0, amp: str | None = None,
                  dsa_strategy: str | None = "", device: torch.device | None = None,
                  progress: bool = True) -> EvalResult:
    """The whole-dataset reference: the same optimiser on all of ``train`` for ``epochs`` epochs.

    The papers' "whole dataset" numbers come from long training; at CPU scale a few epochs are the honest
    budget, and the record says how many were run. No augmentation by default.
    Not called in a notebook; used by ``geodd.studies.common``.
    """
    return evaluate_images(train.images, train.labels, test, arch=arch, runs=runs, epochs=epochs, lr=lr,
                           batch_size=batch_size, dsa_strategy=dsa_strategy, seed=seed, amp=amp, device=device,
                           progress=progress)

