"""geodd.plan: measured FLOPs match the textbook formulas, per-image counts scale, totals add up, bad input is
one line."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geodd import GeoddError, methods
from geodd.nets import get_network
from geodd.plan import (check_tflops, count_flops, data_shape, format_plan, network_cost, plan_table, run_cost,
                        saved_bytes)
from geodd.profiles import get as profile
from geodd.sweep import Grid, load_grid


def conv_flops(n, cin, cout, h, w, k):
    """2 x multiply-adds of a k x k convolution with ``cout`` outputs of h x w per image (no bias)."""
    return 2 * n * cout * h * w * cin * k * k


def test_a_conv_layer_counts_as_the_formula(one_thread):
    conv = nn.Conv2d(3, 16, 3, padding=1)
    x = torch.randn(2, 3, 32, 32)
    want = conv_flops(2, 3, 16, 32, 32, 3)
    with torch.no_grad():
        assert count_flops(lambda: conv(x)) == pytest.approx(want, rel=0.01)
    for p in conv.parameters():
        p.requires_grad_(False)
    xi = x.clone().requires_grad_(True)  # backward to the input only: as many FLOPs again
    assert count_flops(lambda: conv(xi).sum().backward()) == pytest.approx(2 * want, rel=0.01)
    for p in conv.parameters():
        p.requires_grad_(True)              # backward to the weights only (the input needs no gradient)
    assert count_flops(lambda: conv(x).sum().backward()) == pytest.approx(2 * want, rel=0.01)


def test_the_convnet_forward_is_its_three_convs_and_head(one_thread):
    c = network_cost("convnet", 3, 10, (32, 32))
    want = conv_flops(1, 3, 128, 32, 32, 3) + conv_flops(1, 128, 128, 16, 16, 3) + conv_flops(1, 128, 128, 8, 8, 3) \
        + 2 * 2048 * 10
    assert c.forward == pytest.approx(want, rel=0.01)
    assert c.image_step == pytest.approx(2 * c.forward, rel=0.01)        # forward + backward to the images
    # training: no gradient for the images, so the first conv's input gradient is not computed
    assert c.train_step == pytest.approx(3 * c.forward - conv_flops(1, 3, 128, 32, 32, 3), rel=0.01)
    assert c.embed_dim == 2048
    assert c.params == sum(p.numel() for p in get_network("convnet", 3, 10, (32, 32)).parameters())
    # the widest layer of a no-grad forward: the first norm's 128 x 32 x 32 fp32 input and output
    assert c.peak_forward == 2 * 128 * 32 * 32 * 4
    assert c.saved_train > 0 and c.saved_image > 0


def test_per_image_counts_do_not_depend_on_the_batch(one_thread):
    a = network_cost("convnet", 1, 10, (28, 28), batch=2)
    b = network_cost("convnet", 1, 10, (28, 28), batch=3)
    for field in ("forward", "image_step", "train_step", "saved_image", "saved_train", "peak_forward"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-6), field


def test_saved_bytes_counts_each_tensor_once_and_skips_parameters():
    x = torch.randn(4, 8, requires_grad=True)
    assert saved_bytes(lambda: (x * x).sum()) == 4 * 8 * 4   # x saved twice by mul, counted once
    lin = nn.Linear(8, 3)
    assert saved_bytes(lambda: lin(x), exclude=list(lin.parameters())) == 4 * 8 * 4   # the input, not the weight


def test_a_dm_run_costs_its_steps_and_its_evaluation(one_thread):
    p = profile("paper")
    grid = Grid("t", "paper", ("DM",), ("cifar10",), (10,), (0,))
    cfg = methods.config("DM", p, ipc=10)
    c = network_cost("convnet", 3, 10, (32, 32))
    cost = run_cost(cfg, p, data_shape("cifar10", p))
    per_it = 10 * 256 * c.forward + 100 * c.image_step              # DM's matcher: means and squares, no FLOPs
    assert cost["distill FLOPs"] == pytest.approx(p.iterations * per_it, rel=1e-9)
    assert cost["eval FLOPs"] == pytest.approx(p.eval_runs * (p.eval_epochs * 100 * c.train_step + 10000 * c.forward))
    row = plan_table(grid, 100).iloc[0]
    assert row["distill TFLOP"] == pytest.approx(cost["distill FLOPs"] / 1e12)
    assert 1 < row["peak GiB"] < 20 and row["image steps"] == 20000


def test_totals_add_up_and_idm_costs_more(one_thread):
    grid = load_grid("profile:smoke")
    table = plan_table(grid, tflops=7.0)
    assert len(table) == len(grid.methods) * len(grid.ipcs) and table["runs"].sum() == len(grid)
    hours = (table["distill TFLOP"] + table["eval TFLOP"]) * 1e12 / (7.0e12 * 3600)
    assert table["GPU-h/run"].to_numpy() == pytest.approx(hours.to_numpy())
    assert table["GPU-h"].to_numpy() == pytest.approx((table["GPU-h/run"] * table["runs"]).to_numpy())
    by = table.set_index(["method", "ipc"])
    assert by.loc[("IDM", 1), "distill TFLOP"] > by.loc[("DM", 1), "distill TFLOP"]   # the pool's training
    text = format_plan(grid, 7.0)
    assert f"{table['GPU-h'].sum():.4g} GPU-hours at 7 TFLOP/s" in text


def test_long_tailed_and_subset_shapes():
    from geodd.data import DEFAULT_IMF, long_tail_counts
    assert data_shape("cifar10", profile("paper")).train_counts == (5000,) * 10
    smoke = data_shape("fashion-mnist", profile("smoke"))
    assert smoke.train_counts == (60,) * 10 and smoke.test == 200 and smoke.channels == 1
    lt = data_shape("cifar10-lt", profile("paper"))
    assert list(lt.train_counts) == long_tail_counts(5000, 10, DEFAULT_IMF) and lt.name == "cifar10-lt"


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "3", True])
def test_bad_tflops_is_a_one_line_error(bad):
    with pytest.raises(GeoddError, match="--tflops must be a positive number") as exc:
        check_tflops(bad)
    assert "\n" not in str(exc.value)
