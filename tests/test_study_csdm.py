"""geodd.studies.csdm_amplitude_phase (notebook 03): settings, registry arms and the runs they share, gradient
calibration, drops, the paired comparisons of geodd.stats behind every claim (checked on constructed studies whose
answer is known), image stats, and notebook 03's code defining no method settings."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from geodd import GeoddError, methods, profiles
from geodd.data import Dataset
from geodd.matchers import build_matcher
from geodd.options import from_mapping
from geodd.studies import csdm_amplitude_phase as cs


pytestmark = pytest.mark.usefixtures("one_thread")

NOTEBOOK = "03_csdm_amplitude_phase"
SETTINGS = cs.settings("cpu")
SPECTRUM = cs.table_spectrum()


def _toy(counts=(12, 8, 5, 3), hw=8, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    images = torch.randn(len(labels), 1, hw, hw, generator=g) + labels.view(-1, 1, 1, 1).float()
    return Dataset(name="toy-lt", images=images, labels=labels, num_classes=len(counts), mean=(0.0,), std=(1.0,),
                   class_names=[str(c) for c in range(len(counts))], split="train", imf=4.0)


def _scales(s=SETTINGS) -> dict[str, float]:
    """A loss scale for every calibration entry of ``s`` (distinct values, so a mix-up shows)."""
    return {name: 1000.0 + i for i, name in enumerate(cs.calibration_entries(s)) if name != "dm"}


# ------------------------------------------------------------------------- settings and arms

@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_every_profile_has_consistent_settings(name):
    p = profiles.get(name)
    s = cs.settings(p)
    assert s is cs.settings(name)
    # the registry's table setting is a point of every sweep
    assert SPECTRUM["sigma"] in s.rbf_sigmas and SPECTRUM["alpha_head"] in s.alpha_heads
    assert set(s.drop_imfs) <= set(s.imfs) and set(s.sweep_imfs) <= set(s.imfs) and s.ipc in s.table_ipcs
    sp = cs.study_profile(p)
    assert (sp.iterations, sp.batch_real, sp.inner_steps, sp.eval_epochs, sp.eval_runs) == (
        s.iterations, s.batch_real, s.inner_steps, s.eval_epochs, s.eval_runs)
    assert sp.dataset == p.dataset and sp.seeds == p.seeds and sp.idm_pool == p.idm_pool


def test_cpu_and_paper_settings_match_the_brief():
    cpu, paper = cs.settings("cpu"), cs.settings("paper")
    assert cpu.ipc == 10 and len(cpu.table_seeds) >= 3 and set(cpu.sweep_imfs) == {10, 100, 200}
    assert cpu.alpha_heads[0] == 0.1 and cpu.alpha_heads[-1] == 0.9
    assert (cs.settings("smoke").num_freqs, cpu.num_freqs, paper.num_freqs) == (64, 1024, 4096)
    assert paper.table_ipcs == (10, 50) and len(paper.table_seeds) >= 3


def test_settings_are_typed_and_checked():
    with pytest.raises(GeoddError):
        cs.settings("nope")
    good = {f: getattr(SETTINGS, f) for f in SETTINGS.__dataclass_fields__}
    assert from_mapping(cs.CSDMStudySettings, good) == SETTINGS
    for bad in ({"kernel": "rbf"}, {"alpha_heads": (0.3, 0.7)}, {"drop_imfs": (10, 50)}, {"num_freqs": 0},
                {"laplace_sigma": 3.0}):
        with pytest.raises(GeoddError):
            from_mapping(cs.CSDMStudySettings, {**good, **bad})


def test_table_rows_are_the_registry_variants():
    dm, sdd, csdm = cs.table_arms(SETTINGS, _scales())
    assert [(a.label, a.variant) for a in (dm, sdd, csdm)] == [("DM", "DM"), ("SDD", "SDD"), ("CSDM", "CSDM")]
    assert dm.overrides == {}
    for a in (sdd, csdm):   # a size and the calibrated loss scale (which carries the step-size rule at rate 1)
        assert a.overrides == {"lr_img": 1.0, "matcher": {"num_freqs": SETTINGS.num_freqs,
                                           "loss_scale": _scales()[cs.loss_scale_key(SPECTRUM["kernel"],
                                                                                     SPECTRUM["sigma"])]}}


def test_ablations_override_only_the_swept_value():
    scales = _scales()
    base = {"num_freqs", "loss_scale"}
    for a, extra in cs.sweep_arms(SETTINGS, scales):
        swept = set(a.overrides["matcher"]) - base
        assert swept <= {"alpha_head"} and (swept or extra["alpha_head"] in (0.5, SPECTRUM["alpha_head"]))
    for a, extra in cs.kernel_arms(SETTINGS, scales)[1:]:
        assert set(a.overrides["matcher"]) - base <= {"kernel", "sigma"}
        assert a.variant == "SDD" and a.config(profiles.get("cpu"), 10, 0, _toy()).matcher.sigma == extra["sigma"]
    for alpha in SETTINGS.image_alphas:
        a = cs.image_arm(SETTINGS, scales, alpha)
        assert set(a.overrides["matcher"]) - base == {"alpha"} and a.overrides["snapshot_at"] == (0,)


def test_sweep_shares_runs_with_the_table():
    scales = _scales()
    dm, sdd, csdm = cs.table_arms(SETTINGS, scales)
    sweep = {extra["alpha_head"]: a for a, extra in cs.sweep_arms(SETTINGS, scales)}
    assert sweep[0.5] == sdd and sweep[SPECTRUM["alpha_head"]] == csdm
    assert sweep[0.1].variant == "CSDM" and sweep[0.1].overrides["matcher"]["alpha_head"] == 0.1
    kern = cs.kernel_arms(SETTINGS, scales)
    assert kern[0][0] == dm and kern[0][1]["kernel"] == "linear" and math.isnan(kern[0][1]["sigma"])
    assert sum(a == sdd for a, _ in kern) == 1          # the registry's kernel/bandwidth is the table's SDD run
    kimf = cs.kernel_imf_arms(SETTINGS, scales)
    assert kimf[0][0] == dm and kimf[1][0] == sdd and kimf[2][1]["kernel"] == "laplace"


def test_arms_build_valid_configs_and_csdm_at_half_equals_sdd():
    s = replace(SETTINGS, num_freqs=32, alpha_heads=(0.5, 0.7))
    p, train = profiles.get("cpu"), _toy()
    (sdd, _), (csdm, _) = cs.sweep_arms(s, _scales(s))
    g = torch.Generator().manual_seed(0)
    real, syn = torch.randn(20, 6, generator=g), torch.randn(5, 6, generator=g)
    losses = []
    for a, alpha_head in ((sdd, None), (csdm, 0.5)):
        cfg = a.config(p, 10, 0, train)
        cfg.validate()
        opts = {} if alpha_head is None else {"alpha_head": alpha_head}
        m = build_matcher(cfg.method, **{**from_options(cfg.matcher), **opts})
        m.set_class_counts([10, 5, 2])
        m.start_iteration(0, torch.Generator().manual_seed(3), 6, torch.device("cpu"))
        losses.append(m(real, syn, 2))
    # SDD and CSDM are different code paths (a constant alpha vs alpha(c) = 0.5): equal up to rounding
    torch.testing.assert_close(losses[0], losses[1])


def from_options(options) -> dict:
    """The non-default values of a typed options object, as build_matcher keywords."""
    from geodd.options import overrides
    return overrides(options)


# ------------------------------------------------------------------------------------ calibration

def test_calibration_entries_start_from_the_registry():
    entries = cs.calibration_entries(SETTINGS)
    assert entries["dm"] == ("dm", {})
    table = entries[cs.loss_scale_key(SPECTRUM["kernel"], SPECTRUM["sigma"])]
    assert table == ("sdd", {**methods.get("SDD").overrides()["matcher"], "num_freqs": SETTINGS.num_freqs})
    assert {cs.loss_scale_key("laplace", x) for x in SETTINGS.laplace_sigmas} <= set(entries)
    assert entries[cs.loss_scale_key(SPECTRUM["kernel"], SPECTRUM["sigma"], 1.0)][1]["alpha"] == 1.0


def test_round_significant():
    assert cs.round_significant(1234.567) == pytest.approx(1230.0)
    assert cs.round_significant(0.0123456) == pytest.approx(0.0123)
    assert cs.round_significant(0.0) == 0.0


def test_calibrate_loss_scales_is_the_median_ratio():
    norms = {"dm": [2.0, 4.0, 9.0], "a": [1.0, 2.0, 100.0], "b": [40.0, 40.0, 40.0]}
    out = cs.calibrate_loss_scales(norms, {"a": 10.0, "b": 1.0})
    assert out == pytest.approx({"a": 20.0, "b": 0.1})
    with pytest.raises(GeoddError):
        cs.calibrate_loss_scales({"a": [1.0]}, {"a": 1.0})
    with pytest.raises(GeoddError):
        cs.calibrate_loss_scales({"dm": [1.0]}, {"a": 1.0})


def _tiny_entries(loss_scales=None):
    def opts(name, kernel, sigma):
        o = {"kernel": kernel, "sigma": sigma, "num_freqs": 64, "alpha": 0.5}
        return ("sdd", o if loss_scales is None else {**o, "loss_scale": loss_scales[name]})
    return {"dm": ("dm", {}), "rbf@1": opts("rbf@1", "rbf", 1.0), "laplace@32": opts("laplace@32", "laplace", 32.0)}


def test_calibrated_gradients_match_dm():
    """After calibration each SDD loss has DM's median gradient norm on the same draws (up to the rounding)."""
    train = _toy(counts=(10, 6, 4), hw=16)
    kw = dict(ipc=2, batch_real=4, draws=2, seed=1, arch="mlp")
    norms = cs.gradient_norms(train, _tiny_entries(), **kw)
    assert all(len(v) == 2 and all(x > 0 for x in v) for v in norms.values())
    scales = cs.calibrate_loss_scales(norms, {"rbf@1": 1500.0, "laplace@32": 1500.0})
    again = cs.gradient_norms(train, _tiny_entries(scales), **kw)
    ref = np.median(again["dm"])
    for name in ("rbf@1", "laplace@32"):
        assert np.median(again[name]) == pytest.approx(ref, rel=6e-3)
    np.testing.assert_allclose(again["dm"], norms["dm"], rtol=1e-6)  # same draws: DM's norms are reproduced


