"""Entropic optimal transport losses on POT's torch backend (log-domain Sinkhorn).

The entropic plan P_eps = argmin_{P in U(a, b)} <P, C> + eps_abs * sum_ij P_ij log P_ij (Cuturi 2013) is computed
by POT's log-domain solver ``ot.bregman.sinkhorn_log`` on torch tensors (any device, any float dtype), and the
loss is the transport cost <P_eps, C> without the entropic term (as ``ot.sinkhorn2`` returns;
``docs/methods/ot_generative.md`` "Equations").

Cost normalisation (reconstruction: our choice; ``docs/methods/ot_generative.md`` and ``docs/methods/geodm.md``
"Reconstruction: our choice"). ``eps`` is *relative* to the cost by default: the solver runs on C / s with
regulariser ``eps``, s = max(C) (``cost_norm="max"``; also "mean", "median"), which is the same plan as regulariser
eps_abs = eps * s on C. A relative eps means the same amount of blur whatever the units of the features, and the
log domain never underflows, so the "near-zero cost with only a warning" failure of POT's plain Sinkhorn on an
unnormalised cost cannot happen. ``cost_norm=None`` makes ``eps`` absolute.
Every solve checks the plan: a non-finite plan, or one whose marginals miss (a, b) by more than
``max_marginal_error`` in L1 (mass misplaced), raises ``GeoddError`` instead of returning a wrong number.

Gradients: ``grad="autodiff"`` differentiates through the Sinkhorn iterations (exact derivative of what was
computed; POT recommends the log solver for this); ``grad="envelope"`` detaches the plan, so
d<P, C> ~= <P_eps, dC>, which is the exact gradient of the entropic OT value (Danskin / envelope theorem) and
costs no backward pass through the iterations (cheap: used inside GeoDM).

Shown in notebook 05 (05_ot_generative) and, inside GeoDM, notebook 04 (04_geodm_product_space).
"""
from __future__ import annotations

import warnings
from typing import Literal, get_args

import ot
import torch

from . import GeoddError
from .geometry.constants import COST_NORM_FLOOR, SQRT_EPS

