"""The factor spaces of GeoDM's product E^dE x H^dH x S^dS: one small object per factor.

Each factor maps raw head outputs ``z`` to points (``lift``), measures their constraint violation (``residual``),
and gives the log map at its origin (``log0``), squared geodesic distances (``sqdist`` on broadcast pairs,
``pairwise_sqdist`` as an ``[n, m]`` matrix through one matmul) and weighted centroids (``centroid``). Every method
takes the factor's *size* ``r``: ``None`` for E, ``k = 1 / |c_H|`` for H (the hyperboloid ``<x, x>_L = -k``,
geoopt's ``Lorentz(k)``) and ``R = |c_S|^(-1/2)`` for S (the sphere ``|x| = R``); ``size(c)`` converts a
curvature. Sizes may be tensors in the autograd graph, so GeoDM learns its curvatures through these methods.
The hyperbolic and spherical maths run in float64 (``lift`` and ``residual`` cast their input).

geoopt supplies the Lorentz maths (``project``, ``inner``, ``dist``, ``arcosh``) and the centroid is geodd's one
``lorentz_centroid``. Hand-written where geoopt lacks an operation or is inaccurate, each saying why:
the Lorentz log map at the origin, everything spherical (geoopt's ``Sphere`` is unit-radius only and clamps
``acos`` at ``1 - 1e-7``), and the weighted product cost (geoopt's ``ProductManifold`` has no factor weights).
GeoDM's curvatures are not geoopt parameters: ``Lorentz(k, learnable=True)`` and ``Stereographic(k,
learnable=True)`` store the curvature unconstrained, so an optimiser step can flip its sign (NaN for Lorentz, a
silent change of geometry for Stereographic); ``GeoDMMatcher`` keeps a softplus parametrisation with the floor
``C_FLOOR`` instead (``docs/methods/geodm.md`` "Reconstruction: our choice").

Shown in notebook 04 (04_geodm_product_space).
"""
from __future__ import annotations

import ot
import torch
from geoopt.manifolds.lorentz import math as lmath

from .. import GeoddError
from .constants import CHORD_EPS, NORM_EPS
from .lorentz import lorentz_centroid

#: GeoDM's factor names in their canonical order: Euclidean, hyperbolic, spherical
FACTORS = ("E", "H", "S")
#: dtype of the hyperbolic and spherical maths
CURVED_DTYPE = torch.float64


class EuclideanFactor:
    """E^d: points are the head outputs themselves; size ``None``. Shown in notebook 04
    (04_geodm_product_space)."""

    name = "E"
    curved = False

    def ambient_dim(self, dim: int) -> int:
        """Head outputs per point for intrinsic dimension ``dim``."""
        return dim

    def size(self, c: torch.Tensor) -> None:
        return None

    def lift(self, z: torch.Tensor, r: None = None) -> torch.Tensor:
        return z

    def residual(self, z: torch.Tensor, r: None = None) -> torch.Tensor:
        """Zero: every vector is a point of E."""
        return torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)

    def log0(self, x: torch.Tensor, r: None = None) -> torch.Tensor:
        return x

    def sqdist(self, x: torch.Tensor, y: torch.Tensor, r: None = None) -> torch.Tensor:
        return (x - y).pow(2).sum(-1)

    def pairwise_sqdist(self, x: torch.Tensor, y: torch.Tensor, r: None = None) -> torch.Tensor:
        """``[n, m]`` squared distances by POT's ``ot.dist`` (one matmul)."""
        return ot.dist(x, y, metric="sqeuclidean")

    def centroid(self, x: torch.Tensor, weights: torch.Tensor, r: None = None) -> torch.Tensor:
        """Weighted means ``weights [C, N] @ x [N, d]`` (rows of ``weights`` sum to 1)."""
        return weights.to(x.dtype) @ x


