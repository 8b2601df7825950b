"""GeoDM (reconstruction): manifold constraints at extreme curvature, sign-safe learnable curvatures, the DM limit,
geometry learning on a toy problem, the OT product cost, finite image gradients, checkpoints."""
from __future__ import annotations

import io
import math

import pytest
import torch
from geoopt.manifolds import Sphere
from geoopt.manifolds.lorentz import math as lorentz

from geodd import GeoddError
from geodd.matchers import MATCHERS, GeoDMMatcher, build_matcher, dm_loss
from geodd.matchers import geodm as G
from geodd.ot import sinkhorn_cost

D = 16


def _matcher(seed=0, **kw):
    kw.setdefault("dims", (4,) * len(kw.get("factors", G.FACTORS)))
    m = GeoDMMatcher(**kw)
    m.start_iteration(0, torch.Generator().manual_seed(seed), D, torch.device("cpu"))
    return m


def _toy(n_per=20, classes=3, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(classes, D, generator=g)
    x = torch.cat([means[c] + spread * torch.randn(n_per, D, generator=g) for c in range(classes)])
    y = torch.arange(classes).repeat_interleave(n_per)
    return x, y


def test_registered_and_built_by_name():
    assert MATCHERS["geodm"] is GeoDMMatcher
    assert isinstance(build_matcher("geodm", factors=("E", "S")), GeoDMMatcher)


@pytest.mark.parametrize("c", [1e-3, 1.0, 1e2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_points_stay_on_their_manifolds_at_extreme_curvature(c, dtype):
    m = _matcher()
    m.set_curvature("H", -c)
    m.set_curvature("S", c)
    assert math.isclose(float(m.curvature("H").detach()), -c, rel_tol=1e-5)
    assert math.isclose(float(m.curvature("S").detach()), c, rel_tol=1e-5)
    x, _ = _toy()
    for scale in (1e-3, 1.0, 1e2):
        pts = m.embed((scale * x).to(dtype))
        k, R = 1.0 / c, c ** -0.5
        assert float(((lorentz.inner(pts["H"], pts["H"]) + k).abs() / k).max()) < 1e-5
        assert float(((pts["S"].pow(2).sum(-1) - R * R).abs() / (R * R)).max()) < 1e-5
        assert (pts["H"][:, 0] > 0).all()  # the upper sheet
        assert all(v < 1e-5 for v in m.manifold_residual((scale * x).to(dtype)).values())


def test_curvatures_keep_their_signs_under_large_learning_rates():
    x, y = _toy()
    m = _matcher(geometry_lr=5.0)
    for _ in range(25):
        log = m.update_geometry(x, y)
        assert log["c_H"] <= -G.C_FLOOR and log["c_S"] >= G.C_FLOOR
        assert all(math.isfinite(v) for v in log.values())
        assert math.isclose(log["w_E"] + log["w_H"] + log["w_S"], 1.0, rel_tol=1e-12)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert len(m.history) == 25 and m.history[-1]["step"] == 24


@pytest.mark.parametrize("factors", [("E",), ("H",), ("S",), ("E", "H"), ("H", "S"), ("E", "H", "S")])
def test_weights_are_a_distribution_over_the_selected_factors(factors):
    x, y = _toy()
    m = _matcher(factors=factors)
    m.update_geometry(x, y)
    w = m.weights().detach()
    assert w.shape == (len(factors),) and (w > 0).all()
    assert math.isclose(float(w.sum()), 1.0, rel_tol=1e-12)
    assert set(m.history[-1]) >= {f"w_{g}" for g in factors} | {f"c_{g}" for g in factors if g != "E"}


def test_euclidean_only_without_ot_is_exactly_dm_on_the_head_output():
    x, y = _toy()
    m = _matcher(factors=("E",), lambda_ot=0.0, base="dm")
    m.update_geometry(x, y)
    real, syn = x[y == 0], x[y == 1][:5].clone().requires_grad_(True)
    loss = m(real, syn, 0)
    expected = dm_loss(m.head_output(real)["E"], m.head_output(syn)["E"])
    assert loss.dtype == torch.float32
    assert torch.equal(loss, expected)
    g1, = torch.autograd.grad(loss, syn)
    g2, = torch.autograd.grad(dm_loss(m.head_output(real)["E"], m.head_output(syn)["E"]), syn)
    torch.testing.assert_close(g1, g2)


def test_update_geometry_lowers_the_prototype_loss_on_separable_data():
    """Classes separated in 2 of 16 dimensions: random heads mix in the noise, learned heads must not."""
    g = torch.Generator().manual_seed(0)
    means = torch.zeros(3, D)
    means[:, :2] = 2.0 * torch.randn(3, 2, generator=g)
    x = torch.cat([means[c] + torch.randn(30, D, generator=g) for c in range(3)])
    y = torch.arange(3).repeat_interleave(30)
    m = _matcher(learn_temperature=False)
    first = m.update_geometry(x, y)
    for _ in range(40):
        m.update_geometry(x, y)
    assert first["proto_acc"] < 1.0 and m.history[-1]["proto_acc"] == 1.0
    assert m.prototype_loss(x, y) < 0.25 * first["proto_loss"]


@pytest.mark.parametrize("base", ["dm", "centroid", "sdd"])
@pytest.mark.parametrize("factors", [("E", "H", "S"), ("H",), ("S",)])
def test_finite_gradients_wrt_syn_and_geometry_frozen(base, factors):
    x, y = _toy()
    m = _matcher(factors=factors, base=base, lambda_ot=0.5, sdd_num_freqs=64)
    m.update_geometry(x, y)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    syn = (x[y == 1][:4] + 0.5).requires_grad_(True)
    loss = m(x[y == 1], syn, 1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(syn.grad).all() and syn.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.parameters())  # the image step never writes into the geometry
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())


def test_extreme_inputs_give_finite_losses_and_gradients():
    x, y = _toy()
    for c in (1e-3, 1e2):
        m = _matcher(lambda_ot=1.0)
        m.set_curvature("H", -c)
        m.set_curvature("S", c)
        m.update_geometry(x, y)
        for scale in (1e-4, 1e3):
            syn = (scale * x[:3]).requires_grad_(True)
            loss = m(scale * x[y == 0], syn, 0)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(syn.grad).all()


def test_ot_term_is_sinkhorn_on_the_weighted_product_cost():
    x, y = _toy()
    kw = dict(ot_max_real=1000, lambda_curv=0.0, ot_eps=0.1)
    m0, m1 = _matcher(lambda_ot=0.0, **kw), _matcher(lambda_ot=2.0, **kw)
    m0.update_geometry(x, y)
    m1.load_state_dict(m0.state_dict())
    real, syn = x[y == 2], x[y == 0][:6]
    extra = m1(real, syn, 2).double() - m0(real, syn, 2).double()
    pr, ps, w = m1.embed(real), m1.embed(syn), m1.weights().detach()
    cost = sum(w[i] * G._sqdist(g, pr[g][:, None].double(), ps[g][None].double(), m1._radius(g, True))
               for i, g in enumerate(m1.factors))
    expected = 2.0 * sinkhorn_cost(cost, 0.1, num_iter=m1.ot_iters, tol=m1.ot_tol)
    assert math.isclose(float(extra), float(expected), rel_tol=1e-4)


def test_curvature_changes_the_hyperbolic_matching_loss():
    x, y = _toy()
    m = _matcher(factors=("H",), lambda_ot=0.0, lambda_curv=0.0)
    m.update_geometry(x, y)
    losses = []
    for c in (0.01, 1.0, 100.0):
        m.set_curvature("H", -c)
        losses.append(float(m(x[y == 0], x[y == 1], 0)))
    assert losses[0] > losses[1] > losses[2] > 0  # log_o compresses more the more curved the space


def test_factor_maths_agree_with_geoopt():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    k = torch.tensor(0.7, dtype=torch.float64)
    R = torch.tensor(1.3, dtype=torch.float64)
    xh = G._lift("H", z, k)
    torch.testing.assert_close(G._log0("H", xh, k), lorentz.logmap0(xh, k=k)[:, 1:])
    torch.testing.assert_close(G._sqdist("H", xh[:, None], xh[None], k).sqrt(),
                               lorentz.dist(xh[:, None], xh[None], k=k), atol=1e-6, rtol=1e-6)
    xs = G._lift("S", z, R)
    pole = torch.zeros(5, dtype=torch.float64)
    pole[0] = 1.0
    torch.testing.assert_close(G._log0("S", xs, R), R * Sphere().logmap(pole, xs / R)[:, 1:])
    off = ~torch.eye(7, dtype=torch.bool)
    torch.testing.assert_close(G._sqdist("S", xs[:, None], xs[None], R).sqrt()[off],
                               R * Sphere().dist(xs[:, None] / R, xs[None] / R)[off])
    for f, x, r in (("E", z, None), ("H", xh, k), ("S", xs, R)):
        torch.testing.assert_close(G._pairwise_sqdist(f, x, x[:4], r)[off[:, :4]],
                                   G._sqdist(f, x[:, None], x[None, :4], r)[off[:, :4]], atol=1e-9, rtol=1e-7)
    w = torch.full((1, 7), 1.0 / 7, dtype=torch.float64)
    mu = G._centroids("H", xh, w, k)
    torch.testing.assert_close(lorentz.inner(mu, mu), -k.reshape(1))
    torch.testing.assert_close(G._centroids("S", xs, w, R).norm(dim=-1), R.reshape(1))


def test_heads_are_seeded_and_checkpoints_round_trip():
    x, y = _toy()
    a, b = _matcher(seed=5), _matcher(seed=5)
    assert torch.equal(a.head_weight, b.head_weight)
    assert not torch.equal(a.head_weight, _matcher(seed=6).head_weight)
    for _ in range(3):
        a.update_geometry(x, y)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    fresh = GeoDMMatcher(dims=(4, 4, 4))  # heads not built yet: loading builds them
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.history == a.history
    torch.testing.assert_close(fresh(x[y == 0], x[:3], 0), a(x[y == 0], x[:3], 0))
    la, lf = a.update_geometry(x, y), fresh.update_geometry(x, y)  # same Adam state: same next step
    assert la == lf


@pytest.mark.parametrize("kw, msg", [
    (dict(factors=("E", "X")), "subset"), (dict(base="mmd"), "base objective"),
    (dict(curvature_h=0.5), "curvature_h"), (dict(dims=(4, 4)), "dims"), (dict(lambda_ot=-1.0), "lambda_ot"),
    (dict(ot_grad="implicit"), "gradient mode"),
])
def test_bad_options_are_clear_errors(kw, msg):
    with pytest.raises(GeoddError, match=msg):
        GeoDMMatcher(**kw)


def test_misuse_is_a_clear_error():
    x, y = _toy()
    with pytest.raises(GeoddError, match="start_iteration"):
        GeoDMMatcher()(x, x)
    m = _matcher(factors=("E", "H"))
    with pytest.raises(GeoddError, match="curved factors"):
        m.set_curvature("S", 1.0)
    with pytest.raises(GeoddError, match="curvature of H"):
        m.set_curvature("H", 1.0)
    with pytest.raises(GeoddError, match=r"features \[N, 16\]"):
        m(x[:, :8], x[:, :8])
