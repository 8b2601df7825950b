"""Differentiable Siamese Augmentation (DSA), seeded by a ``torch.Generator``.

DSA (Zhao & Bilen, ICML 2021; used by DM, see ``docs/methods/dm.md`` "Settings") applies one random,
differentiable transform A_w to both the real and the synthetic batch of a class, so that
``|| mean psi(A_w(real)) - mean psi(A_w(syn)) ||^2`` compares like with like.  In "S" mode every call
picks ONE family uniformly from the strategy string ``color_crop_cutout_flip_scale_rotate``.

All randomness is drawn from the caller's generator (on the generator's device, normally the CPU)
and only then moved to ``x.device`` / ``x.dtype``; the clock and the global RNG are never used.
Two generators seeded identically therefore give the identical transform, whatever the batch size
(``siamese=True``), which is how the engine pairs a real batch with a synthetic batch.

Usage::

    dsa = DSA(strategy_for("fashion-mnist"))
    g_state = gen.get_state()
    real_aug = dsa(real, gen)                    # one family, one parameter set for the batch
    gen.set_state(g_state)
    syn_aug = dsa(syn, gen)                      # the same transform

or, equivalently, ``p = dsa.sample(gen); dsa.apply(real, p); dsa.apply(syn, p)``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from geodd import GeoddError

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
NO_FLIP_STRATEGY = "color_crop_cutout_scale_rotate"
FAMILIES: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
IDENTITY_STRATEGIES: tuple[str, ...] = ("", "none")

# Dataset-name keys (lower case, alphanumerics only) for which a horizontal flip changes the class
# meaning (digits).  Fashion-MNIST contains "mnist" but is flipped, so it is matched first.
_FLIP_OK_PREFIXES: tuple[str, ...] = ("fashion", "fmnist")
_DIGIT_KEYS: tuple[str, ...] = ("mnist", "svhn", "digits")

# Dtypes for which the geometric (grid_sample) path runs in float32 and casts back.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def strategy_for(dataset_name: str) -> str:
    """The DSA strategy for a dataset: no flip for digit datasets (MNIST, SVHN, sklearn digits and
    their variants, e.g. ``mnist-lt``), flip for the rest (DSA README; dm_protocol.md section 1.2).
    Not called in a notebook; used by ``geodd.distill``, ``geodd.evaluate``."""
    key = re.sub(r"[^a-z0-9]", "", str(dataset_name).lower())
    if key.startswith(_FLIP_OK_PREFIXES):
        return DEFAULT_STRATEGY
    if any(digit in key for digit in _DIGIT_KEYS):
        return NO_FLIP_STRATEGY
    return DEFAULT_STRATEGY


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """Split ``"color_crop_..."`` into its families; ``""`` or ``"none"`` is the identity (no families).
    Unknown families raise ``GeoddError`` listing the valid ones; duplicates are kept once.
    Not called in a notebook; used by ``geodd.augment``."""
    if not isinstance(strategy, str):
        raise GeoddError(f"DSA strategy must be a string, got {type(strategy).__name__}")
    text = strategy.strip().lower()
    if text in IDENTITY_STRATEGIES:
        return ()
    families: list[str] = []
    for name in text.split("_"):
        if name not in FAMILIES:
            raise GeoddError(
                f"unknown DSA family {name!r} in strategy {strategy!r}; valid families: {', '.join(FAMILIES)} "
                f"(join with '_'; '' or 'none' for no augmentation)"
            )
        if name not in families:
            families.append(name)
    return tuple(families)


@dataclass
class AugParams:
    """One draw of DSA: the chosen family and its parameters, each a CPU tensor with leading size
    ``n`` (1 = one parameter set broadcast over any batch, i.e. Siamese; N = per sample).
    Not called in a notebook; used by ``geodd.augment``."""

    family: str | None
    n: int
    values: dict[str, torch.Tensor] = field(default_factory=dict)


class DSA:
    """Differentiable Siamese Augmentation, aug mode "S": one family per call, chosen uniformly.

    Families (all in normalised pixel space, dm_protocol.md section 1.3):
      color  : x + U(-b, b); then m_c + (x - m_c) * U(0, s) with m_c the mean over channels;
               then m + (x - m) * U(1 - c, 1 + c) with m the per-image mean over C, H, W.
      flip   : horizontal mirror with probability ``flip_p``.
      scale  : sampling grid scaled by s_x, s_y ~ U(1/scale, scale) independently.
      rotate : rotation by U(-rotate_deg, rotate_deg) degrees about the centre.
      crop   : integer translation by up to round(crop * side) pixels per axis, zero padding.
      cutout : a square of round(cutout * side) pixels, uniformly placed centre, set to 0.
    Geometric families use ``affine_grid``/``grid_sample`` (bilinear, zero padding,
    ``align_corners=False``), so every family is differentiable w.r.t. x.
    reconstruction: our choice -- rotation is done in pixel space (aspect-ratio corrected in the
    normalised grid), and crop shifts are whole pixels so the shifted content is exact.
    Not called in a notebook; used by ``geodd.distill``, ``geodd.evaluate``, ``geodd.schedules``.
    """

    def __init__(
        self,
        strategy: str = DEFAULT_STRATEGY,
        *,
        scale: float = 1.2,
        rotate_deg: float = 15.0,
        crop: float = 0.125,
        cutout: float = 0.5,
        brightness: float = 0.5,
        saturation: float = 2.0,
        contrast: float = 0.5,
        flip_p: float = 0.5,
    ) -> None:
        self.strategy = strategy
        self.families = parse_strategy(strategy)
        checks = (
            ("scale", scale, scale >= 1.0, ">= 1"),
            ("rotate_deg", rotate_deg, 0.0 <= rotate_deg <= 180.0, "in [0, 180]"),
            ("crop", crop, 0.0 <= crop < 0.5, "in [0, 0.5)"),
            ("cutout", cutout, 0.0 <= cutout <= 1.0, "in [0, 1]"),
            ("brightness", brightness, brightness >= 0.0, ">= 0"),
            ("saturation", saturation, saturation >= 0.0, ">= 0"),
            ("contrast", contrast, 0.0 <= contrast <= 1.0, "in [0, 1]"),
            ("flip_p", flip_p, 0.0 <= flip_p <= 1.0, "in [0, 1]"),
        )
        for name, value, ok, bound in checks:
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                raise GeoddError(f"DSA {name} must be a finite number {bound}, got {value!r}")
        self.scale = float(scale)
        self.rotate_deg = float(rotate_deg)
        self.crop = float(crop)
        self.cutout = float(cutout)
        self.brightness = float(brightness)
        self.saturation = float(saturation)
        self.contrast = float(contrast)
        self.flip_p = float(flip_p)

    def __repr__(self) -> str:
        return (
            f"DSA({self.strategy!r}, scale={self.scale}, rotate_deg={self.rotate_deg}, crop={self.crop}, "
            f"cutout={self.cutout}, brightness={self.brightness}, saturation={self.saturation}, "
            f"contrast={self.contrast}, flip_p={self.flip_p})"
        )

    @property
    def is_identity(self) -> bool:
        """True when the strategy has no family (``""`` or ``"none"``)."""
        return not self.families

    # ------------------------------------------------------------------ sampling
    def sample(self, generator: torch.Generator, n: int = 1, size: tuple[int, int] | None = None) -> AugParams:
        """Draw one family uniformly, then its parameters for ``n`` images (n=1: Siamese).

        ``size`` = (H, W) is needed only by crop and cutout (their ranges are in pixels); ``apply``
        re-checks it.  The number of draws does not depend on the batch when n=1.
        """
        if not isinstance(generator, torch.Generator):
            raise GeoddError("DSA needs a torch.Generator (all randomness comes from it), got "
                             f"{type(generator).__name__}")
        if n < 1:
            raise GeoddError(f"DSA sample size must be >= 1, got {n}")
        if not self.families:
            return AugParams(None, n)
        dev = generator.device
        pick = int(torch.randint(len(self.families), (1,), generator=generator, device=dev).item())
        family = self.families[pick]

        def uniform(low: float, high: float) -> torch.Tensor:
            u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
            return (low + (high - low) * u).cpu()

        vals: dict[str, torch.Tensor] = {}
        if family == "color":
            vals["brightness"] = uniform(-self.brightness, self.brightness)
            vals["saturation"] = uniform(0.0, self.saturation)
            vals["contrast"] = uniform(1.0 - self.contrast, 1.0 + self.contrast)
        elif family == "flip":
            vals["flip"] = torch.rand(n, generator=generator, device=dev).cpu() < self.flip_p
        elif family == "scale":
            vals["sx"] = uniform(1.0 / self.scale, self.scale)
            vals["sy"] = uniform(1.0 / self.scale, self.scale)
        elif family == "rotate":
            vals["angle"] = uniform(-self.rotate_deg, self.rotate_deg) * (math.pi / 180.0)
        elif family in ("crop", "cutout"):
            if size is None:
                raise GeoddError(f"DSA family {family!r} needs the image size (H, W) to sample")
            h, w = size
            if family == "crop":
                mh, mw = _round_half_up(self.crop * h), _round_half_up(self.crop * w)
                vals["dy"] = torch.randint(-mh, mh + 1, (n,), generator=generator, device=dev).cpu()
                vals["dx"] = torch.randint(-mw, mw + 1, (n,), generator=generator, device=dev).cpu()
            else:
                sh, sw = _round_half_up(self.cutout * h), _round_half_up(self.cutout * w)
                # Centre in [0, side - 1 + (1 - s % 2)]: every pixel row/column is covered equally
                # often at both borders (reconstruction: our choice of symmetric placement).
                vals["cy"] = torch.randint(0, h + 1 - sh % 2, (n,), generator=generator, device=dev).cpu()
                vals["cx"] = torch.randint(0, w + 1 - sw % 2, (n,), generator=generator, device=dev).cpu()
            vals["size"] = torch.tensor([h, w])
        return AugParams(family, n, vals)

    # ------------------------------------------------------------------ applying
    def apply(self, x: torch.Tensor, params: AugParams) -> torch.Tensor:
        """Apply a drawn transform to x [N, C, H, W]; params with n=1 apply to every image."""
        _check_images(x)
        if params.family is None:
            return x
        if params.n not in (1, x.shape[0]):
            raise GeoddError(f"DSA parameters were drawn for {params.n} images, batch has {x.shape[0]}")
        if "size" in params.values and tuple(params.values["size"].tolist()) != tuple(x.shape[-2:]):
            raise GeoddError(f"DSA parameters were drawn for size {tuple(params.values['size'].tolist())}, "
                             f"images are {tuple(x.shape[-2:])}")
        v = params.values
        if params.family == "color":
            return self._color(x, v)
        if params.family == "flip":
            return self._flip(x, v["flip"])
        if params.family == "cutout":
            return self._cutout(x, v["cy"], v["cx"])
        return _warp(x, self._theta(params, x.shape[-2], x.shape[-1]))

    def __call__(self, x: torch.Tensor, generator: torch.Generator, siamese: bool = True) -> torch.Tensor:
        """Augment x [N, C, H, W] with one family drawn from ``generator``.

        siamese=True: one parameter set for the batch, so identically seeded generators give the
        identical transform for batches of any size.  siamese=False: per-sample parameters.
        """
        _check_images(x)
        if not self.families:
            return x
        n = 1 if siamese else x.shape[0]
        return self.apply(x, self.sample(generator, n, size=(x.shape[-2], x.shape[-1])))

    # ------------------------------------------------------------------ families
    @staticmethod
    def _col(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

    def _color(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        x = x + self._col(v["brightness"], x)
        mean_c = x.mean(dim=1, keepdim=True)
        x = mean_c + (x - mean_c) * self._col(v["saturation"], x)
        mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
        return mean_all + (x - mean_all) * self._col(v["contrast"], x)

    @staticmethod
    def _flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        if flip.numel() == 1:  # Siamese: decided on the CPU, no device sync
            return x.flip(-1) if bool(flip.item()) else x
        mask = flip.to(x.device).view(-1, 1, 1, 1)
        return torch.where(mask, x.flip(-1), x)

    def _cutout(self, x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        sh, sw = _round_half_up(self.cutout * h), _round_half_up(self.cutout * w)
        top = (cy - sh // 2).to(x.device).view(-1, 1)
        left = (cx - sw // 2).to(x.device).view(-1, 1)
        rows = torch.arange(h, device=x.device).view(1, -1)
        cols = torch.arange(w, device=x.device).view(1, -1)
        in_rows = (rows >= top) & (rows < top + sh)            # [n, H]
        in_cols = (cols >= left) & (cols < left + sw)          # [n, W]
        keep = ~(in_rows.unsqueeze(2) & in_cols.unsqueeze(1))  # [n, H, W]
        return x * keep.unsqueeze(1).to(x.dtype)

    def _theta(self, params: AugParams, h: int, w: int) -> torch.Tensor:
        """The [n, 2, 3] float64 affine map from output to input in affine_grid's normalised coords."""
        v = params.values
        theta = torch.zeros(params.n, 2, 3, dtype=torch.float64)
        if params.family == "scale":
            theta[:, 0, 0] = v["sx"]
            theta[:, 1, 1] = v["sy"]
        elif params.family == "rotate":
            cos, sin = torch.cos(v["angle"]), torch.sin(v["angle"])
            # pixel-space rotation D^-1 R D with D = diag(W/2, H/2): correct for non-square images
            theta[:, 0, 0] = cos
            theta[:, 0, 1] = sin * (h / w)
            theta[:, 1, 0] = -sin * (w / h)
            theta[:, 1, 1] = cos
        elif params.family == "crop":
            # content moves by (+dx, +dy) pixels: sample the input at (u - 2 dx / W, v - 2 dy / H)
            theta[:, 0, 0] = 1.0
            theta[:, 1, 1] = 1.0
            theta[:, 0, 2] = -2.0 * v["dx"].double() / w
            theta[:, 1, 2] = -2.0 * v["dy"].double() / h
        else:  # pragma: no cover - apply() routes only geometric families here
            raise GeoddError(f"DSA family {params.family!r} is not geometric")
        return theta


def _round_half_up(value: float) -> int:
    """int(value + 0.5): 12.5% of 32 = 4 px, of 28 = 3.5 -> 4 px, half of 28 = 14 px."""
    return int(value + 0.5)


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise GeoddError(f"DSA expects images [N, C, H, W], got {shape}")
    if not x.is_floating_point():
        raise GeoddError(f"DSA expects floating-point images, got {x.dtype}")


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of x through the affine map theta [n, 2, 3] (n = 1 broadcasts), zero padding.

    Low-precision inputs are warped in float32 with autocast off and cast back (grid_sample is not
    reliably supported in bf16/fp16 on every backend).
    """
    work = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
    n, c, h, w = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        th = theta.to(device=x.device, dtype=work)
        grid = F.affine_grid(th, [th.shape[0], c, h, w], align_corners=False)
        if grid.shape[0] != n:
            grid = grid.expand(n, h, w, 2)
        out = F.grid_sample(x.to(work), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


__all__ = [
    "DEFAULT_STRATEGY",
    "NO_FLIP_STRATEGY",
    "FAMILIES",
    "DSA",
    "AugParams",
    "parse_strategy",
    "strategy_for",
]
