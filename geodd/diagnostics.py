"""Geometry diagnostics of network features (notebook 01): which space suits the data?

Features of a dataset under a random and under a briefly trained ConvNet (``feature_network``), per-class Gromov
delta-hyperbolicity (``delta_table``), radii in the Lorentz model and the samples nearest to / farthest from the
origin (HDD's Fig. 1 idea that prototypes sit near the root, ``radius_extremes``, ``radius_vs_score``), UMAP
embeddings on the three model spaces with their fitted surfaces (GeoDM's Fig. 1, ``embed_spaces``,
``fitted_surface``), the neighbour recall of each embedding, and a summary table that suggests a geometry
(``geometry_summary``). Paper notes: ``papers/hdd_geodm.md`` sections 1 and 2.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from . import GeoddError, default_device
from .data import Dataset, per_class_subset
from .evaluate import BATCH_TRAIN, LR_NET, autocast, train_net
from .geometry import (EMBED_SPACES, NORM_EPS, QuadricFit, delta_hyperbolicity, embed_3d, fit_hyperboloid_curvature,
                       fit_sphere_radius, lorentz_distance)
from .records import config_hash, load_tensors, runs_root, save_tensors

NET_FORMAT = "geodd.nb01-net/1"
#: UMAP's default neighbourhood size; the kNN graph handed to UMAP is built with it
DEFAULT_NEIGHBORS = 15
#: neighbours compared by ``neighbour_recall``
RECALL_NEIGHBORS = 10
#: a non-Euclidean space is suggested only when its 3-D neighbour recall beats the Euclidean one by this much
#: (absolute recall; reconstruction: our choice)
RECALL_MARGIN = 0.02
#: a point set is called tree-like when its relative delta is below this fraction of its Gaussian twin's
#: (reconstruction: our choice; a metric tree has delta 0, uniform points in a square ~0.25, Gaussian samples
#: ~0.2 in 2-D and ~0.035 in 2048-D: in high dimension all distances concentrate, so delta alone misleads)
TREE_LIKE_RATIO = 0.8
#: coefficient of variation of the feature norms below which the norms are called concentrated (the points sit
#: close to a sphere around the origin; reconstruction: our choice)
CONCENTRATED_NORM_CV = 0.05


# --------------------------------------------------------------------------------------------------
# Feature networks and features
# --------------------------------------------------------------------------------------------------

class NetInfo(NamedTuple):
    epochs: int            # 0: random (untrained) network
    train_size: int        # images it was trained on (0 for a random net)
    seconds: float         # training time when it was trained (0 for a random net)
    cached: bool           # loaded from the cache instead of trained now
    path: str              # cache file ('' for a random net)


def feature_network(train: Dataset, *, arch: str = "convnet", epochs: int = 0, train_size: int | None = None,
                    seed: int = 0, amp: str | None = None, lr: float = LR_NET, batch_size: int = BATCH_TRAIN,
                    root=None, device: torch.device | None = None, progress: bool = False
                    ) -> tuple[nn.Module, NetInfo]:
    """A ConvNet (or any ``arch``) in eval mode: randomly initialised from ``seed`` (``epochs=0``, DM's feature
    extractor) or trained for ``epochs`` with the evaluation protocol's SGD (``evaluate.train_net``, no
    augmentation) on ``train_size`` images (a class-balanced subset; all of ``train`` when None).

    A trained net's state dict is cached under ``<runs>/nb01-nets/`` keyed by the training config, so a second
    call loads it. Reconstruction: our choice (the papers use random or partially trained ConvNets as feature
    extractors; the brief training here only gives the features some class structure).
    """
    if epochs < 0:
        raise GeoddError(f"epochs must be >= 0, got {epochs}")
    device = device or default_device()
    net = _make(arch, train, seed, device)
    if epochs == 0:
        return net.eval(), NetInfo(0, 0, 0.0, False, "")
    n_per = len(train) // train.num_classes if train_size is None else train_size // train.num_classes
    if n_per < 1:
        raise GeoddError(f"train_size {train_size} gives no image per class ({train.num_classes} classes)")
    config = dict(dataset=train.name, n=len(train), arch=arch, epochs=epochs, per_class=n_per, seed=seed,
                  amp=amp or "fp32", lr=lr, batch_size=batch_size)
    path = Path(runs_root() if root is None else root) / "nb01-nets" / f"{arch}-{config_hash(config)}.pt"
    if path.exists():
        payload = load_tensors(path, NET_FORMAT)
        net.load_state_dict(payload["state_dict"])
        return net.eval(), NetInfo(epochs, int(payload["train_size"]), float(payload["seconds"]), True, str(path))
    subset = per_class_subset(train, min(n_per, min(train.counts)), seed=seed)
    t0 = time.perf_counter()
    train_net(net, subset.images, subset.labels, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, amp=amp,
              progress=progress)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_tensors(path, {"format": NET_FORMAT, "state_dict": state, "config": config, "train_size": len(subset),
                        "seconds": seconds})
    return net.eval(), NetInfo(epochs, len(subset), seconds, False, str(path))


def _make(arch: str, train: Dataset, seed: int, device) -> nn.Module:
    from .nets import make_network
    return make_network(arch, train.channels, train.num_classes, train.im_size, seed=seed, device=device)


@torch.no_grad()
def net_outputs(net: nn.Module, images: torch.Tensor, *, batch_size: int = 512, amp: str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, D], logits [N, C])`` in float32 on the net's device: ``net.embed`` and the linear head
    ``net.classifier`` (every geodd network has both), one pass in eval mode."""
    device = next(net.parameters()).device
    net.eval()
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        with autocast(device, amp):
            f = net.embed(x)
            z = net.classifier(f) if hasattr(net, "classifier") else net(x)
        feats.append(f.float())
        logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


