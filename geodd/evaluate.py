"""The standard evaluation protocol (``docs/methods/evaluation.md``).

A fresh, randomly initialised network is trained on the synthetic set with hard labels: SGD (lr 0.01,
momentum 0.9, weight decay 5e-4), batch 256, cross-entropy, DSA (non-siamese) during training, 1000 epochs
with the learning rate multiplied by 0.1 once at half (the optimiser is re-created there, as in the DC code).
It is then tested once on the full test set. Several such nets give the mean +- std. Epochs, runs, the
architecture and the precision are parameters; ``amp="bf16"`` trains under bfloat16 autocast and ``amp="auto"``
does so where the device computes bf16 natively (``geodd.precision``; the ``cpu`` profile's speed-up; the
published protocol is float32). Every notebook evaluates through this module.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import GeoddError, resolve_device
from .augment import DSA, strategy_for
from .data import Dataset
from .nets import make_network
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
    ``train_counts`` (the long-tailed training counts) adds head/medium/tail accuracies.
    Used in notebooks 02 (02_hdd_pruning), 04 (04_geodm_product_space) through their study modules.
    """
    check_settings(runs=runs, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size)
    check_set(images, labels, test)
    device = resolve_device(device)
    amp = resolve(amp, device).autocast_arg
    strategy = strategy_for(test.name) if dsa_strategy is None else dsa_strategy
    dsa = DSA(strategy) if strategy else None
    accs, per_class = [], []
    t0 = time.perf_counter()
    for r in tqdm(range(runs), desc=f"evaluate {arch}", disable=not progress, leave=False):
        net = make_network(arch, test.channels, test.num_classes, test.im_size, seed=seed * 1000 + r, device=device)
        train_net(net, images, labels, epochs=epochs, lr=lr, batch_size=batch_size, dsa=dsa, seed=seed * 1000 + r,
                  amp=amp)
        acc, pc = held_out_accuracy(net, test, amp=amp, device=device)
        accs.append(acc)
        per_class.append(pc)
    pcm = np.mean(per_class, axis=0).tolist()
    groups = group_accuracy(pcm, train_counts) if train_counts is not None else {}
    return EvalResult(arch, accs, pcm, epochs, time.perf_counter() - t0, groups, amp or "fp32")


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

