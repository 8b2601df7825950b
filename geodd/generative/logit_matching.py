"""OT-based logit matching (OTM) for the student (OT generative DD: the paper's logit-matching section;
``docs/methods/ot_generative.md``, "Equations"). Shown in notebook 05 (05_ot_generative).

L = kappa1 CE(z, y) + kappa2 MSE(p_s, p_t) + beta2 SD(p_s, p_t), with p_s = softmax(z / tau) the student's
tempered probabilities, p_t = softmax(log t / tau) the tempered soft labels (for a single teacher this is
exactly softmax(F(x) / tau)), and SD the Sinkhorn distance between the *batch* of B student vectors and the
batch of B teacher vectors with l1 ground cost (a B x B cost matrix, ``geodd.transport.sinkhorn_loss``), which
couples samples across the batch (SinKD). Defaults tau = 2, eps = 0.1 follow SinKD; kappa1, kappa2, beta2 and
the debiased form (below) are "reconstruction: our choice" (the paper gives no values).
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import GeoddError
from ..nets import make_network
from ..transport import sinkhorn_loss
from .training import fit

#: log floor of soft labels before tempering
PROB_FLOOR = 1e-12
OT_FORMS = ("divergence", "cost")
#: Sinkhorn budget per student step (SinKD runs 20 plain iterations; we stop at this marginal tolerance)
SINKHORN_ITERS, SINKHORN_TOL = 200, 1e-5


def tempered(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log p / tau): re-tempers a probability vector (= softmax(z / tau) when p = softmax(z)).
    Not called in a notebook; used by ``geodd.generative.logit_matching``."""
    return torch.softmax(probs.clamp_min(PROB_FLOOR).log() / temperature, dim=-1)


def sinkhorn_distance(p: torch.Tensor, q: torch.Tensor, eps: float, *, cost: str = "l1",
                      form: str = "divergence", grad: str = "envelope", num_iter: int = SINKHORN_ITERS,
                      tol: float = SINKHORN_TOL) -> torch.Tensor:
    """Batch Sinkhorn distance between rows of ``p`` [B, C] and ``q`` [B', C].

    ``form="cost"``: OT_eps(p, q) = <P, C> (SinKD's loss). ``form="divergence"``: the debiased
    OT_eps(p, q) - (OT_eps(p, p) + OT_eps(q, q)) / 2, which is exactly 0 when p == q (the entropic cost alone
    is positive there). Reconstruction: our choice of default ("divergence"). ``eps`` is absolute (as SinKD's
    eps = 0.1 on l1 costs of probability vectors, which lie in [0, 2]); ``grad="envelope"`` holds the plan fixed
    (gradient <P, dC>), ``"autodiff"`` differentiates through the Sinkhorn iterations.
    Not called in a notebook; used by ``geodd.generative.logit_matching``.
    """
    if form not in OT_FORMS:
        raise GeoddError(f"unknown Sinkhorn form {form!r}; choose one of {', '.join(OT_FORMS)}")
    def ot_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sinkhorn_loss(x, y, eps, cost, cost_norm=None, grad=grad, num_iter=num_iter, tol=tol)

    value = ot_cost(p, q)
    if form == "divergence":
        value = value - 0.5 * (ot_cost(p, p) + ot_cost(q, q))
    return value


def otm_terms(student_logits: torch.Tensor, teacher_probs: torch.Tensor, hard_labels: torch.Tensor, *,
              temperature: float = 2.0, eps: float = 0.1, ot_form: str = "divergence",
              need_ot: bool = True) -> dict[str, torch.Tensor]:
    """The three OTM terms: ``ce`` = CE(z, y) at tau = 1, ``mse`` = mean_b ||p_s - p_t||_2^2, ``ot`` = batch
    Sinkhorn distance (l1 cost) between p_s and p_t.
    Not called in a notebook; used by ``geodd.generative.logit_matching``."""
    if student_logits.shape != teacher_probs.shape:
        raise GeoddError(f"student logits {tuple(student_logits.shape)} and teacher probabilities "
                         f"{tuple(teacher_probs.shape)} differ in shape")
    if temperature <= 0:
        raise GeoddError(f"temperature must be positive, got {temperature}")
    p_s = torch.softmax(student_logits / temperature, dim=-1)
    p_t = tempered(teacher_probs.detach().to(p_s.dtype), temperature)
    terms = {"ce": F.cross_entropy(student_logits, hard_labels), "mse": (p_s - p_t).pow(2).sum(-1).mean()}
    terms["ot"] = sinkhorn_distance(p_s, p_t, eps, form=ot_form) if need_ot else p_s.new_zeros(())
    return terms


def otm_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, hard_labels: torch.Tensor,
             kappa1: float = 1.0, kappa2: float = 1.0, beta2: float = 1.0, temperature: float = 2.0,
             eps: float = 0.1, *, ot_form: str = "divergence") -> torch.Tensor:
    """L = kappa1 CE + kappa2 MSE(p_s, p_t) + beta2 SD_l1(p_s, p_t) (the paper's OTM loss); see ``otm_terms``.
    Not called in a notebook; used by ``geodd.generative.logit_matching``."""
    t = otm_terms(student_logits, teacher_probs, hard_labels, temperature=temperature, eps=eps, ot_form=ot_form,
                  need_ot=beta2 != 0)
    return kappa1 * t["ce"] + kappa2 * t["mse"] + beta2 * t["ot"]


def train_student(images: torch.Tensor, hard_labels: torch.Tensor, soft: torch.Tensor | None = None, *,
                  num_classes: int, arch: str = "convnet", epochs: int = 300, batch_size: int = 256,
                  lr: float = 0.01, kappa1: float = 1.0, kappa2: float = 1.0, beta2: float = 1.0,
                  temperature: float = 2.0, eps: float = 0.1, ot_form: str = "divergence", seed: int = 0,
                  device=None, amp: str | None = None, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh ``arch`` (seeded) trained on the distilled set: hard-label CE when ``soft`` is None, else the
    OTM loss against the soft labels (``beta2 = 0``: the "w/o OTM" ablation, CE + MSE only).
    Used in notebook 05 (05_ot_generative) through its study module."""
    device = torch.device(device) if device is not None else images.device
    images, hard_labels = images.to(device), hard_labels.to(device)
    net = make_network(arch, int(images.shape[1]), num_classes, tuple(images.shape[-2:]), seed=seed, device=device)
    if soft is None:
        def loss_fn(logits, idx):
            return F.cross_entropy(logits, hard_labels[idx])
    else:
        if soft.shape != (len(images), num_classes):
            raise GeoddError(f"soft labels of shape {tuple(soft.shape)} do not match {len(images)} images x "
                             f"{num_classes} classes")
        soft = soft.to(device)

        def loss_fn(logits, idx):
            return otm_loss(logits, soft[idx], hard_labels[idx], kappa1, kappa2, beta2, temperature, eps,
                            ot_form=ot_form)
    t0 = time.perf_counter()
    history = fit(net, images, loss_fn, epochs=epochs, batch_size=batch_size, lr=lr, optimizer="sgd", seed=seed,
                  amp=amp, progress=progress, desc=f"student {arch}")
    return net, {"loss": history, "seconds": time.perf_counter() - t0}


__all__ = ["tempered", "sinkhorn_distance", "otm_terms", "otm_loss", "train_student"]