def true_class_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``softmax(logits)[i, y_i]``: the network's probability for the true class of each sample."""
    return logits.float().softmax(-1).gather(1, labels.to(logits.device).long()[:, None])[:, 0]


# --------------------------------------------------------------------------------------------------
# delta-hyperbolicity per class
# --------------------------------------------------------------------------------------------------

def delta_table(sources: dict[str, torch.Tensor], labels: torch.Tensor, class_names: list[str] | None = None, *,
                num_samples: int = 50_000, max_points: int = 1000, seed: int = 0, include_all: bool = True,
                twin: bool = True) -> pd.DataFrame:
    """Gromov delta (four-point condition, ``geometry.delta_hyperbolicity``) of every class of every feature
    source, long format: ``source, class, delta_rel, delta, diameter, points, exact`` (+ ``delta_rel_twin``).
    ``delta_rel = delta / diameter`` is 0 for a tree metric. With ``include_all`` a row ``class = "all"`` takes as
    many points as the largest class, drawn across classes, so the two are comparable (delta grows with the point
    count). ``twin`` adds the same measurement on the ``gaussian_twin`` of each source: a structureless blob
    with the same class means and covariances (high-dimensional blobs are nearly equidistant point sets, whose
    delta is small too, so a small delta means "tree-like" only if it is below the twin's). Every set uses the same
    seeded generator stream."""
    labels = labels.cpu()
    if any(len(f) != len(labels) for f in sources.values()):
        raise GeoddError("every feature source needs one row per label")
    classes = torch.unique(labels).tolist()
    names = class_names or [str(c) for c in range(max(classes) + 1)]
    largest = max(int((labels == c).sum()) for c in classes)
    groups = [(names[c], torch.nonzero(labels == c).flatten()) for c in classes]
    if include_all:
        groups.append(("all", torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:largest]))
    for name, idx in groups:
        if len(idx) < 4:
            raise GeoddError(f"class {name} has {len(idx)} samples; delta-hyperbolicity needs at least 4")

    def delta(x: torch.Tensor):
        return delta_hyperbolicity(x, num_samples, torch.Generator().manual_seed(seed), max_points=max_points)

    rows = []
    for source, feats in sources.items():
        ref = gaussian_twin(feats, labels, seed) if twin else None
        for name, idx in groups:
            d = delta(feats[idx.to(feats.device)])
            row = dict(source=source, **{"class": name}, delta_rel=d.relative, delta=d.absolute,
                       diameter=d.diameter, points=d.num_points, exact=d.exact)
            if ref is not None:
                row["delta_rel_twin"] = delta(ref[idx.to(ref.device)]).relative
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Radii in the Lorentz model
# --------------------------------------------------------------------------------------------------

