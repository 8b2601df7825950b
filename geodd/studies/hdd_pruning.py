"""Notebook 02 (02_hdd_pruning): HDD, hyperbolic dataset distillation, and pruning by hyperbolic level.

Everything notebook ``02_hdd_pruning`` shows is computed here; the notebook only plots and prints. HDD
("Hyperbolic Dataset Distillation", Li et al., NeurIPS 2025; ``docs/methods/hdd.md``) lifts ConvNet features
onto the Lorentz hyperboloid, matches the closed-form class centroids by ``lam * d_L`` and claims (1) pruning
the real data to ~20% by hyperbolic level retains accuracy (the paper's pruning section and Fig. 3;
``docs/methods/hdd.md`` "Pruning"), (2) the centroid weights samples by ``w(d) = sqrt|K| d / sinh(sqrt|K| d)``
and (3) synthetic samples gravitate towards the root (the paper's Fig. 4). The pieces:

- the notebook's typed settings (``HDDStudySettings``, one per profile: ``settings(profile)``): sizes, snapshot
  points, the pruning fractions, the ablation values and the probe sizes. Method settings (k, lam, lr_img, IDM's
  CE weight) are NOT here: every row is a ``geodd.methods`` registry variant (DM, DM+HDD, IDM, IDM+HDD) and an
  ablation overrides only the option it varies;
- experiment grids on the run store (``geodd.runs``): the method table, the accuracy-against-iteration curves
  under pruning (snapshots of one run), one-axis sweeps of the HDD options;
- a budgeted evaluation (``evaluate_set``): a fixed number of SGD steps rather than epochs, on a per-class test
  subset, memoised (cache ``MEMO_EVAL``) by the content of the image set, so identical sets are evaluated once.
  Reconstruction: our choice (the published protocol trains 1000 epochs; the ``paper`` profile does so;
  ``docs/methods/evaluation.md``);
- geometry probes: hyperbolic radii of features under the release clamp and under the default rescale, the
  ``k``/``lam`` equivalence, the hierarchical-weighting probe (``geometry.centroid_pull``) and its
  leave-one-out analogue on real features, a Poincare-disk view of features and centroids, the images pruning
  keeps and drops;
- claim tables: every verdict comes from ``geodd.stats`` (the paired t-interval over seeds, with n, mean
  difference, CI, p and MDE), the pruning claim as a non-inferiority claim with the margin ``prune_margin``;
  ``claim_sentences`` writes the prose from the table rows. Published numbers come from the one table,
  ``geodd.studies.published``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from .. import GeoddError, default_device, stats
from ..data import Dataset
from ..evaluate import BATCH_TRAIN, evaluate_images
from ..geometry import (centroid_pull, claimed_weight, lorentz, lorentz_centroid, lorentz_dist0,
                        lorentz_distance)
from ..io import fingerprint
from ..matchers.hdd import DEFAULT_LAM, DEFAULT_TARGET_RADIUS, feature_factor, hdd_loss, lift_features
from ..nets import make_network
from ..options import from_mapping, require
from ..precision import concrete
from ..profiles import Profile
from ..prune import embed_dataset, hyperbolic_levels
from ..runs import cached_distill, memo
from ..synset import SynSet
from .common import Arm, for_profile
from .published import published

#: the notebook, as every docstring names it
NOTEBOOK = "02_hdd_pruning"
#: the four rows of the method table, in order: registry variant names (``geodd.methods``)
TABLE_LABELS = ("DM", "DM+HDD", "IDM", "IDM+HDD")
#: the registry variant whose matcher options the pruning curve and the sweeps start from
HDD_LABEL = "DM+HDD"
#: HDD matcher options an ablation may vary
SWEEPABLE = ("lam", "k", "target_radius")
#: lower bound on a 2-D direction's norm before normalising it (Poincare view)
DIRECTION_EPS = 1e-12
#: cache (``runs.memo``) name of the budgeted evaluations
MEMO_EVAL = "nb02-eval"

#: ``geodd.studies.published`` keys of the HDD paper's numbers. The paper's DM/IDM rows are the HDD authors'
#: own re-runs, not the original papers' (those are ``published("dm" | "idm", ...)``), hence their own key.
HDD_RERUN_SUFFIX = "@hdd-paper"
#: the HDD paper's pruning ablation, as printed (probably CIFAR-10 IPC 10; whether "ratio" is the fraction
#: removed or kept is ambiguous, ``docs/methods/hdd.md`` "Pruning"): its printed ratios, dataset and IPC
PRUNING_RATIOS = (0, 20, 40, 80)
PRUNING_DATASET, PRUNING_IPC = "cifar10", 10


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HDDSweeps:
    """One-axis ablations around the DM+HDD row: the values of one HDD matcher option each (empty: not swept).
    Shown in notebook 02 (02_hdd_pruning)."""

    lam: tuple[float, ...] = ()
    k: tuple[float, ...] = ()
    target_radius: tuple[float, ...] = ()

    def items(self) -> list[tuple[str, tuple[float, ...]]]:
        """(option, values) of every swept option, in field order. Shown in notebook 02 (02_hdd_pruning)."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)]

    def check(self) -> None:
        for name, values in self.items():
            require(all(v > 0 for v in values), f"sweep values of {name!r} must be positive, got {values}")