def test_default_loss_scale_is_the_matchers():
    assert cs.default_loss_scale("sdd", {"kernel": "rbf"}) == pytest.approx(1500.0)
    assert cs.default_loss_scale("sdd", {"loss_scale": 7.0}) == pytest.approx(7.0)


def test_gradient_norms_rejects_zero_draws():
    with pytest.raises(GeoddError):
        cs.gradient_norms(_toy(), {"dm": ("dm", {})}, ipc=1, batch_real=2, draws=0)


def test_feature_median_distances_orders_l1_above_l2():
    med = cs.feature_median_distances(_toy(counts=(6, 6), hw=16), n=12, arch="mlp")
    assert 0 < med["l2"] <= 2.0 and med["l1"] >= med["l2"]


# ------------------------------------------------------------------------------------ analysis

def _runs():
    rows = []
    base = {"DM": 80.0, "SDD": 81.0, "CSDM": 82.0}
    loss = {"DM": 10.0, "SDD": 8.0, "CSDM": 5.0}
    for m in base:
        for seed in range(3):
            for imf in (10, 100, 200):
                frac = {10: 0.0, 100: 0.5, 200: 1.0}[imf]
                acc = base[m] - loss[m] * frac + 0.1 * seed
                rows.append({"method": m, "ipc": 10, "seed": seed, "imf": imf, "acc_balanced": acc,
                             "acc_head": acc + 5, "acc_medium": acc, "acc_tail": acc - 5})
    return pd.DataFrame(rows)


