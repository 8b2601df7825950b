"""OT-guided generative dataset distillation (``papers/csdm_ot.md`` part B; a CPU-scale reconstruction, C.2).

No public code exists for the paper; every constant it does not give is "reconstruction: our choice".

* ``model``: a class-conditional latent diffusion model (conv VAE + MLP denoiser), seeded training, a
  checkpoint cache (``train_or_load``), and the interface a pretrained DiT would implement;
* ``sampler``: DDIM with IGD-style guidance and OT guidance (OTG, B.3);
* ``relabel``: label-image-aligned soft relabelling with an IPC-sized teacher ensemble (LIA, B.4);
* ``logit_matching``: the OTM student loss kappa1 CE + kappa2 MSE + beta2 Sinkhorn (B.5) and its training loop;
* ``toy``: a 2-D Gaussian mixture with an exact score, to show OT guidance and mode coverage;
* ``pipeline``: all stages and the ablation rows at one IPC and seed;
* ``study``: notebook 05's cached ablation grid, latent OT distances, label entropies, timings, the toy study,
  same-student baselines, and ``study.ablation_rows`` for notebook 06.
"""
from __future__ import annotations

from .logit_matching import otm_loss, otm_terms, sinkhorn_distance, tempered, train_student
from .model import (GenConfig, LatentDiffusion, SIZES, encode_all, load_checkpoint, make_config, save_checkpoint,
                    train_generative, train_or_load)
from .pipeline import DEFAULT_PROFILE, ROWS, PipelineResult, resolve_profile, run_pipeline
from .relabel import (TeacherSpec, ensemble_size, entropy_vs_ensemble, label_entropy, lia_soft_labels,
                      soft_labels, teacher_specs, train_or_load_teachers, train_teachers)
from .sampler import (GuidanceTerm, SampledSet, SamplerConfig, ddim_sample, diversity_loss, ot_guidance_loss,
                      representativeness_loss, sample_class, sample_set, sampler_config)
from .toy import GaussianMixture2D, ToyResult, mode_coverage, ring_mixture, sample_toy, wasserstein

__all__ = [
    "GenConfig", "LatentDiffusion", "SIZES", "make_config", "train_generative", "train_or_load", "save_checkpoint",
    "load_checkpoint", "encode_all",
    "GuidanceTerm", "SamplerConfig", "SampledSet", "sampler_config", "ddim_sample", "ot_guidance_loss",
    "representativeness_loss", "diversity_loss", "sample_class", "sample_set",
    "TeacherSpec", "teacher_specs", "ensemble_size", "train_teachers", "train_or_load_teachers", "soft_labels",
    "lia_soft_labels", "label_entropy", "entropy_vs_ensemble",
    "otm_loss", "otm_terms", "sinkhorn_distance", "tempered", "train_student",
    "GaussianMixture2D", "ring_mixture", "mode_coverage", "wasserstein", "ToyResult", "sample_toy",
    "DEFAULT_PROFILE", "ROWS", "PipelineResult", "resolve_profile", "run_pipeline",
]
