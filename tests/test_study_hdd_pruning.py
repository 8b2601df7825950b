"""geodd.studies.hdd_pruning (notebook 02): settings -> registry arms, the budgeted evaluation, claim checks,
the geometry probes, and notebook 02's code defining no method settings of its own."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from geodd import GeoddError, methods, profiles, stats
from geodd import geometry as g
from geodd.matchers.hdd import hdd_loss, lift_features
from geodd.options import from_mapping
from geodd.studies import hdd_pruning as hs

pytestmark = pytest.mark.usefixtures("one_thread")

NOTEBOOK = "02_hdd_pruning"


def _features(n: int, d: int, norm: float, seed: int = 0, spread: float = 0.2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=gen)
    radii = norm * (1 - spread + 2 * spread * torch.rand(n, 1, dtype=torch.float64, generator=gen))
    return x / x.norm(dim=1, keepdim=True) * radii


def _digits_train(digits) -> object:
    return digits.subset(torch.cat([m[:12] for m in digits.indices_by_class]))


# ------------------------------------------------------------------------------------------- settings

@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_every_profile_builds_the_four_registry_rows(name, digits):
    p, s = profiles.get(name), hs.settings(name)
    assert hs.settings(p) is s
    train = _digits_train(digits)
    for ipc in s.ipcs:
        arms = hs.table_arms(s, ipc)
        assert tuple(a.label for a in arms) == hs.TABLE_LABELS == tuple(a.variant for a in arms)
        for a in arms:
            cfg = hs.study_config(p, s, a, ipc, 0, train)
            cfg.validate()
            v = methods.get(a.variant)
            assert (cfg.method, cfg.schedule) == (v.method, v.schedule)
            assert set(cfg.snapshot_at) <= set(s.snapshots) and max(cfg.snapshot_at) <= cfg.iterations
    assert {name for name, _ in s.sweeps.items()} <= set(hs.SWEEPABLE)


@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_rows_take_method_settings_from_the_registry_and_idm_pool_from_the_profile(name, digits):
    """Notebook 02's IDM is notebook 06's IDM: registry settings, the profile's pool; only sizes differ."""
    p, s = profiles.get(name), hs.settings(name)
    sp, train = hs.study_profile(p, s), _digits_train(digits)
    for ipc in s.ipcs:
        for a in hs.table_arms(s, ipc):
            ours = hs.study_config(p, s, a, ipc, 0, train)
            ref = methods.config(a.variant, sp, ipc=ipc, dataset=train.name, imf=train.imf)
            assert ours.matcher == ref.matcher and ours.lr_img == ref.lr_img
            assert ours.idm.ce_weight == ref.idm.ce_weight
            if ours.schedule == "idm":
                release = s.sizes(a.variant, ipc).get("idm", {})
                for key, value in {**p.idm_pool, **release}.items():
                    assert getattr(ours.idm, key) == value, (a.variant, key)


def test_cpu_sizes_are_the_notebooks_and_the_paper_keeps_the_release_sizes(digits):
    train = _digits_train(digits)
    cpu, paper = profiles.get("cpu"), profiles.get("paper")
    sc, spp = hs.settings("cpu"), hs.settings("paper")
    cfg = hs.study_config(cpu, sc, hs.arm(sc, "DM+HDD", 10), 10, 0, train)
    assert (cfg.iterations, cfg.inner_steps, cfg.batch_real, cfg.train_per_class) == (20, 4, 64, 500)
    assert cfg.snapshot_at == (0, 10, 20)
    by = {(a.variant, ipc): hs.study_config(paper, spp, a, ipc, 0, train) for ipc in (1, 10)
          for a in hs.table_arms(spp, ipc)}
    assert by["IDM", 1].batch_real == 5000 and by["IDM", 1].idm.net_generate_interval == 5
    assert by["IDM+HDD", 10].iterations == 10000 and by["IDM+HDD", 1].batch_real == 5000
    assert by["IDM", 10].batch_real == paper.batch_real and by["DM", 1].iterations == paper.iterations
    # the registry's per-IPC image learning rates (HDD's IDM-HDD command)
    assert by["IDM+HDD", 1].lr_img == pytest.approx(0.5) and by["IDM+HDD", 10].lr_img == pytest.approx(1.0)
    assert max(by["IDM+HDD", 10].snapshot_at) <= 10000


