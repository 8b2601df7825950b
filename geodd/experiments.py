"""Notebook-level orchestration: cached grids of distillation runs, their evaluations and the baselines.

Every notebook table is a grid of (method, IPC, seed) runs evaluated the same way. These helpers run a grid
through the caches of ``geodd.records`` (a finished run or evaluation is loaded, never recomputed) and return a
tidy ``pandas.DataFrame`` with one row per (run, evaluation), so notebooks only plot and print.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .data import Dataset
from .evaluate import evaluate_images, random_subset, whole_dataset
from .profiles import Profile
from .records import cached_distill, cached_evaluate, memo


@dataclass(frozen=True)
class Variant:
    """A labelled method configuration: ``Variant("DM+HDD", "hdd", {"matcher": {"k": 1.0}})``."""

    label: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)


def run_variant(p: Profile, v: Variant, ipc: int, seed: int, *, train: Dataset, test: Dataset,
                arch: str = "convnet", progress: bool = True) -> dict:
    """Distil (cached) and evaluate (cached) one variant; returns one table row."""
    cfg = p.distill_config(v.method, ipc=ipc, seed=seed, **{"dataset": train.name, "imf": train.imf, **v.overrides})
    synset, record, run_dir = cached_distill(cfg, train=train, progress=progress)
    ev = cached_evaluate(run_dir, test, arch=arch, seed=seed, progress=progress, **p.eval_kwargs())
    row = {"method": v.label, "ipc": ipc, "seed": seed, "arch": arch, "acc": 100 * ev["mean"],
           "acc_std_runs": 100 * ev["std"], "distill_s": record["timings"]["total_s"],
           "median_iter_s": record["timings"]["median_iter_s"], "eval_s": ev["seconds"], "run_dir": str(run_dir)}
    for name, value in ev.get("groups", {}).items():
        row[f"acc_{name}"] = 100 * value
    return row


def run_grid(p: Profile, variants: Iterable[Variant], ipcs: Iterable[int], seeds: Iterable[int], *,
             train: Dataset, test: Dataset, arch: str = "convnet", progress: bool = True) -> pd.DataFrame:
    """``run_variant`` over every (variant, ipc, seed); one row each."""
    rows = [run_variant(p, v, ipc, seed, train=train, test=test, arch=arch, progress=progress)
            for v in variants for ipc in ipcs for seed in seeds]
    return pd.DataFrame(rows)


def random_baseline(p: Profile, ipc: int, seeds: Iterable[int], *, train: Dataset, test: Dataset,
                    arch: str = "convnet", progress: bool = True) -> pd.DataFrame:
    """The random-real-subset baseline under the profile's evaluation, one row per seed (cached)."""
    rows = []
    for seed in seeds:
        params = {"dataset": train.name, "n": len(train), "test": len(test), "ipc": ipc, "seed": seed, "arch": arch,
                  **p.eval_kwargs()}

        def compute(seed=seed):
            x, y = random_subset(train, ipc, seed=seed)
            return evaluate_images(x, y, test, arch=arch, seed=seed, progress=progress,
                                   train_counts=train.counts if train.name.endswith("-lt") else None,
                                   **p.eval_kwargs()).as_dict()

        ev = memo("random", params, compute)
        row = {"method": "Random", "ipc": ipc, "seed": seed, "arch": arch, "acc": 100 * ev["mean"],
               "acc_std_runs": 100 * ev["std"], "distill_s": 0.0, "eval_s": ev["seconds"]}
        row.update({f"acc_{k}": 100 * v for k, v in ev.get("groups", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def whole_baseline(p: Profile, *, train: Dataset, test: Dataset, progress: bool = True) -> dict:
    """The whole-dataset reference trained for ``p.whole_epochs`` epochs (cached)."""
    params = {"dataset": train.name, "n": len(train), "test": len(test), "epochs": p.whole_epochs, "amp": p.eval_amp}
    return memo("whole", params, lambda: whole_dataset(train, test, epochs=p.whole_epochs, amp=p.eval_amp,
                                                       progress=progress).as_dict())


def summarise(df: pd.DataFrame, by: list[str] | None = None, value: str = "acc") -> pd.DataFrame:
    """Mean and std over seeds of ``value`` per group (default: method x ipc), plus the number of seeds."""
    by = by or ["method", "ipc"]
    g = df.groupby(by, sort=False)[value]
    out = g.agg(mean="mean", std=lambda s: float(np.std(s, ddof=0)), seeds="count").reset_index()
    out[f"{value} (%)"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(out["mean"], out["std"])]
    return out


def standard_variants(p: Profile) -> dict[str, Variant]:
    """The canonical configuration of every method under profile ``p``.

    Notebooks that show a method in its standard form use these, so the runs are cached once and notebook 06
    (all methods side by side) reuses them instead of recomputing. IDM's pool sizes come from ``p["idm"]``.
    """
    idm = {"schedule": "idm", "lr_img": p["idm"].get("lr_img", 0.2),
           "idm": {k: v for k, v in p["idm"].items() if k != "lr_img"}}
    return {
        "DM": Variant("DM", "dm"),
        "DM+HDD": Variant("DM+HDD", "hdd"),
        "IDM": Variant("IDM", "dm", idm),
        "IDM+HDD": Variant("IDM+HDD", "hdd", idm),
        "SDD": Variant("SDD", "sdd"),
        "CSDM": Variant("CSDM", "csdm"),
        "GeoDM": Variant("GeoDM", "geodm"),
    }
