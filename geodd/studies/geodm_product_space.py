"""Notebook 04 (04_geodm_product_space): GeoDM's factor-subset ablations, the OT and base-objective ablations,
dimension-split sweeps, curvature/weight histories from run records, and wall-clock time and memory against DM.

Every run is the registry variant "GeoDM" (``geodd.methods``) with at most the one setting an ablation varies
(its factors and dimensions, ``lambda_ot``, or the base objective) and its image learning rate, which the
registry marks ``EQUAL_FIRST_STEP``: ``geodd.stepsize`` is the rule that resolves it, per IPC. GeoDM has no public
code or paper body (``docs/methods/geodm.md``, "What is known"), so every setting here is **reconstruction: our
choice** (``docs/methods/geodm.md``, "Reconstruction: our choice"):

* Equal total dimension. Every factor subset gets the same total intrinsic dimension ``total_dim``, split
  equally (E alone: E^192; E x H: E^96 x H^96; E x H x S: E^64 x H^64 x S^64), because the paper's claim
  (Theorem 4.2, as the reviews paraphrase it) compares geometries at equal dimension.
* Equal first step. GeoDM standardises the trunk features and its heads output unit-scale points, so its loss
  (and its image gradient) is far smaller than DM's on raw features; with DM's ``lr_img = 1`` the images
  barely move. ``geodd.stepsize`` sets GeoDM's image learning rate to ||Delta_DM|| / ||Delta_GeoDM(lr=1)||,
  the ratio of the first image steps of DM and of GeoDM on the same network, batch and augmentation at the
  IPC of the run, so both start with the same step size. One rate per (IPC, objective) serves every geometry
  variant of that objective.
* Memory. ``tracemalloc`` sees only Python's allocator, not torch's, so on CPU we report the peak resident
  set size (RSS) of a fresh process during the run minus its RSS just before it (Linux: the peak is reset
  through ``/proc/self/clear_refs`` after the data are loaded and a one-iteration warm-up has run); on CUDA
  ``torch.cuda.max_memory_allocated`` minus the allocation before the run.

Every verdict is the one rule of ``geodd.stats`` (``docs/methods/statistics.md``): a paired t-interval over the
seeds two variants share (``compare_runs``); the product is compared with every single space, not with the best
one picked from the same runs (``product_comparisons``, ``product_claim``).

The notebook's settings (``GeoDMStudySettings``, one per profile in ``SETTINGS``) hold sizes and sweep values
only; its caches are the memo names ``INIT_MEMO`` and ``COST_MEMO`` (first steps: ``geodd.stepsize.MEMO``).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import torch

from .. import GeoddError, default_device, stats, stepsize
from ..data import Dataset
from ..distill import DistillConfig, distill, load_training_data
from ..evaluate import evaluate_images
from ..io import fingerprint
from ..matchers.geodm import FACTORS
from ..options import require
from ..profiles import Profile
from ..runs import memo, read_record
from ..synset import SynSet
from .common import Arm, for_profile, run_grid, settings_by_profile
from .published import published

#: the registry variant every GeoDM run of this notebook starts from, and DM's
VARIANT, DM = "GeoDM", "DM"
#: the seven non-empty factor subsets of the paper's Figure 3 (plus two-factor products, which the ICLR
#: version lacked), in plotting order: singles, pairs, the full product
SUBSETS = ("E", "H", "S", "EH", "ES", "HS", "EHS")
#: the full product's label, the reference of the paired comparisons
PRODUCT = "E×H×S"
#: keys of the published OT ablation in ``geodd.studies.published`` (dataset and IPC not stated by the source)
PUBLISHED_DATASET = "unstated"
PUBLISHED_OT_KEYS = {"GeoDM with OT": ("geodm", PUBLISHED_DATASET, 0),
                     "GeoDM without OT": ("geodm-no-ot", PUBLISHED_DATASET, 0)}
#: the one-setting ablations of the full product (GeoDM matcher options): the OT term off; the SDD base objective
ABLATIONS: dict[str, dict[str, Any]] = {"no OT": {"lambda_ot": 0.0}, "SDD base": {"base": "sdd"}}
#: memo names of this notebook's caches
INIT_MEMO, COST_MEMO = "nb04-init", "nb04-cost"
#: the notebook, as figure folders name it
NOTEBOOK = "04_geodm_product_space"
_MIB = 2.0 ** 20


# ---- settings ---------------------------------------------------------------------------------------------------

def _factors(factors: str | Sequence[str]) -> tuple[str, ...]:
    fs = tuple(factors.upper()) if isinstance(factors, str) else tuple(factors)
    if not fs or len(set(fs)) != len(fs) or any(g not in FACTORS for g in fs):
        raise GeoddError(f"factors must be a non-empty subset of {FACTORS} without repeats, got {factors!r}")
    return tuple(g for g in FACTORS if g in fs)


@dataclass(frozen=True)
class GeoDMStudySettings:
    """Notebook 04's sizes and sweeps for one profile: distillation at ``ipc`` over ``seeds`` with the notebook's
    budget (``iterations``, ``batch_real``, ``inner_steps``) and evaluation (``eval_epochs``, ``eval_runs``,
    ``test_per_class``); factor ``subsets`` at ``total_dim``; the full product under ``dim_splits`` on
    ``split_seeds``; ``cost_iterations`` per time/memory measurement, in a fresh process if ``cost_isolate``."""

    ipc: int
    seeds: tuple[int, ...]
    iterations: int
    batch_real: int
    inner_steps: int
    eval_epochs: int
    eval_runs: int
    test_per_class: int | None
    total_dim: int
    dim_splits: tuple[tuple[int, ...], ...]
    split_seeds: tuple[int, ...]
    subsets: tuple[str, ...]
    cost_iterations: int
    cost_isolate: bool

    def check(self) -> None:
        require(self.ipc >= 1 and bool(self.seeds), "ipc must be positive and seeds non-empty")
        require(min(self.iterations, self.batch_real, self.inner_steps, self.eval_epochs, self.eval_runs,
                    self.cost_iterations) >= 1, "sizes must be positive")
        require(self.total_dim >= len(FACTORS), f"total_dim must be at least {len(FACTORS)}")
        for s in self.subsets:
            _factors(s)
        require("EHS" in self.subsets, "the subsets must include the full product EHS (the reference)")
        require(all(len(d) == len(FACTORS) and min(d) >= 1 and sum(d) == self.total_dim for d in self.dim_splits),
                f"every dimension split must give {len(FACTORS)} positive dimensions summing to total_dim")
        require(set(self.split_seeds) <= set(self.seeds), "split_seeds must be among the seeds")

    def profile(self, p: Profile) -> Profile:
        """``p`` with this notebook's budget (``p.resized``), so ``common.run_grid`` runs the notebook's sizes."""
        return p.resized(iterations=self.iterations, batch_real=self.batch_real, inner_steps=self.inner_steps,
                         eval_epochs=self.eval_epochs, eval_runs=self.eval_runs, test_per_class=self.test_per_class,
                         seeds=self.seeds)


_SPLITS = ((128, 32, 32), (32, 128, 32), (32, 32, 128))
_SETTINGS: dict[str, dict[str, Any]] = {
    # tiny sizes that only show the notebook runs
    "smoke": {"ipc": 2, "seeds": (0,), "iterations": 1, "batch_real": 4, "inner_steps": 1, "eval_epochs": 2,
              "eval_runs": 1, "test_per_class": 10, "total_dim": 12, "dim_splits": ((6, 3, 3),), "split_seeds": (0,),
              "subsets": ("E", "H", "S", "EHS"), "cost_iterations": 1, "cost_isolate": False},
    # 7 subsets x 3 seeds + DM, no-OT, SDD-base (3 seeds each) + 3 dimension splits = 33 short runs, 36
    # evaluations; ~15 min on 2 free cores
    "cpu": {"ipc": 10, "seeds": (0, 1, 2), "iterations": 40, "batch_real": 64, "inner_steps": 4, "eval_epochs": 50,
            "eval_runs": 1, "test_per_class": 200, "total_dim": 192, "dim_splits": _SPLITS, "split_seeds": (0,),
            "subsets": SUBSETS, "cost_iterations": 8, "cost_isolate": True},
    # the paper's Fig. 3 setting, CIFAR-10 IPC 10; None: the profile's value (the full test set)
    "paper": {"ipc": 10, "seeds": (0, 1, 2), "iterations": 20000, "batch_real": 256, "inner_steps": 1,
              "eval_epochs": 1000, "eval_runs": 5, "test_per_class": None, "total_dim": 192, "dim_splits": _SPLITS,
              "split_seeds": (0, 1, 2), "subsets": SUBSETS, "cost_iterations": 20, "cost_isolate": True},
}
#: notebook 04's settings per profile
SETTINGS: dict[str, GeoDMStudySettings] = settings_by_profile(GeoDMStudySettings, _SETTINGS, "04")


def settings(profile: str | Profile) -> GeoDMStudySettings:
    """Notebook 04's settings for ``profile`` (a name or a ``Profile``). Shown in notebook 04."""
    return for_profile(SETTINGS, profile, "04")


