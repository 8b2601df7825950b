"""The one statistics rule behind every verdict: a paired t-interval on per-seed score differences.

Two methods run on the same seeds share the networks, batches and augmentations that each seed draws, so the
per-seed difference a_i - b_i removes most of the seed-to-seed noise. ``paired_comparison`` takes the two score
vectors (paired by position) and returns a ``Comparison``: the mean difference, the two-sided ``level``
t-interval on it (t with n - 1 degrees of freedom, sample std with ddof=1), the paired t-test p-value for the
claimed direction, the minimum detectable effect (MDE) and a verdict:

- ``"supported"``: the interval excludes 0 on the side the alternative claims (greater: low > 0; less:
  high < 0; two-sided: either side);
- ``"contradicted"``: the interval excludes 0 on the other side (one-sided alternatives only);
- ``"inconclusive"``: otherwise, and always when n < 2.

For a one-sided claim "supported" is exactly the one-sided t-test at alpha = (1 - level) / 2, so on null data
it happens 2.5 % of the time at level 0.95. The MDE is the true mean difference that this test would detect
with 80 % power at this n and the observed sd (noncentral t, solved with brentq), in the units of the scores.
``compare_table`` applies the rule to a long results frame (one row per arm, seed and group), ``format_table``
renders the result for Markdown, ``verdict_sentence`` writes one plain sentence. The rule, the MDE and a worked
example are in docs/methods/statistics.md.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from numbers import Real
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from . import GeoddError

ALTERNATIVES = ("greater", "less", "two-sided")
#: the power the MDE is defined for
POWER = 0.8
#: differences whose sd is at most this fraction of their largest magnitude count as all equal (rounding noise)
_RTOL_CONSTANT = 1e-12
#: the columns of compare_table, after the ``by`` columns
COLUMNS = ("comparison", "n", "mean diff", "CI low", "CI high", "p", "MDE", "verdict", "alternative")
_SYMBOL = {"greater": "> 0", "less": "< 0", "two-sided": "≠ 0"}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The paired comparison of two methods over n shared seeds; differences are a - b in the scores' units.
    ``ci_low``/``ci_high`` bound the two-sided ``level`` t-interval, ``p`` is the paired t-test for
    ``alternative``, ``mde`` the true difference detected with 80 % power. NaN where n < 2.
    Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""

    n: int
    mean_diff: float
    sd: float
    ci_low: float
    ci_high: float
    p: float
    mde: float
    verdict: str
    alternative: str
    level: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-able apart from NaN).
        Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
        return dataclasses.asdict(self)

    def summary(self, unit: str = "pp", scale: float = 100, a: str = "A", b: str = "B") -> str:
        """One plain sentence, e.g. ``"A − B = +1.23 pp (95 % CI +0.40 to +2.06, n = 5, p = 0.012, MDE 0.90 pp):
        supported."``. ``scale`` multiplies the differences (100 turns accuracy fractions into points).
        Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
        u = f" {unit}" if unit else ""
        head = f"{a} − {b} = {_num(self.mean_diff * scale)}{u}"
        if self.n < 2:
            return f"{head} (n = {self.n}; too few seeds for an interval): {self.verdict}."
        return (f"{head} ({_pct(self.level)} CI {_num(self.ci_low * scale)} to {_num(self.ci_high * scale)}, "
                f"n = {self.n}, {_p_text(self.p)}, MDE {_num(self.mde * scale, signed=False)}{u}): {self.verdict}.")


# ---------------------------------------------------------------------------------------------- checks


def _check_options(alternative: Any, level: Any) -> None:
    if alternative not in ALTERNATIVES:
        raise GeoddError(f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}")
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < float(level) < 1:
        raise GeoddError(f"level must be a number strictly between 0 and 1, got {level!r}")


