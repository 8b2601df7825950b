"""Tests for geodd.augment: Differentiable Siamese Augmentation (dm_protocol.md section 1.3)."""
from __future__ import annotations

import math

import pytest
import torch

from geodd import GeoddError
from geodd.augment import (
    DEFAULT_STRATEGY,
    DSA,
    FAMILIES,
    NO_FLIP_STRATEGY,
    AugParams,
    parse_strategy,
    strategy_for,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 1, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=gen(1000 + seed))


def blob(h: int, w: int, radius: float) -> torch.Tensor:
    """A disc of ones (radius in pixels) centred in an H x W image, as [1, 1, H, W]."""
    yy = torch.arange(h, dtype=torch.float64).view(-1, 1) - (h - 1) / 2
    xx = torch.arange(w, dtype=torch.float64).view(1, -1) - (w - 1) / 2
    return ((yy**2 + xx**2) <= radius**2).float().view(1, 1, h, w)


# ---------------------------------------------------------------- strategies
def test_strategy_for_digits_have_no_flip_others_flip():
    for name in ["mnist", "MNIST", "mnist-lt", "svhn", "svhn_lt", "digits", "kmnist"]:
        assert strategy_for(name) == NO_FLIP_STRATEGY
        assert "flip" not in parse_strategy(strategy_for(name))
    for name in ["fashion-mnist", "fashion-mnist-lt", "FashionMNIST", "cifar10", "cifar100-lt", "tinyimagenet"]:
        assert strategy_for(name) == DEFAULT_STRATEGY
        assert "flip" in parse_strategy(strategy_for(name))
    assert DEFAULT_STRATEGY == "color_crop_cutout_flip_scale_rotate"
    assert set(parse_strategy(DEFAULT_STRATEGY)) == set(FAMILIES)


def test_unknown_family_and_bad_settings_raise():
    with pytest.raises(GeoddError, match="valid families: color, crop, cutout, flip, scale, rotate"):
        DSA("color_blur")
    with pytest.raises(GeoddError):
        DSA(scale=0.8)
    with pytest.raises(GeoddError):
        DSA(flip_p=1.5)
    with pytest.raises(GeoddError):
        DSA(crop=float("nan"))
    dsa = DSA()
    with pytest.raises(GeoddError, match=r"\[N, C, H, W\]"):
        dsa(torch.zeros(3, 28, 28), gen(0))
    with pytest.raises(GeoddError, match="Generator"):
        dsa(images(), None)  # type: ignore[arg-type]
    with pytest.raises(GeoddError, match="drawn for 3 images"):
        DSA("rotate").apply(images(5), DSA("rotate").sample(gen(0), n=3))


@pytest.mark.parametrize("strategy", ["", "none", "None"])
def test_identity_strategy_returns_x(strategy):
    x = images()
    g = gen(0)
    state = g.get_state()
    assert DSA(strategy)(x, g) is x
    assert DSA(strategy).is_identity
    assert torch.equal(g.get_state(), state)


# ---------------------------------------------------------------- siamese / seeding
@pytest.mark.parametrize("strategy", [*FAMILIES, DEFAULT_STRATEGY])
def test_siamese_same_seed_same_transform_for_any_batch_size(strategy):
    dsa = DSA(strategy)
    x = images(24, c=3, h=16, w=16)
    for seed in range(6):
        g_big, g_small = gen(seed), gen(seed)
        big = dsa(x, g_big)
        small = dsa(x[:5], g_small)
        torch.testing.assert_close(big[:5], small, rtol=0, atol=1e-6)
        # the generators stay in step, so the following draws are paired too
        assert torch.equal(g_big.get_state(), g_small.get_state())


def test_siamese_one_transform_for_the_whole_batch():
    x = images(1, c=3, h=16, w=16).expand(12, -1, -1, -1).contiguous()
    for seed in range(8):
        out = DSA()(x, gen(seed))
        torch.testing.assert_close(out, out[:1].expand_as(out), rtol=0, atol=1e-6)


def test_call_equals_sample_then_apply():
    dsa = DSA()
    x = images(8, c=3, h=20, w=20)
    for seed in range(8):
        for siamese in (True, False):
            direct = dsa(x, gen(seed), siamese=siamese)
            params = dsa.sample(gen(seed), n=1 if siamese else 8, size=(20, 20))
            # two code paths (sample+apply vs the call): equal up to float summation order, not bit for bit
            torch.testing.assert_close(direct, dsa.apply(x, params), rtol=1e-6, atol=1e-6)


def test_different_seeds_give_different_transforms():
    x = images(8, c=3, h=16, w=16)
    for family in ["color", "crop", "scale", "rotate", "cutout"]:
        outs = [DSA(family)(x, gen(seed)) for seed in range(6)]
        distinct = {tuple(o.flatten()[:: 7].tolist()) for o in outs}
        assert len(distinct) >= 4, family
    outs = [DSA()(x, gen(seed)) for seed in range(8)]
    distinct = {tuple(o.flatten()[:: 7].tolist()) for o in outs}
    assert len(distinct) >= 6


