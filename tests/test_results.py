import numpy as np
import pandas as pd
import pytest

from geodd.studies.results import Claim, judge, standard_error, threshold_verdict, verdict


def test_verdicts_follow_the_standard_error_rule():
    assert verdict([80, 81, 82], [70, 71, 72])[0] == "yes"
    assert verdict([70, 71, 72], [80, 81, 82])[0] == "no"
    assert verdict([70, 80, 75], [74, 76, 75])[0] == "inconclusive"
    assert verdict([], [1.0])[0] == "not measured"
    assert verdict([90.0], [10.0])[0] == "inconclusive"  # a single seed cannot separate signal from noise


def test_standard_error_matches_formula():
    a, b = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]
    assert standard_error(a, b) == pytest.approx(np.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3))
    assert standard_error([1.0], [2.0]) == 0.0


def test_judge_selects_rows_by_ipc_and_method():
    df = pd.DataFrame({"method": ["A"] * 3 + ["B"] * 3 + ["A"] * 3 + ["B"] * 3,
                       "ipc": [1] * 6 + [10] * 6,
                       "acc": [50, 51, 52, 40, 41, 42, 60, 61, 62, 70, 71, 72]})
    t = judge([Claim("p", "A beats B", "A", "B", ipc=1), Claim("p", "A beats B", "A", "B", ipc=10)], df)
    assert t["reproduced at this scale?"].tolist() == ["yes", "no"]
    assert t["gain"].tolist() == [10.0, -10.0]


def test_threshold_verdict():
    assert threshold_verdict(4.0, at_most=5.7) == "yes"
    assert threshold_verdict(8.0, at_most=5.7) == "no"
    assert threshold_verdict(float("nan"), at_most=5.7) == "not measured"
