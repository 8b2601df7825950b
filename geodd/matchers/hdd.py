"""HDD: hyperbolic dataset distillation ("Hyperbolic Dataset Distillation", Li et al., NeurIPS 2025;
``docs/methods/hdd.md`` "Equations", "Settings", "Reconstruction: our choice").

Per class: lift real and synthetic features onto the Lorentz hyperboloid ``<x, x>_L = -k``, take the closed-form
Lorentzian centroids and return ``lam * d_L(c_real, c_syn)`` (lam = the paper's lambda; the plain, non-squared
geodesic distance). In the release this *replaces* DM's mean matching (``mode="replace"``); ``mode="add"`` gives
``dm + lam * d_L``.

Feature norms. A random ConvNet's features have ``|v| ~ 23``; the geoopt copy in the release clamps
``|v| / sqrt(k)`` at 10 inside ``expmap0``, so every sample lands at one radius and only its direction survives
(``norm="release"`` reproduces this). The default ``norm="rescale"`` multiplies real and synthetic features by
one factor, set from the real features' mean norm (detached), so that this mean norm lifts to the hyperbolic
radius ``target_radius * sqrt(k)``; radial differences then survive. Reconstruction: our choice.

Shown in notebook 02 (02_hdd_pruning).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from .. import GeoddError
from ..geometry.constants import NORM_EPS
from ..geometry.lorentz import LIFT_MODES, LiftMode, lift as lift_points, lorentz_centroid, lorentz_distance
from ..options import require
from .base import Matcher, resolve_options
from .dm import dm_loss

#: feature-norm handling: rescale (default, ours), fixed (multiply by ``feature_scale``), release (as given,
#: with the release's expmap0 clamp at 10 for the exp lift)
NormMode = Literal["rescale", "fixed", "release"]
NORM_MODES: tuple[str, ...] = get_args(NormMode)
#: replace DM's mean matching (the release), or add to it
Mode = Literal["replace", "add"]
MODES: tuple[str, ...] = get_args(Mode)
#: default hyperbolic radius (in units of sqrt(k), i.e. sqrt|K| d) of the real features' mean norm under
#: ``norm="rescale"``: well inside the float64-resolvable range (< 10) and curved enough that w(d) varies.
DEFAULT_TARGET_RADIUS = 2.0
#: the release's lambda for DM-HDD (k = 1)
DEFAULT_LAM = 20.0

#: settings of the released scripts (``docs/methods/hdd.md`` "Settings"), for fidelity runs: k, lam, lift
RELEASE_SETTINGS: dict[str, dict] = {
    "dm": dict(k=1.0, lam=20.0, lift="exp", norm="release"),
    "idm-cifar10": dict(k=2.4, lam=100.0, lift="exp", norm="release"),
    "idm-cifar100": dict(k=2.0, lam=100.0, lift="projx", norm="release"),
    "idm-tiny": dict(k=0.5, lam=500.0, lift="projx", norm="release"),
}


@dataclass
class HDDOptions:
    """Options of ``HDDMatcher`` (``docs/methods/hdd.md`` "Settings"). Shown in notebook 02 (02_hdd_pruning)."""

    k: float = 1.0                                           # hyperboloid <x, x>_L = -k (curvature -1/k)
    lam: float = DEFAULT_LAM                                 # the paper's lambda: weight of the centroid distance
    lift: LiftMode = "exp"                                   # lift of features onto the hyperboloid
    norm: NormMode = "rescale"                               # feature-norm handling before the lift
    target_radius: float = DEFAULT_TARGET_RADIUS             # "rescale": mean real norm lifts to this radius/sqrt(k)
    feature_scale: float = 1.0                               # "fixed": the factor features are multiplied by
    mode: Mode = "replace"                                   # replace DM's mean matching, or add to it

    def check(self) -> None:
        require(self.k > 0, f"k must be positive (the hyperboloid is <x,x>_L = -k), got {self.k}")
        require(self.lam > 0, f"lam must be positive (a negative lambda turns matching into gradient ascent), "
                              f"got {self.lam}")
        require(self.target_radius > 0, f"target_radius must be positive, got {self.target_radius}")
        require(self.feature_scale > 0, f"feature_scale must be positive, got {self.feature_scale}")


def _check(lift: str, norm: str) -> None:
    if lift not in LIFT_MODES:
        raise GeoddError(f"unknown lift {lift!r}; choose one of {', '.join(LIFT_MODES)}")
    if norm not in NORM_MODES:
        raise GeoddError(f"unknown norm handling {norm!r}; choose one of {', '.join(NORM_MODES)}")


def feature_factor(reference: torch.Tensor, k: float = 1.0, *, lift: str = "exp", norm: str = "rescale",
                   target_radius: float = DEFAULT_TARGET_RADIUS, feature_scale: float = 1.0) -> torch.Tensor:
    """The scalar that multiplies features before the lift (a 0-d float64 tensor, no gradient).

    ``rescale``: ``s = g(target_radius) / mean_i |v_i|`` over ``reference [N, D]`` (detached), where ``g`` maps
    the target radius to a Euclidean norm: ``sqrt(k) * target_radius`` for the exp lift and
    ``sqrt(k) * sinh(target_radius)`` for the projx lift. ``fixed``: ``feature_scale``. ``release``: 1.
    Reconstruction: our choice. Shown in notebook 02 (02_hdd_pruning).
    """
    _check(lift, norm)
    if norm == "release":
        return torch.ones((), dtype=torch.float64, device=reference.device)
    if norm == "fixed":
        return torch.tensor(float(feature_scale), dtype=torch.float64, device=reference.device)
    if target_radius <= 0:
        raise GeoddError(f"target_radius must be positive, got {target_radius}")
    goal = math.sqrt(k) * (target_radius if lift == "exp" else math.sinh(target_radius))
    mean_norm = reference.detach().to(torch.float64).norm(dim=-1).mean()
    return goal / mean_norm.clamp_min(NORM_EPS)


def lift_features(features: torch.Tensor, k: float = 1.0, *, lift: str = "exp", norm: str = "rescale",
                  factor: torch.Tensor | None = None, target_radius: float = DEFAULT_TARGET_RADIUS,
                  feature_scale: float = 1.0) -> torch.Tensor:
    """``geometry.lift(factor * features)`` in float64 with HDD's norm handling (``factor`` from
    ``feature_factor`` of ``features`` unless given). ``norm="release"`` uses the release's expmap0 clamp.
    Shown in notebook 02 (02_hdd_pruning)."""
    _check(lift, norm)
    if factor is None:
        factor = feature_factor(features, k, lift=lift, norm=norm, target_radius=target_radius,
                                feature_scale=feature_scale)
    v = features.to(torch.float64) * factor
    return lift_points(v, k, lift, clamp="release" if norm == "release" else "safe")


def hdd_loss(real: torch.Tensor, syn: torch.Tensor, k: float = 1.0, lam: float = DEFAULT_LAM, *,
             lift: str = "exp", norm: str = "rescale", target_radius: float = DEFAULT_TARGET_RADIUS,
             feature_scale: float = 1.0) -> torch.Tensor:
    """``lam * d_L(centroid(lift(real)), centroid(lift(syn)))`` for one class; ``real [N, D]``, ``syn [M, D]``.

    Computed in float64, returned in the promoted input dtype. One factor (``feature_factor`` of ``real``) scales
    both sets, so the loss is a distance between two pushforwards by the same map. The distance is clamped
    (``geometry.LORENTZ_DIST_EPS``) so its gradient stays finite where the centroids coincide.
    Shown in notebook 02 (02_hdd_pruning).
    """
    if real.dim() != 2 or syn.dim() != 2 or real.shape[1] != syn.shape[1] or not len(real) or not len(syn):
        raise GeoddError(f"hdd_loss needs real [N, D] and syn [M, D] with N, M >= 1, got {tuple(real.shape)} "
                         f"and {tuple(syn.shape)}")
    factor = feature_factor(real, k, lift=lift, norm=norm, target_radius=target_radius,
                            feature_scale=feature_scale)
    opts = dict(lift=lift, norm=norm, factor=factor)
    c_real = lorentz_centroid(lift_features(real, k, **opts), k)
    c_syn = lorentz_centroid(lift_features(syn, k, **opts), k)
    return (lam * lorentz_distance(c_real, c_syn, k)).to(torch.promote_types(real.dtype, syn.dtype))


class HDDMatcher(Matcher):
    """HDD matcher: ``hdd_loss`` per class (``mode="replace"``, the release) or ``dm_loss + lam * d_L``
    (``mode="add"``). ``HDDMatcher(**RELEASE_SETTINGS["dm"])`` reproduces the released DM-HDD objective.
    Takes ``HDDOptions`` (or its keys as keyword overrides). Shown in notebook 02 (02_hdd_pruning)."""

    name = "hdd"

    def __init__(self, options: HDDOptions | None = None, **overrides):
        super().__init__()
        self.options = resolve_options(HDDOptions, options, overrides, "hdd")

    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        o = self.options
        loss = hdd_loss(real, syn, o.k, o.lam, lift=o.lift, norm=o.norm, target_radius=o.target_radius,
                        feature_scale=o.feature_scale)
        if o.mode == "add":
            return dm_loss(real, syn) + loss
        return loss

    def extra_repr(self) -> str:
        o = self.options
        return (f"k={o.k}, lam={o.lam}, lift={o.lift}, norm={o.norm}, target_radius={o.target_radius}, "
                f"mode={o.mode}")


__all__ = ["NORM_MODES", "MODES", "DEFAULT_TARGET_RADIUS", "DEFAULT_LAM", "RELEASE_SETTINGS", "HDDOptions",
           "feature_factor", "lift_features", "hdd_loss", "HDDMatcher"]
