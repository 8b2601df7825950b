"""Notebook 06's claims: the one statistics rule on paired seeds, budgets, rankings, settings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geodd import profiles
from geodd.studies.results import (Claim, claim_sentences, display_claims, judge, notebook_budgets, rankings,
                                   settings)


def _frame():
    rows = []
    for seed in range(5):
        noise = [0.3, -0.2, 0.1, -0.1, 0.0][seed]
        for budget, lift in ((20, 0.0), (80, 1.0)):
            rows += [{"method": "A", "ipc": 1, "seed": seed, "budget": budget, "acc": 50 + 3 + lift + noise},
                     {"method": "B", "ipc": 1, "seed": seed, "budget": budget, "acc": 50 + lift + noise / 2},
                     {"method": "A", "ipc": 10, "seed": seed, "budget": budget, "acc": 70 + noise},
                     {"method": "B", "ipc": 10, "seed": seed, "budget": budget, "acc": 70 - noise + 0.05}]
    return pd.DataFrame(rows)


def test_judge_is_the_paired_rule_per_ipc_and_budget():
    df = _frame()
    t = judge([Claim("p", "A beats B", "A", "B", ipc=1), Claim("p", "B beats A", "B", "A", ipc=1, budget=20),
               Claim("p", "A beats B", "A", "B", ipc=10)], df)
    assert t.verdict.tolist() == ["supported", "contradicted", "inconclusive"]
    assert t.n.tolist() == [5, 5, 5] and t.budget.tolist() == [80, 20, 80]
    assert t["mean diff"].iloc[0] == pytest.approx(3.0 + np.mean([0.3, -0.2, 0.1, -0.1, 0.0]) / 2)
    assert (t["CI low"] < t["mean diff"]).all() and (t["mean diff"] < t["CI high"]).all()


def test_judge_pairs_on_shared_seeds_only_and_says_n():
    df = _frame()
    df = df[~((df.method == "B") & (df.seed >= 3))]
    t = judge([Claim("p", "A beats B", "A", "B", ipc=1)], df)
    assert t.n.iloc[0] == 3
    one = judge([Claim("p", "A beats B", "A", "B", ipc=1)], df[df.seed == 0])
    assert one.verdict.iloc[0] == "inconclusive" and one.n.iloc[0] == 1
    assert "too few seeds" in claim_sentences(one)


def test_sentences_and_display_come_from_the_table():
    t = judge([Claim("p", "A beats B", "A", "B", ipc=1)], _frame())
    text = claim_sentences(t)
    assert f"{t['mean diff'].iloc[0]:+.2f} points" in text and "supported" in text and "n = 5" in text
    shown = display_claims(t)
    assert shown["95 % CI"].iloc[0].startswith("[+") and shown.verdict.iloc[0] == "supported"


def test_rankings_show_each_budget():
    r = rankings(_frame())
    assert list(r.columns) == ["ipc", "method", "rank at 20 steps", "rank at 80 steps"]
    assert r[(r.ipc == 1) & (r.method == "A")]["rank at 80 steps"].iloc[0] == 1


def test_settings_budgets_and_profiles():
    cpu = settings("cpu")
    assert len(cpu.budgets) >= 2 and max(cpu.budgets) >= 4 * min(cpu.budgets)
    assert len(cpu.seeds) >= 5 and len(cpu.cross_seeds) >= 3
    p = cpu.profile(profiles.get("cpu"))
    assert p.iterations == max(cpu.budgets) and p.seeds == cpu.seeds
    b = notebook_budgets(profiles.get("cpu"))
    assert "00 DM baseline" in set(b.notebook) and (b["image steps"] > 0).all()


def test_mean_sd_table_says_n_1_instead_of_a_zero_spread():
    from geodd.studies.results import mean_sd_table
    df = pd.DataFrame({"method": ["A", "A", "B"], "arch": ["x", "x", "x"], "seed": [0, 1, 0], "acc": [1.0, 3.0, 2.0]})
    t = mean_sd_table(df, "method", "arch").set_index("method")
    assert t.loc["A", "x"] == "2.00 ± 1.41" and t.loc["B", "x"] == "2.00 (n = 1)"


def test_findings_are_generated_from_the_tables():
    from geodd.studies.common import summarise
    from geodd.studies.results import findings
    df = _frame()
    summary = summarise(df, by=["method", "ipc", "budget"])
    text = findings(summary, rankings(df), judge([Claim("p", "A beats B", "A", "B", ipc=1)], df))
    assert "IPC 1, 80 image steps: the highest mean is **A**" in text
    assert "1 supported, 0 contradicted, 0 inconclusive" in text