def test_an_ablation_overrides_only_its_option(digits):
    s, p, train = hs.settings("cpu"), profiles.get("cpu"), _digits_train(digits)
    assert hs.arm(s, "DM+HDD", 10, keep=0.2).overrides == {"keep": 0.2}
    a = hs.arm(s, "DM+HDD", 10, matcher={"lam": 80.0})
    assert a.overrides == {"matcher": {"lam": 80.0}} and a.label == "DM+HDD"
    cfg, ref = (hs.study_config(p, s, x, 10, 0, train) for x in (a, hs.arm(s, "DM+HDD", 10)))
    assert cfg.matcher.lam == 80.0 and replace(cfg.matcher, lam=ref.matcher.lam) == ref.matcher
    with pytest.raises(GeoddError):
        hs.arm(s, "DM+HDD", 10, keep=0.2, matcher={"lam": 5.0})
    with pytest.raises(GeoddError):
        hs.arm(s, "DM+HDD", 10, matcher={"scale": 5.0})


def test_settings_are_typed_and_checked():
    with pytest.raises(GeoddError):
        hs.settings("nope")
    good = {"ipcs": (1,), "seeds": (0,), "snapshots": (0,), "keeps": (1.0,), "curve_ipc": 1, "probe_per_class": 1,
            "k_values": (1.0,), "pull_radii": (1.0,), "extremes_show": 1, "extremes_pool": 1}
    assert from_mapping(hs.HDDStudySettings, good).keeps == (1.0,)
    for bad in ({"keeps": (0.5,)}, {"curve_ipc": 2}, {"ce_weight": 50.0}, {"sweeps": {"scale": (1.0,)}},
                {"iterations": "many"}):
        with pytest.raises(GeoddError):
            from_mapping(hs.HDDStudySettings, {**good, **bad})


def test_epochs_for_steps():
    assert hs.epochs_for_steps(100, 50) == 50        # one batch per epoch
    assert hs.epochs_for_steps(400, 50) == 25        # two batches per epoch
    assert hs.epochs_for_steps(257, 3) == 2          # at least the asked steps
    assert hs.epochs_for_steps(10_000, 5) == 1
    with pytest.raises(GeoddError):
        hs.epochs_for_steps(0, 5)


# -------------------------------------------------------------------------------------- tables, checks

def _table() -> pd.DataFrame:
    rows = []
    for seed, (dm, hdd, idm, idmh) in enumerate([(50, 52, 60, 61), (51, 53, 61, 60), (49, 51.5, 59, 60)]):
        for label, acc in zip(hs.TABLE_LABELS, (dm, hdd, idm, idmh)):
            rows.append({"method": label, "ipc": 10, "seed": seed, "acc": float(acc)})
    return pd.DataFrame(rows)


def test_hdd_gains_come_from_the_one_statistics_rule():
    gains = hs.hdd_gains(_table()).set_index("comparison")
    assert set(stats.COLUMNS) - {"comparison"} <= set(gains.columns)
    dm = gains.loc["DM+HDD − DM"]
    ref = stats.paired_comparison([52, 53, 51.5], [50, 51, 49])       # the same numbers straight from the rule
    assert dm["n"] == 3 and dm["mean diff"] == pytest.approx(ref.mean_diff) == pytest.approx(13 / 6)
    assert (dm["CI low"], dm["CI high"], dm["p"], dm["MDE"]) == pytest.approx((ref.ci_low, ref.ci_high, ref.p, ref.mde))
    assert dm["verdict"] == "supported" and dm["claim"] == "HDD improves DM" and dm["ipc"] == 10
    idm = gains.loc["IDM+HDD − IDM"]                                  # +1, -1, +1: the seeds disagree
    assert idm["mean diff"] == pytest.approx(1 / 3) and idm["verdict"] == "inconclusive"


def _gain_frame(gains: list[float], base: float = 50.0) -> pd.DataFrame:
    rows = []
    for seed, gain in enumerate(gains):
        noise = 0.5 * math.sin(3 * seed)                              # a seed-to-seed level shared by both arms
        rows += [{"method": "DM", "ipc": 1, "seed": seed, "acc": base + noise},
                 {"method": "DM+HDD", "ipc": 1, "seed": seed, "acc": base + noise + gain}]
        rows += [{"method": m, "ipc": 1, "seed": seed, "acc": base} for m in ("IDM", "IDM+HDD")]
    return pd.DataFrame(rows)


