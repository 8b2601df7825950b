"""Hyperbolic and spherical geometry on geoopt, plus geometry diagnostics for features.

Conventions (geoopt's ``Lorentz(k)``): Lorentz points are ``[..., D+1]`` with the time coordinate first,
``<x, y>_L = -x0 y0 + <x_s, y_s>`` and ``<x, x>_L = -k`` (sectional curvature ``K = -1/k``, so
``sqrt|K| d = d / sqrt(k)``). The hyperbolic maths runs in float64 (cast in, result cast back to the
input dtype), as geoopt's docstring recommends for the Lorentz model. Every clamp is a named constant.

Contents: the HDD lifts and closed-form centroid (HDD, Li et al. NeurIPS 2025; paper notes
``papers/hdd_geodm.md`` section 1), the geodesic distance, Poincare maps for plots, a Karcher (Frechet) mean,
a probe of the centroid's hierarchical weighting (section 1.4), and diagnostics: Gromov delta-hyperbolicity,
sphere / hyperboloid fits and UMAP 3-D embeddings on the three manifolds.
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import geoopt
import torch
import torch.nn.functional as F
from geoopt.manifolds.lorentz import math as lmath

from . import GeoddError

#: geoopt 0.5.0 as vendored in the HDD release clamps ``|u|_L / sqrt(k)`` at this value inside ``expmap0``
#: (``EXP_MAX_NORM``); pip geoopt 0.5.1 has no clamp.
RELEASE_EXP_MAX_THETA = 10.0
#: our float64 guard on ``theta = |u| / sqrt(k)`` for the exp lift: beyond ~15 the ambient coordinates
#: (~cosh(theta)) square to ~1e13 and the Minkowski form -t^2 + |s|^2 loses its last digits to cancellation.
SAFE_EXP_MAX_THETA = 15.0
#: lower bound on tangent/feature norms before dividing by them
NORM_EPS = 1e-12
#: lower bound on ``|<m, m>_L|`` in the closed-form centroid (the HDD release uses the same 1e-8)
CENTROID_EPS = 1e-8
#: ``lorentz_distance`` clamps its arcosh argument at ``1 + LORENTZ_DIST_EPS`` and continues linearly in
#: ``z - 1`` below it, so d(x, x) = 0 and the gradient stays bounded (distances < ~1.4e-6 sqrt(k) are smoothed)
LORENTZ_DIST_EPS = 1e-12
#: Poincare points are kept at norm <= 1 - POINCARE_BOUNDARY_EPS before mapping back to the hyperboloid
POINCARE_BOUNDARY_EPS = 1e-7
#: quadruple sets up to this size get the exact (all quadruples) Gromov delta
EXACT_DELTA_MAX_POINTS = 48

LIFT_MODES = ("exp", "projx")
EXP_CLAMPS = ("safe", "release")


def _check_k(k: float) -> float:
    k = float(k)
    if not math.isfinite(k) or k <= 0:
        raise GeoddError(f"k must be a positive float (the hyperboloid is <x,x>_L = -k), got {k}")
    return k


@functools.lru_cache(maxsize=64)
def lorentz(k: float = 1.0) -> geoopt.Lorentz:
    """geoopt's ``Lorentz(k)`` with ``k`` stored in float64 (cached per ``k``)."""
    return geoopt.Lorentz(k=torch.tensor(_check_k(k), dtype=torch.float64))


def _f64(x: torch.Tensor) -> torch.Tensor:
    if not torch.is_floating_point(x):
        raise GeoddError(f"expected a floating-point tensor, got {x.dtype}")
    return x.to(torch.float64)


