"""The registry of named method settings: one definition per method variant, each value with its provenance.

Every notebook, benchmark and study takes a method's settings from here; none defines its own. A variant fixes
what the method IS (matcher, schedule, matcher options, image learning rate, IDM's loss weight), each value
with where it comes from:

- ``release: ...``: the authors' released code or command (file named);
- ``paper: ...``: the paper (title and section);
- ``ours: ...``: our choice or calibration, with its rule (``docs/methods/*.md`` "Reconstruction: our choice").

What a variant does NOT fix are sizes (iterations, batch_real, inner_steps, IDM's pool sizes, evaluation
budget): they come from the profile (``geodd.profiles``), so the same variant runs at ``smoke``, ``cpu`` and
``paper`` scale. ``config(name, profile, ipc=..., seed=...)`` combines the two into a ``DistillConfig``. The
OT generative variants (schedule ``"generative"``) are pipelines, not distillation configs: their settings are
field paths of ``geodd.generative.PipelineOptions``, which notebook 05's study builds.
Shown in notebook 06 (06_results), whose settings table is ``table()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from . import GeoddError


@dataclass(frozen=True)
class Setting:
    """One value of a variant and where it comes from. Not called in a notebook; used by ``geodd.methods``."""

    value: Any
    source: str


#: lr_img value of variants whose image learning rate is calibrated per run by a rule (not a number)
EQUAL_FIRST_STEP = "equal-first-step"


@dataclass(frozen=True)
class Variant:
    """A named method variant: the engine's method and schedule plus settings keyed by config path
    (``lr_img``, ``matcher.<option>``, ``idm.<option>``); ``by_ipc`` holds values that differ per IPC.
    Not called in a notebook; used by ``geodd.methods``."""

    name: str
    method: str
    schedule: str
    summary: str
    settings: dict[str, Setting] = field(default_factory=dict)
    by_ipc: dict[int, dict[str, Setting]] = field(default_factory=dict)

    def values(self, ipc: int | None = None) -> dict[str, Setting]:
        """Every setting at ``ipc`` (the per-IPC ones win)."""
        return {**self.settings, **(self.by_ipc.get(ipc, {}) if ipc is not None else {})}

    def overrides(self, ipc: int | None = None) -> dict[str, Any]:
        """``DistillConfig`` keyword arguments for this variant at ``ipc`` (nested ``matcher``/``idm`` dicts)."""
        out: dict[str, Any] = {"method": self.method, "schedule": self.schedule}
        for path, s in self.values(ipc).items():
            group, _, key = path.partition(".")
            if key:
                out.setdefault(group, {})[key] = s.value
            else:
                out[group] = s.value
        return out

    @property
    def calibrated_lr(self) -> bool:
        """True where the image learning rate comes from a calibration rule, not a number."""
        lr = self.settings.get("lr_img")
        return lr is not None and lr.value == EQUAL_FIRST_STEP


_IDM_REL = "release: IDM's command.txt (CIFAR-10)"
_IDM_CE = Setting(50.0, "release: --ce_weight 0.5 times the accuracy in percent, i.e. 50 times the accuracy as a "
                        "fraction in geodd's units (docs/methods/idm.md, 'Units of the CE weight')")
_HDD_DM = "release: HDD's DM-HDD/main_DM.py defaults"
_HDD_IDM = "release: HDD's IDM-HDD/command.txt (CIFAR-10)"
_HDD_NORM = Setting("rescale", "ours: the release's clamp puts every ConvNet feature at one radius, so radial "
                               "differences vanish; one detached factor puts a mean real feature at radius 2 "
                               "(docs/methods/hdd.md, 'Reconstruction: our choice'); norm='release' is the release")

_REGISTRY: dict[str, Variant] = {v.name: v for v in [
    Variant("DM", "dm", "dm", "mean embeddings under fresh random ConvNets", {
        "lr_img": Setting(1.0, "release: DM's main_DM.py (lr_img 1.0; CIFAR-10 default)"),
    }),
    Variant("IDM", "dm", "idm", "DM with IDM's pool of partially trained nets, synthetic CE, partition-and-expansion", {
        "lr_img": Setting(0.2, _IDM_REL + " (--lr_img 0.2)"),
        "idm.ce_weight": _IDM_CE,
    }),
    Variant("DM+HDD", "hdd", "dm", "HDD's Lorentz centroid distance under DM's schedule", {
        "lr_img": Setting(1.0, "release: DM's learning rate (HDD's main_DM.py keeps it)"),
        "matcher.k": Setting(1.0, _HDD_DM + " (curvature parameter k)"),
        "matcher.lam": Setting(20.0, _HDD_DM + " (loss weight lambda)"),
        "matcher.norm": _HDD_NORM,
    }),
    Variant("IDM+HDD", "hdd", "idm", "HDD's centroid distance under IDM's schedule (the release's main setting)", {
        "matcher.k": Setting(2.4, _HDD_IDM),
        "matcher.lam": Setting(100.0, _HDD_IDM),
        "matcher.norm": _HDD_NORM,
        "idm.ce_weight": _IDM_CE,
    }, by_ipc={
        1: {"lr_img": Setting(0.5, _HDD_IDM + ", IPC 1")},
        10: {"lr_img": Setting(1.0, _HDD_IDM + ", IPC 10")},
        50: {"lr_img": Setting(0.2, _HDD_IDM + ", IPC 50"),
             "idm.ce_weight": Setting(10.0, _HDD_IDM + ", IPC 50: --ce_weight 0.1 in percent units")},
    }),
    Variant("SDD", "sdd", "dm", "spectral (characteristic-function) distance, balanced amplitude/phase", {
        "lr_img": Setting(EQUAL_FIRST_STEP, "ours: no published rate; calibrated per IPC so that SDD's first "
                                            "image step equals DM's on the same network and batch "
                                            "(geodd.stepsize, docs/methods/step_sizes.md)"),
        "matcher.kernel": Setting("rbf", "paper: CSDM, a universal kernel (section not checked); RBF as in NCFM"),
        "matcher.sigma": Setting(1.0, "ours: NCFM's t ~ N(0, I) on L2-normalised features"),
        "matcher.alpha": Setting(0.5, "ours: equal amplitude and phase weight (sum = |phi_r - phi_s|^2)"),
    }),
    Variant("CSDM", "csdm", "dm", "SDD with class-aware amplitude/phase weights for long-tailed data", {
        "lr_img": Setting(EQUAL_FIRST_STEP, "ours: as SDD (geodd.stepsize)"),
        "matcher.kernel": Setting("rbf", "paper: CSDM, a universal kernel (section not checked); RBF as in NCFM"),
        "matcher.sigma": Setting(1.0, "ours: as SDD"),
        "matcher.alpha_head": Setting(0.7, "ours: alpha(c) form unpublished (docs/methods/sdd_csdm.md)"),
    }),
    Variant("GeoDM", "geodm", "dm", "matching in a product of Euclidean, hyperbolic and spherical spaces with OT", {
        "lr_img": Setting(EQUAL_FIRST_STEP, "ours: no published rate; calibrated per IPC so that GeoDM's first "
                                            "image step equals DM's on the same network and batch "
                                            "(geodd.stepsize, docs/methods/step_sizes.md)"),
    }),
    # OT generative distillation (a generative pipeline, not a DistillConfig method: its settings are the field
    # paths of geodd.generative.PipelineOptions; geodd.studies.ot_generative builds the options from them)
    Variant("OT-gen (sampling only)", "ot-gen", "generative",
            "class-conditional latent diffusion with IGD-style guidance, hard labels, a CE student (no OT part)", {
        "sampler.guidance": Setting("igd", "paper: Optimizing Distributional Geometry Alignment with Optimal "
                                           "Transport for Generative Dataset Distillation, ablation table "
                                           "(the row without OTG samples with IGD's guidance)"),
        "sampler.repr_weight": Setting(0.3, "ours: IGD's influence guidance as a latent cosine pull, weight picked "
                                            "on Fashion-MNIST IPC 10 (docs/methods/ot_generative.md, "
                                            "'Reconstruction: our choice')"),
        "sampler.div_weight": Setting(0.3, "ours: IGD's deviation guidance as a latent cosine push, weight picked "
                                           "on Fashion-MNIST IPC 10 (docs/methods/ot_generative.md)"),
        "teachers.labels": Setting("hard", "paper: Optimizing Distributional Geometry Alignment ..., ablation "
                                           "table (hard-label rows)"),
    }),
    Variant("OT-gen (full)", "ot-gen", "generative",
            "OT-guided sampling (OTG) + IPC-sized soft relabelling (LIA) + OT logit matching (OTM)", {
        "sampler.guidance": Setting("otg", "paper: Optimizing Distributional Geometry Alignment with Optimal "
                                           "Transport for Generative Dataset Distillation, OT-guided sampling"),
        "sampler.repr_weight": Setting(0.3, "ours: as 'OT-gen (sampling only)' (docs/methods/ot_generative.md)"),
        "sampler.div_weight": Setting(0.3, "ours: as 'OT-gen (sampling only)' (docs/methods/ot_generative.md)"),
        "sampler.ot_weight": Setting(0.2, "ours: beta_1, picked on Fashion-MNIST IPC 10 with the cpu model (it "
                                          "lowered the held-out latent W1 from 3.0 to 2.4); the paper gives none "
                                          "(docs/methods/ot_generative.md, 'Reconstruction: our choice')"),
        "sampler.ot_eps": Setting(0.05, "ours: lambda_1 relative to the largest cost; the paper gives none "
                                        "(docs/methods/ot_generative.md)"),
        "sampler.ot_cost": Setting("l1", "paper: Optimizing Distributional Geometry Alignment ..., OT-guided "
                                         "sampling (l1 ground cost)"),
        "teachers.labels": Setting("soft", "paper: Optimizing Distributional Geometry Alignment ..., label-image "
                                           "alignment (LIA)"),
        "teachers.ensemble": Setting("ipc-sized", "paper: Optimizing Distributional Geometry Alignment ..., LIA "
                                                  "(the teacher ensemble grows with IPC)"),
        "teachers.ipc_full": Setting(50, "ours: one teacher at IPC 1, the whole ensemble from IPC 50, logarithmic "
                                         "in between (docs/methods/ot_generative.md, 'Equations')"),
        "teachers.temperature": Setting(1.0, "ours: soft labels average the teachers' probabilities at "
                                             "temperature 1 (docs/methods/ot_generative.md)"),
        "student.kappa1": Setting(1.0, "ours: the paper's OTM weights are not published "
                                       "(docs/methods/ot_generative.md, 'Reconstruction: our choice')"),
        "student.kappa2": Setting(1.0, "ours: as kappa1"),
        "student.beta2": Setting(1.0, "ours: as kappa1"),
        "student.temperature": Setting(2.0, "paper: Sinkhorn Distance Minimization for Knowledge Distillation "
                                            "(SinKD), temperature 2, which OTM follows"),
        "student.eps": Setting(0.1, "paper: SinKD, entropic regulariser 0.1 on l1 costs of probability vectors"),
        "student.ot_form": Setting("divergence", "ours: the debiased Sinkhorn divergence, zero when the student "
                                                 "matches the soft labels (docs/methods/ot_generative.md)"),
    }),
]}


def names() -> list[str]:
    """The registered variant names. Not called in a notebook; used by ``geodd.methods``."""
    return list(_REGISTRY)


def get(name: str) -> Variant:
    """The full settings of the variant called ``name``, with provenance. Shown in notebook 06 (06_results)."""
    if name not in _REGISTRY:
        raise GeoddError(f"unknown method variant {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def config(name: str, profile, *, ipc: int, seed: int = 0, **overrides):
    """A ``DistillConfig``: the profile's sizes, the variant's settings at ``ipc``, then ``overrides``.

    IDM variants take their pool sizes from the profile (``profile.idm_pool``). A variant with a calibrated
    learning rate needs ``lr_img`` in ``overrides`` (``geodd.stepsize.image_lr`` computes it).
    Used in notebook 04 (04_geodm_product_space) through its study module."""
    v = get(name)
    if v.schedule == "generative":
        raise GeoddError(f"{name} is a generative pipeline, not a distillation config; "
                         "geodd.studies.ot_generative builds its options")
    settings = v.overrides(ipc)
    if settings.get("lr_img") == EQUAL_FIRST_STEP:
        if "lr_img" not in overrides:
            raise GeoddError(f"{name}'s image learning rate is calibrated ({EQUAL_FIRST_STEP}); pass lr_img=")
        settings.pop("lr_img")
    if v.schedule == "idm":
        settings["idm"] = {**profile.idm_pool, **settings.get("idm", {})}
    for group in ("matcher", "idm"):
        if group in settings and group in overrides:
            overrides = {**overrides, group: {**settings[group], **overrides[group]}}
    cfg = profile.distill_config(v.method, ipc=ipc, seed=seed)
    return replace(cfg, **{**settings, **overrides})


def table(names_: list[str] | None = None) -> pd.DataFrame:
    """One row per (variant, setting): value and source; per-IPC values name their IPC.
    Shown in notebooks 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase), 04 (04_geodm_product_space) and 06
    (06_results)."""
    rows = []
    for name in names_ or names():
        v = get(name)
        rows.append({"variant": name, "setting": "method / schedule", "value": f"{v.method} / {v.schedule}",
                     "source": "geodd"})
        for path, s in v.settings.items():
            rows.append({"variant": name, "setting": path, "value": s.value, "source": s.source})
        for ipc, values in v.by_ipc.items():
            for path, s in values.items():
                rows.append({"variant": name, "setting": f"{path} (IPC {ipc})", "value": s.value,
                             "source": s.source})
    return pd.DataFrame(rows)


__all__ = ["EQUAL_FIRST_STEP", "Setting", "Variant", "config", "get", "names", "table"]
