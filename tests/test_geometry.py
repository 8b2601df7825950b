"""geodd.geometry: lifts, centroid, distance, Poincare maps, the weighting probe and the diagnostics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geodd import GeoddError
from geoopt.manifolds.lorentz import math as lmath

from geodd import geometry as g

KS = (0.1, 1.0, 10.0)


def _minkowski_sq(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return -x[..., 0] ** 2 + x[..., 1:].pow(2).sum(-1)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("mode", g.LIFT_MODES)
def test_lift_lies_on_hyperboloid(k, mode):
    v = torch.randn(40, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = v / v.norm(dim=1, keepdim=True) * torch.linspace(0.0, 5.0, 40, dtype=torch.float64)[:, None] * math.sqrt(k)
    p = g.lift(v, k, mode)
    assert p.shape == (40, 17) and p.dtype == torch.float64
    torch.testing.assert_close(_minkowski_sq(p), torch.full((40,), -k, dtype=torch.float64), rtol=1e-10, atol=1e-9)
    assert bool((p[:, 0] > 0).all())
    r = g.lorentz_dist0(p, k)
    expected = v.norm(dim=1) if mode == "exp" else math.sqrt(k) * torch.asinh(v.norm(dim=1) / math.sqrt(k))
    torch.testing.assert_close(r, expected, rtol=1e-7, atol=1e-6)
    # float32 in, float32 out, still on the hyperboloid (moderate radii)
    p32 = g.lift(v.float(), k, mode)
    assert p32.dtype == torch.float32
    torch.testing.assert_close(_minkowski_sq(p32), torch.full((40,), -k, dtype=torch.float64), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("k", KS)
def test_release_clamp_keeps_only_direction(k):
    v = torch.randn(8, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = (v / v.norm(dim=1, keepdim=True) * torch.linspace(11, 40, 8, dtype=torch.float64)[:, None] * math.sqrt(k))
    v.requires_grad_(True)
    p = g.lift(v, k, "exp", clamp="release")
    r = g.lorentz_dist0(p, k)
    torch.testing.assert_close(r, torch.full((8,), g.RELEASE_EXP_MAX_THETA * math.sqrt(k), dtype=torch.float64))
    # same direction as the feature
    cos = torch.nn.functional.cosine_similarity(p[:, 1:], v, dim=1)
    torch.testing.assert_close(cos, torch.ones(8, dtype=torch.float64))
    # the gradient through the norm is exactly zero (the radius is constant)
    (grad,) = torch.autograd.grad(r.sum(), v)
    assert float(grad.abs().max()) < 1e-9
    # below the clamp, the release lift equals the plain exp lift
    w = v.detach() / 4 * (9 / 10)
    w = w / w.norm(dim=1, keepdim=True) * 9 * math.sqrt(k)
    torch.testing.assert_close(g.lift(w, k, clamp="release"), g.lift(w, k))


def test_safe_guard_warns_and_stays_finite():
    v = torch.randn(4, 8, dtype=torch.float64) * 100
    with pytest.warns(RuntimeWarning, match="clamped"):
        p = g.lift(v, 0.1)
    assert bool(torch.isfinite(p).all())
    assert float(g.lorentz_dist0(p, 0.1).max()) <= g.SAFE_EXP_MAX_THETA * math.sqrt(0.1) + 1e-9


@pytest.mark.parametrize("k", KS)
def test_centroid_symmetric_set_single_point_and_weights(k):
    v = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    pts = g.lift(torch.cat((v, -v)), k)
    c = g.lorentz_centroid(pts, k)
    torch.testing.assert_close(c, g.lorentz_origin(6, k), atol=1e-12, rtol=0)
    for i in range(3):
        torch.testing.assert_close(g.lorentz_centroid(pts[i:i + 1], k), pts[i], rtol=1e-9, atol=1e-12)
    w = torch.zeros(10, dtype=torch.float64)
    w[3] = 2.0
    torch.testing.assert_close(g.lorentz_centroid(pts, k, w), pts[3], rtol=1e-9, atol=1e-12)
    # any set: result on the hyperboloid, and the batched form matches per-batch calls
    c2 = g.lorentz_centroid(torch.stack((pts, pts.flip(0) * 1)), k)
    torch.testing.assert_close(_minkowski_sq(c2), torch.full((2,), -k, dtype=torch.float64))
    w_mean = g.lorentz_centroid(pts[:4], k, torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64))
    amb = (torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64)[:, None] * pts[:4]).sum(0)
    torch.testing.assert_close(w_mean / w_mean[0], amb / amb[0])
    with pytest.raises(GeoddError):
        g.lorentz_centroid(pts, k, -torch.ones(10))



@pytest.mark.parametrize("k", KS)
def test_centroid_rows_of_weights_and_a_learnt_curvature(k):
    """[C, N] weights give C centroids of the same points (GeoDM's class prototypes); a tensor k stays in the graph."""
    pts = g.lift(torch.randn(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8)), k)
    w = torch.rand(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    rows = g.lorentz_centroid(pts, k, w)
    assert rows.shape == (3, 5)
    for i in range(3):
        torch.testing.assert_close(rows[i], g.lorentz_centroid(pts, k, w[i]), rtol=1e-12, atol=1e-12)
    kt = torch.tensor(k, dtype=torch.float64, requires_grad=True)
    c = g.lorentz_centroid(pts, kt, w, check=False)
    torch.testing.assert_close(c, rows, rtol=1e-12, atol=1e-12)
    (gk,) = torch.autograd.grad(c[:, 0].sum(), kt)
    torch.testing.assert_close(gk, rows[:, 0].sum() / (2 * k))  # c scales with sqrt(k) at fixed points
    with pytest.raises(GeoddError, match="one per point"):
        g.lorentz_centroid(pts, k, w[:, :4])


def test_poincare_map_handles_batches_where_geoopts_does_not():
    x = g.lift(torch.randn(2, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), 1.0)
    p = g.lorentz_to_poincare(x, 1.0)
    assert p.shape == (2, 6, 3)
    torch.testing.assert_close(p[1], g.lorentz_to_poincare(x[1], 1.0))
    torch.testing.assert_close(p[0], lmath.lorentz_to_poincare(x[0], torch.tensor(1.0, dtype=torch.float64)))


def test_every_constant_lives_in_constants_with_a_comment():
    """One home for each eps/clamp: constants.py defines them, each with a ``#:`` comment; no other geometry or
    matcher module assigns a name ending in _EPS or _FLOOR."""
    import importlib
    import inspect
    import re

    src = inspect.getsource(importlib.import_module("geodd.geometry.constants"))
    for name in g.constants.__all__:
        assert re.search(rf"#: .+\n{name} = ", src), name
    for mod in ("geodd.geometry.lorentz", "geodd.geometry.product", "geodd.geometry.diagnostics",
                "geodd.matchers.geodm", "geodd.matchers.hdd", "geodd.matchers.sdd", "geodd.transport"):
        assert not re.search(r"^[A-Z_]+_(EPS|FLOOR) = ", inspect.getsource(importlib.import_module(mod)), re.M), mod


@pytest.mark.parametrize("k", KS)
def test_distance_symmetric_zero_and_arcosh(k):
    gen = torch.Generator().manual_seed(3)
    x = g.lift(torch.randn(20, 5, dtype=torch.float64, generator=gen) * 2 * math.sqrt(k), k)
    y = g.lift(torch.randn(20, 5, dtype=torch.float64, generator=gen) * 2 * math.sqrt(k), k)
    d = g.lorentz_distance(x, y, k)
    torch.testing.assert_close(d, g.lorentz_distance(y, x, k))
    assert float(g.lorentz_distance(x, x, k).abs().max()) == 0.0
    xn, yn = x.numpy(), y.numpy()
    inner = -xn[:, 0] * yn[:, 0] + (xn[:, 1:] * yn[:, 1:]).sum(1)
    ref = math.sqrt(k) * np.arccosh(-inner / k)
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-10)
    torch.testing.assert_close(d, g.lorentz(k).dist(x, y))
    # broadcasting and the triangle inequality
    dxy = g.lorentz_distance(x[:, None], y[None], k)
    assert dxy.shape == (20, 20)
    dxx = g.lorentz_distance(x[:, None], x[None], k)
    assert bool((dxx[:, :, None] + dxy[None] >= dxy[:, None, :] - 1e-9).all())


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_distance_gradient_finite_at_coincidence(dtype):
    x = g.lift(torch.randn(3, 4, dtype=dtype), 1.0).requires_grad_(True)
    y = x.detach().clone()
    (gx,) = torch.autograd.grad(g.lorentz_distance(x, y).sum(), x)
    assert bool(torch.isfinite(gx).all()) and float(gx.abs().max()) == 0.0
    x2 = (y.double() + 1e-9).to(dtype).requires_grad_(True)
    (gx2,) = torch.autograd.grad(g.lorentz_distance(x2, y).sum(), x2)
    assert bool(torch.isfinite(gx2).all())
    # away from coincidence the gradient through a lift equals that of geoopt's arcosh distance
    for k in KS:
        v = torch.tensor([[1.0, 0.5]], dtype=torch.float64, requires_grad=True)
        b = g.lift(torch.tensor([[0.0, 2.0]], dtype=torch.float64), k)
        (ours,) = torch.autograd.grad(g.lorentz_distance(g.lift(v, k), b, k).sum(), v)
        (ref,) = torch.autograd.grad(g.lorentz(k).dist(g.lift(v, k), b).sum(), v)
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("k", KS)
def test_poincare_round_trip(k):
    v = torch.randn(30, 3, dtype=torch.float64) * 2 * math.sqrt(k)
    x = g.lift(v, k)
    p = g.lorentz_to_poincare(x, k)
    assert bool((p.norm(dim=1) < 1).all())
    torch.testing.assert_close(p.norm(dim=1), torch.tanh(v.norm(dim=1) / (2 * math.sqrt(k))))
    torch.testing.assert_close(g.poincare_to_lorentz(p, k), x, rtol=1e-9, atol=1e-9)


