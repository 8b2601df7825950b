"""What every notebook's tables share: cached grids of distillation runs, their evaluations and the baselines.

Every notebook table is a grid of (arm, IPC, seed) runs evaluated the same way. An ``Arm`` is a registry variant
(``geodd.methods``) under a label, with at most the one setting an ablation varies overridden. These helpers run
a grid through the run store (``geodd.runs``: a finished run or evaluation is loaded, never recomputed) and
return a tidy ``pandas.DataFrame`` with one row per (run, evaluation), so notebooks only plot and print.
Shown in notebooks 00 (00_dm_baseline) and 06 (06_results); used by 02-04.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import pandas as pd

from .. import GeoddError, methods, stepsize
from ..data import Dataset
from ..distill import NON_RESULT_FIELDS
from ..evaluate import evaluate_sets, random_subset, whole_dataset
from ..options import from_mapping
from ..profiles import Profile
from ..runs import cached_distill, cached_evaluate_many, memo, memo_many

S = TypeVar("S")


def settings_by_profile(cls: type[S], raw: Mapping[str, Mapping[str, Any]], notebook: str) -> dict[str, S]:
    """A notebook's settings dataclass for each profile, built and checked by ``geodd.options.from_mapping``.
    Used by every study module."""
    return {name: from_mapping(cls, values, what=f"notebook {notebook} settings ({name})")
            for name, values in raw.items()}


def for_profile(table: Mapping[str, S], profile: str | Profile, notebook: str) -> S:
    """``table[profile]`` for a profile or its name; an unknown profile is a one-line error naming the notebook.
    Used by every study module's ``settings``."""
    name = profile.name if isinstance(profile, Profile) else str(profile)
    if name not in table:
        raise GeoddError(f"notebook {notebook} has no settings for profile {name!r}; choose one of "
                         f"{', '.join(table)}")
    return table[name]


@dataclass(frozen=True)
class Arm:
    """A labelled run configuration: registry ``variant`` plus ``overrides`` (an ablation's one change, or
    non-result fields such as ``snapshot_at``), e.g. ``Arm("DM+HDD, lam 5", "DM+HDD", {"matcher": {"lam": 5.0}})``.
    Shown in notebook 00 (00_dm_baseline)."""

    label: str
    variant: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, p: Profile, ipc: int, seed: int, train: Dataset):
        """The ``DistillConfig`` of this arm at (ipc, seed) on ``train`` under profile ``p``'s sizes. A variant
        whose rate the registry marks ``EQUAL_FIRST_STEP`` gets ``geodd.stepsize``'s rate at this IPC (with the
        arm's matcher options), unless the arm sets ``lr_img``."""
        over = dict(self.overrides)
        if methods.get(self.variant).calibrated_lr and "lr_img" not in over:
            shape = {k: v for k, v in over.items() if k not in ("matcher", *NON_RESULT_FIELDS, "iterations")}
            over["lr_img"] = stepsize.image_lr(self.variant, p, train, ipc, matcher=over.get("matcher"),
                                               overrides=shape)
        return methods.config(self.variant, p, ipc=ipc, seed=seed, dataset=train.name, imf=train.imf, **over)


def arms(*names: str) -> list[Arm]:
    """The registry variants ``names`` as arms labelled by their names (the standard form of each method).
    Shown in notebooks 05 (05_ot_generative) and 06 (06_results)."""
    return [Arm(n, n) for n in names]


def _with_budgets(arm: Arm, budgets: Sequence[int] | None) -> Arm:
    """``arm`` run to the largest budget, keeping a snapshot at each smaller one."""
    if not budgets:
        return arm
    over = dict(arm.overrides)
    keep = set(over.get("snapshot_at", ())) | {int(b) for b in budgets if b != max(budgets)}
    return Arm(arm.label, arm.variant, {**over, "iterations": int(max(budgets)), "snapshot_at": tuple(sorted(keep))})


def run_arm(p: Profile, arm: Arm, ipc: int, seed: int, *, train: Dataset, test: Dataset,
            arch: str = "convnet", progress: bool = True) -> dict:
    """Distil (cached) and evaluate (cached) one arm; returns one table row.
    Used in notebook 03 (03_csdm_amplitude_phase) through its study module."""
    return run_budgets(p, arm, ipc, seed, train=train, test=test, arch=arch, progress=progress)[0]


def _budget_snapshots(budgets: Sequence[int] | None) -> list[tuple[int | None, int | None]]:
    """(budget, snapshot to evaluate) per row: the largest budget is the run's final images."""
    return [(None if b is None else int(b), None if b is None or b == max(budgets) else int(b))
            for b in (budgets or (None,))]


def _budget_row(arm: Arm, ipc: int, seed: int, arch: str, record: dict, run_dir, ev: dict, budget: int | None,
                budgets: Sequence[int] | None) -> dict:
    """One table row of an evaluated run (at ``budget`` image steps, or its final images)."""
    total = record["timings"]["total_s"]
    row = {"method": arm.label, "ipc": ipc, "seed": seed, "arch": arch, "acc": 100 * ev["mean"],
           "acc_std_runs": 100 * ev["std"], "distill_s": total if budget is None else total * budget / max(budgets),
           "median_iter_s": record["timings"]["median_iter_s"], "eval_s": ev["seconds"], "run_dir": str(run_dir)}
    if budget is not None:
        row["budget"] = int(budget)
    row.update({f"acc_{name}": 100 * value for name, value in ev.get("groups", {}).items()})
    return row


