"""GeoDM (reconstruction): manifold constraints at extreme curvature, sign-safe learnable curvatures, the DM limit,
geometry learning on a toy problem, the OT product cost, finite image gradients, checkpoints, typed options, and the
factor objects of geodd.geometry.product against the former hand-written maths and geoopt."""
from __future__ import annotations

import io
import math

import geoopt
import pytest
import torch
from geoopt.manifolds import Sphere
from geoopt.manifolds.lorentz import math as lorentz

from geodd import GeoddError
from geodd.geometry import C_FLOOR, lorentz_centroid
from geodd.geometry.product import FACTOR_SPACES, factor_space
from geodd.matchers import MATCHERS, GeoDMMatcher, GeoDMOptions, build_matcher, dm_loss, matcher_options
from geodd.matchers import geodm as G
from geodd.options import overrides
from geodd.transport import sinkhorn_cost

D = 16


def _matcher(seed=0, **kw):
    kw.setdefault("dims", (4,) * len(kw.get("factors", "EHS")))
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
    assert MATCHERS["geodm"] == (GeoDMMatcher, GeoDMOptions)
    m = build_matcher("geodm", factors="ES")
    assert isinstance(m, GeoDMMatcher) and m.factors == ("E", "S")


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


@pytest.mark.parametrize("factors", ["E", "H", "S", "EH", "HS", "EHS"])
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
    m = _matcher(factors="E", lambda_ot=0.0, base="dm")
    m.update_geometry(x, y)
    real, syn = x[y == 0], x[y == 1][:5].clone().requires_grad_(True)
    loss = m(real, syn, 0)
    expected = dm_loss(m.head_output(real)["E"], m.head_output(syn)["E"])
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
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
@pytest.mark.parametrize("factors", ["EHS", "H", "S"])
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
    cost = sum(w[i] * factor_space(g).sqdist(pr[g][:, None].double(), ps[g][None].double(), m1._size(g, True))
               for i, g in enumerate(m1.factors))
    o = m1.options.ot
    expected = 2.0 * sinkhorn_cost(cost, 0.1, num_iter=o.ot_iters, tol=o.ot_tol)
    assert math.isclose(float(extra), float(expected), rel_tol=1e-4)


def test_curvature_changes_the_hyperbolic_matching_loss():
    x, y = _toy()
    m = _matcher(factors="H", lambda_ot=0.0, lambda_curv=0.0)
    m.update_geometry(x, y)
    losses = []
    for c in (0.01, 1.0, 100.0):
        m.set_curvature("H", -c)
        losses.append(float(m(x[y == 0], x[y == 1], 0)))
    assert losses[0] > losses[1] > losses[2] > 0  # log_o compresses more the more curved the space


# ---- the factor objects (geodd.geometry.product) ------------------------------------------------------------------

def _old_maths():
    """The hand-written maths of matchers/geodm.py before the factor objects (verbatim), as the reference."""
    import ot as pot
    NORM_EPS, CENTROID_EPS, CHORD_EPS = 1e-12, 1e-15, 1e-30

    def lift(g, z, r):
        if g == "E":
            return z
        if g == "H":
            return lorentz.project(z, k=r)
        return r * z / z.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)

    def residual(g, z, r):
        if g == "H":
            return (lorentz.inner(z, z) + r).abs() / r
        return (z.pow(2).sum(-1) - r * r).abs() / (r * r)

    def log0(g, x, r):
        if g == "E":
            return x
        xs = x[..., 1:]
        n = xs.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
        if g == "H":
            sk = r.sqrt()
            return sk * torch.asinh(n / sk) * xs / n
        return r * torch.atan2(n, x[..., :1]) * xs / n

    def sqdist(g, x, y, r):
        if g == "E":
            return (x - y).pow(2).sum(-1)
        if g == "H":
            return lorentz.dist(x, y, k=r).pow(2)
        u, v = x / r, y / r
        return (r * 2.0 * torch.atan2((u - v).norm(dim=-1), (u + v).norm(dim=-1))).pow(2)

    def pairwise(g, x, y, r):
        if g == "E":
            return pot.dist(x, y, metric="sqeuclidean")
        if g == "H":
            sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
            sign[0] = -1.0
            return (r.sqrt() * lorentz.arcosh((-(x @ (y * sign).T) / r).clamp_min(1.0))).pow(2)
        cos = (x @ y.T) / (r * r)
        theta = 2.0 * torch.atan2((2.0 - 2.0 * cos).clamp_min(CHORD_EPS).sqrt(),
                                  (2.0 + 2.0 * cos).clamp_min(CHORD_EPS).sqrt())
        return (r * theta).pow(2)

    def centroids(g, x, w, r):
        s = w @ x
        if g == "E":
            return s
        if g == "H":
            return r.sqrt() * s / lorentz.inner(s, s, keepdim=True).abs().clamp_min(CENTROID_EPS).sqrt()
        return r * s / s.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)

    return dict(lift=lift, residual=residual, log0=log0, sqdist=sqdist, pairwise_sqdist=pairwise,
                centroid=centroids)