def test_frechet_mean_is_stationary_and_collinear_case():
    k = 2.0
    x = g.lift(torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 2, k)
    m = g.frechet_mean(x, k)
    torch.testing.assert_close(_minkowski_sq(m), torch.tensor(-k, dtype=torch.float64))
    grad = g.lorentz(k).logmap(m.unsqueeze(0), x).sum(0)
    assert float(grad.norm()) < 1e-7
    # points on one geodesic through the origin: the mean is the average signed distance
    s = torch.tensor([-1.0, 0.5, 3.0, 4.5], dtype=torch.float64)
    line = g.lift(s[:, None] * torch.tensor([[1.0, 0.0]], dtype=torch.float64), k)
    mean = g.frechet_mean(line, k)
    torch.testing.assert_close(g.lorentz_dist0(mean, k), s.mean(), rtol=1e-8, atol=1e-8)


def test_centroid_pull_against_analytic_form_and_claim():
    radii = torch.tensor([0.1, 1.0, 3.0, 8.0], dtype=torch.float64)
    n = 2
    res = g.centroid_pull(radii, 1.0, num_anchors=n)
    # 1-D closed form: ambient mean ((n + cosh d), sinh d) / (n+1) -> tanh(p) = sinh d / (n + cosh d)
    torch.testing.assert_close(res.pull, torch.atanh(torch.sinh(radii) / (n + torch.cosh(radii))))
    torch.testing.assert_close(res.frechet_pull, radii / (n + 1))       # geodesic through the origin
    torch.testing.assert_close(res.tangent_pull, radii / (n + 1))
    # the closed form weights a far sample *more* (omega grows toward n), the claim weights it less
    assert bool((res.effective_weight.diff() > 0).all()) and float(res.effective_weight[-1]) < n
    assert bool((res.claimed_weight.diff() < 0).all())
    torch.testing.assert_close(g.claimed_weight(torch.tensor([0.0, 2.0]), 4.0),
                               torch.tensor([1.0, 1.0 / math.sinh(1.0)], dtype=torch.float64))
    spread = g.centroid_pull(radii, 1.0, num_anchors=4, anchor_radius=2.0)
    assert float(spread.effective_weight[0]) == pytest.approx(1 / math.cosh(2.0), rel=1e-2)
    with pytest.raises(GeoddError):
        g.centroid_pull(radii, num_anchors=3, anchor_radius=1.0)


