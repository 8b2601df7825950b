"""Notebook 04's helpers (geodd.geodm_study): subset/split variants at equal dimension, the equal-first-step
calibration, paired comparisons and the product claim, geometry logs from records, time and memory."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from geodd import GeoddError, profiles
from geodd import geodm_study as gs
from geodd.distill import DistillConfig, SynSet
from geodd.records import write_json


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path / "runs"))
    return tmp_path


def _digits_profile():
    return replace(profiles.get("smoke"), dataset="digits", batch_real=8, iterations=2, train_per_class=None,
                   amp=None, inner_steps=1, eval_epochs=1, eval_runs=1)


# ---- labels, splits and variants -------------------------------------------------------------------------------

def test_labels_and_equal_splits():
    assert gs.subset_label("SHE") == "E×H×S" and gs.subset_label(["S"]) == "S"
    assert gs.equal_split("EHS", 192) == (64, 64, 64)
    assert gs.equal_split("EH", 7) == (4, 3) and sum(gs.equal_split("HS", 101)) == 101
    assert gs.split_label((128, 32, 32)) == "E128·H32·S32"
    for bad in ("", "EE", "X"):
        with pytest.raises(GeoddError):
            gs.subset_label(bad)
    with pytest.raises(GeoddError):
        gs.equal_split("EHS", 2)


def test_subset_variants_share_one_total_dimension_and_learning_rate():
    vs = gs.subset_variants(96, 12.5, matcher={"lambda_ot": 0.2})
    assert [v.label for v in vs] == ["E", "H", "S", "E×H", "E×S", "H×S", "E×H×S"]
    for v, s in zip(vs, gs.SUBSETS):
        m = v.overrides["matcher"]
        assert v.method == "geodm" and m["factors"] == s and sum(m["dims"]) == 96 and len(m["dims"]) == len(s)
        assert m["lambda_ot"] == 0.2 and v.overrides["lr_img"] == 12.5 and v.overrides["snapshot_at"] == (0,)
    # the overrides make a valid config whose matcher builds
    from geodd.matchers import build_matcher
    cfg = DistillConfig(method="geodm", **vs[-1].overrides)
    cfg.validate()
    assert build_matcher(cfg.method, **cfg.matcher).dims == {"E": 32, "H": 32, "S": 32}
    with pytest.raises(GeoddError):
        gs.geodm_variant("x", "EH", (4,), 1.0)
    sv = gs.split_variants([(8, 2, 2)], 3.0)
    assert sv[0].label == "E8·H2·S2" and sv[0].overrides["matcher"]["dims"] == [8, 2, 2]


def test_study_profile_takes_the_notebook_sizes():
    for name in profiles.PROFILE_NAMES:
        p = profiles.get(name)
        sp = gs.study_profile(p)
        cfg = p["nb04"]
        assert (sp.iterations, sp.batch_real, sp.inner_steps) == (cfg["iterations"], cfg["batch_real"],
                                                                  cfg["inner_steps"])
        assert (sp.eval_epochs, sp.eval_runs, sp.test_per_class) == (cfg["eval_epochs"], cfg["eval_runs"],
                                                                    cfg["test_per_class"])
        assert sp.seeds == tuple(cfg["seeds"]) and sp.dataset == p.dataset
        assert {"E", "H", "S", "EHS"} <= set(cfg["subsets"])
        assert all(len(d) == 3 and sum(d) == cfg["total_dim"] for d in cfg["dim_splits"])
    assert profiles.get("cpu")["nb04"]["ipc"] == 10 and len(profiles.get("cpu")["nb04"]["seeds"]) >= 3
    with pytest.raises(GeoddError):
        gs.study_profile(profiles.get("cpu"), key="nb99")


# ---- comparisons -----------------------------------------------------------------------------------------------

def _runs(table: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "acc": a} for m, accs in table.items() for s, a in enumerate(accs)])


def test_paired_differences_by_seed():
    runs = _runs({"E×H×S": [70.0, 72.0, 74.0], "E": [69.0, 70.0, 73.0], "H": [71.0, 73.0, 75.0]})
    d = gs.paired_differences(runs).set_index("method")
    assert d.loc["E×H×S", "diff_mean"] == 0 and not d.loc["E×H×S", "resolved"]
    assert math.isclose(d.loc["E", "diff_mean"], -4 / 3)
    assert math.isclose(d.loc["E", "se"], np.std([-1, -2, -1], ddof=1) / math.sqrt(3))
    assert d.loc["E", "resolved"]  # |-1.33| > 2 * 0.33
    assert d.loc["H", "diff_std"] == 0 and d.loc["H", "beats_reference"] == 3 and d.loc["E", "beats_reference"] == 0
    one = gs.paired_differences(_runs({"E×H×S": [70.0], "E": [71.0]})).set_index("method")
    assert math.isnan(one.loc["E", "se"]) and not one.loc["E", "resolved"]
    with pytest.raises(GeoddError):
        gs.paired_differences(runs, reference="S")


@pytest.mark.parametrize("prod, verdict", [([75.0, 76.0], "holds"),
                                           ([80.0, 70.0], "holds on the mean but not on every seed"),
                                           ([72.0, 72.0], "does not hold")])
def test_product_claim_verdicts(prod, verdict):
    runs = _runs({"E×H×S": prod, "E": [73.0, 73.0], "H": [72.0, 74.0], "S": [70.0, 71.0]})
    c = gs.product_claim(runs)
    assert c["verdict"] == verdict and c["seeds"] == 2
    assert c["best_single"] == "E" and math.isclose(c["best_single_mean"], 73.0)
    assert math.isclose(c["margin"], np.mean(prod) - 73.0)
    with pytest.raises(GeoddError):
        gs.product_claim(runs.query("method != 'S'"))


def test_timing_table_ratios():
    runs = pd.DataFrame({"method": ["DM", "DM", "G", "G"], "distill_s": [10.0, 12.0, 15.0, 18.0],
                         "median_iter_s": [0.2, 0.2, 0.3, 0.3]})
    t = gs.timing_table(runs, iterations=10).set_index("method")
    assert math.isclose(t.loc["DM", "mean_iter_s"], 1.1) and math.isclose(t.loc["G", "mean_vs_DM"], 1.65 / 1.1)
    assert math.isclose(t.loc["G", "median_vs_DM"], 1.5)
    with pytest.raises(GeoddError):
        gs.timing_table(runs, iterations=0)


# ---- reading runs ----------------------------------------------------------------------------------------------

def test_image_displacement_is_the_mean_relative_change():
    x0 = torch.ones(2, 1, 2, 2)
    x1 = x0.clone()
    x1[0] *= 1.5  # image 0 moved by 50 %, image 1 not at all
    syn = SynSet(x1, torch.tensor([0, 1]), {}, snapshots={0: x0})
    assert math.isclose(gs.image_displacement(syn), 0.25, rel_tol=1e-12)
    with pytest.raises(GeoddError):
        gs.image_displacement(SynSet(x1, torch.tensor([0, 1]), {}))


def _geometry_log(n, c_h0=-1.0, dc=0.01):
    return [{"iteration": 4 * i, "c_H": c_h0 + dc * i, "c_S": 1.0 - dc * i, "w_E": 0.3 + 0.01 * i, "w_H": 0.4,
             "w_S": 0.3 - 0.01 * i, "proto_acc": 0.8, "tau": 0.1} for i in range(n)]


def test_geometry_histories_from_records(tmp_path):
    rows = []
    for seed, c0 in ((0, -1.0), (1, -0.8)):
        d = tmp_path / f"run{seed}"
        d.mkdir()
        write_json(d / "record.json", {"geometry": _geometry_log(5, c_h0=c0)})
        rows.append({"method": "E×H×S", "seed": seed, "run_dir": str(d)})
    dm = tmp_path / "dm"
    dm.mkdir()
    write_json(dm / "record.json", {"geometry": []})
    rows.append({"method": "DM", "seed": 0, "run_dir": str(dm)})
    h = gs.geometry_histories(pd.DataFrame(rows))
    assert set(h.method) == {"E×H×S"} and len(h) == 10 and list(h.columns[:2]) == ["method", "seed"]
    ch = gs.geometry_change(h, "E×H×S").set_index("quantity")
    assert math.isclose(ch.loc["c_H", "first"], -0.9) and math.isclose(ch.loc["c_H", "change"], 0.04)
    assert math.isclose(ch.loc["w_S", "last"], 0.26) and (ch["steps"] == 5).all()
    fin = gs.final_geometry(h).set_index("method")
    assert fin.loc["E×H×S", "c_H"] == "-0.860 ± 0.100"
    with pytest.raises(GeoddError):
        gs.geometry_history({"geometry": []})
    with pytest.raises(GeoddError):
        gs.geometry_change(h, "DM")


# ---- calibration, initial evaluation, cost ---------------------------------------------------------------------

def test_equal_first_step_calibration(digits, runs_dir):
    p = _digits_profile()
    matcher = {"factors": "EHS", "dims": [4, 4, 4]}
    small = {"width": 16}
    cal = gs.calibrate_lr_img(p, digits, matcher, ipc=1, seed=0, overrides=small)
    assert cal["dm_step"] > 0 and cal["geodm_step"] > 0
    assert math.isclose(cal["lr_img"], cal["dm_step"] / cal["geodm_step"], rel_tol=5e-3)
    # the first SGD step is linear in the learning rate: at the calibrated rate GeoDM's first step equals DM's
    cfg = p.distill_config("geodm", ipc=1, seed=0, dataset="digits", matcher=matcher, lr_img=cal["lr_img"], width=16)
    assert math.isclose(gs.first_step_norm(cfg, digits), cal["dm_step"], rel_tol=5e-3)
    assert gs.geodm_lr_img("auto", p, digits, matcher, ipc=1, overrides=small) == cal["lr_img"]  # memo-cached
    assert gs.geodm_lr_img(3, p, digits, matcher, ipc=1) == 3.0
    for bad in ("fast", -1.0):
        with pytest.raises(GeoddError):
            gs.geodm_lr_img(bad, p, digits, matcher, ipc=1)


def test_initialisation_evaluation_uses_snapshot_zero(digits, digits_test, runs_dir, tmp_path):
    from geodd.data import per_class_subset
    p = _digits_profile()
    x0 = digits.images[:20].clone()
    labels = digits.labels[:20].clone()
    SynSet(x0 + 1.0, labels, {}, snapshots={0: x0}).save(tmp_path / "synset.pt")
    test = per_class_subset(digits_test, 5, seed=0)
    a = gs.evaluate_initialisation(p, str(tmp_path), test, seed=0, progress=False)
    from geodd.evaluate import evaluate_images
    b = evaluate_images(x0, labels, test, seed=0, progress=False, **p.eval_kwargs())
    assert a["accs"] == pytest.approx(b.accs)
    assert len(list((runs_dir / "runs" / "memo").glob("nb04-init-*.json"))) == 1


def test_peak_rss_sees_a_large_allocation():
    if not gs.reset_peak_rss():
        pytest.skip("peak RSS cannot be reset on this platform")
    import mmap
    before = gs.current_rss_bytes()
    # a fresh anonymous mapping, touched page by page: bypasses malloc, whose freed blocks may already be resident
    # (run_all.sh keeps freed memory in the process through GLIBC_TUNABLES)
    size = 64 * 2**20
    with mmap.mmap(-1, size) as x:
        for off in range(0, size, mmap.PAGESIZE):
            x[off] = 1
        peak = gs.peak_rss_bytes()
    assert before > 0 and peak - before >= 60 * 2**20


def test_measure_cost_in_process(digits):
    cfg = DistillConfig(dataset="digits", method="geodm", ipc=1, iterations=2, batch_real=8, width=16,
                        matcher={"factors": "EHS", "dims": [4, 4, 4]})
    out = gs.measure_cost(cfg, isolate=False, threads=1, device="cpu")
    assert out["method"] == "geodm" and out["iterations"] == 2 and out["device"] == "cpu"
    assert out["wall_s"] > 0 and out["mean_iter_s"] > 0 and out["median_iter_s"] > 0
    assert out["peak_rss_delta_mib"] >= 0 and "cuda_peak_mib" not in out


def test_cost_job_protocol_of_the_isolated_process(digits, tmp_path):
    """The entry point measure_cost(isolate=True) starts in a fresh interpreter, run here in-process."""
    import json
    cfg = DistillConfig(dataset="digits", method="dm", ipc=1, iterations=1, batch_real=8, width=16)
    job, out = tmp_path / "job.json", tmp_path / "out.json"
    job.write_text(json.dumps({"config": cfg.as_dict(), "threads": 1, "device": "cpu"}))
    gs._main([str(job), str(out)])
    res = json.loads(out.read_text())
    assert res["method"] == "dm" and res["iterations"] == 1 and res["peak_rss_delta_mib"] >= 0
    with pytest.raises(SystemExit):
        gs._main([str(job)])