def test_hdd_gains_known_answers_and_one_seed():
    clear = hs.hdd_gains(_gain_frame([2.0, 2.3, 1.8, 2.1, 1.9])).set_index("comparison")
    assert clear.loc["DM+HDD − DM", "verdict"] == "supported" and clear.loc["DM+HDD − DM", "n"] == 5
    null = hs.hdd_gains(_gain_frame([0.4, -0.3, 0.1, -0.5, 0.3])).set_index("comparison")
    assert null.loc["DM+HDD − DM", "verdict"] == "inconclusive"
    worse = hs.hdd_gains(_gain_frame([-2.0, -2.3, -1.8, -2.1, -1.9])).set_index("comparison")
    assert worse.loc["DM+HDD − DM", "verdict"] == "contradicted"
    one = hs.hdd_gains(_gain_frame([5.0])).set_index("comparison").loc["DM+HDD − DM"]
    assert one["n"] == 1 and one["verdict"] == "inconclusive" and math.isnan(one["CI low"])
    lines = hs.claim_sentences(hs.hdd_gains(_gain_frame([5.0])))
    assert lines[0].startswith("- **HDD improves DM** (IPC 1, accuracy)") and "inconclusive" in lines[0]
    assert "support the claim that DM+HDD scores higher than DM" in hs.claim_sentences(clear.reset_index())[0]


def _fake_published(table: dict):
    return lambda method, dataset, ipc=0: table.get((method, dataset.lower(), ipc))


def test_summarise_table_reads_both_papers_from_the_one_published_table(monkeypatch):
    monkeypatch.setattr(hs, "published", _fake_published({
        ("idm", "cifar10", 10): (58.6, 0.1, "IDM paper"), ("dm", "cifar10", 10): (48.9, 0.6, "DM paper"),
        ("dm@hdd-paper", "cifar10", 10): (48.5, None, "HDD re-run"), ("dm+hdd", "cifar10", 10): (50.3, None, "HDD"),
        ("idm+hdd", "cifar10", 10): (61.3, None, "HDD")}))
    out = hs.summarise_table(_table(), "cifar10").set_index("method")
    assert out.loc["IDM", "published (original paper)"] == "58.6 ± 0.1"
    assert out.loc["DM", "published (original paper)"] == "48.9 ± 0.6"
    assert out.loc["DM", "published (HDD paper)"] == "48.5" and out.loc["DM+HDD", "published (HDD paper)"] == "50.3"
    assert out.loc["IDM", "published (HDD paper)"] == "–" and out.loc["DM+HDD", "published (original paper)"] == "–"
    assert out.loc["DM", "sources"] == "DM paper; HDD re-run"
    assert out.loc["DM", "ours (%)"] == "50.00 ± 0.82"


def test_published_pruning_keys(monkeypatch):
    assert hs.pruning_key("DM", 0) == "dm@hdd-paper" and hs.pruning_key("IDM+HDD", 0) == "idm+hdd"
    assert hs.pruning_key("DM+HDD", 20) == "dm+hdd@prune20"
    monkeypatch.setattr(hs, "published", _fake_published({("dm+hdd@prune20", "cifar10", 10): (49.6, None, "x"),
                                                          ("dm@hdd-paper", "cifar10", 10): (48.5, None, "y")}))
    t = hs.published_pruning().set_index(["printed ratio (%)", "method"])
    assert t.loc[(20, "DM+HDD"), "acc"] == 49.6 and t.loc[(0, "DM"), "acc"] == 48.5
    assert math.isnan(t.loc[(40, "IDM"), "acc"]) and len(t) == len(hs.PRUNING_RATIOS) * len(hs.TABLE_LABELS)


def _pruning_runs(diffs: list[float], roughness: tuple[float, float] = (0.3, 0.2)) -> pd.DataFrame:
    rows = []
    for seed, d in enumerate(diffs):
        full = 50.0 + math.sin(2 * seed)
        rows += [{"pruning": "keep 100%", "ipc": 10, "seed": seed, "acc": full,
                  "loss_roughness": roughness[0] + 0.01 * math.cos(seed)},
                 {"pruning": "keep 20%", "ipc": 10, "seed": seed, "acc": full + d,
                  "loss_roughness": roughness[1] + 0.01 * math.sin(seed)}]
    return pd.DataFrame(rows)


