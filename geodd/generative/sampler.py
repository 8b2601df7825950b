"""DDIM sampling with IGD guidance and OT guidance (OTG) (OT generative DD: the paper's sampling section;
``docs/methods/ot_generative.md``, "Equations"). Shown in notebook 05 (05_ot_generative).

The guided step is

    z_{t-1} = s(z_t, t, eps) - rho grad G_I - gamma grad G_D - beta_1 grad G_W

with s the DDIM step, G_I / G_D IGD's influence and deviation guidance and G_W the OT guidance: the entropic
OT cost (l1 ground cost, Sinkhorn with regulariser lambda_1) between *all* latents generated so far for the
class (the current batch's predicted x0 plus the latents already accepted) and a batch of real latents of the
class. All guidance losses are functions of the predicted clean latent x0_hat(z_t) = (z_t - sqrt(1-abar) eps)
/ sqrt(abar); ``mode="zt"`` differentiates them through the denoiser w.r.t. z_t (the paper's form),
``mode="x0"`` moves x0_hat by -grad before the DDIM step (no backward pass through the denoiser; cheaper for a
DiT). Guidance windows, weights and the G_I / G_D latent proxies are "reconstruction: our choice" (the paper
gives none; IGD's defaults are noted on ``SamplerConfig``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

from .. import GeoddError
from ..transport import sinkhorn_loss

#: a guidance loss maps predicted clean latents x0 [B, ...] to a scalar (summed over the batch)
GuidanceLoss = Callable[[torch.Tensor], torch.Tensor]
#: cosine-similarity denominator floor
COS_EPS = 1e-8
MODES = ("zt", "x0")


class LatentGenerator(Protocol):
    """What the sampler needs from a generative model (``LatentDiffusion`` or a wrapped pretrained DiT).
    Not called in a notebook; used by ``geodd.generative.sampler``."""

    alphas_bar: torch.Tensor
    latent_shape: tuple[int, ...]

    def predict_eps(self, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float = 1.0) -> torch.Tensor:
        ...

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        ...


@dataclass(frozen=True)
class GuidanceTerm:
    """``weight * loss(x0_hat)``, active while the normalised time t/(T-1) lies in ``window = (lo, hi)``.
    Not called in a notebook; used by ``geodd.generative.sampler``, ``geodd.generative.toy``."""

    name: str
    weight: float
    loss: GuidanceLoss
    window: tuple[float, float] = (0.0, 1.0)

    def active(self, frac: float) -> bool:
        return self.weight != 0.0 and self.window[0] <= frac <= self.window[1]


def ddim_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced training timesteps from T-1 down to 0 (DDIM's sub-sequence tau).
    Not called in a notebook; used by ``geodd.generative.sampler``."""
    if not 1 <= steps <= num_timesteps:
        raise GeoddError(f"steps must lie in [1, {num_timesteps}], got {steps}")
    ts = torch.linspace(num_timesteps - 1, 0, steps).round().long().tolist()
    return sorted(set(ts), reverse=True)


