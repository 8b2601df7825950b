"""Geometry diagnostics of point sets: which space suits the data?

Gromov delta-hyperbolicity by the four-point condition, least-squares sphere and hyperboloid fits, UMAP embeddings
of features on the three model spaces (R^3 / the plane, the hyperboloid, the sphere) sharing one exact kNN graph,
their geodesic distances, the neighbour recall of an embedding, fitted model surfaces for wireframes, and two
reference statistics (norm spread, a Gaussian twin). Generic: no dataset, network or notebook cache here (notebook
01's study code lives in ``geodd.studies.manifold_embeddings``). The method pages are ``docs/methods/hdd.md`` and
``docs/methods/geodm.md``. Shown in notebook 01 (01_manifold_embeddings).
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

from .. import GeoddError
from .constants import NORM_EPS
from .lorentz import _f64, lorentz_distance

#: quadruple sets up to this size get the exact (all quadruples) Gromov delta
EXACT_DELTA_MAX_POINTS = 48
#: the spaces ``embed_3d`` embeds into
EMBED_SPACES = ("euclidean", "hyperbolic", "spherical")
#: UMAP's default neighbourhood size; the kNN graph handed to UMAP is built with it
DEFAULT_NEIGHBORS = 15
#: neighbours compared by ``neighbour_recall``
RECALL_NEIGHBORS = 10
#: the spaces ``embed_spaces`` knows: R^3 plus the three 2-D model surfaces of curvature 0, -1 and +1
SPACES = ("euclidean", "plane", "hyperbolic", "spherical")


class DeltaHyperbolicity(NamedTuple):
    """The result of ``delta_hyperbolicity``. Shown in notebook 01 (01_manifold_embeddings)."""

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
    Shown in notebook 01 (01_manifold_embeddings).
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
    """The result of ``fit_sphere_radius`` / ``fit_hyperboloid_curvature``. Shown in notebook 01
    (01_manifold_embeddings)."""

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
    Reconstruction: our choice (GeoDM's radius regulariser is not public).
    Shown in notebook 01 (01_manifold_embeddings)."""
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
    Shown in notebook 01 (01_manifold_embeddings).
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


def embed_3d(features: torch.Tensor, space: str = "euclidean", seed: int = 0, n_neighbors: int = 15, *,
             min_dist: float = 0.1, metric: str = "euclidean", **umap_kwargs) -> torch.Tensor:
    """UMAP embedding of ``features [N, D]`` (or a distance matrix with ``metric="precomputed"``) as 3-D points
    on a manifold, float64 on the input's device. Seeded (UMAP then runs single-threaded and is reproducible).

    ``euclidean``: ``n_components=3`` in R^3. ``hyperbolic``: ``output_metric="hyperboloid"``; UMAP returns the
    two spatial coordinates, the time coordinate is ``sqrt(1 + x^2 + y^2)``: points ``[t, x, y]`` on
    ``Lorentz(k=1)`` (``lorentz_to_poincare`` gives the disk). ``spherical``: ``output_metric="haversine"``;
    UMAP returns (theta, phi) with theta the polar angle (as its gradient uses it), mapped to
    ``(sin theta cos phi, sin theta sin phi, cos theta)`` on the unit sphere.
    Shown in notebook 01 (01_manifold_embeddings).
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


# --------------------------------------------------------------------------------------------------
# Embeddings on the model spaces, neighbour recall, fitted surfaces
# --------------------------------------------------------------------------------------------------

def knn_graph(features: torch.Tensor, n_neighbors: int = DEFAULT_NEIGHBORS) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean kNN of ``features [N, D]`` (each point first, as UMAP expects), by ``torch.cdist`` on the
    features' device: ``(indices [N, n], distances [N, n])`` as numpy arrays for ``umap.UMAP(precomputed_knn=)``.
    UMAP's own exact path (``pairwise_distances`` for N < 4096) is ~10x slower on CPU.
    Shown in notebook 01 (01_manifold_embeddings)."""
    x = features.detach().double()
    if x.dim() != 2 or len(x) <= n_neighbors:
        raise GeoddError(f"need [N, D] features with N > n_neighbors={n_neighbors}, got {tuple(x.shape)}")
    d = torch.cdist(x, x)
    d.fill_diagonal_(0.0)
    dist, idx = d.topk(n_neighbors, largest=False)   # sorted ascending; self at distance 0 comes first
    return idx.cpu().numpy(), dist.cpu().numpy()


