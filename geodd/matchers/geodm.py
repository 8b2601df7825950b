"""GeoDM: distribution matching in a learnable product E^dE x H^dH x S^dS ("GeoDM: Geometry-aware Distribution
Matching for Dataset Distillation", Li et al., arXiv 2512.08317).

No code and no paper body are public (``docs/methods/geodm.md`` "What is known"): only the structure is known
(product of Euclidean, hyperbolic and spherical factors with learnable curvatures and weights, a per-geometry base
DM objective, an OT loss that couples the factors inside each class, a curvature regulariser). Everything concrete
here is **reconstruction: our choice** (``docs/methods/geodm.md`` "Equations", "Reconstruction: our choice"):

* Heads. Trunk features f [N, D] are standardised with the real statistics of the current network,
  f~ = (f - mu) / sigma (sigma: RMS per coordinate), then one linear map gives z_E in R^dE, z_H = (z_0, z_s) in
  R^(dH+1) and z_S in R^(dS+1). Points: x_E = z_E; x_H = (sqrt(k + |z_s|^2), z_s) on the hyperboloid
  <x, x>_L = -k, k = -1 / c_H (geoopt's Lorentz ``project``); x_S = R z_S / |z_S| on the sphere |x| = R,
  R = c_S^(-1/2). The factor maths lives in ``geodd.geometry.product`` (one object per factor).
* Curvatures c_H = -(C_FLOOR + softplus(a_H)) < 0 and c_S = C_FLOOR + softplus(a_S) > 0; weights
  w = softmax(logits). H and S maths run in float64.
* Image loss for class c (geometry frozen):
  L_c = sum_g w_g B_g(real_g, syn_g) + lambda_ot OT_eps(real, syn; C_ij = sum_g w_g d_g(x_i, y_j)^2)
        + lambda_curv sum_{g in H, S} mean_syn |<z_g, z_g>_g - R_g| / |R_g|
  with R_H = -k, R_S = R^2 (the raw head output's deviation from its manifold, the "curvature regularisation"
  of the reviews). Base B: "dm" = |mean log_o(real) - mean log_o(syn)|^2 (log map at the factor origin),
  "centroid" = d_g(centroid(real), centroid(syn))^2, "sdd" = the spectral distance on log_o coordinates.
* Geometry learning (``update_geometry``, one Adam step per sampled network on its real features): minimising
  L_c over the geometry collapses every factor to a point, so the geometry minimises instead a nearest-prototype
  cross-entropy, CE(softmax_c(-sum_g w_g d_g(x_i, p_gc)^2 / (mean_ic d_g^2 * tau))), p_gc = class centroid
  in factor g, plus the same regulariser on real outputs (and optionally a scale-free distortion term).
  Dividing by the mean squared distance makes the CE blind to a factor's overall scale, so it cannot win by
  inflating the heads; the temperature tau is learnable.

Options (``GeoDMOptions``) come in four groups by concern: ``geometry`` (the product: factors, dims, curvatures,
what is learnable), ``ot`` (the OT coupling), ``optim`` (the geometry optimiser and its objective) and ``loss``
(the per-factor base objective and the curvature regulariser of the image loss). Field names are unique across
groups, so flat keys (``{"lambda_ot": 0.5}``, CLI ``-o lambda_ot=0.5``) route to their group.

Shown in notebook 04 (04_geodm_product_space).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .. import GeoddError
from ..geometry.constants import C_FLOOR, DIST_FLOOR, FEATURE_SCALE_FLOOR, TAU_FLOOR
from ..geometry.product import CURVED_DTYPE as _HYP, FACTORS, factor_space
from ..options import require
from ..transport import CostNorm, Grad, sinkhorn_cost
from .base import Matcher, resolve_options
from .sdd import Kernel, sample_frequencies, sdd_loss

#: base objectives of the image loss, per factor
Base = Literal["dm", "centroid", "sdd"]
BASES: tuple[str, ...] = get_args(Base)


@dataclass
class GeometryOptions:
    """The product space: which factors, their dimensions, initial curvatures and what is learnable.
    Shown in notebook 04 (04_geodm_product_space)."""

    factors: str = "EHS"                 # non-empty subset of E, H, S in that order, e.g. "EH"
    dims: tuple[int, ...] | None = None  # intrinsic dimension per factor (64 each when None)
    curvature_h: float = -1.0            # initial c_H < -C_FLOOR
    curvature_s: float = 1.0             # initial c_S > C_FLOOR
    learn_curvature: bool = True         # learn c_H, c_S in update_geometry
    learn_weights: bool = True           # learn the factor weights w = softmax(logits)
    standardise: bool = True             # standardise head inputs with the real features' statistics

    def check(self) -> None:
        fs = self.factors
        require(bool(fs) and all(g in FACTORS for g in fs) and len(set(fs)) == len(fs)
                and list(fs) == sorted(fs, key=FACTORS.index),
                f"factors must be a non-empty subset of E, H, S in that order without repeats, got {fs!r}")
        if self.dims is not None:
            require(len(self.dims) == len(fs) and all(d >= 1 for d in self.dims),
                    f"dims must give one positive dimension per factor of {fs!r}, got {self.dims}")
        require(self.curvature_h < -C_FLOOR and self.curvature_s > C_FLOOR,
                f"need curvature_h < -{C_FLOOR} and curvature_s > {C_FLOOR}, got {self.curvature_h} and "
                f"{self.curvature_s}")


@dataclass
class OTOptions:
    """The OT coupling term: entropic OT on the weighted product cost inside each class (``geodd.transport``).
    Shown in notebook 04 (04_geodm_product_space)."""

    lambda_ot: float = 0.1                                    # weight of the OT term (0: off)
    ot_eps: float = 0.05                                      # entropic regulariser, relative to the cost norm
    ot_cost_norm: CostNorm = "max"                            # what eps is relative to
    ot_max_real: int = 128                                    # real points per class in OT (a seeded subsample)
    ot_iters: int = 300                                       # Sinkhorn iterations at most
    ot_tol: float = 1e-6                                      # Sinkhorn stopping threshold
    ot_grad: Grad = "envelope"                                # gradient through the plan or the envelope

    def check(self) -> None:
        require(self.lambda_ot >= 0, f"lambda_ot must be >= 0, got {self.lambda_ot}")
        require(self.ot_eps > 0, f"ot_eps must be > 0, got {self.ot_eps}")
        require(self.ot_max_real >= 1 and self.ot_iters >= 1, "need ot_max_real >= 1 and ot_iters >= 1")
        require(self.ot_tol > 0, f"ot_tol must be > 0, got {self.ot_tol}")


@dataclass
class OptimOptions:
    """The geometry optimiser (one Adam step per sampled network) and the objective it minimises.
    Shown in notebook 04 (04_geodm_product_space)."""

    geometry_lr: float = 1e-2            # Adam learning rate of heads, curvatures, weights, temperature
    geometry_lambda_curv: float = 1.0    # weight of the manifold regulariser in the geometry objective
    temperature: float = 0.1             # initial temperature tau of the prototype cross-entropy
    learn_temperature: bool = True       # learn tau
    lambda_distortion: float = 0.0       # weight of the scale-free distortion term (0: off)
    distortion_points: int = 128         # points in the distortion subsample

    def check(self) -> None:
        require(self.geometry_lr > 0, f"geometry_lr must be > 0, got {self.geometry_lr}")
        require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        require(self.geometry_lambda_curv >= 0 and self.lambda_distortion >= 0,
                "geometry_lambda_curv and lambda_distortion must be >= 0")
        require(self.distortion_points >= 2, f"distortion_points must be >= 2, got {self.distortion_points}")


@dataclass
class LossOptions:
    """The image loss apart from OT: the per-factor base objective and the curvature regulariser.
    Shown in notebook 04 (04_geodm_product_space)."""

    base: Base = "dm"                                          # per-factor base objective B_g
    lambda_curv: float = 0.1                                   # weight of the manifold regulariser (synthetic)
    sdd_kernel: Kernel = "rbf"                                 # base "sdd": kernel
    sdd_sigma: float = 1.0                                     # base "sdd": kernel bandwidth
    sdd_num_freqs: int = 1024                                  # base "sdd": frequencies per factor
    sdd_alpha: float = 0.5                                     # base "sdd": amplitude weight
    sdd_loss_scale: float = 100.0                              # base "sdd": multiplies the SDD loss

    def check(self) -> None:
        require(self.lambda_curv >= 0, f"lambda_curv must be >= 0, got {self.lambda_curv}")
        require(self.sdd_sigma > 0, f"sdd_sigma must be > 0, got {self.sdd_sigma}")
        require(self.sdd_num_freqs >= 1, f"sdd_num_freqs must be >= 1, got {self.sdd_num_freqs}")
        require(0.0 <= self.sdd_alpha <= 1.0, f"sdd_alpha must lie in [0, 1], got {self.sdd_alpha}")
        require(self.sdd_loss_scale > 0, f"sdd_loss_scale must be > 0, got {self.sdd_loss_scale}")


@dataclass
class GeoDMOptions:
    """Options of ``GeoDMMatcher`` in four groups by concern (flat keys route to their group).
    Shown in notebook 04 (04_geodm_product_space)."""

    geometry: GeometryOptions = field(default_factory=GeometryOptions)
    ot: OTOptions = field(default_factory=OTOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    loss: LossOptions = field(default_factory=LossOptions)


def _softplus_inv(v: float) -> float:
    """a with softplus(a) = v > 0 (stable for small and large v)."""
    return v + math.log(-math.expm1(-v))


class GeoDMMatcher(Matcher):
    """GeoDM (reconstruction: our choice throughout; see the module docstring for the equations).

    ``geometry.factors`` picks any non-empty subset of "EHS" for ablations, ``geometry.dims`` their intrinsic
    dimensions, ``loss.base`` the per-factor objective ("dm", "centroid", "sdd"). The OT term runs on at most
    ``ot_max_real`` real points per class (a random subsample drawn per sampled network) against all synthetic
    points, with eps ``ot_eps`` relative to the cost norm (``geodd.transport``) and the envelope gradient by
    default. The geometry (heads, curvatures, weights, temperature) is built at the first ``start_iteration``,
    learned only in ``update_geometry`` (once per sampled network) and frozen (detached) in ``forward``;
    ``history`` keeps one dict of logged scalars per geometry step (curvatures, weights, losses) for plots.

    Note: with a fresh random trunk at every network draw (the DM schedule) the heads see features whose
    coordinates mean something different at every step, so what they can learn is mostly scale, curvature and
    weights; a trunk that persists (``inner_steps`` > 1, the IDM schedule) gives the heads something stable to fit.
    Takes ``GeoDMOptions`` (or its keys as keyword overrides). Shown in notebook 04 (04_geodm_product_space).
    """

    name = "geodm"

    def __init__(self, options: GeoDMOptions | None = None, **overrides):
        super().__init__()
        o = self.options = resolve_options(GeoDMOptions, options, overrides, "geodm")
        geo = o.geometry
        self.factors = tuple(geo.factors)
        self.spaces = {g: factor_space(g) for g in self.factors}
        dims = (64,) * len(self.factors) if geo.dims is None else geo.dims
        self.dims = dict(zip(self.factors, dims))
        init = {"H": geo.curvature_h, "S": geo.curvature_s}
        self.raw_curvature = nn.ParameterDict({
            g: nn.Parameter(torch.tensor(_softplus_inv(abs(init[g]) - C_FLOOR)), requires_grad=geo.learn_curvature)
            for g in self.factors if g != "E"})
        self.weight_logits = nn.Parameter(torch.zeros(len(self.factors)), requires_grad=geo.learn_weights)
        self.log_tau = nn.Parameter(torch.tensor(math.log(o.optim.temperature)),
                                    requires_grad=o.optim.learn_temperature)
        # built lazily (start_iteration knows the feature dimension)
        self.register_parameter("head_weight", None)
        self.register_parameter("head_bias", None)
        self.register_buffer("head_gain", None)
        self.register_buffer("feat_mean", None)
        self.register_buffer("feat_scale", None)
        widths = [self.spaces[g].ambient_dim(self.dims[g]) for g in self.factors]  # H, S: ambient coordinates
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        self._slices = {g: slice(o_, o_ + w) for g, o_, w in zip(self.factors, offsets, widths)}
        self._out = sum(widths)
        self._opt: torch.optim.Optimizer | None = None
        self._rng: torch.Generator | None = None
        self.freqs: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []

    def extra_repr(self) -> str:
        o = self.options
        return (f"factors={self.factors}, dims={self.dims}, base={o.loss.base}, lambda_ot={o.ot.lambda_ot}, "
                f"ot_eps={o.ot.ot_eps}, lambda_curv={o.loss.lambda_curv}")

    # ---- geometry parameters -------------------------------------------------------------------------------------

    def curvature(self, g: str) -> torch.Tensor:
        """c_g as a float64 scalar: -(C_FLOOR + softplus(a_H)) for H, C_FLOOR + softplus(a_S) for S, 0 for E."""
        if g not in self.factors:
            raise GeoddError(f"factor {g!r} is not in this GeoDM's factors {self.factors}")
        if g == "E":
            return torch.zeros((), dtype=_HYP, device=self.weight_logits.device)
        c = C_FLOOR + F.softplus(self.raw_curvature[g].to(_HYP))
        return -c if g == "H" else c

    def set_curvature(self, g: str, c: float) -> None:
        """Set c_g (negative for H, positive for S, |c| > C_FLOOR) by inverting the softplus parametrisation."""
        if g not in ("H", "S") or g not in self.factors:
            raise GeoddError(f"only the curved factors present ({[f for f in self.factors if f != 'E']}) "
                             f"have a curvature, got {g!r}")
        if (g == "H" and not c < -C_FLOOR) or (g == "S" and not c > C_FLOOR):
            raise GeoddError(f"curvature of {g} must be {'<' if g == 'H' else '>'} "
                             f"{'-' if g == 'H' else ''}{C_FLOOR}, got {c}")
        with torch.no_grad():
            self.raw_curvature[g].fill_(_softplus_inv(abs(c) - C_FLOOR))

    def weights(self) -> torch.Tensor:
        """Geometry weights w = softmax(logits) [len(factors)], float64."""
        return torch.softmax(self.weight_logits.to(_HYP), 0)

    def _size(self, g: str, frozen: bool) -> torch.Tensor | None:
        """The factor's size (``geometry.product``): k = 1 / |c_H| for H, R = |c_S|^(-1/2) for S, None for E."""
        if g == "E":
            return None
        c = self.curvature(g)
        return self.spaces[g].size(c.detach() if frozen else c)

    # ---- heads ---------------------------------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self.head_weight is not None

    def _build(self, feature_dim: int, device: torch.device, generator: torch.Generator | None) -> None:
        """Create the heads: weights ~ N(0, 1) from ``generator`` (zeros when None: a checkpoint overwrites them)."""
        if generator is None:
            weight = torch.zeros(self._out, feature_dim, device=device)
        else:
            weight = torch.randn(self._out, feature_dim, generator=generator, device=generator.device).to(device)
        bias = torch.zeros(self._out, device=device)
        gain = torch.empty(self._out, device=device)
        for g in self.factors:  # |z_g| ~ 1 for unit-RMS input
            sl = self._slices[g]
            gain[sl] = 1.0 / math.sqrt(feature_dim * (sl.stop - sl.start))
        if "H" in self.factors:  # start the time coordinate near the hyperboloid: z_0 ~ sqrt(k + |z_s|^2)
            k0 = float(self._size("H", True))
            bias[self._slices["H"].start] = math.sqrt(k0 + 1.0)
        self.head_weight = nn.Parameter(weight)
        self.head_bias = nn.Parameter(bias)
        self.head_gain = gain
        self.feat_mean = torch.zeros(feature_dim, device=device)
        self.feat_scale = torch.ones((), device=device)
        self._make_optimizer()

    def _make_optimizer(self) -> None:
        params = [p for p in self.parameters() if p.requires_grad]
        self._opt = torch.optim.Adam(params, lr=self.options.optim.geometry_lr)

    def _check_built(self, features: torch.Tensor) -> None:
        if not self.built:
            raise GeoddError("GeoDM heads are not built: call start_iteration(iteration, generator, feature_dim, "
                             "device) first")
        if features.dim() != 2 or features.shape[1] != self.head_weight.shape[1]:
            raise GeoddError(f"GeoDM expects features [N, {self.head_weight.shape[1]}], got {tuple(features.shape)}")

    def head_output(self, features: torch.Tensor, frozen: bool = True) -> dict[str, torch.Tensor]:
        """Raw head outputs z_g per factor: [N, dE] for E, ambient [N, d + 1] for H and S (the head's dtype).

        z = gain * W (f - mu) / sigma + b with mu, sigma from the last ``update_geometry`` (identity before it)."""
        self._check_built(features)
        w, b, gain = self.head_weight, self.head_bias, self.head_gain
        if frozen:
            w, b = w.detach(), b.detach()
        z = F.linear(features.to(w.dtype), w)
        if self.options.geometry.standardise:  # W (f - mu) / sigma, folded so the [N, D] input is never copied
            z = (z - w @ self.feat_mean) / self.feat_scale
        z = z * gain + b
        return {g: z[:, self._slices[g]] for g in self.factors}

    def embed(self, features: torch.Tensor, frozen: bool = True) -> dict[str, torch.Tensor]:
        """Manifold points per factor: E in the features' dtype, H on <x,x>_L = -k and S on |x| = R in float64."""
        z = self.head_output(features, frozen)
        return {g: self.spaces[g].lift(z[g], self._size(g, frozen)) for g in self.factors}

    def manifold_residual(self, features: torch.Tensor) -> dict[str, float]:
        """Largest relative constraint violation of the embedded points per curved factor (a diagnostic)."""
        with torch.no_grad():
            pts = self.embed(features)
            return {g: float(self.spaces[g].residual(pts[g], self._size(g, True)).max())
                    for g in self.factors if g != "E"}

    # ---- hooks ---------------------------------------------------------------------------------------------------

    def start_iteration(self, iteration: int, generator: torch.Generator, feature_dim: int,
                        device: torch.device) -> None:
        """Build the heads (first call, seeded from ``generator``), draw this iteration's OT-subsample seed and,
        for the "sdd" base, the frequencies of every factor."""
        if not self.built:
            self._build(int(feature_dim), torch.device(device), generator)
        elif self.head_weight.shape[1] != feature_dim:
            raise GeoddError(f"GeoDM heads were built for {self.head_weight.shape[1]}-d features, got {feature_dim}")
        draw = generator.device if generator is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=draw))
        self._rng = torch.Generator().manual_seed(seed)
        lo = self.options.loss
        if lo.base == "sdd":
            self.freqs = {g: sample_frequencies(lo.sdd_kernel, self.dims[g], lo.sdd_num_freqs, lo.sdd_sigma,
                                                generator, device=device) for g in self.factors}

    def _subsample(self, n: int, k: int, device: torch.device) -> torch.Tensor | None:
        if n <= k:
            return None
        gen = self._rng if self._rng is not None else torch.Generator().manual_seed(n)
        return torch.randperm(n, generator=gen)[:k].to(device)

    def geometry_objective(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The geometry loss on real features with the live geometry (differentiable; module docstring).

        total = CE(softmax_c(-sum_g w_g d_g(x_i, p_gc)^2 / (mean_ic d_g^2 * tau)), labels)
                + geometry_lambda_curv * sum_{H,S} mean_i residual(z_i) [+ lambda_distortion * distortion].
        Returns the tensors total, proto, reg, logits (and distortion when enabled)."""
        self._check_built(real)
        if labels.shape != (real.shape[0],):
            raise GeoddError(f"labels must be [{real.shape[0]}], got {tuple(labels.shape)}")
        _, y = torch.unique(labels, return_inverse=True)
        onehot = F.one_hot(y, int(y.max()) + 1).to(_HYP).T
        onehot = onehot / onehot.sum(1, keepdim=True)
        z = self.head_output(real, frozen=False)
        w = self.weights()
        tau = TAU_FLOOR + self.log_tau.to(_HYP).exp()
        logits = torch.zeros(len(y), onehot.shape[0], dtype=_HYP, device=real.device)
        reg = torch.zeros((), dtype=_HYP, device=real.device)
        points = {}
        for i, g in enumerate(self.factors):
            sp, r = self.spaces[g], self._size(g, frozen=False)
            x = points[g] = sp.lift(z[g].to(_HYP), r)
            d2 = sp.pairwise_sqdist(x, sp.centroid(x, onehot, r), r)  # [N, C]
            logits = logits - w[i] * d2 / d2.mean().clamp_min(DIST_FLOOR)
            if g != "E":
                reg = reg + sp.residual(z[g], r).mean()
        logits = logits / tau
        proto = F.cross_entropy(logits, y)
        opt = self.options.optim
        out = {"total": proto + opt.geometry_lambda_curv * reg, "proto": proto, "reg": reg, "logits": logits,
               "labels": y, "tau": tau}
        if opt.lambda_distortion > 0:
            out["distortion"] = self._distortion(real, points, w)
            out["total"] = out["total"] + opt.lambda_distortion * out["distortion"]
        return out

    def prototype_loss(self, real: torch.Tensor, labels: torch.Tensor) -> float:
        """The nearest-prototype cross-entropy of the current geometry on ``real`` (no step; for tests/plots)."""
        with torch.no_grad():
            return float(self.geometry_objective(real.detach(), labels)["proto"])

    def update_geometry(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Refresh the input standardisation from ``real``, then one Adam step on the geometry (heads, curvatures,
        weights, temperature) for ``geometry_objective``; returns the logged scalars (also appended to
        ``history``): geometry_loss, proto_loss, curv_reg, proto_acc, tau, c_H, c_S, w_E, w_H, w_S."""
        self._check_built(real)
        real = real.detach()
        with torch.no_grad():
            if self.options.geometry.standardise:
                x = real.to(self.feat_mean.dtype)
                self.feat_mean.copy_(x.mean(0))
                self.feat_scale.copy_((x - self.feat_mean).pow(2).mean().sqrt().clamp_min(FEATURE_SCALE_FLOOR))
        self._opt.zero_grad(set_to_none=True)  # the image step may have left gradients in the geometry
        with torch.enable_grad():
            out = self.geometry_objective(real, labels)
            out["total"].backward()
        self._opt.step()
        self._opt.zero_grad(set_to_none=True)  # leave no geometry gradients behind for the image step
        out = {n: t.detach() for n, t in out.items()}
        log = {"geometry_loss": float(out["total"]), "proto_loss": float(out["proto"]), "curv_reg": float(out["reg"]),
               "proto_acc": float((out["logits"].argmax(1) == out["labels"]).to(_HYP).mean()),
               "tau": float(out["tau"])}
        if "distortion" in out:
            log["distortion"] = float(out["distortion"])
        with torch.no_grad():
            for g in self.factors:
                if g != "E":
                    log[f"c_{g}"] = float(self.curvature(g))
            for g, wg in zip(self.factors, self.weights().tolist()):
                log[f"w_{g}"] = wg
        self.history.append({"step": len(self.history), **log})
        return log

    def _distortion(self, real: torch.Tensor, points: dict[str, torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        """Scale-free distortion mean_{i != j} (d_ij^2 / mean d^2 - f_ij^2 / mean f^2)^2 between the product
        distance and the standardised trunk-feature distance, on a subsample (reconstruction: our choice)."""
        idx = self._subsample(real.shape[0], self.options.optim.distortion_points, real.device)
        pick = (lambda t: t) if idx is None else (lambda t: t[idx])
        f = pick(real).to(_HYP)
        f2 = torch.cdist(f, f).pow(2)
        d2 = sum(w[i] * self.spaces[g].pairwise_sqdist(pick(points[g]), pick(points[g]), self._size(g, False))
                 for i, g in enumerate(self.factors))
        off = ~torch.eye(f.shape[0], dtype=torch.bool, device=f.device)
        a = d2[off] / d2[off].mean().clamp_min(DIST_FLOOR)
        b = f2[off] / f2[off].mean().clamp_min(DIST_FLOOR)
        return (a - b).pow(2).mean()

    # ---- the image loss ------------------------------------------------------------------------------------------

    def _base(self, g: str, xr: torch.Tensor, xs: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        """The base objective B_g of factor ``g`` between real and synthetic points (module docstring)."""
        sp, lo = self.spaces[g], self.options.loss
        if lo.base == "dm":
            return (sp.log0(xr, r).mean(0) - sp.log0(xs, r).mean(0)).pow(2).sum()
        if lo.base == "centroid":
            cr = sp.centroid(xr, torch.full((1, len(xr)), 1.0 / len(xr), dtype=xr.dtype, device=xr.device), r)
            cs = sp.centroid(xs, torch.full((1, len(xs)), 1.0 / len(xs), dtype=xs.dtype, device=xs.device), r)
            return sp.sqdist(cr[0], cs[0], r)
        if g not in self.freqs:
            raise GeoddError("GeoDM base 'sdd' needs frequencies: call start_iteration first")
        vr, vs = sp.log0(xr, r), sp.log0(xs, r)
        freqs = self.freqs[g].to(vr.dtype)
        return lo.sdd_loss_scale * sdd_loss(vr, vs, freqs, lo.sdd_alpha)

    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        """L_c = sum_g w_g B_g + lambda_ot OT + lambda_curv * regulariser, geometry frozen (module docstring)."""
        self._check_built(real)
        self._check_built(syn)
        w = self.weights().detach()
        with torch.no_grad():
            zr = self.head_output(real)
        zs = self.head_output(syn)
        sizes = {g: self._size(g, frozen=True) for g in self.factors}
        pr = {g: self.spaces[g].lift(zr[g], sizes[g]) for g in self.factors}
        ps = {g: self.spaces[g].lift(zs[g], sizes[g]) for g in self.factors}
        ot_, lo = self.options.ot, self.options.loss
        loss = torch.zeros((), dtype=_HYP, device=real.device)
        for i, g in enumerate(self.factors):
            loss = loss + w[i] * self._base(g, pr[g], ps[g], sizes[g]).to(_HYP)
        if ot_.lambda_ot > 0:
            idx = self._subsample(real.shape[0], ot_.ot_max_real, real.device)
            cost = 0.0
            for i, g in enumerate(self.factors):
                xr = pr[g] if idx is None else pr[g][idx]
                cost = cost + w[i] * self.spaces[g].pairwise_sqdist(xr.to(_HYP), ps[g].to(_HYP), sizes[g])
            loss = loss + ot_.lambda_ot * sinkhorn_cost(cost, ot_.ot_eps, cost_norm=ot_.ot_cost_norm,
                                                        num_iter=ot_.ot_iters, tol=ot_.ot_tol, grad=ot_.ot_grad)
        if lo.lambda_curv > 0:
            for g in self.factors:
                if g != "E":
                    loss = loss + lo.lambda_curv * self.spaces[g].residual(zs[g], sizes[g]).mean()
        return loss.to(real.dtype)

    # ---- checkpoints ---------------------------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        """History, geometry optimiser, and the current network's frequencies and subsample generator (a
        checkpoint taken inside ``inner_steps`` resumes exactly)."""
        return {"history": [dict(h) for h in self.history],
                "optimizer": self._opt.state_dict() if self._opt is not None else None,
                "freqs": dict(self.freqs) if self.freqs else {},
                "rng": self._rng.get_state() if self._rng is not None else None}

    def set_extra_state(self, state: dict) -> None:
        self.history = [dict(h) for h in state.get("history", [])]
        device = self.weight_logits.device
        if "freqs" in state:
            self.freqs = {g: f.to(device) for g, f in state["freqs"].items()}
        if state.get("rng") is not None:
            self._rng = torch.Generator()
            self._rng.set_state(state["rng"])
        if state.get("optimizer") is not None:
            if self._opt is None:
                self._make_optimizer()
            self._opt.load_state_dict(state["optimizer"])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        weight = state_dict.get(prefix + "head_weight")
        if weight is not None and not self.built:  # lazily built heads: create them with the saved shapes
            if weight.shape[0] != self._out:
                error_msgs.append(f"GeoDM head has {weight.shape[0]} outputs, this configuration needs {self._out}")
                return
            self._build(weight.shape[1], self.weight_logits.device, None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


__all__ = ["GeoDMMatcher", "GeoDMOptions", "GeometryOptions", "OTOptions", "OptimOptions", "LossOptions",
           "FACTORS", "BASES", "C_FLOOR"]
