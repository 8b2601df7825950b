"""Notebook 04's study (geodd.studies.geodm_product_space): typed settings per profile, GeoDM arms from the
registry at equal dimension, the per-IPC equal-first-step calibration, the paired comparisons of geodd.stats and
the product claim (on constructed runs whose answer is known),
geometry logs from records, time and memory, and a notebook that defines no method settings."""
from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from geodd import GeoddError, methods, profiles
from geodd.distill import DistillConfig
from geodd.io import write_json
from geodd.options import from_mapping
from geodd.studies import geodm_product_space as gs
from geodd.synset import SynSet

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path / "runs"))
    return tmp_path


def _digits_profile():
    return replace(profiles.get("smoke"), dataset="digits", batch_real=8, iterations=2, train_per_class=None,
                   amp=None, inner_steps=1, eval_epochs=1, eval_runs=1)


# ---- settings, labels, splits and arms -------------------------------------------------------------------------

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


def test_subset_arms_are_the_registry_geodm_at_one_total_dimension(digits):
    arms = gs.subset_arms(96, 12.5)
    assert [a.label for a in arms] == ["E", "H", "S", "E×H", "E×S", "H×S", "E×H×S"]
    p = _digits_profile()
    for a, s in zip(arms, gs.SUBSETS):
        assert a.variant == "GeoDM" and a.overrides["lr_img"] == 12.5 and a.overrides["snapshot_at"] == (0,)
        cfg = a.config(p, 1, 0, digits)
        cfg.validate()
        geo = cfg.matcher.geometry
        assert cfg.method == "geodm" and geo.factors == s and sum(geo.dims) == 96 and len(geo.dims) == len(s)
    # the ablation arms change exactly their one matcher setting; everything else is the registry's GeoDM
    from geodd.matchers import build_matcher, matcher_options
    from geodd.options import overrides
    base = gs.subset_arms(96, 1.0, ["EHS"])[0].config(p, 1, 0, digits)
    for name, change in gs.ABLATIONS.items():
        cfg = gs.ablation_arm(name, 96, 1.0).config(p, 1, 0, digits)
        assert cfg.matcher == matcher_options("geodm", {**overrides(base.matcher), **change}) != base.matcher
        assert replace(cfg, matcher=base.matcher, lr_img=1.0) == replace(base, lr_img=1.0)
    assert build_matcher(base.method, base.matcher).dims == {"E": 32, "H": 32, "S": 32}
    with pytest.raises(GeoddError):
        gs.geodm_arm("x", "EH", (4,), 1.0)
    with pytest.raises(GeoddError):
        gs.ablation_arm("no curvature", 96, 1.0)
    sv = gs.split_arms([(8, 2, 2)], 3.0)
    assert sv[0].label == "E8·H2·S2" and sv[0].overrides["matcher"]["dims"] == [8, 2, 2]


def test_settings_per_profile_take_the_notebook_sizes_and_no_method_settings():
    method_names = {path.split(".")[-1] for v in methods.names() for path in methods.get(v).values(1)}
    assert not {f.name for f in fields(gs.GeoDMStudySettings)} & (method_names | {"lr_img", "matcher"})
    for name in profiles.PROFILE_NAMES:
        p, s = profiles.get(name), gs.settings(name)
        sp = s.profile(p)
        assert (sp.iterations, sp.batch_real, sp.inner_steps) == (s.iterations, s.batch_real, s.inner_steps)
        assert (sp.eval_epochs, sp.eval_runs) == (s.eval_epochs, s.eval_runs) and sp.seeds == s.seeds
        assert sp.test_per_class == (p.test_per_class if s.test_per_class is None else s.test_per_class)
        assert sp.dataset == p.dataset and {"E", "H", "S", "EHS"} <= set(s.subsets)
        assert all(len(d) == 3 and sum(d) == s.total_dim for d in s.dim_splits)
        assert gs.settings(p) is s
    assert gs.settings("cpu").ipc == 10 and len(gs.settings("cpu").seeds) >= 3
    with pytest.raises(GeoddError, match="choose one of smoke"):
        gs.settings("nb99")
    raw = {f.name: getattr(gs.settings("smoke"), f.name) for f in fields(gs.GeoDMStudySettings)}
    for bad in ({"dim_splits": ((6, 3, 2),)}, {"subsets": ("E", "EX")}, {"split_seeds": (7,)}, {"ipc": "2"}):
        with pytest.raises(GeoddError):
            from_mapping(gs.GeoDMStudySettings, {**raw, **bad})


