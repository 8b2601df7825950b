"""The Lorentz (hyperboloid) model on geoopt: lifts, the one closed-form centroid, distances, Poincare maps, and the
probe of HDD's hierarchical-weighting claim.

Conventions (geoopt's ``Lorentz(k)``): Lorentz points are ``[..., D+1]`` with the time coordinate first,
``<x, y>_L = -x0 y0 + <x_s, y_s>`` and ``<x, x>_L = -k`` (sectional curvature ``K = -1/k``, so
``sqrt|K| d = d / sqrt(k)``). The maths runs in float64 (cast in, result cast back to the input dtype), as
geoopt's docstring recommends for the Lorentz model. Every clamp is a named constant of
``geodd.geometry.constants``. geoopt supplies the manifold maps (``expmap0``, ``projx``, ``expmap``, ``logmap``,
the Minkowski product); where a function here is hand-written instead, its docstring says why in one line.

The method is documented in ``docs/methods/hdd.md`` ("Equations", "Reconstruction: our choice"); the paper is
"Hyperbolic Dataset Distillation" (Li et al., NeurIPS 2025), sections on the Lorentz centroid and its
hierarchical weighting. Shown in notebook 02 (02_hdd_pruning); the Poincare maps also in notebook 01
(01_manifold_embeddings).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Literal, NamedTuple, get_args

import geoopt
import torch
import torch.nn.functional as F
from geoopt.manifolds.lorentz import math as lmath

from .. import GeoddError
from .constants import (CENTROID_EPS, LORENTZ_DIST_EPS, NORM_EPS, POINCARE_BOUNDARY_EPS, RELEASE_EXP_MAX_THETA,
                        SAFE_EXP_MAX_THETA, SERIES_EPS)

#: lifts of Euclidean features onto the hyperboloid (``lift``)
LiftMode = Literal["exp", "projx"]
LIFT_MODES: tuple[str, ...] = get_args(LiftMode)
#: handling of large norms in the exp lift (``lift``)
EXP_CLAMPS = ("safe", "release")


def _check_k(k: float) -> float:
    k = float(k)
    if not math.isfinite(k) or k <= 0:
        raise GeoddError(f"k must be a positive float (the hyperboloid is <x,x>_L = -k), got {k}")
    return k


def _sqrt_k(k: float | torch.Tensor) -> float | torch.Tensor:
    """sqrt(k) of a checked float, or of a float64 tensor (a learnt curvature: kept in the graph, unchecked)."""
    if isinstance(k, torch.Tensor):
        return k.to(torch.float64).sqrt()
    return math.sqrt(_check_k(k))


@functools.lru_cache(maxsize=64)
def lorentz(k: float = 1.0) -> geoopt.Lorentz:
    """geoopt's ``Lorentz(k)`` with ``k`` stored in float64 (cached per ``k``). Shown in notebook 02
    (02_hdd_pruning)."""
    return geoopt.Lorentz(k=torch.tensor(_check_k(k), dtype=torch.float64))


def _f64(x: torch.Tensor) -> torch.Tensor:
    if not torch.is_floating_point(x):
        raise GeoddError(f"expected a floating-point tensor, got {x.dtype}")
    return x.to(torch.float64)


def lorentz_inner(x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Minkowski inner product ``-x0 y0 + <x_s, y_s>`` over the last axis (geoopt). Shown in notebook 02
    (02_hdd_pruning), inside the centroid and distance."""
    return lmath.inner(x, y, keepdim=keepdim, dim=-1)


