"""GeoDM: distribution matching in a learnable product E^dE x H^dH x S^dS (Li et al., arXiv 2512.08317).

No code and no paper body are public (papers/hdd_geodm.md, section 2): only the structure is known (product of
Euclidean, hyperbolic and spherical factors with learnable curvatures and weights, a per-geometry base DM
objective, an OT loss that couples the factors inside each class, a curvature regulariser). Everything concrete
here is **reconstruction: our choice**:

* Heads. Trunk features f [N, D] are standardised with this iteration's real statistics, f~ = (f - mu) / sigma
  (sigma: RMS per coordinate), then one linear map gives z_E in R^dE, z_H = (z_0, z_s) in R^(dH+1) and
  z_S in R^(dS+1). Points: x_E = z_E; x_H = (sqrt(k + |z_s|^2), z_s) on the hyperboloid <x, x>_L = -k,
  k = -1 / c_H (geoopt ``lorentz.math.project``); x_S = R z_S / |z_S| on the sphere |x| = R, R = c_S^(-1/2).
* Curvatures c_H = -(C_FLOOR + softplus(a_H)) < 0 and c_S = C_FLOOR + softplus(a_S) > 0; weights
  w = softmax(logits). H and S maths run in float64.
* Image loss for class c (geometry frozen):
  L_c = sum_g w_g B_g(real_g, syn_g) + lambda_ot OT_eps(real, syn; C_ij = sum_g w_g d_g(x_i, y_j)^2)
        + lambda_curv sum_{g in H, S} mean_syn |<z_g, z_g>_g - R_g| / |R_g|
  with R_H = -k, R_S = R^2 (the raw head output's deviation from its manifold, the "curvature regularisation"
  of the reviews). Base B: "dm" = |mean log_o(real) - mean log_o(syn)|^2 (log map at the factor origin),
  "centroid" = d_g(centroid(real), centroid(syn))^2, "sdd" = the spectral distance on log_o coordinates.
* Geometry learning (``update_geometry``, one Adam step per call on real features): minimising L_c over the
  geometry collapses every factor to a point, so the geometry minimises instead a nearest-prototype
  cross-entropy, CE(softmax_c(-sum_g w_g d_g(x_i, p_gc)^2 / (mean_ic d_g^2 * tau))), p_gc = class centroid
  in factor g, plus the same regulariser on real outputs (and optionally a scale-free distortion term).
  Dividing by the mean squared distance makes the CE blind to a factor's overall scale, so it cannot win by
  inflating the heads; the temperature tau is learnable.
"""
from __future__ import annotations

import math

import ot
import torch
import torch.nn.functional as F
from geoopt.manifolds.lorentz import math as lorentz
from torch import nn

from .. import GeoddError
from ..ot import GRADS, sinkhorn_cost
from .base import Matcher

FACTORS = ("E", "H", "S")
BASES = ("dm", "centroid", "sdd")
#: |c| >= C_FLOOR for the curved factors (softplus floor), so the sign of a curvature can never flip
C_FLOOR = 1e-4
#: floor under vector norms before a division (directions of zero vectors)
NORM_EPS = 1e-12
#: floor under the mean squared distance that normalises a factor in the prototype loss
DIST_FLOOR = 1e-12
#: floor under the Minkowski norm of a summed set of hyperboloid points (Lorentz centroid)
CENTROID_EPS = 1e-15
#: floor under squared chord lengths before their square root (pairwise spherical distances)
CHORD_EPS = 1e-30
#: floor under the temperature of the prototype loss
TAU_FLOOR = 1e-3
#: floor under the RMS feature scale used to standardise the head input
SCALE_FLOOR = 1e-12
_HYP = torch.float64  # dtype for hyperbolic and spherical maths


def _softplus_inv(v: float) -> float:
    """a with softplus(a) = v > 0 (stable for small and large v)."""
    return v + math.log(-math.expm1(-v))


# ---- factor maths (x: points, z: raw head outputs; `r` = k for H, R for S) -------------------------------------

def _lift(g: str, z: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    if g == "E":
        return z
    if g == "H":
        return lorentz.project(z, k=r)
    return r * z / z.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)


