"""The small supervised training loop shared by teachers (LIA) and students (OTM).

Mini-batch training of a classifier with a caller-supplied loss on (logits, batch indices), seeded data order,
optional bfloat16 autocast. Optimiser settings are "reconstruction: our choice": Adam for teachers (few
epochs on real data), SGD + momentum with cosine decay for students (the DM evaluation optimiser, with a
smooth schedule instead of the single x0.1 drop). Used by notebook 05 (05_ot_generative).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import GeoddError
from ..precision import autocast

#: the DM protocol's student optimiser constants (``docs/methods/evaluation.md``)
SGD_MOMENTUM, SGD_WEIGHT_DECAY = 0.9, 5e-4

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fit(net: nn.Module, images: torch.Tensor, loss_fn: LossFn, *, epochs: int, batch_size: int, lr: float,
        optimizer: str = "sgd", seed: int = 0, amp: str | None = None, progress: bool = False,
        desc: str = "train") -> list[float]:
    """Train ``net`` in place on ``images`` for ``epochs``; ``loss_fn(logits, idx)`` sees the batch's logits
    (float32) and its indices into ``images``. Returns the mean loss per epoch.
    Used in notebook 05 (05_ot_generative)."""
    if epochs <= 0 or batch_size <= 0:
        raise GeoddError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    device = next(net.parameters()).device
    images = images.to(device)
    if optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY)
    elif optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr)
    else:
        raise GeoddError(f"unknown optimizer {optimizer!r}; choose sgd or adam")
    steps_per_epoch = -(-len(images) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(int(seed))
    net.train()
    history = []
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        order = torch.randperm(len(images), generator=gen).to(device)
        total = 0.0
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            with autocast(device, amp):
                logits = net(images[idx])
            loss = loss_fn(logits.float(), idx)
            if not torch.isfinite(loss):
                raise GeoddError(f"non-finite training loss ({float(loss)}) in {desc}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(images))
    net.eval()
    return history


@torch.no_grad()
def predict_logits(net: nn.Module, images: torch.Tensor, *, batch_size: int = 512,
                   amp: str | None = None) -> torch.Tensor:
    """Logits of ``net`` (eval mode) on ``images`` in batches, as float32 on the net's device.
    Used in notebook 05 (05_ot_generative)."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        with autocast(device, amp):
            out.append(net(images[start:start + batch_size].to(device)).float())
    net.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1024,
             amp: str | None = None) -> float:
    """Top-1 accuracy of ``net`` on a labelled tensor set. Used in notebook 05 (05_ot_generative)."""
    pred = predict_logits(net, images, batch_size=batch_size, amp=amp).argmax(1)
    return float((pred == labels.to(pred.device)).float().mean())


__all__ = ["fit", "predict_logits", "accuracy"]
