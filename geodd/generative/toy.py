"""A 2-D toy for OT-guided sampling with an exact score (``docs/methods/ot_generative.md``, "What the CPU-scale
version changes"). Shown in notebook 05 (05_ot_generative).

Data: an isotropic Gaussian mixture p_0 = sum_k w_k N(mu_k, s_k^2 I). Under the variance-preserving forward
process z_t = sqrt(a) x_0 + sqrt(1-a) n the noised density is again a mixture,
p_t = sum_k w_k N(sqrt(a) mu_k, (a s_k^2 + 1 - a) I), so the exact eps-predictor is
eps(z, t) = -sqrt(1-a) grad log p_t(z) = sqrt(1-a) sum_k r_k(z) (z - sqrt(a) mu_k) / (a s_k^2 + 1 - a)
with responsibilities r_k. No model is trained: DDIM with this eps samples p_0 (up to discretisation), and the
OT guidance of ``sampler.ot_guidance_loss`` can be switched on to show its effect on mode coverage at a
small sample size ("IPC").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import ot
import torch

from .. import GeoddError
from .model import cosine_alphas_bar
from .sampler import GuidanceTerm, ddim_sample, ot_guidance_loss


@dataclass(frozen=True)
class GaussianMixture2D:
    """Isotropic mixture: ``means [K, d]``, ``stds [K]``, ``weights [K]`` (normalised on use).
    Not called in a notebook; used by ``geodd.generative.toy``."""

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` points and their mode indices."""
        w = self.weights / self.weights.sum()
        k = torch.multinomial(w.cpu(), n, replacement=True, generator=generator).to(self.means.device)
        noise = torch.randn((n, self.means.shape[1]), generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * noise.to(self.means.device), k

    def eps(self, z: torch.Tensor, abar: float | torch.Tensor) -> torch.Tensor:
        """Exact eps(z, t) = -sqrt(1-a) grad_z log p_t(z) of the noised mixture (module docstring)."""
        a = torch.as_tensor(abar, dtype=z.dtype, device=z.device)
        mu = self.means.to(z) * a.sqrt()
        var = self.stds.to(z) ** 2 * a + (1 - a)  # [K]
        d = z.shape[1]
        diff = z[:, None, :] - mu[None]  # [B, K, d]
        logits = (torch.log(self.weights.to(z) / self.weights.sum().to(z)) - 0.5 * d * torch.log(var)
                  - 0.5 * diff.pow(2).sum(-1) / var)
        resp = torch.softmax(logits, dim=1)
        return (1 - a).sqrt() * (resp[..., None] * diff / var[None, :, None]).sum(1)


def ring_mixture(num_modes: int = 8, radius: float = 3.0, std: float = 0.25, weights=None,
                 dtype: torch.dtype = torch.float64) -> GaussianMixture2D:
    """``num_modes`` equal-std Gaussians evenly spaced on a circle (optionally unequal ``weights``).
    Used in notebook 05 (05_ot_generative) through its study module."""
    if num_modes < 1:
        raise GeoddError(f"num_modes must be positive, got {num_modes}")
    ang = torch.arange(num_modes, dtype=dtype) * (2 * math.pi / num_modes)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    w = torch.ones(num_modes, dtype=dtype) if weights is None else torch.as_tensor(weights, dtype=dtype)
    return GaussianMixture2D(means, torch.full((num_modes,), std, dtype=dtype), w)


def mode_coverage(samples: torch.Tensor, mixture: GaussianMixture2D, num_std: float = 3.0) -> torch.Tensor:
    """Per-mode counts of samples whose nearest mean lies within ``num_std`` stds (others count nowhere).
    Not called in a notebook; used by ``geodd.generative.toy``."""
    dist = torch.cdist(samples.to(mixture.means), mixture.means)
    best = dist.argmin(1)
    close = dist.gather(1, best[:, None]).squeeze(1) <= num_std * mixture.stds[best]
    return torch.bincount(best[close], minlength=mixture.num_modes)


def wasserstein(x: torch.Tensor, y: torch.Tensor, metric: str = "euclidean") -> float:
    """Exact OT cost (POT's network simplex, uniform weights) between two point clouds: W_1 for 'euclidean'.
    Used in notebook 05 (05_ot_generative) through its study module."""
    cost = ot.dist(x.double(), y.double().to(x.device), metric=metric)
    a = torch.full((len(x),), 1.0 / len(x), dtype=torch.float64, device=cost.device)
    b = torch.full((len(y),), 1.0 / len(y), dtype=torch.float64, device=cost.device)
    return float(ot.emd2(a, b, cost))


@dataclass
class ToyResult:
    """Samples, per-mode coverage counts, modes hit, and W_1 to a fresh mixture sample.
    Not called in a notebook; used by ``geodd.generative.toy``."""

    samples: torch.Tensor
    coverage: torch.Tensor
    modes_covered: int
    w1: float


def sample_toy(mixture: GaussianMixture2D, n: int, *, real: torch.Tensor | None = None, ot_weight: float = 0.0,
               ot_eps: float = 0.05, ot_window: tuple[float, float] = (0.0, 1.0), batch_size: int | None = None,
               steps: int = 50, timesteps: int = 1000, mode: str = "zt", seed: int = 0,
               reference: torch.Tensor | None = None) -> ToyResult:
    """DDIM with the exact mixture score; with ``ot_weight`` > 0, OT guidance (l1 cost) toward ``real``.
    Points are generated in batches of ``batch_size`` (all at once by default), each batch guided against the
    earlier ones, exactly as ``sampler.sample_class`` does for latents. ``reference`` (default: 2000 fresh
    mixture points) is what W_1 is measured against. Used in notebook 05 (05_ot_generative) through its study module."""
    if ot_weight and real is None:
        raise GeoddError("OT guidance needs a real sample of the mixture")
    gen = torch.Generator().manual_seed(int(seed))
    abar = cosine_alphas_bar(timesteps).to(mixture.means)
    batch = batch_size or n
    accepted: list[torch.Tensor] = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        noise = torch.randn((b, mixture.means.shape[1]), generator=gen, dtype=mixture.means.dtype)
        noise = noise.to(mixture.means.device)  # drawn on CPU so a seed gives the same points on any device
        previous = torch.cat(accepted) if accepted else None
        terms = [GuidanceTerm("ot", ot_weight, ot_guidance_loss(real, previous, eps=ot_eps, cost="l1"), ot_window)] \
            if ot_weight else []
        accepted.append(ddim_sample(lambda z, t: mixture.eps(z, abar[t]), abar, noise, steps=steps, terms=terms,
                                    mode=mode))
    samples = torch.cat(accepted)
    if reference is None:
        reference, _ = mixture.sample(2000, torch.Generator().manual_seed(int(seed) + 10_000))
    cov = mode_coverage(samples, mixture)
    return ToyResult(samples, cov, int((cov > 0).sum()), wasserstein(samples, reference))


__all__ = ["GaussianMixture2D", "ring_mixture", "mode_coverage", "wasserstein", "ToyResult", "sample_toy"]