@dataclass(frozen=True)
class ReleaseSizes:
    """Sizes of one registry variant (at one IPC, or every IPC when ``ipc`` is None) where the release's command
    differs from the profile's (the ``paper`` profile only); None keeps the profile's. Shown in notebook 02
    (02_hdd_pruning)."""

    variant: str
    ipc: int | None = None
    iterations: int | None = None
    batch_real: int | None = None
    net_generate_interval: int | None = None

    def overrides(self) -> dict[str, Any]:
        """``DistillConfig`` keyword overrides (sizes only). Shown in notebook 02 (02_hdd_pruning)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("iterations", "batch_real")
                               if getattr(self, k) is not None}
        if self.net_generate_interval is not None:
            out["idm"] = {"net_generate_interval": self.net_generate_interval}
        return out


@dataclass(frozen=True)
class HDDStudySettings:
    """Notebook 02's settings at one profile: sizes, snapshot points, pruning fractions, ablation values and probe
    sizes. ``None`` sizes keep the profile's. No method settings: those are the registry's (``geodd.methods``).
    ``prune_margin`` (accuracy points) is the non-inferiority margin of the pruning claim: "keeping the smallest
    fraction loses at most this much" (reconstruction: our choice; the paper gives no number).
    Shown in notebook 02 (02_hdd_pruning)."""

    ipcs: tuple[int, ...]
    seeds: tuple[int, ...]
    snapshots: tuple[int, ...]
    keeps: tuple[float, ...]
    curve_ipc: int
    probe_per_class: int
    k_values: tuple[float, ...]
    pull_radii: tuple[float, ...]
    extremes_show: int
    extremes_pool: int
    sweeps: HDDSweeps = field(default_factory=HDDSweeps)
    curve_seed: int = 0
    prune_margin: float = 1.0
    train_per_class: int | None = None
    test_per_class: int | None = None
    iterations: int | None = None
    inner_steps: int | None = None
    batch_real: int | None = None
    eval_steps: int | None = None      # None: the profile's epochs
    eval_runs: int | None = None
    release_sizes: tuple[ReleaseSizes, ...] = ()

    def check(self) -> None:
        require(self.curve_ipc in self.ipcs, f"curve_ipc {self.curve_ipc} must be one of ipcs {self.ipcs}")
        require(1.0 in self.keeps and all(0 < k <= 1 for k in self.keeps),
                f"keeps must lie in (0, 1] and include 1.0, got {self.keeps}")
        require(1 <= self.extremes_show <= self.extremes_pool,
                f"need 1 <= extremes_show <= extremes_pool, got {self.extremes_show}, {self.extremes_pool}")
        require(all(s >= 0 for s in self.snapshots), f"snapshots must be non-negative, got {self.snapshots}")
        require(all(isinstance(r, ReleaseSizes) for r in self.release_sizes), "release_sizes must be ReleaseSizes")
        require(self.prune_margin >= 0, f"prune_margin must be >= 0, got {self.prune_margin}")

    def sizes(self, variant: str, ipc: int) -> dict[str, Any]:
        """The release's size overrides of ``variant`` at ``ipc`` (empty below the ``paper`` profile)."""
        out: dict[str, Any] = {}
        for r in self.release_sizes:
            if r.variant == variant and r.ipc in (None, ipc):
                for key, value in r.overrides().items():
                    out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
        return out


def _settings(**values: Any) -> HDDStudySettings:
    return from_mapping(HDDStudySettings, values, what="notebook 02 settings")


#: the release's per-IPC sizes for CIFAR-10 (IDM's and HDD's IDM-HDD/command.txt; IDM_cifar10.py's default
#: 10000 iterations for IDM+HDD)
_PAPER_RELEASE_SIZES = (
    ReleaseSizes("IDM", ipc=1, batch_real=5000, net_generate_interval=5),
    ReleaseSizes("IDM+HDD", iterations=10000),
    ReleaseSizes("IDM+HDD", ipc=1, batch_real=5000, net_generate_interval=5),
)

#: notebook 02's settings per profile
SETTINGS: dict[str, HDDStudySettings] = {
    # every code path once, at the smoke profile's 60 / 20 images per class
    "smoke": _settings(iterations=2, inner_steps=1, batch_real=8, snapshots=(0, 2), eval_steps=2, eval_runs=1,
                       ipcs=(1,), seeds=(0,), keeps=(1.0, 0.2), curve_ipc=1, curve_seed=0,
                       sweeps={"lam": (20.0, 5.0), "target_radius": (2.0,)}, probe_per_class=10,
                       k_values=(0.5, 1.0, 4.0), pull_radii=(0.5, 2.0, 6.0), extremes_show=3, extremes_pool=10),
    # about 15 min on 2 uncontended cores; estimate in notebooks/02 and benchmarks/README.md
    "cpu": _settings(train_per_class=500, test_per_class=200, iterations=20, inner_steps=4, batch_real=64,
                     snapshots=(0, 10, 20), eval_steps=50, eval_runs=1, ipcs=(1, 10), seeds=(0, 1, 2),
                     keeps=(1.0, 0.8, 0.6, 0.4, 0.2), curve_ipc=10, curve_seed=0,
                     sweeps={"lam": (5.0, 20.0, 80.0), "target_radius": (0.5, 2.0, 6.0)}, probe_per_class=50,
                     k_values=(0.25, 0.5, 1.0, 2.4, 4.0), pull_radii=(0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0),
                     extremes_show=6, extremes_pool=100),
    # the profile's sizes (20k iterations, batch_real 256, 1000 epochs, 5 evaluation nets) and the release's
    # per-IPC sizes
    "paper": _settings(snapshots=tuple(range(0, 20001, 2000)), ipcs=(1, 10), seeds=(0, 1, 2),
                       keeps=(1.0, 0.8, 0.6, 0.4, 0.2), curve_ipc=10, curve_seed=0,
                       sweeps={"lam": (5.0, 20.0, 80.0), "k": (1.0, 8.0, 32.0)}, probe_per_class=100,
                       k_values=(0.25, 0.5, 1.0, 2.4, 4.0, 8.0),
                       pull_radii=(0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0), extremes_show=8,
                       extremes_pool=500, release_sizes=_PAPER_RELEASE_SIZES),
}


def settings(profile: str | Profile) -> HDDStudySettings:
    """Notebook 02's settings for a profile (or its name). Shown in notebook 02 (02_hdd_pruning)."""
    return for_profile(SETTINGS, profile, "02")


def study_profile(p: Profile, s: HDDStudySettings | None = None) -> Profile:
    """``p`` with notebook 02's sizes (iterations, inner steps, real batch, evaluation runs, seeds, the per-class
    training and test subsets). Shown in notebook 02 (02_hdd_pruning)."""
    s = s or settings(p)
    return p.resized(train_per_class=s.train_per_class, test_per_class=s.test_per_class, iterations=s.iterations,
                     inner_steps=s.inner_steps, batch_real=s.batch_real, eval_runs=s.eval_runs, seeds=s.seeds)


def study_data(p: Profile, s: HDDStudySettings | None = None) -> tuple[Dataset, Dataset]:
    """The notebook's training and test sets (``study_profile``'s; per-class subsets with seed 0). Shown in
    notebook 02 (02_hdd_pruning)."""
    sp = study_profile(p, s)
    return sp.train_data(), sp.eval_data()


# --------------------------------------------------------------------------------------------------
# Arms: registry variants, the release's sizes, one ablation at a time
# --------------------------------------------------------------------------------------------------

def arm(s: HDDStudySettings, variant: str, ipc: int, **ablation: Any) -> Arm:
    """The registry ``variant`` at ``ipc`` under notebook 02's sizes, with at most one ablation (``keep=0.2`` or
    ``matcher={"lam": 80.0}``); the label is the variant's name. Shown in notebook 02 (02_hdd_pruning)."""
    if len(ablation) > 1 or len(ablation.get("matcher", {})) > 1:
        raise GeoddError(f"an ablation varies one setting, got {ablation}")
    for key in ablation.get("matcher", {}):
        if key not in SWEEPABLE:
            raise GeoddError(f"cannot vary HDD option {key!r}; choose from {', '.join(SWEEPABLE)}")
    overrides = s.sizes(variant, ipc)
    for key, value in ablation.items():
        overrides[key] = {**overrides.get(key, {}), **value} if isinstance(value, dict) else value
    return Arm(variant, variant, overrides)


