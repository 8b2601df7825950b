"""Notebook 06 (06_results): every method side by side at two budgets, the papers' claims judged by the one
statistics rule, cross-architecture transfer, and accuracy at a fixed CPU budget.

- **Budgets.** Every DM-family method (``ResultsSettings.methods``, registry variants) runs to the largest budget
  of ``budgets`` (image steps) and keeps a snapshot at each smaller one. The image optimiser (SGD, constant rate
  and momentum) and the feature schedules do not depend on the run's length, so the snapshot at B is exactly the
  set a B-step run returns; one run per (method, IPC, seed) answers every budget. The reader sees whether a
  ranking moves with the budget.
- **Seeds and pairing.** All methods share the seeds, and with them their networks, real batches and
  augmentations (``geodd.streams``); a claim "A beats B" is the paired comparison of ``geodd.stats`` over those
  seeds (n, mean difference, 95 % CI, p, MDE; "supported" only when the CI excludes 0).
- **OT-gen apart.** The OT generative rows (notebook 05's runs) train their own student network and are shown in
  their own table, never ranked with the DM family.

Reconstruction: our choice of budgets and seeds (sized so the notebook runs in under 30 minutes on 2 cores).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .. import stats
from ..profiles import Profile
from .common import for_profile

#: the verdict tables of notebooks 02-05 that notebook 06 collects
CLAIM_TABLES = (("02_hdd_pruning", "hdd_gains"), ("02_hdd_pruning", "pruning_final"),
                ("03_csdm_amplitude_phase", "paper_claims"), ("04_geodm_product_space", "subsets_paired"),
                ("04_geodm_product_space", "ot_ablation"), ("05_ot_generative", "claims"))


@dataclass(frozen=True)
class Claim:
    """A seed paper's claim that method ``better`` beats ``worse`` at ``ipc`` (and ``budget`` image steps; None:
    the largest), on rows of ``dataset`` (None: any). Shown in notebook 06 (06_results)."""

    paper: str
    statement: str
    better: str
    worse: str
    ipc: int | None = None
    dataset: str | None = None
    budget: int | None = None


def _select(df: pd.DataFrame, c: Claim) -> pd.DataFrame:
    sel = df
    for col, value in (("ipc", c.ipc), ("dataset", c.dataset)):
        if value is not None and col in sel:
            sel = sel[sel[col] == value]
    if "budget" in sel and sel["budget"].notna().any():
        budget = c.budget if c.budget is not None else sel["budget"].max()
        sel = sel[sel["budget"].isna() | (sel["budget"] == budget)]
    return sel


def judge(claims: Sequence[Claim], df: pd.DataFrame, *, value: str = "acc") -> pd.DataFrame:
    """One row per claim: ``geodd.stats.paired_comparison`` of ``better`` against ``worse`` over the seeds both
    have (``value`` in percent, so differences are in points): n, means, mean difference, 95 % CI, p, MDE and
    the verdict. Shown in notebook 06 (06_results)."""
    rows = []
    for c in claims:
        sel = _select(df, c)
        a = sel[sel["method"] == c.better].set_index("seed")[value]
        b = sel[sel["method"] == c.worse].set_index("seed")[value]
        both = pd.concat([a, b], axis=1, join="inner", keys=["a", "b"]).sort_index()
        r = stats.paired_comparison(both["a"].to_numpy(), both["b"].to_numpy())
        budget = c.budget if c.budget is not None else (
            int(sel["budget"].max()) if "budget" in sel and sel["budget"].notna().any() else None)
        rows.append({"paper": c.paper, "claim": c.statement, "ipc": c.ipc if c.ipc is not None else "all",
                     "budget": budget if budget is not None else "-", "n": r.n,
                     "ours": f"{both['a'].mean():.2f} vs {both['b'].mean():.2f}" if r.n else "–",
                     "mean diff": r.mean_diff, "CI low": r.ci_low, "CI high": r.ci_high, "p": r.p, "MDE": r.mde,
                     "verdict": r.verdict})
    return pd.DataFrame(rows)


def claim_sentences(verdicts: pd.DataFrame) -> str:
    """The verdict table as Markdown bullet points, one plain sentence per claim, generated from its numbers.
    Shown in notebook 06 (06_results)."""
    lines = []
    for _, r in verdicts.iterrows():
        at = f"IPC {r['ipc']}" + (f", {r['budget']} image steps" if r["budget"] != "-" else "")
        if r["n"] < 2:
            lines.append(f"- **{r['claim']}** ({r['paper']}, {at}): n = {r['n']}, too few seeds for a verdict.")
            continue
        p = "p < 0.001" if r["p"] < 0.001 else f"p = {r['p']:.3f}"
        word = {"supported": "supported", "contradicted": "contradicted: the difference goes the other way",
                "inconclusive": "inconclusive: the interval includes 0"}[r["verdict"]]
        lines.append(f"- **{r['claim']}** ({r['paper']}, {at}): {r['mean diff']:+.2f} points (95 % CI "
                     f"{r['CI low']:+.2f} to {r['CI high']:+.2f}, n = {r['n']}, {p}, MDE {r['MDE']:.2f}): {word}.")
    return "\n".join(lines)


def display_claims(verdicts: pd.DataFrame) -> pd.DataFrame:
    """``judge``'s table with rounded numbers and one CI column, for display and saving.
    Shown in notebook 06 (06_results)."""
    out = verdicts.copy()
    out["95 % CI"] = [f"[{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) else "n/a"
                      for lo, hi in zip(out["CI low"], out["CI high"])]
    out["mean diff"] = [f"{x:+.2f}" if np.isfinite(x) else "n/a" for x in out["mean diff"]]
    out["p"] = ["<0.001" if x < 0.001 else f"{x:.3f}" if np.isfinite(x) else "n/a" for x in out["p"]]
    out["MDE"] = [f"{x:.2f}" if np.isfinite(x) else "n/a" for x in out["MDE"]]
    return out[["paper", "claim", "ipc", "budget", "n", "ours", "mean diff", "95 % CI", "p", "MDE", "verdict"]]


def rankings(df: pd.DataFrame, *, value: str = "acc") -> pd.DataFrame:
    """Each method's rank (1 = best mean over seeds) per (IPC, budget), wide: one column per budget, so the
    reader sees whether the order moves with the budget. Shown in notebook 06 (06_results)."""
    means = df.groupby(["ipc", "budget", "method"], sort=False)[value].mean().reset_index()
    means["rank"] = means.groupby(["ipc", "budget"])[value].rank(ascending=False, method="min").astype(int)
    wide = means.pivot_table(index=["ipc", "method"], columns="budget", values="rank").astype(int)
    wide.columns = [f"rank at {int(b)} steps" for b in wide.columns]
    return wide.reset_index().sort_values(["ipc", wide.columns[-1]])


@dataclass(frozen=True)
class ResultsSettings:
    """Notebook 06's settings: the budgets (image steps; runs go to the largest, the others are snapshots), seeds
    and evaluation (None keeps the profile's), the registry variants it compares, the long-tailed comparison
    and the cross-architecture evaluation (its seeds and epochs)."""

    budgets: tuple[int, ...] | None = None
    seeds: tuple[int, ...] | None = None
    eval_epochs: int | None = None
    eval_runs: int | None = None
    methods: tuple[str, ...] = ("DM", "DM+HDD", "IDM", "IDM+HDD", "SDD", "GeoDM")
    imf: int = 100
    lt_ipc: int = 10
    cross_methods: tuple[str, ...] = ("DM", "DM+HDD")
    cross_seeds: tuple[int, ...] = (0, 1, 2)
    cross_epochs: int = 1000
    claim_tables: tuple[tuple[str, str], ...] = CLAIM_TABLES

    def profile(self, p: Profile) -> Profile:
        """``p`` with this notebook's largest budget, seeds and evaluation."""
        return p.resized(iterations=max(self.budgets) if self.budgets else None, seeds=self.seeds,
                         eval_epochs=self.eval_epochs, eval_runs=self.eval_runs)

    def budgets_for(self, p: Profile) -> tuple[int, ...]:
        """The budgets in image steps, smallest first (the profile's iterations when none are set)."""
        return tuple(sorted(self.budgets)) if self.budgets else (p.iterations,)


SETTINGS = {
    "smoke": ResultsSettings(budgets=(1, 3), seeds=(0, 1), imf=10, lt_ipc=2, cross_methods=("DM",),
                             cross_seeds=(0,), cross_epochs=2),
    # every method at two budgets (B and 4B image steps, a new network every 4; batch_real 128), 5 seeds at
    # IPC 1 and 10, 1 ConvNet x 100 epochs per set; cross-architecture with 3 seeds and 300 epochs. Aimed at the
    # 30-minute limit on 2 free cores: (20, 80) took ~40-170 s per DM run on 2 shared cores (load 4), far over it,
    # so the budgets are (10, 40); the notebook's time at these sizes is not measured yet.
    "cpu": ResultsSettings(budgets=(10, 40), seeds=(0, 1, 2, 3, 4), eval_epochs=100, eval_runs=1,
                           cross_epochs=300),
    "paper": ResultsSettings(budgets=(5000, 20000), cross_methods=("DM", "DM+HDD", "GeoDM")),
}


def settings(profile: str | Profile) -> ResultsSettings:
    """Notebook 06's settings for ``profile`` (a name or a ``Profile``). Shown in notebook 06 (06_results)."""
    return for_profile(SETTINGS, profile, "06")


def notebook_budgets(p: Profile) -> pd.DataFrame:
    """The image steps each notebook's distillations run at under profile ``p`` (the budgets notebook 00 marks
    on its accuracy-against-steps curve). Shown in notebook 00 (00_dm_baseline)."""
    from . import csdm_amplitude_phase as cs, geodm_product_space as gs
    rows = [("00 DM baseline", p.iterations), ("02 HDD", p.iterations), ("03 CSDM", cs.settings(p).iterations),
            ("04 GeoDM", gs.settings(p).iterations)]
    rows += [(f"06 results (budget {i + 1})", b) for i, b in enumerate(settings(p).budgets_for(p))]
    return pd.DataFrame(rows, columns=["notebook", "image steps"])


def cross_architecture(runs: pd.DataFrame, test, *, methods: Sequence[str], seeds: Sequence[int], ipc: int,
                       archs: Sequence[str], epochs: int, amp, progress: bool = False) -> pd.DataFrame:
    """Long frame (method, arch, seed, acc in %) of the synthetic sets of ``methods`` at ``ipc`` (their final
    budget) trained from scratch on each of ``archs`` for ``epochs`` epochs, one network per (set, arch), seeded
    by the run's seed; cached in each run's record (``geodd.runs.cached_evaluate``). Shown in notebook 06
    (06_results)."""
    from ..runs import cached_evaluate
    final = runs[(runs.ipc == ipc) & runs.method.isin(methods) & runs.seed.isin(seeds)]
    if "budget" in final:
        final = final[final.budget == final.budget.max()]
    rows = []
    for r in final.itertuples(index=False):
        for arch in archs:
            ev = cached_evaluate(r.run_dir, test, arch=arch, epochs=epochs, runs=1, amp=amp, seed=r.seed,
                                 progress=progress)
            rows.append({"method": r.method, "arch": arch, "seed": r.seed, "acc": 100 * ev["mean"]})
    return pd.DataFrame(rows)


def mean_sd_table(df: pd.DataFrame, index: str, columns: str, value: str = "acc") -> pd.DataFrame:
    """Wide "mean ± sd (n = k)" cells over seeds; a single seed shows "x (n = 1)", never "± 0.00".
    Shown in notebook 06 (06_results)."""
    def cell(s: pd.Series) -> str:
        return f"{s.mean():.2f} ± {s.std(ddof=1):.2f}" if len(s) > 1 else f"{s.iloc[0]:.2f} (n = 1)"
    out = df.groupby([index, columns], sort=False)[value].agg(cell).unstack(columns)
    return out.reset_index()


def findings(summary: pd.DataFrame, ranks: pd.DataFrame, verdicts: pd.DataFrame) -> str:
    """The notebook's closing findings as Markdown, generated from its tables: the best method per (IPC,
    budget) with its mean, whether the ranking moved between budgets, and the claims by verdict.
    Shown in notebook 06 (06_results)."""
    lines = []
    for (ipc, budget), g in summary.groupby(["ipc", "budget"], sort=True):
        best = g.sort_values("mean", ascending=False).iloc[0]
        lines.append(f"- IPC {ipc}, {int(budget)} image steps: the highest mean is **{best['method']}** "
                     f"({best['mean']:.2f} % over {int(best['seeds'])} seeds).")
    rank_cols = [c for c in ranks.columns if c.startswith("rank at")]
    if len(rank_cols) >= 2:
        moved = ranks[ranks[rank_cols[0]] != ranks[rank_cols[-1]]]
        changes = ", ".join(f"{r['method']} at IPC {r['ipc']} ({int(r[rank_cols[0]])} → {int(r[rank_cols[-1]])})"
                            for _, r in moved.iterrows())
        lines.append(f"- Between {rank_cols[0][8:]} and {rank_cols[-1][8:]}, {len(moved)} of {len(ranks)} "
                     f"(method, IPC) ranks changed" + (f": {changes}." if len(moved) else "."))
    counts = verdicts["verdict"].value_counts()
    lines.append("- Claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("supported", "contradicted",
                                                                             "inconclusive")) + ".")
    return "\n".join(lines)
