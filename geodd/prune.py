"""Real-data pruning by hyperbolic level ("Hyperbolic Dataset Distillation", Li et al., NeurIPS 2025, its
pruning section; ``docs/methods/hdd.md`` "Pruning").

HDD claims that keeping ~20% of the real data retains performance, but releases no pruning code. The rule here is
a reconstruction (our choice, the most consistent reading of the abstract and README): embed every real image
with a frozen network (a random ConvNet, as in DM, unless a net is given), lift the features onto the Lorentz
hyperboloid with HDD's lift and norm handling (``matchers.hdd.lift_features``), measure each sample's *level* =
geodesic distance from the origin (``reference="origin"``, the root of the hierarchy) or from its class's
Lorentzian centroid (``reference="centroid"``), and per class keep the ``ceil(keep * n_c)`` samples with the
smallest level (ties broken by index).

Note: for ``reference="origin"`` the level is a monotone function of the feature norm for both lifts and any
single global factor, so the ranking equals ranking by Euclidean feature norm; the hyperbolic geometry changes
the ranking only for the centroid reference. Under ``norm="release"`` with the exp lift every ConvNet feature is
clamped to one radius, so origin levels tie: use the default ``norm="rescale"``.

Shown in notebook 02 (02_hdd_pruning); the levels also in notebook 01 (01_manifold_embeddings).
"""
from __future__ import annotations

import math

import torch

from . import GeoddError, default_device
from .geometry.lorentz import lorentz_centroid, lorentz_dist0, lorentz_distance
from .matchers.hdd import DEFAULT_TARGET_RADIUS, feature_factor, lift_features

REFERENCES = ("origin", "centroid")
#: ``keep * n_c`` is rounded to this many decimals before the ceiling, so ceil(0.7 * 10) is 7, not 8
KEEP_DECIMALS = 9


def hyperbolic_levels(features: torch.Tensor, k: float = 1.0, reference: str = "origin", *,
                      labels: torch.Tensor | None = None, lift: str = "exp", norm: str = "rescale",
                      target_radius: float = DEFAULT_TARGET_RADIUS, feature_scale: float = 1.0) -> torch.Tensor:
    """Per-sample hyperbolic level ``[N]`` (float64): ``d_L(x_i, o)`` or ``d_L(x_i, c_{y_i})`` of the lifted
    features, where ``c_y`` is the closed-form centroid of class ``y`` (all samples form one class when
    ``labels`` is None). One rescale factor (from the mean norm of all ``features``) serves every class, so levels
    are comparable across classes. Reconstruction: our choice (``docs/methods/hdd.md`` "Pruning"). Shown in
    notebook 02 (02_hdd_pruning) and notebook 01 (01_manifold_embeddings).
    """
    if reference not in REFERENCES:
        raise GeoddError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if features.dim() != 2 or len(features) == 0:
        raise GeoddError(f"features must be [N, D] with N >= 1, got shape {tuple(features.shape)}")
    factor = feature_factor(features, k, lift=lift, norm=norm, target_radius=target_radius,
                            feature_scale=feature_scale)
    points = lift_features(features, k, lift=lift, norm=norm, factor=factor)
    if reference == "origin":
        return lorentz_dist0(points, k)
    if labels is None:
        return lorentz_distance(points, lorentz_centroid(points, k), k)
    labels = labels.to(points.device)
    levels = torch.empty(len(points), dtype=torch.float64, device=points.device)
    for c in torch.unique(labels).tolist():
        mask = labels == c
        levels[mask] = lorentz_distance(points[mask], lorentz_centroid(points[mask], k), k)
    return levels


def keep_count(keep: float, n: int) -> int:
    """``ceil(keep * n)`` for ``keep`` in (0, 1] (computed on ``keep * n`` rounded to ``KEEP_DECIMALS``).
    Shown in notebook 02 (02_hdd_pruning)."""
    if not 0 < keep <= 1:
        raise GeoddError(f"keep must be a fraction in (0, 1], got {keep}")
    return math.ceil(round(keep * n, KEEP_DECIMALS))


def prune_indices(features: torch.Tensor, labels: torch.Tensor, keep: float, k: float = 1.0,
                  reference: str = "origin", **level_options) -> torch.Tensor:
    """Indices (LongTensor, ascending, on ``labels``' device) of the samples kept: per class ``c`` the
    ``ceil(keep * n_c)`` samples with the smallest ``hyperbolic_levels`` (``level_options`` are passed on:
    lift, norm, target_radius, feature_scale). ``keep`` must be in (0, 1]. Shown in notebook 02 (02_hdd_pruning)."""
    if not 0 < keep <= 1:
        raise GeoddError(f"keep must be a fraction in (0, 1], got {keep}")
    if labels.dim() != 1 or len(labels) != len(features):
        raise GeoddError(f"labels must be [N] matching features [N, D]; got {tuple(labels.shape)} and "
                         f"{tuple(features.shape)}")
    levels = hyperbolic_levels(features, k, reference, labels=labels, **level_options).to(labels.device)
    kept = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()           # ascending, so a stable sort breaks ties by index
        order = torch.sort(levels[idx], stable=True).indices
        kept.append(idx[order[:keep_count(keep, len(idx))]])
    return torch.sort(torch.cat(kept)).values


def embed_dataset(images: torch.Tensor, net: torch.nn.Module, *, batch_size: int = 512,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """``net.embed`` of ``images`` in batches under ``torch.inference_mode`` in eval mode (restored after).
    Shown in notebook 02 (02_hdd_pruning)."""
    if batch_size < 1:
        raise GeoddError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            feats = [net.embed(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(feats).clone()


def prune_dataset(dataset, keep: float, *, net: torch.nn.Module | None = None, seed: int = 0, k: float = 1.0,
                  reference: str = "origin", batch_size: int = 512, device: torch.device | str | None = None,
                  **level_options):
    """``dataset.subset(prune_indices(...))``: embed ``dataset.images`` with ``net`` (default: a frozen random
    ConvNet from ``geodd.nets.make_network("convnet", ..., seed=seed)``, on ``device`` or geodd's default
    device), then keep per class the ``ceil(keep * n_c)`` samples of lowest hyperbolic level. Shown in notebook 02
    (02_hdd_pruning), through ``DistillConfig.keep``."""
    if not 0 < keep <= 1:
        raise GeoddError(f"keep must be a fraction in (0, 1], got {keep}")
    if net is None:
        from .nets import make_network

        device = torch.device(device) if device is not None else default_device()
        net = make_network("convnet", dataset.channels, dataset.num_classes, dataset.im_size, seed=seed,
                           device=device)
    feats = embed_dataset(dataset.images, net, batch_size=batch_size, device=device)
    kept = prune_indices(feats, dataset.labels.to(feats.device), keep, k, reference, **level_options)
    return dataset.subset(kept.cpu())


__all__ = ["REFERENCES", "KEEP_DECIMALS", "hyperbolic_levels", "keep_count", "prune_indices", "embed_dataset",
           "prune_dataset"]