# ---- labels and arms ----------------------------------------------------------------------------------------------

def subset_label(factors: str | Sequence[str]) -> str:
    """"EHS" -> "E×H×S" (factors in the canonical E, H, S order). Shown in notebook 04 (04_geodm_product_space)."""
    fs = _factors(factors)
    return "×".join(fs)


def equal_split(factors: str | Sequence[str], total_dim: int) -> tuple[int, ...]:
    """``total_dim`` split as evenly as possible over the factors (remainder to the first ones).
    Shown in notebook 04 (04_geodm_product_space)."""
    fs = _factors(factors)
    if total_dim < len(fs):
        raise GeoddError(f"total_dim={total_dim} is smaller than the number of factors {len(fs)}")
    q, r = divmod(int(total_dim), len(fs))
    return tuple(q + (i < r) for i in range(len(fs)))


def geometry(factors: str | Sequence[str], dims: Sequence[int]) -> dict[str, Any]:
    """GeoDM's matcher options for a factor subset and its dimensions (flat keys, routed to their group).
    Shown in notebook 04 (04_geodm_product_space)."""
    fs = _factors(factors)
    if len(dims) != len(fs):
        raise GeoddError(f"dims {tuple(dims)} must give one dimension per factor {fs}")
    return {"factors": "".join(fs), "dims": [int(d) for d in dims]}