def table_arms(s: HDDStudySettings, ipc: int) -> list[Arm]:
    """The table's four rows at ``ipc`` (``TABLE_LABELS``). Shown in notebook 02 (02_hdd_pruning)."""
    return [arm(s, label, ipc) for label in TABLE_LABELS]


def study_config(p: Profile, s: HDDStudySettings, a: Arm, ipc: int, seed: int, train: Dataset):
    """The ``DistillConfig`` of arm ``a`` with notebook 02's sizes and its snapshot points (those within the
    run's iterations). Shown in notebook 02 (02_hdd_pruning)."""
    cfg = a.config(study_profile(p, s), ipc, seed, train)
    return replace(cfg, snapshot_at=tuple(int(i) for i in s.snapshots if i <= cfg.iterations))


# --------------------------------------------------------------------------------------------------
# Budgeted, memoised evaluation
# --------------------------------------------------------------------------------------------------

def epochs_for_steps(n_train: int, steps: int, batch_size: int = BATCH_TRAIN) -> int:
    """Epochs that give at least ``steps`` SGD steps on ``n_train`` images: ``ceil(steps / ceil(n / batch))``.

    Fixing steps rather than epochs keeps IDM's 4x-expanded sets from getting twice the optimisation of a DM set
    of the same storage at a short budget. Reconstruction: our choice. Shown in notebook 02 (02_hdd_pruning)."""
    if n_train < 1 or steps < 1:
        raise GeoddError(f"n_train and steps must be positive, got {n_train} and {steps}")
    return max(1, math.ceil(steps / math.ceil(n_train / batch_size)))


def eval_epochs(p: Profile, s: HDDStudySettings, n_train: int) -> int:
    """``epochs_for_steps(n_train, s.eval_steps)``, or the profile's epochs when that is None. Shown in
    notebook 02 (02_hdd_pruning)."""
    return p.eval_epochs if s.eval_steps is None else epochs_for_steps(n_train, int(s.eval_steps))


def evaluate_set(images: torch.Tensor, labels: torch.Tensor, test: Dataset, *, epochs: int, runs: int,
                 amp: str | None, seed: int = 0, arch: str = "convnet", progress: bool = False) -> dict:
    """``evaluate_images(...).as_dict()``, memoised (``MEMO_EVAL``) by the content of (images, labels) and of the
    test set (``geodd.io.fingerprint``), so the same set (e.g. the shared initialisation of several runs) is
    trained once; ``amp="auto"`` is resolved first, so the key names the precision used. Accuracies are
    fractions. Shown in notebook 02 (02_hdd_pruning)."""
    amp = concrete(amp, default_device())
    params = {"images": fingerprint({"images": images, "labels": labels}),
              "test": [test.name, len(test), fingerprint(test.labels)],
              "epochs": int(epochs), "runs": int(runs), "amp": amp, "seed": int(seed), "arch": arch}
    return memo(MEMO_EVAL, params, lambda: evaluate_images(images, labels, test, arch=arch, runs=runs,
                                                           epochs=epochs, amp=amp, seed=seed,
                                                           progress=progress).as_dict())


def _hdd_columns(cfg) -> dict[str, Any]:
    """The HDD options of an HDD run as ``hdd_<option>`` columns (empty for other methods)."""
    if cfg.method != "hdd":
        return {}
    return {f"hdd_{name}": getattr(cfg.matcher, name) for name in SWEEPABLE + ("norm",)}


def run_cell(p: Profile, s: HDDStudySettings, a: Arm, ipc: int, seed: int, *, train: Dataset, test: Dataset,
             iterations: Iterable[int] | None = None, progress: bool = False) -> list[dict]:
    """Distil arm ``a`` (cached) and evaluate the final set, or the snapshots at ``iterations``; one row each.

    Rows carry the accuracy in %, the std over evaluation runs, the distillation timings (``median_iter_s``,
    ``pool_train_s`` for IDM), the loss roughness, the pruning fraction and the HDD options of the run. Shown in
    notebook 02 (02_hdd_pruning)."""
    sp = study_profile(p, s)
    cfg = study_config(p, s, a, ipc, seed, train)
    synset, record, run_dir = cached_distill(cfg, train=train, progress=progress)
    final = cfg.iterations
    rows = []
    for it in ([final] if iterations is None else [int(i) for i in iterations]):
        if it == final:
            images = synset.images
        elif it in synset.snapshots:
            images = synset.snapshots[it]
        else:
            raise GeoddError(f"run {run_dir.name} has no snapshot at iteration {it} (has "
                             f"{sorted(synset.snapshots)} and the final {final})")
        x, y = synset.training_set(images)
        epochs = eval_epochs(sp, s, len(x))
        ev = evaluate_set(x, y, test, epochs=epochs, runs=sp.eval_runs, amp=sp.eval_amp, seed=seed,
                          progress=progress)
        t = record["timings"]
        rows.append({"method": a.label, "ipc": ipc, "seed": seed, "iteration": it, "keep": cfg.keep,
                     "acc": 100 * ev["mean"], "acc_std_runs": 100 * ev["std"], "eval_epochs": epochs,
                     "train_images": len(x), "distill_s": t["total_s"], "median_iter_s": t["median_iter_s"],
                     "pool_train_s": t.get("pool_train_s", 0.0), "eval_s": ev["seconds"],
                     "loss_roughness": loss_roughness(record["loss"]), "run_dir": str(run_dir),
                     **_hdd_columns(cfg)})
    return rows


def run_table(p: Profile, s: HDDStudySettings, *, train: Dataset, test: Dataset, labels: Iterable[str] = TABLE_LABELS,
              progress: bool = False) -> pd.DataFrame:
    """Every table row (``labels``: registry variants, default ``TABLE_LABELS``) x ``s.ipcs`` x ``s.seeds``: the
    final set's accuracy. Shown in notebook 02 (02_hdd_pruning)."""
    labels = tuple(labels)
    rows = [row for ipc in s.ipcs for a in table_arms(s, ipc) if a.label in labels for seed in s.seeds
            for row in run_cell(p, s, a, ipc, seed, train=train, test=test, progress=progress)]
    return pd.DataFrame(rows)