def test_pruning_claims_are_non_inferiority_with_the_settings_margin():
    assert hs.settings("cpu").prune_margin > 0
    small_loss = hs.pruning_claims(_pruning_runs([-0.3, -0.2, -0.4, -0.3, -0.25]), 1.0).set_index("score")
    acc = small_loss.loc["accuracy"]
    assert acc["claim"] == "keeping 20% of the data retains accuracy" and acc["margin"] == 1.0
    assert acc["mean diff"] < 0 and acc["CI low"] > -1.0 and acc["verdict"] == "supported"  # loses little
    assert small_loss.loc["loss roughness", "verdict"] == "supported"                        # smoother
    # without a margin the same data is a loss, not "retains"
    assert hs.pruning_claims(_pruning_runs([-0.3, -0.2, -0.4, -0.3, -0.25]), 0.0).set_index("score").loc[
        "accuracy", "verdict"] == "contradicted"
    big_loss = hs.pruning_claims(_pruning_runs([-3.0, -2.8, -3.3, -3.1, -2.9], (0.2, 0.3)), 1.0).set_index("score")
    assert big_loss.loc["accuracy", "verdict"] == "contradicted"
    assert big_loss.loc["loss roughness", "verdict"] == "contradicted"
    noisy = hs.pruning_claims(_pruning_runs([-1.0, 1.5, -3.0, 0.5, -2.0]), 1.0).set_index("score")
    assert noisy.loc["accuracy", "verdict"] == "inconclusive"
    one = hs.pruning_claims(_pruning_runs([-0.3]), 1.0)
    assert one["n"].tolist() == [1, 1] and set(one["verdict"]) == {"inconclusive"}
    with pytest.raises(GeoddError):
        hs.pruning_claims(_pruning_runs([-0.3]).query("pruning == 'keep 20%'"), 1.0)


def test_claim_sentences_state_the_margin_and_the_view_its_shifted_null():
    claims = hs.pruning_claims(_pruning_runs([-0.3, -0.2, -0.4, -0.3, -0.25]), 1.0)
    acc, rough = hs.claim_sentences(claims)
    assert acc.startswith("- **keeping 20% of the data retains accuracy** (IPC 10, accuracy): keep 20% − keep 100% =")
    assert "lies above −1 pp" in acc and "support the claim that keep 20% is not worse than keep 100% by more " \
                                         "than 1 pp" in acc
    assert "support the claim that keep 20% scores lower than keep 100%" in rough
    noisy = hs.claim_sentences(hs.pruning_claims(_pruning_runs([-1.0, 1.5, -3.0, 0.5, -2.0]), 1.0))[0]
    assert "cannot settle" in noisy and "reaches −1 pp" in noisy
    one = hs.claim_sentences(hs.pruning_claims(_pruning_runs([-0.3]), 1.0))[0]
    assert "With 1 shared seed there is no confidence interval" in one and "inconclusive" in one
    view = hs.claims_view(claims)
    assert view["H1"].tolist() == ["> −1", "< 0"] and "unit" not in view and "margin" not in view
    assert view["mean diff"].iloc[0].startswith("-") and view["verdict"].tolist() == ["supported", "supported"]


def test_loss_roughness():
    assert hs.loss_roughness([1.0] * 10) == 0.0
    assert hs.loss_roughness(np.linspace(2, 1, 101)) == pytest.approx(0.01 / 1.5)
    jagged = [1.0, 2.0] * 10
    assert hs.loss_roughness(jagged) == pytest.approx(1.0 / 1.5)
    assert hs.loss_roughness([3.0]) == 0.0


def test_timing_totals_counts_each_run_and_evaluation_once():
    a = pd.DataFrame({"run_dir": ["r1", "r1", "r2"], "iteration": [0, 20, 20], "distill_s": [10.0, 10.0, 5.0],
                      "eval_s": [1.0, 2.0, 3.0]})
    b = a.iloc[[1]]  # the same evaluation seen again (e.g. table and curve share a run)
    t = hs.timing_totals(a, b)
    assert t == {"runs": 2, "evaluations": 3, "distill_s": pytest.approx(15.0), "eval_s": pytest.approx(6.0)}


# -------------------------------------------------------------------------------------- geometry probes