def embed_spaces(features: torch.Tensor, spaces: tuple[str, ...] = SPACES, *,
                 n_neighbors: int = DEFAULT_NEIGHBORS, n_epochs: int | None = None, min_dist: float = 0.1,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """UMAP embeddings of the same features in each space, sharing one exact kNN graph (``knn_graph``):
    ``euclidean`` (R^3), ``hyperbolic`` (hyperboloid ``[t, x, y]``, k = 1) and ``spherical`` (unit sphere) from
    ``geometry.embed_3d``, and ``plane`` (R^2, ``[N, 2]``), the flat surface with as many dimensions as the two
    curved ones. Returns ``{space: tensor}`` in float64. ``n_epochs`` (UMAP's optimisation epochs; None is UMAP's
    500 for small sets) trades time for quality. Shown in notebook 01 (01_manifold_embeddings)."""
    unknown = [sp for sp in spaces if sp not in SPACES]
    if unknown:
        raise GeoddError(f"unknown space {unknown[0]!r}; choose from {', '.join(SPACES)}")
    idx, dist = knn_graph(features, n_neighbors)
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        warnings.filterwarnings("ignore", message=".*Tensorflow not installed.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        for space in spaces:
            if space == "plane":
                import umap
                reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs,
                                    random_state=seed, precomputed_knn=(idx, dist, None))
                emb = reducer.fit_transform(features.detach().to("cpu", torch.float64).numpy())
                out[space] = torch.as_tensor(emb, dtype=torch.float64).to(features.device)
            else:
                out[space] = embed_3d(features, space, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist,
                                      n_epochs=n_epochs, precomputed_knn=(idx, dist, None))
    return out


def space_distances(points: torch.Tensor, space: str) -> torch.Tensor:
    """Pairwise geodesic distances ``[N, N]`` of embedded points in ``space``: Euclidean in R^3 or R^2 (plane),
    ``arcosh(-<x, y>_L)`` on the hyperboloid (k = 1, ``geometry.lorentz_distance``), the angle
    ``2 atan2(|u - v|, |u + v|)`` (= ``arccos <u, v>``, without its cancellation) on the unit sphere.
    Shown in notebook 01 (01_manifold_embeddings)."""
    x = points.double()
    if space in ("euclidean", "plane"):
        return torch.cdist(x, x)
    if space == "hyperbolic":
        return lorentz_distance(x[:, None, :], x[None, :, :], 1.0)
    if space == "spherical":
        u = x / x.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
        return 2.0 * torch.atan2(torch.cdist(u, u), torch.cdist(u, -u))    # the angle, stable near 0 and pi
    raise GeoddError(f"unknown space {space!r}; choose one of {', '.join(SPACES)}")


def neighbour_recall(features: torch.Tensor, points: torch.Tensor, space: str,
                     n_neighbors: int = RECALL_NEIGHBORS) -> float:
    """Mean fraction of each sample's ``n_neighbors`` nearest neighbours in feature space (Euclidean) that are
    also among its nearest neighbours in the 3-D embedding (geodesic distance of ``space``); 1 = every local
    neighbourhood kept. A space that suits the data keeps more of them. Reconstruction: our choice.
    Shown in notebook 01 (01_manifold_embeddings)."""
    if len(features) != len(points) or len(points) <= n_neighbors:
        raise GeoddError(f"need as many points as features and more than {n_neighbors}")
    x = features.detach().double()
    big = torch.finfo(torch.float64).max
    d_feat = torch.cdist(x, x).fill_diagonal_(big)
    d_emb = space_distances(points.to(x.device), space).fill_diagonal_(big)
    a = d_feat.topk(n_neighbors, largest=False).indices
    b = d_emb.topk(n_neighbors, largest=False).indices
    hits = (a[:, :, None] == b[:, None, :]).any(-1).double().mean()
    return float(hits)


class Surface(NamedTuple):
    """A fitted model surface for a wireframe (``fitted_surface``). Shown in notebook 01 (01_manifold_embeddings)."""

    kind: str                      # plane, sphere or hyperboloid
    grid: tuple[np.ndarray, ...]   # X, Y, Z arrays [n, n] for ``Axes3D.plot_wireframe``
    value: float                   # sphere radius r, hyperboloid k, or 0 for the plane
    rel_residual: float            # the fit's relative residual


def _basis(axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors orthogonal to the unit 3-vector ``axis`` and to each other."""
    helper = torch.zeros(3, dtype=axis.dtype)
    helper[int(axis.abs().argmin())] = 1.0
    u = torch.linalg.cross(axis, helper)
    u = u / u.norm()
    return u, torch.linalg.cross(axis, u)


def fitted_surface(points: torch.Tensor, space: str, resolution: int = 24) -> Surface:
    """The model surface of ``space`` fitted to 3-D ``points`` and sampled on a ``resolution`` x ``resolution``
    grid for a wireframe (GeoDM's Fig. 1): a least-squares plane (PCA) for ``euclidean``, ``fit_sphere_radius``
    for ``spherical`` and ``fit_hyperboloid_curvature`` for ``hyperbolic`` (its sheet ``t = a + sqrt(k + rho^2)``
    drawn out to the largest ``rho`` of the points). The plane's ``rel_residual`` is the RMS distance to the plane
    over the RMS distance to the centroid. Reconstruction: our choice (GeoDM does not say how it fits).
    Shown in notebook 01 (01_manifold_embeddings)."""
    x = points.detach().double().cpu()
    if x.dim() != 2 or x.shape[1] != 3 or len(x) < 4:
        raise GeoddError(f"points must be [N, 3] with N >= 4, got {tuple(x.shape)}")
    s = torch.linspace(0.0, 1.0, resolution, dtype=torch.float64)
    if space == "euclidean":
        centre = x.mean(0)
        _, sv, vh = torch.linalg.svd(x - centre, full_matrices=False)
        u, v = vh[0], vh[1]
        rel = float(sv[2] / sv.pow(2).sum().sqrt().clamp_min(NORM_EPS))
        proj = (x - centre) @ torch.stack((u, v), 1)
        lo, hi = proj.min(0).values, proj.max(0).values
        a = lo[0] + s * (hi[0] - lo[0])
        b = lo[1] + s * (hi[1] - lo[1])
        A, B = torch.meshgrid(a, b, indexing="ij")
        grid = centre + A[..., None] * u + B[..., None] * v
        return Surface("plane", tuple(grid[..., i].numpy() for i in range(3)), 0.0, rel)
    if space == "spherical":
        fit = fit_sphere_radius(x)
        r = fit.value if math.isfinite(fit.value) else float(x.norm(dim=1).mean())
        theta, phi = torch.meshgrid(s * math.pi, s * 2.0 * math.pi, indexing="ij")
        grid = fit.offset * fit.axis + r * torch.stack(
            (theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()), -1)
        return Surface("sphere", tuple(grid[..., i].numpy() for i in range(3)), r, fit.rel_residual)
    if space == "hyperbolic":
        fit: QuadricFit = fit_hyperboloid_curvature(x)
        e = fit.axis.double().cpu()
        u, v = _basis(e)
        t = x @ e
        rho_max = float((x - t[:, None] * e).norm(dim=1).max())
        rho, phi = torch.meshgrid(s * rho_max, s * 2.0 * math.pi, indexing="ij")
        height = fit.offset + (fit.value + rho.pow(2)).clamp_min(0.0).sqrt()
        grid = height[..., None] * e + rho[..., None] * (phi.cos()[..., None] * u + phi.sin()[..., None] * v)
        return Surface("hyperboloid", tuple(grid[..., i].numpy() for i in range(3)), fit.value, fit.rel_residual)
    raise GeoddError(f"unknown space {space!r}; choose one of {', '.join(EMBED_SPACES)}")


# --------------------------------------------------------------------------------------------------
# Reference statistics
# --------------------------------------------------------------------------------------------------

def norm_spread(features: torch.Tensor) -> float:
    """Coefficient of variation ``std(|f|) / mean(|f|)`` of the feature norms (0: all on one sphere).
    Shown in notebook 01 (01_manifold_embeddings)."""
    n = features.detach().double().norm(dim=1)
    return float(n.std() / n.mean().clamp_min(NORM_EPS))


def gaussian_twin(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A structureless reference: per class, as many Gaussian samples as the class has, with the class's mean
    and covariance, ``mu + Z (X - mu) / sqrt(n - 1)`` with ``Z ~ N(0, I_n)`` (float64, no ``D x D`` matrix).
    Diagnostics that give the same value on the twin see nothing beyond a blob. Reconstruction: our choice.
    Shown in notebook 01 (01_manifold_embeddings)."""
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise GeoddError(f"features must be [N, D] with labels [N]; got {tuple(features.shape)}, "
                         f"{tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    x = features.detach().double()
    labels = labels.to(x.device)
    out = torch.empty_like(x)
    for c in torch.unique(labels).tolist():
        mask = labels == c
        xc = x[mask]
        if len(xc) < 2:
            raise GeoddError(f"class {c} has {len(xc)} sample; a covariance needs at least 2")
        mu = xc.mean(0)
        z = torch.randn(len(xc), len(xc), generator=gen, dtype=torch.float64).to(x.device)
        out[mask] = mu + z @ (xc - mu) / math.sqrt(len(xc) - 1)
    return out


__all__ = [
    "EXACT_DELTA_MAX_POINTS", "EMBED_SPACES", "DEFAULT_NEIGHBORS", "RECALL_NEIGHBORS", "SPACES",
    "DeltaHyperbolicity", "delta_hyperbolicity", "QuadricFit", "fit_sphere_radius", "fit_hyperboloid_curvature",
    "embed_3d", "knn_graph", "embed_spaces", "space_distances", "neighbour_recall", "Surface", "fitted_surface",
    "norm_spread", "gaussian_twin",
]