def accuracy_curve(p: Profile, s: HDDStudySettings, *, train: Dataset, test: Dataset, progress: bool = False,
                   reference: str | None = "DM") -> pd.DataFrame:
    """DM+HDD with the real data pruned to each of ``s.keeps`` (HDD's pruning, ``geodd.prune``), evaluated at
    every snapshot (the paper's Fig. 3); plus the ``reference`` variant unpruned. Columns as ``run_cell`` with
    ``curve`` naming the line. Shown in notebook 02 (02_hdd_pruning)."""
    ipc, seed, its = s.curve_ipc, s.curve_seed, s.snapshots
    rows = []
    for keep in s.keeps:
        a = arm(s, HDD_LABEL, ipc, **({} if keep == 1.0 else {"keep": float(keep)}))
        for r in run_cell(p, s, a, ipc, seed, train=train, test=test, iterations=its, progress=progress):
            rows.append({**r, "curve": f"{HDD_LABEL}, keep {100 * keep:.0f}%"})
    if reference is not None:
        for r in run_cell(p, s, arm(s, reference, ipc), ipc, seed, train=train, test=test, iterations=its,
                          progress=progress):
            rows.append({**r, "curve": f"{reference}, keep 100%"})
    return pd.DataFrame(rows)


def run_sweeps(p: Profile, s: HDDStudySettings, *, train: Dataset, test: Dataset,
               progress: bool = False) -> pd.DataFrame:
    """One-axis ablations around the registry's DM+HDD: each value of ``s.sweeps`` replaces that one matcher
    option (the centre value is the table's run). Columns as ``run_cell`` plus ``param``, ``value`` and
    ``effective_lam = lam * sqrt(k)``. Shown in notebook 02 (02_hdd_pruning)."""
    ipc, seed = s.curve_ipc, s.curve_seed
    centre = arm(s, HDD_LABEL, ipc)
    base = study_config(p, s, centre, ipc, seed, train).matcher
    rows = []
    for param, values in s.sweeps.items():
        for value in map(float, values):
            # the centre value reuses the table's run (same config, same cache entry)
            a = centre if float(getattr(base, param)) == value else arm(s, HDD_LABEL, ipc, matcher={param: value})
            opts = replace(base, **{param: value})
            for r in run_cell(p, s, a, ipc, seed, train=train, test=test, progress=progress):
                rows.append({**r, "param": param, "value": value,
                             "effective_lam": float(opts.lam) * math.sqrt(float(opts.k))})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Tables and claim checks
# --------------------------------------------------------------------------------------------------

def hdd_paper_key(label: str) -> str:
    """The ``geodd.studies.published`` method key of the HDD paper's number for a table row: ``dm+hdd`` for the
    HDD rows, ``dm@hdd-paper`` for the authors' re-runs of DM / IDM. Shown in notebook 02 (02_hdd_pruning)."""
    name = label.lower()
    return name if name.endswith("+hdd") else name + HDD_RERUN_SUFFIX


def pruning_key(label: str, ratio: int) -> str:
    """The ``geodd.studies.published`` method key of a cell of the HDD paper's pruning table (ratio 0 is the
    unpruned row: ``hdd_paper_key``). Shown in notebook 02 (02_hdd_pruning)."""
    return hdd_paper_key(label) if ratio == 0 else f"{label.lower()}@prune{int(ratio)}"


def _fmt(hit) -> str:
    return "–" if hit is None else f"{hit[0]:.1f}" + (f" ± {hit[1]:.1f}" if hit[1] is not None else "")


