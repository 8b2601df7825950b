"""geodd.transport: entropic OT on POT's log-domain Sinkhorn: limits, marginals, exact gradients, float32 stability."""
from __future__ import annotations

import ot
import pytest
import torch

from geodd import GeoddError
from geodd.transport import COST_NORMS, COSTS, cost_matrix, entropic_plan, sinkhorn_cost, sinkhorn_loss, sinkhorn_plan


def _clouds(n=12, m=15, d=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype) + 0.7
    return x, y


def _uniform(n, dtype=torch.float64):
    return torch.full((n,), 1.0 / n, dtype=dtype)


@pytest.mark.parametrize("cost", COSTS)
def test_sinkhorn_tends_to_emd_as_eps_goes_to_zero(cost):
    x, y = _clouds()
    exact = float(ot.emd2(_uniform(len(x)), _uniform(len(y)), cost_matrix(x, y, cost)))
    gaps = []
    for eps in (1e-1, 1e-2, 1e-3):
        value = float(sinkhorn_loss(x, y, eps, cost, num_iter=20000, tol=1e-10))
        gaps.append(value - exact)
    assert all(gap > -1e-8 for gap in gaps)  # the entropic plan is feasible, so it never beats the exact OT
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 5e-3 * exact


@pytest.mark.parametrize("cost", COSTS)
def test_plan_satisfies_the_marginals(cost):
    x, y = _clouds(9, 7, 3)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(9, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(7, generator=g, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    for aa, bb in ((None, None), (a, b)):
        P = sinkhorn_plan(x, y, 0.05, cost, a=aa, b=bb, num_iter=5000, tol=1e-12)
        ea = _uniform(9) if aa is None else aa
        eb = _uniform(7) if bb is None else bb
        assert (P >= 0).all()
        torch.testing.assert_close(P.sum(1), ea, atol=1e-9, rtol=0)
        torch.testing.assert_close(P.sum(0), eb, atol=1e-9, rtol=0)


@pytest.mark.parametrize("cost, cost_norm", [(c, "max") for c in COSTS] + [("sqeuclidean", None)])
def test_gradients_agree_with_finite_differences(cost, cost_norm):
    x, y = _clouds(4, 5, 2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    eps = 0.3 if cost_norm == "max" else 1.0
    # tol=0 runs exactly num_iter iterations, so the computation is the same function under perturbation
    f = lambda x, y: sinkhorn_loss(x, y, eps, cost, cost_norm=cost_norm, num_iter=120, tol=0.0)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_precomputed_cost_matches_point_cloud_loss():
    x, y = _clouds()
    direct = sinkhorn_loss(x, y, 0.05, "l1")
    via_matrix = sinkhorn_cost(cost_matrix(x, y, "l1"), 0.05)
    torch.testing.assert_close(direct, via_matrix)


def test_envelope_gradient_is_the_plan_weighted_cost_gradient():
    x, y = _clouds(6, 5, 3)
    y.requires_grad_(True)
    sinkhorn_loss(x, y, 0.05, grad="envelope").backward()
    P = sinkhorn_plan(x, y.detach(), 0.05)
    expected = 2.0 * (P.sum(0)[:, None] * y.detach() - P.T @ x)  # d/dy_j sum_i P_ij |x_i - y_j|^2
    torch.testing.assert_close(y.grad, expected)


@pytest.mark.parametrize("cost", COSTS)
def test_float32_is_stable_at_eps_001_on_standardised_inputs(cost):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(48, 8, generator=g)
    y = torch.randn(40, 8, generator=g) * 1.2 + 0.3
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean(0)) / y.std(0)
    out = {}
    for dtype in (torch.float32, torch.float64):
        xx, yy = x.to(dtype).clone().requires_grad_(True), y.to(dtype).clone().requires_grad_(True)
        value = sinkhorn_loss(xx, yy, 0.01, cost, num_iter=3000, tol=1e-6)
        value.backward()
        out[dtype] = (value.detach(), yy.grad)
    v32, g32 = out[torch.float32]
    v64, g64 = out[torch.float64]
    assert torch.isfinite(v32) and torch.isfinite(g32).all()
    assert abs(float(v32) - float(v64)) < 1e-3 * float(v64)
    assert float((g32.double() - g64).norm() / g64.norm()) < 1e-2


def test_relative_eps_makes_the_loss_scale_equivariant():
    """A big unnormalised cost (max ~ 1e4) gives the same plan and a cost scaled by c^2, never a silent ~0."""
    x, y = _clouds(20, 20, 16, dtype=torch.float32)
    small = sinkhorn_loss(x, y, 0.01, num_iter=2000)
    big = sinkhorn_loss(100.0 * x, 100.0 * y, 0.01, num_iter=2000)
    assert float(big) > 0
    torch.testing.assert_close(big / 1e4, small, rtol=1e-4, atol=0)


def test_absolute_eps_on_a_large_cost_stays_right_in_log_domain():
    x, y = _clouds(10, 10, 4)
    C = 50.0 * cost_matrix(x, y)
    exact = float(ot.emd2(_uniform(10), _uniform(10), C))
    assert float(C.max()) > 1000  # POT's plain Sinkhorn returns ~0 here at this eps
    value = float(sinkhorn_cost(C, 0.5, cost_norm=None, num_iter=5000, tol=1e-9))
    assert abs(value - exact) < 1e-2 * exact


def test_non_converged_plan_raises_instead_of_returning_garbage():
    x, y = _clouds(30, 30, 2)
    with pytest.raises(GeoddError, match="did not converge"):
        sinkhorn_loss(x, y, 1e-4, num_iter=2)


@pytest.mark.parametrize("call, msg", [
    (lambda x, y: sinkhorn_loss(x, y, 0.1, "cosine"), "unknown OT cost"),
    (lambda x, y: sinkhorn_loss(x, y, 0.0), "eps"),
    (lambda x, y: sinkhorn_loss(x, y, 0.1, grad="implicit"), "gradient mode"),
    (lambda x, y: sinkhorn_loss(x, y, 0.1, cost_norm="min"), "unknown cost_norm"),
    (lambda x, y: sinkhorn_loss(x, y[:, :1], 0.1), r"\[n, d\]"),
    (lambda x, y: sinkhorn_loss(x, y, 0.1, a=_uniform(len(x)), b=2 * _uniform(len(y))), "same positive mass"),
    (lambda x, y: entropic_plan(torch.full((3, 3), float("nan"), dtype=torch.float64), 0.1), "non-finite"),
])
def test_bad_inputs_are_clear_errors(call, msg):
    x, y = _clouds(5, 6, 2)
    with pytest.raises(GeoddError, match=msg):
        call(x, y)


@pytest.mark.parametrize("cost_norm", COST_NORMS)
def test_every_cost_norm_is_the_plan_of_the_absolute_eps(cost_norm):
    """eps relative to s(C) is the same plan as the absolute eps * s(C) on C."""
    x, y = _clouds(8, 9, 3)
    C = cost_matrix(x, y)
    s = {"max": C.max(), "mean": C.mean(), "median": C.median()}[cost_norm]
    rel = entropic_plan(C, 0.2, cost_norm=cost_norm, num_iter=3000, tol=1e-12)
    absolute = entropic_plan(C, 0.2 * float(s), cost_norm=None, num_iter=3000, tol=1e-12)
    torch.testing.assert_close(rel, absolute, rtol=1e-9, atol=1e-12)
