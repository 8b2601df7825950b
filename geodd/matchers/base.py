"""The matcher contract shared by every objective.

A matcher is an ``nn.Module`` whose ``forward(real [N, D], syn [M, D], cls)`` returns a scalar loss for one
class. The engine (``geodd.distill``) embeds all classes in one network call, slices the features per class
and sums the per-class losses. Hooks with no-op defaults let a matcher resample its randomness and learn its own
geometry once per sampled network (``start_iteration``, ``update_geometry``) or read the class counts of a
long-tailed training set (``set_class_counts``). Each matcher takes a typed options dataclass (``options``), built
and checked by ``geodd.options.from_mapping``. The methods are documented in ``docs/methods/`` (``dm.md``,
``hdd.md``, ``sdd_csdm.md``, ``geodm.md``); the schedule of the hooks in ``docs/methods/dm.md`` "inner_steps".
"""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from .. import GeoddError, options as _options

T = TypeVar("T")


def resolve_options(cls: type[T], options: T | Mapping[str, Any] | None, overrides: Mapping[str, Any],
                    what: str) -> T:
    """A matcher's checked options: ``options`` (an instance of ``cls``, a mapping, or None for the defaults) with
    the keyword ``overrides`` applied on top, through ``geodd.options.from_mapping`` (one-line ``GeoddError`` that
    lists the valid keys). Shown in notebook 00 (00_dm_baseline), through every matcher's constructor."""
    if options is None:
        base: dict[str, Any] = {}
    elif isinstance(options, cls):
        if not overrides:
            return _options.from_mapping(cls, options, what=what)
        base = _options.overrides(options)
    elif isinstance(options, Mapping):
        base = dict(options)
    else:
        raise GeoddError(f"{what} options must be a {cls.__name__} or a mapping, got {type(options).__name__}")
    return _options.from_mapping(cls, {**base, **overrides}, what=what)


class Matcher(nn.Module, abc.ABC):
    """Base class: subclasses implement ``forward(real, syn, cls)`` and keep their options in ``self.options``.

    When the hooks run (per outer step of the engine): with ``inner_steps = m`` the engine samples a network and
    a real batch, calls ``start_iteration`` and then ``update_geometry`` once for that network, and then takes
    ``m`` image steps on it, each calling ``forward`` once per class. With ``m = 1`` (DM's schedule) that is once
    per iteration; with ``m > 1`` one network serves several image steps. Shown in notebook 00 (00_dm_baseline).
    """

    #: a short name written into run records
    name: str = "matcher"
    #: the typed options the matcher was built with (a dataclass of ``geodd.options``)
    options: Any = None

    def start_iteration(self, iteration: int, generator: torch.Generator, feature_dim: int,
                        device: torch.device) -> None:
        """Runs once per SAMPLED NETWORK, before its first ``forward`` (e.g. to resample frequencies).

        With ``inner_steps > 1`` one network, and so one call, serves several image steps; ``iteration`` is the
        image step at which the network was drawn."""

    def update_geometry(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Runs once per SAMPLED NETWORK, right after ``start_iteration``, with the detached real features of all
        classes and their labels, before the network's first image step.

        Matchers with learnable geometry take their own optimiser step here and return scalars to log
        (curvatures, weights); with ``inner_steps > 1`` the geometry then stays fixed for that network's image
        steps. The default learns nothing."""
        return {}

    def set_class_counts(self, counts: list[int]) -> None:
        """Runs once before distillation with the per-class counts of the training set (class-aware matchers)."""

    @abc.abstractmethod
    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        """The scalar loss between one class's real and synthetic features; runs once per class per image step."""
