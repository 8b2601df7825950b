"""The OT generative distillation pipeline and its ablation rows (``papers/csdm_ot.md`` B.2, B.7).

Stages, run sequentially as in the paper: train (or load) the latent generative model -> sample ``ipc``
images per class (plain DDIM / IGD guidance / IGD + OT guidance) -> soft labels from the teacher ensemble
(LIA: IPC-sized ensemble; "w/o LIA": the whole ensemble) -> train a student (hard-label CE, or the OTM loss;
"w/o OTM": beta2 = 0) -> test accuracy. ``run_pipeline`` returns everything a notebook shows: images, labels,
soft labels, accuracy per ablation row and per-stage timings. Sizes come from a profile dict (``DEFAULT_PROFILE``
deep-merged with the caller's); no value in it comes from the paper except the l1 costs and SinKD's tau, eps.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import GeoddError, default_device
from .logit_matching import train_student
from .model import make_config, train_or_load
from .relabel import DEFAULT_TEACHER_ARCHS, IPC_FULL, ensemble_size, soft_labels, teacher_specs, train_or_load_teachers
from .sampler import SampledSet, sample_set, sampler_config


@dataclass(frozen=True)
class Row:
    """One ablation row: sampling variant, hard or soft labels, IPC-sized (LIA) or full ensemble, OTM on/off."""

    title: str
    variant: str
    soft: bool = False
    lia: bool = True
    otm: bool = True


#: the ablation rows (paper B.7 table, plus plain DDIM with hard labels)
ROWS: dict[str, Row] = {
    "plain_hard": Row("plain DDIM, hard labels", "plain"),
    "igd_hard": Row("w/o OTG, hard labels (IGD sampling)", "igd"),
    "otg_hard": Row("with OTG, hard labels", "otg"),
    "igd_soft": Row("w/o OTG, soft labels", "igd", soft=True),
    "no_lia": Row("w/o LIA", "otg", soft=True, lia=False),
    "no_otm": Row("w/o OTM", "otg", soft=True, otm=False),
    "full": Row("full (OTG + LIA + OTM)", "otg", soft=True),
}

#: sizes for the ``cpu`` profile (reconstruction: our choice); notebooks override any key
DEFAULT_PROFILE: dict[str, Any] = {
    "gen_size": "cpu",
    "gen": {},
    "sampler": {},
    "variants": {},
    "teachers": {"num": 4, "archs": list(DEFAULT_TEACHER_ARCHS), "epochs": 1, "max_images": 10_000,
                 "batch_size": 128, "lr": 1e-3, "amp": None, "seed": None},
    "lia": {"ipc_full": IPC_FULL, "temperature": 1.0},
    "student": {"arch": "convnet", "epochs": 300, "batch_size": 256, "lr": 0.01, "kappa1": 1.0, "kappa2": 1.0,
                "beta2": 1.0, "temperature": 2.0, "eps": 0.1, "ot_form": "divergence", "amp": None, "runs": 1},
    "eval": {"max_test": None, "batch_size": 1024, "amp": None},
    "rows": list(ROWS),
}


def resolve_profile(profile: dict[str, Any] | None) -> dict[str, Any]:
    """``DEFAULT_PROFILE`` deep-merged with ``profile``; unknown top-level keys are an error."""
    out = copy.deepcopy(DEFAULT_PROFILE)
    for key, value in (profile or {}).items():
        if key not in out:
            raise GeoddError(f"unknown pipeline profile key {key!r}; known: {', '.join(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    for name in out["rows"]:
        if name not in ROWS:
            raise GeoddError(f"unknown ablation row {name!r}; choose from {', '.join(ROWS)}")
    return out


@dataclass
class PipelineResult:
    """Generated sets per sampling variant, soft labels per (variant, ensemble), accuracy per row, timings."""

    ipc: int
    seed: int
    sets: dict[str, SampledSet]
    soft: dict[str, torch.Tensor]
    ensemble: dict[str, int]
    rows: dict[str, dict[str, Any]]
    timings: dict[str, float]
    logs: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    teachers: list[torch.nn.Module] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One dict per row: row id, title, accuracy (mean over runs), std, student seconds."""
        return [{"row": k, "title": r["title"], "accuracy": r["accuracy"], "std": r["std"],
                 "seconds": r["seconds"]} for k, r in self.rows.items()]


def test_subset(test: Any, max_test: int | None, seed: int) -> Any:
    """The evaluation subset: ``max_test`` test images drawn with ``seed`` (all of them when None or larger)."""
    if max_test is None or max_test >= len(test):
        return test
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(int(seed)))[:int(max_test)]
    return test.subset(pick)


def _evaluate(net: torch.nn.Module, test: Any, ev: dict[str, Any]) -> tuple[float, list[float]]:
    from ..evaluate import test_accuracy
    return test_accuracy(net, test, batch_size=ev["batch_size"], amp=ev["amp"])