def lorentz_origin(dim: int, k: float = 1.0, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The hyperboloid origin ``(sqrt(k), 0, ..., 0)`` with ``dim`` spatial coordinates. Shown in notebook 02
    (02_hdd_pruning), as the root that radii are measured from."""
    o = torch.zeros(dim + 1, dtype=dtype, device=device)
    o[0] = math.sqrt(_check_k(k))
    return o


def lift(features: torch.Tensor, k: float = 1.0, mode: str = "exp", *, clamp: str = "safe") -> torch.Tensor:
    """Lift Euclidean features ``[N, D]`` onto the hyperboloid ``[N, D+1]`` (``docs/methods/hdd.md`` "Equations").

    ``mode="exp"``: geoopt's ``expmap0`` of the zero-time tangent vector ``u = (0, v)``, then ``projx``:
    ``x = (sqrt(k) cosh(theta), sqrt(k) sinh(theta) v/|v|)`` with ``theta = |v| / sqrt(k)`` (so ``d(0, x) = |v|``).
    ``clamp="release"`` reproduces the geoopt 0.5.0 copy vendored in the HDD release, which clamps ``theta`` at
    ``RELEASE_EXP_MAX_THETA = 10``: every feature with ``|v| > 10 sqrt(k)`` lands on the sphere of radius
    ``10 sqrt(k)``, only its direction survives and the gradient through its norm is exactly zero (ConvNet
    features have ``|v| ~ 23``). ``clamp="safe"`` (default) only guards float64 at ``SAFE_EXP_MAX_THETA`` and
    warns when that guard bites.
    ``mode="projx"``: the release's lift for IDM CIFAR-100 / Tiny (geoopt's ``projx``): ``x = (sqrt(k + |v|^2), v)``,
    i.e. distance ``sqrt(k) asinh(|v| / sqrt(k))`` from the origin; no clamp is needed.
    Shown in notebook 02 (02_hdd_pruning).
    """
    k = _check_k(k)
    if mode not in LIFT_MODES:
        raise GeoddError(f"unknown lift mode {mode!r}; choose one of {', '.join(LIFT_MODES)}")
    if clamp not in EXP_CLAMPS:
        raise GeoddError(f"unknown exp clamp {clamp!r}; choose one of {', '.join(EXP_CLAMPS)}")
    if features.dim() < 1 or features.shape[-1] < 1:
        raise GeoddError(f"features must be [..., D] with D >= 1, got shape {tuple(features.shape)}")
    man = lorentz(k)
    v = _f64(features)
    if mode == "projx":
        out = man.projx(F.pad(v, (1, 0)))
        return out.to(features.dtype)
    max_theta = RELEASE_EXP_MAX_THETA if clamp == "release" else SAFE_EXP_MAX_THETA
    norm = v.pow(2).sum(-1, keepdim=True).clamp_min(NORM_EPS ** 2).sqrt()
    theta = norm / math.sqrt(k)
    if clamp == "safe" and bool((theta > max_theta).any()):
        warnings.warn(f"lift: feature norms above {max_theta:g} sqrt(k) were clamped (float64 guard); rescale "
                      "the features (hdd norm='rescale') to keep radial information", RuntimeWarning, stacklevel=2)
    # scaling u by min(1, max_theta / theta) is exactly geoopt-0.5.0's clamp_max on theta inside expmap0
    u = F.pad(v * (max_theta / theta).clamp_max(1.0), (1, 0))
    out = man.projx(man.expmap0(u, project=False))
    return out.to(features.dtype)


def lorentz_centroid(points: torch.Tensor, k: float | torch.Tensor = 1.0, weights: torch.Tensor | None = None, *,
                     check: bool = True) -> torch.Tensor:
    """The closed-form Lorentzian centroid (Law et al. 2019; the HDD release): ``c = sqrt(k) m / sqrt(|<m, m>_L|)``.

    The one Lorentz centroid of geodd (HDD's loss, pruning, GeoDM's hyperbolic prototypes). Hand-written:
    geoopt has no Lorentz centroid. ``m`` is the (weighted) ambient mean of ``points [..., N, D+1]`` over ``N``;
    ``|<m, m>_L|`` is clamped at ``CENTROID_EPS``. Returns ``[..., D+1]`` on ``<c, c>_L = -k``. It is not the
    Frechet mean (see ``frechet_mean`` and ``centroid_pull``). ``weights`` (non-negative, not all zero) are
    ``[N]``, or ``[C, N]`` for ``C`` centroids of the same points at once (per-class prototypes), and default to
    uniform. ``k`` may be a float64 tensor (a learnt curvature, differentiated through); ``check=False`` skips the
    value checks of the weights (they synchronise with the device). Shown in notebook 02 (02_hdd_pruning).
    """
    sk = _sqrt_k(k)
    if points.dim() < 2 or points.shape[-2] == 0:
        raise GeoddError(f"points must be [..., N, D+1] with N >= 1, got shape {tuple(points.shape)}")
    x = _f64(points)
    if weights is None:
        m = x.mean(-2)
    else:
        w = _f64(weights)
        if w.dim() < 1 or w.shape[-1] != x.shape[-2]:
            raise GeoddError(f"weights must be [..., {x.shape[-2]}], one per point, got {tuple(w.shape)}")
        if check and (bool((w < 0).any()) or bool((w.sum(-1) <= 0).any())):
            raise GeoddError("weights must be non-negative, one per point, and not all zero")
        m = torch.matmul(w.unsqueeze(-2), x).squeeze(-2) / w.sum(-1, keepdim=True)
    denom = (-lorentz_inner(m, m, keepdim=True)).abs().clamp_min(CENTROID_EPS).sqrt()
    return (sk * m / denom).to(points.dtype)


def _arcosh1p(u: torch.Tensor) -> torch.Tensor:
    """``arcosh(1 + u)`` for ``u >= 0`` without the cancellation of ``acosh`` near 1."""
    return torch.log1p(u + torch.sqrt(u * (u + 2.0)))


def lorentz_distance(x: torch.Tensor, y: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Geodesic distance ``sqrt(k) arcosh(-<x, y>_L / k)`` on ``<x, x>_L = -k``, broadcast over ``[..., D+1]``.

    Hand-written because geoopt's ``dist`` floors ``z^2 - 1`` at 1e-15 inside its arcosh, so ``d(x, x)`` is
    ``~3e-8 sqrt(k)``, not 0, and close points lose digits to cancellation. Stable form:
    ``z - 1 = -<x, y>_L / k - 1 = <x - y, x - y>_L / (2k)`` (exact on the hyperboloid); the arcosh argument is
    clamped at ``1 + LORENTZ_DIST_EPS`` and below it the distance continues linearly in ``z - 1``, so
    ``d(x, x) = 0`` and the gradient is bounded (the non-squared distance is not differentiable where the points
    coincide; there its gradient is 0). Shown in notebook 02 (02_hdd_pruning) and notebook 01
    (01_manifold_embeddings).
    """
    k = _check_k(k)
    a, b = _f64(x), _f64(y)
    diff = a - b
    u = (lorentz_inner(diff, diff) / (2.0 * k)).clamp_min(0.0)
    u_c = u.clamp_min(LORENTZ_DIST_EPS)
    d = math.sqrt(k) * _arcosh1p(u_c) * (u / LORENTZ_DIST_EPS).clamp_max(1.0)
    return d.to(torch.promote_types(x.dtype, y.dtype))


