"""DM: first-moment matching of embeddings (Zhao & Bilen, WACV 2023, Eq. 4).

loss_c = || mean_i f(x_i) - mean_j f(s_j) ||_2^2, i.e. the MMD^2 of the linear kernel.
"""
from __future__ import annotations

import torch

from .base import Matcher


def dm_loss(real: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
    """||mean(real) - mean(syn)||^2 summed over feature dimensions; ``real [N, D]``, ``syn [M, D]``."""
    return (real.mean(0) - syn.mean(0)).pow(2).sum()


class DMMatcher(Matcher):
    """The DM baseline matcher."""

    name = "dm"

    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        return dm_loss(real, syn)
