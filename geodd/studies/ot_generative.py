"""Notebook 05 (05_ot_generative): OT generative distillation at CPU scale: its settings, cache names and tables.

* Settings: ``OTGenStudySettings`` per profile (``SETTINGS``, ``settings(profile)``): IPCs, seeds, the pipeline's
  sizes (``geodd.generative.PipelineOptions`` with sizes only: generator size, sampler steps, teachers, student,
  evaluation), the ablation rows and the 2-D toy (``ToySettings``). The method's own values (guidance weights,
  LIA, OTM) come from the registry (``geodd.methods``: "OT-gen (sampling only)" and "OT-gen (full)"); each
  ablation row (``ROWS``) is one of those variants with at most the one setting it removes changed.
* ``run_cell(s, train, test, ipc, seed)``: one (IPC, seed) cell of the ablation: ``run_pipeline`` over the rows,
  the OT distance between generated and held-out real latents per sampling kind, the soft-label entropy against
  ensemble size (LIA), and per-stage timings; cached with ``geodd.runs.memo`` (``CELL_MEMO``); the generated
  images go next to the generative checkpoint (``runs_root()/"generative"/sets-<fingerprint>.pt``);
* ``ablation_rows``: "OT-gen (sampling only)" and "OT-gen (full)" accuracies per (IPC, seed) from the same cache,
  for notebook 06;
* ``same_student_baselines``: DM synthetic sets and random real subsets evaluated by the *same* student protocol
  as the generated sets (so differences are due to the images, not the evaluator);
* ``toy_grid``: mode coverage and W_1 of the 2-D toy with and without OT guidance.

Reconstruction: our choice throughout (the paper has no code; ``docs/methods/ot_generative.md``): the ablation
rows read the paper's ablation table as a cumulative story, sampling only (IGD-style guidance, hard labels) ->
+OTG -> +LIA (soft labels from the IPC-sized ensemble, CE + MSE) -> +OTM (the Sinkhorn term), plus leave-one-out
rows; the OT distance of a generated set is the exact W_1 (POT's network simplex) per class between its latents
and encodings of held-out *test* images of that class, averaged over classes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import torch

from .. import GeoddError, default_device, methods, stats
from ..generative.logit_matching import train_student
from ..generative.model import encode_all, make_config, train_or_load
from ..generative.pipeline import (METHOD_KEYS, PipelineOptions, held_out_subset, run_pipeline, sets_key,
                                   soft_key)
from ..generative.relabel import entropy_vs_ensemble, label_entropy
from ..generative.sampler import sample_set
from ..generative.toy import ring_mixture, sample_toy, wasserstein
from ..io import fingerprint, load_tensors, save_tensors
from ..options import from_mapping, overrides, require
from ..profiles import Profile
from ..runs import memo, runs_root
from .common import for_profile, settings_by_profile

STUDY_FORMAT = "geodd.nb05/2"
SETS_FORMAT = "geodd.nb05-sets/1"
#: memo names of this notebook's caches
CELL_MEMO, STUDENT_MEMO, TOY_MEMO = "nb05-cell", "nb05-student", "nb05-toy"
#: the registry variants this notebook runs
SAMPLING_ONLY, FULL = "OT-gen (sampling only)", "OT-gen (full)"


@dataclass(frozen=True)
class Row:
    """One ablation row: a registry ``variant`` with ``change`` (the one setting it removes, as a
    ``PipelineOptions`` field path) applied. Shown in notebook 05 (05_ot_generative)."""

    title: str
    variant: str
    change: Mapping[str, Any] = field(default_factory=dict)


#: the ablation rows (the paper's ablation table, plus plain DDIM with hard labels)
ROWS: dict[str, Row] = {
    "plain_hard": Row("plain DDIM, hard labels", SAMPLING_ONLY, {"sampler.guidance": "plain"}),
    "igd_hard": Row("w/o OTG, hard labels (IGD sampling)", SAMPLING_ONLY),
    "otg_hard": Row("with OTG, hard labels", FULL, {"teachers.labels": "hard"}),
    "igd_soft": Row("w/o OTG, soft labels", FULL, {"sampler.guidance": "igd"}),
    "no_lia": Row("w/o LIA", FULL, {"teachers.ensemble": "all"}),
    "no_otm": Row("w/o OTM", FULL, {"student.beta2": 0.0}),
    "full": Row("full (OTG + LIA + OTM)", FULL),
}
#: the cumulative ablation (the paper's table read in order): each step adds one component to the one before
CUMULATIVE: dict[str, str] = {
    "igd_hard": "sampling only (IGD-style guidance, hard labels)",
    "otg_hard": "+ OTG (OT-guided sampling)",
    "no_otm": "+ LIA (IPC-sized soft labels, CE + MSE)",
    "full": "+ OTM (Sinkhorn logit matching) = full",
}
#: leave-one-out rows: the full pipeline without one component (``no_otm`` doubles as "full - OTM")
LEAVE_ONE_OUT: dict[str, str] = {"igd_soft": "full - OTG", "no_lia": "full - LIA (whole ensemble)",
                                 "no_otm": "full - OTM"}
#: method names for tables shared with other notebooks (notebook 06); the two registry variants keep their names
METHOD_NAMES: dict[str, str] = {
    "plain_hard": "OT-gen (plain DDIM)", "igd_hard": SAMPLING_ONLY, "otg_hard": "OT-gen (+OTG)",
    "no_otm": "OT-gen (+OTG +LIA)", "full": FULL, "igd_soft": "OT-gen (full - OTG)",
    "no_lia": "OT-gen (full - LIA)",
}
#: readable names of the sampled sets (``ot_distance_table``'s variants) for the prose
SET_NAMES: dict[str, str] = {"otg": "the OT-guided set", "igd": "the IGD-style set", "real": "a random real subset"}
#: paired comparisons behind the paper's three claims: (claim, with, without)
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("OTG helps (hard labels)", "otg_hard", "igd_hard"),
    ("OTG helps (full pipeline)", "full", "igd_soft"),
    ("LIA helps (IPC-sized vs whole ensemble)", "full", "no_lia"),
    ("OTM helps (Sinkhorn term on top of CE + MSE)", "full", "no_otm"),
    ("soft labels help (+LIA step)", "no_otm", "otg_hard"),
)
#: W_1 ground metrics reported for latents (POT ``ot.dist`` names): Euclidean and the paper's l1
OT_METRICS = {"w1_l2": "euclidean", "w1_l1": "cityblock"}


# ---- settings ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ToySettings:
    """The 2-D toy: a ring of ``modes`` Gaussians (``radius``, ``std``), a real batch of ``real`` points for the
    OT guidance, DDIM ``steps``; sample sizes ``ns`` and ``seeds`` of the coverage grid, ``show_n`` points in the
    scatter figure, and the OT weights ``sweep_weights`` of the beta_1 sweep (a sweep of the one setting).
    Shown in notebook 05 (05_ot_generative)."""

    modes: int
    radius: float
    std: float
    real: int
    steps: int
    ns: tuple[int, ...]
    seeds: tuple[int, ...]
    show_n: int
    sweep_weights: tuple[float, ...]

    def check(self) -> None:
        require(min(self.modes, self.real, self.steps, self.show_n) >= 1 and self.std > 0 and self.radius > 0,
                "toy sizes must be positive")
        require(bool(self.ns) and bool(self.seeds) and min(self.sweep_weights, default=0.0) >= 0,
                "toy ns and seeds must be non-empty and sweep weights >= 0")


@dataclass(frozen=True)
class OTGenStudySettings:
    """Notebook 05's settings for one profile: ``ipcs`` x ``seeds`` cells; ``ot_real_per_class`` held-out test
    images per class for the latent OT distance; the sample grids at (``grid_ipc``, ``grid_seed``); the pipeline's
    sizes (``PipelineOptions`` holding no method field, ``METHOD_KEYS``); the ablation ``rows`` (``ROWS``); the toy.
    Shown in notebook 05 (05_ot_generative)."""

    ipcs: tuple[int, ...]
    seeds: tuple[int, ...]
    ot_real_per_class: int
    grid_ipc: int
    grid_seed: int
    rows: tuple[str, ...]
    pipeline: PipelineOptions
    toy: ToySettings

    def check(self) -> None:
        require(bool(self.ipcs) and min(self.ipcs) >= 1 and bool(self.seeds), "ipcs and seeds must be non-empty")
        require(self.ot_real_per_class >= 1, "ot_real_per_class must be positive")
        require(self.grid_ipc in self.ipcs and self.grid_seed in self.seeds, "the grid cell must be a run cell")
        unknown = [r for r in self.rows if r not in ROWS]
        require(bool(self.rows) and not unknown, f"unknown ablation rows {unknown}; choose from {', '.join(ROWS)}")
        method = sorted(set(overrides(self.pipeline)) & METHOD_KEYS)
        require(not method, f"the study's pipeline sizes set method settings {method}: they come from the registry")


_ROWS_CPU = ("igd_hard", "otg_hard", "no_otm", "full", "igd_soft", "no_lia")

_SETTINGS: dict[str, dict[str, Any]] = {
    # tiny: every code path once (smoke generative model, 2 teachers, 2-epoch students)
    "smoke": {"ipcs": (1, 2), "seeds": (0,), "ot_real_per_class": 10, "grid_ipc": 2, "grid_seed": 0,
              "rows": _ROWS_CPU,
              "pipeline": {"generator": {"size": "smoke"}, "sampler": {"steps": 5, "real_batch": 32},
                           "teachers": {"num": 2, "archs": ("convnetW32", "mlp"), "epochs": 1, "max_images": 300,
                                        "seed": 0},
                           "student": {"arch": "convnetW32", "epochs": 2, "batch_size": 256, "amp": None},
                           "eval": {"max_test": 100, "amp": None}},
              "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 64, "steps": 10, "ns": (4, 8),
                      "seeds": (0, 1), "show_n": 8, "sweep_weights": (0.0, 0.2)}},
    # ~10 min on 2 uncontended cores: generative model ~200 s + 4 teachers ~75 s (once, cached); 3 seeds x
    # (IPC 10: 6 ConvNet-W32 students x 100 epochs, ~6-9 s each + 0.7 s test on 2000 images, sampling ~3 s;
    # IPC 1: ~1-2 s each) ~210 s; same-student random/DM baselines ~60 s; toy ~15 s. DM runs are notebook 00's
    "cpu": {"ipcs": (1, 10), "seeds": (0, 1, 2), "ot_real_per_class": 200, "grid_ipc": 10, "grid_seed": 0,
            "rows": _ROWS_CPU,
            "pipeline": {"generator": {"size": "cpu"},
                         "teachers": {"num": 4, "epochs": 1, "max_images": 10_000, "seed": 0},
                         "student": {"arch": "convnetW32", "epochs": 100, "batch_size": 256, "amp": "bf16"},
                         "eval": {"max_test": 2000, "amp": "bf16"}},
            "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 256, "steps": 50, "ns": (4, 8, 16, 32),
                    "seeds": (0, 1, 2, 3, 4), "show_n": 8, "sweep_weights": (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)}},
    # CIFAR-10 with the "paper" size of our latent model (the paper samples DiT-XL/2 + IGD; a wrapped DiT plugs
    # into the sampler, see geodd.generative.model); stronger teachers trained 30 epochs; ConvNet students,
    # 300 epochs (the paper's shorter budget), 3 runs, the full test set
    "paper": {"ipcs": (1, 10, 50), "seeds": (0, 1, 2), "ot_real_per_class": 1000, "grid_ipc": 10, "grid_seed": 0,
              "rows": ("plain_hard", *_ROWS_CPU),
              "pipeline": {"generator": {"size": "paper"},
                           "teachers": {"num": 5, "archs": ("convnet", "resnet18", "vgg11", "alexnet", "convnetW64"),
                                        "epochs": 30, "max_images": None, "batch_size": 256, "seed": 0},
                           "student": {"arch": "convnet", "epochs": 300, "batch_size": 256, "amp": None, "runs": 3},
                           "eval": {"max_test": None, "amp": None}},
              "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 512, "steps": 50, "ns": (4, 8, 16, 32, 64),
                      "seeds": tuple(range(10)), "show_n": 8, "sweep_weights": (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)}},
}
#: notebook 05's settings per profile
SETTINGS: dict[str, OTGenStudySettings] = settings_by_profile(OTGenStudySettings, _SETTINGS, "05")


def settings(profile: str | Profile) -> OTGenStudySettings:
    """Notebook 05's settings for ``profile`` (a name or a ``Profile``). Shown in notebook 05 (05_ot_generative)."""
    return for_profile(SETTINGS, profile, "05")