def run_budgets(p: Profile, arm: Arm, ipc: int, seed: int, *, train: Dataset, test: Dataset,
                arch: str = "convnet", progress: bool = True, budgets: Sequence[int] | None = None) -> list[dict]:
    """Distil (cached) and evaluate (cached) one arm; one table row per budget (image steps: the run goes to the
    largest and the smaller ones are its snapshots, evaluated the same way and together), or one row without
    ``budgets``. Not called in a notebook; used by ``geodd.studies.common``."""
    return _grid_rows(p, [(arm, ipc, seed)], train=train, test=test, arch=arch, progress=progress, budgets=budgets)


def _grid_rows(p: Profile, grid: list[tuple[Arm, int, int]], *, train: Dataset, test: Dataset, arch: str,
               progress: bool, budgets: Sequence[int] | None) -> list[dict]:
    """Every (arm, ipc, seed) of ``grid`` distilled (cached) first, then every uncached evaluation of every budget
    in one ``cached_evaluate_many`` call (their nets train in groups); rows in grid order, budgets within."""
    done = [cached_distill(_with_budgets(a, budgets).config(p, ipc, seed, train), train=train, progress=progress)
            for a, ipc, seed in grid]
    snaps = _budget_snapshots(budgets)
    evs = iter(cached_evaluate_many([run_dir for _, _, run_dir in done for _ in snaps], test, arch=arch,
                                    seeds=[seed for _, _, seed in grid for _ in snaps],
                                    snapshots=[snap for _ in grid for _, snap in snaps], progress=progress,
                                    **p.eval_kwargs()))
    return [_budget_row(a, ipc, seed, arch, record, run_dir, next(evs), budget, budgets)
            for (a, ipc, seed), (_, record, run_dir) in zip(grid, done) for budget, _ in snaps]


def run_grid(p: Profile, arms_: Iterable[Arm], ipcs: Iterable[int], seeds: Iterable[int], *,
             train: Dataset, test: Dataset, arch: str = "convnet", progress: bool = True,
             budgets: Sequence[int] | None = None) -> pd.DataFrame:
    """``run_arm`` over every (arm, ipc, seed); one row each, or one per budget with ``budgets`` (column
    ``budget``; ``distill_s`` is the run's time scaled to that budget). Every run is distilled (cached) first; then
    the uncached evaluations of all of them run in one ``geodd.runs.cached_evaluate_many`` call, so their nets
    train together in groups (``geodd.evaluate.evaluate_sets``).
    Shown in notebooks 00 (00_dm_baseline), 04 (04_geodm_product_space), 05 (05_ot_generative) and 06 (06_results)."""
    ipcs, seeds = list(ipcs), list(seeds)
    grid = [(a, ipc, seed) for a in arms_ for ipc in ipcs for seed in seeds]
    return pd.DataFrame(_grid_rows(p, grid, train=train, test=test, arch=arch, progress=progress, budgets=budgets))


def random_baseline(p: Profile, ipc: int, seeds: Iterable[int], *, train: Dataset, test: Dataset,
                    arch: str = "convnet", progress: bool = True) -> pd.DataFrame:
    """The random-real-subset baseline under the profile's evaluation, one row per seed (cached; the uncached
    seeds are evaluated together, ``geodd.evaluate.evaluate_sets``).
    Shown in notebooks 00 (00_dm_baseline) and 06 (06_results)."""
    seeds = list(seeds)
    params = [{"dataset": train.name, "n": len(train), "test": len(test), "ipc": ipc, "seed": seed, "arch": arch,
               **p.eval_kwargs()} for seed in seeds]

    def compute(missing: list[int]) -> list[dict]:
        sets = [random_subset(train, ipc, seed=seeds[i]) for i in missing]
        counts = train.counts if train.name.endswith("-lt") else None
        return [ev.as_dict() for ev in evaluate_sets(sets, test, arch=arch, seeds=[seeds[i] for i in missing],
                                                     train_counts=[counts] * len(missing), progress=progress,
                                                     **p.eval_kwargs())]

    rows = []
    for seed, ev in zip(seeds, memo_many("random", params, compute)):
        row = {"method": "Random", "ipc": ipc, "seed": seed, "arch": arch, "acc": 100 * ev["mean"],
               "acc_std_runs": 100 * ev["std"], "distill_s": 0.0, "eval_s": ev["seconds"]}
        row.update({f"acc_{k}": 100 * v for k, v in ev.get("groups", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def whole_baseline(p: Profile, *, train: Dataset, test: Dataset, progress: bool = True) -> dict:
    """The whole-dataset reference trained for ``p.whole_epochs`` epochs (cached).
    Shown in notebook 00 (00_dm_baseline)."""
    params = {"dataset": train.name, "n": len(train), "test": len(test), "epochs": p.whole_epochs, "amp": p.eval_amp}
    return memo("whole", params, lambda: whole_dataset(train, test, epochs=p.whole_epochs, amp=p.eval_amp,
                                                       progress=progress).as_dict())


def summarise(df: pd.DataFrame, by: list[str] | None = None, value: str = "acc") -> pd.DataFrame:
    """Mean and std over seeds of ``value`` per group (default: method x ipc), plus the number of seeds.
    Shown in notebooks 00 (00_dm_baseline), 04 (04_geodm_product_space), 05 (05_ot_generative) and 06 (06_results)."""
    by = by or ["method", "ipc"]
    g = df.groupby(by, sort=False)[value]
    out = g.agg(mean="mean", std=lambda s: float(np.std(s, ddof=0)), seeds="count").reset_index()
    out[f"{value} (%)"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(out["mean"], out["std"])]
    return out