def geodm_arm(label: str, factors: str | Sequence[str], dims: Sequence[int], lr_img: float,
              change: dict | None = None) -> Arm:
    """The registry's GeoDM with the factor subset and its dimensions, the calibrated image learning rate
    ``lr_img`` (``geodm_lr_img``) and ``change``: the one further matcher option an ablation varies (e.g.
    ``{"lambda_ot": 0.0}``). Snapshot 0 (the initialisation) is kept so the image displacement can be measured.
    Shown in notebook 04 (04_geodm_product_space)."""
    matcher = {**geometry(factors, dims), **(change or {})}
    return Arm(label, VARIANT, {"matcher": matcher, "lr_img": float(lr_img), "snapshot_at": (0,)})


def product_matcher(total_dim: int, ablation: str | None = None) -> dict[str, Any]:
    """The full product's matcher options at equal split of ``total_dim``, with one of ``ABLATIONS`` applied.
    Shown in notebook 04 (04_geodm_product_space)."""
    if ablation is not None and ablation not in ABLATIONS:
        raise GeoddError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    return {**geometry("EHS", equal_split("EHS", total_dim)), **(ABLATIONS[ablation] if ablation else {})}


def ablation_arm(ablation: str, total_dim: int, lr_img: float) -> Arm:
    """The full product with one of ``ABLATIONS``, labelled "E×H×S, <ablation>". Shown in notebook 04."""
    if ablation not in ABLATIONS:
        raise GeoddError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    return geodm_arm(f"{PRODUCT}, {ablation}", "EHS", equal_split("EHS", total_dim), lr_img, ABLATIONS[ablation])


def dm_arm() -> Arm:
    """The registry's DM, keeping snapshot 0 (the flat reference of notebook 04)."""
    return Arm(DM, DM, {"snapshot_at": (0,)})


def subset_arms(total_dim: int, lr_img: float, subsets: Iterable[str] = SUBSETS) -> list[Arm]:
    """One GeoDM arm per factor subset at equal total dimension (module docstring).
    Shown in notebook 04 (04_geodm_product_space)."""
    return [geodm_arm(subset_label(s), s, equal_split(s, total_dim), lr_img) for s in subsets]