def summarise_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Mean +- std over seeds per (method, ipc), with the original papers' numbers (DM, IDM) and the HDD paper's
    (its HDD rows and its re-runs of DM / IDM) beside ours, all from ``geodd.studies.published``. Shown in
    notebook 02 (02_hdd_pruning)."""
    g = df.groupby(["method", "ipc"], sort=False)["acc"]
    out = g.agg(mean="mean", std=lambda x: float(np.std(x, ddof=0)), seeds="count").reset_index()
    out["ours (%)"] = [f"{m:.2f} ± {sd:.2f}" for m, sd in zip(out["mean"], out["std"])]
    orig, hdd, src = [], [], []
    for label, ipc in zip(out["method"], out["ipc"]):
        hit = published(label.lower(), dataset, int(ipc)) if "+" not in label else None
        h = published(hdd_paper_key(label), dataset, int(ipc))
        orig.append(_fmt(hit))
        hdd.append("–" if h is None else f"{h[0]:.1f}")
        src.append("; ".join(x[2] for x in (hit, h) if x))
    out["published (original paper)"], out["published (HDD paper)"], out["sources"] = orig, hdd, src
    return out


#: the table's paired claims: (claim, with HDD, without) -- the paper's "HDD improves DM and IDM"
GAIN_CLAIMS = (("HDD improves DM", "DM+HDD", "DM"), ("HDD improves IDM", "IDM+HDD", "IDM"))


def _claims(table: pd.DataFrame, claim: str, score: str, unit: str, margin: float = 0.0) -> pd.DataFrame:
    """A ``stats.compare_table`` result with the claim, the score it compares, its unit and the margin in front."""
    front = pd.DataFrame({"claim": claim, "score": score, "unit": unit, "margin": float(margin)}, index=table.index)
    out = pd.concat([front, table], axis=1)
    out.attrs.update(table.attrs)
    return out


def _stack(tables: list[pd.DataFrame]) -> pd.DataFrame:
    out = pd.concat(tables, ignore_index=True)
    out.attrs.update(tables[0].attrs)
    return out


def hdd_gains(df: pd.DataFrame) -> pd.DataFrame:
    """HDD's gain over its base method per IPC (``GAIN_CLAIMS``: DM+HDD - DM, IDM+HDD - IDM), paired by seed,
    under ``geodd.stats``' one rule: columns claim, score, unit, margin, then ``stats.compare_table``'s (ipc,
    comparison, n, mean diff, CI, p, MDE, verdict, alternative; accuracy points). Shown in notebook 02
    (02_hdd_pruning)."""
    return _stack([_claims(stats.compare_table(df, by="ipc", score="acc", label="method", scale=1,
                                               pairs=[(plus, base, "greater")]), claim, "accuracy", "pp")
                   for claim, plus, base in GAIN_CLAIMS])


def keep_label(keep: float) -> str:
    """The name of a pruning arm: ``"keep 20%"``. Shown in notebook 02 (02_hdd_pruning)."""
    return f"keep {100 * keep:.0f}%"


def pruning_runs(p: Profile, s: HDDStudySettings, *, train: Dataset, test: Dataset, keep: float | None = None,
                 progress: bool = False) -> pd.DataFrame:
    """DM+HDD at ``s.curve_ipc`` on every seed of ``s.seeds`` with all the real data and with the data pruned to
    ``keep`` (default: the smallest of ``s.keeps``): the final set's accuracy and loss roughness, one row per
    (arm, seed), paired by seed for ``pruning_claims``. Column ``pruning`` names the arm (``keep_label``); the
    unpruned runs are the table's and the curve's seed is the curve's run (same config, same cache). Shown in
    notebook 02 (02_hdd_pruning)."""
    keep = min(s.keeps) if keep is None else float(keep)
    if not 0 < keep < 1:
        raise GeoddError(f"keep must lie in (0, 1), got {keep}")
    rows = []
    for k in (1.0, keep):
        a = arm(s, HDD_LABEL, s.curve_ipc, **({} if k == 1.0 else {"keep": k}))
        for seed in s.seeds:
            for r in run_cell(p, s, a, s.curve_ipc, seed, train=train, test=test, progress=progress):
                rows.append({**r, "pruning": keep_label(k)})
    return pd.DataFrame(rows)


def pruning_claims(runs: pd.DataFrame, margin: float) -> pd.DataFrame:
    """HDD's pruning claims on ``pruning_runs``, paired by seed under ``geodd.stats``' one rule: (1) "keeping
    the fraction retains accuracy" as a non-inferiority claim, pruned - full > -``margin`` accuracy points
    (supported when the CI's low end lies above -margin); (2) "pruning makes training more stable": pruned -
    full < 0 in loss roughness. Columns as ``hdd_gains``. Shown in notebook 02 (02_hdd_pruning)."""
    labels = list(dict.fromkeys(runs["pruning"]))
    full, pruned = keep_label(1.0), next((x for x in labels if x != keep_label(1.0)), None)
    if full not in labels or pruned is None:
        raise GeoddError(f"pruning_claims needs an unpruned and a pruned arm, got {labels}")
    acc = stats.compare_table(runs, by="ipc", score="acc", label="pruning", scale=1,
                              pairs=[(pruned, full, "greater", float(margin))])
    rough = stats.compare_table(runs, by="ipc", score="loss_roughness", label="pruning", scale=1,
                                pairs=[(pruned, full, "less")])
    return _stack([_claims(acc, f"keeping {pruned.split()[-1]} of the data retains accuracy", "accuracy", "pp",
                           margin),
                   _claims(rough, "pruning makes training more stable", "loss roughness", "")])


def _p_words(p: float) -> str:
    return "p n/a" if not math.isfinite(p) else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _margin_sentence(row: pd.Series, a: str, b: str, level: float) -> str:
    """``stats.verdict_sentence`` for a non-inferiority row (it does not know the margin): the claim, the numbers
    and what the verdict means against -margin."""
    u = f" {row['unit']}" if row["unit"] else ""
    claim = f"that {a} is not worse than {b} by more than {row['margin']:g}{u}"
    n = int(row["n"])
    if n < 2:
        return (f"With {n} shared seed{'s' if n != 1 else ''} there is no confidence interval, so the claim "
                f"{claim} is inconclusive.")
    stat = (f"{a} − {b} = {row['mean diff']:+.2f}{u} ({level * 100:g} % CI {row['CI low']:+.2f} to "
            f"{row['CI high']:+.2f}{u}, n = {n} paired seeds, {_p_words(row['p'])}, MDE {row['MDE']:.2f}{u})")
    if row["verdict"] == "supported":
        return f"{stat}: the interval lies above −{row['margin']:g}{u}, so the seeds support the claim {claim}."
    if row["verdict"] == "contradicted":
        return f"{stat}: the interval lies below −{row['margin']:g}{u}, so the seeds contradict the claim {claim}."
    return f"{stat}: the interval reaches −{row['margin']:g}{u}, so the seeds cannot settle the claim {claim}."


def claims_view(table: pd.DataFrame) -> pd.DataFrame:
    """A claims table for display and ``plots.save_table``: ``stats.format_table`` (signed differences, one CI
    column, p, MDE, H1) without the unit and margin columns (the comparison names the margin); a non-inferiority
    row's H1 is its shifted null, e.g. "> −1". Render it with ``.to_markdown(index=False, disable_numparse=True)``.
    Shown in notebook 02 (02_hdd_pruning)."""
    out = stats.format_table(table)
    shifted = {"greater": "> −{:g}", "less": "< +{:g}"}
    out["H1"] = [shifted[alt].format(m) if m > 0 and alt in shifted else h
                 for h, alt, m in zip(out["H1"], table["alternative"], table["margin"])]
    return out.drop(columns=["unit", "margin"])


def claim_sentences(table: pd.DataFrame) -> list[str]:
    """One Markdown line per row of a claims table (``hdd_gains``, ``pruning_claims``, ``root_claims``): the
    claim in bold, then ``stats.verdict_sentence`` (or, for a non-inferiority row, the same sentence against the
    margin), so that prose states only what the table holds. Shown in notebook 02 (02_hdd_pruning)."""
    level = float(table.attrs.get("level", 0.95))
    out = []
    for _, row in table.iterrows():
        a, b = row["comparison"].split(" (margin")[0].split(" − ")
        where = f" (IPC {row['ipc']}, {row['score']})" if "ipc" in row else f" ({row['score']})"
        text = (_margin_sentence(row, a, b, level) if row["margin"] > 0
                else stats.verdict_sentence(row, a, b, unit=row["unit"], level=level))
        out.append(f"- **{row['claim']}**{where}: {text}")
    return out


def timing_totals(*frames: pd.DataFrame) -> dict:
    """Seconds spent on the notebook's runs: distillation (each run once) and evaluation (each evaluated set
    once), from the rows of ``run_cell`` (first execution; the caches make a rerun near-free). Shown in
    notebook 02 (02_hdd_pruning)."""
    rows = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["run_dir", "iteration"])
    return {"runs": int(rows["run_dir"].nunique()), "evaluations": len(rows),
            "distill_s": float(rows.drop_duplicates("run_dir")["distill_s"].sum()),
            "eval_s": float(rows["eval_s"].sum())}


def loss_roughness(losses: Iterable[float]) -> float:
    """How jagged a loss curve is: the median |successive difference| over the median loss (0 for a smooth or
    constant curve). Used for the paper's "training stability" claim. Reconstruction: our choice. Shown in
    notebook 02 (02_hdd_pruning)."""
    x = np.asarray(list(losses), dtype=float)
    if len(x) < 2:
        return 0.0
    med = float(np.median(np.abs(x)))
    return float(np.median(np.abs(np.diff(x))) / med) if med > 0 else 0.0


def published_pruning() -> pd.DataFrame:
    """The HDD paper's pruning table (``geodd.studies.published``, ``pruning_key``) as a long table: printed
    ratio, method, accuracy (NaN where the table lacks a cell), source. Shown in notebook 02 (02_hdd_pruning)."""
    rows = []
    for ratio in PRUNING_RATIOS:
        for label in TABLE_LABELS:
            hit = published(pruning_key(label, ratio), PRUNING_DATASET, PRUNING_IPC)
            rows.append({"printed ratio (%)": ratio, "method": label,
                         "acc": float("nan") if hit is None else hit[0], "source": "" if hit is None else hit[2]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Geometry probes
# --------------------------------------------------------------------------------------------------

def feature_net(train: Dataset, seed: int = 0, device: torch.device | str | None = None) -> torch.nn.Module:
    """A frozen random ConvNet (DM's and HDD's feature extractor) for the probes. Shown in notebook 02
    (02_hdd_pruning)."""
    device = torch.device(device) if device is not None else default_device()
    net = make_network("convnet", train.channels, train.num_classes, train.im_size, seed=seed, device=device)
    for q in net.parameters():
        q.requires_grad_(False)
    return net


def embed(images: torch.Tensor, net: torch.nn.Module, batch_size: int = 512) -> torch.Tensor:
    """``net.embed`` in float32 batches under inference mode (``geodd.prune.embed_dataset``). Shown in notebook
    02 (02_hdd_pruning)."""
    return embed_dataset(images, net, batch_size=batch_size)


def probe_set(dataset: Dataset, n_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_per_class`` images of every class (class-major) and their labels: the probe set whose
    features the geometry figures show. Shown in notebook 02 (02_hdd_pruning)."""
    if n_per_class < 1:
        raise GeoddError(f"n_per_class must be >= 1, got {n_per_class}")
    idx = torch.cat([m[:n_per_class] for m in dataset.indices_by_class])
    return dataset.images[idx], dataset.labels[idx]


