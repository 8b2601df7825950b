"""The OT generative distillation pipeline: typed options per stage, and ``run_pipeline`` over named rows.

Stages, run in sequence as in the paper (``docs/methods/ot_generative.md``, "Equations"): train (or load) the
latent generative model -> sample ``ipc`` images per class (plain DDIM / IGD-style guidance / IGD-style + OT
guidance) -> soft labels from the teacher ensemble (LIA: an IPC-sized ensemble; or the whole ensemble) -> train a
student (hard-label CE, or the OTM loss) -> test accuracy.

The options are one dataclass per concern, built and checked with ``geodd.options.from_mapping`` (one-line errors
that list the valid keys), grouped in ``PipelineOptions``:

* ``GeneratorOptions``: the size preset of the latent model (``geodd.generative.model.SIZES``);
* ``SamplerOptions``: DDIM sizes and the guidance: ``guidance`` (plain | igd | otg), the IGD-style weights, the
  OT guidance weight beta_1 (``ot_weight``), its entropic regulariser lambda_1 (``ot_eps``) and ground cost;
* ``TeacherOptions``: the teacher ensemble's training, and relabelling (``labels`` hard | soft; LIA's
  ``ensemble`` ipc-sized | all, ``ipc_full``, ``temperature``);
* ``StudentOptions``: the student's training, and OTM (kappa1, kappa2, beta2, temperature, eps, form);
* ``EvalOptions``: the test subset and the precision.

What the method IS (guidance weights, LIA, OTM) is not defined here: it comes from the registry
(``geodd.methods``, variants "OT-gen (sampling only)" and "OT-gen (full)"); ``METHOD_KEYS`` names those fields.
Their defaults here are the library functions' defaults (no guidance, hard labels). Sizes (epochs, teacher count,
image caps, the generator size) come from the study's per-profile settings (``geodd.studies.ot_generative``).
Shown in notebook 05 (05_ot_generative).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from .. import GeoddError, default_device
from ..options import require
from .logit_matching import OT_FORMS, train_student
from .model import SIZES, make_config, train_or_load
from .relabel import DEFAULT_TEACHER_ARCHS, IPC_FULL, ensemble_size, soft_labels, teacher_specs, train_or_load_teachers
from .sampler import MODES, SampledSet, SamplerConfig, sample_set

GUIDANCE = ("plain", "igd", "otg")


@dataclass(frozen=True)
class GeneratorOptions:
    """Which size preset of the latent generative model to train (``smoke``, ``cpu``, ``paper``).
    Shown in notebook 05 (05_ot_generative)."""

    size: Literal["smoke", "cpu", "paper"] = "cpu"

    def check(self) -> None:
        require(self.size in SIZES, f"unknown generative model size {self.size!r}")


@dataclass(frozen=True)
class SamplerOptions:
    """DDIM sizes and the guidance. ``guidance`` picks which weights act: "plain" none, "igd" the IGD-style
    ``repr_weight``/``div_weight``, "otg" those plus the OT guidance ``ot_weight`` (beta_1) with regulariser
    ``ot_eps`` (lambda_1, relative to the largest cost) and ground cost ``ot_cost``.
    Shown in notebook 05 (05_ot_generative)."""

    guidance: Literal["plain", "igd", "otg"] = "plain"
    steps: int = 50
    real_batch: int = 256
    batch_size: int = 10
    mode: Literal["zt", "x0"] = "zt"
    repr_weight: float = 0.0
    div_weight: float = 0.0
    ot_weight: float = 0.0
    ot_eps: float = SamplerConfig.ot_eps
    ot_cost: Literal["l1", "euclidean", "sqeuclidean"] = "l1"

    def check(self) -> None:
        require(min(self.steps, self.real_batch, self.batch_size) >= 1,
                "steps, real_batch and batch_size must be at least 1")
        require(min(self.repr_weight, self.div_weight, self.ot_weight) >= 0, "guidance weights must be >= 0")
        require(self.ot_eps > 0, f"ot_eps must be positive, got {self.ot_eps}")
        require(self.mode in MODES, f"mode must be one of {MODES}")

    def sampler_config(self) -> SamplerConfig:
        """The ``SamplerConfig`` of these options: weights that ``guidance`` does not switch on are 0."""
        igd, ot = self.guidance in ("igd", "otg"), self.guidance == "otg"
        return SamplerConfig(steps=self.steps, real_batch=self.real_batch, batch_size=self.batch_size,
                             mode=self.mode, repr_weight=self.repr_weight if igd else 0.0,
                             div_weight=self.div_weight if igd else 0.0, ot_weight=self.ot_weight if ot else 0.0,
                             ot_eps=self.ot_eps, ot_cost=self.ot_cost)


@dataclass(frozen=True)
class TeacherOptions:
    """The teacher ensemble (``num`` nets cycling through ``archs``, each trained ``epochs`` with Adam on its own
    seeded subset of ``max_images`` images) and relabelling: ``labels`` "hard" (none) or "soft"; ``ensemble``
    "ipc-sized" (LIA: |T(IPC)| teachers, all from ``ipc_full`` on) or "all"; ``temperature`` of the softmax.
    ``seed`` None: every pipeline seed trains its own ensemble; an int: one fixed, cached ensemble.
    Shown in notebook 05 (05_ot_generative)."""

    num: int = 4
    archs: tuple[str, ...] = DEFAULT_TEACHER_ARCHS
    epochs: int = 1
    max_images: int | None = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    amp: str | None = None
    seed: int | None = None
    labels: Literal["hard", "soft"] = "hard"
    ensemble: Literal["ipc-sized", "all"] = "ipc-sized"
    ipc_full: int = IPC_FULL
    temperature: float = 1.0

    def check(self) -> None:
        require(self.num >= 1 and len(self.archs) >= 1, "need at least one teacher and one architecture")
        require(self.epochs >= 1 and self.batch_size >= 1 and self.lr > 0, "teacher training sizes must be positive")
        require(self.max_images is None or self.max_images >= 1, "max_images must be None or positive")
        require(self.ipc_full >= 2, f"ipc_full must be at least 2, got {self.ipc_full}")
        require(self.temperature > 0, f"temperature must be positive, got {self.temperature}")

    def training(self) -> dict[str, Any]:
        """The keyword arguments of ``train_teachers`` (what the teachers' cache key holds)."""
        return {"epochs": self.epochs, "max_images": self.max_images, "batch_size": self.batch_size, "lr": self.lr,
                "amp": self.amp}


@dataclass(frozen=True)
class StudentOptions:
    """The student (``arch`` trained ``epochs`` by SGD, ``runs`` fresh nets) and its loss against soft labels,
    OTM: kappa1 CE + kappa2 MSE + beta2 Sinkhorn (``temperature``, absolute ``eps``, ``ot_form``); beta2 = 0 is
    the "w/o OTM" loss (CE + MSE). With hard labels the loss is CE. Shown in notebook 05 (05_ot_generative)."""

    arch: str = "convnet"
    epochs: int = 300
    batch_size: int = 256
    lr: float = 0.01
    amp: str | None = None
    runs: int = 1
    kappa1: float = 1.0
    kappa2: float = 1.0
    beta2: float = 1.0
    temperature: float = 2.0
    eps: float = 0.1
    ot_form: Literal["divergence", "cost"] = "divergence"

    def check(self) -> None:
        require(min(self.epochs, self.batch_size, self.runs) >= 1, "epochs, batch_size and runs must be >= 1")
        require(self.lr > 0 and self.temperature > 0 and self.eps > 0, "lr, temperature and eps must be positive")
        require(min(self.kappa1, self.kappa2, self.beta2) >= 0, "kappa1, kappa2 and beta2 must be >= 0")
        require(self.ot_form in OT_FORMS, f"ot_form must be one of {OT_FORMS}")

    def training(self) -> dict[str, Any]:
        """The keyword arguments of ``train_student`` except data, seed and device."""
        return {"arch": self.arch, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "kappa1": self.kappa1, "kappa2": self.kappa2, "beta2": self.beta2, "temperature": self.temperature,
                "eps": self.eps, "ot_form": self.ot_form, "amp": self.amp}


@dataclass(frozen=True)
class EvalOptions:
    """The test subset (``max_test`` images drawn with the pipeline seed; all when None) and its precision.
    Shown in notebook 05 (05_ot_generative)."""

    max_test: int | None = None
    batch_size: int = 1024
    amp: str | None = None

    def check(self) -> None:
        require(self.max_test is None or self.max_test >= 1, "max_test must be None or positive")
        require(self.batch_size >= 1, "batch_size must be positive")


@dataclass(frozen=True)
class PipelineOptions:
    """Every stage's options (flat keys route to their group: ``{"beta2": 0.0}`` sets ``student.beta2``).
    Shown in notebook 05 (05_ot_generative)."""

    generator: GeneratorOptions = field(default_factory=GeneratorOptions)
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    teachers: TeacherOptions = field(default_factory=TeacherOptions)
    student: StudentOptions = field(default_factory=StudentOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)


#: the fields that define the method (the registry's, ``geodd.methods``); every other field is a size
METHOD_KEYS = frozenset({
    "sampler.guidance", "sampler.repr_weight", "sampler.div_weight", "sampler.ot_weight", "sampler.ot_eps",
    "sampler.ot_cost", "teachers.labels", "teachers.ensemble", "teachers.ipc_full", "teachers.temperature",
    "student.kappa1", "student.kappa2", "student.beta2", "student.temperature", "student.eps", "student.ot_form"})


def sets_key(opts: PipelineOptions) -> str:
    """The name under which a row's generated set is shared: its guidance kind (plain, igd, otg).
    Shown in notebook 05 (05_ot_generative)."""
    return opts.sampler.guidance


def soft_key(opts: PipelineOptions) -> str | None:
    """``"<guidance>/lia"`` or ``"<guidance>/all"`` for a soft-label row (its soft labels), None for hard labels.
    Shown in notebook 05 (05_ot_generative)."""
    if opts.teachers.labels == "hard":
        return None
    return f"{opts.sampler.guidance}/{'lia' if opts.teachers.ensemble == 'ipc-sized' else 'all'}"


@dataclass
class PipelineResult:
    """Generated sets per guidance kind, soft labels per (kind, ensemble), accuracy per row, timings.
    Shown in notebook 05 (05_ot_generative)."""

    ipc: int
    seed: int
    sets: dict[str, SampledSet]
    soft: dict[str, torch.Tensor]
    ensemble: dict[str, int]
    rows: dict[str, dict[str, Any]]
    timings: dict[str, float]
    logs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, PipelineOptions] = field(default_factory=dict)
    model: Any = None
    teachers: list[torch.nn.Module] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One dict per row: row name, accuracy (mean over runs), std, student seconds."""
        return [{"row": k, "accuracy": r["accuracy"], "std": r["std"], "seconds": r["seconds"]}
                for k, r in self.rows.items()]


def held_out_subset(test: Any, max_test: int | None, seed: int) -> Any:
    """The evaluation subset: ``max_test`` test images drawn with ``seed`` (all of them when None or larger).
    Shown in notebook 05 (05_ot_generative)."""
    if max_test is None or max_test >= len(test):
        return test
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(int(seed)))[:int(max_test)]
    return test.subset(pick)


def _shared(rows: Mapping[str, PipelineOptions]) -> PipelineOptions:
    """The first row's options, after checking that all rows share the generator, teachers' training and eval."""
    if not rows:
        raise GeoddError("run_pipeline needs at least one row")
    first = next(iter(rows.values()))
    for name, o in rows.items():
        if (o.generator, o.eval) != (first.generator, first.eval) or \
                (o.teachers.num, o.teachers.archs, o.teachers.seed, o.teachers.training()) != \
                (first.teachers.num, first.teachers.archs, first.teachers.seed, first.teachers.training()):
            raise GeoddError(f"row {name!r} differs from the first row in the generator, the teachers' training or "
                             "the evaluation; rows of one pipeline share them")
    samplers: dict[str, SamplerConfig] = {}
    for name, o in rows.items():
        cfg = samplers.setdefault(sets_key(o), o.sampler.sampler_config())
        if cfg != o.sampler.sampler_config():
            raise GeoddError(f"row {name!r} samples {sets_key(o)!r} with other settings than an earlier row")
    return first


def _relabel(rows: Mapping[str, PipelineOptions], sets: dict[str, SampledSet], train: Any, ipc: int, seed: int,
             cache_dir, device, progress: bool, timings: dict, logs: dict):
    """Train or load the teachers and compute each soft-label set the rows need (once each); ``ensemble`` holds
    LIA's size (of the first soft-label row) and the whole ensemble's."""
    tp = next(o.teachers for o in rows.values() if soft_key(o) is not None)
    specs = teacher_specs(tp.num, tp.archs, base_seed=seed if tp.seed is None else int(tp.seed))
    t0 = time.perf_counter()
    teachers, logs["teachers"] = train_or_load_teachers(train, specs, cache_dir, device=device, progress=progress,
                                                        **tp.training())
    timings["teachers"] = time.perf_counter() - t0
    ensemble = {"lia": ensemble_size(ipc, len(teachers), tp.ipc_full), "all": len(teachers)}
    soft: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    for o in rows.values():
        key = soft_key(o)
        if key is not None and key not in soft:
            k = ensemble_size(ipc, len(teachers), o.teachers.ipc_full) if o.teachers.ensemble == "ipc-sized" \
                else len(teachers)
            soft[key] = soft_labels(teachers, sets[sets_key(o)].images, temperature=o.teachers.temperature, num=k,
                                    amp=o.teachers.amp)
    timings["relabel"] = time.perf_counter() - t0
    return teachers, ensemble, soft


def _student_row(o: PipelineOptions, s: SampledSet, soft: torch.Tensor | None, test: Any, num_classes: int,
                 seed: int, device, progress: bool) -> dict[str, Any]:
    """Train and test ``o.student.runs`` students on one generated set; accuracy mean, std, per class, seconds."""
    from ..evaluate import held_out_accuracy
    accs, per_class, secs = [], [], 0.0
    for run in range(o.student.runs):
        t0 = time.perf_counter()
        net, _ = train_student(s.images, s.labels, soft, num_classes=num_classes, seed=seed * 1000 + run,
                               device=device, progress=progress, **o.student.training())
        acc, pc = held_out_accuracy(net, test, batch_size=o.eval.batch_size, amp=o.eval.amp)
        secs += time.perf_counter() - t0
        accs.append(acc)
        per_class.append(pc)
    t = torch.tensor(accs, dtype=torch.float64)
    return {"guidance": o.sampler.guidance, "labels": o.teachers.labels, "ensemble": o.teachers.ensemble,
            "beta2": o.student.beta2, "accuracy": float(t.mean()), "std": float(t.std(unbiased=False)),
            "accs": accs, "per_class": torch.tensor(per_class).mean(0).tolist(), "seconds": secs}


def run_pipeline(train: Any, test: Any, ipc: int, rows: Mapping[str, PipelineOptions], *, seed: int = 0,
                 cache_dir: str | Path | None = None, device=None, progress: bool = False) -> PipelineResult:
    """Run every row of ``rows`` (name -> ``PipelineOptions``) at ``ipc`` images per class with ``seed``.

    ``train``/``test`` are ``geodd.data.Dataset``s. The rows share the generative model, the teachers and the test
    subset; the model and the teachers are cached in ``cache_dir`` (keyed by their options and the data's
    fingerprint); sampling, relabelling and students are recomputed. Each generated set (per guidance kind) and
    each soft-label set is computed once and shared by the rows that use it. Shown in notebook 05
    (05_ot_generative)."""
    first = _shared(rows)
    device = torch.device(device) if device is not None else default_device()
    held_out = held_out_subset(test, first.eval.max_test, seed).to(device)
    timings: dict[str, float] = {}
    logs: dict[str, Any] = {}

    t0 = time.perf_counter()
    model, logs["generative"] = train_or_load(make_config(first.generator.size, train), train, cache_dir,
                                              device=device, progress=progress)
    timings["generative_model"] = time.perf_counter() - t0

    sets: dict[str, SampledSet] = {}
    for o in rows.values():
        if sets_key(o) not in sets:
            sets[sets_key(o)] = sample_set(model, train.images, train.labels, ipc, o.sampler.sampler_config(),
                                           seed=seed)
            timings[f"sampling_{sets_key(o)}"] = sets[sets_key(o)].seconds

    teachers, ensemble, soft = [], {}, {}
    if any(soft_key(o) is not None for o in rows.values()):
        teachers, ensemble, soft = _relabel(rows, sets, train, ipc, seed, cache_dir, device, progress, timings, logs)

    results: dict[str, dict[str, Any]] = {}
    for name, o in rows.items():
        key = soft_key(o)
        results[name] = _student_row(o, sets[sets_key(o)], soft[key] if key else None, held_out,
                                     train.num_classes, seed, device, progress)
        timings[f"student_{name}"] = results[name]["seconds"]
    return PipelineResult(ipc=ipc, seed=seed, sets=sets, soft=soft, ensemble=ensemble, rows=results,
                          timings=timings, logs=logs, options=dict(rows), model=model, teachers=list(teachers))


__all__ = ["GUIDANCE", "GeneratorOptions", "SamplerOptions", "TeacherOptions", "StudentOptions", "EvalOptions",
           "PipelineOptions", "METHOD_KEYS", "sets_key", "soft_key", "PipelineResult", "held_out_subset",
           "run_pipeline"]