def lorentz_dist0(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Distance from the origin: ``sqrt(k) arcosh(x0 / sqrt(k))`` (via ``lorentz_distance``, for the reason given
    there). Shown in notebook 02 (02_hdd_pruning) and notebook 01 (01_manifold_embeddings)."""
    o = lorentz_origin(points.shape[-1] - 1, k, dtype=torch.float64, device=points.device)
    return lorentz_distance(points, o, k).to(points.dtype)


def _t_coth_t(t: torch.Tensor) -> torch.Tensor:
    """``t / tanh(t)`` with its limit 1 below ``SERIES_EPS``."""
    return torch.where(t < SERIES_EPS, torch.ones_like(t), t / torch.tanh(t.clamp_min(SERIES_EPS)))


def frechet_mean(points: torch.Tensor, k: float = 1.0, weights: torch.Tensor | None = None, *,
                 iterations: int = 500, tol: float = 1e-9) -> torch.Tensor:
    """Karcher (Frechet) mean ``argmin_c sum_i w_i d^2(c, x_i)`` of ``points [N, D+1]`` by Riemannian gradient
    descent on geoopt's Lorentz maps (geoopt has no Frechet mean), started at the closed-form centroid:
    ``c <- exp_c(g / h)``, ``g = sum_i w_i log_c(x_i)``, ``h = sum_i w_i t_i coth(t_i)`` with ``t_i = d_i / sqrt(k)``.
    ``h`` bounds the Hessian of ``sum_i w_i d_i^2 / 2`` (eigenvalues in [1, t coth t]), so the step never
    overshoots (a plain step ``exp_c(g)`` diverges for spread-out points). Unique on a Hadamard manifold; used to
    compare with ``lorentz_centroid``. Shown in notebook 02 (02_hdd_pruning), through ``centroid_pull``."""
    k = _check_k(k)
    man = lorentz(k)
    x = _f64(points)
    w = torch.ones(x.shape[-2], dtype=torch.float64, device=x.device) if weights is None else _f64(weights)
    w = w / w.sum()
    c = lorentz_centroid(x, k, w)
    for _ in range(iterations):
        grad = (w.unsqueeze(-1) * man.logmap(c.unsqueeze(0), x)).sum(0)
        t = lorentz_distance(c.unsqueeze(0), x, k) / math.sqrt(k)
        h = (w * _t_coth_t(t)).sum()
        c = man.projx(man.expmap(c, grad / h, project=False))
        if float(torch.sqrt(lorentz_inner(grad, grad).clamp_min(0.0))) < tol:
            break
    return c.to(points.dtype)


def lorentz_to_poincare(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Hyperboloid ``[..., D+1]`` -> unit Poincare ball ``[..., D]``: ``p = x_s / (x0 + sqrt(k))``
    (``|p| = tanh(d / (2 sqrt(k)))``, so the ball has radius 1 for every ``k``). For plots. Hand-written because
    geoopt's ``lorentz_to_poincare`` takes the time coordinate along axis ``-dim`` (axis 1), wrong unless the
    input is 2-D. Shown in notebook 01 (01_manifold_embeddings) and notebook 02 (02_hdd_pruning)."""
    k = _check_k(k)
    x = _f64(points)
    return (x[..., 1:] / (x[..., :1] + math.sqrt(k))).to(points.dtype)


def poincare_to_lorentz(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Unit Poincare ball -> hyperboloid: ``x = sqrt(k) (1 + |p|^2, 2p) / (1 - |p|^2)``, the inverse of
    ``lorentz_to_poincare``. Hand-written because geoopt's version adds an eps to the denominator, which leaves
    the result off the hyperboloid; here norms are clamped at ``1 - POINCARE_BOUNDARY_EPS`` instead. Shown in
    notebook 02 (02_hdd_pruning), through the Poincare-disk view."""
    k = _check_k(k)
    p = _f64(points)
    n = p.norm(dim=-1, keepdim=True)
    p = p * ((1.0 - POINCARE_BOUNDARY_EPS) / n.clamp_min(NORM_EPS)).clamp_max(1.0)
    sq = p.pow(2).sum(-1, keepdim=True)
    out = math.sqrt(k) * torch.cat((1.0 + sq, 2.0 * p), -1) / (1.0 - sq)
    return out.to(points.dtype)


# --------------------------------------------------------------------------------------------------
# Hierarchical weighting: what the closed-form centroid does with samples at different radii
# --------------------------------------------------------------------------------------------------

def claimed_weight(d: torch.Tensor | float, k: float = 1.0) -> torch.Tensor:
    """The paper's claimed effective weight ``w(d) = sqrt|K| d / sinh(sqrt|K| d)`` (K = -1/k), ``w(0) = 1``
    ("Hyperbolic Dataset Distillation", the section on hierarchical weighting; ``docs/methods/hdd.md``
    "Equations"). Shown in notebook 02 (02_hdd_pruning)."""
    t = torch.as_tensor(d, dtype=torch.float64) / math.sqrt(_check_k(k))
    small = t.abs() < SERIES_EPS
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, torch.ones_like(t), safe / torch.sinh(safe))


class CentroidPull(NamedTuple):
    """The result of ``centroid_pull``, one entry per probe radius. Shown in notebook 02 (02_hdd_pruning)."""

    radius: torch.Tensor            # probe distance d from the origin
    pull: torch.Tensor              # signed distance of the closed-form centroid from the origin toward the probe
    frechet_pull: torch.Tensor      # the same for the Karcher (Frechet) mean
    tangent_pull: torch.Tensor      # uniform tangent-space mean at the origin: d / (n + 1)
    claimed_pull: torch.Tensor      # tangent mean with the claimed weights w(d) (anchors weighted w(r0))
    effective_weight: torch.Tensor  # omega: the probe weight (anchors weight 1) that reproduces ``pull``
    claimed_weight: torch.Tensor    # w(d) / w(r0), the claim in the same normalisation


def centroid_pull(radii: torch.Tensor | list[float], k: float = 1.0, *, num_anchors: int = 2,
                  anchor_radius: float = 0.0) -> CentroidPull:
    """Probe the hierarchical-weighting claim of HDD on the implemented closed-form centroid
    (``docs/methods/hdd.md`` "Equations").

    Configuration (2 spatial dims, float64): ``num_anchors`` anchors at the origin (``anchor_radius = 0``) or in
    ``+-e2`` pairs at distance ``r0 = anchor_radius`` (their centroid is the origin), plus one probe at distance
    ``d`` along ``e1``. The centroid moves toward the probe by ``pull``. A tangent-space weighted mean
    ``log0(c) = sum_i omega_i v_i / sum_i omega_i`` with anchor weights 1 reproduces it when the probe weight is
    ``omega(d) = n p / (d - p)``. Euclidean/tangent averaging gives ``omega = 1``; the claim gives
    ``omega = w(d) / w(r0)``, decreasing in ``d``. The ambient mean weights each sample's spatial part by
    ``sinh`` of its radius, so the closed form's ``omega`` grows with ``d`` instead (with anchors at the origin,
    ``omega -> n`` and ``pull -> (d - ln n) / 2``). Radii must be positive. Shown in notebook 02 (02_hdd_pruning).
    """
    k = _check_k(k)
    if num_anchors < 1:
        raise GeoddError("num_anchors must be >= 1")
    if anchor_radius < 0 or (anchor_radius > 0 and num_anchors % 2):
        raise GeoddError("anchor_radius must be >= 0, and num_anchors even when anchor_radius > 0")
    d = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
    if bool((d <= 0).any()):
        raise GeoddError("radii must be positive")
    n = num_anchors
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    if anchor_radius == 0:
        anchor_v = torch.zeros(n, 2, dtype=torch.float64)
    else:
        signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
        anchor_v = signs[:, None] * anchor_radius * e2
    pulls, fpulls = [], []
    for di in d:
        v = torch.cat((anchor_v, (di * e1)[None]), 0)
        pts = lift(v, k, "exp")
        for fn, acc in ((lorentz_centroid, pulls), (frechet_mean, fpulls)):
            c = fn(pts, k)
            acc.append(lorentz_dist0(c, k) * torch.sign(c[1]))
    pull, fpull = torch.stack(pulls), torch.stack(fpulls)
    w_rel = claimed_weight(d, k) / claimed_weight(anchor_radius, k)
    return CentroidPull(radius=d, pull=pull, frechet_pull=fpull, tangent_pull=d / (n + 1),
                        claimed_pull=w_rel * d / (n + w_rel), effective_weight=n * pull / (d - pull),
                        claimed_weight=w_rel)


__all__ = [
    "LiftMode", "LIFT_MODES", "EXP_CLAMPS", "lorentz", "lorentz_inner", "lorentz_origin", "lift", "lorentz_centroid",
    "lorentz_distance", "lorentz_dist0", "frechet_mean", "lorentz_to_poincare", "poincare_to_lorentz",
    "claimed_weight", "CentroidPull", "centroid_pull",
]