def row_options(s: OTGenStudySettings, row: str) -> PipelineOptions:
    """The ``PipelineOptions`` of ablation ``row``: the study's sizes, the registry variant's settings, then the
    row's one change. Shown in notebook 05 (05_ot_generative)."""
    if row not in ROWS:
        raise GeoddError(f"unknown ablation row {row!r}; choose from {', '.join(ROWS)}")
    r = ROWS[row]
    variant = {path: st.value for path, st in methods.get(r.variant).values().items()}
    return from_mapping(PipelineOptions, {**overrides(s.pipeline), **variant, **r.change}, what=f"row {row}")


def rows_options(s: OTGenStudySettings, rows: Iterable[str] | None = None) -> dict[str, PipelineOptions]:
    """``row_options`` of every row of ``s`` (or of ``rows``). Shown in notebook 05 (05_ot_generative)."""
    return {r: row_options(s, r) for r in (s.rows if rows is None else rows)}


def settings_table() -> pd.DataFrame:
    """The registry's settings of the two OT-gen variants, with provenance, and each row's one change.
    Shown in notebook 05 (05_ot_generative)."""
    table = methods.table([SAMPLING_ONLY, FULL])
    changes = pd.DataFrame([{"variant": f"row {name}", "setting": ", ".join(r.change) or "-",
                             "value": ", ".join(map(str, r.change.values())) or "-",
                             "source": f"ablation of {r.variant}"} for name, r in ROWS.items()])
    return pd.concat([table, changes], ignore_index=True)


