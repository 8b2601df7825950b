"""A small class-conditional latent diffusion model: conv VAE + MLP denoiser (OT generative DD, its generator).

The paper (*Optimizing Distributional Geometry Alignment with Optimal Transport for Generative Dataset
Distillation*, its sampling section) samples DiT-XL/2 in the 4x32x32 latent space of the ``sd-vae-ft-mse`` VAE,
as IGD does. At CPU scale geodd mirrors that design with a conv VAE whose posterior mean, standardised per
dimension, is a flat ``latent_dim`` vector, and an eps-predicting MLP denoiser with timestep and class
embeddings trained with classifier-free label dropout (``docs/methods/ot_generative.md``, "What the CPU-scale
version changes"). Every size below is "reconstruction: our choice"; the paper fixes none of them. Shown in
notebook 05 (05_ot_generative).

Plugging in a pretrained DiT on a GPU. The sampler (``geodd.generative.sampler``) only needs an object with

* ``alphas_bar``: a ``[T]`` tensor, the cumulative noise schedule. DiT uses DDPM's linear schedule with T = 1000,
  which is ``linear_alphas_bar(1000)`` here;
* ``predict_eps(z, t, y, cfg_scale)``: the eps prediction for latents ``z [B, 4, 32, 32]`` at integer timesteps
  ``t [B]`` and labels ``y [B]``. DiT's ``forward(z, t, y)`` returns 2C channels (eps and the learned
  variance): keep the first C = 4; its null label for classifier-free guidance is ``num_classes`` (1000), so
  eps = eps(z, t, 1000) + w (eps(z, t, y) - eps(z, t, 1000)) exactly as ``LatentDiffusion.predict_eps``;
* ``encode(images)`` and ``decode(latents)``: the ``sd-vae-ft-mse`` VAE of ``diffusers``,
  ``vae.encode(x).latent_dist.mean * 0.18215`` and ``vae.decode(z / 0.18215).sample`` (images in [-1, 1]);
* ``latent_shape``: ``(4, 32, 32)`` for DiT-XL/2 at 256 px.

``LatentDiffusion`` below implements exactly this interface, so a small wrapper module holding the DiT and the
VAE with these members (``alphas_bar`` on the device to sample on) can be passed to ``sampler.sample_set``
unchanged: the guidance losses flatten latents, so spatial latents work as they are. With a 675M-parameter DiT,
``SamplerConfig(mode="x0")`` avoids the backward pass through the denoiser at each guided step.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import GeoddError
from ..io import fingerprint
from ..nets import seeded

CHECKPOINT_FORMAT = "geodd.generative/1"
#: clamp of the VAE log-variance (keeps exp() finite in float32)
LOGVAR_CLAMP = 10.0
#: floor of the per-dimension latent std used for standardisation
LATENT_STD_FLOOR = 1e-4
#: largest beta of the cosine schedule (Nichol & Dhariwal clamp)
MAX_BETA = 0.999


@dataclass(frozen=True)
class GenConfig:
    """Sizes and training budget of the latent generative model (reconstruction: our choice throughout).

    ``vae_epochs`` passes over ``max_images`` training images (all when None) train the VAE with
    loss = sum of squared pixel errors + ``kl_weight`` * KL; ``diff_iters`` Adam steps of batch ``diff_batch``
    then train the denoiser on the frozen, standardised posterior means with eps-prediction MSE, dropping the
    label with probability ``p_uncond`` (classifier-free guidance). ``schedule`` "linear" is DiT's DDPM schedule;
    "cosine" drives abar_T to ~1e-8, which amplifies denoiser error at the first DDIM step.
    Shown in notebook 05 (05_ot_generative)."""

    channels: int = 1
    im_size: tuple[int, int] = (28, 28)
    num_classes: int = 10
    latent_dim: int = 16
    vae_width: int = 32
    kl_weight: float = 0.5
    vae_epochs: int = 3
    vae_batch: int = 128
    vae_lr: float = 2e-3
    den_width: int = 256
    den_depth: int = 3
    diff_iters: int = 4000
    diff_batch: int = 256
    diff_lr: float = 1e-3
    timesteps: int = 1000
    schedule: str = "linear"
    p_uncond: float = 0.1
    max_images: int | None = None
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["im_size"] = list(self.im_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GenConfig":
        d = dict(d)
        d["im_size"] = tuple(d["im_size"])
        return cls(**d)


#: named sizes: ``smoke`` (tests), ``cpu`` (a few minutes on 2 cores on Fashion-MNIST), ``paper`` (a GPU)
SIZES: dict[str, dict[str, Any]] = {
    "smoke": dict(latent_dim=8, vae_width=8, vae_epochs=1, vae_batch=64, den_width=32, den_depth=1,
                  diff_iters=50, diff_batch=64, timesteps=100, max_images=200),
    "cpu": dict(latent_dim=16, vae_width=32, vae_epochs=3, den_width=192, den_depth=3, diff_iters=3000),
    "paper": dict(latent_dim=32, vae_width=64, vae_epochs=30, den_width=512, den_depth=6, diff_iters=100_000,
                  diff_batch=512),
}


def make_config(size: str, data: Any = None, **overrides: Any) -> GenConfig:
    """The ``size`` preset (smoke, cpu, paper), shaped for ``data`` (channels, im_size, num_classes) if given.
    Shown in notebook 05 (05_ot_generative)."""
    if size not in SIZES:
        raise GeoddError(f"unknown generative model size {size!r}; choose one of {', '.join(SIZES)}")
    kw = dict(SIZES[size])
    if data is not None:
        kw.update(channels=int(data.channels), im_size=tuple(int(s) for s in data.im_size),
                  num_classes=int(data.num_classes))
    kw.update(overrides)
    return GenConfig(**kw)


SCHEDULES = ("linear", "cosine")
#: DDPM / DiT linear beta range for T = 1000 (rescaled by 1000 / T for other T)
LINEAR_BETAS = (1e-4, 0.02)


def linear_alphas_bar(timesteps: int) -> torch.Tensor:
    """DDPM's linear schedule (the one DiT uses): beta_t from 1e-4 to 0.02 at T = 1000 (scaled by 1000/T),
    abar_t = prod_{s<=t} (1 - beta_s). Float64 ``[T]``. Shown in notebook 05 (05_ot_generative)."""
    scale = 1000 / timesteps
    betas = torch.linspace(scale * LINEAR_BETAS[0], scale * LINEAR_BETAS[1], timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas.clamp(max=MAX_BETA), 0)


def alphas_bar_schedule(name: str, timesteps: int) -> torch.Tensor:
    """The named noise schedule (``linear`` or ``cosine``) as float64 abar ``[T]``.
    Shown in notebook 05 (05_ot_generative)."""
    if name == "linear":
        return linear_alphas_bar(timesteps)
    if name == "cosine":
        return cosine_alphas_bar(timesteps)
    raise GeoddError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def cosine_alphas_bar(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Cosine schedule: abar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas clamped at 0.999
    (Nichol & Dhariwal 2021). Returns abar for t = 1..T as a float64 ``[T]`` tensor.
    Shown in notebook 05 (05_ot_generative)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)
    return torch.cumprod(1 - betas, 0)


def _down(n: int) -> int:
    return (n + 1) // 2  # conv k3 s2 p1


class ConvVAE(nn.Module):
    """Conv encoder (two stride-2 convs) -> diagonal Gaussian over ``latent_dim``; transposed-conv decoder.

    Gaussian decoder with fixed variance: loss = ||x - dec(z)||^2 + kl_weight * KL(q(z|x) || N(0, I)).
    Shown in notebook 05 (05_ot_generative)."""

    def __init__(self, channels: int, im_size: tuple[int, int], latent_dim: int, width: int):
        super().__init__()
        self.im_size = tuple(im_size)
        h, w = _down(_down(im_size[0])), _down(_down(im_size[1]))
        self.grid = (2 * width, h, w)
        flat = 2 * width * h * w
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.SiLU(), nn.Flatten(),
            nn.Linear(flat, 2 * latent_dim))
        self.decoder_in = nn.Sequential(nn.Linear(latent_dim, flat), nn.SiLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1))

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.decoder_in(z).view(-1, *self.grid))
        if tuple(out.shape[-2:]) != self.im_size:
            out = F.interpolate(out, size=self.im_size, mode="bilinear", align_corners=False)
        return out


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(t w_k), sin(t w_k)], w_k = max_period^(-k/(dim/2)) (DDPM / DiT).
    Shown in notebook 05 (05_ot_generative)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.emb = nn.Linear(width, 2 * width)  # adaLN-style scale/shift from (time + class) embedding
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.emb(emb).chunk(2, dim=1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class LatentDenoiser(nn.Module):
    """eps_theta(z_t, t, y): MLP with residual adaLN blocks; label ``num_classes`` is the null (unconditional)
    label for classifier-free guidance. The output layer starts at zero (as DiT's final layer).
    Shown in notebook 05 (05_ot_generative)."""

    def __init__(self, latent_dim: int, num_classes: int, width: int, depth: int):
        super().__init__()
        self.width, self.null_label = width, num_classes
        self.inp = nn.Linear(latent_dim, width)
        self.t_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.y_emb = nn.Embedding(num_classes + 1, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, latent_dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = F.silu(self.t_mlp(timestep_embedding(t, self.width)) + self.y_emb(y))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class LatentDiffusion(nn.Module):
    """VAE + denoiser + schedule; the interface the sampler uses (see the module docstring).
    Shown in notebook 05 (05_ot_generative)."""

    def __init__(self, config: GenConfig):
        super().__init__()
        self.config = config
        self.vae = ConvVAE(config.channels, config.im_size, config.latent_dim, config.vae_width)
        self.denoiser = LatentDenoiser(config.latent_dim, config.num_classes, config.den_width, config.den_depth)
        self.register_buffer("alphas_bar", alphas_bar_schedule(config.schedule, config.timesteps).float())
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Standardised posterior mean: (mu(x) - m) / s, with m, s the per-dimension training statistics."""
        mu, _ = self.vae.encode_stats(images)
        return (mu - self.latent_mean) / self.latent_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents * self.latent_std + self.latent_mean)

    def predict_eps(self, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float = 1.0) -> torch.Tensor:
        """eps = eps(z, t, null) + w (eps(z, t, y) - eps(z, t, null)) (classifier-free guidance; w = 1: conditional)."""
        if cfg_scale == 1.0:
            return self.denoiser(z, t, y)
        null = torch.full_like(y, self.denoiser.null_label)
        both = self.denoiser(torch.cat([z, z]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = both.chunk(2)
        return uncond + cfg_scale * (cond - uncond)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


@torch.no_grad()
def encode_all(model: LatentDiffusion, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Standardised latents of ``images`` in batches (on the model's device).
    Shown in notebook 05 (05_ot_generative)."""
    device = model.alphas_bar.device
    was_training = model.training
    model.eval()
    out = [model.encode(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.latent_dim, device=device)


def train_generative(config: GenConfig, images: torch.Tensor, labels: torch.Tensor, *, device=None,
                     progress: bool = False) -> tuple[LatentDiffusion, dict[str, Any]]:
    """Train the VAE, then the denoiser on frozen standardised latents. Seeded by ``config.seed`` (init, data
    order, noise); returns the model in eval mode and a log with loss curves and stage timings. Shown in
    notebook 05 (05_ot_generative). Long because both stages draw from the same two seeded generators in one
    fixed order, which defines the trained model; one body keeps that order visible."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (config.channels, *config.im_size):
        raise GeoddError(f"images of shape {tuple(images.shape)} do not match the config "
                         f"({config.channels}, {config.im_size[0]}, {config.im_size[1]})")
    if int(labels.max()) >= config.num_classes:
        raise GeoddError(f"label {int(labels.max())} out of range for num_classes={config.num_classes}")
    device = torch.device(device) if device is not None else images.device
    cpu_gen = torch.Generator().manual_seed(int(config.seed))
    if config.max_images is not None and config.max_images < len(images):
        keep = torch.randperm(len(images), generator=cpu_gen)[:config.max_images]
        images, labels = images[keep], labels[keep]
    images, labels = images.to(device), labels.to(device)
    with seeded(config.seed):
        model = LatentDiffusion(config).to(device)
    noise_gen = _generator(device, config.seed + 1)
    log: dict[str, Any] = {"vae_loss": [], "diff_loss": [], "seconds": {}}

    t0 = time.perf_counter()
    opt = torch.optim.Adam(model.vae.parameters(), lr=config.vae_lr)
    model.vae.train()
    n = len(images)
    for _ in tqdm(range(config.vae_epochs), desc="vae", disable=not progress, leave=False):
        order = torch.randperm(n, generator=cpu_gen).to(device)
        total = 0.0
        for start in range(0, n, config.vae_batch):
            x = images[order[start:start + config.vae_batch]]
            mu, logvar = model.vae.encode_stats(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=noise_gen, device=device)
            rec = (model.vae.decode(z) - x).pow(2).flatten(1).sum(1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
            loss = rec + config.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
        log["vae_loss"].append(total / n)
    log["seconds"]["vae"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model.vae.eval()
    with torch.no_grad():
        mus = torch.cat([model.vae.encode_stats(images[i:i + 1024])[0] for i in range(0, n, 1024)])
        model.latent_mean.copy_(mus.mean(0))
        model.latent_std.copy_(mus.std(0).clamp_min(LATENT_STD_FLOOR))
        lat = (mus - model.latent_mean) / model.latent_std
    opt = torch.optim.AdamW(model.denoiser.parameters(), lr=config.diff_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.diff_iters))
    model.denoiser.train()
    abar = model.alphas_bar
    running = 0.0
    for it in tqdm(range(config.diff_iters), desc="diffusion", disable=not progress, leave=False):
        idx = torch.randint(0, n, (config.diff_batch,), generator=cpu_gen).to(device)
        z0, y = lat[idx], labels[idx].clone()
        drop = torch.rand(len(y), generator=noise_gen, device=device) < config.p_uncond
        y[drop] = config.num_classes
        t = torch.randint(0, config.timesteps, (len(y),), generator=noise_gen, device=device)
        eps = torch.randn(z0.shape, generator=noise_gen, device=device)
        a = abar[t].unsqueeze(1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(model.denoiser(zt, t, y), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if (it + 1) % 100 == 0 or it + 1 == config.diff_iters:
            log["diff_loss"].append(running / ((it % 100) + 1))
            running = 0.0
    log["seconds"]["diffusion"] = time.perf_counter() - t0
    model.eval()
    return model, log


def save_checkpoint(model: LatentDiffusion, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """``torch.save`` of the config (a plain dict) and the state dict; loadable with ``weights_only=True``.
    Shown in notebook 05 (05_ot_generative)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "config": model.config.as_dict(),
               "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": json.loads(json.dumps(extra or {}, default=str))}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, device=None) -> LatentDiffusion:
    """Rebuild a ``LatentDiffusion`` from ``save_checkpoint``'s file (``torch.load(weights_only=True)``).
    Shown in notebook 05 (05_ot_generative)."""
    model, _ = _load_with_extra(path, device)
    return model


def _load_with_extra(path: str | Path, device=None) -> tuple[LatentDiffusion, dict[str, Any]]:
    """``load_checkpoint`` plus the ``extra`` dict stored with the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise GeoddError(f"no generative checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GeoddError(f"{path} is not a geodd generative checkpoint (format {CHECKPOINT_FORMAT})")
    model = LatentDiffusion(GenConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state"])
    model.eval()
    return (model.to(device) if device is not None else model), payload.get("extra", {})


def checkpoint_key(config: GenConfig, images: torch.Tensor, labels: torch.Tensor) -> str:
    """``geodd.io.fingerprint`` of (config, training images and labels by content, checkpoint format): the cache
    key of ``train_or_load``. Shown in notebook 05 (05_ot_generative)."""
    return fingerprint({"config": config.as_dict(), "data": {"images": images, "labels": labels},
                        "format": CHECKPOINT_FORMAT})


def train_or_load(config: GenConfig, data: Any, cache_dir: str | Path | None, *, device=None,
                  progress: bool = False) -> tuple[LatentDiffusion, dict[str, Any]]:
    """Reuse ``cache_dir/generative-<hash>.pt`` when its config and data hash match, else train and save it.
    ``data`` has ``.images`` and ``.labels``. Returns the model and a log (``"cached": True`` when loaded;
    then ``"trained_seconds"`` holds the stage timings recorded when the checkpoint was trained).
    Shown in notebook 05 (05_ot_generative)."""
    images, labels = data.images, data.labels
    key = checkpoint_key(config, images, labels)
    path = Path(cache_dir) / f"generative-{key}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        t0 = time.perf_counter()
        model, extra = _load_with_extra(path, device=device or images.device)
        return model, {"cached": True, "path": str(path), "seconds": {"load": time.perf_counter() - t0},
                       "trained_seconds": dict(extra.get("seconds", {}))}
    model, log = train_generative(config, images, labels, device=device, progress=progress)
    log["cached"] = False
    if path is not None:
        save_checkpoint(model, path, extra={"seconds": log["seconds"]})
        log["path"] = str(path)
    return model, log


__all__ = ["GenConfig", "SIZES", "make_config", "cosine_alphas_bar", "linear_alphas_bar", "alphas_bar_schedule",
           "ConvVAE", "LatentDenoiser", "LatentDiffusion", "encode_all", "train_generative", "save_checkpoint",
           "load_checkpoint", "checkpoint_key", "train_or_load", "timestep_embedding"]