def lorentz_inner(x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Minkowski inner product ``-x0 y0 + <x_s, y_s>`` over the last axis (geoopt)."""
    return lmath.inner(x, y, keepdim=keepdim, dim=-1)


def lorentz_origin(dim: int, k: float = 1.0, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The hyperboloid origin ``(sqrt(k), 0, ..., 0)`` with ``dim`` spatial coordinates."""
    o = torch.zeros(dim + 1, dtype=dtype, device=device)
    o[0] = math.sqrt(_check_k(k))
    return o


def lift(features: torch.Tensor, k: float = 1.0, mode: str = "exp", *, clamp: str = "safe") -> torch.Tensor:
    """Lift Euclidean features ``[N, D]`` onto the hyperboloid ``[N, D+1]`` (HDD, section 1.3).

    ``mode="exp"``: ``expmap0`` of the zero-time tangent vector ``u = (0, v)``, then ``projx``:
    ``x = (sqrt(k) cosh(theta), sqrt(k) sinh(theta) v/|v|)`` with ``theta = |v| / sqrt(k)`` (so ``d(0, x) = |v|``).
    ``clamp="release"`` reproduces the geoopt 0.5.0 copy vendored in the HDD release, which clamps ``theta`` at
    ``RELEASE_EXP_MAX_THETA = 10``: every feature with ``|v| > 10 sqrt(k)`` lands on the sphere of radius
    ``10 sqrt(k)``, only its direction survives and the gradient through its norm is exactly zero (ConvNet
    features have ``|v| ~ 23``). ``clamp="safe"`` (default) only guards float64 at ``SAFE_EXP_MAX_THETA`` and
    warns when that guard bites.
    ``mode="projx"``: the release's lift for IDM CIFAR-100 / Tiny: ``x = (sqrt(k + |v|^2), v)``, i.e. distance
    ``sqrt(k) asinh(|v| / sqrt(k))`` from the origin; no clamp is needed.
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


def lorentz_centroid(points: torch.Tensor, k: float = 1.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form Lorentzian centroid (Law et al. 2019; HDD release): ``c = sqrt(k) m / sqrt(|<m, m>_L|)``.

    ``m`` is the (weighted) ambient mean of ``points [..., N, D+1]`` over ``N``; ``|<m, m>_L|`` is clamped
    at ``CENTROID_EPS``. Returns ``[..., D+1]`` on ``<c, c>_L = -k``. It is not the Frechet mean (see
    ``frechet_mean`` and ``centroid_pull``). ``weights [N]`` (non-negative, not all zero) default to uniform.
    """
    k = _check_k(k)
    if points.dim() < 2 or points.shape[-2] == 0:
        raise GeoddError(f"points must be [..., N, D+1] with N >= 1, got shape {tuple(points.shape)}")
    x = _f64(points)
    if weights is None:
        m = x.mean(-2)
    else:
        w = _f64(weights)
        if w.shape[-1] != x.shape[-2] or bool((w < 0).any()) or bool((w.sum(-1) <= 0).any()):
            raise GeoddError("weights must be non-negative, one per point, and not all zero")
        m = (w.unsqueeze(-1) * x).sum(-2) / w.sum(-1, keepdim=True)
    denom = (-lorentz_inner(m, m, keepdim=True)).abs().clamp_min(CENTROID_EPS).sqrt()
    return (math.sqrt(k) * m / denom).to(points.dtype)


def _arcosh1p(u: torch.Tensor) -> torch.Tensor:
    """``arcosh(1 + u)`` for ``u >= 0`` without the cancellation of ``acosh`` near 1."""
    return torch.log1p(u + torch.sqrt(u * (u + 2.0)))


def lorentz_distance(x: torch.Tensor, y: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Geodesic distance ``sqrt(k) arcosh(-<x, y>_L / k)`` on ``<x, x>_L = -k``, broadcast over ``[..., D+1]``.

    Stable form: ``z - 1 = -<x, y>_L / k - 1 = <x - y, x - y>_L / (2k)`` (exact on the hyperboloid, no
    cancellation for close points); the arcosh argument is clamped at ``1 + LORENTZ_DIST_EPS`` and below it the
    distance continues linearly in ``z - 1``, so ``d(x, x) = 0`` and the gradient is bounded (the non-squared
    distance is not differentiable where the points coincide; there its gradient is 0).
    """
    k = _check_k(k)
    a, b = _f64(x), _f64(y)
    diff = a - b
    u = (lorentz_inner(diff, diff) / (2.0 * k)).clamp_min(0.0)
    u_c = u.clamp_min(LORENTZ_DIST_EPS)
    d = math.sqrt(k) * _arcosh1p(u_c) * (u / LORENTZ_DIST_EPS).clamp_max(1.0)
    return d.to(torch.promote_types(x.dtype, y.dtype))


def lorentz_dist0(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Distance from the origin: ``sqrt(k) arcosh(x0 / sqrt(k))`` (via ``lorentz_distance``)."""
    o = lorentz_origin(points.shape[-1] - 1, k, dtype=torch.float64, device=points.device)
    return lorentz_distance(points, o, k).to(points.dtype)


def frechet_mean(points: torch.Tensor, k: float = 1.0, weights: torch.Tensor | None = None, *,
                 iterations: int = 500, tol: float = 1e-9) -> torch.Tensor:
    """Karcher (Frechet) mean ``argmin_c sum_i w_i d^2(c, x_i)`` of ``points [N, D+1]`` by Riemannian gradient
    descent on geoopt's Lorentz maps, started at the closed-form centroid:
    ``c <- exp_c(g / h)``, ``g = sum_i w_i log_c(x_i)``, ``h = sum_i w_i t_i coth(t_i)`` with ``t_i = d_i / sqrt(k)``.
    ``h`` bounds the Hessian of ``sum_i w_i d_i^2 / 2`` (eigenvalues in [1, t coth t]), so the step never
    overshoots (a plain step ``exp_c(g)`` diverges for spread-out points). Unique on a Hadamard manifold; used to
    compare with ``lorentz_centroid``."""
    k = _check_k(k)
    man = lorentz(k)
    x = _f64(points)
    w = torch.ones(x.shape[-2], dtype=torch.float64, device=x.device) if weights is None else _f64(weights)
    w = w / w.sum()
    c = lorentz_centroid(x, k, w)
    for _ in range(iterations):
        grad = (w.unsqueeze(-1) * man.logmap(c.unsqueeze(0), x)).sum(0)
        t = lorentz_distance(c.unsqueeze(0), x, k) / math.sqrt(k)
        h = (w * torch.where(t < 1e-6, torch.ones_like(t), t / torch.tanh(t.clamp_min(1e-6)))).sum()
        c = man.projx(man.expmap(c, grad / h, project=False))
        if float(torch.sqrt(lorentz_inner(grad, grad).clamp_min(0.0))) < tol:
            break
    return c.to(points.dtype)


def lorentz_to_poincare(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Hyperboloid ``[..., D+1]`` -> unit Poincare ball ``[..., D]``: ``p = x_s / (x0 + sqrt(k))`` (geoopt's map;
    ``|p| = tanh(d / (2 sqrt(k)))``, so the ball has radius 1 for every ``k``). For plots."""
    k = _check_k(k)
    x = _f64(points)
    return (x[..., 1:] / (x[..., :1] + math.sqrt(k))).to(points.dtype)


def poincare_to_lorentz(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Unit Poincare ball -> hyperboloid: ``x = sqrt(k) (1 + |p|^2, 2p) / (1 - |p|^2)``, the inverse of
    ``lorentz_to_poincare``. Norms are clamped at ``1 - POINCARE_BOUNDARY_EPS`` (geoopt's version adds an eps
    to the denominator instead, which leaves the result slightly off the hyperboloid)."""
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
    (HDD section 1.4, secondary source [PN-HDD])."""
    t = torch.as_tensor(d, dtype=torch.float64) / math.sqrt(_check_k(k))
    safe = torch.where(t.abs() < 1e-8, torch.ones_like(t), t)
    return torch.where(t.abs() < 1e-8, torch.ones_like(t), safe / torch.sinh(safe))


class CentroidPull(NamedTuple):
    radius: torch.Tensor            # probe distance d from the origin
    pull: torch.Tensor              # signed distance of the closed-form centroid from the origin toward the probe
    frechet_pull: torch.Tensor      # the same for the Karcher (Frechet) mean
    tangent_pull: torch.Tensor      # uniform tangent-space mean at the origin: d / (n + 1)
    claimed_pull: torch.Tensor      # tangent mean with the claimed weights w(d) (anchors weighted w(r0))
    effective_weight: torch.Tensor  # omega: the probe weight (anchors weight 1) that reproduces ``pull``
    claimed_weight: torch.Tensor    # w(d) / w(r0), the claim in the same normalisation


def centroid_pull(radii: torch.Tensor | list[float], k: float = 1.0, *, num_anchors: int = 2,
                  anchor_radius: float = 0.0) -> CentroidPull:
    """Probe the hierarchical-weighting claim of HDD (section 1.4) on the implemented closed-form centroid.

    Configuration (2 spatial dims, float64): ``num_anchors`` anchors at the origin (``anchor_radius = 0``) or in
    ``+-e2`` pairs at distance ``r0 = anchor_radius`` (their centroid is the origin), plus one probe at distance
    ``d`` along ``e1``. The centroid moves toward the probe by ``pull``. A tangent-space weighted mean
    ``log0(c) = sum_i omega_i v_i / sum_i omega_i`` with anchor weights 1 reproduces it when the probe weight is
    ``omega(d) = n p / (d - p)``. Euclidean/tangent averaging gives ``omega = 1``; the claim gives
    ``omega = w(d) / w(r0)``, decreasing in ``d``. The ambient mean weights each sample's spatial part by
    ``sinh`` of its radius, so the closed form's ``omega`` grows with ``d`` instead (with anchors at the origin,
    ``omega -> n`` and ``pull -> (d - ln n) / 2``). Radii must be positive.
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


# --------------------------------------------------------------------------------------------------
# Diagnostics: delta-hyperbolicity, curvature fits, 3-D embeddings
# --------------------------------------------------------------------------------------------------

class DeltaHyperbolicity(NamedTuple):
    relative: float   # delta / diameter (Khrulkov et al. 2020 report 2 * delta / diameter)
    absolute: float   # Gromov delta from the four-point condition
    diameter: float   # largest pairwise distance of the (sub)set
    exact: bool       # all quadruples (True) or a sample of them (a lower bound)
    num_points: int   # points used (after subsampling)


def _four_point(s1: torch.Tensor, s2: torch.Tensor, s3: torch.Tensor) -> torch.Tensor:
    s = torch.stack((s1, s2, s3), -1).sort(-1).values
    return (s[..., 2] - s[..., 1]) / 2.0


def delta_hyperbolicity(features: torch.Tensor, num_samples: int = 50_000,
                        generator: torch.Generator | None = None, *, precomputed: bool = False,
                        max_points: int = 1000, exact_max_points: int = EXACT_DELTA_MAX_POINTS
                        ) -> DeltaHyperbolicity:
    """Gromov delta by the four-point condition: for ``x, y, z, w`` the three sums
    ``d(x,y)+d(z,w)``, ``d(x,z)+d(y,w)``, ``d(x,w)+d(y,z)`` sorted as ``S1 >= S2 >= S3`` give
    ``delta = max (S1 - S2) / 2`` (0 for a tree metric). Returns it with ``relative = delta / diameter``.

    ``features [N, D]`` use Euclidean distances; ``precomputed=True`` takes a distance matrix ``[N, N]`` (e.g.
    tree or geodesic distances). Sets larger than ``max_points`` are first subsampled; up to
    ``exact_max_points`` points every quadruple is checked, otherwise ``num_samples`` random quadruples (a lower
    bound on the subset's delta). ``generator`` (CPU) seeds the subsample and the quadruples.
    """
    x = _f64(features)
    if precomputed:
        if x.dim() != 2 or x.shape[0] != x.shape[1]:
            raise GeoddError(f"a precomputed distance matrix must be [N, N], got {tuple(x.shape)}")
    elif x.dim() != 2:
        raise GeoddError(f"features must be [N, D], got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < 4:
        raise GeoddError(f"delta-hyperbolicity needs at least 4 points, got {n}")
    if n > max_points:
        idx = torch.randperm(n, generator=generator)[:max_points].to(x.device)
        x = x[idx][:, idx] if precomputed else x[idx]
        n = max_points
    dist = x if precomputed else torch.cdist(x, x)
    diameter = float(dist.max())
    if n <= exact_max_points:
        delta, exact = torch.zeros((), dtype=torch.float64, device=dist.device), True
        for i in range(n):
            di = dist[i]
            s1 = di[:, None, None] + dist[None, :, :]           # d(i,j) + d(k,l)
            s2 = di[None, :, None] + dist[:, None, :]           # d(i,k) + d(j,l)
            s3 = di[None, None, :] + dist[:, :, None]           # d(i,l) + d(j,k)
            delta = torch.maximum(delta, _four_point(s1, s2, s3).max())
    else:
        exact = False
        q = torch.randint(0, n, (num_samples, 4), generator=generator).to(dist.device)
        a, b, c, e = q.unbind(1)
        delta = _four_point(dist[a, b] + dist[c, e], dist[a, c] + dist[b, e], dist[a, e] + dist[b, c]).max()
    delta = float(delta)
    rel = delta / diameter if diameter > 0 else 0.0
    return DeltaHyperbolicity(relative=rel, absolute=delta, diameter=diameter, exact=exact, num_points=n)


class QuadricFit(NamedTuple):
    value: float          # sphere radius r, or hyperboloid k (negative: not inside a light cone)
    offset: float         # fitted centre a along the axis (centre = a * axis)
    rel_residual: float   # RMS residual of the linear fit / RMS of its target
    axis: torch.Tensor    # unit axis used (default: direction of the feature mean)


def _axis_fit(features: torch.Tensor, axis: torch.Tensor | None, sign: float) -> tuple[float, float, float,
                                                                                         torch.Tensor]:
    x = _f64(features)
    if x.dim() != 2 or x.shape[0] < 3:
        raise GeoddError(f"features must be [N, D] with N >= 3, got shape {tuple(x.shape)}")
    e0 = x.mean(0) if axis is None else _f64(axis).to(x.device)
    e0 = e0 / e0.norm().clamp_min(NORM_EPS)
    t = x @ e0
    q = (x - t[:, None] * e0).pow(2).sum(1)
    y = t.pow(2) + sign * q
    design = torch.stack((2.0 * t, torch.ones_like(t)), 1)
    sol = torch.linalg.lstsq(design.cpu(), y.cpu()[:, None]).solution[:, 0]
    a, b = float(sol[0]), float(sol[1])
    resid = y.cpu() - design.cpu() @ sol
    rel = float(resid.pow(2).mean().sqrt() / y.pow(2).mean().sqrt().clamp_min(NORM_EPS).cpu())
    return a, b + a * a, rel, e0


def fit_sphere_radius(features: torch.Tensor, axis: torch.Tensor | None = None) -> QuadricFit:
    """Least-squares sphere ``|x - a e|^2 = r^2`` with its centre on an axis ``e`` (default: the mean direction).

    With ``t = <x, e>`` and ``q = |x - t e|^2`` the sphere is ``t^2 + q = 2 a t + (r^2 - a^2)``: a linear
    (Kasa-type algebraic) fit in ``(a, r^2 - a^2)``, well posed for any ``D`` (a free centre in ``D`` dims is
    not: ``N <= D + 1`` points always lie on some sphere). ``value = r`` (NaN if ``r^2 <= 0``).
    Reconstruction: our choice (GeoDM's radius regulariser is not public)."""
    a, r2, rel, e0 = _axis_fit(features, axis, +1.0)
    return QuadricFit(value=math.sqrt(r2) if r2 > 0 else float("nan"), offset=a, rel_residual=rel, axis=e0)


def fit_hyperboloid_curvature(features: torch.Tensor, axis: torch.Tensor | None = None, *,
                              refine_axis: bool = True, max_iter: int = 200) -> QuadricFit:
    """Least-squares hyperboloid sheet ``(t - a)^2 - q = k`` around a unit time axis ``e``, the Lorentz analogue
    of ``fit_sphere_radius``: ``t = <x, e>``, ``q = |x - t e|^2``, and ``t^2 - q = 2 a t + (k - a^2)`` is linear
    in ``(a, k - a^2)`` for a fixed ``e``. Unlike a sphere, the hyperboloid is not rotation invariant, so
    with ``refine_axis`` the algebraic residual is also minimised over ``e`` (L-BFGS, started at ``axis`` or the
    mean direction). ``value = k`` in geodd's convention (``<x, x>_L = -k``, curvature ``-1/k``); ``k <= 0``
    means the points are not inside a light cone around ``e`` (not hyperboloid-like). Reconstruction: our choice.
    """
    a, k, rel, e0 = _axis_fit(features, axis, -1.0)
    if refine_axis:
        x = _f64(features).detach().cpu()
        sq = x.pow(2).sum(1)
        norm = sq.pow(2).mean().sqrt().clamp_min(NORM_EPS)
        e = e0.detach().cpu().clone().requires_grad_(True)
        ab = torch.tensor([a, k - a * a], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([e, ab], max_iter=max_iter, tolerance_grad=1e-14, tolerance_change=1e-16,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            t = x @ (e / e.norm())
            loss = ((2.0 * t.pow(2) - 2.0 * ab[0] * t - ab[1] - sq) / norm).pow(2).mean()
            loss.backward()
            return loss

        opt.step(closure)
        a, k, rel, e0 = _axis_fit(features, (e / e.norm()).detach().to(e0.device), -1.0)
    return QuadricFit(value=k, offset=a, rel_residual=rel, axis=e0)


EMBED_SPACES = ("euclidean", "hyperbolic", "spherical")


def embed_3d(features: torch.Tensor, space: str = "euclidean", seed: int = 0, n_neighbors: int = 15, *,
             min_dist: float = 0.1, metric: str = "euclidean", **umap_kwargs) -> torch.Tensor:
    """UMAP embedding of ``features [N, D]`` (or a distance matrix with ``metric="precomputed"``) as 3-D points
    on a manifold, float64 on the input's device. Seeded (UMAP then runs single-threaded and is reproducible).

    ``euclidean``: ``n_components=3`` in R^3. ``hyperbolic``: ``output_metric="hyperboloid"``; UMAP returns the
    two spatial coordinates, the time coordinate is ``sqrt(1 + x^2 + y^2)``: points ``[t, x, y]`` on
    ``Lorentz(k=1)`` (``lorentz_to_poincare`` gives the disk). ``spherical``: ``output_metric="haversine"``;
    UMAP returns (theta, phi) with theta the polar angle (as its gradient uses it), mapped to
    ``(sin theta cos phi, sin theta sin phi, cos theta)`` on the unit sphere.
    """
    if space not in EMBED_SPACES:
        raise GeoddError(f"unknown space {space!r}; choose one of {', '.join(EMBED_SPACES)}")
    import umap  # slow import (numba); only needed here

    data = features.detach().to("cpu", torch.float64).numpy()
    if space == "euclidean":
        opts = dict(n_components=3)
    else:
        opts = dict(n_components=2, output_metric="hyperboloid" if space == "hyperbolic" else "haversine")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed,
                            **opts, **umap_kwargs)
        emb = torch.as_tensor(reducer.fit_transform(data), dtype=torch.float64)
    if space == "hyperbolic":
        emb = torch.cat((emb.pow(2).sum(1, keepdim=True).add(1.0).sqrt(), emb), 1)
    elif space == "spherical":
        theta, phi = emb[:, 0], emb[:, 1]
        emb = torch.stack((theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()), 1)
    return emb.to(features.device)


__all__ = [
    "RELEASE_EXP_MAX_THETA", "SAFE_EXP_MAX_THETA", "NORM_EPS", "CENTROID_EPS", "LORENTZ_DIST_EPS",
    "POINCARE_BOUNDARY_EPS", "EXACT_DELTA_MAX_POINTS", "LIFT_MODES", "EXP_CLAMPS", "EMBED_SPACES",
    "lorentz", "lorentz_inner", "lorentz_origin", "lift", "lorentz_centroid", "lorentz_distance", "lorentz_dist0",
    "frechet_mean", "lorentz_to_poincare", "poincare_to_lorentz", "claimed_weight", "CentroidPull",
    "centroid_pull", "DeltaHyperbolicity", "delta_hyperbolicity", "QuadricFit", "fit_sphere_radius",
    "fit_hyperboloid_curvature", "embed_3d",
]