def cache_dir() -> Path:
    """Where generative checkpoints, teachers and generated sets live: ``runs_root()/"generative"``.
    Shown in notebook 05 (05_ot_generative)."""
    return runs_root() / "generative"


def _data_id(ds: Any) -> list:
    return [ds.name, fingerprint({"images": ds.images, "labels": ds.labels})]


def cell_params(s: OTGenStudySettings, train: Any, test: Any, ipc: int, seed: int) -> dict[str, Any]:
    """The cache key of one (IPC, seed) cell: each row's options, OT reference size, the data by content.
    Shown in notebook 05 (05_ot_generative)."""
    return {"format": STUDY_FORMAT, "rows": {r: overrides(o) for r, o in rows_options(s).items()},
            "ot_real_per_class": s.ot_real_per_class, "train": _data_id(train), "test": _data_id(test),
            "ipc": int(ipc), "seed": int(seed)}


# ---- OT distances between generated and real latents ----------------------------------------------------------

def held_out_latents(model: Any, test: Any, per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised latents of ``per_class`` test images per class (seeded choice; all when fewer).
    Shown in notebook 05 (05_ot_generative)."""
    gen = torch.Generator().manual_seed(int(seed))
    labels = test.labels.cpu()
    picks = []
    for c in range(int(test.num_classes)):
        idx = torch.nonzero(labels == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    idx = torch.cat(picks)
    return encode_all(model, test.images[idx]), labels[idx]


def latent_ot(latents: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor, ref_labels: torch.Tensor,
              metric: str = "euclidean") -> dict[str, Any]:
    """Per-class exact OT cost W_1 = min_P <P, C>, C_ij = ||z_i - r_j|| (uniform marginals, POT's ``emd2``)
    between the generated latents of each class and the reference latents of that class; and its class mean.
    Shown in notebook 05 (05_ot_generative)."""
    labels, ref_labels = labels.cpu(), ref_labels.cpu()
    per_class = []
    for c in sorted(set(labels.tolist())):
        r = ref[(ref_labels == c).to(ref.device)]
        if len(r) == 0:
            raise GeoddError(f"no reference latents for class {c}")
        per_class.append(wasserstein(latents[(labels == c).to(latents.device)].detach(), r.detach(), metric=metric))
    return {"mean": float(sum(per_class) / len(per_class)), "per_class": per_class}


def latent_ot_table(latents: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], ref: torch.Tensor,
                    ref_labels: torch.Tensor) -> dict[str, dict[str, Any]]:
    """``latent_ot`` under every metric of ``OT_METRICS`` for each named latent set.
    Shown in notebook 05 (05_ot_generative)."""
    return {name: {key: latent_ot(latents[name], labels[name], ref, ref_labels, metric)
                   for key, metric in OT_METRICS.items()} for name in latents}


# ---- one cell of the ablation ---------------------------------------------------------------------------------

def _sets_path(key: str) -> Path:
    return cache_dir() / f"sets-{key}.pt"


def _entropies(res, rows: dict[str, PipelineOptions]) -> tuple[list, dict]:
    """Soft-label entropy against ensemble size on the OT-guided set, and the mean entropy of each soft-label set."""
    if not res.teachers:
        return [], {}
    soft_rows = [o for o in rows.values() if soft_key(o) is not None]
    variant = "otg" if "otg" in res.sets else next(iter(res.sets))
    entropy = entropy_vs_ensemble(res.teachers, res.sets[variant].images,
                                  temperature=soft_rows[0].teachers.temperature)
    return entropy, {k: float(label_entropy(v).mean()) for k, v in res.soft.items()}


def _compute_cell(s: OTGenStudySettings, train: Any, test: Any, ipc: int, seed: int, key: str, device,
                  progress: bool) -> dict:
    rows = rows_options(s)
    res = run_pipeline(train, test, ipc, rows, seed=seed, cache_dir=cache_dir(), device=device, progress=progress)
    t0 = time.perf_counter()
    ref, ref_labels = held_out_latents(res.model, test, s.ot_real_per_class, seed=seed)
    from ..evaluate import random_subset
    real_x, real_y = random_subset(train, ipc, seed=seed)
    lat = {v: st.latents for v, st in res.sets.items()}
    lab = {v: st.labels for v, st in res.sets.items()}
    lat["real"], lab["real"] = encode_all(res.model, real_x), real_y
    ot = latent_ot_table(lat, lab, ref, ref_labels)
    timings = {**res.timings, "ot_distance": time.perf_counter() - t0}
    entropy, soft_entropy = _entropies(res, rows)

    gen_log, teach_log = res.logs.get("generative", {}), res.logs.get("teachers", {})
    trained = gen_log.get("trained_seconds") if gen_log.get("cached") else gen_log.get("seconds")
    save_tensors(_sets_path(key), {
        "format": SETS_FORMAT,
        "sets": {v: {"images": st.images.cpu(), "labels": st.labels.cpu(), "latents": st.latents.cpu()}
                 for v, st in res.sets.items()},
        "soft": {k: v.cpu() for k, v in res.soft.items()}})
    return {"ipc": int(ipc), "seed": int(seed), "rows": res.rows, "ensemble": res.ensemble, "timings": timings,
            "ot": ot, "entropy": entropy, "soft_entropy": soft_entropy,
            "generative_train_s": float(sum((trained or {}).values())),
            "generative_cached": bool(gen_log.get("cached", False)),
            "teachers_train_s": float(teach_log.get("trained_seconds" if teach_log.get("cached") else "seconds",
                                                    float("nan"))),
            "diff_loss": gen_log.get("diff_loss", []), "sets_file": _sets_path(key).name}


def run_cell(s: OTGenStudySettings, train: Any, test: Any, ipc: int, seed: int, *, device=None,
             progress: bool = False) -> dict:
    """One (IPC, seed) cell of the ablation, cached with ``memo`` (a rerun is instant). See the module docstring.
    Shown in notebook 05 (05_ot_generative)."""
    params = cell_params(s, train, test, ipc, seed)
    key = fingerprint(params)
    return memo(CELL_MEMO, params, lambda: _compute_cell(s, train, test, ipc, seed, key, device, progress))


def run_cells(s: OTGenStudySettings, train: Any, test: Any, ipcs: Iterable[int] | None = None,
              seeds: Iterable[int] | None = None, *, device=None, progress: bool = False) -> list[dict]:
    """``run_cell`` over every (IPC, seed); IPCs and seeds default to the settings'. Shown in notebook 05."""
    ipcs = s.ipcs if ipcs is None else ipcs
    seeds = s.seeds if seeds is None else seeds
    return [run_cell(s, train, test, ipc, seed, device=device, progress=progress) for ipc in ipcs for seed in seeds]


def generated_sets(s: OTGenStudySettings, train: Any, test: Any, ipc: int, seed: int, *,
                   device=None) -> dict[str, dict]:
    """The generated sets of a cell (``{guidance: {"images", "labels", "latents"}}``) from the cache; when the
    file is gone, sampling (only) is redone with the cached generative model and saved again. Shown in
    notebook 05 (05_ot_generative)."""
    key = fingerprint(cell_params(s, train, test, ipc, seed))
    run_cell(s, train, test, ipc, seed, device=device)
    path = _sets_path(key)
    if path.exists():
        return load_tensors(path, SETS_FORMAT)["sets"]
    device = torch.device(device) if device is not None else default_device()
    model, _ = train_or_load(make_config(s.pipeline.generator.size, train), train, cache_dir(), device=device)
    sets = {}
    for o in rows_options(s).values():
        if sets_key(o) not in sets:
            st = sample_set(model, train.images, train.labels, ipc, o.sampler.sampler_config(), seed=seed)
            sets[sets_key(o)] = {"images": st.images.cpu(), "labels": st.labels.cpu(), "latents": st.latents.cpu()}
    save_tensors(path, {"format": SETS_FORMAT, "sets": sets, "soft": {}})
    return sets


# ---- tables -----------------------------------------------------------------------------------------------------

def accuracy_table(cells: Sequence[dict]) -> pd.DataFrame:
    """One row per (row, IPC, seed): ``row``, ``title``, ``method``, ``ipc``, ``seed``, ``acc`` (%), ``seconds``.
    Shown in notebook 05 (05_ot_generative)."""
    out = []
    for cell in cells:
        for name, r in cell["rows"].items():
            out.append({"row": name, "title": ROWS[name].title if name in ROWS else name,
                        "method": METHOD_NAMES.get(name, name), "ipc": cell["ipc"], "seed": cell["seed"],
                        "acc": 100 * r["accuracy"], "seconds": r["seconds"]})
    return pd.DataFrame(out)


def ablation_rows(s: OTGenStudySettings, train: Any, test: Any, ipcs: Iterable[int] | None = None,
                  seeds: Iterable[int] | None = None, rows: Sequence[str] | None = ("igd_hard", "full"), *,
                  device=None, progress: bool = False) -> pd.DataFrame:
    """Accuracy (%) per (method, IPC, seed) from notebook 05's cache, for notebook 06: columns ``method``, ``ipc``,
    ``seed``, ``acc``, ``row``. Default rows: "OT-gen (sampling only)" and "OT-gen (full)"; ``rows=None``: all.
    Pass notebook 05's settings (``settings(profile)``) and data, so its cells are reused (computed if absent).
    Shown in notebooks 05 (05_ot_generative) and 06 (06_results)."""
    table = accuracy_table(run_cells(s, train, test, ipcs, seeds, device=device, progress=progress))
    if rows is not None:
        unknown = set(rows) - set(table["row"])
        if unknown:
            raise GeoddError(f"rows {sorted(unknown)} are not among this profile's ablation rows {list(s.rows)}")
        table = table[table["row"].isin(rows)]
    return table[["method", "ipc", "seed", "acc", "row"]].reset_index(drop=True)


def _claims(table: pd.DataFrame, claim: str | Sequence[str], unit: str) -> pd.DataFrame:
    """A ``stats.compare_table`` result with the claim and the unit of its differences in front."""
    front = pd.DataFrame({"claim": claim, "unit": unit}, index=table.index)
    out = pd.concat([front, table], axis=1)
    out.attrs.update(table.attrs)
    return out


def _stack(tables: list[pd.DataFrame]) -> pd.DataFrame:
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["claim", "unit", *stats.COLUMNS])
    out.attrs.update(tables[0].attrs if tables else {"level": 0.95, "scale": 1})
    return out


def claim_table(acc: pd.DataFrame, pairs: Sequence[tuple[str, str, str]] = CLAIMS) -> pd.DataFrame:
    """The paper's claims on the ablation (``accuracy_table``: column ``row``), one line per (claim, IPC):
    acc(with) - acc(without) paired by seed (same seed: same generated images where shared, same student
    initialisation, same test subset) under ``geodd.stats``' one rule, alternative "greater". Columns claim,
    unit, then ``stats.compare_table``'s (ipc, comparison, n, mean diff, CI, p, MDE, verdict; percentage points).
    Pairs whose rows are absent are skipped. Shown in notebook 05 (05_ot_generative)."""
    present = set(acc["row"])
    return _stack([_claims(stats.compare_table(acc, by="ipc", score="acc", label="row", scale=1,
                                               pairs=[(with_row, without, "greater")]), claim, "pp")
                   for claim, with_row, without in pairs if {with_row, without} <= present])


def low_ipc_table(acc: pd.DataFrame, pairs: Sequence[tuple[str, str, str]] = CLAIMS) -> pd.DataFrame:
    """The paper's "larger gains at low IPC" under the same rule: per claim, the seed's gain
    acc(with) - acc(without) at the smallest IPC against its gain at each larger IPC, paired by seed (a seed
    fixes the student initialisation and the test subset at every IPC), alternative "greater". Empty when the
    profile has one IPC. Columns as ``claim_table`` with ``by`` = claim. Shown in notebook 05 (05_ot_generative)."""
    wide = acc.pivot_table(index=["ipc", "seed"], columns="row", values="acc")
    ipcs = sorted(set(acc["ipc"]))
    gains = [pd.DataFrame({"claim": claim, "at": [f"gain at IPC {i}" for i in d.index.get_level_values("ipc")],
                           "seed": d.index.get_level_values("seed"), "gain": d.to_numpy()})
             for claim, with_row, without in pairs if with_row in wide and without in wide
             for d in [(wide[with_row] - wide[without]).dropna()]]
    if len(ipcs) < 2 or not gains:
        return _stack([])
    frame = pd.concat(gains, ignore_index=True)
    table = stats.compare_table(frame, by="claim", score="gain", label="at", scale=1,
                                pairs=[(f"gain at IPC {ipcs[0]}", f"gain at IPC {i}", "greater") for i in ipcs[1:]])
    order = {claim: k for k, (claim, _, _) in enumerate(pairs)}
    table = table.sort_values("claim", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    return _claims(table.drop(columns="claim"), [f"{c}: gain largest at the lowest IPC" for c in table["claim"]],
                   "pp")


def ot_claim_table(ot: pd.DataFrame) -> pd.DataFrame:
    """OTG's geometric claim on ``ot_distance_table``: the OT-guided set's class-mean W_1 to held-out real latents
    is below the IGD-style set's, per IPC and ground metric (``OT_METRICS``), paired by seed (both sets start
    from the same noise), alternative "less"; the same rule and columns as ``claim_table`` (units of W_1).
    Shown in notebook 05 (05_ot_generative)."""
    return _stack([_claims(stats.compare_table(ot, by="ipc", score=metric, label="variant", scale=1,
                                               pairs=[("otg", "igd", "less")]),
                           f"OTG brings the set closer to real latents (W1, {metric.split('_')[-1]} cost)", "")
                   for metric in OT_METRICS if metric in ot])


def lia_entropy_table(entropy: pd.DataFrame) -> pd.DataFrame:
    """LIA's premise on ``entropy_table``: the soft labels of the ensemble LIA picks are sharper (lower mean
    entropy) than those of the whole ensemble, per IPC, paired by seed (same generated images), alternative
    "less"; the same rule and columns as ``claim_table`` (nats). Where LIA picks the whole ensemble the two are
    one set and the verdict is "inconclusive". Shown in notebook 05 (05_ot_generative)."""
    rows = []
    for (ipc, seed), g in entropy.groupby(["ipc", "seed"], sort=True):
        rows += [{"ipc": ipc, "seed": seed, "labels": "LIA's teachers",
                  "entropy": float(g.loc[g["lia"], "entropy"].iloc[0])},
                 {"ipc": ipc, "seed": seed, "labels": "all teachers",
                  "entropy": float(g.loc[g["size"].idxmax(), "entropy"])}]
    if not rows:
        return _stack([])
    table = stats.compare_table(pd.DataFrame(rows), by="ipc", score="entropy", label="labels", scale=1,
                                pairs=[("LIA's teachers", "all teachers", "less")])
    return _stack([_claims(table, "LIA's smaller ensemble gives sharper labels", "nats")])


def baseline_table(compare: pd.DataFrame, method: str = FULL) -> pd.DataFrame:
    """``method`` (default "OT-gen (full)") against every "(same student)" baseline of ``compare`` (columns method,
    ipc, seed, acc: ``ablation_rows`` plus ``same_student_baselines``), paired by seed (same student initialisation
    and test subset), alternative "greater"; the same rule and columns as ``claim_table``.
    Shown in notebook 05 (05_ot_generative)."""
    bases = [m for m in dict.fromkeys(compare["method"]) if str(m).endswith("(same student)")]
    return _stack([_claims(stats.compare_table(compare, by="ipc", score="acc", label="method", scale=1,
                                               pairs=[(method, b, "greater")]), f"{method} beats {b}", "pp")
                   for b in bases])


def toy_claim_table(grid: pd.DataFrame) -> pd.DataFrame:
    """The toy's OT guidance against plain DDIM (``toy_grid``: weight 0) per sample size (column ``samples``, the
    grid's n), paired by seed (same starting noise and real batch): more modes covered (alternative "greater")
    and a smaller W_1 to the data ("less"); the same rule and columns as ``claim_table``.
    Shown in notebook 05 (05_ot_generative)."""
    frame = grid.rename(columns={"n": "samples"})
    frame["sampler"] = [f"β1 = {w:g}" if w > 0 else "plain DDIM" for w in frame["ot_weight"]]
    guided = [f"β1 = {w:g}" for w in sorted(set(grid["ot_weight"])) if w > 0]
    return _stack([_claims(stats.compare_table(frame, by="samples", score=score, label="sampler", scale=1,
                                               pairs=[(g, "plain DDIM", alt) for g in guided]), claim, "")
                   for score, alt, claim in (("modes_covered", "greater", "OT guidance covers more modes"),
                                             ("w1", "less", "OT guidance lowers W1 to the data"))])


def claims_view(table: pd.DataFrame) -> pd.DataFrame:
    """A claims table for display and ``plots.save_table``: ``stats.format_table`` without the unit column.
    Render it with ``.to_markdown(index=False, disable_numparse=True)``. Shown in notebook 05 (05_ot_generative)."""
    return stats.format_table(table).drop(columns=["unit"])


def claim_sentences(table: pd.DataFrame) -> list[str]:
    """One Markdown line per row of a claims table: the claim in bold, where (IPC or sample size), then
    ``stats.verdict_sentence`` for that row (ablation rows by their ``METHOD_NAMES``, sampled sets by their
    ``SET_NAMES``), so that prose states only what the table holds. Shown in notebook 05 (05_ot_generative)."""
    level = float(table.attrs.get("level", 0.95))
    names = {**SET_NAMES, **METHOD_NAMES}
    out = []
    for _, row in table.iterrows():
        a, b = (names.get(x, x) for x in row["comparison"].split(" − "))
        where = (f" (IPC {row['ipc']})" if "ipc" in row.index
                 else f" ({row['samples']} samples)" if "samples" in row.index else "")
        head = f"- **{row['claim']}**{where}"
        out.append(f"{head}: {stats.verdict_sentence(row, a, b, unit=row['unit'], level=level)}")
    return out


def ot_distance_table(cells: Sequence[dict]) -> pd.DataFrame:
    """One row per (variant, IPC, seed): the class-mean W_1 of its latents to held-out real latents (both metrics);
    variant "real" is a random real subset of the same size (the reference a real sample of that size reaches).
    Shown in notebook 05 (05_ot_generative)."""
    out = []
    for cell in cells:
        for variant, d in cell["ot"].items():
            out.append({"variant": variant, "ipc": cell["ipc"], "seed": cell["seed"],
                        **{k: d[k]["mean"] for k in OT_METRICS if k in d}})
    return pd.DataFrame(out)


def entropy_table(cells: Sequence[dict]) -> pd.DataFrame:
    """Soft-label entropy against ensemble size per (IPC, seed), with the size LIA picks marked (``lia``).
    Shown in notebook 05 (05_ot_generative)."""
    out = []
    for cell in cells:
        for r in cell["entropy"]:
            out.append({"ipc": cell["ipc"], "seed": cell["seed"], **r,
                        "lia": r["size"] == cell["ensemble"].get("lia")})
    return pd.DataFrame(out)


def timing_table(cells: Sequence[dict]) -> pd.DataFrame:
    """Seconds per stage: one-off training of the generative model and the teachers (as recorded when they were
    trained), then the median over seeds, per IPC, of sampling per variant, relabelling, OT distances and the
    student of each row. Shown in notebook 05 (05_ot_generative)."""
    out = []
    first = cells[0] if cells else {}
    if first:
        out.append({"stage": "generative model training (once)", "ipc": "all", "seconds": first["generative_train_s"]})
        out.append({"stage": "teacher ensemble training (once)", "ipc": "all", "seconds": first["teachers_train_s"]})
    per: dict[tuple[str, int], list[float]] = {}
    for cell in cells:
        for name, sec in cell["timings"].items():
            if name in ("generative_model", "teachers"):
                continue
            label = name.replace("sampling_", "sampling: ").replace("student_", "student: ")
            per.setdefault((label, cell["ipc"]), []).append(sec)
    for (label, ipc), secs in per.items():
        out.append({"stage": label, "ipc": ipc, "seconds": float(pd.Series(secs).median())})
    return pd.DataFrame(out)


# ---- the same student for other synthetic sets ----------------------------------------------------------------

def student_accuracy(s: OTGenStudySettings, images: torch.Tensor, labels: torch.Tensor, test: Any, seed: int, *,
                     device=None, progress: bool = False) -> float:
    """Test accuracy of the pipeline's hard-label student (``s.pipeline.student``, run 0, seed ``seed * 1000``)
    trained on ``images``/``labels``, on the same test subset as the pipeline's cell ``seed``.
    Shown in notebook 05 (05_ot_generative)."""
    from ..evaluate import held_out_accuracy
    st, ev = s.pipeline.student, s.pipeline.eval
    device = torch.device(device) if device is not None else default_device()
    net, _ = train_student(images.to(device), labels.to(device), None, num_classes=int(test.num_classes),
                           seed=int(seed) * 1000, device=device, progress=progress, **st.training())
    sub = held_out_subset(test, ev.max_test, seed).to(device)
    acc, _ = held_out_accuracy(net, sub, batch_size=ev.batch_size, amp=ev.amp)
    return float(acc)


def same_student_baselines(s: OTGenStudySettings, train: Any, test: Any, dm_runs: pd.DataFrame | None = None,
                           ipcs: Iterable[int] | None = None, seeds: Iterable[int] | None = None, *,
                           device=None) -> pd.DataFrame:
    """Random real subsets (and the DM synthetic sets in ``dm_runs``, a ``geodd.studies.common.run_grid`` frame)
    evaluated by the generated sets' student protocol; cached. Columns ``method``, ``ipc``, ``seed``, ``acc`` (%).
    Shown in notebook 05 (05_ot_generative)."""
    from ..evaluate import random_subset
    from ..synset import SynSet
    base = {"format": STUDY_FORMAT, "student": overrides(s.pipeline.student), "eval": overrides(s.pipeline.eval),
            "test": _data_id(test)}
    out = []
    train_id = _data_id(train)
    for ipc in (s.ipcs if ipcs is None else ipcs):
        for seed in (s.seeds if seeds is None else seeds):
            params = {**base, "what": "random", "train": train_id, "ipc": int(ipc), "seed": int(seed)}

            def rand(ipc=ipc, seed=seed):
                x, y = random_subset(train, ipc, seed=seed)
                return {"acc": student_accuracy(s, x, y, test, seed, device=device)}

            out.append({"method": "Random real (same student)", "ipc": ipc, "seed": seed,
                        "acc": 100 * memo(STUDENT_MEMO, params, rand)["acc"]})
    for r in (dm_runs.itertuples() if dm_runs is not None else ()):
        x, y = SynSet.load(Path(r.run_dir) / "synset.pt").training_set()
        params = {**base, "what": "synset", "set": fingerprint({"images": x, "labels": y}), "seed": int(r.seed)}
        acc = memo(STUDENT_MEMO, params,
                   lambda x=x, y=y, seed=int(r.seed): {"acc": student_accuracy(s, x, y, test, seed, device=device)})
        out.append({"method": f"{r.method} (same student)", "ipc": int(r.ipc), "seed": int(r.seed),
                    "acc": 100 * acc["acc"]})
    return pd.DataFrame(out)


# ---- the 2-D toy --------------------------------------------------------------------------------------------------

def toy_guidance() -> dict[str, float]:
    """The OT guidance of the toy: "OT-gen (full)"'s weight beta_1 and regulariser lambda_1 (the registry's).
    Shown in notebook 05 (05_ot_generative)."""
    v = methods.get(FULL).values()
    return {"ot_weight": float(v["sampler.ot_weight"].value), "ot_eps": float(v["sampler.ot_eps"].value)}


def toy_mixture(toy: ToySettings):
    """The ring mixture of the toy settings (``modes``, ``radius``, ``std``). Shown in notebook 05."""
    return ring_mixture(int(toy.modes), radius=float(toy.radius), std=float(toy.std))


def toy_real(toy: ToySettings, seed: int) -> torch.Tensor:
    """The "real batch" the OT guidance sees: ``toy.real`` mixture points drawn with ``seed``.
    Shown in notebook 05 (05_ot_generative)."""
    real, _ = toy_mixture(toy).sample(int(toy.real), torch.Generator().manual_seed(10_000 + int(seed)))
    return real


def toy_pair(toy: ToySettings, n: int, seed: int = 0, ot_weight: float | None = None):
    """(real batch, plain DDIM result, OT-guided result) for ``n`` samples: the toy's scatter figure; the OT
    weight is the registry's unless a sweep passes ``ot_weight``. Shown in notebook 05 (05_ot_generative)."""
    g = toy_guidance()
    mix, real = toy_mixture(toy), toy_real(toy, seed)
    kw = dict(real=real, steps=int(toy.steps), seed=seed, ot_eps=g["ot_eps"])
    weight = g["ot_weight"] if ot_weight is None else float(ot_weight)
    return real, sample_toy(mix, n, **kw), sample_toy(mix, n, ot_weight=weight, **kw)


def toy_grid(toy: ToySettings, ns: Sequence[int], weights: Sequence[float], seeds: Sequence[int]) -> pd.DataFrame:
    """Modes covered and W_1 (to a fresh mixture sample) for every (n, OT weight beta_1, seed); weight 0 is
    plain DDIM; lambda_1 is the registry's. Cached with ``memo``. Shown in notebook 05 (05_ot_generative)."""
    ot_eps = toy_guidance()["ot_eps"]
    shape = {k: getattr(toy, k) for k in ("modes", "radius", "std", "real", "steps")}
    params = {"format": STUDY_FORMAT, "toy": shape, "ot_eps": ot_eps, "ns": list(ns), "weights": list(weights),
              "seeds": list(seeds)}

    def compute():
        mix, rows = toy_mixture(toy), []
        for seed in seeds:
            real = toy_real(toy, seed)
            for n in ns:
                for w in weights:
                    r = sample_toy(mix, int(n), real=real, ot_weight=float(w), ot_eps=ot_eps, steps=int(toy.steps),
                                   seed=int(seed))
                    rows.append({"n": int(n), "ot_weight": float(w), "seed": int(seed),
                                 "modes_covered": r.modes_covered, "w1": r.w1})
        return rows

    return pd.DataFrame(memo(TOY_MEMO, params, compute))


__all__ = ["STUDY_FORMAT", "SETS_FORMAT", "CELL_MEMO", "STUDENT_MEMO", "TOY_MEMO", "SAMPLING_ONLY", "FULL", "Row",
           "ROWS", "CUMULATIVE", "LEAVE_ONE_OUT", "METHOD_NAMES", "SET_NAMES", "CLAIMS", "OT_METRICS", "ToySettings",
           "OTGenStudySettings", "SETTINGS", "settings", "row_options", "rows_options", "settings_table", "cache_dir",
           "cell_params", "held_out_latents", "latent_ot", "latent_ot_table", "run_cell", "run_cells",
           "generated_sets", "accuracy_table", "ablation_rows", "claim_table", "low_ipc_table", "ot_claim_table",
           "lia_entropy_table", "baseline_table", "toy_claim_table", "claims_view", "claim_sentences",
           "ot_distance_table", "entropy_table", "timing_table", "student_accuracy", "same_student_baselines",
           "toy_guidance", "toy_mixture", "toy_real", "toy_pair", "toy_grid"]