def _residual(g: str, z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Per-point relative constraint violation: |<z,z>_L + k| / k (H) or ||z|^2 - R^2| / R^2 (S)."""
    if g == "H":
        return (lorentz.inner(z, z) + r).abs() / r
    return (z.pow(2).sum(-1) - r * r).abs() / (r * r)


def _log0(g: str, x: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    """Log map at the factor origin, in intrinsic coordinates [.., d_g].

    H: sqrt(k) asinh(|x_s| / sqrt(k)) x_s / |x_s| (= geoopt's logmap0 spatial part, in a form accurate near o);
    S: R atan2(|x_s|, x_0) x_s / |x_s| at the pole o = (R, 0, ..., 0)."""
    if g == "E":
        return x
    xs = x[..., 1:]
    n = xs.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    if g == "H":
        sk = r.sqrt()
        return sk * torch.asinh(n / sk) * xs / n
    return r * torch.atan2(n, x[..., :1]) * xs / n


def _sqdist(g: str, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    """Squared geodesic distance, broadcasting over leading dims.

    H: geoopt's Lorentz distance sqrt(k) arcosh(-<x,y>_L / k). S: R * 2 atan2(|u - v|, |u + v|) with
    u = x / R, v = y / R, accurate at every angle (geoopt's Sphere.dist clamps acos at 1 - 1e-7, which floors the
    distance at 4.5e-4 rad and zeroes its gradient there)."""
    if g == "E":
        return (x - y).pow(2).sum(-1)
    if g == "H":
        return lorentz.dist(x, y, k=r).pow(2)
    u, v = x / r, y / r
    theta = 2.0 * torch.atan2((u - v).norm(dim=-1), (u + v).norm(dim=-1))
    return (r * theta).pow(2)


def _pairwise_sqdist(g: str, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    """[n, m] squared geodesic distances between x [n, .] and y [m, .] through one matmul (same values as
    ``_sqdist`` on broadcast pairs, an order of magnitude cheaper on CPU).

    E: POT's ``ot.dist``; H: sqrt(k) arcosh(-<x, y>_L / k) with geoopt's arcosh; S: R * 2 atan2(|u - v|, |u + v|)
    with |u -/+ v|^2 = 2 -/+ 2 <u, v> for u = x / R, v = y / R."""
    if g == "E":
        return ot.dist(x, y, metric="sqeuclidean")
    if g == "H":
        sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        sign[0] = -1.0
        t = -(x @ (y * sign).T) / r
        return (r.sqrt() * lorentz.arcosh(t.clamp_min(1.0))).pow(2)
    cos = (x @ y.T) / (r * r)
    theta = 2.0 * torch.atan2((2.0 - 2.0 * cos).clamp_min(CHORD_EPS).sqrt(),
                              (2.0 + 2.0 * cos).clamp_min(CHORD_EPS).sqrt())
    return (r * theta).pow(2)


def _centroids(g: str, x: torch.Tensor, weights: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
    """Per-row centroids [C, .] for row-stochastic weights [C, N]: the mean (E), the Lorentzian centroid
    sqrt(k) s / sqrt(|<s, s>_L|), s = sum_i w_i x_i (H, closed form), the extrinsic mean R s / |s| (S)."""
    s = weights @ x
    if g == "E":
        return s
    if g == "H":
        return r.sqrt() * s / lorentz.inner(s, s, keepdim=True).abs().clamp_min(CENTROID_EPS).sqrt()
    return r * s / s.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)


class GeoDMMatcher(Matcher):
    """GeoDM (reconstruction: our choice throughout; see the module docstring for the equations).

    ``factors`` picks any non-empty subset of ("E", "H", "S") for ablations; ``dims`` their intrinsic dimensions.
    ``base`` is the per-factor objective ("dm", "centroid", "sdd"). The OT term runs on at most ``ot_max_real``
    real points per class (a random subsample drawn from this iteration's seed) against all synthetic points,
    with eps ``ot_eps`` relative to the largest cost (``geodd.ot``) and the envelope gradient by default.
    The geometry (heads, curvatures, weights, temperature) is built at the first ``start_iteration``, learned
    only in ``update_geometry`` and frozen (detached) in ``forward``; ``history`` keeps one dict of logged
    scalars per geometry step (curvatures, weights, losses) for plots.

    Note: with a fresh random trunk every iteration (the DM schedule) the heads see features whose coordinates
    mean something different at every step, so what they can learn is mostly scale, curvature and weights; a
    trunk that persists (``inner_steps`` > 1, the IDM schedule) gives the heads something stable to fit.
    """

    name = "geodm"

    def __init__(self, factors: tuple[str, ...] | list[str] | str = FACTORS, dims: tuple[int, ...] | None = None,
                 base: str = "dm", lambda_ot: float = 0.1, ot_eps: float = 0.05, ot_max_real: int = 128,
                 ot_iters: int = 300, ot_tol: float = 1e-6, ot_grad: str = "envelope", lambda_curv: float = 0.1,
                 curvature_h: float = -1.0, curvature_s: float = 1.0, learn_curvature: bool = True,
                 learn_weights: bool = True, temperature: float = 0.1, learn_temperature: bool = True,
                 geometry_lr: float = 1e-2, geometry_lambda_curv: float = 1.0, lambda_distortion: float = 0.0,
                 distortion_points: int = 128, standardise: bool = True, sdd_kernel: str = "rbf",
                 sdd_scale: float = 1.0, sdd_num_freqs: int = 1024, sdd_alpha: float = 0.5,
                 sdd_loss_scale: float = 100.0):
        super().__init__()
        factors = tuple(factors) if not isinstance(factors, str) else tuple(factors.upper())
        if not factors or len(set(factors)) != len(factors) or any(g not in FACTORS for g in factors):
            raise GeoddError(f"factors must be a non-empty subset of {FACTORS} without repeats, got {factors}")
        self.factors = tuple(g for g in FACTORS if g in factors)
        dims = (64,) * len(self.factors) if dims is None else tuple(int(d) for d in dims)
        if len(dims) != len(self.factors) or any(d < 1 for d in dims):
            raise GeoddError(f"dims must give one positive dimension per factor {self.factors}, got {dims}")
        self.dims = dict(zip(self.factors, dims))
        if base not in BASES:
            raise GeoddError(f"unknown GeoDM base objective {base!r}; choose one of {', '.join(BASES)}")
        if curvature_h >= -C_FLOOR or curvature_s <= C_FLOOR:
            raise GeoddError(f"need curvature_h < -{C_FLOOR} and curvature_s > {C_FLOOR}, "
                             f"got {curvature_h} and {curvature_s}")
        for label, v in (("lambda_ot", lambda_ot), ("lambda_curv", lambda_curv),
                         ("geometry_lambda_curv", geometry_lambda_curv), ("lambda_distortion", lambda_distortion)):
            if not v >= 0:
                raise GeoddError(f"{label} must be >= 0, got {v}")
        for label, v in (("ot_eps", ot_eps), ("temperature", temperature), ("geometry_lr", geometry_lr)):
            if not v > 0:
                raise GeoddError(f"{label} must be > 0, got {v}")
        if ot_grad not in GRADS:
            raise GeoddError(f"unknown OT gradient mode {ot_grad!r}; choose one of {', '.join(GRADS)}")
        if ot_max_real < 1 or distortion_points < 2:
            raise GeoddError("need ot_max_real >= 1 and distortion_points >= 2")
        self.base = base
        self.lambda_ot, self.ot_eps, self.ot_max_real = float(lambda_ot), float(ot_eps), int(ot_max_real)
        self.ot_iters, self.ot_tol, self.ot_grad = int(ot_iters), float(ot_tol), ot_grad
        self.lambda_curv, self.geometry_lambda_curv = float(lambda_curv), float(geometry_lambda_curv)
        self.lambda_distortion, self.distortion_points = float(lambda_distortion), int(distortion_points)
        self.geometry_lr, self.standardise = float(geometry_lr), bool(standardise)
        self.sdd = dict(kernel=sdd_kernel, scale=float(sdd_scale), num=int(sdd_num_freqs), alpha=float(sdd_alpha),
                        loss_scale=float(sdd_loss_scale))
        init = {"H": curvature_h, "S": curvature_s}
        self.raw_curvature = nn.ParameterDict({
            g: nn.Parameter(torch.tensor(_softplus_inv(abs(init[g]) - C_FLOOR)), requires_grad=learn_curvature)
            for g in self.factors if g != "E"})
        self.weight_logits = nn.Parameter(torch.zeros(len(self.factors)), requires_grad=learn_weights)
        self.log_tau = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn_temperature)
        # built lazily (start_iteration knows the feature dimension)
        self.register_parameter("head_weight", None)
        self.register_parameter("head_bias", None)
        self.register_buffer("head_gain", None)
        self.register_buffer("feat_mean", None)
        self.register_buffer("feat_scale", None)
        widths = [self.dims[g] + (g != "E") for g in self.factors]  # H and S heads output ambient coordinates
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        self._slices = {g: slice(o, o + w) for g, o, w in zip(self.factors, offsets, widths)}
        self._out = sum(widths)
        self._opt: torch.optim.Optimizer | None = None
        self._rng: torch.Generator | None = None
        self.freqs: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []

    def extra_repr(self) -> str:
        return (f"factors={self.factors}, dims={self.dims}, base={self.base}, lambda_ot={self.lambda_ot}, "
                f"ot_eps={self.ot_eps}, lambda_curv={self.lambda_curv}")

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

    def _radius(self, g: str, frozen: bool) -> torch.Tensor | None:
        """k = 1 / |c_H| for H, R = |c_S|^(-1/2) for S, None for E."""
        if g == "E":
            return None
        c = self.curvature(g).abs()
        c = c.detach() if frozen else c
        return 1.0 / c if g == "H" else c.rsqrt()

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
            k0 = float(self._radius("H", True))
            bias[self._slices["H"].start] = math.sqrt(k0 + 1.0)
        self.head_weight = nn.Parameter(weight)
        self.head_bias = nn.Parameter(bias)
        self.head_gain = gain
        self.feat_mean = torch.zeros(feature_dim, device=device)
        self.feat_scale = torch.ones((), device=device)
        self._make_optimizer()

    def _make_optimizer(self) -> None:
        params = [p for p in self.parameters() if p.requires_grad]
        self._opt = torch.optim.Adam(params, lr=self.geometry_lr)

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
        if self.standardise:  # W (f - mu) / sigma, folded so the [N, D] input is never copied
            z = (z - w @ self.feat_mean) / self.feat_scale
        z = z * gain + b
        return {g: z[:, self._slices[g]] for g in self.factors}

    def embed(self, features: torch.Tensor, frozen: bool = True) -> dict[str, torch.Tensor]:
        """Manifold points per factor: E in the features' dtype, H on <x,x>_L = -k and S on |x| = R in float64."""
        z = self.head_output(features, frozen)
        return {g: _lift(g, z[g] if g == "E" else z[g].to(_HYP), self._radius(g, frozen)) for g in self.factors}

    def manifold_residual(self, features: torch.Tensor) -> dict[str, float]:
        """Largest relative constraint violation of the embedded points per curved factor (a diagnostic)."""
        with torch.no_grad():
            pts = self.embed(features)
            return {g: float(_residual(g, pts[g], self._radius(g, True)).max()) for g in self.factors if g != "E"}

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
        if self.base == "sdd":
            from .sdd import sample_frequencies  # lazy: the SDD module is optional for GeoDM's other bases
            self.freqs = {g: sample_frequencies(self.sdd["kernel"], self.dims[g], self.sdd["num"],
                                                self.sdd["scale"], generator, device=device) for g in self.factors}

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
            r = self._radius(g, frozen=False)
            x = points[g] = _lift(g, z[g].to(_HYP), r)
            d2 = _pairwise_sqdist(g, x, _centroids(g, x, onehot, r), r)  # [N, C]
            logits = logits - w[i] * d2 / d2.mean().clamp_min(DIST_FLOOR)
            if g != "E":
                reg = reg + _residual(g, z[g].to(_HYP), r).mean()
        logits = logits / tau
        proto = F.cross_entropy(logits, y)
        out = {"total": proto + self.geometry_lambda_curv * reg, "proto": proto, "reg": reg, "logits": logits,
               "labels": y, "tau": tau}
        if self.lambda_distortion > 0:
            out["distortion"] = self._distortion(real, points, w)
            out["total"] = out["total"] + self.lambda_distortion * out["distortion"]
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
            if self.standardise:
                x = real.to(self.feat_mean.dtype)
                self.feat_mean.copy_(x.mean(0))
                self.feat_scale.copy_((x - self.feat_mean).pow(2).mean().sqrt().clamp_min(SCALE_FLOOR))
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
        idx = self._subsample(real.shape[0], self.distortion_points, real.device)
        pick = (lambda t: t) if idx is None else (lambda t: t[idx])
        f = pick(real).to(_HYP)
        f2 = torch.cdist(f, f).pow(2)
        d2 = sum(w[i] * _pairwise_sqdist(g, pick(points[g]), pick(points[g]), self._radius(g, False))
                 for i, g in enumerate(self.factors))
        off = ~torch.eye(f.shape[0], dtype=torch.bool, device=f.device)
        a = d2[off] / d2[off].mean().clamp_min(DIST_FLOOR)
        b = f2[off] / f2[off].mean().clamp_min(DIST_FLOOR)
        return (a - b).pow(2).mean()

    # ---- the image loss ------------------------------------------------------------------------------------------

    def _base(self, g: str, xr: torch.Tensor, xs: torch.Tensor, r: torch.Tensor | None) -> torch.Tensor:
        if self.base == "dm":
            return (_log0(g, xr, r).mean(0) - _log0(g, xs, r).mean(0)).pow(2).sum()
        if self.base == "centroid":
            cr = _centroids(g, xr, torch.full((1, len(xr)), 1.0 / len(xr), dtype=xr.dtype, device=xr.device), r)
            cs = _centroids(g, xs, torch.full((1, len(xs)), 1.0 / len(xs), dtype=xs.dtype, device=xs.device), r)
            return _sqdist(g, cr[0], cs[0], r)
        from .sdd import sdd_loss  # lazy import (see start_iteration)
        if g not in self.freqs:
            raise GeoddError("GeoDM base 'sdd' needs frequencies: call start_iteration first")
        vr, vs = _log0(g, xr, r), _log0(g, xs, r)
        freqs = self.freqs[g].to(vr.dtype)
        return self.sdd["loss_scale"] * sdd_loss(vr, vs, freqs, self.sdd["alpha"])

    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        """L_c = sum_g w_g B_g + lambda_ot OT + lambda_curv * regulariser, geometry frozen (module docstring)."""
        self._check_built(real)
        self._check_built(syn)
        w = self.weights().detach()
        with torch.no_grad():
            zr = self.head_output(real)
        zs = self.head_output(syn)
        radii = {g: self._radius(g, frozen=True) for g in self.factors}
        pr = {g: _lift(g, zr[g] if g == "E" else zr[g].to(_HYP), radii[g]) for g in self.factors}
        ps = {g: _lift(g, zs[g] if g == "E" else zs[g].to(_HYP), radii[g]) for g in self.factors}
        loss = torch.zeros((), dtype=_HYP, device=real.device)
        for i, g in enumerate(self.factors):
            loss = loss + w[i] * self._base(g, pr[g], ps[g], radii[g]).to(_HYP)
        if self.lambda_ot > 0:
            idx = self._subsample(real.shape[0], self.ot_max_real, real.device)
            cost = 0.0
            for i, g in enumerate(self.factors):
                xr = pr[g] if idx is None else pr[g][idx]
                cost = cost + w[i] * _pairwise_sqdist(g, xr.to(_HYP), ps[g].to(_HYP), radii[g])
            loss = loss + self.lambda_ot * sinkhorn_cost(cost, self.ot_eps, num_iter=self.ot_iters, tol=self.ot_tol,
                                                         grad=self.ot_grad)
        if self.lambda_curv > 0:
            for g in self.factors:
                if g != "E":
                    loss = loss + self.lambda_curv * _residual(g, zs[g].to(_HYP), radii[g]).mean()
        return loss.to(real.dtype)

    # ---- checkpoints ---------------------------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return {"history": [dict(h) for h in self.history],
                "optimizer": self._opt.state_dict() if self._opt is not None else None}

    def set_extra_state(self, state: dict) -> None:
        self.history = [dict(h) for h in state.get("history", [])]
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


__all__ = ["GeoDMMatcher", "FACTORS", "BASES", "C_FLOOR"]