def test_k_equivalence_is_exact_under_rescale_and_clamped_release():
    real, syn = _features(40, 16, 25.0, seed=1), _features(10, 16, 25.0, seed=2)
    for norm, lift in (("rescale", "exp"), ("rescale", "projx"), ("release", "exp")):
        df = hs.k_equivalence(real, syn, (0.25, 1.0, 2.4, 4.0), norm=norm, lift=lift)
        np.testing.assert_allclose(df["ratio"], 1.0, rtol=1e-9)
    # once the clamp stops biting (|v| / sqrt(k) < 10) k changes the geometry, not just the scale
    df = hs.k_equivalence(real, syn, (1.0, 16.0), norm="release")
    assert abs(df["ratio"].iloc[1] - 1.0) > 1e-3


def test_radius_frame_release_is_one_radius_and_rescale_keeps_spread():
    feats = _features(50, 32, 25.0)
    f = hs.radius_frame({"real": feats, "half": feats / 2}, feats, k=2.0)
    rel = f[f.norm == "release"]
    np.testing.assert_allclose(rel[rel.set == "real"]["radius_units"], 10.0, rtol=1e-9)
    # release: |v| / sqrt(k) = 12.5/1.41 < 10 for the halved set -> radius |v| exactly
    half = rel[rel.set == "half"]
    np.testing.assert_allclose(half["radius"], half["feature_norm"].clip(upper=10 * math.sqrt(2)), rtol=1e-9)
    res = f[f.norm == "rescale"]
    real = res[res.set == "real"]
    assert real["radius_units"].mean() == pytest.approx(2.0, rel=1e-9)     # the default target radius
    # the exp lift is radial-linear: d = sqrt(k) * radius_units = factor * |v|
    np.testing.assert_allclose(real["radius"] / real["feature_norm"],
                               (real["radius"] / real["feature_norm"]).iloc[0], rtol=1e-9)
    np.testing.assert_allclose(res[res.set == "half"]["radius"].to_numpy(), real["radius"].to_numpy() / 2,
                               rtol=1e-9)
    summ = hs.radius_summary(f).set_index(["norm", "set"])
    assert summ.loc[("release", "real"), "rel_spread"] == pytest.approx(0.0, abs=1e-12)
    assert summ.loc[("rescale", "real"), "rel_spread"] > 0.05


def test_pull_frame_and_weighting_check():
    pull = hs.pull_frame((0.5, 2.0, 6.0))
    check = hs.weighting_check(pull)
    assert check["closed_form_increasing"] and check["claimed_decreasing"]
    assert check["frechet_max_dev"] < 1e-6                  # on one geodesic the Frechet mean is the mean of d
    assert pull["tangent mean"].eq(1.0).all()
    # two anchors at the origin: the closed-form pull approaches (d - ln 2) / 2
    assert pull["pull"].iloc[-1] == pytest.approx((6.0 - math.log(2)) / 2, abs=2e-3)


def test_loo_weights_flat_limit_and_radial_growth():
    # tiny radii: the hyperboloid is flat there and the closed form is a Euclidean mean (weight 1)
    small = lift_features(_features(30, 8, 1e-3, seed=3), 1.0, norm="fixed")
    np.testing.assert_allclose(hs.loo_weights(small).numpy(), 1.0, atol=1e-5)
    # a far sample among near ones weighs more than 1 in the closed form (the ambient mean grows like sinh d)
    e = torch.eye(4, dtype=torch.float64)
    prev = 1.0
    for d in (2.0, 5.0):
        v = torch.stack([0.1 * e[1], -0.1 * e[1], 0.1 * e[2], -0.1 * e[2], d * e[0]])
        w = hs.loo_weights(g.lift(v, 1.0))
        assert float(w[-1]) > 1.1 and float(w[-1]) > prev
        prev = float(w[-1])
    with pytest.raises(GeoddError):
        hs.loo_weights(small[:1])


def test_loo_frame_columns_and_claimed_normalisation():
    feats, labels = _features(40, 8, 25.0, seed=4), torch.arange(40) % 2
    df = hs.loo_frame(feats, labels)
    assert set(df["class"]) == {0, 1} and len(df) == 40
    np.testing.assert_allclose(df.groupby("class")["claimed w(d)"].mean(), 1.0, rtol=1e-9)
    assert np.isfinite(df["closed-form weight"]).all()


