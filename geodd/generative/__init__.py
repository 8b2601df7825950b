"""OT-guided generative dataset distillation, a CPU-scale reconstruction (``docs/methods/ot_generative.md``).

The paper (*Optimizing Distributional Geometry Alignment with Optimal Transport for Generative Dataset
Distillation*, Cui et al., NeurIPS 2025) has no public code; every constant it does not give is "reconstruction:
our choice", and the method's constants live in the registry (``geodd.methods``, "OT-gen (...)" variants).

* ``model``: a class-conditional latent diffusion model (conv VAE + MLP denoiser), seeded training, a
  checkpoint cache (``train_or_load``), and the interface a pretrained DiT would implement;
* ``sampler``: DDIM with IGD-style guidance and OT guidance (OTG);
* ``relabel``: label-image-aligned soft relabelling with an IPC-sized teacher ensemble (LIA);
* ``logit_matching``: the OTM student loss kappa1 CE + kappa2 MSE + beta2 Sinkhorn and its training loop;
* ``toy``: a 2-D Gaussian mixture with an exact score, to show OT guidance and mode coverage;
* ``pipeline``: the typed options of every stage (``PipelineOptions``) and ``run_pipeline`` over named rows.

Notebook 05's study (its settings, ablation rows, cached cells and tables) is ``geodd.studies.ot_generative``.
Shown in notebook 05 (05_ot_generative).
"""
from __future__ import annotations

from .logit_matching import otm_loss, otm_terms, sinkhorn_distance, tempered, train_student
from .model import (GenConfig, LatentDiffusion, SIZES, encode_all, load_checkpoint, make_config, save_checkpoint,
                    train_generative, train_or_load)
from .pipeline import (EvalOptions, GeneratorOptions, METHOD_KEYS, PipelineOptions, PipelineResult, SamplerOptions,
                       StudentOptions, TeacherOptions, held_out_subset, run_pipeline)
from .relabel import (TeacherSpec, ensemble_size, entropy_vs_ensemble, label_entropy, lia_soft_labels,
                      soft_labels, teacher_specs, train_or_load_teachers, train_teachers)
from .sampler import (GuidanceTerm, SampledSet, SamplerConfig, ddim_sample, diversity_loss, ot_guidance_loss,
                      representativeness_loss, sample_class, sample_set)
from .toy import GaussianMixture2D, ToyResult, mode_coverage, ring_mixture, sample_toy, wasserstein

__all__ = [
    "GenConfig", "LatentDiffusion", "SIZES", "make_config", "train_generative", "train_or_load", "save_checkpoint",
    "load_checkpoint", "encode_all",
    "GuidanceTerm", "SamplerConfig", "SampledSet", "ddim_sample", "ot_guidance_loss",
    "representativeness_loss", "diversity_loss", "sample_class", "sample_set",
    "TeacherSpec", "teacher_specs", "ensemble_size", "train_teachers", "train_or_load_teachers", "soft_labels",
    "lia_soft_labels", "label_entropy", "entropy_vs_ensemble",
    "otm_loss", "otm_terms", "sinkhorn_distance", "tempered", "train_student",
    "GaussianMixture2D", "ring_mixture", "mode_coverage", "wasserstein", "ToyResult", "sample_toy",
    "GeneratorOptions", "SamplerOptions", "TeacherOptions", "StudentOptions", "EvalOptions", "PipelineOptions",
    "METHOD_KEYS", "PipelineResult", "held_out_subset", "run_pipeline",
]
