"""geodd.matchers.hdd: the HDD loss, its norm handling, gradients at the extremes and the matcher."""
from __future__ import annotations

import math

import pytest
import torch

from geodd import GeoddError
from geodd import geometry as g
from geodd.matchers import (MATCHERS, DMMatcher, DMOptions, HDDMatcher, HDDOptions, build_matcher, dm_loss, hdd_loss,
                            matcher_options)
from geodd.matchers.hdd import NORM_MODES, RELEASE_SETTINGS, feature_factor, lift_features
from geodd.options import overrides


def _features(n: int, d: int, norm: float, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """Features with norms around ``norm`` (+-20%), like a ConvNet's (all entries of both signs)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    radii = norm * (0.8 + 0.4 * torch.rand(n, 1, dtype=torch.float64, generator=gen))
    return (x / x.norm(dim=1, keepdim=True) * radii).to(dtype)


@pytest.mark.filterwarnings("ignore:lift. feature norms:RuntimeWarning")
@pytest.mark.parametrize("lift", g.LIFT_MODES)
@pytest.mark.parametrize("norm", NORM_MODES)
def test_loss_zero_when_real_equals_syn(lift, norm):
    real = _features(16, 24, 23.0)
    syn = real.clone().requires_grad_(True)
    loss = hdd_loss(real, syn, lift=lift, norm=norm)
    assert float(loss.detach()) == 0.0
    (grad,) = torch.autograd.grad(loss, syn)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().max()) == 0.0
    # the same multiset in another order: centroid unchanged up to rounding
    assert float(hdd_loss(real, real.flip(0), lift=lift, norm=norm)) < 1e-5


def test_release_path_matches_an_independent_formula():
    """DM-HDD release: zero-time pad, expmap0 with |u|/sqrt(k) clamped at 10, projx, ambient mean rescaled onto
    the hyperboloid, lambda * arcosh distance (geoopt's dist)."""
    k, lam = 1.0, 20.0
    real, syn = _features(32, 16, 23.0, seed=1), _features(4, 16, 23.0, seed=2)

    def lift_release(v):
        theta = (v.norm(dim=1, keepdim=True) / math.sqrt(k)).clamp_max(10.0)
        return torch.cat((math.sqrt(k) * torch.cosh(theta),
                          math.sqrt(k) * torch.sinh(theta) * v / v.norm(dim=1, keepdim=True)), 1)

    def centroid(x):
        m = x.mean(0)
        return math.sqrt(k) * m / torch.sqrt((m[0] ** 2 - m[1:].pow(2).sum()).abs())

    ref = lam * g.lorentz(k).dist(centroid(lift_release(real)), centroid(lift_release(syn)))
    ours = hdd_loss(real, syn, k, lam, lift="exp", norm="release")
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    # release: only directions survive, so rescaling single features (above the clamp) changes nothing ...
    stretch = torch.linspace(1.0, 3.0, 4, dtype=torch.float64)[:, None]
    torch.testing.assert_close(hdd_loss(real, syn * stretch, norm="release"), ours)
    # ... while the default keeps radial information
    assert abs(float(hdd_loss(real, syn * stretch)) - float(hdd_loss(real, syn))) > 1e-3


def test_projx_lift_and_rescale_factor():
    k = 2.0
    real, syn = _features(20, 8, 23.0, seed=3), _features(5, 8, 23.0, seed=4)
    ref = 100.0 * g.lorentz_distance(g.lorentz_centroid(g.lorentz(k).projx(torch.nn.functional.pad(real, (1, 0))), k),
                                     g.lorentz_centroid(g.lorentz(k).projx(torch.nn.functional.pad(syn, (1, 0))), k),
                                     k)
    torch.testing.assert_close(hdd_loss(real, syn, k, 100.0, lift="projx", norm="release"), ref)
    # rescale: the real features' mean norm lifts to radius target_radius * sqrt(k) (exp lift: linear in |v|)
    for target in (0.5, 2.0, 5.0):
        pts = lift_features(real, k, norm="rescale", target_radius=target)
        assert float(g.lorentz_dist0(pts, k).mean()) == pytest.approx(target * math.sqrt(k), rel=1e-9)
    # projx lift: a feature at the mean norm lands exactly at the target radius
    same = real / real.norm(dim=1, keepdim=True) * 23.0
    pts = lift_features(same, k, lift="projx", norm="rescale", target_radius=3.0)
    torch.testing.assert_close(g.lorentz_dist0(pts, k), torch.full((20,), 3.0 * math.sqrt(k), dtype=torch.float64))
    assert float(feature_factor(real, k, norm="fixed", feature_scale=0.25)) == 0.25
    # the factor comes from real only: syn's norms never change the map
    f1 = feature_factor(real, k)
    assert float(hdd_loss(real, syn * 2)) != float(hdd_loss(real, syn)) and float(f1) > 0
    # lam is a plain multiplier
    torch.testing.assert_close(hdd_loss(real, syn, k, 40.0), 2 * hdd_loss(real, syn, k, 20.0))


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("k", (0.1, 1.0, 10.0))
def test_finite_values_and_gradients_at_extremes(dtype, k):
    for norm_value in (1e-3, 23.0, 100.0):
        real = _features(32, 64, norm_value, dtype, seed=5)
        for lift in g.LIFT_MODES:
            for norm in ("rescale", "release"):
                for syn in (_features(8, 64, norm_value, dtype, seed=6), real[:8].clone(), real.clone()):
                    syn = syn.requires_grad_(True)
                    loss = hdd_loss(real, syn, k, lift=lift, norm=norm)
                    (grad,) = torch.autograd.grad(loss, syn)
                    assert loss.dtype == dtype
                    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(grad).all()), (norm_value, lift, norm)
    # fixed factor 1 (features as given, exp lift with the float64 guard) also stays finite at norm 100
    real = _features(16, 32, 100.0, dtype, seed=7)
    syn = _features(4, 32, 100.0, dtype, seed=8).requires_grad_(True)
    with pytest.warns(RuntimeWarning):
        loss = hdd_loss(real, syn, k, norm="fixed")
    (grad,) = torch.autograd.grad(loss, syn)
    assert bool(torch.isfinite(loss)) and bool(torch.isfinite(grad).all())


def test_gradient_near_coincidence_is_bounded_and_gradcheck():
    real = _features(12, 10, 23.0, seed=9)
    syn = (real[:6] + 1e-9 * torch.randn(6, 10, dtype=torch.float64)).requires_grad_(True)
    base = real[:6].clone().requires_grad_(True)
    for s in (syn, base):
        (grad,) = torch.autograd.grad(hdd_loss(real[:6], s), s)
        assert bool(torch.isfinite(grad).all()) and float(grad.norm()) < 1e3
    # away from coincidence the autograd gradient matches finite differences
    syn = _features(3, 5, 23.0, seed=10).requires_grad_(True)
    real = _features(6, 5, 23.0, seed=11)
    for lift in g.LIFT_MODES:
        assert torch.autograd.gradcheck(lambda s: hdd_loss(real, s, 1.5, lift=lift), (syn,))


def test_matcher_modes_registration_and_errors():
    real, syn = _features(20, 12, 23.0, seed=12).float(), _features(5, 12, 23.0, seed=13).float()
    assert MATCHERS["hdd"] == (HDDMatcher, HDDOptions)
    m = build_matcher("hdd", k=2.0, lam=10.0)
    torch.testing.assert_close(m(real, syn, 3), hdd_loss(real, syn, 2.0, 10.0))
    assert m.options == HDDOptions(k=2.0, lam=10.0)
    add = HDDMatcher(mode="add", lam=0.5)
    torch.testing.assert_close(add(real, syn), dm_loss(real, syn) + hdd_loss(real, syn, lam=0.5))
    release = HDDMatcher(**RELEASE_SETTINGS["dm"])
    torch.testing.assert_close(release(real, syn), hdd_loss(real, syn, 1.0, 20.0, norm="release"))
    assert release(real, syn).dtype == torch.float32 and "norm=release" in repr(release)
    # an options object, with keyword overrides on top
    opts = matcher_options("hdd", {"k": 2.0, "lam": 10.0})
    torch.testing.assert_close(build_matcher("hdd", opts)(real, syn), m(real, syn))
    assert HDDMatcher(opts, lam=5.0).options == HDDOptions(k=2.0, lam=5.0)
    for bad in (dict(mode="both"), dict(norm="clip"), dict(lift="log"), dict(k=0.0), dict(k=-1.0)):
        with pytest.raises(GeoddError):
            HDDMatcher(**bad)
    with pytest.raises(GeoddError):
        hdd_loss(real, syn[:, :5])
    with pytest.raises(GeoddError):
        hdd_loss(real[:0], syn)


@pytest.mark.parametrize("mapping, msg", [
    ({"scale": 20.0}, r"unknown hdd option 'scale'; valid: k: float, lam: float, lift: one of exp\|projx"),
    ({"lam": "big"}, "'lam' must be a number"),
    ({"lam": True}, "'lam' must be a number"),
    ({"k": float("inf")}, "'k' must be finite"),
    ({"lam": float("nan")}, "'lam' must be finite"),
    ({"lam": -20.0}, "lam must be positive"),
    ({"lam": 0.0}, "lam must be positive"),
    ({"k": -1.0}, "k must be positive"),
    ({"target_radius": 0.0}, "target_radius must be positive"),
    ({"mode": "both"}, "'mode' must be one of 'replace', 'add'"),
])
def test_typed_options_are_one_line_errors(mapping, msg):
    for build in (lambda: matcher_options("hdd", mapping), lambda: HDDMatcher(**mapping)):
        with pytest.raises(GeoddError, match=msg) as err:
            build()
        assert "\n" not in str(err.value)
    assert overrides(matcher_options("hdd", {"lam": 100.0, "k": 2.4})) == {"lam": 100.0, "k": 2.4}


def test_registry_dm_options_and_unknown_method():
    """Every method maps to (matcher class, options class); DM's options are empty but still strict."""
    assert set(MATCHERS) == {"dm", "hdd", "sdd", "csdm", "geodm"}
    for method, (matcher_class, options_class) in MATCHERS.items():
        opts = matcher_options(method, {})
        assert isinstance(opts, options_class) and overrides(opts) == {}
        assert isinstance(build_matcher(method, opts), matcher_class)
    assert isinstance(build_matcher("dm"), DMMatcher) and DMMatcher().options == DMOptions()
    with pytest.raises(GeoddError, match="unknown dm option 'lam'"):
        matcher_options("dm", {"lam": 1.0})
    with pytest.raises(GeoddError, match="unknown method 'hyp'; choose one of dm, hdd, sdd, csdm, geodm"):
        matcher_options("hyp", {})
    with pytest.raises(GeoddError, match="unknown method"):
        build_matcher("hyp")