def test_accuracy_drop_is_seed_paired_with_the_stats_interval():
    df = _runs()
    drops = cs.accuracy_drop(df, 10, 200).set_index("method")
    assert drops.loc["DM", "drop"] == pytest.approx(10.0) and drops.loc["CSDM", "drop"] == pytest.approx(5.0)
    # the same drop on every seed: the interval collapses to it (geodd.stats' sd = 0 case)
    assert drops.loc["CSDM", ["drop CI low", "drop CI high"]].tolist() == pytest.approx([5.0, 5.0])
    assert drops.loc["DM", "rel_drop"] == pytest.approx(100 * 10.0 / 80.1, rel=1e-3)
    assert drops.loc["DM", "seeds"] == 3
    one = cs.accuracy_drop(df[df.seed == 0], 10, 200).set_index("method")
    assert one.loc["DM", "seeds"] == 1 and math.isnan(one.loc["DM", "drop CI low"])  # no interval from one seed
    runs = cs.drop_runs(df, 10, 200)
    assert len(runs) == 9 and set(runs.columns) >= {"method", "ipc", "seed", "acc_lo", "acc_hi", "drop"}
    with pytest.raises(GeoddError):
        cs.accuracy_drop(df, 10, 50)


def _study(gain: float, n: int = 5, seed: int = 0) -> pd.DataFrame:
    """Long-tailed rows over ``n`` seeds with shared seed noise: SDD = DM + noise (a null: no true difference),
    CSDM = SDD + ``gain`` x (0 at imf 10, 1/2 at imf 100, 1 at imf 200) + small noise; DM drops 10 points."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.0, 2.0, size=n)             # a lucky or unlucky seed lifts every method
    rows = []
    for s in range(n):
        for imf, frac in ((10, 0.0), (100, 0.5), (200, 1.0)):
            dm = 80.0 - 10.0 * frac + shared[s]
            sdd = dm + rng.normal(0.0, 0.5)
            accs = {"DM": dm, "SDD": sdd, "CSDM": sdd + gain * frac + rng.normal(0.0, 0.1)}
            rows += [{"method": m, "ipc": 10, "seed": s, "imf": imf, "acc_balanced": a, "acc_head": a,
                      "acc_medium": a, "acc_tail": a} for m, a in accs.items()]
    return pd.DataFrame(rows)


def test_compare_methods_is_the_one_stats_rule():
    from geodd import stats
    df = _study(gain=3.0)
    t = cs.compare_methods(df, [("CSDM", "SDD", "greater"), ("SDD", "DM", "two-sided")], by=["ipc", "imf"])
    assert list(t.columns) == ["ipc", "imf", *stats.COLUMNS] and len(t) == 6
    at200 = t[(t.imf == 200)].set_index("comparison")
    assert at200.loc["CSDM − SDD", "verdict"] == "supported" and at200.loc["CSDM − SDD", "n"] == 5
    assert t[(t.comparison == "CSDM − SDD") & (t.imf == 10)]["verdict"].item() == "inconclusive"   # no gain at imf 10
    # the numbers are geodd.stats.paired_comparison on the per-seed scores, in accuracy points (scale 1)
    sub = df[df.imf == 200].pivot_table(index="seed", columns="method", values="acc_balanced")
    c = stats.paired_comparison(sub["CSDM"], sub["SDD"], "greater")
    assert at200.loc["CSDM − SDD", "mean diff"] == pytest.approx(c.mean_diff)
    assert at200.loc["CSDM − SDD", ["CI low", "p"]].tolist() == pytest.approx([c.ci_low, c.p])
    one = cs.compare_methods(df[(df.seed == 0) & (df.imf == 200)], [("CSDM", "DM", "greater")])
    assert one["n"].item() == 1 and one["verdict"].item() == "inconclusive" and math.isnan(one["CI low"].item())
    with pytest.raises(GeoddError):
        cs.compare_methods(df, [("CSDM", "IDM", "greater")])


def _fake_published(table: dict):
    return lambda method, dataset, ipc=0: table.get((method, dataset.lower(), ipc))


def test_paper_claims_come_from_the_one_published_table(monkeypatch):
    monkeypatch.setattr(cs, "published", _fake_published({}))
    value, source = cs.paper_claim("drop")
    assert math.isnan(value) and "missing from geodd.studies.published" in source
    monkeypatch.setattr(cs, "published", _fake_published({
        ("csdm:drop-imf10-200", "cifar10-lt", 10): (5.7, None, "abstract")}))
    assert cs.paper_claim("drop") == (pytest.approx(5.7), "abstract")


def test_imf_table_and_claims_table(monkeypatch):
    monkeypatch.setattr(cs, "published", _fake_published({
        ("csdm:drop-imf10-200", "cifar10-lt", 10): (5.7, None, "abstract: drop"),
        ("csdm:gain-over-sota", "cifar10-lt", 10): (14.0, None, "abstract: gain")}))
    df = _runs()
    t = cs.imf_table(df)
    assert len(t) == 9 and (t["seeds"] == 3).all() and "tail (%)" in t.columns
    assert t.iloc[0]["balanced (%)"] == "80.10 ± 0.10"                 # sample sd of 80.0, 80.1, 80.2
    single = cs.imf_table(df[df.seed == 0])
    assert single.iloc[0]["balanced (%)"] == "80.00 (n = 1)"           # one seed: no "± 0.00"
    with pytest.raises(GeoddError):
        cs.imf_table(df.drop(columns=["acc_tail"]))
    drops = cs.accuracy_drop(df, 10, 200)
    gains = cs.compare_methods(df, [("CSDM", "DM", "greater"), ("CSDM", "SDD", "greater")], by=["ipc", "imf"])
    claims = cs.claims_table(drops, gains, dataset="toy", ipc=10, imf=200).set_index("method")
    assert claims.loc["CSDM", "paper (CIFAR-10-LT)"] == pytest.approx(5.7)
    assert claims.loc["CSDM", "ours (toy)"] == pytest.approx(5.0) and claims.loc["CSDM", "source"] == "abstract: drop"
    assert claims.loc["CSDM", "95 % CI"] == "[+5.00, +5.00]" and claims.loc["CSDM", "n"] == 3
    assert math.isnan(claims.loc["DM", "paper (CIFAR-10-LT)"])
    assert claims.loc["CSDM - DM", "paper (CIFAR-10-LT)"] == pytest.approx(14.0)
    assert claims.loc["CSDM - DM", "ours (toy)"] == pytest.approx(7.0)
    assert math.isnan(claims.loc["CSDM - SDD", "paper (CIFAR-10-LT)"])
    assert claims.loc["CSDM - SDD", "ours (toy)"] == pytest.approx(4.0)
    one = cs.claims_table(cs.accuracy_drop(df[df.seed == 0], 10, 200),
                          cs.compare_methods(df[df.seed == 0], [("CSDM", "DM", "greater")], by=["ipc", "imf"]),
                          dataset="toy", ipc=10, imf=200).set_index("method")
    assert one.loc["CSDM - DM", "95 % CI"] == "n/a (n = 1)" and one.loc["CSDM", "95 % CI"] == "n/a (n = 1)"


def _sweeps(s):
    """One seed per sweep point: the Fig. 3 sweep at the largest imf and the Fig. 2 kernels (a clear gap each)."""
    sweep = pd.DataFrame([{"imf": max(s.sweep_imfs), "seed": 0, "alpha_head": a, "acc_balanced": 70 + 10 * (a == 0.7)}
                          for a in s.alpha_heads])
    kernels = pd.DataFrame([{"kernel": "linear", "sigma": np.nan, "seed": 0, "acc_balanced": 70.0},
                            {"kernel": "rbf", "sigma": SPECTRUM["sigma"], "seed": 0, "acc_balanced": 75.0},
                            {"kernel": "laplace", "sigma": s.laplace_sigma, "seed": 0, "acc_balanced": 69.0},
                            {"kernel": "laplace", "sigma": 8.0, "seed": 0, "acc_balanced": 90.0}])
    return sweep, kernels


def test_paper_claims_are_paired_comparisons_with_known_answers(monkeypatch):
    from geodd import stats
    monkeypatch.setattr(cs, "published", _fake_published({}))
    s = replace(SETTINGS, sweep_imfs=(10, 200), drop_imfs=(10, 200), ipc=10, kernel_imf=200, kernel_ipc=10,
                alpha_heads=(0.1, 0.5, 0.7, 0.9))
    sweep, kernels = _sweeps(s)
    out = cs.paper_claims(_study(gain=3.0), sweep, kernels, s=s)
    assert list(out.columns) == ["claim", "source", "paper", *stats.COLUMNS] and out.attrs["scale"] == 1
    rows = out.set_index("comparison")
    # a clear gain over 5 seeds: supported; a null (SDD = DM + noise): inconclusive
    assert rows.loc["CSDM − SDD", "verdict"] == "supported" and rows.loc["CSDM − SDD", "n"] == 5
    assert rows.loc["CSDM − DM", "verdict"] == "supported"
    assert rows.loc["SDD − DM", "verdict"] == "inconclusive" and "Fig. 2" in rows.loc["SDD − DM", "claim"]
    # the drop: DM loses 10 points, CSDM 10 - 3 = 7, on every seed up to noise
    drop = rows.loc["CSDM's drop − DM's drop"]
    assert drop["alternative"] == "less" and drop["verdict"] == "supported"
    assert drop["mean diff"] == pytest.approx(-3.0, abs=1.0)
    # the sweeps have one seed: n = 1, inconclusive however large the gap; nothing is picked as "best"
    fig3 = out[out.claim.str.startswith("Fig. 3")]
    assert list(fig3.comparison) == ["α_head=0.7 − α_head=0.5", "α_head=0.9 − α_head=0.5"]
    assert (fig3.n == 1).all() and (fig3.verdict == "inconclusive").all()
    assert fig3["mean diff"].tolist() == pytest.approx([10.0, 0.0])
    ncfm = out[out.source.str.contains("NCFM")]
    assert len(ncfm) == 1 and "not a claim of the CSDM paper" in ncfm.source.item()
    assert ncfm.comparison.item() == f"rbf σ={SPECTRUM['sigma']:g} − laplace σ={s.laplace_sigma:g}"
    assert ncfm.n.item() == 1 and ncfm.verdict.item() == "inconclusive"
    assert ncfm["mean diff"].item() == pytest.approx(6.0)   # the Laplace bandwidth fixed in advance, not the best
    assert not out.claim.str.contains("Fig. 5").any()               # NCFM's image reading is not judged here
    null = cs.paper_claims(_study(gain=0.0, seed=3), sweep, kernels, s=s).set_index("comparison")
    assert null.loc["CSDM − SDD", "verdict"] == "inconclusive"


def test_claim_sentences_come_from_the_rows(monkeypatch):
    monkeypatch.setattr(cs, "published", _fake_published({}))
    s = replace(SETTINGS, sweep_imfs=(10, 200), drop_imfs=(10, 200), ipc=10, kernel_imf=200, kernel_ipc=10,
                alpha_heads=(0.5, 0.7))
    out = cs.paper_claims(_study(gain=3.0), *_sweeps(s), s=s)
    text = cs.claim_sentences(out)
    lines = text.splitlines()
    assert len(lines) == len(out) and all(line.startswith("- **") for line in lines)
    row = out.set_index("comparison").loc["CSDM − SDD"]
    assert f"{row['CI low']:+.2f} to {row['CI high']:+.2f} pp" in text and "support the claim that CSDM" in text
    assert "With 1 shared seed there is no confidence interval" in text


def test_save_comparisons_keeps_signs_and_p_values():
    from geodd import plots
    t = cs.compare_methods(_study(gain=3.0), [("CSDM", "SDD", "greater")], by="imf")
    shown = cs.save_comparisons(t, "test_comparisons")
    md = (plots.figure_dir(cs.NOTEBOOK) / "test_comparisons.md").read_text()
    assert "95 % CI" in shown.columns and shown["mean diff"].iloc[-1].startswith("+")
    assert shown["mean diff"].iloc[-1] in md and "| > 0 " in md
    assert pd.read_csv(plots.figure_dir(cs.NOTEBOOK) / "test_comparisons.csv")["n"].tolist() == [5, 5, 5]


def test_short_class_table_flags_classes_below_ipc():
    t = cs.short_class_table({10: [6000, 600], 200: [6000, 30]}, (10, 50), "duplicate")
    row = t[(t.imf == 200) & (t.ipc == 50)].iloc[0]
    assert row["classes with n_c < IPC"] == "1 (30)" and row["policy used"] == "duplicate"
    assert (t[t.ipc == 10]["policy used"] == "not needed").all()
    assert row["tail n_c"] == 30 and row["head n_c"] == 6000


def test_image_stats_diversity_nearest_and_drift():
    real = _toy(counts=(4, 4), hw=4)
    idx = torch.cat([real.indices_by_class[0][:2], real.indices_by_class[1][:2]])
    syn, labels = real.images[idx].clone(), real.labels[idx]
    st = cs.image_stats(syn, labels, real, init=syn)
    assert np.allclose(st["nearest real"], 0.0) and np.allclose(st["drift"], 0.0)
    x0 = syn[:2].flatten(1)
    assert st.loc[0, "diversity"] == pytest.approx(float((x0[0] - x0[1]).norm()), rel=1e-6)
    moved = syn + 1.0
    st2 = cs.image_stats(moved, labels, real, init=syn)
    assert np.allclose(st2["drift"], math.sqrt(16)) and np.allclose(st2["diversity"], st["diversity"])


def test_bandwidth_table_and_relative_sigma():
    med = {"l2": 0.5, "l1": 20.0}
    t = cs.bandwidth_table(med, replace(SETTINGS, rbf_sigmas=(0.25, 1.0), laplace_sigmas=(10.0, 40.0)))
    t = t.set_index("kernel")
    assert t.loc["rbf", "sigma / median"] == "0.5, 2" and t.loc["laplace", "sigma / median"] == "0.5, 2"
    assert cs.relative_sigma("rbf", 1.0, med) == pytest.approx(2.0)
    assert cs.relative_sigma("laplace", 10.0, med) == pytest.approx(0.5)
    assert math.isnan(cs.relative_sigma("linear", float("nan"), med))


def test_image_summary_means_and_cross_distance():
    st = pd.DataFrame({"class": [0, 1], "diversity": [1.0, 3.0], "nearest real": [0.0, 2.0], "drift": [1.0, 1.0]})
    a, b = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    out = cs.image_summary({0.0: st, 1.0: st}, {0.0: a, 1.0: b}).set_index("alpha")
    assert out.loc[0.0, "diversity"] == 2.0 and out.loc[1.0, "nearest real"] == 1.0
    assert out.loc[0.0, "distance to other alpha"] == pytest.approx(2.0)