@pytest.mark.parametrize("family", ["color", "crop", "cutout", "scale", "rotate"])
def test_per_sample_mode_varies_within_the_batch(family):
    x = images(1, c=3, h=16, w=16).expand(32, -1, -1, -1).contiguous()
    out = DSA(family)(x, gen(3), siamese=False)
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) >= 8


def test_one_family_per_call_chosen_uniformly():
    dsa = DSA()
    counts = {f: 0 for f in FAMILIES}
    g = gen(0)
    for _ in range(600):
        counts[dsa.sample(g, size=(8, 8)).family] += 1
    for family, count in counts.items():
        assert 60 <= count <= 140, (family, count)  # expectation 100
    # per-sample mode still picks one family per call
    assert dsa.sample(gen(1), n=16, size=(8, 8)).n == 16


def test_global_rng_untouched_and_not_used():
    x = images(8, c=3, h=16, w=16)
    dsa = DSA()
    before = torch.get_rng_state()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    outs_a = [dsa(x, gen(s), siamese=bool(s % 2)) for s in range(12)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)
    outs_b = [dsa(x, gen(s), siamese=bool(s % 2)) for s in range(12)]
    for a, b in zip(outs_a, outs_b):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- families
def test_flip_mirrors_and_probability():
    x = images(4, c=3, h=12, w=12)
    seen = set()
    for seed in range(16):
        out = DSA("flip")(x, gen(seed))
        flipped = torch.equal(out, x.flip(-1))
        assert flipped or torch.equal(out, x)
        seen.add(flipped)
    assert seen == {True, False}
    xs = images(1, c=1, h=12, w=12).expand(400, -1, -1, -1).contiguous()
    out = DSA("flip")(xs, gen(0), siamese=False)
    flipped = (out == xs.flip(-1)).flatten(1).all(1)
    same = (out == xs).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 0.4 < flipped.float().mean().item() < 0.6
    assert bool(DSA("flip", flip_p=1.0)(x, gen(0)).equal(x.flip(-1)))


def test_cutout_zeros_a_square_of_half_the_side():
    x = torch.ones(256, 1, 28, 28) + 0.5
    out = DSA("cutout")(x, gen(0), siamese=False)
    zero = out == 0
    frac = zero.float().mean(dim=(1, 2, 3))
    assert bool((frac > 0).all()) and bool((frac <= 0.25).all())
    assert math.isclose(frac.max().item(), 0.25)  # 14 x 14 of 28 x 28 when fully inside
    assert 0.12 < frac.mean().item() < 0.25
    assert torch.equal(out[~zero], x[~zero])  # elsewhere untouched
    for img in zero[:, 0]:  # the hole is an axis-aligned rectangle clipped by the border
        rows, cols = img.any(1), img.any(0)
        assert img.sum() == rows.sum() * cols.sum()
        assert rows.sum() <= 14 and cols.sum() <= 14


def test_crop_translates_content_with_zero_padding():
    dsa = DSA("crop")
    x = images(6, c=2, h=28, w=28)
    shifts = set()
    for seed in range(12):
        params = dsa.sample(gen(seed), size=(28, 28))
        dy, dx = int(params.values["dy"]), int(params.values["dx"])
        assert abs(dy) <= 4 and abs(dx) <= 4  # round(12.5% of 28) = 4 px
        shifts.add((dy, dx))
        expected = torch.zeros_like(x)
        ys, xs = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(dx, 0), 28 + min(dx, 0))
        ys_src, xs_src = slice(max(-dy, 0), 28 + min(-dy, 0)), slice(max(-dx, 0), 28 + min(-dx, 0))
        expected[..., ys, xs] = x[..., ys_src, xs_src]
        torch.testing.assert_close(dsa.apply(x, params), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dsa(x, gen(seed)), expected, rtol=1e-5, atol=1e-5)
    assert len(shifts) >= 8


def test_rotate_keeps_shape_range_and_orientation():
    dsa = DSA("rotate")
    x = images(4, c=3, h=20, w=20)
    out = dsa(x, gen(0))
    assert out.shape == x.shape
    angles = dsa.sample(gen(1), n=500).values["angle"] * 180 / math.pi
    assert angles.abs().max() <= 15 and angles.abs().max() > 14 and angles.std() > 5
    quarter = AugParams("rotate", 1, {"angle": torch.tensor([math.pi / 2], dtype=torch.float64)})
    torch.testing.assert_close(dsa.apply(x, quarter), torch.rot90(x, k=-1, dims=(2, 3)), rtol=0, atol=1e-5)
    # a centred disc is (nearly) invariant under rotation, also on non-square images
    for h, w in [(24, 24), (16, 40)]:
        disc = blob(h, w, radius=6)
        tilted = AugParams("rotate", 1, {"angle": torch.tensor([math.radians(15)], dtype=torch.float64)})
        rotated = dsa.apply(disc, tilted)
        assert (rotated - disc).abs().mean() < 0.03  # bilinear edge blur; no aspect fix gives 0.06 at 16x40
        assert math.isclose(rotated.sum().item(), disc.sum().item(), rel_tol=0.03)