def synset_features(run_dir, net: torch.nn.Module, iteration: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of a cached run's synthetic training set (final, or the snapshot at ``iteration``;
    IDM sets are expanded as a student sees them). Shown in notebook 02 (02_hdd_pruning)."""
    synset = SynSet.load(Path(run_dir) / "synset.pt")
    if iteration is None:
        images = synset.images
    elif iteration in synset.snapshots:
        images = synset.snapshots[iteration]
    else:
        raise GeoddError(f"{run_dir} has no snapshot at iteration {iteration}; have {sorted(synset.snapshots)}")
    x, y = synset.training_set(images)
    return embed(x, net), y


def radius_frame(sets: dict[str, torch.Tensor], reference: torch.Tensor, k: float = 1.0, *,
                 norms: Iterable[str] = ("release", "rescale"), lift: str = "exp",
                 target_radius: float = DEFAULT_TARGET_RADIUS) -> pd.DataFrame:
    """Hyperbolic distance from the origin of every feature in ``sets`` (name -> ``[N, D]``) after HDD's lift,
    under each norm handling; ``rescale`` takes its factor from ``reference`` (the real features), as
    ``hdd_loss`` does. Columns: set, norm, radius (``d_L(x, o)``), radius_units (``d / sqrt(k)``), feature_norm.
    Shown in notebook 02 (02_hdd_pruning)."""
    rows = []
    for norm in norms:
        factor = feature_factor(reference, k, lift=lift, norm=norm, target_radius=target_radius)
        for name, f in sets.items():
            d = lorentz_dist0(lift_features(f, k, lift=lift, norm=norm, factor=factor), k).detach().cpu()
            fn = f.detach().to(torch.float64).norm(dim=-1).cpu()
            rows.append(pd.DataFrame({"set": name, "norm": norm, "radius": d.numpy(),
                                      "radius_units": (d / math.sqrt(k)).numpy(), "feature_norm": fn.numpy()}))
    return pd.concat(rows, ignore_index=True)


def radius_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (norm, set): mean, std and range of the radius, and the relative spread std/mean. Shown in notebook
    02 (02_hdd_pruning)."""
    g = frame.groupby(["norm", "set"], sort=False)["radius"]
    out = g.agg(mean="mean", std=lambda x: float(np.std(x, ddof=0)), min="min", max="max").reset_index()
    out["rel_spread"] = out["std"] / out["mean"].where(out["mean"] > 0)
    return out


def k_equivalence(real: torch.Tensor, syn: torch.Tensor, ks: Iterable[float], *, lam: float = DEFAULT_LAM,
                  norm: str = "rescale", lift: str = "exp",
                  target_radius: float = DEFAULT_TARGET_RADIUS) -> pd.DataFrame:
    """``hdd_loss`` at each ``k`` and its ratio to ``sqrt(k) * loss(k=1)``. Under ``rescale`` (either lift) the
    lifted points at ``k`` are ``sqrt(k)`` times those at ``k = 1``, so the ratio is 1 and ``k`` only rescales
    ``lam``; under ``release`` the same holds while the expmap0 clamp is active for every feature. Shown in
    notebook 02 (02_hdd_pruning)."""
    base = float(hdd_loss(real, syn, 1.0, lam, lift=lift, norm=norm, target_radius=target_radius))
    rows = []
    for k in ks:
        loss = float(hdd_loss(real, syn, float(k), lam, lift=lift, norm=norm, target_radius=target_radius))
        rows.append({"k": float(k), "norm": norm, "loss": loss, "sqrt(k) * loss(k=1)": math.sqrt(k) * base,
                     "ratio": loss / (math.sqrt(k) * base) if base > 0 else float("nan")})
    return pd.DataFrame(rows)


def pull_frame(radii: Iterable[float], k: float = 1.0, *, num_anchors: int = 2,
               anchor_radius: float = 0.0) -> pd.DataFrame:
    """``geometry.centroid_pull`` as a table: the effective weight of a probe at radius ``d`` (anchors weight 1)
    for the implemented closed-form centroid, the Frechet mean, the tangent-space mean (1) and the claim
    ``w(d) / w(r0)``. Shown in notebook 02 (02_hdd_pruning)."""
    r = centroid_pull(torch.as_tensor(list(radii), dtype=torch.float64), k, num_anchors=num_anchors,
                      anchor_radius=anchor_radius)
    n = num_anchors
    frechet_w = n * r.frechet_pull / (r.radius - r.frechet_pull)
    return pd.DataFrame({"radius": r.radius.numpy(), "closed-form centroid": r.effective_weight.numpy(),
                         "Fréchet mean": frechet_w.numpy(), "tangent mean": np.ones(len(r.radius)),
                         "claimed w(d)": r.claimed_weight.numpy(), "pull": r.pull.numpy(),
                         "frechet_pull": r.frechet_pull.numpy()})


def weighting_check(pull: pd.DataFrame) -> dict:
    """Monotonicity of the effective weights in ``pull_frame``: the claim needs ``w`` decreasing in the radius;
    returns whether the closed-form centroid's weight increases and the claimed one decreases, and the largest
    deviation of the Frechet mean's weight from 1 (the tangent mean). Shown in notebook 02 (02_hdd_pruning)."""
    cf, cl = np.diff(pull["closed-form centroid"].to_numpy()), np.diff(pull["claimed w(d)"].to_numpy())
    return {"closed_form_increasing": bool((cf > 0).all()), "claimed_decreasing": bool((cl < 0).all()),
            "closed_form_range": (float(pull["closed-form centroid"].min()), float(pull["closed-form centroid"].max())),
            "frechet_max_dev": float((pull["Fréchet mean"] - 1.0).abs().max())}


