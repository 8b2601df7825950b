"""The matcher contract shared by every objective.

A matcher is an ``nn.Module`` whose ``forward(real [N, D], syn [M, D], cls)`` returns a scalar loss for one
class. The engine (``geodd.distill``) embeds all classes in one network call, slices the features per class
and sums the per-class losses. Hooks with no-op defaults let a matcher resample randomness each iteration
(``start_iteration``), learn its own geometry on real features (``update_geometry``) or read the class counts
of a long-tailed training set (``set_class_counts``).
"""
from __future__ import annotations

import abc

import torch
from torch import nn


class Matcher(nn.Module, abc.ABC):
    """Base class: subclasses implement ``forward(real, syn, cls)``."""

    #: a short name written into run records
    name: str = "matcher"

    def start_iteration(self, iteration: int, generator: torch.Generator, feature_dim: int,
                        device: torch.device) -> None:
        """Called once per outer iteration before any ``forward`` (e.g. to resample frequencies)."""

    def update_geometry(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Called once per outer iteration with detached real features and labels, before the image step.

        Matchers with learnable geometry take their own optimiser step here and return scalars to log
        (curvatures, weights). The default learns nothing."""
        return {}

    def set_class_counts(self, counts: list[int]) -> None:
        """Receives the per-class counts of the training set (used by class-aware matchers)."""

    @abc.abstractmethod
    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        """The scalar loss between one class's real and synthetic features."""
