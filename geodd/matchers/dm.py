"""DM: first-moment matching of embeddings ("Dataset Condensation with Distribution Matching", Zhao & Bilen,
WACV 2023, Eq. 4; ``docs/methods/dm.md`` "Equations").

loss_c = || mean_i f(x_i) - mean_j f(s_j) ||_2^2, i.e. the MMD^2 of the linear kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Matcher, resolve_options


@dataclass
class DMOptions:
    """DM has no options (the loss is fixed); the class exists so every method has an options type.
    Shown in notebook 00 (00_dm_baseline)."""


def dm_loss(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """||mean(real) - mean(syn)||^2 summed over feature dimensions; ``real [N, D]``, ``syn [M, D]``.
    Shown in notebook 00 (00_dm_baseline)."""
    return (real.mean(0) - syn.mean(0)).pow(2).sum()


class DMMatcher(Matcher):
    """The DM baseline matcher: ``dm_loss`` per class. Shown in notebook 00 (00_dm_baseline)."""

    name = "dm"

    def __init__(self, options: DMOptions | None = None, **overrides):
        super().__init__()
        self.options = resolve_options(DMOptions, options, overrides, "dm")

    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        return dm_loss(real, syn)


__all__ = ["DMOptions", "dm_loss", "DMMatcher"]