def ddim_sample(eps_fn: Callable[[torch.Tensor, int], torch.Tensor], alphas_bar: torch.Tensor,
                noise: torch.Tensor, *, steps: int = 50, eta: float = 0.0, terms: Sequence[GuidanceTerm] = (),
                mode: str = "zt", generator: torch.Generator | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021) from ``noise`` = z_T with optional guidance terms; returns z_0.

    x0 = (z_t - sqrt(1-a_t) eps) / sqrt(a_t);  z_{t'} = sqrt(a_t') x0 + sqrt(1-a_t'-sigma^2) eps + sigma n,
    sigma = eta sqrt((1-a_t')/(1-a_t) (1-a_t/a_t')); a_t' = 1 after the last step. ``eps_fn(z, t)`` gets an
    int timestep; the schedule ``alphas_bar`` is indexed 0..T-1.
    Not called in a notebook; used by ``geodd.generative.sampler``, ``geodd.generative.toy``.
    """
    if mode not in MODES:
        raise GeoddError(f"unknown guidance mode {mode!r}; choose one of {', '.join(MODES)}")
    ts = ddim_timesteps(len(alphas_bar), steps)
    abar = alphas_bar.detach().to(dtype=torch.float64).cpu().tolist()  # python floats: no device syncs in the loop
    last = len(alphas_bar) - 1
    z = noise
    for i, t in enumerate(ts):
        a = abar[t]
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        active = [term for term in terms if term.active(t / max(last, 1))]
        grad_z = None
        if active and mode == "zt":
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                eps = eps_fn(zg, t)
                x0 = (zg - (1 - a) ** 0.5 * eps) / a ** 0.5
                total = sum(term.weight * term.loss(x0) for term in active)
                grad_z = torch.autograd.grad(total, zg)[0]
            eps, x0 = eps.detach(), x0.detach()
        else:
            with torch.no_grad():
                eps = eps_fn(z, t)
            x0 = (z - (1 - a) ** 0.5 * eps) / a ** 0.5
            if active:  # mode "x0"
                with torch.enable_grad():
                    xg = x0.detach().requires_grad_(True)
                    total = sum(term.weight * term.loss(xg) for term in active)
                    x0 = x0 - torch.autograd.grad(total, xg)[0]
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5 if i + 1 < len(ts) else 0.0
        z = a_prev ** 0.5 * x0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0:
            z = z + sigma * torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        if grad_z is not None:
            z = z - grad_z
        z = z.detach()
    return z


# ----------------------------------------------------------------------------- guidance losses

def ot_guidance_loss(real: torch.Tensor, previous: torch.Tensor | None = None, *, eps: float = 0.05,
                     cost: str = "l1", mass: str = "count", grad: str = "envelope",
                     cost_norm: str | None = "max", num_iter: int = 200, tol: float = 1e-5) -> GuidanceLoss:
    """G_W(x0) = n * OT_eps([x0; previous], real): entropic OT cost (``geodd.transport.sinkhorn_loss``, uniform
    marginals) between the latents generated so far for the class and a real batch (the paper's OT guidance).

    ``mass="count"`` multiplies by n = number of generated latents so each point carries unit mass and its
    gradient does not shrink as the set grows; ``mass="uniform"`` keeps the probability-normalised cost
    (reconstruction: our choice; default "count"). ``eps`` is lambda_1 relative to max(C) (``cost_norm="max"``;
    ``cost_norm=None``: absolute); ``grad="envelope"`` holds the plan fixed (the exact gradient of the entropic
    OT value, no backward pass through the Sinkhorn iterations), ``"autodiff"`` differentiates through them.
    ``num_iter``/``tol``: Sinkhorn budget per guidance step (a guidance direction needs no 1e-7 plan; geodd.transport
    still raises if the marginals miss by more than 1%).
    Not called in a notebook; used by ``geodd.generative.sampler``, ``geodd.generative.toy``.
    """
    if mass not in ("count", "uniform"):
        raise GeoddError(f"unknown OT mass convention {mass!r}; choose count or uniform")
    real_flat = real.detach().flatten(1)
    prev_flat = previous.detach().flatten(1) if previous is not None and len(previous) else None

    def loss(x0: torch.Tensor) -> torch.Tensor:
        gen = x0.flatten(1)
        if prev_flat is not None:
            gen = torch.cat([gen, prev_flat.to(gen.dtype)])
        value = sinkhorn_loss(gen, real_flat.to(gen.dtype), eps, cost, grad=grad, cost_norm=cost_norm,
                              num_iter=num_iter, tol=tol)
        return value * gen.shape[0] if mass == "count" else value

    return loss


def representativeness_loss(real: torch.Tensor) -> GuidanceLoss:
    """G_I(x0) = sum_i (1 - cos(x0_i, mean real latent)): a latent-space proxy for IGD's influence guidance
    (IGD aligns the sample's training gradient with the class's mean real gradient by cosine similarity);
    pulls each sample toward the class. Reconstruction: our choice.
    Not called in a notebook; used by ``geodd.generative.sampler``."""
    centre = real.detach().flatten(1).mean(0)

    def loss(x0: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(x0.flatten(1), centre.to(x0.dtype)[None], dim=1, eps=COS_EPS)).sum()

    return loss


def diversity_loss(memory: torch.Tensor | None) -> GuidanceLoss:
    """G_D(x0) = sum_i max_j cos(x0_i, m_j) over a memory of generated latents (IGD's deviation guidance,
    in latent space): the memory is the given accepted latents plus the other members of the current batch
    (detached). Pushes samples away from their most similar predecessor. Reconstruction: our choice.
    Not called in a notebook; used by ``geodd.generative.sampler``."""
    mem = memory.detach().flatten(1) if memory is not None and len(memory) else None

    def loss(x0: torch.Tensor) -> torch.Tensor:
        cur = x0.flatten(1)
        others = cur.detach()
        bank = others if mem is None else torch.cat([mem.to(cur.dtype), others])
        if len(bank) <= 1 and mem is None:
            return cur.sum() * 0.0
        sims = F.normalize(cur, dim=1, eps=COS_EPS) @ F.normalize(bank, dim=1, eps=COS_EPS).T
        offset = 0 if mem is None else len(mem)
        self_idx = torch.arange(len(cur), device=cur.device)
        sims = sims.index_put((self_idx, self_idx + offset), torch.tensor(-2.0, dtype=sims.dtype, device=sims.device))
        return sims.max(dim=1).values.sum()

    return loss


# ----------------------------------------------------------------------------- configured sampling

@dataclass(frozen=True)
class SamplerConfig:
    """DDIM settings and guidance switches (weights 0 = off). Defaults: reconstruction, our choice.

    IGD's DiT defaults (IGD release): 50 steps, cfg 4.0, influence scale 5, deviation scale 120, guidance
    between steps 30 and 45 of 50, memory 64. OT: l1 cost (paper); lambda_1 (``ot_eps``, relative to the largest
    cost), beta_1 (``ot_weight``), window and real batch: ours.
    Windows are fractions of diffusion time t/(T-1) (1 = pure noise). ``batch_size``: the paper guides the n-th
    latent against the n-1 before it; we generate ``batch_size`` latents jointly (each batch against the earlier
    ones), so ``batch_size=1`` is the paper's sequential form. On the 2-D toy (8 modes, 8 samples) the joint form
    covered more modes; ``cfg_scale`` 2 and the guidance weights were picked on Fashion-MNIST IPC 10.
    Not called in a notebook; used by ``geodd.generative.sampler``, ``geodd.generative.pipeline``.
    """

    steps: int = 50
    eta: float = 0.0
    cfg_scale: float = 2.0
    batch_size: int = 10
    mode: str = "zt"
    real_batch: int = 256
    ot_weight: float = 0.0
    ot_eps: float = 0.05
    ot_cost: str = "l1"
    ot_mass: str = "count"
    ot_grad: str = "envelope"
    ot_iters: int = 200
    ot_window: tuple[float, float] = (0.2, 1.0)
    repr_weight: float = 0.0
    div_weight: float = 0.0
    memory_size: int = 64
    igd_window: tuple[float, float] = (0.1, 0.5)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ot_window"], d["igd_window"] = list(self.ot_window), list(self.igd_window)
        return d



def guidance_terms(cfg: SamplerConfig, real: torch.Tensor | None, previous: torch.Tensor | None) -> list[GuidanceTerm]:
    """The active guidance terms of ``cfg`` for one batch, given the class's real latents and the latents
    accepted so far. Not called in a notebook; used by ``geodd.generative.sampler``."""
    terms: list[GuidanceTerm] = []
    if (cfg.ot_weight or cfg.repr_weight) and (real is None or len(real) == 0):
        raise GeoddError("OT and representativeness guidance need real latents of the class")
    if cfg.repr_weight:
        terms.append(GuidanceTerm("igd_influence", cfg.repr_weight, representativeness_loss(real), cfg.igd_window))
    if cfg.div_weight:
        mem = previous[-cfg.memory_size:] if previous is not None and cfg.memory_size > 0 else None
        terms.append(GuidanceTerm("igd_deviation", cfg.div_weight, diversity_loss(mem), cfg.igd_window))
    if cfg.ot_weight:
        terms.append(GuidanceTerm("ot", cfg.ot_weight, ot_guidance_loss(real, previous, eps=cfg.ot_eps,
                                                                       cost=cfg.ot_cost, mass=cfg.ot_mass,
                                                                       grad=cfg.ot_grad, num_iter=cfg.ot_iters),
                                  cfg.ot_window))
    return terms


def sample_class(model: LatentGenerator, cls: int, n: int, cfg: SamplerConfig, *,
                 real_latents: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` latents of class ``cls`` in batches of ``cfg.batch_size``; each batch is guided against the
    latents accepted before it (the cumulative OT set and the diversity memory).
    Not called in a notebook; used by ``geodd.generative.sampler``."""
    device = model.alphas_bar.device
    accepted: list[torch.Tensor] = []
    for start in range(0, n, cfg.batch_size):
        b = min(cfg.batch_size, n - start)
        noise = torch.randn((b, *model.latent_shape), generator=generator, device=device)
        previous = torch.cat(accepted) if accepted else None
        terms = guidance_terms(cfg, real_latents, previous)
        y = torch.full((b,), int(cls), dtype=torch.long, device=device)

        def eps_fn(z: torch.Tensor, t: int) -> torch.Tensor:
            return model.predict_eps(z, torch.full((len(z),), t, dtype=torch.long, device=device), y[:len(z)],
                                     cfg.cfg_scale)

        accepted.append(ddim_sample(eps_fn, model.alphas_bar, noise, steps=cfg.steps, eta=cfg.eta, terms=terms,
                                    mode=cfg.mode, generator=generator))
    return torch.cat(accepted) if accepted else torch.empty((0, *model.latent_shape), device=device)


@dataclass
class SampledSet:
    """A generated set: decoded ``images`` [N, C, H, W], ``labels`` [N], their ``latents`` and timings.
    Not called in a notebook; used by ``geodd.generative.sampler``, ``geodd.generative.pipeline``."""

    images: torch.Tensor
    labels: torch.Tensor
    latents: torch.Tensor
    config: dict[str, Any]
    seconds: float


def sample_set(model: LatentGenerator, real_images: torch.Tensor, real_labels: torch.Tensor, ipc: int,
               cfg: SamplerConfig, *, seed: int = 0, classes: Sequence[int] | None = None,
               decode_batch: int = 512) -> SampledSet:
    """``ipc`` generated images per class. Real latents per class are the encodings of ``cfg.real_batch``
    randomly chosen real images of that class (seeded); generation noise is seeded by ``seed``.
    Used in notebook 05 (05_ot_generative) through its study module."""
    if ipc < 1:
        raise GeoddError(f"ipc must be at least 1, got {ipc}")
    t0 = time.perf_counter()
    device = model.alphas_bar.device
    classes = list(range(int(real_labels.max()) + 1)) if classes is None else list(classes)
    pick_gen = torch.Generator().manual_seed(int(seed))
    noise_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    need_real = bool(cfg.ot_weight or cfg.repr_weight)
    lat_out, lab_out = [], []
    for c in classes:
        real = None
        if need_real:
            idx = torch.nonzero(real_labels.cpu() == c).flatten()
            if len(idx) == 0:
                raise GeoddError(f"class {c} has no real images to guide with")
            idx = idx[torch.randperm(len(idx), generator=pick_gen)[:cfg.real_batch]]
            with torch.no_grad():
                real = model.encode(real_images[idx].to(device))
        lat = sample_class(model, c, ipc, cfg, real_latents=real, generator=noise_gen)
        lat_out.append(lat)
        lab_out.append(torch.full((ipc,), c, dtype=torch.long))
    latents = torch.cat(lat_out)
    with torch.no_grad():
        images = torch.cat([model.decode(latents[i:i + decode_batch]) for i in range(0, len(latents), decode_batch)])
    return SampledSet(images.detach(), torch.cat(lab_out).to(device), latents.detach(),
                      {"ipc": ipc, "seed": seed, **cfg.as_dict()}, time.perf_counter() - t0)


__all__ = ["LatentGenerator", "GuidanceTerm", "ddim_timesteps", "ddim_sample", "ot_guidance_loss",
           "representativeness_loss", "diversity_loss", "SamplerConfig",
           "guidance_terms", "sample_class", "SampledSet", "sample_set"]