def _tree_distances() -> torch.Tensor:
    """Shortest-path distances of a weighted tree with 10 nodes (Floyd-Warshall)."""
    parent = [0, 0, 0, 1, 1, 2, 3, 3, 5, 8]
    w = [0.0, 1.0, 2.0, 0.5, 1.5, 0.7, 2.2, 0.3, 1.1, 0.9]
    n = len(parent)
    d = torch.full((n, n), float("inf"), dtype=torch.float64)
    d.fill_diagonal_(0.0)
    for i in range(1, n):
        d[i, parent[i]] = d[parent[i], i] = w[i]
    for m in range(n):
        d = torch.minimum(d, d[:, m:m + 1] + d[m:m + 1, :])
    return d


def test_delta_hyperbolicity_tree_circle_and_sampling():
    tree = _tree_distances()
    res = g.delta_hyperbolicity(tree, precomputed=True)
    assert res.exact and res.absolute == pytest.approx(0.0, abs=1e-12) and res.diameter > 0
    star = torch.rand(12, dtype=torch.float64) + 0.5
    star_d = star[:, None] + star[None]
    star_d.fill_diagonal_(0.0)
    assert g.delta_hyperbolicity(star_d, precomputed=True).absolute == pytest.approx(0.0, abs=1e-12)
    sampled = g.delta_hyperbolicity(tree, 2000, torch.Generator().manual_seed(0), precomputed=True,
                                    exact_max_points=4)
    assert not sampled.exact and sampled.absolute == pytest.approx(0.0, abs=1e-12)
    # points on a circle (chordal distances): a square gives sums 4 (diagonals) and 2 sqrt 2 -> delta = 2 - sqrt 2
    a = torch.arange(4, dtype=torch.float64) * math.pi / 2
    square = torch.stack((a.cos(), a.sin()), 1)
    sq = g.delta_hyperbolicity(square)
    assert sq.absolute == pytest.approx(2 - math.sqrt(2)) and sq.relative == pytest.approx((2 - math.sqrt(2)) / 2)
    a = torch.linspace(0, 2 * math.pi, 31, dtype=torch.float64)[:-1]
    circle = torch.stack((a.cos(), a.sin()), 1)
    exact = g.delta_hyperbolicity(circle)
    assert exact.exact and exact.relative > 0.2
    lower = g.delta_hyperbolicity(circle, 500, torch.Generator().manual_seed(1), exact_max_points=10)
    assert 0 < lower.absolute <= exact.absolute + 1e-12
    sub = g.delta_hyperbolicity(torch.randn(200, 3), 1000, torch.Generator().manual_seed(2), max_points=50)
    assert sub.num_points == 50 and sub.relative > 0
    with pytest.raises(GeoddError):
        g.delta_hyperbolicity(torch.randn(3, 2))