def split_label(dims: Sequence[int], factors: str = "EHS") -> str:
    """(128, 32, 32) -> "E128·H32·S32". Shown in notebook 04 (04_geodm_product_space)."""
    fs = _factors(factors)
    return "·".join(f"{g}{d}" for g, d in zip(fs, dims))


def split_arms(splits: Iterable[Sequence[int]], lr_img: float, factors: str = "EHS") -> list[Arm]:
    """The full product under several dimension splits (``dims`` per factor).
    Shown in notebook 04 (04_geodm_product_space)."""
    return [geodm_arm(split_label(d, factors), factors, d, lr_img) for d in splits]


# ---- the image learning rate: equal first steps, per IPC (geodd.stepsize) ---------------------------------------

def geodm_lr_img(p: Profile, train: Dataset, ipc: int, *, matcher: dict | None = None, variant: str = VARIANT,
                 device: torch.device | str | None = None, overrides: dict | None = None) -> float:
    """The image learning rate of ``variant``'s runs at ``ipc`` with GeoDM's ``matcher`` options (a geometry or
    base objective): ``geodd.stepsize.image_lr`` (the median over its calibration seeds; one rate per (IPC,
    objective) serves every geometry variant of that objective). Shown in notebook 04 (04_geodm_product_space)."""
    return stepsize.image_lr(variant, p, train, ipc, matcher=matcher, overrides=overrides, device=device)