def radius_extremes(radii: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class the ``n`` samples nearest to the origin (ascending radius) and the ``n`` farthest (descending):
    two LongTensors ``[C, n]`` of row indices (classes in ascending label order; ties broken by index)."""
    if radii.shape != labels.shape or radii.dim() != 1:
        raise GeoddError(f"radii and labels must both be [N]; got {tuple(radii.shape)} and {tuple(labels.shape)}")
    labels = labels.to(radii.device)
    near, far = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < n:
            raise GeoddError(f"class {c} has {len(idx)} samples, fewer than n={n}")
        order = torch.sort(radii[idx], stable=True).indices
        near.append(idx[order[:n]])
        far.append(idx[order.flip(0)[:n]])
    return torch.stack(near), torch.stack(far)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import spearmanr
    rho = spearmanr(a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()).statistic
    return float(rho)


def radius_vs_score(radii: dict[str, torch.Tensor], score: torch.Tensor, labels: torch.Tensor,
                    class_names: list[str] | None = None, *, quantile: float = 0.2) -> pd.DataFrame:
    """Does "near the root" mean "prototypical"? Per source and class: the Spearman correlation ``rho`` between the
    Lorentz radius and a per-sample ``score`` (e.g. a reference network's true-class confidence, or the image
    brightness), and the mean score of the ``quantile`` nearest (``score_near``) and farthest (``score_far``)
    samples. With the confidence as score, HDD's Fig. 1 idea predicts ``rho < 0`` and ``score_near > score_far``.
    Reconstruction: our choice (HDD shows the idea on one example class and gives no measure)."""
    if not 0 < quantile <= 0.5:
        raise GeoddError(f"quantile must be in (0, 0.5], got {quantile}")
    labels = labels.cpu()
    score = score.detach().double().cpu()
    if score.shape != labels.shape:
        raise GeoddError(f"score must be [N] like labels; got {tuple(score.shape)} and {tuple(labels.shape)}")
    rows = []
    for source, r in radii.items():
        r = r.detach().double().cpu()
        for c in torch.unique(labels).tolist():
            idx = torch.nonzero(labels == c).flatten()
            m = max(1, int(round(quantile * len(idx))))
            order = torch.sort(r[idx], stable=True).indices
            rows.append(dict(source=source, **{"class": class_names[c] if class_names else str(c)},
                             rho=_spearman(r[idx], score[idx]), score_near=float(score[idx[order[:m]]].mean()),
                             score_far=float(score[idx[order[-m:]]].mean()), radius_mean=float(r[idx].mean()),
                             radius_std=float(r[idx].std())))
    return pd.DataFrame(rows)


def score_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``radius_vs_score``'s table per source: the class means of ``rho``, ``score_near`` and ``score_far`` and
    the number of classes with ``rho < 0`` (index: source, in first-seen order)."""
    groups = table.groupby("source", sort=False)
    out = groups[["rho", "score_near", "score_far"]].mean()
    out["classes with rho < 0"] = groups.rho.apply(lambda r: int((r < 0).sum()))
    return out


# --------------------------------------------------------------------------------------------------
# 3-D embeddings on the three spaces, fitted surfaces, neighbour recall
# --------------------------------------------------------------------------------------------------

def knn_graph(features: torch.Tensor, n_neighbors: int = DEFAULT_NEIGHBORS) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean kNN of ``features [N, D]`` (each point first, as UMAP expects), by ``torch.cdist`` on the
    features' device: ``(indices [N, n], distances [N, n])`` as numpy arrays for ``umap.UMAP(precomputed_knn=)``.
    UMAP's own exact path (``pairwise_distances`` for N < 4096) is ~10x slower on CPU."""
    x = features.detach().double()
    if x.dim() != 2 or len(x) <= n_neighbors:
        raise GeoddError(f"need [N, D] features with N > n_neighbors={n_neighbors}, got {tuple(x.shape)}")
    d = torch.cdist(x, x)
    d.fill_diagonal_(0.0)
    dist, idx = d.topk(n_neighbors, largest=False)   # sorted ascending; self at distance 0 comes first
    return idx.cpu().numpy(), dist.cpu().numpy()


#: the spaces ``embed_spaces`` knows: R^3 plus the three 2-D model surfaces of curvature 0, -1 and +1
SPACES = ("euclidean", "plane", "hyperbolic", "spherical")
#: the 2-D surfaces compared on an equal footing by ``suggest_geometry`` (R^3 has one dimension more)
SURFACES = ("plane", "hyperbolic", "spherical")


def embed_spaces(features: torch.Tensor, spaces: tuple[str, ...] = SPACES, *,
                 n_neighbors: int = DEFAULT_NEIGHBORS, n_epochs: int | None = None, min_dist: float = 0.1,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """UMAP embeddings of the same features in each space, sharing one exact kNN graph (``knn_graph``):
    ``euclidean`` (R^3), ``hyperbolic`` (hyperboloid ``[t, x, y]``, k = 1) and ``spherical`` (unit sphere) from
    ``geometry.embed_3d``, and ``plane`` (R^2, ``[N, 2]``), the flat surface with as many dimensions as the two
    curved ones. Returns ``{space: tensor}`` in float64. ``n_epochs`` (UMAP's optimisation epochs; None is UMAP's
    500 for small sets) trades time for quality."""
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
    ``2 atan2(|u - v|, |u + v|)`` (= ``arccos <u, v>``, without its cancellation) on the unit sphere."""
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
    neighbourhood kept. A space that suits the data keeps more of them. Reconstruction: our choice."""
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
    over the RMS distance to the centroid. Reconstruction: our choice (GeoDM does not say how it fits)."""
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
# Summary: which geometry do the diagnostics suggest?
# --------------------------------------------------------------------------------------------------

def norm_spread(features: torch.Tensor) -> float:
    """Coefficient of variation ``std(|f|) / mean(|f|)`` of the feature norms (0: all on one sphere)."""
    n = features.detach().double().norm(dim=1)
    return float(n.std() / n.mean().clamp_min(NORM_EPS))


def gaussian_twin(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A structureless reference: per class, as many Gaussian samples as the class has, with the class's mean
    and covariance, ``mu + Z (X - mu) / sqrt(n - 1)`` with ``Z ~ N(0, I_n)`` (float64, no ``D x D`` matrix).
    Diagnostics that give the same value on the twin see nothing beyond a blob. Reconstruction: our choice."""
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


def suggest_geometry(recall: dict[str, float], delta_ratio: float, norm_cv: float, *,
                     margin: float = RECALL_MARGIN) -> str:
    """A one-phrase suggestion from the diagnostics. Among the 2-D model surfaces (``SURFACES``: plane,
    hyperbolic, spherical; R^3 has an extra dimension and is left out), the one whose UMAP embedding keeps the
    most feature neighbours wins if it beats the plane by more than ``margin``; otherwise ``euclidean``. Hints
    are appended: "tree-like" when ``delta_ratio`` (relative delta over the Gaussian twin's) is below
    ``TREE_LIKE_RATIO`` (supports hyperbolic) and "norms
    concentrated" when ``norm_cv < CONCENTRATED_NORM_CV`` (the features lie near a sphere, supports spherical).
    Reconstruction: our choice; a heuristic for reading the table, not a theorem."""
    scores = {sp: recall[sp] for sp in SURFACES if sp in recall}
    if "plane" not in scores:
        raise GeoddError("recall needs the plane's value (the flat baseline) and at least one curved surface")
    best = max(scores, key=scores.get)
    pick = best if scores[best] > scores["plane"] + margin else "euclidean"
    hints = []
    if delta_ratio < TREE_LIKE_RATIO:
        hints.append("tree-like")
    if norm_cv < CONCENTRATED_NORM_CV:
        hints.append("norms concentrated")
    return pick + (f" ({', '.join(hints)})" if hints else "")


def geometry_summary(sources: dict[str, torch.Tensor], deltas: pd.DataFrame,
                     recalls: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per feature source: mean per-class ``delta_rel``, its ratio to the Gaussian twin's (from
    ``delta_table``; NaN without twins), the norm spread, the relative residuals of a sphere and of a hyperboloid
    fitted to the features themselves (``fit_sphere_radius``, ``fit_hyperboloid_curvature`` without axis
    refinement, around the mean direction; read each column across sources, the two use different algebraic
    scales), the neighbour recall per space, and ``suggest_geometry``'s phrase."""
    rows = []
    for source, feats in sources.items():
        d = deltas[(deltas.source == source) & (deltas["class"] != "all")]
        if d.empty:
            raise GeoddError(f"no per-class delta rows for source {source!r}")
        delta_rel = float(d.delta_rel.mean())
        ratio = delta_rel / float(d.delta_rel_twin.mean()) if "delta_rel_twin" in d else float("nan")
        row: dict[str, Any] = dict(source=source, delta_rel=delta_rel, delta_vs_twin=ratio,
                                   norm_cv=norm_spread(feats),
                                   sphere_resid=fit_sphere_radius(feats).rel_residual,
                                   hyperboloid_resid=fit_hyperboloid_curvature(feats, refine_axis=False).rel_residual)
        rec = recalls.get(source, {})
        for space in SPACES:
            row[f"recall_{space}"] = rec.get(space, float("nan"))
        row["suggests"] = suggest_geometry(rec, ratio, row["norm_cv"]) if rec else "(not embedded)"
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "NET_FORMAT", "DEFAULT_NEIGHBORS", "RECALL_NEIGHBORS", "RECALL_MARGIN", "TREE_LIKE_RATIO",
    "CONCENTRATED_NORM_CV", "SPACES", "SURFACES", "NetInfo", "feature_network", "net_outputs",
    "true_class_confidence", "delta_table", "radius_extremes", "radius_vs_score", "score_summary", "knn_graph", "embed_spaces",
    "space_distances", "neighbour_recall", "Surface", "fitted_surface", "norm_spread", "gaussian_twin",
    "suggest_geometry", "geometry_summary",
]
