"""SDD and CSDM: spectral (characteristic-function) distribution matching (CSDM, Wu et al., arXiv 2603.01698,
Sec. 3-4; ``docs/methods/sdd_csdm.md`` "Equations", "Long-tailed data", "Reconstruction: our choice").

By Bochner's theorem a translation-invariant kernel k(x, y) = psi(x - y) has a spectral measure Lambda, and
MMD_k^2(P, Q) = int |phi_P(w) - phi_Q(w)|^2 dLambda(w) (Sriperumbudur et al. 2010, Cor. 4). With empirical
characteristic functions phi(w) = mean_i exp(i <w, f_i>) and w_1..w_F ~ Lambda, the Monte-Carlo mean of
|phi_r - phi_s|^2 estimates the (V-statistic) MMD^2 at O((N + M) F D) cost. NCFM (CVPR 2025, Eq. 7) splits
|phi_r - phi_s|^2 into an amplitude term (|phi_r| - |phi_s|)^2 ("diversity") and a phase term
2 |phi_r| |phi_s| (1 - cos(theta_r - theta_s)) ("realism"); CSDM weights them per class, alpha(c).

Conventions: ``sigma`` is the kernel bandwidth; RBF k = exp(-|x-y|^2 / (2 sigma^2)) has w ~ N(0, sigma^-2 I);
Laplace k = exp(-|x-y|_1 / sigma) has each w_k ~ Cauchy(0, 1/sigma).

The linear kernel <x, y> is not translation invariant and has no spectral measure; its MMD^2 is DM's
||mu_r - mu_s||^2. geodd treats it as the large-bandwidth limit of RBF: with w = g / sigma, g ~ N(0, I),
|phi_r(w) - phi_s(w)|^2 = <g, mu_r - mu_s>^2 / sigma^2 + O(sigma^-4), of which the phase term carries the
leading order and the amplitude term is O(sigma^-4). Hence sigma^2 * SDD_alpha -> (1 - alpha) ||mu_r - mu_s||^2
as sigma -> inf. ``sample_frequencies("linear", ...)`` draws those N(0, sigma^-2 I) probes (use a large sigma),
and ``SDDMatcher(kernel="linear")`` uses the closed-form limit (``dm_loss``, no sampling, no Monte-Carlo noise).

Shown in notebook 03 (03_csdm_amplitude_phase).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from .. import GeoddError
from ..geometry.constants import CF_MAG_EPS, NORM_EPS, SQRT_EPS
from ..options import require
from .base import Matcher, resolve_options
from .dm import dm_loss

#: kernels with a frequency sampler
Kernel = Literal["rbf", "laplace", "linear"]
KERNELS: tuple[str, ...] = get_args(Kernel)
#: CSDM head/tail rules and weighting directions
AlphaRule = Literal["median", "smooth"]
ALPHA_RULES: tuple[str, ...] = get_args(AlphaRule)
Direction = Literal["tail_realism", "head_realism"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
#: E|<g, u>| for g ~ N(0, I) and a unit vector u: the small-frequency limit of the square-rooted loss
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def sample_frequencies(kernel: str, dim: int, num: int, sigma: float,
                       generator: torch.Generator | None = None, *, device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``num`` frequencies [num, dim] from the spectral measure of ``kernel`` with bandwidth ``sigma``.

    rbf: w ~ N(0, sigma^-2 I); laplace: w_k ~ Cauchy(0, 1/sigma) i.i.d.; linear: the RBF probes N(0, sigma^-2 I)
    of the large-sigma limit (the linear kernel has no spectral measure; see the module docstring).
    Drawn on the generator's device (CPU by default) in ``dtype``, then moved to ``device``.
    Shown in notebook 03 (03_csdm_amplitude_phase).
    """
    if kernel not in KERNELS:
        raise GeoddError(f"unknown SDD kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise GeoddError(f"SDD sigma (kernel bandwidth) must be a positive finite number, got {sigma!r}")
    if dim < 1 or num < 1:
        raise GeoddError(f"need dim >= 1 and num >= 1 frequencies, got dim={dim}, num={num}")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    if kernel == "laplace":
        freqs = torch.empty(num, dim, dtype=dtype, device=draw_device).cauchy_(0.0, 1.0 / sigma, generator=generator)
    else:
        freqs = torch.randn(num, dim, dtype=dtype, device=draw_device, generator=generator) / sigma
    return freqs.to(device) if device is not None else freqs


def _cf_pair(real: torch.Tensor, syn: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Re and Im [F] of the empirical CFs mean_i exp(i <w, x_i>) of ``real`` and of ``syn`` (one matmul)."""
    proj_r, proj_s = _JointProjection.apply(real, syn, freqs)
    return proj_r.cos().mean(0), proj_r.sin().mean(0), proj_s.cos().mean(0), proj_s.sin().mean(0)


class _JointProjection(torch.autograd.Function):
    """(real @ W^T, syn @ W^T) from one matmul on cat([real, syn]) (W [F, D] is read once), with a backward that
    forms only the gradients autograd asks for: with detached real features just the small [M, D] one."""

    @staticmethod
    def forward(ctx, real: torch.Tensor, syn: torch.Tensor, freqs: torch.Tensor):
        ctx.save_for_backward(real, syn, freqs)
        proj = torch.cat([real, syn]) @ freqs.T
        proj_r, proj_s = proj[:real.shape[0]], proj[real.shape[0]:]
        if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[2]):
            ctx.mark_non_differentiable(proj_r)  # so cos/sin of the real side record no graph at all
        return proj_r, proj_s

    @staticmethod
    def backward(ctx, grad_r: torch.Tensor | None, grad_s: torch.Tensor | None):
        real, syn, freqs = ctx.saved_tensors
        grad_r = torch.zeros(real.shape[0], freqs.shape[0], dtype=freqs.dtype, device=freqs.device) \
            if grad_r is None else grad_r
        grad_s = torch.zeros(syn.shape[0], freqs.shape[0], dtype=freqs.dtype, device=freqs.device) \
            if grad_s is None else grad_s
        need_r, need_s, need_w = ctx.needs_input_grad
        return (grad_r @ freqs if need_r else None, grad_s @ freqs if need_s else None,
                grad_r.T @ real + grad_s.T @ syn if need_w else None)


def _split(re_r: torch.Tensor, im_r: torch.Tensor, re_s: torch.Tensor,
           im_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude (|r| - |s|)^2 and phase 2(|r||s| - Re r Re s - Im r Im s) >= 0 from the CF parts."""
    mag_r = (re_r * re_r + im_r * im_r).clamp_min(CF_MAG_EPS).sqrt()
    mag_s = (re_s * re_s + im_s * im_s).clamp_min(CF_MAG_EPS).sqrt()
    amplitude = (mag_r - mag_s).pow(2)
    phase = 2.0 * (mag_r * mag_s - re_r * re_s - im_r * im_s).clamp_min(0.0)
    return amplitude, phase


def _check_features(real: torch.Tensor, syn: torch.Tensor, freqs: torch.Tensor | None = None) -> None:
    if real.dim() != 2 or syn.dim() != 2 or real.shape[1] != syn.shape[1]:
        raise GeoddError(f"SDD needs features [N, D] and [M, D], got {tuple(real.shape)} and {tuple(syn.shape)}")
    if real.shape[0] == 0 or syn.shape[0] == 0:
        raise GeoddError("SDD needs at least one real and one synthetic feature vector")
    if freqs is not None and (freqs.dim() != 2 or freqs.shape[1] != real.shape[1]):
        raise GeoddError(f"frequencies must be [F, {real.shape[1]}], got {tuple(freqs.shape)}")


def sdd_terms(real: torch.Tensor, syn: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frequency amplitude (|phi_r| - |phi_s|)^2 and phase 2|phi_r||phi_s|(1 - cos(theta_r - theta_s)), [F] each.

    phi(w) = mean_i exp(i <w, f_i>) from cos/sin means (NCFM Eq. 7); the phase is computed without angles as
    2(|phi_r||phi_s| - Re_r Re_s - Im_r Im_s), clamped >= 0, so amplitude + phase = |phi_r - phi_s|^2.
    Shown in notebook 03 (03_csdm_amplitude_phase).
    """
    _check_features(real, syn, freqs)
    return _split(*_cf_pair(real, syn, freqs))


def sdd_loss(real: torch.Tensor, syn: torch.Tensor, freqs: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """mean_w [alpha * amplitude(w) + (1 - alpha) * phase(w)] (CSDM's SDD with NCFM's Eq. 8 weighting).

    With w ~ Lambda, alpha = 0.5 this estimates MMD_k^2 / 2 (amplitude + phase = |phi_r - phi_s|^2); the factor
    1/2 is kept so that alpha stays a convex weight (``docs/methods/sdd_csdm.md`` "Equations"). Shown in notebook
    03 (03_csdm_amplitude_phase), and inside GeoDM's "sdd" base in notebook 04 (04_geodm_product_space).
    """
    amplitude, phase = sdd_terms(real, syn, freqs)
    return (alpha * amplitude + (1.0 - alpha) * phase).mean()


def class_alphas(counts: Sequence[int], alpha_head: float = 0.7, rule: str = "median",
                 direction: str = "tail_realism") -> list[float]:
    """CSDM's per-class amplitude weight alpha(c) from class counts n_c (reconstruction: our choice).

    The paper makes alpha class specific (head: diversity/amplitude, tail: realism/phase, arXiv v1) without a
    published form. "median": n_c > median -> alpha_head, n_c < median -> 1 - alpha_head, n_c == median -> 0.5
    (so ties and balanced data are neutral). "smooth": linear in log n_c from 1 - alpha_head at min n to
    alpha_head at max n (all 0.5 when balanced). direction "tail_realism" (arXiv v1, default) gives those
    values; "head_realism" (the ICLR version's wording) swaps head and tail: alpha(c) -> 1 - alpha(c).
    Default alpha_head = 0.7: the low end of the 0.7-0.9 peak reported for the paper's Fig. 3 (unverified), i.e.
    the choice nearest NCFM's balanced optimum (alpha ~ 0.5) that still separates head from tail
    (``docs/methods/sdd_csdm.md`` "Long-tailed data"). Shown in notebook 03 (03_csdm_amplitude_phase).
    """
    counts = [int(c) for c in counts]
    if not counts or min(counts) < 1:
        raise GeoddError(f"class counts must be a non-empty list of positive integers, got {counts}")
    if not 0.0 <= alpha_head <= 1.0:
        raise GeoddError(f"alpha_head must lie in [0, 1], got {alpha_head}")
    if rule not in ALPHA_RULES:
        raise GeoddError(f"unknown CSDM alpha rule {rule!r}; choose one of {', '.join(ALPHA_RULES)}")
    if direction not in DIRECTIONS:
        raise GeoddError(f"unknown CSDM direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    tail = 1.0 - alpha_head
    if rule == "median":
        ordered = sorted(counts)
        k = len(ordered)
        median = (ordered[(k - 1) // 2] + ordered[k // 2]) / 2.0
        alphas = [alpha_head if n > median else tail if n < median else 0.5 for n in counts]
    else:
        lo, hi = math.log(min(counts)), math.log(max(counts))
        if hi == lo:
            alphas = [0.5] * len(counts)
        else:
            alphas = [tail + (alpha_head - tail) * (math.log(n) - lo) / (hi - lo) for n in counts]
    if direction == "head_realism":
        alphas = [1.0 - a for a in alphas]
    return alphas


@dataclass
class _SpectralOptions:
    """Options shared by SDD and CSDM (``docs/methods/sdd_csdm.md`` "Settings")."""

    kernel: Kernel = "rbf"                                 # kernel whose spectral measure the frequencies sample
    sigma: float = 1.0                                     # kernel bandwidth
    num_freqs: int = 4096                                  # frequencies drawn per sampled network
    normalize: bool = True                                 # L2-normalise each feature vector first (NCFM)
    sqrt: bool = False                                     # NCFM's square-rooted per-frequency term
    loss_scale: float = 1500.0                             # multiplies the loss (calibrated to DM's gradient)

    def check(self) -> None:
        require(self.sigma > 0, f"sigma (the kernel bandwidth) must be positive, got {self.sigma}")
        require(self.num_freqs >= 1, f"num_freqs must be >= 1, got {self.num_freqs}")
        require(self.loss_scale > 0, f"loss_scale must be positive, got {self.loss_scale}")


@dataclass
class SDDOptions(_SpectralOptions):
    """Options of ``SDDMatcher``. Shown in notebook 03 (03_csdm_amplitude_phase)."""

    alpha: float = 0.5                                     # amplitude weight; 1 - alpha weighs the phase

    def check(self) -> None:
        super().check()
        require(0.0 <= self.alpha <= 1.0, f"alpha must lie in [0, 1], got {self.alpha}")


@dataclass
class CSDMOptions(_SpectralOptions):
    """Options of ``CSDMMatcher`` (alpha per class from ``class_alphas``). Shown in notebook 03
    (03_csdm_amplitude_phase)."""

    alpha_head: float = 0.7                                          # alpha of head classes
    rule: AlphaRule = "median"                                       # how class counts map to alpha(c)
    direction: Direction = "tail_realism"                            # which end weighs the phase

    def check(self) -> None:
        super().check()
        require(0.0 <= self.alpha_head <= 1.0, f"alpha_head must lie in [0, 1], got {self.alpha_head}")


class SDDMatcher(Matcher):
    """Spectral distribution distance between one class's real and synthetic features (CSDM Sec. 3).

    loss_c = loss_scale * mean_w g(alpha A_c(w) + (1 - alpha) P_c(w)), g = sqrt(max(., SQRT_EPS)) if ``sqrt``
    (NCFM's form) else the identity (the plain MC estimate of alpha-weighted MMD^2, our default: the paper's
    SDD^2 = MMD^2 reading). Features are L2-normalised per sample first if ``normalize`` (NCFM's choice; then
    sigma = 1 is NCFM's t ~ N(0, I)). Frequencies are redrawn in ``start_iteration`` from the engine's generator.
    ``kernel="linear"`` is the exact large-sigma limit (module docstring): loss_scale * (1 - alpha) * dm_loss,
    or with ``sqrt`` loss_scale * sqrt(2/pi) * sqrt((1 - alpha) * dm_loss) (the limit of sigma * loss).
    Default loss_scale = 1500 (reconstruction: our choice, ``docs/methods/sdd_csdm.md`` "Reconstruction: our
    choice"; NCFM uses 300 with ``sqrt=True``): with the default options it makes the norm of the gradient w.r.t.
    the synthetic images about DM's, so DM's image learning rate carries over. All maths runs in float32 or wider
    (bf16/fp16 features are upcast, autocast is off inside), because phases <w, f> are meaningless at bf16
    precision. Takes ``SDDOptions`` (or its keys as keyword overrides). Shown in notebook 03
    (03_csdm_amplitude_phase).
    """

    name = "sdd"
    options_class: type = SDDOptions

    def __init__(self, options: SDDOptions | None = None, **overrides):
        super().__init__()
        self.options = resolve_options(self.options_class, options, overrides, self.name)
        self.freqs: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self.options).items())

    def start_iteration(self, iteration: int, generator: torch.Generator, feature_dim: int,
                        device: torch.device) -> None:
        """Redraw the frequencies [num_freqs, feature_dim] (float32, on ``device``) from ``generator``, once per
        sampled network."""
        o = self.options
        if o.kernel == "linear":
            return
        self.freqs = sample_frequencies(o.kernel, feature_dim, o.num_freqs, o.sigma, generator, device=device)

    def get_extra_state(self) -> dict:
        """The frequencies of the current network (a checkpoint taken inside ``inner_steps`` needs them)."""
        return {"freqs": self.freqs}

    def set_extra_state(self, state: dict) -> None:
        self.freqs = state.get("freqs")

    def class_alpha(self, cls: int) -> float:
        """The amplitude weight for class ``cls`` (constant ``alpha`` for SDD)."""
        return self.options.alpha

    def forward(self, real: torch.Tensor, syn: torch.Tensor, cls: int = 0) -> torch.Tensor:
        _check_features(real, syn)
        o, alpha = self.options, self.class_alpha(cls)
        with torch.autocast(real.device.type, enabled=False):
            work = torch.promote_types(real.dtype, torch.float32)
            real, syn = real.to(work), syn.to(work)
            if o.normalize:
                real = real / real.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
                syn = syn / syn.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
            if o.kernel == "linear":
                dm = dm_loss(real, syn)
                if o.sqrt:
                    return o.loss_scale * _SQRT_2_OVER_PI * ((1.0 - alpha) * dm).clamp_min(SQRT_EPS).sqrt()
                return o.loss_scale * (1.0 - alpha) * dm
            freqs = self.freqs
            if freqs is None:
                raise GeoddError(f"{type(self).__name__}: call start_iteration(...) to draw frequencies before the "
                                 "first forward")
            if freqs.shape[1] != real.shape[1]:
                raise GeoddError(f"{type(self).__name__}: frequencies were drawn for dim {freqs.shape[1]}, features "
                                 f"have dim {real.shape[1]}; call start_iteration with feature_dim={real.shape[1]}")
            freqs = freqs.to(device=real.device, dtype=work)
            amplitude, phase = _split(*_cf_pair(real, syn, freqs))
            term = alpha * amplitude + (1.0 - alpha) * phase
            if o.sqrt:
                term = term.clamp_min(SQRT_EPS).sqrt()
            return o.loss_scale * term.mean()


class CSDMMatcher(SDDMatcher):
    """SDD with a class-specific amplitude weight alpha(c) = ``class_alphas(counts, ...)`` (CSDM Sec. 4).

    Reconstruction: our choice (the paper's alpha(c) form is unpublished; ``docs/methods/sdd_csdm.md``
    "Long-tailed data"). Until ``set_class_counts`` is called, or with balanced counts, every class gets
    alpha = 0.5, i.e. CSDM equals SDD with alpha = 0.5. Takes ``CSDMOptions``. Shown in notebook 03
    (03_csdm_amplitude_phase).
    """

    name = "csdm"
    options_class = CSDMOptions

    def __init__(self, options: CSDMOptions | None = None, **overrides):
        super().__init__(options, **overrides)
        self.alphas: list[float] | None = None

    def set_class_counts(self, counts: list[int]) -> None:
        o = self.options
        self.alphas = class_alphas(counts, o.alpha_head, o.rule, o.direction)

    def class_alpha(self, cls: int) -> float:
        if self.alphas is None:
            return 0.5
        if not 0 <= cls < len(self.alphas):
            raise GeoddError(f"CSDM: class {cls} outside the {len(self.alphas)} classes given by set_class_counts")
        return self.alphas[cls]


__all__ = ["KERNELS", "ALPHA_RULES", "DIRECTIONS", "SDDOptions", "CSDMOptions", "sample_frequencies", "sdd_terms",
           "sdd_loss", "class_alphas", "SDDMatcher", "CSDMMatcher"]