class LorentzFactor:
    """H^d in the Lorentz model on geoopt: ``<x, x>_L = -k`` with ``k = 1 / |c|``, points ``[.., d + 1]``.
    Shown in notebook 04 (04_geodm_product_space)."""

    name = "H"
    curved = True

    def ambient_dim(self, dim: int) -> int:
        return dim + 1

    def size(self, c: torch.Tensor) -> torch.Tensor:
        """``k = 1 / |c|``."""
        return 1.0 / c.abs()

    def lift(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """geoopt's ``project``: ``(sqrt(k + |z_s|^2), z_s)``, the point above the spatial part (float64)."""
        return lmath.project(z.to(CURVED_DTYPE), k=k)

    def residual(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Per-point relative violation ``|<z, z>_L + k| / k`` of the raw head output (float64)."""
        z = z.to(CURVED_DTYPE)
        return (lmath.inner(z, z) + k).abs() / k

    def log0(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Spatial part of the log map at the origin, ``sqrt(k) asinh(|x_s| / sqrt(k)) x_s / |x_s|``, in intrinsic
        coordinates ``[.., d]``. Hand-written: geoopt's ``logmap0`` goes through ``arcosh(x0 / sqrt(k))`` with a
        1e-15 floor and clamps the Minkowski norm at 1e-8, which loses the digits of points near the origin."""
        xs = x[..., 1:]
        n = xs.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
        sk = k.sqrt()
        return sk * torch.asinh(n / sk) * xs / n

    def sqdist(self, x: torch.Tensor, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """geoopt's ``dist(x, y) = sqrt(k) arcosh(-<x, y>_L / k)``, squared; broadcasts over leading dims."""
        return lmath.dist(x, y, k=k).pow(2)

    def pairwise_sqdist(self, x: torch.Tensor, y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``[n, m]`` squared distances with ``-<x, y>_L / k`` from one matmul and geoopt's ``arcosh`` (the same
        values as ``sqdist`` on broadcast pairs, an order of magnitude cheaper on CPU)."""
        sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        sign[0] = -1.0
        t = -(x @ (y * sign).T) / k
        return (k.sqrt() * lmath.arcosh(t.clamp_min(1.0))).pow(2)

    def centroid(self, x: torch.Tensor, weights: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """geodd's one closed-form Lorentz centroid (``geometry.lorentz_centroid``) per row of ``weights [C, N]``."""
        return lorentz_centroid(x, k, weights, check=False)


class SphereFactor:
    """S^d of radius ``R = |c|^(-1/2)``, points ``[.., d + 1]`` with ``|x| = R``. Hand-written throughout:
    geoopt's ``Sphere`` is unit-radius, its ``projx`` has no floor under ``|x|`` and its ``dist``/``logmap`` clamp
    ``acos`` at ``1 - 1e-7`` (float64), which floors distances at 4.5e-4 rad and zeroes their gradient there.
    Shown in notebook 04 (04_geodm_product_space)."""

    name = "S"
    curved = True

    def ambient_dim(self, dim: int) -> int:
        return dim + 1

    def size(self, c: torch.Tensor) -> torch.Tensor:
        """``R = |c|^(-1/2)``."""
        return c.abs().rsqrt()

    def lift(self, z: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``R z / |z|`` (float64)."""
        z = z.to(CURVED_DTYPE)
        return R * z / z.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)

    def residual(self, z: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """Per-point relative violation ``||z|^2 - R^2| / R^2`` of the raw head output (float64)."""
        z = z.to(CURVED_DTYPE)
        return (z.pow(2).sum(-1) - R * R).abs() / (R * R)

    def log0(self, x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """Log map at the pole ``(R, 0, ..., 0)``: ``R atan2(|x_s|, x_0) x_s / |x_s|``, intrinsic ``[.., d]``."""
        xs = x[..., 1:]
        n = xs.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
        return R * torch.atan2(n, x[..., :1]) * xs / n

    def sqdist(self, x: torch.Tensor, y: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``(R * 2 atan2(|u - v|, |u + v|))^2`` with ``u = x / R``, ``v = y / R``: accurate at every angle."""
        u, v = x / R, y / R
        theta = 2.0 * torch.atan2((u - v).norm(dim=-1), (u + v).norm(dim=-1))
        return (R * theta).pow(2)

    def pairwise_sqdist(self, x: torch.Tensor, y: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``[n, m]`` squared distances through one matmul: ``|u -/+ v|^2 = 2 -/+ 2 <u, v>``, chords floored at
        ``CHORD_EPS`` before their square roots."""
        cos = (x @ y.T) / (R * R)
        theta = 2.0 * torch.atan2((2.0 - 2.0 * cos).clamp_min(CHORD_EPS).sqrt(),
                                  (2.0 + 2.0 * cos).clamp_min(CHORD_EPS).sqrt())
        return (R * theta).pow(2)

    def centroid(self, x: torch.Tensor, weights: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """The extrinsic mean ``R s / |s|``, ``s = weights @ x``, per row of ``weights [C, N]``."""
        s = weights.to(x.dtype) @ x
        return R * s / s.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)


#: the factor object of each name
FACTOR_SPACES: dict[str, EuclideanFactor | LorentzFactor | SphereFactor] = {
    "E": EuclideanFactor(), "H": LorentzFactor(), "S": SphereFactor()}


def factor_space(name: str) -> EuclideanFactor | LorentzFactor | SphereFactor:
    """The factor object for ``name`` ("E", "H" or "S"). Shown in notebook 04 (04_geodm_product_space)."""
    if name not in FACTOR_SPACES:
        raise GeoddError(f"unknown factor {name!r}; choose one of {', '.join(FACTORS)}")
    return FACTOR_SPACES[name]


__all__ = ["FACTORS", "CURVED_DTYPE", "EuclideanFactor", "LorentzFactor", "SphereFactor", "FACTOR_SPACES",
           "factor_space"]