def _old_size(g, c):
    return None if g == "E" else (1.0 / c.abs() if g == "H" else c.abs().rsqrt())


def _two_classes(n, dtype):
    w = torch.zeros(2, n, dtype=dtype)
    w[0, : n // 2], w[1, n // 2:] = 1.0, 1.0
    return w / w.sum(1, keepdim=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [1e-3, 1.0, 1e2])
@pytest.mark.parametrize("norm", [1e-3, 1.0, 1e2])
def test_factor_objects_match_the_former_hand_written_maths(dtype, c, norm):
    """Every method of every factor against the string-switched functions they replace, at small and large
    curvature, small and large head-output norms, float32 and float64 head outputs."""
    old = _old_maths()
    z = norm * torch.randn(10, 6, generator=torch.Generator().manual_seed(4), dtype=dtype)
    for g, sp in FACTOR_SPACES.items():
        curv = torch.tensor(-c if g == "H" else c, dtype=torch.float64)
        r = sp.size(curv)
        r_old = _old_size(g, curv)
        if r is not None:
            torch.testing.assert_close(r, r_old, rtol=0, atol=0)
        z_in = z if g == "E" else z.to(torch.float64)  # the matcher cast H and S to float64 before the old lift
        x, x_old = sp.lift(z, r), old["lift"](g, z_in, r_old)
        assert x.dtype == x_old.dtype
        tol = dict(rtol=1e-12, atol=0) if x.dtype == torch.float64 else dict(rtol=1e-6, atol=0)
        torch.testing.assert_close(x, x_old, **tol)
        if g != "E":
            torch.testing.assert_close(sp.residual(z, r), old["residual"](g, z_in, r_old), **tol)
        torch.testing.assert_close(sp.log0(x, r), old["log0"](g, x, r_old), **tol)
        torch.testing.assert_close(sp.sqdist(x[:, None], x[None, :4], r),
                                   old["sqdist"](g, x[:, None], x[None, :4], r_old), **tol)
        torch.testing.assert_close(sp.pairwise_sqdist(x, x[:4], r), old["pairwise_sqdist"](g, x, x[:4], r_old), **tol)
        w = _two_classes(10, x.dtype)
        # the one Lorentz centroid divides by sum(w) (= 1 here) and floors |<m, m>_L| at 1e-8 instead of 1e-15:
        # the same up to rounding while k >= 1e-8
        torch.testing.assert_close(sp.centroid(x, w, r), old["centroid"](g, x, w, r_old),
                                   rtol=1e-12 if x.dtype == torch.float64 else 1e-6, atol=1e-12 * norm)


@pytest.mark.parametrize("c", [1e-3, 1.0, 1e2])
def test_factor_objects_agree_with_geoopt_where_geoopt_is_accurate(c):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    H, S = factor_space("H"), factor_space("S")
    k = H.size(torch.tensor(-c, dtype=torch.float64))
    R = S.size(torch.tensor(c, dtype=torch.float64))
    xh = H.lift(z * k.sqrt(), k)
    torch.testing.assert_close(xh, geoopt.Lorentz(k).projx(z * k.sqrt()))
    torch.testing.assert_close(H.log0(xh, k), lorentz.logmap0(xh, k=k)[:, 1:], rtol=1e-6, atol=1e-9 * k.sqrt())
    torch.testing.assert_close(H.sqdist(xh[:, None], xh[None], k), geoopt.Lorentz(k).dist(xh[:, None], xh[None]) ** 2)
    xs = S.lift(z, R)
    pole = torch.zeros(5, dtype=torch.float64)
    pole[0] = 1.0
    torch.testing.assert_close(S.log0(xs, R), R * Sphere().logmap(pole, xs / R)[:, 1:])
    off = ~torch.eye(7, dtype=torch.bool)
    torch.testing.assert_close(S.sqdist(xs[:, None], xs[None], R).sqrt()[off],
                               R * Sphere().dist(xs[:, None] / R, xs[None] / R)[off])
    for f, x, r in (("E", z, None), ("H", xh, k), ("S", xs, R)):
        sp = factor_space(f)
        torch.testing.assert_close(sp.pairwise_sqdist(x, x[:4], r)[off[:, :4]],
                                   sp.sqdist(x[:, None], x[None, :4], r)[off[:, :4]], atol=1e-9 * (r or 1.0) ** 2,
                                   rtol=1e-7)
    w = _two_classes(7, torch.float64)
    mu = H.centroid(xh, w, k)
    torch.testing.assert_close(lorentz.inner(mu, mu), -k.expand(2))
    torch.testing.assert_close(mu[0], lorentz_centroid(xh[:3], k))  # GeoDM's prototypes are the one centroid
    torch.testing.assert_close(mu[1], lorentz_centroid(xh[3:], float(k)))
    torch.testing.assert_close(S.centroid(xs, w, R).norm(dim=-1), R.expand(2))


@pytest.mark.parametrize("c", [C_FLOOR, 1e-2, 1e2, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_factor_gradients_are_finite_at_extreme_curvatures(c, dtype):
    """Through lift, residual, log map, distances (coincident pairs included) and centroids, with respect to the
    head outputs and the curvature itself (the geometry step differentiates both)."""
    gen = torch.Generator().manual_seed(5)
    for g in ("H", "S"):
        sp = factor_space(g)
        for norm in (1e-3, 1.0, 1e3):
            z = (norm * torch.randn(6, 5, generator=gen, dtype=dtype)).requires_grad_(True)
            a = torch.tensor(c, dtype=torch.float64, requires_grad=True)
            r = sp.size(-a if g == "H" else a)
            x = sp.lift(z, r)
            w = _two_classes(6, torch.float64)
            loss = (sp.residual(z, r).mean() + sp.log0(x, r).pow(2).sum() + sp.pairwise_sqdist(x, x, r).sum()
                    + sp.sqdist(x[:3], x[3:], r).sum() + sp.pairwise_sqdist(x, sp.centroid(x, w, r), r).sum())
            gz, ga = torch.autograd.grad(loss, (z, a))
            assert torch.isfinite(loss) and torch.isfinite(gz).all() and torch.isfinite(ga), (g, norm)

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
    (dict(factors="EX"), "subset"), (dict(factors="HE"), "in that order"), (dict(factors=""), "non-empty"),
    (dict(factors=("E", "H")), "'factors' must be a string"),
    (dict(base="mmd"), "'base' must be one of 'dm', 'centroid', 'sdd'"),
    (dict(curvature_h=0.5), "curvature_h"), (dict(dims=(4, 4)), "dims"), (dict(dims=(4, 0, 4)), "dims"),
    (dict(lambda_ot=-1.0), "lambda_ot must be >= 0"), (dict(ot_eps=0.0), "ot_eps must be > 0"),
    (dict(ot_grad="implicit"), "'ot_grad' must be one of"), (dict(ot_eps=float("nan")), "'ot_eps' must be finite"),
    (dict(geometry_lr="fast"), "'geometry_lr' must be a number"), (dict(ot_max_real=1.5), "must be an integer"),
    (dict(sdd_sigma=-1.0), "sdd_sigma must be > 0"), (dict(sdd_alpha=2.0), r"sdd_alpha must lie in \[0, 1\]"),
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(sdd_scale=1.0), r"unknown geodm option 'sdd_scale'; valid: factors: str, dims: .*lambda_ot: float"),
])
def test_bad_options_are_clear_errors(kw, msg):
    for build in (lambda: GeoDMMatcher(**kw), lambda: matcher_options("geodm", kw)):
        with pytest.raises(GeoddError, match=msg) as err:
            build()
        assert "\n" not in str(err.value)