def weighting_sentence(check: dict) -> str:
    """The summary line of the hierarchical-weighting claim, written from ``weighting_check``: arithmetic on the
    centroid formula, with no seeds, so ``geodd.stats`` does not apply. Shown in notebook 02 (02_hdd_pruning)."""
    cf = "increases" if check["closed_form_increasing"] else "does not increase"
    cl = "decreases" if check["claimed_decreasing"] else "does not decrease"
    verdict = ("so the claim does not describe the implemented centroid" if check["closed_form_increasing"]
               else "so the implemented centroid does not contradict the claim on this grid")
    return (f"- **the centroid weights a sample at radius d by a decreasing w(d)** (arithmetic, no seeds): the "
            f"implemented closed-form centroid's weight {cf} with the radius (from "
            f"{check['closed_form_range'][0]:.2f} to {check['closed_form_range'][1]:.2f}) while the claimed w(d) "
            f"{cl}, {verdict}.")


def loo_weights(points: torch.Tensor, k: float = 1.0) -> torch.Tensor:
    """Leave-one-out effective weight of each lifted point ``[N, D+1]`` in the closed-form centroid:
    ``omega_i = (N - 1) d(c, c_{-i}) / d(c, x_i)``. A tangent-space (Euclidean) mean gives 1 for every point; to
    first order a weighted tangent mean with weight ``omega_i`` (others ~1) moves by this much. Float64. Shown in
    notebook 02 (02_hdd_pruning)."""
    x = points.to(torch.float64)
    n = x.shape[-2]
    if x.dim() != 2 or n < 2:
        raise GeoddError(f"points must be [N, D+1] with N >= 2, got shape {tuple(points.shape)}")
    c = lorentz_centroid(x, k)
    loo_means = (n * x.mean(0, keepdim=True) - x) / (n - 1)     # ambient means without point i
    c_loo = lorentz_centroid(loo_means.unsqueeze(-2), k)       # one "point set" of size 1 per i
    d_shift = lorentz_distance(c.unsqueeze(0), c_loo, k)
    d_point = lorentz_distance(c.unsqueeze(0), x, k)
    return (n - 1) * d_shift / d_point.clamp_min(DIRECTION_EPS)


def loo_frame(features: torch.Tensor, labels: torch.Tensor, k: float = 1.0, *, norm: str = "rescale",
              lift: str = "exp", target_radius: float = DEFAULT_TARGET_RADIUS) -> pd.DataFrame:
    """Per real sample: its radius, its leave-one-out weight in its class's closed-form centroid and the claimed
    ``w(d)`` normalised to mean 1 over the class (the claim's prediction in the same units). Shown in notebook 02
    (02_hdd_pruning)."""
    factor = feature_factor(features, k, lift=lift, norm=norm, target_radius=target_radius)
    pts = lift_features(features, k, lift=lift, norm=norm, factor=factor).to(torch.float64)
    rows = []
    for c in torch.unique(labels).tolist():
        x = pts[labels.to(pts.device) == c]
        d = lorentz_dist0(x, k)
        w = claimed_weight(d.cpu(), k)
        rows.append(pd.DataFrame({"class": c, "radius": d.cpu().numpy(),
                                  "closed-form weight": loo_weights(x, k).cpu().numpy(),
                                  "claimed w(d)": (w / w.mean()).numpy()}))
    return pd.concat(rows, ignore_index=True)


#: the sets ``root_runs`` measures: the shared initialisation (DM's iteration 0) and the two final sets
ROOT_SETS = ("init", "DM", "DM+HDD")


def root_runs(table: pd.DataFrame, net: torch.nn.Module, real: torch.Tensor, real_labels: torch.Tensor, ipc: int,
              k: float = 1.0) -> pd.DataFrame:
    """Per seed of ``table`` (``run_table``) at ``ipc``: the mean hyperbolic radius of the features of each of
    ``ROOT_SETS`` (default rescale, factor from the ``real`` features, as ``hdd_loss`` lifts them) and the mean
    over classes of the geodesic gap between its class centroid and the real one (``centroid_gaps``). DM and
    DM+HDD of one seed share their initialisation (the seed's ``init`` stream), so the rows pair by seed. Columns
    set, ipc, seed, mean radius, centroid gap. Shown in notebook 02 (02_hdd_pruning)."""
    rows = []
    for seed, runs in table[table.ipc == ipc].groupby("seed", sort=True):
        pick = runs.set_index("method")["run_dir"]
        missing = [m for m in ROOT_SETS[1:] if m not in pick]
        if missing:
            raise GeoddError(f"the table has no {', '.join(missing)} run at IPC {ipc}, seed {seed}")
        sets = {"init": synset_features(pick["DM"], net, iteration=0),
                **{m: synset_features(pick[m], net) for m in ROOT_SETS[1:]}}
        radii = radius_summary(radius_frame({m: f for m, (f, _) in sets.items()}, real, k, norms=("rescale",)))
        gaps = centroid_gaps(poincare_view(real, real_labels, sets, k, norm="rescale")).set_index("set")
        mean = radii.set_index("set")["mean"]
        rows += [{"set": m, "ipc": int(ipc), "seed": int(seed), "mean radius": float(mean[m]),
                  "centroid gap": float(gaps.loc[m, "mean_gap"])} for m in ROOT_SETS]
    return pd.DataFrame(rows)


def root_claims(runs: pd.DataFrame) -> pd.DataFrame:
    """HDD's root-centric synthesis on ``root_runs``, paired by seed under ``geodd.stats``' one rule: "synthetic
    samples gravitate towards the root" (DM+HDD's mean radius below DM's, and below the initialisation's) and
    "synthetic centroids coincide with the real ones" (DM+HDD's centroid gap below DM's). Columns as
    ``hdd_gains`` (scores in units of hyperbolic distance). Shown in notebook 02 (02_hdd_pruning)."""
    def table(score, pairs):
        return stats.compare_table(runs, by="ipc", score=score, label="set", pairs=pairs, scale=1)

    radius = table("mean radius", [("DM+HDD", "DM", "less"), ("DM+HDD", "init", "less")])
    gap = table("centroid gap", [("DM+HDD", "DM", "less")])
    return _stack([_claims(radius, "synthetic samples gravitate towards the root", "mean radius", ""),
                   _claims(gap, "synthetic centroids coincide with the real ones", "centroid gap", "")])


def centroid_gaps(view: "PoincareView") -> pd.DataFrame:
    """Per set: mean and max over classes of the full-dimensional geodesic distance between its class centroid
    and the real one (0 = coinciding centroids, the paper's Fig. 4), and the mean centroid radius. Shown in
    notebook 02 (02_hdd_pruning)."""
    c = view.centroids[view.centroids.set != "real"]
    return c.groupby("set", sort=False).agg(mean_gap=("dist_to_real", "mean"), max_gap=("dist_to_real", "max"),
                                            centroid_radius=("radius", "mean"),
                                            member_radius=("member_radius", "mean")).reset_index()