def test_sphere_and_hyperboloid_fits_recover_parameters():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(400, 12, dtype=torch.float64, generator=gen)
    centre = torch.zeros(12, dtype=torch.float64)
    centre[0] = 5.0
    sphere = x / x.norm(dim=1, keepdim=True) * 3.0 + centre
    fit = g.fit_sphere_radius(sphere)
    assert fit.value == pytest.approx(3.0, rel=1e-2) and fit.rel_residual < 1e-2
    k = 2.5
    pts = g.lift(torch.randn(400, 11, dtype=torch.float64, generator=gen) * 1.5, k, "projx")
    pts = pts + torch.tensor([3.0] + [0.0] * 11, dtype=torch.float64)
    rot, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64, generator=gen))
    hyp = g.fit_hyperboloid_curvature(pts @ rot.T)
    assert hyp.value == pytest.approx(k, rel=1e-3) and hyp.offset == pytest.approx(3.0, rel=1e-3)
    assert g.fit_hyperboloid_curvature(pts @ rot.T, axis=rot[:, 0], refine_axis=False).value == pytest.approx(k)


def test_invalid_arguments_raise():
    with pytest.raises(GeoddError):
        g.lift(torch.randn(3, 2), k=0.0)
    with pytest.raises(GeoddError):
        g.lift(torch.randn(3, 2), mode="log")
    with pytest.raises(GeoddError):
        g.lift(torch.randn(3, 2), clamp="none")
    with pytest.raises(GeoddError):
        g.embed_3d(torch.randn(10, 3), "toroidal")


@pytest.mark.slow
def test_embed_3d_points_on_their_manifolds():
    """All UMAP checks in one test: the first fit pays numba's JIT (~15 s on 2 cores)."""
    gen = torch.Generator().manual_seed(6)
    x = torch.cat((torch.randn(30, 8, generator=gen), torch.randn(30, 8, generator=gen) + 4))
    opts = dict(seed=0, n_neighbors=10, n_epochs=50)
    euc = g.embed_3d(x, "euclidean", **opts)
    assert euc.shape == (60, 3) and bool(torch.isfinite(euc).all())
    hyp = g.embed_3d(x, "hyperbolic", **opts)
    assert hyp.shape == (60, 3) and bool((hyp[:, 0] >= 1).all())
    torch.testing.assert_close(_minkowski_sq(hyp), -torch.ones(60, dtype=torch.float64))
    assert bool((g.lorentz_to_poincare(hyp).norm(dim=1) < 1).all())
    sph = g.embed_3d(x, "spherical", **opts)
    torch.testing.assert_close(sph.norm(dim=1), torch.ones(60, dtype=torch.float64))
    torch.testing.assert_close(g.embed_3d(x, "hyperbolic", **opts), hyp)  # seeded: reproducible