def test_poincare_view_geometry():
    real = _features(60, 12, 25.0, seed=5)
    labels = torch.arange(60) % 3
    syn = (real[:6] * 1.01, labels[:6])
    view = hs.poincare_view(real, labels, {"syn": syn, "same": (real, labels)})
    pts = view.points
    r = np.hypot(pts.x, pts.y)
    # exact radii: |p| = tanh(d / 2 sqrt(k)) < 1
    np.testing.assert_allclose(r, np.tanh(pts.radius / 2), rtol=1e-9)
    assert (r < 1).all()
    gaps = hs.centroid_gaps(view).set_index("set")
    assert gaps.loc["same", "max_gap"] == pytest.approx(0.0, abs=1e-6)    # identical sets: coinciding centroids
    assert gaps.loc["syn", "mean_gap"] > 0
    # angular spread pulls a centroid inside its members' shell
    assert (view.centroids.radius < view.centroids.member_radius).all()
    rel = hs.poincare_view(real, labels, {"syn": syn}, norm="release")
    np.testing.assert_allclose(rel.points.radius, 10.0, rtol=1e-9)


def test_root_claims_pair_the_sets_by_seed():
    rows = []
    for seed in range(4):
        level = 2.0 + 0.1 * seed                                      # seeds differ; the sets shift alike
        for name, shift, gap in (("init", 0.0, 0.5), ("DM", -0.05, 0.3), ("DM+HDD", -0.3, 0.1)):
            rows.append({"set": name, "ipc": 10, "seed": seed, "mean radius": level + shift + 0.01 * (seed % 2),
                         "centroid gap": gap + 0.01 * seed})
    claims = hs.root_claims(pd.DataFrame(rows))
    assert claims["comparison"].tolist() == ["DM+HDD − DM", "DM+HDD − init", "DM+HDD − DM"]
    assert claims["score"].tolist() == ["mean radius", "mean radius", "centroid gap"]
    assert claims["verdict"].tolist() == ["supported"] * 3 and (claims["n"] == 4).all()
    assert claims["mean diff"].iloc[0] == pytest.approx(-0.25)
    lines = hs.claim_sentences(claims)
    assert lines[0].startswith("- **synthetic samples gravitate towards the root** (IPC 10, mean radius)")


def test_weighting_sentence_reads_the_check():
    line = hs.weighting_sentence(hs.weighting_check(hs.pull_frame((0.5, 2.0, 6.0))))
    assert "weight increases with the radius" in line and "does not describe the implemented centroid" in line


def test_level_extremes_rank_by_feature_norm(digits):
    from geodd.nets import make_network
    net = make_network("mlp", digits.channels, digits.num_classes, digits.im_size, seed=0)
    ext = hs.level_extremes(digits, 2, net, pool_per_class=8)
    feats = hs.embed(digits.images[ext["pool"]], net).norm(dim=1)
    norm_of = dict(zip(ext["pool"].tolist(), feats.tolist()))
    for c in range(digits.num_classes):
        low, high = ext["lowest"][2 * c:2 * c + 2].tolist(), ext["highest"][2 * c:2 * c + 2].tolist()
        members = [i for i in ext["pool"].tolist() if int(digits.labels[i]) == c]
        ranked = sorted(members, key=lambda i: norm_of[i])
        assert low == ranked[:2] and high == ranked[::-1][:2]
        assert all(int(digits.labels[i]) == c for i in low + high)
    with pytest.raises(GeoddError):
        hs.level_extremes(digits, 9, net, pool_per_class=8)


def test_probe_set_is_class_major(digits):
    x, y = hs.probe_set(digits, 3)
    assert len(x) == 3 * digits.num_classes and y.tolist() == sorted(y.tolist())


def test_hdd_loss_reference_for_equivalence():
    """k_equivalence's base is hdd_loss at k = 1 with the default lam (guards against a silent change)."""
    real, syn = _features(20, 8, 25.0, seed=6), _features(5, 8, 25.0, seed=7)
    df = hs.k_equivalence(real, syn, (1.0,))
    assert df["loss"].iloc[0] == pytest.approx(float(hdd_loss(real, syn, 1.0)))


# --------------------------------------------------------------------------- end to end on tiny data