@dataclass
class PoincareView:
    """2-D Poincare-disk coordinates of lifted features and class centroids (see ``poincare_view``). Shown in
    notebook 02 (02_hdd_pruning)."""

    points: pd.DataFrame      # set, class, x, y, radius (one row per sample)
    centroids: pd.DataFrame   # set, class, x, y, radius, dist_to_real (full-dimensional d_L to the real centroid)
    k: float
    norm: str


def _unit(u: torch.Tensor) -> torch.Tensor:
    return u / u.norm(dim=-1, keepdim=True).clamp_min(DIRECTION_EPS)


def _disk(u: torch.Tensor, d: torch.Tensor, center: torch.Tensor, basis: torch.Tensor, k: float) -> torch.Tensor:
    a = (_unit(u) - center) @ basis
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(DIRECTION_EPS)
    return torch.tanh(d / (2 * math.sqrt(k))).unsqueeze(-1) * a


def poincare_view(real: torch.Tensor, real_labels: torch.Tensor, syn: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  k: float = 1.0, *, norm: str = "rescale", lift: str = "exp",
                  target_radius: float = DEFAULT_TARGET_RADIUS) -> PoincareView:
    """Features in the Poincare disk (the paper's Fig. 4; its projection is not published).

    Every feature is lifted as ``hdd_loss`` lifts it (factor from ``real``); class centroids are the closed-form
    Lorentzian centroids in full dimension. A point is drawn at its exact Poincare radius
    ``tanh(d(x, o) / (2 sqrt(k)))`` in the direction given by a 2-D PCA of the centred unit tangent directions
    ``log_o(x) / |log_o(x)|`` of the real features (directions, so that a centroid nearer the root is placed by
    its direction, not its shorter tangent vector). Radii are exact, angles a projection. Reconstruction: our
    choice. ``dist_to_real`` is the full-dimensional geodesic distance of each set's class centroid to the real
    one. Shown in notebook 02 (02_hdd_pruning)."""
    factor = feature_factor(real, k, lift=lift, norm=norm, target_radius=target_radius)
    man = lorentz(k)

    def lifted(f):
        return lift_features(f, k, lift=lift, norm=norm, factor=factor).to(torch.float64)

    sets = {"real": (real, real_labels), **syn}
    pts = {name: lifted(f) for name, (f, _) in sets.items()}
    tang = {name: man.logmap0(x)[..., 1:] for name, x in pts.items()}
    center = _unit(tang["real"]).mean(0)
    _, _, vh = torch.linalg.svd(_unit(tang["real"]) - center, full_matrices=False)
    basis = vh[:2].T
    basis = basis * torch.sign(basis[basis.abs().argmax(0), torch.arange(2)])  # deterministic orientation
    prow, crow = [], []
    classes = torch.unique(real_labels).tolist()
    c_real = {}
    for name, (_, labels) in sets.items():
        d = lorentz_dist0(pts[name], k)
        xy = _disk(tang[name], d, center, basis, k).cpu()
        prow.append(pd.DataFrame({"set": name, "class": labels.cpu().numpy(), "x": xy[:, 0].numpy(),
                                  "y": xy[:, 1].numpy(), "radius": d.cpu().numpy()}))
        for c in classes:
            mask = labels.to(pts[name].device) == c
            if not bool(mask.any()):
                continue
            cen = lorentz_centroid(pts[name][mask], k)
            if name == "real":
                c_real[c] = cen
            dc = lorentz_dist0(cen, k)
            cxy = _disk(man.logmap0(cen)[..., 1:], dc, center, basis, k).cpu()
            crow.append({"set": name, "class": c, "x": float(cxy[0]), "y": float(cxy[1]), "radius": float(dc),
                         "member_radius": float(lorentz_dist0(pts[name][mask], k).mean()),
                         "dist_to_real": float(lorentz_distance(cen, c_real[c], k))})
    return PoincareView(pd.concat(prow, ignore_index=True), pd.DataFrame(crow), float(k), norm)


def level_extremes(dataset: Dataset, n_show: int, net: torch.nn.Module, *, pool_per_class: int = 100,
                   k: float = 1.0, reference: str = "origin", **level_options) -> dict[str, torch.Tensor]:
    """Which images HDD's pruning keeps first and drops first: on the first ``pool_per_class`` images of each
    class, the ``n_show`` of lowest and of highest hyperbolic level (``geodd.prune.hyperbolic_levels``).
    Returns indices into ``dataset`` (``"lowest"``, ``"highest"``, class-major) and the pool's ``"levels"``.
    Shown in notebook 02 (02_hdd_pruning)."""
    if n_show < 1 or pool_per_class < n_show:
        raise GeoddError(f"need 1 <= n_show <= pool_per_class, got {n_show} and {pool_per_class}")
    pool = torch.cat([m[:pool_per_class] for m in dataset.indices_by_class])
    feats = embed(dataset.images[pool], net)
    labels = dataset.labels[pool].to(feats.device)
    levels = hyperbolic_levels(feats, k, reference, labels=labels, **level_options).cpu()
    low, high = [], []
    for c in range(dataset.num_classes):
        idx = torch.nonzero(labels.cpu() == c).flatten()
        order = idx[torch.sort(levels[idx], stable=True).indices]
        low.append(pool[order[:n_show]])
        high.append(pool[order[-n_show:].flip(0)])
    return {"lowest": torch.cat(low), "highest": torch.cat(high), "levels": levels, "pool": pool}


__all__ = [
    "NOTEBOOK", "TABLE_LABELS", "HDD_LABEL", "SWEEPABLE", "MEMO_EVAL", "PRUNING_RATIOS", "HDDSweeps", "ReleaseSizes",
    "HDDStudySettings", "SETTINGS", "settings", "study_profile", "study_data", "arm", "table_arms", "study_config",
    "epochs_for_steps", "eval_epochs", "evaluate_set", "run_cell", "run_table", "accuracy_curve", "run_sweeps",
    "hdd_paper_key", "pruning_key", "summarise_table", "GAIN_CLAIMS", "hdd_gains", "keep_label", "pruning_runs",
    "pruning_claims", "claims_view", "claim_sentences", "timing_totals", "loss_roughness", "published_pruning",
    "feature_net", "embed", "probe_set", "synset_features", "radius_frame", "radius_summary", "k_equivalence",
    "pull_frame", "weighting_check", "weighting_sentence", "loo_weights", "loo_frame", "ROOT_SETS", "root_runs",
    "root_claims", "centroid_gaps", "PoincareView", "poincare_view", "level_extremes",
]