def _scores(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D float array of finite numbers, or a one-line GeoddError (a bool is not a number)."""
    if isinstance(x, (str, bytes, Mapping)) or np.isscalar(x) or x is None:
        raise GeoddError(f"{name} must be a sequence of per-seed scores, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError):
        raise GeoddError(f"{name} must be a flat sequence of numbers, got {x!r}") from None
    items = arr.ravel() if arr.dtype == object or isinstance(x, (list, tuple)) else ()
    bad = [v for v in (x if isinstance(x, (list, tuple)) else items)
           if isinstance(v, (bool, np.bool_)) or not isinstance(v, (Real, np.number))]
    if bad or arr.dtype.kind not in "iufO":
        shown = bad[0] if bad else arr.ravel()[0]
        raise GeoddError(f"{name} must hold numbers only, got {shown!r} ({type(shown).__name__})")
    arr = arr.astype(float)
    if arr.ndim != 1:
        raise GeoddError(f"{name} must be one-dimensional (one score per seed), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GeoddError(f"{name} must be finite; it holds NaN or inf at positions "
                         f"{np.flatnonzero(~np.isfinite(arr)).tolist()}")
    return arr


# ---------------------------------------------------------------------------------------------- the rule


@functools.lru_cache(maxsize=256)
def _mde_factor(n: int, level: float, power: float = POWER) -> float:
    """The noncentrality lambda with P(T'(n-1, lambda) > t_crit) = power; the MDE is lambda * sd / sqrt(n)."""
    df, alpha = n - 1, (1 - level) / 2
    t_crit = stats.t.ppf(1 - alpha, df)

    def gap(lam: float) -> float:
        return float(stats.nct.sf(t_crit, df, lam)) - power

    if gap(0.0) >= 0:  # power below alpha: nothing to detect
        return 0.0
    hi = max(1.0, 2 * t_crit)
    while gap(hi) < 0:
        hi *= 2
    return float(optimize.brentq(gap, 0.0, hi, xtol=1e-12))


def _p_values(t: np.ndarray, df: int, alternative: str) -> np.ndarray:
    if alternative == "greater":
        return stats.t.sf(t, df)
    if alternative == "less":
        return stats.t.cdf(t, df)
    return 2 * stats.t.sf(np.abs(t), df)


def _degenerate_p(mean: np.ndarray, alternative: str) -> np.ndarray:
    """p when all differences are equal (sd = 0): 0 if the mean lies strictly on the claimed side, else 1."""
    side = {"greater": mean > 0, "less": mean < 0, "two-sided": mean != 0}[alternative]
    return np.where(side, 0.0, 1.0)


def _verdicts(low: np.ndarray, high: np.ndarray, alternative: str) -> np.ndarray:
    above, below = low > 0, high < 0
    if alternative == "two-sided":
        good, bad = above | below, np.zeros_like(above)
    else:
        good, bad = (above, below) if alternative == "greater" else (below, above)
    return np.where(good, "supported", np.where(bad, "contradicted", "inconclusive"))


def _paired_core(diffs: np.ndarray, alternative: str = "greater", level: float = 0.95) -> dict[str, np.ndarray]:
    """The rule on many experiments at once: ``diffs`` is ``[sims, n]`` (one row of per-seed a - b each).
    Returns arrays of length sims: n, mean, sd, low, high, p, mde, verdict. p comes from scipy's paired t-test
    (``ttest_1samp`` on the differences) except for rows whose differences are all equal (see ``_degenerate_p``)."""
    d = np.asarray(diffs, dtype=float)
    sims, n = d.shape
    nan = np.full(sims, np.nan)
    mean = d.mean(axis=1) if n else nan.copy()
    if n < 2:
        return {"n": np.full(sims, n), "mean": mean, "sd": nan, "low": nan, "high": nan, "p": nan, "mde": nan,
                "verdict": np.full(sims, "inconclusive")}
    sd = d.std(axis=1, ddof=1)
    constant = sd <= _RTOL_CONSTANT * np.abs(d).max(axis=1)
    sd = np.where(constant, 0.0, sd)
    half = stats.t.ppf(1 - (1 - level) / 2, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    p = _degenerate_p(mean, alternative)
    if (~constant).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ttest_1samp(d[~constant], 0.0, axis=1, alternative=alternative)
        p[~constant] = res.pvalue
    mde = _mde_factor(n, float(level)) * sd / math.sqrt(n)
    return {"n": np.full(sims, n), "mean": mean, "sd": sd, "low": low, "high": high, "p": p, "mde": mde,
            "verdict": _verdicts(low, high, alternative)}


def paired_comparison(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                      alternative: str = "greater", level: float = 0.95, margin: float = 0.0) -> Comparison:
    """Compare method a with method b on the same seeds (``a[i]`` and ``b[i]`` share seed i).

    The difference is a - b. CI: the two-sided ``level`` t-interval (t(n-1), sample std ddof=1). p: the paired
    t-test for ``alternative`` ("greater": a > b, "less": a < b, "two-sided"). Verdict: "supported" when the CI
    excludes 0 on the claimed side, "contradicted" when it excludes 0 on the other side (one-sided claims),
    else "inconclusive". MDE: the true difference the one-sided test at alpha = (1 - level)/2 detects with 80 %
    power at this n and the observed sd (noncentral t), a positive number in the scores' units.
    Edge cases: n < 2 gives "inconclusive" with NaN sd, CI, p and MDE; all differences equal (sd = 0, up to
    rounding) collapses the CI to the mean, gives p = 0 when the mean lies strictly on the claimed side (1
    otherwise) and MDE = 0. Different lengths, NaN/inf, non-numbers, an unknown alternative or a level outside
    (0, 1) are one-line ``GeoddError``s.
    ``margin`` (>= 0, in the scores' units) turns a one-sided claim into a non-inferiority claim: "greater" then
    claims a - b > -margin ("a is not worse than b by more than margin") and is supported when the CI's low end
    lies above -margin; "less" claims a - b < margin. The same interval, shifted; p tests the shifted null.
    Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
    _check_options(alternative, level)
    if isinstance(margin, bool) or not isinstance(margin, Real) or not math.isfinite(margin) or margin < 0:
        raise GeoddError(f"margin must be a finite number >= 0, got {margin!r}")
    if margin and alternative == "two-sided":
        raise GeoddError("a margin needs a one-sided alternative (greater or less)")
    x, y = _scores(a, "a"), _scores(b, "b")
    if x.shape != y.shape:
        raise GeoddError(f"a and b must hold one score per shared seed; got {len(x)} and {len(y)} scores")
    shift = float(margin) if alternative == "greater" else -float(margin)
    r = _paired_core((x - y + shift)[None, :], alternative, float(level))
    return Comparison(n=int(len(x)), mean_diff=float(r["mean"][0]) - shift, sd=float(r["sd"][0]),
                      ci_low=float(r["low"][0]) - shift, ci_high=float(r["high"][0]) - shift, p=float(r["p"][0]),
                      mde=float(r["mde"][0]), verdict=str(r["verdict"][0]), alternative=alternative,
                      level=float(level))


def min_detectable_effect(n: int, sd: float, level: float = 0.95, power: float = POWER) -> float:
    """The true mean difference that n paired seeds with difference sd ``sd`` detect with probability
    ``power`` under the rule at ``level`` (NaN for n < 2); for planning how many seeds a comparison needs.
    Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
    _check_options("greater", level)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise GeoddError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(sd, bool) or not isinstance(sd, Real) or not math.isfinite(sd) or sd < 0:
        raise GeoddError(f"sd must be a finite number >= 0, got {sd!r}")
    if isinstance(power, bool) or not isinstance(power, Real) or not 0 < power < 1:
        raise GeoddError(f"power must be a number strictly between 0 and 1, got {power!r}")
    if n < 2:
        return float("nan")
    return _mde_factor(int(n), float(level), float(power)) * float(sd) / math.sqrt(n)


# ---------------------------------------------------------------------------------------------- tables


def _pairs(pairs: Iterable[Any]) -> list[tuple[str, str, str, float]]:
    out = []
    for item in pairs:
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3, 4):
            raise GeoddError(f"each pair must be (a_label, b_label[, alternative[, margin]]), got {item!r}")
        a, b, alt, margin = (*item, "greater", 0.0)[:4] if len(item) == 2 else (*item, 0.0)[:4]
        _check_options(alt, 0.5)
        out.append((a, b, alt, float(margin)))
    if not out:
        raise GeoddError("pairs is empty; give at least one (a_label, b_label, alternative)")
    return out


def _group_text(keys: tuple, by: list[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(by, keys)) if by else "all rows"


def _paired_scores(group: pd.DataFrame, a: str, b: str, *, label: str, score: str, pair_on: str,
                   where: str) -> tuple[np.ndarray, np.ndarray]:
    """The scores of arms a and b on the ``pair_on`` values present for both, sorted by that key."""
    sides = []
    for arm in (a, b):
        rows = group[group[label] == arm]
        dup = rows[pair_on][rows[pair_on].duplicated()]
        if len(dup):
            raise GeoddError(f"{label} {arm!r} has several rows for {pair_on}={dup.iloc[0]} at {where}; "
                             f"aggregate them first")
        sides.append(rows.set_index(pair_on)[score])
    joined = pd.concat(sides, axis=1, join="inner", keys=["a", "b"]).sort_index()
    return joined["a"].to_numpy(), joined["b"].to_numpy()


def compare_table(frame: pd.DataFrame, *, by: str | Sequence[str] | None, score: str = "acc",
                  pair_on: str = "seed", pairs: Iterable[Any], level: float = 0.95, scale: float = 100,
                  label: str = "arm") -> pd.DataFrame:
    """One ``paired_comparison`` per pair and per ``by`` group (e.g. ``by="ipc"``) of a long results frame.

    ``frame`` has one row per method (column ``label``), seed (``pair_on``) and group, with the score in
    ``score``. ``pairs`` lists ``(a_label, b_label, alternative[, margin])`` (alternative defaults to
    "greater"; a margin, in displayed units, makes a non-inferiority claim: ``paired_comparison``). Rows
    of a and b are paired on ``pair_on``; only values present for both count, and column n says how many.
    Returns the ``by`` columns, then comparison ("a − b"), n, mean diff, CI low, CI high, p, MDE, verdict,
    alternative; differences, CI and MDE are multiplied by ``scale`` (100: accuracy fractions to points).
    Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
    _check_options("greater", level)
    by_cols = [] if by is None else [by] if isinstance(by, str) else list(by)
    missing = [c for c in [label, score, pair_on, *by_cols] if c not in frame.columns]
    if missing:
        raise GeoddError(f"frame lacks column(s) {', '.join(map(repr, missing))}; it has {list(frame.columns)}")
    todo, present = _pairs(pairs), set(frame[label])
    unknown = sorted({str(x) for a, b, _, _ in todo for x in (a, b) if x not in present})
    if unknown:
        raise GeoddError(f"unknown {label} {', '.join(unknown)}; the frame has {sorted(map(str, present))}")
    groups = list(frame.groupby(by_cols, sort=True, dropna=False)) if by_cols else [((), frame)]
    rows = []
    for a, b, alt, margin in todo:
        for keys, group in groups:
            keys = keys if isinstance(keys, tuple) else (keys,)
            where = _group_text(keys, by_cols)
            x, y = _paired_scores(group, a, b, label=label, score=score, pair_on=pair_on, where=where)
            try:
                c = paired_comparison(x, y, alt, level, margin / scale)
            except GeoddError as exc:
                raise GeoddError(f"{a} − {b} at {where}: {exc}") from None
            rows.append({**dict(zip(by_cols, keys)), "comparison": f"{a} − {b}" + (f" (margin {margin:g})" if margin else ""), "n": c.n,
                         "mean diff": c.mean_diff * scale, "CI low": c.ci_low * scale,
                         "CI high": c.ci_high * scale, "p": c.p, "MDE": c.mde * scale, "verdict": c.verdict,
                         "alternative": alt})
    out = pd.DataFrame(rows, columns=[*by_cols, *COLUMNS])
    out.attrs.update(level=float(level), scale=scale)
    return out


def _num(x: float, signed: bool = True) -> str:
    """``+1.23``; small values keep two significant digits; NaN is ``n/a``."""
    if x is None or not math.isfinite(x):
        return "n/a"
    spec = "+" if signed else ""
    return f"{x:{spec}.2g}" if 0 < abs(x) < 0.01 else f"{x:{spec}.2f}"


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _pct(level: float) -> str:
    return f"{level * 100:g} %"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """A display-ready copy of a ``compare_table`` result: "+1.23" differences, one "[+0.40, +2.06]" CI column,
    "0.012" p-values ("<0.001" below), "0.90" MDE and H1 as "> 0" / "< 0" / "≠ 0". Render it with
    ``.to_markdown(index=False, disable_numparse=True)``: without that flag tabulate re-reads "+1.20" as 1.2.
    Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise GeoddError(f"format_table takes a compare_table result; missing column(s) {', '.join(missing)}")
    out = table.copy()
    level = table.attrs.get("level", 0.95)
    out["mean diff"] = [_num(v) for v in table["mean diff"]]
    ci = [f"[{_num(lo)}, {_num(hi)}]" if math.isfinite(lo) else "n/a"
          for lo, hi in zip(table["CI low"], table["CI high"])]
    out.insert(out.columns.get_loc("CI low"), f"{_pct(level)} CI", ci)
    out["p"] = ["n/a" if not math.isfinite(p) else "<0.001" if p < 0.001 else f"{p:.3f}" for p in table["p"]]
    out["MDE"] = [_num(v, signed=False) for v in table["MDE"]]
    out["H1"] = [_SYMBOL.get(a, a) for a in table["alternative"]]
    out = out.drop(columns=["CI low", "CI high", "alternative"])
    cols = list(out.columns)
    cols.insert(cols.index("n"), cols.pop(cols.index("H1")))
    return out[cols]


def _as_fields(x: Comparison | Mapping[str, Any] | pd.Series, scale: float, level: float | None) -> dict:
    """The numbers of a Comparison (scaled) or of a compare_table row (already scaled) under one set of names."""
    if isinstance(x, Comparison):
        return {"n": x.n, "diff": x.mean_diff * scale, "low": x.ci_low * scale, "high": x.ci_high * scale,
                "p": x.p, "mde": x.mde * scale, "verdict": x.verdict, "alternative": x.alternative,
                "level": x.level}
    row = dict(x)
    missing = [c for c in ("n", "mean diff", "CI low", "CI high", "p", "MDE", "verdict") if c not in row]
    if missing:
        raise GeoddError(f"verdict_sentence takes a Comparison or a compare_table row; missing {', '.join(missing)}")
    return {"n": int(row["n"]), "diff": float(row["mean diff"]), "low": float(row["CI low"]),
            "high": float(row["CI high"]), "p": float(row["p"]), "mde": float(row["MDE"]),
            "verdict": row["verdict"], "alternative": row.get("alternative", "greater"),
            "level": level if level is not None else float(row.get("level", 0.95))}


def verdict_sentence(x: Comparison | Mapping[str, Any] | pd.Series, a: str, b: str, *, unit: str = "pp",
                     scale: float = 100, level: float | None = None) -> str:
    """A plain-English sentence for prose about method ``a`` against method ``b``.

    ``x`` is a ``Comparison`` (its differences are multiplied by ``scale``) or a row of ``compare_table``
    (already scaled; ``level`` defaults to 0.95 there). Meant for ``display(Markdown(...))``.
    Used in notebooks 02-06 (02_hdd_pruning to 06_results) through their study modules."""
    f = _as_fields(x, scale, level)
    u = f" {unit}" if unit else ""
    claim = {"greater": f"that {a} scores higher than {b}", "less": f"that {a} scores lower than {b}",
             "two-sided": f"that {a} and {b} differ"}[f["alternative"]]
    if f["n"] < 2:
        return (f"With {f['n']} shared seed{'s' if f['n'] != 1 else ''} there is no confidence interval, so the "
                f"claim {claim} is inconclusive.")
    stat = (f"{a} − {b}: {_pct(f['level'])} CI {_num(f['low'])} to {_num(f['high'])}{u}, "
            f"n = {f['n']} paired seeds, {_p_text(f['p'])}")
    lead, trail = (a, b) if f["diff"] >= 0 else (b, a)
    gap = (f"{lead} is ahead of {trail} by {_num(abs(f['diff']), signed=False)}{u} on average ({stat})"
           if f["diff"] != 0 else f"{a} and {b} tie on average ({stat})")
    if f["verdict"] == "supported":
        return f"{gap}, so the seeds support the claim {claim}."
    if f["verdict"] == "contradicted":
        return f"{gap}, so the seeds contradict the claim {claim}."
    return (f"The seeds cannot settle the claim {claim}: {gap}, and the interval includes 0. At this spread a "
            f"true difference of {_num(f['mde'], signed=False)}{u} would be detected 80 % of the time.")


__all__ = ["ALTERNATIVES", "COLUMNS", "Comparison", "compare_table", "format_table", "min_detectable_effect",
           "paired_comparison", "verdict_sentence"]
