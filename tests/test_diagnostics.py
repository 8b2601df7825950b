"""Notebook 01's diagnostics: the study code (geodd.studies.manifold_embeddings: feature nets, delta table, radii,
summary) and the generic geometry diagnostics (geodd.geometry.diagnostics: kNN, recall, surfaces, twins)."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from geodd import GeoddError
from geodd.geometry import diagnostics as gd
from geodd.studies import manifold_embeddings as me
from geodd.data import Dataset
from geodd.evaluate import BATCH_TRAIN, LR_NET


def _tiny_dataset(n_per: int = 6, classes: int = 2, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per)
    images = torch.randn(len(labels), 1, 8, 8, generator=gen) + labels.view(-1, 1, 1, 1).float()
    return Dataset("tiny", images, labels, classes, (0.0,), (1.0,), [])


def test_feature_network_random_is_seeded_and_trained_is_cached(tmp_path):
    ds = _tiny_dataset()
    a, info = me.feature_network(ds, arch="mlp", epochs=0, seed=3, device=torch.device("cpu"))
    b, _ = me.feature_network(ds, arch="mlp", epochs=0, seed=3, device=torch.device("cpu"))
    assert info.epochs == 0 and not a.training
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)
    t1, i1 = me.feature_network(ds, arch="mlp", epochs=1, train_size=8, seed=3, root=tmp_path,
                                device=torch.device("cpu"))
    t2, i2 = me.feature_network(ds, arch="mlp", epochs=1, train_size=8, seed=3, root=tmp_path,
                                device=torch.device("cpu"))
    assert not i1.cached and i2.cached and i1.train_size == 8 and i2.path == i1.path
    for p1, p2 in zip(t1.state_dict().values(), t2.state_dict().values()):
        torch.testing.assert_close(p1, p2)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), t1.parameters()))  # training changed it
    with pytest.raises(GeoddError):
        me.feature_network(ds, arch="mlp", epochs=-1)
    # the cache is keyed by geodd.io.fingerprint, which keeps the former config_hash names (sha256 of sorted JSON)
    config = dict(dataset=ds.name, n=len(ds), arch="mlp", epochs=1, per_class=4, seed=3, amp="fp32", lr=LR_NET,
                  batch_size=BATCH_TRAIN)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
    assert i1.path.endswith(f"nb01-nets/mlp-{digest}.pt")


def test_net_outputs_match_embed_and_forward():
    ds = _tiny_dataset()
    net, _ = me.feature_network(ds, arch="mlp", epochs=0, seed=0, device=torch.device("cpu"))
    feats, logits = me.net_outputs(net, ds.images, batch_size=5)
    with torch.no_grad():
        torch.testing.assert_close(feats, net.embed(ds.images))
        torch.testing.assert_close(logits, net(ds.images))
    conf = me.true_class_confidence(logits, ds.labels)
    torch.testing.assert_close(conf, logits.softmax(-1)[torch.arange(len(ds)), ds.labels])


def test_delta_table_tree_and_square():
    # class 0: simplex vertices (equidistant: a star, i.e. a tree metric, delta 0);
    # class 1: the corners of a unit square (delta = (2 sqrt 2 - 2) / 2, diameter sqrt 2)
    simplex = torch.eye(4, dtype=torch.float64)
    square = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0]], dtype=torch.float64) + 5
    feats = torch.cat((simplex, square))
    labels = torch.tensor([0] * 4 + [1] * 4)
    df = me.delta_table({"x": feats}, labels, ["star", "square"])
    assert list(df["class"]) == ["star", "square", "all"] and "delta_rel_twin" in df
    assert df.delta_rel[0] == pytest.approx(0.0, abs=1e-12)
    assert df.delta_rel[1] == pytest.approx((math.sqrt(2) - 1) / math.sqrt(2))
    assert df.points[2] == 4 and bool(df.exact.all())
    with pytest.raises(GeoddError):
        me.delta_table({"x": feats[:6]}, labels)


def test_gaussian_twin_keeps_class_span():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64) @ torch.randn(2, 6, generator=gen, dtype=torch.float64)
    const = torch.ones(4, 6, dtype=torch.float64) * 3
    labels = torch.tensor([0] * 5 + [1] * 4)
    twin = gd.gaussian_twin(torch.cat((x, const)), labels, seed=1)
    torch.testing.assert_close(twin[5:], const)                   # zero covariance: the twin is the point itself
    centred = twin[:5] - x.mean(0)
    assert torch.linalg.matrix_rank(torch.cat((x - x.mean(0), centred))) == 2   # stays in the class's span
    with pytest.raises(GeoddError):
        gd.gaussian_twin(x[:1], labels[:1])


def test_radius_extremes_and_score():
    radii = torch.tensor([3.0, 1.0, 2.0, 0.5, 9.0, 4.0], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    near, far = me.radius_extremes(radii, labels, 2)
    assert near.tolist() == [[1, 2], [3, 5]] and far.tolist() == [[0, 2], [4, 5]]
    with pytest.raises(GeoddError):
        me.radius_extremes(radii, labels, 4)
    conf = 1.0 / (1.0 + radii)                                    # nearer = more confident, perfectly
    df = me.radius_vs_score({"r": radii}, conf, labels, quantile=0.34)
    assert df.rho.tolist() == pytest.approx([-1.0, -1.0])
    assert bool((df.score_near > df.score_far).all())
    summary = me.score_summary(df)
    assert summary.loc["r", "rho"] == pytest.approx(-1.0) and summary.loc["r", "classes with rho < 0"] == 2
    with pytest.raises(GeoddError):
        me.radius_vs_score({"r": radii}, conf[:3], labels)


def test_knn_graph_self_first_and_sorted():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=gen)
    idx, dist = gd.knn_graph(x, 4)
    assert (idx[:, 0] == range(20)).all() and (dist[:, 0] == 0).all()
    assert (dist[:, 1:] >= dist[:, :-1]).all()
    brute = torch.cdist(x.double(), x.double()).sort(1).values[:, :4]
    torch.testing.assert_close(torch.as_tensor(dist[:, 1:]), brute[:, 1:])
    with pytest.raises(GeoddError):
        gd.knn_graph(x[:4], 4)


def test_space_distances():
    e = torch.eye(3, dtype=torch.float64)
    sph = gd.space_distances(e, "spherical")
    torch.testing.assert_close(sph, (1 - torch.eye(3, dtype=torch.float64)) * math.pi / 2)
    assert float(gd.space_distances(torch.stack((e[0], -e[0])), "spherical")[0, 1]) == pytest.approx(math.pi)
    r = torch.tensor([0.0, 1.5], dtype=torch.float64)  # two points on one geodesic
    hyp = torch.stack((r.cosh(), r.sinh(), torch.zeros_like(r)), 1)
    assert float(gd.space_distances(hyp, "hyperbolic")[0, 1]) == pytest.approx(1.5, rel=1e-9)
    with pytest.raises(GeoddError):
        gd.space_distances(e, "toroidal")


def test_neighbour_recall_identity_and_scrambled():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    assert gd.neighbour_recall(x, x, "euclidean", 5) == 1.0
    assert gd.neighbour_recall(x, x[torch.randperm(40, generator=gen)], "euclidean", 5) < 0.5


@pytest.mark.parametrize("space", ["euclidean", "spherical", "hyperbolic"])
def test_fitted_surface_lies_on_its_manifold(space):
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(60, 2, generator=gen, dtype=torch.float64)
    if space == "euclidean":
        pts = torch.stack((u[:, 0], u[:, 1], 0.5 * u[:, 0] - u[:, 1] + 2), 1)
    elif space == "spherical":
        v = torch.randn(60, 3, generator=gen, dtype=torch.float64) + torch.tensor([0.0, 0.0, 2.0])
        pts = 2.0 * v / v.norm(dim=1, keepdim=True)                                    # radius 2
    else:
        pts = torch.cat(((2.0 + u.pow(2).sum(1, keepdim=True)).sqrt(), u), 1)            # k = 2
    s = gd.fitted_surface(pts, space, resolution=7)
    g = torch.as_tensor(torch.stack([torch.as_tensor(a) for a in s.grid], -1))
    assert g.shape == (7, 7, 3) and s.rel_residual < 1e-6
    if space == "euclidean":
        assert s.kind == "plane"
        torch.testing.assert_close(0.5 * g[..., 0] - g[..., 1] + 2, g[..., 2])
    elif space == "spherical":
        assert s.value == pytest.approx(2.0)
        torch.testing.assert_close(g.norm(dim=-1), torch.full((7, 7), 2.0, dtype=torch.float64))
    else:
        assert s.value == pytest.approx(2.0, rel=1e-6)
        torch.testing.assert_close(g[..., 0] ** 2 - g[..., 1] ** 2 - g[..., 2] ** 2,
                                   torch.full((7, 7), 2.0, dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_suggest_geometry_rule_and_summary():
    rec = {"euclidean": 0.5, "plane": 0.40, "hyperbolic": 0.45, "spherical": 0.30}
    assert me.suggest_geometry(rec, 0.5, 0.01) == "hyperbolic (tree-like, norms concentrated)"
    assert me.suggest_geometry({**rec, "hyperbolic": 0.41}, 1.0, 0.5) == "euclidean"
    with pytest.raises(GeoddError):
        me.suggest_geometry({"hyperbolic": 0.4}, 1.0, 0.5)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(2).repeat_interleave(6)
    deltas = me.delta_table({"a": feats, "b": feats}, labels)
    out = me.geometry_summary({"a": feats, "b": feats}, deltas, {"a": rec})
    assert list(out.source) == ["a", "b"] and out.suggests[1] == "(not embedded)"
    assert out.recall_hyperbolic[0] == 0.45 and math.isnan(out.recall_plane[1])
    assert out.norm_cv[0] == pytest.approx(gd.norm_spread(feats))


@pytest.mark.slow
def test_embed_spaces_shapes_and_manifolds():
    """One UMAP call per space on a tiny set (the first pays numba's JIT)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.cat((torch.randn(20, 6, generator=gen), torch.randn(20, 6, generator=gen) + 4))
    emb = gd.embed_spaces(x, n_neighbors=8, n_epochs=20)
    assert set(emb) == set(gd.SPACES) and emb["plane"].shape == (40, 2) and emb["euclidean"].shape == (40, 3)
    torch.testing.assert_close(emb["spherical"].norm(dim=1), torch.ones(40, dtype=torch.float64))
    h = emb["hyperbolic"]
    torch.testing.assert_close(h[:, 0] ** 2 - h[:, 1:].pow(2).sum(1), torch.ones(40, dtype=torch.float64))
    assert gd.neighbour_recall(x, emb["plane"], "plane", 5) > 0.3
    with pytest.raises(GeoddError):
        gd.embed_spaces(x, ("toroidal",))