def test_table_curve_and_sweeps_run_on_digits(digits, digits_test, monkeypatch, tmp_path):
    """The grid helpers with the smoke profile's settings on the 8x8 digits: cached, snapshots evaluated, the
    centre of a sweep reuses the table's run, and a repeated call is served from the caches."""
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path))
    p = profiles.get("smoke")
    s = replace(hs.settings(p), keeps=(1.0, 0.5), sweeps=hs.HDDSweeps(lam=(20.0, 5.0)), batch_real=4,
                iterations=1, snapshots=(0, 1))
    train = _digits_train(digits)
    test = digits_test.subset(torch.cat([m[:3] for m in digits_test.indices_by_class]))
    table = hs.run_table(p, s, train=train, test=test, labels=("DM", "DM+HDD"))
    assert list(table.method) == ["DM", "DM+HDD"] and (table.iteration == 1).all()
    assert table["acc"].between(0, 100).all() and (table["eval_epochs"] == s.eval_steps).all()
    assert table.set_index("method").loc["DM+HDD", "hdd_lam"] == methods.get("DM+HDD").settings["matcher.lam"].value
    curve = hs.accuracy_curve(p, s, train=train, test=test)
    assert set(curve.curve) == {"DM+HDD, keep 100%", "DM+HDD, keep 50%", "DM, keep 100%"}
    assert sorted(set(curve.iteration)) == [0, 1]
    full = curve[(curve.curve == "DM+HDD, keep 100%") & (curve.iteration == 1)]
    assert full["run_dir"].iloc[0] == table[table.method == "DM+HDD"]["run_dir"].iloc[0]
    # DM and DM+HDD start from the same real images: one evaluation, same accuracy
    init = curve[(curve.iteration == 0) & (curve.keep == 1.0)]
    assert init["acc"].nunique() == 1
    sweeps = hs.run_sweeps(p, s, train=train, test=test)
    centre = sweeps[sweeps.value == 20.0]["run_dir"].iloc[0]
    assert centre == table[table.method == "DM+HDD"]["run_dir"].iloc[0]
    assert sweeps[sweeps.value == 5.0]["effective_lam"].iloc[0] == pytest.approx(5.0)
    again = hs.run_table(p, s, train=train, test=test, labels=("DM", "DM+HDD"))
    pd.testing.assert_series_equal(again["acc"], table["acc"])
    # the pruning claim's runs: the table's unpruned run and the curve's pruned one (one seed: n = 1)
    pruning = hs.pruning_runs(p, s, train=train, test=test)
    assert pruning["pruning"].tolist() == ["keep 100%", "keep 50%"] and (pruning.seed == 0).all()
    by = pruning.set_index("pruning")["run_dir"]
    assert by["keep 100%"] == table[table.method == "DM+HDD"]["run_dir"].iloc[0]
    assert by["keep 50%"] == curve[curve.curve == "DM+HDD, keep 50%"]["run_dir"].iloc[0]
    claims = hs.pruning_claims(pruning, s.prune_margin)
    assert claims["n"].tolist() == [1, 1] and set(claims["verdict"]) == {"inconclusive"}
    with pytest.raises(GeoddError):
        hs.pruning_runs(p, s, train=train, test=test, keep=1.0)
    from geodd.nets import make_network
    net = make_network("mlp", train.channels, train.num_classes, train.im_size, seed=0)
    x, y = hs.probe_set(train, 3)
    roots = hs.root_runs(table, net, hs.embed(x, net), y, 1)
    assert roots["set"].tolist() == list(hs.ROOT_SETS) and (roots["mean radius"] > 0).all()
    assert hs.root_claims(roots)["n"].tolist() == [1, 1, 1]
    with pytest.raises(GeoddError):
        hs.run_cell(p, s, hs.arm(s, "DM", 1), 1, 0, train=train, test=test, iterations=[7])


def test_evaluate_set_memoises_by_content(digits, digits_test, monkeypatch, tmp_path):
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path))
    x, y = digits.images[:20], digits.labels[:20]
    test = digits_test.subset(torch.arange(30))
    a = hs.evaluate_set(x, y, test, epochs=1, runs=1, amp=None)
    b = hs.evaluate_set(x.clone(), y.clone(), test, epochs=1, runs=1, amp=None)
    assert a == b and len(list((tmp_path / "memo").glob(f"{hs.MEMO_EVAL}-*.json"))) == 1
    hs.evaluate_set(x + 1e-3, y, test, epochs=1, runs=1, amp=None)
    assert len(list((tmp_path / "memo").glob(f"{hs.MEMO_EVAL}-*.json"))) == 2