#: ground costs understood by ``cost_matrix``
COSTS = ("sqeuclidean", "euclidean", "l1")
#: cost normalisations (``cost_norm``) for a relative eps
CostNorm = Literal["max", "mean", "median"]
COST_NORMS: tuple[str, ...] = get_args(CostNorm)
#: gradient modes
Grad = Literal["autodiff", "envelope"]
GRADS: tuple[str, ...] = get_args(Grad)
#: tolerance on sum(a) = sum(b), relative to sum(a)
MASS_TOL = 1e-6


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str = "sqeuclidean") -> torch.Tensor:
    """C_ij = c(x_i, y_j) for x [n, d], y [m, d]: |x - y|^2 (POT's ``ot.dist``), |x - y|_2, or |x - y|_1.
    Shown in notebook 05 (05_ot_generative), inside ``sinkhorn_loss``."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise GeoddError(f"OT needs points [n, d] and [m, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    if cost == "sqeuclidean":
        return ot.dist(x, y, metric="sqeuclidean")
    if cost == "euclidean":
        return ot.dist(x, y, metric="sqeuclidean").clamp_min(SQRT_EPS).sqrt()
    if cost == "l1":
        return torch.cdist(x, y, p=1.0)  # memory O(nm), unlike ot.dist's tensorised cityblock (O(nmd))
    raise GeoddError(f"unknown OT cost {cost!r}; choose one of {', '.join(COSTS)}")


def _marginals(C: torch.Tensor, a: torch.Tensor | None, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    n, m = C.shape
    a = torch.full((n,), 1.0 / n, dtype=C.dtype, device=C.device) if a is None else a.to(C)
    b = torch.full((m,), 1.0 / m, dtype=C.dtype, device=C.device) if b is None else b.to(C)
    if a.shape != (n,) or b.shape != (m,):
        raise GeoddError(f"marginals must be [{n}] and [{m}], got {tuple(a.shape)} and {tuple(b.shape)}")
    if bool((a < 0).any()) or bool((b < 0).any()):
        raise GeoddError("OT marginals must be non-negative")
    sa, sb = float(a.sum()), float(b.sum())
    if not sa > 0 or abs(sa - sb) > MASS_TOL * sa:
        raise GeoddError(f"OT marginals must have the same positive mass, got {sa:.6g} and {sb:.6g}")
    return a, b


def _cost_normaliser(C: torch.Tensor, cost_norm: str | None) -> torch.Tensor:
    """The normaliser s of ``cost_norm`` (1 for None); it stays in the graph, so "autodiff" is the exact gradient
    of the value as defined."""
    if cost_norm is None:
        return torch.ones((), dtype=C.dtype, device=C.device)
    if cost_norm == "max":
        s = C.max()
    elif cost_norm == "mean":
        s = C.mean()
    elif cost_norm == "median":
        s = C.median()
    else:
        raise GeoddError(f"unknown cost_norm {cost_norm!r}; choose one of {', '.join(COST_NORMS)} or None")
    return s.clamp_min(COST_NORM_FLOOR)


def entropic_plan(C: torch.Tensor, eps: float, a: torch.Tensor | None = None, b: torch.Tensor | None = None, *,
                  cost_norm: str | None = "max", num_iter: int = 1000, tol: float = 1e-7,
                  max_marginal_error: float | None = 1e-2) -> torch.Tensor:
    """The entropic plan P [n, m] for a cost matrix C [n, m] by POT's log-domain Sinkhorn (differentiable in C).

    Solves min_P <P, C / s> + eps * sum P log P over U(a, b) (uniform a, b by default; s from ``cost_norm``);
    ``tol`` is POT's stopThr on the L2 violation of the second marginal, checked every 10 iterations.
    Raises ``GeoddError`` if the plan is not finite or misses the marginals by more than ``max_marginal_error``
    (L1, relative to the mass); ``None`` skips that check. Shown in notebooks 04 (04_geodm_product_space) and 05
    (05_ot_generative), inside ``sinkhorn_cost``.
    """
    if C.dim() != 2 or C.shape[0] == 0 or C.shape[1] == 0:
        raise GeoddError(f"OT needs a non-empty cost matrix [n, m], got {tuple(C.shape)}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise GeoddError(f"Sinkhorn eps must be a positive number, got {eps!r}")
    if not bool(torch.isfinite(C.detach()).all()):
        raise GeoddError("OT cost matrix has non-finite entries")
    a, b = _marginals(C, a, b)
    s = _cost_normaliser(C, cost_norm)
    with warnings.catch_warnings():
        # POT warns on non-convergence; we check the marginals ourselves and raise when they are off
        warnings.simplefilter("ignore", UserWarning)
        P = ot.bregman.sinkhorn_log(a, b, C / s, float(eps), numItermax=int(num_iter), stopThr=float(tol),
                                    warn=False)
    with torch.no_grad():
        if not bool(torch.isfinite(P).all()):
            raise GeoddError(f"Sinkhorn plan is not finite (eps={eps}, cost_norm={cost_norm}); use a larger eps")
        if max_marginal_error is not None:
            mass = a.sum()
            err = float(((P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum()) / mass)
            if err > max_marginal_error:
                raise GeoddError(f"Sinkhorn did not converge: marginal error {err:.3g} > {max_marginal_error} "
                                 f"after {num_iter} iterations (eps={eps}, cost_norm={cost_norm}); "
                                 "raise num_iter or eps")
    return P


def sinkhorn_cost(C: torch.Tensor, eps: float, a: torch.Tensor | None = None, b: torch.Tensor | None = None, *,
                  cost_norm: str | None = "max", num_iter: int = 1000, tol: float = 1e-7, grad: str = "autodiff",
                  max_marginal_error: float | None = 1e-2) -> torch.Tensor:
    """<P_eps, C> for a precomputed cost matrix C [n, m] (e.g. a product-space cost), a differentiable scalar.

    ``grad="autodiff"``: exact gradient through the iterations; ``"envelope"``: the plan is held fixed, so the
    gradient is <P_eps, dC> (the gradient of the entropic OT value). Other arguments as ``entropic_plan``.
    Shown in notebook 04 (04_geodm_product_space), as GeoDM's OT term, and notebook 05 (05_ot_generative).
    """
    if grad not in GRADS:
        raise GeoddError(f"unknown OT gradient mode {grad!r}; choose one of {', '.join(GRADS)}")
    if grad == "envelope":
        with torch.no_grad():
            P = entropic_plan(C.detach(), eps, None if a is None else a.detach(), None if b is None else b.detach(),
                              cost_norm=cost_norm, num_iter=num_iter, tol=tol, max_marginal_error=max_marginal_error)
    else:
        P = entropic_plan(C, eps, a, b, cost_norm=cost_norm, num_iter=num_iter, tol=tol,
                          max_marginal_error=max_marginal_error)
    return (P * C).sum()


def sinkhorn_plan(x: torch.Tensor, y: torch.Tensor, eps: float, cost: str = "sqeuclidean", *,
                  a: torch.Tensor | None = None, b: torch.Tensor | None = None, cost_norm: str | None = "max",
                  num_iter: int = 1000, tol: float = 1e-7,
                  max_marginal_error: float | None = 1e-2) -> torch.Tensor:
    """The entropic plan [n, m] between point clouds x [n, d] and y [m, d] under ``cost`` (for plots and tests).
    Shown in notebook 05 (05_ot_generative), through the same solver as ``sinkhorn_loss``."""
    return entropic_plan(cost_matrix(x, y, cost), eps, a, b, cost_norm=cost_norm, num_iter=num_iter, tol=tol,
                         max_marginal_error=max_marginal_error)


def sinkhorn_loss(x: torch.Tensor, y: torch.Tensor, eps: float, cost: str = "sqeuclidean", *,
                  a: torch.Tensor | None = None, b: torch.Tensor | None = None, cost_norm: str | None = "max",
                  num_iter: int = 1000, tol: float = 1e-7, grad: str = "autodiff",
                  max_marginal_error: float | None = 1e-2) -> torch.Tensor:
    """Entropic OT cost <P_eps, C(x, y)> with uniform marginals by default, differentiable in x and y.

    C is ``cost`` ("sqeuclidean", "euclidean" or "l1"); ``eps`` is relative to max(C) unless ``cost_norm=None``
    (module docstring). As eps -> 0 the value tends to the exact OT cost ``ot.emd2(a, b, C)``.
    Shown in notebook 05 (05_ot_generative).
    """
    return sinkhorn_cost(cost_matrix(x, y, cost), eps, a, b, cost_norm=cost_norm, num_iter=num_iter, tol=tol, grad=grad,
                         max_marginal_error=max_marginal_error)


__all__ = ["COSTS", "CostNorm", "COST_NORMS", "Grad", "GRADS", "cost_matrix", "entropic_plan", "sinkhorn_cost", "sinkhorn_plan",
           "sinkhorn_loss"]
