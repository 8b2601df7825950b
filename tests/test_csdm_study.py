"""Tests for geodd.csdm_study: variant sharing, gradient calibration, drops/gains, claim verdicts, image stats."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from geodd import GeoddError, csdm_study as cs, profiles
from geodd.data import Dataset
from geodd.matchers import build_matcher


pytestmark = pytest.mark.usefixtures("one_thread")


def _toy(counts=(12, 8, 5, 3), hw=8, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])
    images = torch.randn(len(labels), 1, hw, hw, generator=g) + labels.view(-1, 1, 1, 1).float()
    return Dataset(name="toy-lt", images=images, labels=labels, num_classes=len(counts), mean=(0.0,), std=(1.0,),
                   class_names=[str(c) for c in range(len(counts))], split="train", imf=4.0)


SETTINGS = profiles.get("cpu")["nb03"]


# ------------------------------------------------------------------------- profiles and variants

@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_every_profile_has_consistent_nb03_settings(name):
    p = profiles.get(name)
    s = cs.settings(p)
    assert set(s["drop_imfs"]) <= set(s["imfs"]) and set(s["sweep_imfs"]) <= set(s["imfs"])
    assert s["scale_imf"] in s["imfs"] and s["ipc"] in s["table_ipcs"]
    assert s["scale"] in s["rbf_scales"] and s["laplace_scale"] in s["laplace_scales"]
    assert 0.5 in s["alpha_heads"] and s["alpha_head"] in s["alpha_heads"]
    assert min(s["alpha_heads"]) >= 0.1 and max(s["alpha_heads"]) <= 0.9
    sp = cs.study_profile(p)
    assert (sp.iterations, sp.batch_real, sp.inner_steps, sp.eval_epochs, sp.eval_runs) == (
        s["iterations"], s["batch_real"], s["inner_steps"], s["eval_epochs"], s["eval_runs"])
    assert sp.dataset == p.dataset and sp.seeds == p.seeds


def test_cpu_and_paper_settings_match_the_brief():
    cpu, paper = profiles.get("cpu")["nb03"], profiles.get("paper")["nb03"]
    assert cpu["ipc"] == 10 and len(cpu["table_seeds"]) >= 3 and set(cpu["sweep_imfs"]) == {10, 100, 200}
    assert cpu["alpha_heads"][0] == 0.1 and cpu["alpha_heads"][-1] == 0.9
    assert paper["table_ipcs"] == (10, 50) and paper["num_freqs"] == 4096 and len(paper["table_seeds"]) >= 3


def test_sweep_shares_runs_with_the_table():
    scales = {cs.loss_scale_key(k, sc): 1000.0 for k, sc in
              [("rbf", x) for x in SETTINGS["rbf_scales"]] + [("laplace", x) for x in SETTINGS["laplace_scales"]]}
    dm, sdd, csdm = cs.table_variants(SETTINGS, scales)
    sweep = dict(cs.sweep_variants(SETTINGS, scales))
    assert sweep[0.5] == sdd and sweep[SETTINGS["alpha_head"]] == csdm
    assert sweep[0.1].method == "csdm" and sweep[0.1].overrides["matcher"]["alpha_head"] == 0.1
    kern = cs.kernel_variants(SETTINGS, scales)
    assert kern[0] == (dm, {"kernel": "linear", "scale": kern[0][1]["scale"]}) and math.isnan(kern[0][1]["scale"])
    assert sum(v == sdd for v, _ in kern) == 1          # the table's kernel/bandwidth is the table's SDD run
    kimf = cs.kernel_imf_variants(SETTINGS, scales)
    assert kimf[0][0] == dm and kimf[1][0] == sdd and kimf[2][1]["kernel"] == "laplace"


def test_variants_build_valid_matchers_and_csdm_at_half_equals_sdd():
    scales = {cs.loss_scale_key("rbf", 1.0): 700.0}
    s = {**SETTINGS, "num_freqs": 32, "alpha_heads": (0.5, 0.7)}
    (_, sdd), (_, csdm) = cs.sweep_variants(s, scales)
    g = torch.Generator().manual_seed(0)
    real, syn = torch.randn(20, 6, generator=g), torch.randn(5, 6, generator=g)
    losses = []
    for method, opts in [("sdd", sdd.overrides["matcher"]),
                         ("csdm", {**csdm.overrides["matcher"], "alpha_head": 0.5})]:
        m = build_matcher(method, **opts)
        m.set_class_counts([10, 5, 2])
        m.start_iteration(0, torch.Generator().manual_seed(3), 6, torch.device("cpu"))
        losses.append(m(real, syn, 2))
    assert torch.allclose(losses[0], losses[1], rtol=0, atol=0)


# ------------------------------------------------------------------------------------ calibration

def test_round_significant():
    assert cs.round_significant(1234.567) == 1230.0
    assert cs.round_significant(0.0123456) == 0.0123
    assert cs.round_significant(0.0) == 0.0


def test_calibrate_loss_scales_is_the_median_ratio():
    norms = {"dm": [2.0, 4.0, 9.0], "a": [1.0, 2.0, 100.0], "b": [40.0, 40.0, 40.0]}
    out = cs.calibrate_loss_scales(norms, {"a": 10.0, "b": 1.0})
    assert out == {"a": 20.0, "b": 0.1}
    with pytest.raises(GeoddError):
        cs.calibrate_loss_scales({"a": [1.0]}, {"a": 1.0})
    with pytest.raises(GeoddError):
        cs.calibrate_loss_scales({"dm": [1.0]}, {"a": 1.0})


def _tiny_entries(loss_scales=None):
    def opts(name, kernel, scale):
        o = {"kernel": kernel, "scale": scale, "num_freqs": 64, "alpha": 0.5}
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
    assert np.allclose(again["dm"], norms["dm"])  # same draws: DM's norms are reproduced exactly


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


def test_accuracy_drop_and_gain_are_seed_paired():
    df = _runs()
    drops = cs.accuracy_drop(df, 10, 200).set_index("method")
    assert drops.loc["DM", "drop"] == pytest.approx(10.0) and drops.loc["CSDM", "drop"] == pytest.approx(5.0)
    assert drops.loc["CSDM", "drop_std"] == pytest.approx(0.0, abs=1e-12)
    assert drops.loc["DM", "rel_drop"] == pytest.approx(100 * 10.0 / 80.1, rel=1e-3)
    assert drops.loc["DM", "seeds"] == 3
    g = cs.gain(df, "CSDM", "DM", 200, 10)
    assert g["mean"] == pytest.approx(7.0) and g["std"] == pytest.approx(0.0, abs=1e-12) and g["seeds"] == 3
    with pytest.raises(GeoddError):
        cs.accuracy_drop(df, 10, 50)
    with pytest.raises(GeoddError):
        cs.gain(df, "CSDM", "IDM", 200, 10)


def test_imf_table_and_claims_table():
    df = _runs()
    t = cs.imf_table(df)
    assert len(t) == 9 and (t["seeds"] == 3).all() and "tail (%)" in t.columns
    assert t.iloc[0]["balanced (%)"].startswith("80.10 ±")
    with pytest.raises(GeoddError):
        cs.imf_table(df.drop(columns=["acc_tail"]))
    drops = cs.accuracy_drop(df, 10, 200)
    gains = {b: cs.gain(df, "CSDM", b, 200, 10) for b in ("DM", "SDD")}
    claims = cs.claims_table(drops, gains, dataset="toy", ipc=10).set_index("method")
    assert claims.loc["CSDM", "paper (CIFAR-10-LT)"] == 5.7 and claims.loc["CSDM", "ours (toy)"] == pytest.approx(5.0)
    assert math.isnan(claims.loc["DM", "paper (CIFAR-10-LT)"])
    assert claims.loc["CSDM - DM", "paper (CIFAR-10-LT)"] == 14.0
    assert claims.loc["CSDM - DM", "ours (toy)"] == pytest.approx(7.0)
    assert math.isnan(claims.loc["CSDM - SDD", "paper (CIFAR-10-LT)"])
    assert claims.loc["CSDM - SDD", "ours (toy)"] == pytest.approx(4.0)


def test_seed_noise_and_verdict():
    df = _runs()
    # 0.1 * seed for seeds 0, 1, 2: sample std 0.1 in every group
    assert cs.seed_noise(df) == pytest.approx(0.1)
    assert math.isnan(cs.seed_noise(df[df.seed == 0]))
    assert cs.verdict(1.0, 0.4) == "supported" and cs.verdict(-1.0, 0.4) == "contradicted"
    assert cs.verdict(0.5, 0.4) == "within noise" and cs.verdict(1.0, float("nan")) == "no noise estimate"


def test_claim_checks_reads_each_claim_correctly():
    df = _runs()
    s = {**SETTINGS, "sweep_imfs": (10, 200), "drop_imfs": (10, 200), "ipc": 10}
    sweep = pd.DataFrame([{"imf": 200, "alpha_head": a, "acc_balanced": 70 + 10 * (a == 0.7)}
                          for a in (0.1, 0.5, 0.7, 0.9)])
    kernels = pd.DataFrame([{"kernel": "linear", "scale": np.nan, "acc_balanced": 70.0},
                            {"kernel": "rbf", "scale": 1.0, "acc_balanced": 75.0},
                            {"kernel": "laplace", "scale": 32.0, "acc_balanced": 69.0}])
    st0 = pd.DataFrame({"class": [0, 1, 2], "diversity": [1.0, 1.1, 0.9], "nearest real": [2.0, 2.0, 2.1]})
    st1 = pd.DataFrame({"class": [0, 1, 2], "diversity": [2.0, 2.2, 2.1], "nearest real": [2.0, 2.1, 2.0]})
    out = cs.claim_checks(df, sweep, kernels, {0.0: st0, 1.0: st1}, s=s).set_index("claim")
    assert out.filter(like="Fig. 3", axis=0)["verdict"].item() == "supported"
    assert out.filter(like="Fig. 3", axis=0)["ours"].item() == "best alpha_head = 0.7"
    assert out.filter(like="beats the linear", axis=0)["difference"].item() == pytest.approx(5.0)
    assert out.filter(like="RBF is the best", axis=0)["difference"].item() == pytest.approx(6.0)
    beats_dm = out.filter(like="CSDM beats DM", axis=0)
    assert beats_dm["difference"].item() == pytest.approx(7.0)
    assert out.filter(like="drop", axis=0)["difference"].item() == pytest.approx(5.0)
    assert out.filter(like="more diverse", axis=0)["verdict"].item() == "supported"
    assert out.filter(like="more realistic", axis=0)["verdict"].item() == "within noise"


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


def test_bandwidth_table_and_relative_scale():
    med = {"l2": 0.5, "l1": 20.0}
    t = cs.bandwidth_table(med, {"rbf_scales": (0.25, 1.0), "laplace_scales": (10.0, 40.0)}).set_index("kernel")
    assert t.loc["rbf", "sigma / median"] == "0.5, 2" and t.loc["laplace", "sigma / median"] == "0.5, 2"
    assert cs.relative_scale("rbf", 1.0, med) == 2.0 and cs.relative_scale("laplace", 10.0, med) == 0.5
    assert math.isnan(cs.relative_scale("linear", float("nan"), med))


def test_image_summary_means_and_cross_distance():
    st = pd.DataFrame({"class": [0, 1], "diversity": [1.0, 3.0], "nearest real": [0.0, 2.0], "drift": [1.0, 1.0]})
    a, b = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    out = cs.image_summary({0.0: st, 1.0: st}, {0.0: a, 1.0: b}).set_index("alpha")
    assert out.loc[0.0, "diversity"] == 2.0 and out.loc[1.0, "nearest real"] == 1.0
    assert out.loc[0.0, "distance to other alpha"] == pytest.approx(2.0)
