"""Tests for SDD / CSDM (geodd.matchers.sdd): CF identities, Monte-Carlo convergence to MMD^2, kernels, alpha(c)."""
import math

import pytest
import torch

from geodd import GeoddError
from geodd.matchers import (MATCHERS, CSDMMatcher, CSDMOptions, SDDMatcher, SDDOptions, build_matcher, class_alphas,
                            dm_loss, matcher_options, sample_frequencies, sdd_loss, sdd_terms)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cf_complex(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Reference empirical CF with a complex dtype."""
    return torch.exp(1j * (x @ freqs.T).to(torch.complex128)).mean(0)


def _mmd2_v(x: torch.Tensor, y: torch.Tensor, kernel) -> torch.Tensor:
    """Exact (biased, V-statistic) MMD^2 from kernel matrices."""
    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def _rbf(sigma):
    return lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma ** 2))


def _laplace(sigma):
    return lambda a, b: torch.exp(-torch.cdist(a, b, p=1) / sigma)


def _pair(seed=0, n=40, m=30, d=5, shift=0.7, spread=1.5):
    g = _gen(seed)
    real = torch.randn(n, d, generator=g, dtype=F64)
    syn = spread * torch.randn(m, d, generator=g, dtype=F64) + shift
    return real, syn


# ---------------------------------------------------------------- amplitude / phase identities

def test_amplitude_plus_phase_is_cf_distance_float64():
    real, syn = _pair()
    freqs = sample_frequencies("rbf", 5, 512, 0.8, _gen(1), dtype=F64)
    amp, phase = sdd_terms(real, syn, freqs)
    ref = (_cf_complex(real, freqs) - _cf_complex(syn, freqs)).abs().pow(2)
    assert amp.shape == phase.shape == (512,)
    assert torch.allclose(amp + phase, ref, rtol=0, atol=1e-14)
    assert (amp >= 0).all() and (phase >= 0).all()
    # the phase term is the angle form 2|r||s|(1 - cos(theta_r - theta_s)), the amplitude (|r| - |s|)^2
    pr, ps = _cf_complex(real, freqs), _cf_complex(syn, freqs)
    angle_form = 2 * pr.abs() * ps.abs() * (1 - torch.cos(pr.angle() - ps.angle()))
    assert torch.allclose(phase, angle_form, rtol=0, atol=1e-13)
    assert torch.allclose(amp, (pr.abs() - ps.abs()).pow(2), rtol=0, atol=1e-14)
    # sdd_loss is the alpha-weighted mean (alpha = 0.5: half the MC estimate of MMD^2)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        assert torch.allclose(sdd_loss(real, syn, freqs, alpha), (alpha * amp + (1 - alpha) * phase).mean())
    assert torch.allclose(sdd_loss(real, syn, freqs), 0.5 * ref.mean())


def test_translation_moves_only_the_phase():
    # phi_{x+c}(w) = exp(i<w,c>) phi_x(w): same amplitude, phase 2|phi|^2 (1 - cos<w,c>)
    real, _ = _pair()
    c = torch.tensor([0.3, -0.2, 0.5, 0.0, 1.0], dtype=F64)
    freqs = sample_frequencies("rbf", 5, 256, 1.0, _gen(2), dtype=F64)
    amp, phase = sdd_terms(real, real + c, freqs)
    assert amp.abs().max() < 1e-14
    expected = 2 * _cf_complex(real, freqs).abs().pow(2) * (1 - torch.cos(freqs @ c))
    assert torch.allclose(phase, expected, rtol=0, atol=1e-13)


def test_loss_zero_iff_empirical_cfs_match():
    real, _ = _pair(n=25)
    freqs = sample_frequencies("rbf", 5, 1024, 1.0, _gen(3), dtype=F64)
    perm = torch.randperm(25, generator=_gen(4))
    for alpha in (0.2, 0.5, 0.8):
        assert sdd_loss(real, real[perm], freqs, alpha) < 1e-14  # permutation: same empirical measure
        assert sdd_loss(real, torch.cat([real, real]), freqs, alpha) < 1e-14  # duplication: same measure
        moved = real.clone()
        moved[0, 0] += 0.5
        assert sdd_loss(real, moved, freqs, alpha) > 1e-6
        assert sdd_loss(real, real[:24], freqs, alpha) > 1e-6  # dropping a point changes the measure


# ---------------------------------------------------------------- Monte-Carlo convergence to the exact MMD^2

def test_rbf_sdd_converges_to_exact_mmd2_like_inverse_sqrt():
    # RMS error (over 32 seeds) of the running MC mean at M = 16 .. 4096 frequencies falls like M^-1/2
    # (slope over 30 seed blocks: -0.42 .. -0.55); a biased estimator would flatten the slope towards 0
    sigma = 1.2
    real, syn = _pair()
    exact = _mmd2_v(real, syn, _rbf(sigma))
    sizes = torch.tensor([16, 64, 256, 1024, 4096])
    errs = []
    for seed in range(32):
        amp, phase = sdd_terms(real, syn, sample_frequencies("rbf", 5, 4096, sigma, _gen(100 + seed), dtype=F64))
        errs.append((amp + phase).cumsum(0)[sizes - 1] / sizes - exact)
    rms = torch.stack(errs).pow(2).mean(0).sqrt()
    lx, ly = sizes.to(F64).log(), rms.log()
    slope = (((lx - lx.mean()) * (ly - ly.mean())).sum() / (lx - lx.mean()).pow(2).sum()).item()
    assert -0.7 < slope < -0.3, (slope, rms)
    assert rms[-1] < 0.04 * exact


@pytest.mark.parametrize("kernel,kfun", [("rbf", _rbf), ("laplace", _laplace)])
def test_mc_estimate_matches_closed_form_kernel(kernel, kfun):
    # the spectral measure is right: the mean over many frequencies hits MMD^2 of the stated kernel within MC error
    sigma = 1.5
    real, syn = _pair(d=3, shift=0.5)
    freqs = sample_frequencies(kernel, 3, 40000, sigma, _gen(7), dtype=F64)
    amp, phase = sdd_terms(real, syn, freqs)
    terms = amp + phase
    stderr = terms.std() / math.sqrt(terms.numel())
    exact = _mmd2_v(real, syn, kfun(sigma))
    assert (terms.mean() - exact).abs() < 4 * stderr
    # and the test has power: a wrong bandwidth, or the other kernel, is rejected
    other = _laplace if kernel == "rbf" else _rbf
    for wrong in (_mmd2_v(real, syn, kfun(sigma / 2)), _mmd2_v(real, syn, other(sigma))):
        assert (terms.mean() - wrong).abs() > 10 * stderr


# ---------------------------------------------------------------- frequency samplers

def test_frequency_distributions():
    sigma = 2.0
    lap = sample_frequencies("laplace", 4, 20000, sigma, _gen(0))
    assert lap.shape == (20000, 4) and lap.dtype == torch.float32
    # Cauchy(0, 1/sigma): median |w| = 1/sigma, quartiles at -+1/sigma, and heavy tails
    assert abs(lap.abs().median().item() * sigma - 1) < 0.04
    assert abs(lap.quantile(0.25).item() * sigma + 1) < 0.06
    assert lap.abs().max() * sigma > 100
    rbf = sample_frequencies("rbf", 4, 20000, sigma, _gen(0))
    assert abs(rbf.std().item() * sigma - 1) < 0.02 and rbf.abs().max() * sigma < 6
    with pytest.raises(GeoddError):
        sample_frequencies("cosine", 4, 10, 1.0)
    with pytest.raises(GeoddError):
        sample_frequencies("rbf", 4, 10, 0.0)


def test_frequencies_are_seeded():
    a = sample_frequencies("laplace", 3, 7, 1.0, _gen(5))
    b = sample_frequencies("laplace", 3, 7, 1.0, _gen(5))
    c = sample_frequencies("laplace", 3, 7, 1.0, _gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- linear kernel = DM limit

def test_linear_is_blind_to_variance_rbf_is_not():
    g = _gen(8)
    real = torch.randn(200, 6, generator=g, dtype=F64)
    syn = 3.0 * torch.randn(150, 6, generator=g, dtype=F64)
    real, syn = real - real.mean(0), syn - syn.mean(0)  # equal empirical means, variances 1 vs 9
    lin = SDDMatcher(kernel="linear", normalize=False)
    rbf = SDDMatcher(kernel="rbf", sigma=2.0, normalize=False)
    rbf.start_iteration(0, _gen(9), 6, torch.device("cpu"))
    assert lin(real, syn) < 1e-20
    assert rbf(real, syn) > 0.02 * rbf.options.loss_scale
    shifted = syn + 0.5  # the linear kernel does see a mean shift
    assert lin(real, shifted) > 0.1


def test_linear_mode_is_the_large_bandwidth_limit_of_rbf():
    real, syn = _pair(n=30, m=20, d=4)
    dm = dm_loss(real, syn)
    for alpha in (0.5, 0.2):
        lin = SDDMatcher(kernel="linear", normalize=False, alpha=alpha, loss_scale=1.0)
        assert torch.allclose(lin(real, syn), (1 - alpha) * dm)
        # sigma^2 * SDD_alpha with N(0, sigma^-2 I) probes -> (1 - alpha) ||mu_r - mu_s||^2 as sigma -> inf
        sigma = 1e3
        freqs = sample_frequencies("linear", 4, 20000, sigma, _gen(10), dtype=F64)
        assert abs(sigma ** 2 * sdd_loss(real, syn, freqs, alpha) / ((1 - alpha) * dm) - 1) < 0.05
    # with NCFM's square root: sigma * loss -> sqrt(2/pi) sqrt((1 - alpha) dm)
    lin = SDDMatcher(kernel="linear", normalize=False, sqrt=True, loss_scale=1.0)
    far = SDDMatcher(kernel="rbf", sigma=1e3, num_freqs=20000, normalize=False, sqrt=True, loss_scale=1.0)
    far.start_iteration(0, _gen(11), 4, torch.device("cpu"))
    assert torch.allclose(lin(real, syn), math.sqrt(2 / math.pi) * (0.5 * dm).sqrt())
    assert abs(1e3 * far(real, syn) / lin(real, syn) - 1) < 0.03


# ---------------------------------------------------------------- matcher behaviour

def test_matcher_equals_scaled_sdd_loss_and_normalisation():
    real, syn = _pair(d=5)
    m = SDDMatcher(sigma=0.7, num_freqs=300, alpha=0.3, normalize=True, loss_scale=7.0)
    m.start_iteration(0, _gen(12), 5, torch.device("cpu"))
    unit = lambda x: x / x.norm(dim=1, keepdim=True)
    expected = 7.0 * sdd_loss(unit(real), unit(syn), m.freqs.to(F64), 0.3)
    assert torch.allclose(m(real, syn), expected)
    # normalisation makes the loss blind to per-sample feature scale
    assert torch.allclose(m(3.0 * real, 0.5 * syn), m(real, syn))
    m_sqrt = SDDMatcher(sigma=0.7, num_freqs=300, alpha=0.3, sqrt=True, loss_scale=7.0)
    m_sqrt.start_iteration(0, _gen(12), 5, torch.device("cpu"))
    amp, phase = sdd_terms(unit(real), unit(syn), m_sqrt.freqs.to(F64))
    assert torch.allclose(m_sqrt(real, syn), 7.0 * (0.3 * amp + 0.7 * phase).sqrt().mean())


def test_seeded_resampling():
    real, syn = _pair(d=8, n=20, m=5)
    real, syn = real.float(), syn.float()

    def losses(seed):
        m, g = SDDMatcher(num_freqs=64), _gen(seed)
        out = []
        for it in range(3):
            m.start_iteration(it, g, 8, torch.device("cpu"))
            out.append(m(real, syn).item())
        return out

    a, b, c = losses(1), losses(1), losses(2)
    assert a == b and a != c
    assert len(set(a)) == 3  # frequencies are redrawn every iteration


def test_float32_gradients_finite_at_extremes():
    g = _gen(13)
    real = torch.randn(16, 32, generator=g)
    cases = {
        "identical": real[:4].clone(),
        "zero": torch.zeros(4, 32),
        "huge": 1e4 * torch.randn(4, 32, generator=g),
        "far": torch.randn(4, 32, generator=g) + 50.0,
    }
    for kernel in ("rbf", "laplace", "linear"):
        for sqrt in (False, True):
            for normalize in (False, True):
                m = SDDMatcher(kernel=kernel, num_freqs=128, sqrt=sqrt, normalize=normalize)
                m.start_iteration(0, _gen(14), 32, torch.device("cpu"))
                for name, s in cases.items():
                    s = s.clone().requires_grad_(True)
                    loss = m(real[:4] if name == "identical" else real, s)
                    loss.backward()
                    assert loss.dtype == torch.float32
                    assert torch.isfinite(loss) and torch.isfinite(s.grad).all(), (kernel, sqrt, normalize, name)


def test_gradcheck_float64():
    real, syn = _pair(n=6, m=3, d=3)
    freqs = sample_frequencies("rbf", 3, 16, 1.0, _gen(15), dtype=F64)
    real.requires_grad_(True)
    syn.requires_grad_(True)
    freqs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, s, w: sdd_loss(r, s, w, 0.3), (real, syn, freqs))


def test_low_precision_features_are_upcast():
    real, syn = _pair(d=16, n=20, m=4)
    m = SDDMatcher(num_freqs=256)
    m.start_iteration(0, _gen(16), 16, torch.device("cpu"))
    rb, sb = real.bfloat16(), syn.bfloat16()
    ref = m(rb.float(), sb.float())
    assert m(rb, sb).dtype == torch.float32
    torch.testing.assert_close(m(rb, sb), ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(m(real.float(), syn.float()), m(real.float(), syn.float()).float())
        inside = m(real.float(), syn.float())
    assert inside.dtype == torch.float32 and torch.allclose(inside, m(real.float(), syn.float()))


def test_matcher_errors_and_registration():
    assert MATCHERS["sdd"] == (SDDMatcher, SDDOptions) and MATCHERS["csdm"] == (CSDMMatcher, CSDMOptions)
    assert isinstance(build_matcher("csdm", alpha_head=0.8), CSDMMatcher)
    with pytest.raises(GeoddError):
        SDDMatcher(kernel="polynomial")
    with pytest.raises(GeoddError):
        SDDMatcher(alpha=1.5)
    m = SDDMatcher(num_freqs=8)
    with pytest.raises(GeoddError, match="start_iteration"):
        m(torch.randn(4, 3), torch.randn(2, 3))
    m.start_iteration(0, _gen(0), 5, torch.device("cpu"))
    with pytest.raises(GeoddError, match="dim"):
        m(torch.randn(4, 3), torch.randn(2, 3))
    with pytest.raises(GeoddError):
        sdd_terms(torch.randn(4, 3), torch.randn(2, 4), torch.randn(8, 3))


# ---------------------------------------------------------------- CSDM alpha(c)

LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, imf 100


def test_class_alphas_median_split_and_direction():
    a = class_alphas(LT, 0.7)
    assert a == pytest.approx([0.7] * 5 + [0.3] * 5)  # tail classes get more phase (realism), arXiv v1
    b = class_alphas(LT, 0.7, direction="head_realism")
    assert b == pytest.approx([1 - x for x in a])
    assert class_alphas([5] * 4, 0.9) == [0.5] * 4  # balanced: neutral
    assert class_alphas([9, 5, 1], 0.8) == pytest.approx([0.8, 0.5, 0.2])  # odd: the median class is neutral
    assert class_alphas([5, 5, 5, 1], 0.8) == pytest.approx([0.5, 0.5, 0.5, 0.2])  # ties at the median


def test_class_alphas_smooth_is_monotone_in_log_counts():
    counts = [50, 5000, 645, 83, 1796, 139]
    a = class_alphas(counts, 0.8, rule="smooth")
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    assert all(a[i] < a[j] for i, j in zip(order, order[1:]))
    assert a[counts.index(5000)] == pytest.approx(0.8) and a[counts.index(50)] == pytest.approx(0.2)
    assert class_alphas([10, 1000, 100], 0.8, rule="smooth")[2] == pytest.approx(0.5)  # geometric midpoint
    flipped = class_alphas(counts, 0.8, rule="smooth", direction="head_realism")
    assert all(flipped[i] > flipped[j] for i, j in zip(order, order[1:]))
    assert class_alphas([7, 7, 7], 0.9, rule="smooth") == [0.5] * 3


def test_class_alphas_errors():
    for kwargs in ({"rule": "mean"}, {"direction": "up"}, {"alpha_head": 1.2}):
        with pytest.raises(GeoddError):
            class_alphas(LT, **{"alpha_head": 0.7, **kwargs})
    with pytest.raises(GeoddError):
        class_alphas([10, 0, 3])
    with pytest.raises(GeoddError):
        CSDMMatcher(rule="mean")


def test_csdm_matcher_uses_class_alpha_and_defaults_to_balanced_sdd():
    real, syn = _pair(d=6, n=20, m=4)
    csdm = CSDMMatcher(num_freqs=128, alpha_head=0.7)
    sdd = {a: SDDMatcher(num_freqs=128, alpha=a) for a in (0.3, 0.5, 0.7)}
    for m in (csdm, *sdd.values()):
        m.start_iteration(0, _gen(17), 6, torch.device("cpu"))
    torch.testing.assert_close(csdm(real, syn, 9), sdd[0.5](real, syn))  # no counts: SDD with alpha = 0.5
    csdm.set_class_counts(LT)
    torch.testing.assert_close(csdm(real, syn, 0), sdd[0.7](real, syn))
    torch.testing.assert_close(csdm(real, syn, 9), sdd[0.3](real, syn))
    with pytest.raises(GeoddError):
        csdm(real, syn, 10)


@pytest.mark.parametrize("method", ["sdd", "csdm"])
@pytest.mark.parametrize("mapping, msg", [
    ({"scale": 1.0}, r"unknown (sdd|csdm) option 'scale'; valid: kernel: one of rbf\|laplace\|linear, sigma: float"),
    ({"sigma": "wide"}, "'sigma' must be a number"),
    ({"sigma": float("inf")}, "'sigma' must be finite"),
    ({"sigma": -1.0}, "sigma .* must be positive"),
    ({"sigma": 0.0}, "sigma .* must be positive"),
    ({"num_freqs": 0}, "num_freqs must be >= 1"),
    ({"num_freqs": 2.5}, "'num_freqs' must be an integer"),
    ({"normalize": 1}, "'normalize' must be true or false"),
    ({"kernel": "polynomial"}, "'kernel' must be one of"),
    ({"loss_scale": -1.0}, "loss_scale must be positive"),
])
def test_typed_options_are_one_line_errors(method, mapping, msg):
    with pytest.raises(GeoddError, match=msg) as err:
        matcher_options(method, mapping)
    assert "\n" not in str(err.value)
    with pytest.raises(GeoddError, match=msg):
        build_matcher(method, **mapping)


def test_alpha_ranges_and_options_objects():
    for bad in (-0.1, 1.5):
        with pytest.raises(GeoddError, match="alpha must lie in"):
            matcher_options("sdd", {"alpha": bad})
        with pytest.raises(GeoddError, match="alpha_head must lie in"):
            matcher_options("csdm", {"alpha_head": bad})
    with pytest.raises(GeoddError, match="unknown csdm option 'alpha'"):
        matcher_options("csdm", {"alpha": 0.5})
    opts = matcher_options("sdd", {"sigma": 2.0, "num_freqs": 32})
    m = build_matcher("sdd", opts, alpha=0.2)
    assert m.options == SDDOptions(sigma=2.0, num_freqs=32, alpha=0.2) and opts.alpha == 0.5
    assert isinstance(build_matcher("csdm", CSDMOptions(alpha_head=0.9)), CSDMMatcher)
