"""Notebook 01 (01_manifold_embeddings): which geometry suits the features of a dataset?

Features of a dataset under a random and under a briefly trained ConvNet (``feature_network``, cached under
``<runs>/nb01-nets/``), per-class Gromov delta-hyperbolicity against a Gaussian twin (``delta_table``), radii in the
Lorentz model and the samples nearest to / farthest from the origin (HDD's Fig. 1 idea that prototypes sit near
the root: ``radius_extremes``, ``radius_vs_score``, ``score_summary``), and a summary table that suggests a
geometry (``geometry_summary``, ``suggest_geometry``). The generic diagnostics it builds on (delta, quadric fits,
UMAP embeddings on the model spaces, neighbour recall, fitted surfaces, norm spread, the Gaussian twin) live in
``geodd.geometry.diagnostics``. Method pages: ``docs/methods/hdd.md`` and ``docs/methods/geodm.md``.
Shown in notebook 01 (01_manifold_embeddings).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch
import torch.nn as nn

from .. import GeoddError, default_device
from ..data import Dataset, per_class_subset
from ..evaluate import BATCH_TRAIN, LR_NET, train_net
from ..geometry.diagnostics import (DEFAULT_NEIGHBORS, SPACES, delta_hyperbolicity, fit_hyperboloid_curvature,
                                    fit_sphere_radius, gaussian_twin, norm_spread)
from ..io import fingerprint, load_tensors, save_tensors
from ..options import require
from ..precision import autocast
from ..profiles import Profile
from ..runs import runs_root
from .common import for_profile, settings_by_profile

#: format tag of a cached feature network
NET_FORMAT = "geodd.nb01-net/1"
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
#: the 2-D surfaces compared on an equal footing by ``suggest_geometry`` (R^3 has one dimension more)
SURFACES = ("plane", "hyperbolic", "spherical")


# --------------------------------------------------------------------------------------------------
# Feature networks and features
# --------------------------------------------------------------------------------------------------

class NetInfo(NamedTuple):
    """How ``feature_network`` obtained its network. Shown in notebook 01 (01_manifold_embeddings)."""

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
    Shown in notebook 01 (01_manifold_embeddings).
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
    path = Path(runs_root() if root is None else root) / "nb01-nets" / f"{arch}-{fingerprint(config)}.pt"
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
    from ..nets import make_network
    return make_network(arch, train.channels, train.num_classes, train.im_size, seed=seed, device=device)


@torch.no_grad()
def net_outputs(net: nn.Module, images: torch.Tensor, *, batch_size: int = 512, amp: str | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, D], logits [N, C])`` in float32 on the net's device: ``net.embed`` and the linear head
    ``net.classifier`` (every geodd network has both), one pass in eval mode.
    Shown in notebook 01 (01_manifold_embeddings)."""
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
    """``softmax(logits)[i, y_i]``: the network's probability for the true class of each sample.
    Shown in notebook 01 (01_manifold_embeddings)."""
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
    seeded generator stream. Shown in notebook 01 (01_manifold_embeddings)."""
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
    two LongTensors ``[C, n]`` of row indices (classes in ascending label order; ties broken by index).
    Shown in notebook 01 (01_manifold_embeddings)."""
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
    Reconstruction: our choice (HDD shows the idea on one example class and gives no measure).
    Shown in notebook 01 (01_manifold_embeddings)."""
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
    the number of classes with ``rho < 0`` (index: source, in first-seen order).
    Shown in notebook 01 (01_manifold_embeddings)."""
    groups = table.groupby("source", sort=False)
    out = groups[["rho", "score_near", "score_far"]].mean()
    out["classes with rho < 0"] = groups.rho.apply(lambda r: int((r < 0).sum()))
    return out


# --------------------------------------------------------------------------------------------------
# Summary: which geometry do the diagnostics suggest?
# --------------------------------------------------------------------------------------------------

def suggest_geometry(recall: dict[str, float], delta_ratio: float, norm_cv: float, *,
                     margin: float = RECALL_MARGIN) -> str:
    """A one-phrase suggestion from the diagnostics. Among the 2-D model surfaces (``SURFACES``: plane,
    hyperbolic, spherical; R^3 has an extra dimension and is left out), the one whose UMAP embedding keeps the
    most feature neighbours wins if it beats the plane by more than ``margin``; otherwise ``euclidean``. Hints
    are appended: "tree-like" when ``delta_ratio`` (relative delta over the Gaussian twin's) is below
    ``TREE_LIKE_RATIO`` (supports hyperbolic) and "norms
    concentrated" when ``norm_cv < CONCENTRATED_NORM_CV`` (the features lie near a sphere, supports spherical).
    Reconstruction: our choice; a heuristic for reading the table, not a theorem.
    Shown in notebook 01 (01_manifold_embeddings)."""
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
    scales), the neighbour recall per space, and ``suggest_geometry``'s phrase.
    Shown in notebook 01 (01_manifold_embeddings)."""
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


@dataclass(frozen=True)
class EmbeddingStudySettings:
    """Notebook 01's sizes: how many test images per class are embedded (``per_class``), how many go through UMAP
    (``embed_per_class``; UMAP's JIT dominates small runs), the trained feature network (``epochs`` on
    ``train_size`` images), the lift used for radii (``k``, ``target_radius``: HDD's defaults, so the radii are
    the ones HDD matches), UMAP's neighbours and epochs (None: UMAP's default), δ's sample count and the
    quantile of the radius-vs-score comparison."""

    per_class: int
    embed_per_class: int
    show: int
    train_size: int
    epochs: int
    delta_samples: int
    umap_epochs: int | None = None
    arch: str = "convnet"
    seed: int = 0
    k: float = 1.0
    target_radius: float = 2.0
    n_neighbors: int = DEFAULT_NEIGHBORS
    quantile: float = 0.2

    def check(self) -> None:
        require(0 < self.quantile < 0.5, f"quantile must lie in (0, 0.5), got {self.quantile}")
        require(self.k > 0 and self.target_radius > 0, "k and target_radius must be positive")


SETTINGS = settings_by_profile(EmbeddingStudySettings, {
    "smoke": dict(per_class=10, embed_per_class=10, show=4, train_size=200, epochs=1, umap_epochs=50,
                  delta_samples=5_000),
    # ~3000 test images embedded; a ConvNet trained 2 epochs on 10k images (cached); UMAP on 2000
    "cpu": dict(per_class=300, embed_per_class=200, show=8, train_size=10_000, epochs=2, umap_epochs=200,
                delta_samples=50_000),
    # CIFAR-10 test images; a ConvNet trained 5 epochs on all 50k; UMAP with its default 500 epochs
    "paper": dict(per_class=500, embed_per_class=300, show=10, train_size=50_000, epochs=5, delta_samples=200_000),
}, "01")


def settings(profile: str | Profile) -> EmbeddingStudySettings:
    """Notebook 01's settings for ``profile`` (a name or a ``Profile``). Shown in notebook 01
    (01_manifold_embeddings)."""
    return for_profile(SETTINGS, profile, "01")


__all__ = ["EmbeddingStudySettings", "SETTINGS", "settings",
    "NET_FORMAT", "RECALL_MARGIN", "TREE_LIKE_RATIO", "CONCENTRATED_NORM_CV", "SURFACES", "NetInfo",
    "feature_network", "net_outputs", "true_class_confidence", "delta_table", "radius_extremes", "radius_vs_score",
    "score_summary", "suggest_geometry", "geometry_summary",
]