def test_scale_factors_and_effect():
    dsa = DSA("scale")
    p = dsa.sample(gen(0), n=1000)
    for key in ("sx", "sy"):
        assert p.values[key].min() >= 1 / 1.2 and p.values[key].max() <= 1.2
        assert p.values[key].min() < 0.85 and p.values[key].max() > 1.18
    assert not torch.equal(p.values["sx"], p.values["sy"])
    ones = torch.ones(1, 1, 28, 28)
    unit = AugParams("scale", 1, {"sx": torch.tensor([1.0]), "sy": torch.tensor([1.0])})
    torch.testing.assert_close(dsa.apply(ones, unit), ones)
    out = dsa.apply(ones, AugParams("scale", 1, {"sx": torch.tensor([1.2]), "sy": torch.tensor([1.2])}))
    assert math.isclose(out[0, 0, 14, 14].item(), 1.0, rel_tol=1e-5)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 14, 0] == 0 and out[0, 0, 0, 14] == 0  # shrink: zero border
    out = dsa.apply(ones, AugParams("scale", 1, {"sx": torch.tensor([1 / 1.2]), "sy": torch.tensor([1.0])}))
    torch.testing.assert_close(out, ones)  # zoom in: no padding enters


def test_color_stays_within_its_bounds():
    x = images(300, c=1, h=10, w=10)
    out = DSA("color")(x, gen(0), siamese=False)
    # 1 channel: saturation is the identity, contrast keeps the mean, so mean shift = brightness
    shift = out.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 + 1e-5 and shift.abs().max() > 0.45
    ratio = out.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 1.5 + 1e-5
    assert ratio.min() < 0.55 and ratio.max() > 1.45
    p = DSA("color").sample(gen(1), n=2000)
    assert 0 <= p.values["saturation"].min() < 0.02 and 1.98 < p.values["saturation"].max() <= 2


def test_color_order_brightness_saturation_contrast():
    dsa = DSA("color")
    x = images(5, c=3, h=8, w=8)

    def params(b: float, s: float, c: float) -> AugParams:
        return AugParams("color", 1, {k: torch.tensor([v]) for k, v in
                                      (("brightness", b), ("saturation", s), ("contrast", c))})

    torch.testing.assert_close(dsa.apply(x, params(0.3, 1.0, 1.0)), x + 0.3)
    grey = dsa.apply(x, params(0.0, 0.0, 1.0))
    torch.testing.assert_close(grey, x.mean(1, keepdim=True).expand_as(x))
    contrast = dsa.apply(x, params(0.0, 1.0, 0.5))
    torch.testing.assert_close(contrast.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(contrast.std(dim=(1, 2, 3)), 0.5 * x.std(dim=(1, 2, 3)))


# ---------------------------------------------------------------- gradients, dtypes, devices, sizes
@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_flow_to_x(family):
    x = images(6, c=3, h=12, w=12).requires_grad_(True)
    for siamese in (True, False):
        x.grad = None
        (DSA(family)(x, gen(5), siamese=siamese) * torch.linspace(0, 1, 12)).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (2, 3, 64, 64), (4, 3, 16, 24), (5, 1, 28, 28)])
def test_every_family_on_sizes_and_devices(device, shape):
    x = torch.randn(*shape, generator=gen(0)).to(device)
    for family in FAMILIES:
        for siamese in (True, False):
            out = DSA(family)(x, gen(1), siamese=siamese)
            assert out.shape == x.shape and out.device == x.device and out.dtype == x.dtype
            assert torch.isfinite(out).all()
    if device != "cpu":  # same parameters, same result as on the CPU
        for seed in range(6):
            torch.testing.assert_close(DSA()(x, gen(seed)).cpu(), DSA()(x.cpu(), gen(seed)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_and_bf16_inputs(device):
    x = images(8, c=3, h=16, w=16).to(device)
    for seed in range(8):
        ref = DSA()(x, gen(seed))
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            auto = DSA()(x, gen(seed))
            low = DSA()(x.bfloat16(), gen(seed))
        assert auto.dtype == torch.float32 and low.dtype == torch.bfloat16
        torch.testing.assert_close(auto, ref)
        torch.testing.assert_close(low.float(), ref, atol=0.1, rtol=0.05)
    xg = x.bfloat16().requires_grad_(True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        DSA("rotate")(xg, gen(0)).float().sum().backward()
    assert torch.isfinite(xg.grad.float()).all() and xg.grad.float().abs().sum() > 0