def _geodm_keys() -> list[str]:
    """DM's and GeoDM's registry settings and every GeoDM matcher option (the groups' fields)."""
    from geodd.matchers import GeoDMOptions
    opts = GeoDMOptions()
    keys = {f.name for g in fields(opts) for f in fields(getattr(opts, g.name))}
    keys |= {path.split(".")[-1] for v in (gs.DM, gs.VARIANT) for path in methods.get(v).values(1)}
    return sorted(keys | {"lr_img"})


#: method settings (the registry's DM/GeoDM settings, or a GeoDM matcher option) a notebook may not set to a literal
_GEODM_KEYS = _geodm_keys()


def test_notebook_04_defines_no_method_settings():
    from notebook_checks import literal_settings, notebook_code
    code = notebook_code("04_geodm_product_space")
    assert literal_settings(code, _GEODM_KEYS) == []
    assert "study.settings(profile)" in code and "methods.table" in code
    assert literal_settings('x = {"lambda_ot": 0.0, "lr_img": lr}', _GEODM_KEYS) == ["lambda_ot"]  # the rule can fail


# ---- comparisons -----------------------------------------------------------------------------------------------

def _runs(table: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "acc": a} for m, accs in table.items() for s, a in enumerate(accs)])


def _study(product_gain: float, n: int = 5, seed: int = 0) -> pd.DataFrame:
    """Accuracies over ``n`` seeds with a shared seed effect: E, H and S are DM + noise, the product is E's
    level + ``product_gain`` + small noise (a null when the gain is 0)."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(70.0, 2.0, size=n)
    table = {m: shared + rng.normal(0.0, 0.5, size=n) for m in ("DM", "E", "H", "S")}
    table["E×H×S"] = shared + product_gain + rng.normal(0.0, 0.2, size=n)
    return _runs({m: list(v) for m, v in table.items()})


def test_compare_runs_is_the_one_stats_rule():
    from geodd import stats
    runs = _study(product_gain=3.0)
    t = gs.product_comparisons(runs)
    assert list(t.columns) == list(stats.COLUMNS) and t.attrs["scale"] == 1
    # every other method, not only the best single space
    assert list(t.comparison) == ["E×H×S − DM", "E×H×S − E", "E×H×S − H", "E×H×S − S"]
    assert (t.verdict == "supported").all() and (t.n == 5).all() and (t.alternative == "greater").all()
    wide = runs.pivot_table(index="seed", columns="method", values="acc")
    c = stats.paired_comparison(wide["E×H×S"], wide["H"], "greater")
    row = t.set_index("comparison").loc["E×H×S − H"]
    assert row["mean diff"] == pytest.approx(c.mean_diff) and row["CI low"] == pytest.approx(c.ci_low)
    assert row["p"] == pytest.approx(c.p) and row["MDE"] == pytest.approx(c.mde)
    one = gs.compare_runs(_runs({"E×H×S": [70.0], "E": [71.0]}), [("E×H×S", "E", "two-sided")])
    assert one["n"].item() == 1 and one["verdict"].item() == "inconclusive" and math.isnan(one["CI low"].item())
    with pytest.raises(GeoddError):
        gs.product_comparisons(runs, product="E×S")


@pytest.mark.parametrize("gain, verdict, supported", [(3.0, "supported", 3), (0.0, "inconclusive", 0),
                                                      (-3.0, "contradicted", 0)])
def test_product_claim_needs_every_single_space(gain, verdict, supported):
    c = gs.product_claim(gs.product_comparisons(_study(product_gain=gain)))
    assert c["verdict"] == verdict and c["supported"] == supported and c["n"] == 5
    assert c["supported"] + c["contradicted"] + c["inconclusive"] == 3 and c["singles"] == ["E", "H", "S"]
    assert f"claim is **{verdict}**" in c["text"] and c["text"].count("\n- ") == 3   # one sentence per single space
    # one single space level with the product (a null for that row) is enough to leave the claim unsettled
    runs = _study(product_gain=3.0)
    runs.loc[runs.method == "S", "acc"] = runs.loc[runs.method == "E×H×S", "acc"].to_numpy() + \
        np.random.default_rng(1).normal(0.0, 0.5, size=5)
    mixed = gs.product_claim(gs.product_comparisons(runs))
    assert mixed["supported"] == 2 and mixed["verdict"] != "supported"
    with pytest.raises(GeoddError):
        gs.product_claim(gs.product_comparisons(_study(3.0).query("method != 'S'")))


def test_comparison_sentences_and_summary_say_n_1_for_one_seed():
    t = gs.compare_runs(_study(product_gain=3.0), [("E×H×S", "E", "greater"), ("H", "E", "two-sided")])
    text = gs.comparison_sentences(t)
    row = t.iloc[0]
    assert len(text.splitlines()) == 2 and f"{row['CI low']:+.2f} to {row['CI high']:+.2f} pp" in text
    assert "support the claim that E×H×S scores higher than E" in text
    one = gs.compare_runs(_runs({"E×H×S": [70.0], "E": [71.0]}), [("E×H×S", "E", "greater")])
    assert "With 1 shared seed there is no confidence interval" in gs.comparison_sentences(one)
    s = gs.accuracy_summary(_runs({"E×H×S": [70.0, 72.0, 74.0], "E": [69.0]})).set_index("method")
    assert s.loc["E×H×S", "acc (%)"] == "72.00 ± 2.00" and s.loc["E×H×S", "seeds"] == 3
    assert s.loc["E", "acc (%)"] == "69.00 (n = 1)" and math.isnan(s.loc["E", "std"])   # never "± 0.00"


def test_save_comparisons_keeps_signs():
    from geodd import plots
    t = gs.product_comparisons(_study(product_gain=3.0))
    shown = gs.save_comparisons(t, "test_comparisons")
    md = (plots.figure_dir(gs.NOTEBOOK) / "test_comparisons.md").read_text()
    assert all(v.startswith("+") and v in md for v in shown["mean diff"])


def test_timing_table_ratios():
    runs = pd.DataFrame({"method": ["DM", "DM", "G", "G"], "distill_s": [10.0, 12.0, 15.0, 18.0],
                         "median_iter_s": [0.2, 0.2, 0.3, 0.3]})
    t = gs.timing_table(runs, iterations=10).set_index("method")
    assert math.isclose(t.loc["DM", "mean_iter_s"], 1.1) and math.isclose(t.loc["G", "mean_vs_DM"], 1.65 / 1.1)
    assert math.isclose(t.loc["G", "median_vs_DM"], 1.5)
    with pytest.raises(GeoddError):
        gs.timing_table(runs, iterations=0)


def test_published_ot_ablation_reads_the_one_table(monkeypatch):
    from geodd.studies import published as pub
    monkeypatch.setitem(pub.PUBLISHED, gs.PUBLISHED_OT_KEYS["GeoDM with OT"], (72.3, None, "review (test)"))
    monkeypatch.delitem(pub.PUBLISHED, gs.PUBLISHED_OT_KEYS["GeoDM without OT"], raising=False)
    t = gs.published_ot_ablation().set_index("setting")
    assert t.loc["GeoDM with OT", "acc"] == 72.3 and t.loc["GeoDM with OT", "source"] == "review (test)"
    assert math.isnan(t.loc["GeoDM without OT", "acc"])  # a missing entry is shown as missing, never guessed


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
        write_json(d / "record.json", {"config": {}, "geometry": _geometry_log(5, c_h0=c0)})
        rows.append({"method": "E×H×S", "seed": seed, "run_dir": str(d)})
    dm = tmp_path / "dm"
    dm.mkdir()
    write_json(dm / "record.json", {"config": {}, "geometry": []})
    rows.append({"method": "DM", "seed": 0, "run_dir": str(dm)})
    h = gs.geometry_histories(pd.DataFrame(rows))
    assert set(h.method) == {"E×H×S"} and len(h) == 10 and list(h.columns[:2]) == ["method", "seed"]
    ch = gs.geometry_change(h, "E×H×S").set_index("quantity")
    assert math.isclose(ch.loc["c_H", "first"], -0.9) and math.isclose(ch.loc["c_H", "change"], 0.04)
    assert math.isclose(ch.loc["w_S", "last"], 0.26) and (ch["steps"] == 5).all()
    fin = gs.final_geometry(h).set_index("method")
    assert fin.loc["E×H×S", "c_H"] == "-0.860 ± 0.141"                       # sample sd of -0.96 and -0.76
    one = gs.final_geometry(h[h.seed == 0]).set_index("method")
    assert one.loc["E×H×S", "c_H"] == "-0.960 (n = 1)"
    with pytest.raises(GeoddError):
        gs.geometry_history({"geometry": []})
    with pytest.raises(GeoddError):
        gs.geometry_change(h, "DM")


# ---- calibration, initial evaluation, cost ---------------------------------------------------------------------

def test_geodm_lr_img_is_the_stepsize_rule_with_geodms_matcher(digits, runs_dir):
    from geodd import stepsize
    p = _digits_profile()
    matcher = {"factors": "EHS", "dims": [4, 4, 4]}
    small = {"width": 16}
    want = stepsize.calibrate("GeoDM", p, digits, 1, matcher=matcher, overrides=small)["lr_img"]
    assert gs.geodm_lr_img(p, digits, 1, matcher=matcher, overrides=small) == want
    assert gs.geodm_lr_img(p, digits, 1, variant="DM") == methods.get("DM").values()["lr_img"].value


def test_initialisation_evaluation_uses_snapshot_zero(digits, digits_test, runs_dir, tmp_path):
    from geodd.data import per_class_subset
    from geodd.evaluate import evaluate_images
    p = _digits_profile()
    x0 = digits.images[:20].clone()
    labels = digits.labels[:20].clone()
    SynSet(x0 + 1.0, labels, {}, snapshots={0: x0}).save(tmp_path / "synset.pt")
    test = per_class_subset(digits_test, 5, seed=0)
    a = gs.evaluate_initialisation(p, str(tmp_path), test, seed=0, progress=False)
    b = evaluate_images(x0, labels, test, seed=0, progress=False, **p.eval_kwargs())
    assert a["accs"] == pytest.approx(b.accs, abs=1e-9)
    assert len(list((runs_dir / "runs" / "memo").glob(f"{gs.INIT_MEMO}-*.json"))) == 1


def _touch(size: int):
    """A fresh anonymous mapping of ``size`` bytes, touched page by page (bypasses malloc's free lists)."""
    import mmap
    m = mmap.mmap(-1, size)
    for off in range(0, size, mmap.PAGESIZE):
        m[off] = 1
    return m


def test_peak_rss_sees_a_large_allocation():
    if not gs.reset_peak_rss():
        pytest.skip("peak RSS cannot be reset on this platform")
    before = gs.current_rss_bytes()
    size = 64 * 2**20
    with _touch(size):
        peak = gs.peak_rss_bytes()
    assert before > 0 and peak - before >= 60 * 2**20


def test_measure_cost_in_process(digits):
    cfg = DistillConfig(dataset="digits", method="geodm", ipc=1, iterations=2, batch_real=8, width=16,
                        matcher={"factors": "EHS", "dims": [4, 4, 4]})
    out = gs.measure_cost(cfg, isolate=False, threads=1, device="cpu")
    assert out["method"] == "geodm" and out["iterations"] == 2 and out["device"] == "cpu"
    assert out["wall_s"] > 0 and out["mean_iter_s"] > 0 and out["median_iter_s"] > 0
    assert out["rss_before_mib"] > 0 and "cuda_peak_mib" not in out
    # the reported extra memory is the raw readings' difference (floored at 0), not a constant
    assert out["peak_rss_delta_mib"] == pytest.approx(max(0.0, out["rss_peak_mib"] - out["rss_before_mib"]))


def test_measure_cost_sees_memory_the_run_allocates(monkeypatch):
    """The timed run allocates 64 MiB; the reported extra peak must show it (the warm-up's must not count)."""
    if not gs.reset_peak_rss():
        pytest.skip("peak RSS cannot be reset on this platform")
    calls = []

    def fake_distill(cfg, **kw):
        calls.append(cfg.iterations)
        if len(calls) == 1:  # the warm-up: memory it takes and frees is not the objective's
            return None, {}
        with _touch(64 * 2**20):
            pass
        return None, {"timings": {"total_s": 1.0, "median_iter_s": 0.5}}

    monkeypatch.setattr(gs, "distill", fake_distill)
    monkeypatch.setattr(gs, "load_training_data", lambda cfg: None)
    out = gs._measure(DistillConfig(dataset="digits", iterations=2).as_dict(), 1, "cpu")
    assert calls == [1, 2] and out["mean_iter_s"] == 0.5
    assert out["peak_rss_delta_mib"] >= 60, out


def test_cost_job_protocol_of_the_isolated_process(digits, tmp_path):
    """The entry point measure_cost(isolate=True) starts in a fresh interpreter, run here in-process."""
    cfg = DistillConfig(dataset="digits", method="dm", ipc=1, iterations=1, batch_real=8, width=16)
    job, out = tmp_path / "job.json", tmp_path / "out.json"
    job.write_text(json.dumps({"config": cfg.as_dict(), "threads": 1, "device": "cpu"}))
    gs._main([str(job), str(out)])
    res = json.loads(out.read_text())
    assert res["method"] == "dm" and res["iterations"] == 1 and res["threads"] == 1 and res["device"] == "cpu"
    assert res["peak_rss_delta_mib"] == pytest.approx(max(0.0, res["rss_peak_mib"] - res["rss_before_mib"]))
    with pytest.raises(SystemExit):
        gs._main([str(job)])