def test_options_route_flat_dotted_and_nested_keys_to_their_group():
    flat = matcher_options("geodm", {"lambda_ot": 0.5, "geometry_lr": 0.1, "base": "centroid", "factors": "EH",
                                     "dims": [8, 4]})
    dotted = matcher_options("geodm", {"ot.lambda_ot": 0.5, "optim.geometry_lr": 0.1, "loss.base": "centroid",
                                       "geometry.factors": "EH", "geometry.dims": (8, 4)})
    nested = matcher_options("geodm", {"ot": {"lambda_ot": 0.5}, "optim": {"geometry_lr": 0.1},
                                       "loss": {"base": "centroid"}, "geometry": {"factors": "EH", "dims": [8, 4]}})
    assert flat == dotted == nested
    assert flat.ot.lambda_ot == 0.5 and flat.optim.geometry_lr == 0.1 and flat.geometry.dims == (8, 4)
    assert matcher_options("geodm", overrides(flat)) == flat
    m = GeoDMMatcher(flat, lambda_ot=0.0)
    assert m.options.ot.lambda_ot == 0.0 and m.options.loss.base == "centroid" and m.dims == {"E": 8, "H": 4}
    names = [f for grp in ("geometry", "ot", "optim", "loss") for f in vars(getattr(GeoDMOptions(), grp))]
    assert len(names) == len(set(names))  # unique across groups, so flat keys are never ambiguous


def test_misuse_is_a_clear_error():
    x, y = _toy()
    with pytest.raises(GeoddError, match="start_iteration"):
        GeoDMMatcher()(x, x)
    m = _matcher(factors="EH")
    with pytest.raises(GeoddError, match="curved factors"):
        m.set_curvature("S", 1.0)
    with pytest.raises(GeoddError, match="curvature of H"):
        m.set_curvature("H", 1.0)
    with pytest.raises(GeoddError, match=r"features \[N, 16\]"):
        m(x[:, :8], x[:, :8])
