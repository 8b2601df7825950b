"""Notebook 06 (06_results): every method side by side, its settings per profile, and a verdict per claim.

A claim "A beats B" is judged on the per-seed accuracies of both: **yes** when the mean gain exceeds the
combined standard error of the two means (sqrt(s_a^2/n_a + s_b^2/n_b)) — roughly one standard error, a deliberately
lenient bar for 3 seeds; **no** when the gain is below minus that error; otherwise, or with a single seed on
either side, **inconclusive**. A claim
with a numeric threshold ("a gain of 1-3 points", "a drop of at most 5.7 points") compares the mean with it.
Reconstruction: our choice of rule; the notebook prints the numbers behind every verdict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..profiles import Profile
from .common import for_profile


def standard_error(a: Sequence[float], b: Sequence[float]) -> float:
    """The standard error of mean(a) - mean(b) from the per-seed spreads (0 for single values).
    Not called in a notebook; used by ``geodd.studies.results``."""
    def var_over_n(x):
        x = np.asarray(x, dtype=float)
        return float(np.var(x, ddof=1) / len(x)) if len(x) > 1 else 0.0
    return float(np.sqrt(var_over_n(a) + var_over_n(b)))


def verdict(a: Sequence[float], b: Sequence[float]) -> tuple[str, float, float]:
    """("yes" | "no" | "inconclusive", mean gain a - b, its standard error) for the claim "a beats b".
    Not called in a notebook; used by ``geodd.studies.results``."""
    if len(a) == 0 or len(b) == 0:
        return "not measured", float("nan"), float("nan")
    gain = float(np.mean(a) - np.mean(b))
    se = standard_error(a, b)
    if min(len(a), len(b)) < 2:  # one seed says nothing about noise
        return "inconclusive", gain, se
    if gain > se and gain > 0:
        return "yes", gain, se
    if gain < -se and gain < 0:
        return "no", gain, se
    return "inconclusive", gain, se


@dataclass(frozen=True)
class Claim:
    """A seed paper's claim that method ``better`` beats ``worse`` (rows selected from a results table).
    Shown in notebook 06 (06_results)."""

    paper: str
    statement: str
    better: str
    worse: str
    ipc: int | None = None          # None: all IPCs pooled per seed-row
    dataset: str | None = None      # restrict to a dataset column value (e.g. a long-tailed one)


def judge(claims: Sequence[Claim], df: pd.DataFrame, *, value: str = "acc") -> pd.DataFrame:
    """One row per claim: the two means, the gain, its standard error and the verdict.
    Shown in notebook 06 (06_results)."""
    rows = []
    for c in claims:
        sel = df
        if c.ipc is not None:
            sel = sel[sel["ipc"] == c.ipc]
        if c.dataset is not None and "dataset" in sel:
            sel = sel[sel["dataset"] == c.dataset]
        a = sel.loc[sel["method"] == c.better, value].to_numpy()
        b = sel.loc[sel["method"] == c.worse, value].to_numpy()
        v, gain, se = verdict(a, b)
        rows.append({"paper": c.paper, "claim": c.statement, "ipc": c.ipc if c.ipc is not None else "all",
                     "ours": f"{np.mean(a):.2f} vs {np.mean(b):.2f}" if len(a) and len(b) else "–",
                     "gain": round(gain, 2), "se": round(se, 2), "seeds": f"{len(a)}/{len(b)}",
                     "reproduced at this scale?": v})
    return pd.DataFrame(rows)


def threshold_verdict(value: float, *, at_most: float | None = None, at_least: float | None = None) -> str:
    """"yes"/"no" for a single measured number against a published bound; "not measured" for NaN.
    Not called in a notebook or elsewhere in geodd: a public entry point for scripts and users."""
    if value is None or not np.isfinite(value):
        return "not measured"
    ok = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
    return "yes" if ok else "no"


#: the verdict tables of notebooks 02-05 that notebook 06 collects
CLAIM_TABLES = (("02_hdd_pruning", "hdd_gains"), ("02_hdd_pruning", "pruning_final"),
                ("03_csdm_amplitude_phase", "paper_claims"), ("04_geodm_product_space", "subsets_paired"),
                ("04_geodm_product_space", "ot_ablation"), ("05_ot_generative", "claims"))


@dataclass(frozen=True)
class ResultsSettings:
    """Notebook 06's settings: its shared budget (sizes in place of the profile's; None keeps the profile's),
    the registry variants it compares, the long-tailed comparison and the cross-architecture evaluation."""

    iterations: int | None = None
    eval_epochs: int | None = None
    eval_runs: int | None = None
    methods: tuple[str, ...] = ("DM", "DM+HDD", "IDM", "IDM+HDD", "SDD", "GeoDM")
    imf: int = 100
    lt_ipc: int = 10
    cross_methods: tuple[str, ...] = ("DM", "DM+HDD")
    cross_epochs: int = 1000
    claim_tables: tuple[tuple[str, str], ...] = CLAIM_TABLES

    def profile(self, p):
        """``p`` with this notebook's shared budget."""
        return p.resized(iterations=self.iterations, eval_epochs=self.eval_epochs, eval_runs=self.eval_runs)


SETTINGS = {
    "smoke": ResultsSettings(imf=10, lt_ipc=2, cross_methods=("DM",), cross_epochs=2),
    # every method at ONE shared budget, shorter than notebook 00's, so that the notebook stays under 30 min on
    # 2 free cores: 36 distillations of 24 image steps (a new net every 4; batch_real 128) and their evaluations
    # (1 ConvNet x 100 epochs, full test set). The long-tailed rows are notebook 03's runs (its sizes, cached),
    # the OT-generative rows notebook 05's.
    "cpu": ResultsSettings(iterations=24, eval_epochs=100, eval_runs=1, cross_epochs=50),
    "paper": ResultsSettings(cross_methods=("DM", "DM+HDD", "GeoDM")),
}


def settings(profile: str | Profile) -> ResultsSettings:
    """Notebook 06's settings for ``profile`` (a name or a ``Profile``). Shown in notebook 06 (06_results)."""
    return for_profile(SETTINGS, profile, "06")