def geodm_grid(p: Profile, ipcs: Iterable[int], seeds: Iterable[int], *, train: Dataset, test: Dataset,
               label: str = VARIANT, matcher: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """The registry's GeoDM at every IPC, each with the image learning rate calibrated at that IPC (first seed),
    as ``common.run_grid`` rows with an ``lr_img`` column. Shown in notebook 06 (06_results)."""
    seeds = tuple(seeds)
    frames = []
    for ipc in ipcs:
        lr = geodm_lr_img(p, train, ipc, matcher=matcher)
        over = {"lr_img": lr, **({"matcher": dict(matcher)} if matcher else {})}
        frames.append(run_grid(p, [Arm(label, VARIANT, over)], [ipc], seeds, train=train, test=test,
                               progress=progress).assign(lr_img=lr))
    return pd.concat(frames, ignore_index=True)


# ---- published numbers -----------------------------------------------------------------------------------------

def published_ot_ablation() -> pd.DataFrame:
    """The only published GeoDM ablation numbers (with and without OT), from ``geodd.studies.published``; a
    setting that table lacks shows NaN. Shown in notebook 04 (04_geodm_product_space)."""
    rows = []
    for setting, key in PUBLISHED_OT_KEYS.items():
        hit = published(*key)
        rows.append({"setting": setting, "acc": hit[0] if hit else float("nan"), "dataset": "not stated",
                     "ipc": "not stated", "source": hit[2] if hit else "missing from geodd.studies.published"})
    return pd.DataFrame(rows)


# ---- reading runs ----------------------------------------------------------------------------------------------

def image_displacement(synset: SynSet) -> float:
    """Mean over images of ||s_final - s_0|| / ||s_0||: how far distillation moved the images from their
    initialisation (needs snapshot 0). Shown in notebook 04 (04_geodm_product_space)."""
    if 0 not in synset.snapshots:
        raise GeoddError("the synthetic set has no snapshot at iteration 0; distil with snapshot_at=(0,)")
    x0, x1 = synset.snapshots[0].flatten(1).double(), synset.images.flatten(1).double()
    return float(((x1 - x0).norm(dim=1) / x0.norm(dim=1).clamp_min(1e-12)).mean())


def add_displacement(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a ``displacement`` column (``image_displacement`` of each run_dir's synthetic set).
    Shown in notebook 04 (04_geodm_product_space)."""
    out = runs.copy()
    out["displacement"] = [image_displacement(SynSet.load(f"{d}/synset.pt")) for d in out["run_dir"]]
    return out


def geometry_history(record: dict) -> pd.DataFrame:
    """The per-geometry-step log of a GeoDM run (record["geometry"]) as a DataFrame: iteration, c_H, c_S,
    w_E, w_H, w_S, proto_acc, ... (only the columns the run's factors have).
    Shown in notebook 04 (04_geodm_product_space)."""
    rows = record.get("geometry") or []
    if not rows:
        raise GeoddError("the record has no geometry log (not a GeoDM run, or no iteration was run)")
    return pd.DataFrame(rows)


def geometry_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """``geometry_history`` of every GeoDM run in ``runs`` (rows with run_dir), tagged with method and seed.
    Shown in notebook 04 (04_geodm_product_space)."""
    frames = []
    for r in runs.itertuples():
        rec = read_record(r.run_dir)
        if rec.get("geometry"):
            h = geometry_history(rec)
            h.insert(0, "seed", r.seed)
            h.insert(0, "method", r.method)
            frames.append(h)
    if not frames:
        raise GeoddError("none of these runs has a geometry log")
    return pd.concat(frames, ignore_index=True)


def _mean_sd(values: pd.Series, digits: int) -> str:
    """"m ± sd" (sample sd over seeds), or "m (n = 1)" for a single seed, which has no spread to show."""
    values = values.dropna()
    if not len(values):
        return ""
    if len(values) < 2:
        return f"{values.mean():.{digits}f} (n = {len(values)})"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def accuracy_summary(df: pd.DataFrame, by: Sequence[str] = ("method",), value: str = "acc") -> pd.DataFrame:
    """Mean, sample sd and number of seeds of ``value`` per group, and ``"<value> (%)"`` as "72.10 ± 0.50"
    ("72.10 (n = 1)" for a single seed: never "± 0.00"). Shown in notebook 04 (04_geodm_product_space)."""
    g = df.groupby(list(by), sort=False)[value]
    out = g.agg(mean="mean", std=lambda s: float(s.std(ddof=1)) if len(s) > 1 else float("nan"),
                seeds="count").reset_index()
    out[f"{value} (%)"] = g.agg(lambda s: _mean_sd(s, 2)).values
    return out


def final_geometry(histories: pd.DataFrame) -> pd.DataFrame:
    """The last logged curvatures and weights per method, mean ± sample sd over seeds ("m (n = 1)" for one seed;
    columns c_*, w_*, proto_acc). Shown in notebook 04 (04_geodm_product_space)."""
    cols = [c for c in histories.columns if c.startswith(("c_", "w_")) or c == "proto_acc"]
    last = histories.sort_values("iteration").groupby(["method", "seed"], sort=False).tail(1)
    return last.groupby("method", sort=False)[cols].agg(lambda s: _mean_sd(s, 3)).reset_index()


def geometry_change(histories: pd.DataFrame, method: str) -> pd.DataFrame:
    """For one method: each logged curvature/weight/prototype accuracy at the first and the last geometry step,
    averaged over seeds, with the number of geometry steps (rows: quantity; columns: first, last, change, steps).
    Shown in notebook 04 (04_geodm_product_space)."""
    h = histories[histories["method"] == method]
    if h.empty:
        raise GeoddError(f"no geometry history for method {method!r}")
    cols = [c for c in h.columns if (c.startswith(("c_", "w_")) or c == "proto_acc") and h[c].notna().any()]
    h = h.sort_values("iteration")
    first = h.groupby("seed").head(1)[cols].mean()
    last = h.groupby("seed").tail(1)[cols].mean()
    steps = int(h.groupby("seed").size().median())
    out = pd.DataFrame({"first": first, "last": last, "change": last - first})
    out["steps"] = steps
    return out.rename_axis("quantity").reset_index()


# ---- comparisons -----------------------------------------------------------------------------------------------

def compare_runs(runs: pd.DataFrame, pairs: Iterable[Sequence[Any]], *, by: str | Sequence[str] | None = None,
                 value: str = "acc", level: float = 0.95) -> pd.DataFrame:
    """``geodd.stats.compare_table`` on this notebook's rows: methods in column ``method``, paired on ``seed`` (a
    seed fixes the initial images, networks, real batches and augmentations of every method), scores in accuracy
    points (``scale`` 1: the rows hold percent). ``pairs``: ``(a, b, alternative)``. One shared seed gives n = 1
    and "inconclusive" (no interval). Shown in notebook 04 (04_geodm_product_space)."""
    return stats.compare_table(runs, by=by, score=value, pair_on="seed", pairs=pairs, level=level, scale=1,
                               label="method")


def product_comparisons(runs: pd.DataFrame, product: str = PRODUCT, value: str = "acc",
                        level: float = 0.95) -> pd.DataFrame:
    """The product against every other method of ``runs`` (each single space, each pair, DM), claim "greater":
    one ``compare_runs`` row per method, in the order of the runs. Every single space is compared, not only the
    one with the best mean: picking the best single space from the same runs and testing the product against it
    would reuse the data that chose it (the winner's mean is biased upwards). Shown in notebook 04
    (04_geodm_product_space)."""
    if product not in set(runs["method"]):
        raise GeoddError(f"the product {product!r} is not among the methods {sorted(set(runs['method']))}")
    others = [m for m in dict.fromkeys(runs["method"]) if m != product]
    return compare_runs(runs, [(product, m, "greater") for m in others], value=value, level=level)


def comparison_sentences(table: pd.DataFrame, unit: str = "pp") -> str:
    """One Markdown bullet per row of a ``compare_runs`` table: ``geodd.stats.verdict_sentence`` on the row
    ("a − b" read from its ``comparison``), so that prose states only what the table holds. Shown in notebook
    04 (04_geodm_product_space)."""
    level = table.attrs.get("level", 0.95)
    lines = []
    for _, r in table.iterrows():
        a, b = r["comparison"].split(" − ", 1)
        lines.append(f"- {stats.verdict_sentence(r, a, b, unit=unit, level=level)}")
    return "\n".join(lines)


def product_claim(comparisons: pd.DataFrame, product: str = PRODUCT,
                  singles: Sequence[str] = ("E", "H", "S")) -> dict[str, Any]:
    """The paper's claim "the product beats every single space", from the rows "product − E/H/S" of
    ``product_comparisons`` (each the one rule of ``geodd.stats``, claim "greater").

    The claim is a conjunction, so it is "supported" only when every row is (an intersection-union test: each
    row at the rule's level, no multiplicity correction needed); "contradicted" when a single space scores
    significantly higher than the product (a row "contradicted"; each row has a 2.5 % false rate, so with three
    singles up to 7.5 %); otherwise "inconclusive". Returns verdict, the count of each row verdict, singles, the
    fewest shared seeds (n) and ``text``: one Markdown paragraph built from the rows. Shown in notebook 04
    (04_geodm_product_space)."""
    rows = comparisons.set_index("comparison")
    names = [f"{product} − {m}" for m in singles]
    missing = [n for n in names if n not in rows.index]
    if missing:
        raise GeoddError(f"comparisons {missing} are missing; run product_comparisons on runs with every single space")
    verdicts = rows.loc[names, "verdict"].tolist()
    count = {v: verdicts.count(v) for v in ("supported", "contradicted", "inconclusive")}
    verdict = ("supported" if count["supported"] == len(names) else
               "contradicted" if count["contradicted"] else "inconclusive")
    n = int(rows.loc[names, "n"].min())
    text = (f"The product {product} beats every single space only if all {len(names)} paired comparisons "
            f"are supported. Here {count['supported']} are supported, {count['contradicted']} contradicted and "
            f"{count['inconclusive']} inconclusive (fewest shared seeds in a row: n = {n}), so the claim is "
            f"**{verdict}** at this scale.\n\n"
            + comparison_sentences(comparisons[comparisons["comparison"].isin(names)]))
    return {"verdict": verdict, **count, "singles": list(singles), "n": n, "text": text}


def save_comparisons(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """``geodd.stats.format_table(table)`` written to ``figures/04_geodm_product_space/<name>.md``, rendered with
    ``disable_numparse`` so that "+1.20" and "0.012" stay as written, and the numbers to ``<name>.csv``;
    returns the formatted table for display. Shown in notebook 04 (04_geodm_product_space)."""
    from .. import plots  # here, not at the top: the cost-measurement process imports this module
    shown = stats.format_table(table)
    folder = plots.figure_dir(NOTEBOOK)
    table.to_csv(folder / f"{name}.csv", index=False)
    (folder / f"{name}.md").write_text(shown.to_markdown(index=False, disable_numparse=True) + "\n")
    return shown


def evaluate_initialisation(p: Profile, run_dir: str, test: Dataset, seed: int, *, arch: str = "convnet",
                            progress: bool = True) -> dict:
    """Evaluate a run's initial images (snapshot 0: random real images, identical for every method of a seed),
    under the profile's evaluation; memo-cached (keyed by the images' fingerprint). Shown in notebook 04."""
    syn = SynSet.load(f"{run_dir}/synset.pt")
    if 0 not in syn.snapshots:
        raise GeoddError(f"{run_dir} has no snapshot at iteration 0")
    x0 = syn.snapshots[0]
    params = {"images": fingerprint({"images": x0, "labels": syn.labels}), "n": len(x0), "test": test.name,
              "test_n": len(test), "arch": arch, "seed": seed, **p.eval_kwargs()}
    return memo(INIT_MEMO, params, lambda: evaluate_images(x0, syn.labels, test, arch=arch, seed=seed,
                                                           progress=progress, **p.eval_kwargs()).as_dict())


# ---- time and memory -------------------------------------------------------------------------------------------

def timing_table(runs: pd.DataFrame, iterations: int, reference: str = DM) -> pd.DataFrame:
    """Seconds per distillation iteration per method, the median over its runs: mean_iter_s = distill_s /
    iterations (everything: network sampling, real embedding, geometry step, image steps) and the engine's
    median_iter_s, each also as a ratio to ``reference``. Shown in notebook 04 (04_geodm_product_space)."""
    if iterations <= 0:
        raise GeoddError(f"iterations must be positive, got {iterations}")
    t = runs.assign(mean_iter_s=runs["distill_s"] / iterations)
    out = t.groupby("method", sort=False)[["mean_iter_s", "median_iter_s"]].median().reset_index()
    if reference not in set(out["method"]):
        raise GeoddError(f"reference {reference!r} is not among the methods {list(out['method'])}")
    ref = out.set_index("method").loc[reference]
    out[f"mean_vs_{reference}"] = out["mean_iter_s"] / ref["mean_iter_s"]
    out[f"median_vs_{reference}"] = out["median_iter_s"] / ref["median_iter_s"]
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to /proc/self/clear_refs); False where that is impossible.
    Shown in notebook 04 (04_geodm_product_space)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The process's peak resident set size in bytes (``getrusage``: KiB on Linux, bytes on macOS).
    Shown in notebook 04 (04_geodm_product_space)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def current_rss_bytes() -> int:
    """The process's current resident set size in bytes (/proc/self/statm; the peak where /proc is missing).
    Shown in notebook 04 (04_geodm_product_space)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def _cost_worker(cfg_dict: dict, threads: int, device: str | None) -> dict[str, Any]:
    """Run one distillation and measure it (the body of ``measure_cost``; runs in a fresh process there)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _measure(cfg_dict, int(threads), device)
    finally:
        torch.set_num_threads(previous)


def _measure(cfg_dict: dict, threads: int, device: str | None) -> dict[str, Any]:
    cfg = DistillConfig.from_dict(cfg_dict)
    dev = torch.device(device) if device else default_device()
    train = load_training_data(cfg)
    cuda = dev.type == "cuda"
    # warm-up: one iteration first, so lazy library set-up (kernels, JIT-compiled geoopt maths, first-touch
    # allocator pools) is neither timed nor counted as the objective's memory
    distill(replace(cfg, iterations=1, snapshot_at=(), checkpoint_every=0), train=train, device=dev,
            progress=False, resume=False)
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        gpu0 = torch.cuda.memory_allocated(dev)
    rss0 = current_rss_bytes()
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    _, record = distill(cfg, train=train, device=dev, progress=False, resume=False)
    if cuda:
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - t0
    peak = peak_rss_bytes()
    out = {"method": cfg.method, "iterations": cfg.iterations, "threads": int(threads), "device": dev.type,
           "wall_s": wall, "mean_iter_s": record["timings"]["total_s"] / cfg.iterations,
           "median_iter_s": record["timings"]["median_iter_s"], "rss_before_mib": rss0 / _MIB,
           "rss_peak_mib": peak / _MIB, "peak_rss_delta_mib": max(0.0, (peak - rss0) / _MIB),
           "rss_peak_reset": reset}
    if cuda:
        out["cuda_peak_mib"] = (torch.cuda.max_memory_allocated(dev) - gpu0) / _MIB
    return out


def measure_cost(cfg: DistillConfig, *, isolate: bool = True, threads: int | None = None,
                 device: torch.device | str | None = None) -> dict[str, Any]:
    """Wall-clock seconds per iteration (mean and the engine's median) and the extra peak memory of
    ``distill(cfg)``: peak RSS minus the RSS before the run (CPU; floored at 0, as the kernel's counters lag by a
    few pages; ``rss_before_mib`` and ``rss_peak_mib`` are the raw readings), and on CUDA the peak allocated
    memory minus the allocation before it; both after a one-iteration warm-up run, so one-off library set-up is
    not counted. ``isolate`` runs it in a fresh spawned process, so earlier work in the caller cannot hide the
    peak (module docstring): ``python -m geodd.studies.geodm_product_space JOB OUT`` with the config in the JSON
    file JOB; the result is written to OUT. Shown in notebook 04 (04_geodm_product_space)."""
    threads = int(threads or torch.get_num_threads())
    dev = str(device) if device is not None else None
    if not isolate:
        return _cost_worker(cfg.as_dict(), threads, dev)
    # a fresh interpreter running this module (not multiprocessing: it would re-run a caller's unguarded script)
    with tempfile.TemporaryDirectory() as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"config": cfg.as_dict(), "threads": threads, "device": dev}, default=str))
        proc = subprocess.run([sys.executable, "-m", __name__, str(job), str(result)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0 or not result.exists():
            tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise GeoddError(f"the cost-measurement process failed (exit {proc.returncode}): {tail[0]}")
        return json.loads(result.read_text())


def cost_table(p: Profile, arms: Sequence[Arm], *, ipc: int, seed: int, iterations: int, train: Dataset,
               isolate: bool = True, reference: str = DM) -> pd.DataFrame:
    """``measure_cost`` for each arm at the profile's sizes with ``iterations`` iterations (memo-cached), with each
    column's ratio to ``reference``'s. Shown in notebook 04 (04_geodm_product_space)."""
    rows = []
    threads = torch.get_num_threads()
    for arm in arms:
        cfg = replace(arm.config(p, ipc, seed, train), iterations=int(iterations), snapshot_at=())
        params = {"config": cfg.as_dict(), "threads": threads, "device": str(default_device()), "isolate": isolate}
        res = memo(COST_MEMO, params, lambda cfg=cfg: measure_cost(cfg, isolate=isolate, threads=threads))
        rows.append({**res, "method": arm.label, "objective": res["method"]})
    df = pd.DataFrame(rows)
    if reference in set(df["method"]):
        ref = df[df["method"] == reference].iloc[0]
        for col in ("mean_iter_s", "median_iter_s", "peak_rss_delta_mib", "cuda_peak_mib"):
            if col in df and ref.get(col, 0):
                df[f"{col}_vs_{reference}"] = df[col] / ref[col]
    return df


__all__ = ["VARIANT", "DM", "SUBSETS", "PRODUCT", "PUBLISHED_DATASET", "PUBLISHED_OT_KEYS", "ABLATIONS",
           "INIT_MEMO", "COST_MEMO", "GeoDMStudySettings", "SETTINGS", "settings", "subset_label",
           "equal_split", "geometry", "geodm_arm", "product_matcher", "ablation_arm", "dm_arm", "subset_arms",
           "split_label", "split_arms",
           "geodm_lr_img", "geodm_grid", "published_ot_ablation", "image_displacement",
           "add_displacement", "geometry_history", "geometry_histories", "accuracy_summary", "final_geometry",
           "geometry_change", "compare_runs", "product_comparisons", "comparison_sentences", "product_claim",
           "save_comparisons", "NOTEBOOK", "evaluate_initialisation", "timing_table", "reset_peak_rss",
           "peak_rss_bytes", "current_rss_bytes", "measure_cost", "cost_table"]


def _main(argv: Sequence[str]) -> None:
    """``python -m geodd.studies.geodm_product_space JOB OUT``: run ``_cost_worker`` on the job in JSON file JOB,
    result to OUT."""
    if len(argv) != 2:
        raise SystemExit("usage: python -m geodd.studies.geodm_product_space JOB.json OUT.json")
    job = json.loads(Path(argv[0]).read_text())
    result = _cost_worker(job["config"], int(job["threads"]), job.get("device"))
    Path(argv[1]).write_text(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
