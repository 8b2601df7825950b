"""geodd.prune: hyperbolic levels and per-class pruning (HDD's rule, reconstructed)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geodd import GeoddError
from geodd import geometry as g
from geodd.data import Dataset
from geodd.prune import hyperbolic_levels, keep_count, prune_dataset, prune_indices


def _labelled(sizes: list[int], dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=gen)]
    feats = torch.randn(len(labels), dim, generator=gen) * (1 + torch.rand(len(labels), 1, generator=gen) * 20)
    return feats + labels[:, None].float(), labels


def test_keep_counts_are_exact_ceilings():
    sizes = [10, 7, 3, 1, 20]
    feats, labels = _labelled(sizes)
    for keep in (0.05, 0.2, 0.5, 0.7, 1.0):
        kept = prune_indices(feats, labels, keep)
        assert kept.dtype == torch.long and bool((kept.diff() > 0).all())
        counts = torch.bincount(labels[kept], minlength=len(sizes)).tolist()
        assert counts == [math.ceil(round(keep * n, 9)) for n in sizes]
    assert keep_count(0.7, 10) == 7 and keep_count(0.2, 10) == 2 and keep_count(0.21, 10) == 3
    assert keep_count(0.01, 3) == 1
    assert prune_indices(feats, labels, 1.0).tolist() == list(range(len(labels)))
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(GeoddError):
            prune_indices(feats, labels, bad)


@pytest.mark.parametrize("reference", ("origin", "centroid"))
@pytest.mark.parametrize("lift", g.LIFT_MODES)
def test_kept_samples_are_the_nearest(reference, lift):
    feats, labels = _labelled([15, 9, 12], seed=1)
    levels = hyperbolic_levels(feats, 1.0, reference, labels=labels, lift=lift)
    kept = prune_indices(feats, labels, 0.4, 1.0, reference, lift=lift)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    mask[kept] = True
    for c in range(3):
        cls = labels == c
        assert float(levels[cls & mask].max()) <= float(levels[cls & ~mask].min())


def test_levels_match_geometry():
    feats, labels = _labelled([8, 8], seed=2)
    k = 2.0
    origin = hyperbolic_levels(feats, k, "origin", norm="fixed", feature_scale=0.1)
    torch.testing.assert_close(origin, 0.1 * feats.double().norm(dim=1))          # exp lift: d(o, x) = |v|
    pts = g.lift(0.1 * feats.double(), k)
    cent = hyperbolic_levels(feats, k, "centroid", labels=labels, norm="fixed", feature_scale=0.1)
    for c in (0, 1):
        m = labels == c
        torch.testing.assert_close(cent[m], g.lorentz_distance(pts[m], g.lorentz_centroid(pts[m], k), k))
    # the origin ranking equals the Euclidean norm ranking (any single factor, either lift)
    lev = hyperbolic_levels(feats, k, "origin", lift="projx")
    assert torch.equal(torch.argsort(lev), torch.argsort(feats.double().norm(dim=1)))
    with pytest.raises(GeoddError):
        hyperbolic_levels(feats, k, "leaf")


class _NormNet(nn.Module):
    """A stand-in for a trained net: the embedding is the flattened image, so levels follow the image norm."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) + self.anchor


def _dataset(n: int = 24, seed: int = 3) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 8, 8, generator=gen) * torch.linspace(0.5, 3.0, n)[:, None, None, None]
    labels = torch.arange(n) % 3
    return Dataset("toy", images, labels, 3, (0.0,), (1.0,), [])


def test_prune_dataset_with_random_convnet_and_given_net():
    ds = _dataset()
    small = prune_dataset(ds, 0.5, seed=0, batch_size=5, device="cpu")
    assert len(small) == 12 and small.counts == [4, 4, 4]
    again = prune_dataset(ds, 0.5, seed=0, batch_size=24, device="cpu")
    assert torch.equal(small.images, again.images)  # seeded net, batching does not matter
    net = _NormNet().train()
    by_norm = prune_dataset(ds, 0.25, net=net, batch_size=7)
    assert net.training  # mode restored
    for c in range(3):
        idx = ds.indices_by_class[c]
        order = idx[torch.argsort(ds.images[idx].flatten(1).norm(dim=1))][:2]
        assert torch.equal(by_norm.images[by_norm.labels == c], ds.images[torch.sort(order).values])
    with pytest.raises(GeoddError):
        prune_dataset(ds, 0.0)
