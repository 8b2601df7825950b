"""The one step-size rule (``geodd.stepsize``): equal first steps with DM, per IPC, median over seeds; and the
validation split that tuning uses instead of the test set."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from geodd import GeoddError, methods, profiles, stepsize
from geodd.data import validation_split
from geodd.studies.common import Arm


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path / "runs"))
    return tmp_path


def _profile():
    return replace(profiles.get("smoke"), dataset="digits", batch_real=8, iterations=2, train_per_class=None,
                   amp=None, inner_steps=1, eval_epochs=1, eval_runs=1)


SMALL = {"width": 16}
GEO = {"factors": "EHS", "dims": [4, 4, 4]}


def test_calibrated_rate_gives_dms_first_step(digits, runs_dir, one_thread):
    p = _profile()
    cal = stepsize.calibrate("GeoDM", p, digits, 1, seeds=(0, 1, 2), matcher=GEO, overrides=SMALL)
    assert len(cal["ratios"]) == 3 and all(r > 0 for r in cal["ratios"])
    assert math.isclose(cal["lr_img"], float(np.median(cal["ratios"])), rel_tol=5e-3)
    # the first SGD step is linear in the learning rate: at the median seed's ratio the steps are equal
    mid = int(np.argsort(cal["ratios"])[1])
    seed = cal["seeds"][mid]
    cfg = methods.config("GeoDM", p, ipc=1, seed=seed, dataset="digits", matcher=GEO, lr_img=cal["lr_img"], **SMALL)
    assert math.isclose(stepsize.first_step_norm(cfg, digits), cal["reference_steps"][mid], rel_tol=5e-3)
    # memo-cached: the same call computes nothing new and returns the same rate
    assert stepsize.image_lr("GeoDM", p, digits, 1, matcher=GEO, overrides=SMALL) == cal["lr_img"]


def test_rate_is_calibrated_per_ipc(digits, runs_dir, one_thread):
    """Each image's share of the class-mean gradient shrinks with IPC at different rates for DM and GeoDM, so a
    rate calibrated at one IPC is not another's."""
    p = _profile()
    one = stepsize.calibrate("GeoDM", p, digits, 1, seeds=(0,), matcher=GEO, overrides=SMALL)
    three = stepsize.calibrate("GeoDM", p, digits, 3, seeds=(0,), matcher=GEO, overrides=SMALL)
    assert three["reference_steps"][0] < 0.8 * one["reference_steps"][0]
    assert not math.isclose(one["lr_img"], three["lr_img"], rel_tol=0.05)


def test_registry_numbers_are_not_calibrated_and_errors_are_one_line(digits, runs_dir):
    p = _profile()
    assert stepsize.image_lr("DM", p, digits, 1) == 1.0
    assert stepsize.image_lr("IDM+HDD", p, digits, 1) == 0.5 and stepsize.image_lr("IDM+HDD", p, digits, 10) == 1.0
    with pytest.raises(GeoddError, match="unknown method variant"):
        stepsize.image_lr("DM++", p, digits, 1)
    with pytest.raises(GeoddError, match="at least one seed"):
        stepsize.calibrate("SDD", p, digits, 1, seeds=())


def test_every_variant_without_a_published_rate_uses_the_rule():
    for name in methods.names():
        v = methods.get(name)
        lr = v.values(1).get("lr_img")
        if lr is None:
            assert v.schedule == "generative"
        elif lr.value == stepsize.RULE:
            assert lr.source.startswith("ours") and "geodd.stepsize" in lr.source
        else:
            assert lr.source.startswith("release")


def test_arm_config_resolves_the_rule_and_respects_an_explicit_rate(digits, runs_dir, one_thread):
    p = _profile()
    arm = Arm("SDD", "SDD", {"width": 16})
    cfg = arm.config(p, 1, 0, digits)
    assert cfg.lr_img == stepsize.image_lr("SDD", p, digits, 1, overrides=SMALL)
    assert Arm("SDD", "SDD", {"width": 16, "lr_img": 0.3}).config(p, 1, 0, digits).lr_img == 0.3
    assert Arm("DM", "DM").config(p, 1, 0, digits).lr_img == 1.0


def test_rates_table_names_each_source(digits, runs_dir, one_thread):
    p = replace(_profile(), ipcs=(1,))
    t = stepsize.rates(["DM", "SDD"], p, digits, [1], seeds=(0,))
    assert list(t.variant) == ["DM", "SDD"]
    assert t.source.iloc[0].startswith("release") and t.source.iloc[1].startswith("rule: equal first step")


def test_validation_split_is_disjoint_stratified_and_seeded(digits):
    rest, val = validation_split(digits, 5, seed=0)
    assert len(rest) + len(val) == len(digits)
    assert val.counts == [5] * 10 and val.split == "train-validation"
    # disjoint: every original image is in exactly one part (compare pixel rows, the split keeps values)
    both = torch.cat([rest.images, val.images]).flatten(1)
    assert torch.unique(both, dim=0).shape[0] == torch.unique(digits.images.flatten(1), dim=0).shape[0]
    again, val2 = validation_split(digits, 5, seed=0)
    torch.testing.assert_close(val.images, val2.images)
    _, other = validation_split(digits, 5, seed=1)
    assert not torch.allclose(val.images, other.images)
    with pytest.raises(GeoddError, match="would leave none"):
        validation_split(digits, 10_000)
    with pytest.raises(GeoddError, match="per_class must be"):
        validation_split(digits, 0)
