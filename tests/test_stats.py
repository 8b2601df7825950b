"""geodd.stats: the paired t-interval rule, checked by hand, against scipy, by simulation (null rate and power),
on its edge cases and errors, and through compare_table / format_table / verdict_sentence."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from geodd import GeoddError
from geodd.stats import (Comparison, _paired_core, compare_table, format_table, min_detectable_effect,
                         paired_comparison, verdict_sentence)

ROOT = Path(__file__).resolve().parent.parent
SIMS = 20_000

# the worked example of docs/methods/statistics.md: accuracies of two methods on seeds 0..4
A = [0.712, 0.705, 0.731, 0.698, 0.720]
B = [0.701, 0.699, 0.712, 0.694, 0.703]


def _mc_band(rate, sims=SIMS, k=3.0):
    se = math.sqrt(rate * (1 - rate) / sims)
    return rate - k * se, rate + k * se


# ---------------------------------------------------------------------------------------------- by hand


def test_hand_computed_example_matches_scipy_and_a_manual_t_interval():
    a = [0.71, 0.73, 0.70, 0.74, 0.72]
    b = [0.70, 0.71, 0.70, 0.72, 0.71]
    c = paired_comparison(a, b)
    # d = [.01, .02, 0, .02, .01]: mean .012, squared deviations sum to 280e-6, sd = sqrt(280e-6 / 4)
    assert c.n == 5
    assert c.mean_diff == pytest.approx(0.012, abs=1e-12)
    assert c.sd == pytest.approx(math.sqrt(70e-6), rel=1e-9)
    t_crit = 2.7764451  # t(4) 97.5 % quantile, from a table
    half = t_crit * math.sqrt(70e-6) / math.sqrt(5)
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.012 - half, rel=1e-6), pytest.approx(0.012 + half, rel=1e-6))
    assert c.p == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-9)
    t_stat = 0.012 / (math.sqrt(70e-6) / math.sqrt(5))
    assert t_stat == pytest.approx(3.2071349, rel=1e-6)
    assert c.p == pytest.approx(stats.t.sf(t_stat, 4), rel=1e-9)
    assert c.verdict == "supported" and c.alternative == "greater" and c.level == 0.95
    two = paired_comparison(a, b, "two-sided")
    assert two.p == pytest.approx(2 * c.p, rel=1e-9)
    assert (two.ci_low, two.ci_high) == (pytest.approx(c.ci_low), pytest.approx(c.ci_high))


def test_level_changes_the_interval_and_the_mde():
    c90, c99 = paired_comparison(A, B, level=0.90), paired_comparison(A, B, level=0.99)
    d = np.subtract(A, B)
    for c, level in ((c90, 0.90), (c99, 0.99)):
        half = stats.t.ppf(1 - (1 - level) / 2, 4) * d.std(ddof=1) / math.sqrt(5)
        assert c.ci_high - c.mean_diff == pytest.approx(half, rel=1e-9)
    assert c99.mde > c90.mde > 0


def test_the_mde_solves_the_noncentral_t_power_equation():
    c = paired_comparison(A, B)
    t_crit = stats.t.ppf(0.975, 4)
    assert stats.nct.sf(t_crit, 4, c.mde * math.sqrt(5) / c.sd) == pytest.approx(0.8, abs=1e-8)
    assert c.mde == pytest.approx(min_detectable_effect(5, c.sd), rel=1e-12)
    assert min_detectable_effect(5, 2 * c.sd) == pytest.approx(2 * c.mde, rel=1e-9)
    assert math.isnan(min_detectable_effect(1, 1.0))


def test_the_docs_worked_example_is_what_the_code_prints():
    page = (ROOT / "docs/methods/statistics.md").read_text()
    c = paired_comparison(A, B)
    assert c.summary(a="HDD", b="DM") in page
    assert verdict_sentence(c, "HDD", "DM") in page


# ---------------------------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("n", [3, 5, 10])
def test_null_data_is_supported_at_the_nominal_rate(n):
    rng = np.random.default_rng(1000 + n)
    a, b = rng.standard_normal((SIMS, n)), rng.standard_normal((SIMS, n))
    lo, hi = _mc_band(0.025)
    for alt in ("greater", "less"):
        v = _paired_core(a - b, alt, 0.95)["verdict"]
        assert lo <= np.mean(v == "supported") <= hi, (alt, np.mean(v == "supported"))
        assert lo <= np.mean(v == "contradicted") <= hi, (alt, np.mean(v == "contradicted"))
    v = _paired_core(a - b, "two-sided", 0.95)["verdict"]
    lo2, hi2 = _mc_band(0.05)
    assert lo2 <= np.mean(v == "supported") <= hi2
    assert not np.any(v == "contradicted")


def test_supported_is_the_one_sided_t_test_at_half_alpha():
    rng = np.random.default_rng(7)
    d = rng.normal(0.3, 1.0, (2000, 6))
    for alt, alpha in (("greater", 0.025), ("less", 0.025), ("two-sided", 0.05)):
        r = _paired_core(d, alt, 0.95)
        assert np.array_equal(r["verdict"] == "supported", r["p"] < alpha)
        assert np.allclose(r["p"], stats.ttest_1samp(d, 0.0, axis=1, alternative=alt).pvalue, rtol=1e-10)
    for row in d[:5]:  # the public function is the core on one row
        c = paired_comparison(row, np.zeros(6), "greater")
        assert c.p == pytest.approx(stats.ttest_1samp(row, 0.0, alternative="greater").pvalue, rel=1e-10)


@pytest.mark.parametrize("n,delta,sd", [(3, 1.5, 1.0), (5, 0.02, 0.015), (10, 0.5, 1.0)])
def test_simulated_power_matches_the_noncentral_t(n, delta, sd):
    rng = np.random.default_rng(n)
    r = _paired_core(rng.normal(delta, sd, (SIMS, n)), "greater", 0.95)
    analytic = stats.nct.sf(stats.t.ppf(0.975, n - 1), n - 1, delta * math.sqrt(n) / sd)
    lo, hi = _mc_band(analytic)
    assert lo <= np.mean(r["verdict"] == "supported") <= hi, (np.mean(r["verdict"] == "supported"), analytic)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_power_at_the_mde_is_eighty_percent(n):
    sd = 0.01
    mde = min_detectable_effect(n, sd)
    rng = np.random.default_rng(50 + n)
    r = _paired_core(rng.normal(mde, sd, (SIMS, n)), "greater", 0.95)
    lo, hi = _mc_band(0.8)
    assert lo <= np.mean(r["verdict"] == "supported") <= hi
    # and for "less" the MDE is the same magnitude, on the other side
    r = _paired_core(rng.normal(-mde, sd, (SIMS, n)), "less", 0.95)
    assert lo <= np.mean(r["verdict"] == "supported") <= hi


# ---------------------------------------------------------------------------------------------- symmetry


def test_contradicted_is_the_mirror_of_supported():
    c = paired_comparison(B, A, "greater")
    assert c.verdict == "contradicted"
    mirror = paired_comparison(A, B, "greater")
    assert mirror.verdict == "supported"
    assert (c.ci_low, c.ci_high) == (pytest.approx(-mirror.ci_high), pytest.approx(-mirror.ci_low))
    less = paired_comparison(B, A, "less")
    assert less.verdict == "supported" and less.p == pytest.approx(mirror.p, rel=1e-12)
    assert paired_comparison(A, B, "less").verdict == "contradicted"
    assert c.p == pytest.approx(1 - mirror.p, rel=1e-9)
    two = paired_comparison(B, A, "two-sided")
    assert two.verdict == "supported" and two.p == pytest.approx(2 * mirror.p, rel=1e-9)


def test_two_sided_is_never_contradicted_and_is_inconclusive_when_the_ci_spans_zero():
    a, b = [0.70, 0.72, 0.69, 0.71], [0.71, 0.70, 0.70, 0.70]
    for alt in ("greater", "less", "two-sided"):
        c = paired_comparison(a, b, alt)
        assert c.ci_low < 0 < c.ci_high and c.verdict == "inconclusive"


# ---------------------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("a,b", [([0.7], [0.6]), ([], [])])
def test_fewer_than_two_seeds_is_inconclusive_with_nan(a, b):
    for alt in ("greater", "less", "two-sided"):
        c = paired_comparison(a, b, alt)
        assert c.verdict == "inconclusive" and c.n == len(a)
        assert all(math.isnan(v) for v in (c.ci_low, c.ci_high, c.p, c.mde, c.sd))
    assert paired_comparison([0.7], [0.6]).mean_diff == pytest.approx(0.1)
    assert "n = 1" in paired_comparison([0.7], [0.6]).summary()
    assert "inconclusive" in verdict_sentence(paired_comparison(a, b), "A", "B")


@pytest.mark.parametrize("alt,shift,p,verdict", [
    ("greater", 0.01, 0.0, "supported"), ("greater", -0.01, 1.0, "contradicted"), ("greater", 0.0, 1.0, "inconclusive"),
    ("less", -0.01, 0.0, "supported"), ("less", 0.01, 1.0, "contradicted"), ("less", 0.0, 1.0, "inconclusive"),
    ("two-sided", 0.01, 0.0, "supported"), ("two-sided", -0.01, 0.0, "supported"),
    ("two-sided", 0.0, 1.0, "inconclusive")])
def test_equal_differences_collapse_the_interval(alt, shift, p, verdict):
    b = np.array([0.5, 0.25, 0.75, 0.125])
    c = paired_comparison(b + shift, b, alt)
    assert c.sd == 0 and c.mde == 0
    assert c.ci_low == pytest.approx(shift, abs=1e-15) and c.ci_high == pytest.approx(shift, abs=1e-15)
    assert c.p == p and c.verdict == verdict


def test_differences_equal_up_to_rounding_count_as_equal():
    c = paired_comparison([0.3, 0.2, 0.1], [0.2, 0.1, 0.0])  # 0.3 - 0.2 != 0.2 - 0.1 in floating point
    assert c.sd == 0 and c.p == 0 and c.verdict == "supported" and c.mde == 0


@pytest.mark.parametrize("a,b,needle", [
    ([1, 2, 3], [1, 2], "got 3 and 2"),
    ([1.0, float("nan")], [1, 2], "NaN or inf"),
    (np.array([1.0, np.inf]), [1, 2], "NaN or inf"),
    ([1, 2], [1, -math.inf], "b must be finite"),
    (["0.7", "0.8"], [1, 2], "numbers only"),
    ([True, False], [1, 2], "numbers only"),
    (np.array([True, False]), [1, 2], "numbers only"),
    ([None, 1.0], [1, 2], "numbers only"),
    ("0.7", [1], "sequence"),
    (0.7, [1], "sequence"),
    (np.ones((2, 2)), np.ones((2, 2)), "one-dimensional"),
])
def test_bad_scores_are_one_line_errors(a, b, needle):
    with pytest.raises(GeoddError, match=needle) as info:
        paired_comparison(a, b)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kw,needle", [
    ({"alternative": "bigger"}, "alternative must be one of greater, less, two-sided"),
    ({"alternative": "two_sided"}, "alternative"),
    ({"level": 1.0}, "level"), ({"level": 0}, "level"), ({"level": 95}, "level"),
    ({"level": True}, "level"), ({"level": "0.95"}, "level"), ({"level": float("nan")}, "level"),
])
def test_bad_options_are_one_line_errors(kw, needle):
    with pytest.raises(GeoddError, match=needle) as info:
        paired_comparison([1, 2], [0, 1], **kw)
    assert "\n" not in str(info.value)


def test_comparison_is_frozen_and_exports_a_dict_and_a_sentence():
    c = paired_comparison([0.71, 0.73, 0.70, 0.74, 0.72], [0.70, 0.71, 0.70, 0.72, 0.71])
    assert isinstance(c, Comparison)
    with pytest.raises(Exception):
        c.n = 3
    d = c.as_dict()
    assert set(d) == {"n", "mean_diff", "sd", "ci_low", "ci_high", "p", "mde", "verdict", "alternative", "level"}
    assert d["mean_diff"] == pytest.approx(0.012)
    assert c.summary() == ("A − B = +1.20 pp (95 % CI +0.16 to +2.24, n = 5, p = 0.016, MDE 1.41 pp): "
                           "supported.")
    assert c.summary(unit="", scale=1).startswith("A − B = +0.01 (95 % CI +0.0016 to +0.02")


# ---------------------------------------------------------------------------------------------- tables


def _frame():
    rng = np.random.default_rng(3)
    rows = []
    for ipc, gain in ((1, 0.02), (10, 0.0)):
        for seed in range(5):
            base = 0.6 + 0.02 * rng.standard_normal()
            rows.append({"arm": "DM", "ipc": ipc, "seed": seed, "acc": base, "loss": 1.0})
            if not (ipc == 10 and seed == 2):  # a failed run: seed 2 of HDD at ipc 10 is missing
                rows.append({"arm": "HDD", "ipc": ipc, "seed": seed, "acc": base + gain + 0.002 * seed, "loss": 1.0})
    rows.append({"arm": "HDD", "ipc": 1, "seed": 9, "acc": 0.9, "loss": 1.0})  # a seed DM does not have
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # row order must not matter


def test_compare_table_pairs_on_seed_and_groups_by_ipc():
    frame = _frame()
    table = compare_table(frame, by="ipc", pairs=[("HDD", "DM", "greater"), ("DM", "HDD", "two-sided")])
    assert list(table.columns) == ["ipc", "comparison", "n", "mean diff", "CI low", "CI high", "p", "MDE",
                                   "verdict", "alternative"]
    assert list(zip(table["ipc"], table["comparison"], table["n"])) == [
        (1, "HDD − DM", 5), (10, "HDD − DM", 4), (1, "DM − HDD", 5), (10, "DM − HDD", 4)]
    for ipc, seeds in ((1, [0, 1, 2, 3, 4]), (10, [0, 1, 3, 4])):
        g = frame[frame["ipc"] == ipc]
        a = g[g["arm"] == "HDD"].set_index("seed")["acc"].loc[seeds]
        b = g[g["arm"] == "DM"].set_index("seed")["acc"].loc[seeds]
        c = paired_comparison(a.to_numpy(), b.to_numpy())
        row = table[(table["ipc"] == ipc) & (table["comparison"] == "HDD − DM")].iloc[0]
        assert row["mean diff"] == pytest.approx(100 * c.mean_diff)
        assert (row["CI low"], row["CI high"]) == (pytest.approx(100 * c.ci_low), pytest.approx(100 * c.ci_high))
        assert row["MDE"] == pytest.approx(100 * c.mde) and row["p"] == pytest.approx(c.p)
        assert row["verdict"] == c.verdict
    assert table.iloc[0]["verdict"] == "supported" and table.iloc[1]["verdict"] != "supported"


def test_compare_table_without_groups_and_with_several_keys():
    frame = _frame()
    one = compare_table(frame[frame["ipc"] == 1], by=None, pairs=[("HDD", "DM")], scale=1)
    assert list(one.columns)[0] == "comparison" and one["n"].tolist() == [5]
    two = compare_table(frame, by=["ipc", "loss"], pairs=[("HDD", "DM", "less")])
    assert two[["ipc", "loss"]].values.tolist() == [[1, 1.0], [10, 1.0]]
    assert two.iloc[0]["verdict"] == "contradicted"


@pytest.mark.parametrize("kw,needle", [
    ({"by": "ipc", "pairs": [("HDD", "IDM", "greater")]}, "unknown arm IDM"),
    ({"by": "epochs", "pairs": [("HDD", "DM")]}, "lacks column"),
    ({"by": "ipc", "pairs": [("HDD", "DM", "up")]}, "alternative"),
    ({"by": "ipc", "pairs": [("HDD",)]}, "each pair"),
    ({"by": "ipc", "pairs": []}, "pairs is empty"),
    ({"by": None, "pairs": [("HDD", "DM")]}, r"arm .HDD. has several rows for seed=\d at all rows"),
    ({"by": "ipc", "pairs": [("HDD", "DM")], "level": 2}, "level"),
])
def test_compare_table_errors_are_one_line(kw, needle):
    with pytest.raises(GeoddError, match=needle) as info:
        compare_table(_frame(), **kw)
    assert "\n" not in str(info.value)


def test_compare_table_names_the_group_of_a_bad_score():
    frame = _frame()
    frame.loc[(frame["arm"] == "DM") & (frame["ipc"] == 10) & (frame["seed"] == 0), "acc"] = np.nan
    with pytest.raises(GeoddError, match="HDD − DM at ipc=10: b must be finite"):
        compare_table(frame, by="ipc", pairs=[("HDD", "DM")])


def test_format_table_renders_strings_for_markdown():
    table = compare_table(_frame(), by="ipc", pairs=[("HDD", "DM", "greater")])
    shown = format_table(table)
    assert list(shown.columns) == ["ipc", "comparison", "H1", "n", "mean diff", "95 % CI", "p", "MDE", "verdict"]
    row, raw = shown.iloc[0], table.iloc[0]
    assert row["mean diff"] == f"{raw['mean diff']:+.2f}"
    assert row["95 % CI"] == f"[{raw['CI low']:+.2f}, {raw['CI high']:+.2f}]"
    assert row["p"] == ("<0.001" if raw["p"] < 0.001 else f"{raw['p']:.3f}")
    assert row["MDE"] == f"{raw['MDE']:.2f}" and row["H1"] == "> 0"
    md = shown.to_markdown(index=False, disable_numparse=True)
    assert row["mean diff"] in md and row["95 % CI"] in md
    tiny = compare_table(pd.DataFrame({"arm": ["a", "b"], "seed": [0, 0], "acc": [0.5, 0.4]}), by=None,
                         pairs=[("a", "b")])
    assert format_table(tiny).iloc[0][["95 % CI", "p", "MDE"]].tolist() == ["n/a", "n/a", "n/a"]
    with pytest.raises(GeoddError, match="compare_table result"):
        format_table(pd.DataFrame({"x": [1]}))


def test_verdict_sentences_say_what_the_seeds_show():
    table = compare_table(_frame(), by="ipc", pairs=[("HDD", "DM", "greater"), ("DM", "HDD", "greater")])
    s = [verdict_sentence(row, *row["comparison"].split(" − ")) for _, row in table.iterrows()]
    assert "support the claim that HDD scores higher than DM" in s[0]
    assert s[0].startswith("HDD is ahead of DM by ")
    assert s[1].startswith("The seeds cannot settle the claim") and "80 %" in s[1]
    assert "contradict the claim that DM scores higher than HDD" in s[2]
    c = paired_comparison(B, A, "two-sided")
    assert verdict_sentence(c, "DM", "HDD").endswith("support the claim that DM and HDD differ.")
    assert "DM − HDD: 95 % CI -" in verdict_sentence(c, "DM", "HDD")
    with pytest.raises(GeoddError, match="Comparison or a compare_table row"):
        verdict_sentence({"n": 3}, "A", "B")


def test_margin_makes_a_non_inferiority_claim():
    """a is 0.5 below b on average, with little noise: "a beats b" is contradicted, "a is not worse than b by
    more than 1" is supported, "not worse by more than 0.1" is contradicted; the interval itself is unchanged."""
    from geodd.stats import paired_comparison
    b = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    a = b - 0.5 + np.array([0.05, -0.05, 0.02, -0.02, 0.0])
    plain = paired_comparison(a, b)
    loose = paired_comparison(a, b, margin=1.0)
    tight = paired_comparison(a, b, margin=0.1)
    assert plain.verdict == "contradicted" and loose.verdict == "supported" and tight.verdict == "contradicted"
    assert loose.ci_low == pytest.approx(plain.ci_low) and loose.mean_diff == pytest.approx(plain.mean_diff)
    assert loose.p < 0.001
    less = paired_comparison(b, a, alternative="less", margin=1.0)   # b - a < 1
    assert less.verdict == "supported"
    with pytest.raises(GeoddError, match="margin must be"):
        paired_comparison(a, b, margin=-1.0)
    with pytest.raises(GeoddError, match="one-sided"):
        paired_comparison(a, b, alternative="two-sided", margin=1.0)


def test_compare_table_takes_a_margin_in_displayed_units():
    rows = [{"arm": arm, "seed": s, "acc": acc} for s in range(4)
            for arm, acc in (("pruned", 0.80 - 0.004 + 0.001 * (s % 2)), ("full", 0.80))]
    t = compare_table(pd.DataFrame(rows), by=None, pairs=[("pruned", "full", "greater", 1.0),
                                                          ("pruned", "full", "greater")])
    assert list(t.verdict) == ["supported", "contradicted"]
    assert t.comparison.iloc[0] == "pruned − full (margin 1)"
    assert t["mean diff"].iloc[0] == pytest.approx(-0.35)