def run_pipeline(train: Any, test: Any, ipc: int, *, seed: int = 0, profile: dict[str, Any] | None = None,
                 cache_dir: str | Path | None = None, device=None, progress: bool = False) -> PipelineResult:
    """Run the ablation rows of ``profile["rows"]`` at ``ipc`` images per class with ``seed``.

    ``train``/``test`` are ``geodd.data.Dataset``s. The generative model and the teachers are cached in
    ``cache_dir`` (keyed by config and data hashes); sampling, relabelling and students are recomputed. Each
    sampling variant and each soft-label set is computed once and shared by the rows that use it. The teachers'
    seeds start at ``profile["teachers"]["seed"]`` (None: at ``seed``, so every pipeline seed trains its own
    ensemble; an int: one fixed, cached ensemble for all seeds, like the paper's pretrained teachers).
    """
    prof = resolve_profile(profile)
    device = torch.device(device) if device is not None else default_device()
    rows = [(name, ROWS[name]) for name in prof["rows"]]
    ev = prof["eval"]
    test = test_subset(test, ev["max_test"], seed).to(device)
    timings: dict[str, float] = {}
    logs: dict[str, Any] = {}

    t0 = time.perf_counter()
    gen_cfg = make_config(prof["gen_size"], train, **prof["gen"])
    model, logs["generative"] = train_or_load(gen_cfg, train, cache_dir, device=device, progress=progress)
    timings["generative_model"] = time.perf_counter() - t0

    sets: dict[str, SampledSet] = {}
    for variant in dict.fromkeys(r.variant for _, r in rows):
        cfg = sampler_config(variant, **{**prof["sampler"], **prof["variants"].get(variant, {})})
        sets[variant] = sample_set(model, train.images, train.labels, ipc, cfg, seed=seed)
        timings[f"sampling_{variant}"] = sets[variant].seconds

    soft: dict[str, torch.Tensor] = {}
    ensemble: dict[str, int] = {}
    if any(r.soft for _, r in rows):
        tp = dict(prof["teachers"])
        base = tp.pop("seed")
        specs = teacher_specs(tp.pop("num"), tp.pop("archs"), base_seed=seed if base is None else int(base))
        t0 = time.perf_counter()
        teachers, logs["teachers"] = train_or_load_teachers(train, specs, cache_dir, device=device,
                                                            progress=progress, **tp)
        timings["teachers"] = time.perf_counter() - t0
        ensemble = {"lia": ensemble_size(ipc, len(teachers), prof["lia"]["ipc_full"]), "all": len(teachers)}
        t0 = time.perf_counter()
        for _, r in rows:
            if not r.soft:
                continue
            key = f"{r.variant}/{'lia' if r.lia else 'all'}"
            if key not in soft:
                k = ensemble["lia" if r.lia else "all"]
                soft[key] = soft_labels(teachers, sets[r.variant].images, temperature=prof["lia"]["temperature"],
                                        num=k, amp=tp.get("amp"))
        timings["relabel"] = time.perf_counter() - t0

    st = dict(prof["student"])
    runs = int(st.pop("runs"))
    results: dict[str, dict[str, Any]] = {}
    for name, r in rows:
        s = sets[r.variant]
        labels_soft = soft[f"{r.variant}/{'lia' if r.lia else 'all'}"] if r.soft else None
        kw = dict(st)
        if r.soft and not r.otm:
            kw["beta2"] = 0.0
        accs, per_class, secs = [], [], 0.0
        for run in range(runs):
            t0 = time.perf_counter()
            net, _ = train_student(s.images, s.labels, labels_soft, num_classes=train.num_classes,
                                   seed=seed * 1000 + run, device=device, progress=progress, **kw)
            acc, pc = _evaluate(net, test, ev)
            secs += time.perf_counter() - t0
            accs.append(acc)
            per_class.append(pc)
        t = torch.tensor(accs, dtype=torch.float64)
        results[name] = {"title": r.title, "variant": r.variant, "soft": r.soft, "lia": r.lia, "otm": r.otm,
                         "accuracy": float(t.mean()), "std": float(t.std(unbiased=False)), "accs": accs,
                         "per_class": torch.tensor(per_class).mean(0).tolist(), "seconds": secs}
        timings[f"student_{name}"] = secs
    return PipelineResult(ipc=ipc, seed=seed, sets=sets, soft=soft, ensemble=ensemble, rows=results,
                          timings=timings, logs=logs, profile=prof, model=model,
                          teachers=list(teachers) if any(r.soft for _, r in rows) else [])


__all__ = ["Row", "ROWS", "DEFAULT_PROFILE", "resolve_profile", "PipelineResult", "test_subset", "run_pipeline"]
