"""Tests for geodd.generative (the OT-guided generative pipeline, docs/methods/ot_generative.md), its typed
options and registry variants, and notebook 05's study (geodd.studies.ot_generative)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from geodd import GeoddError, methods
from geodd.generative import (METHOD_KEYS, GenConfig, GuidanceTerm, PipelineOptions, SamplerConfig, SamplerOptions,
                              ddim_sample, ensemble_size, entropy_vs_ensemble, label_entropy, load_checkpoint,
                              make_config, otm_terms, otm_loss, ring_mixture, sample_set, sample_toy,
                              save_checkpoint, teacher_specs, tempered, train_generative, train_or_load,
                              train_teachers, wasserstein)
from geodd.generative.model import alphas_bar_schedule, checkpoint_key
from geodd.generative.toy import mode_coverage
from geodd.options import from_mapping, overrides

ROOT = Path(__file__).resolve().parent.parent
OT_GEN = ("OT-gen (sampling only)", "OT-gen (full)")


# ----------------------------------------------------------------------------- toy: exact score, OT guidance

def test_toy_eps_is_the_exact_score_of_the_noised_mixture():
    mix = ring_mixture(3, radius=2.0, std=0.4, weights=[1.0, 2.0, 3.0])
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    for a in (0.999, 0.5, 1e-3):
        var = mix.stds ** 2 * a + (1 - a)
        diff = z[:, None] - math.sqrt(a) * mix.means[None]
        logp = torch.logsumexp(torch.log(mix.weights / mix.weights.sum()) - torch.log(2 * math.pi * var)
                               - 0.5 * diff.pow(2).sum(-1) / var, dim=1)
        score = torch.autograd.grad(logp.sum(), z)[0]
        torch.testing.assert_close(mix.eps(z.detach(), a), -math.sqrt(1 - a) * score, rtol=1e-10, atol=1e-12)


def test_toy_ot_guidance_lowers_ot_distance_and_covers_more_modes():
    mix = ring_mixture(8, radius=3.0, std=0.25)
    real, _ = mix.sample(64, torch.Generator().manual_seed(123))
    plain = sample_toy(mix, 8, real=real, steps=20, seed=0)
    guided = sample_toy(mix, 8, real=real, ot_weight=0.2, ot_eps=0.05, steps=20, seed=0)
    assert torch.isfinite(guided.samples).all()
    w_plain, w_guided = wasserstein(plain.samples, real), wasserstein(guided.samples, real)
    assert w_guided < 0.6 * w_plain, (w_plain, w_guided)
    assert guided.w1 < 0.6 * plain.w1  # also against a fresh sample of the mixture
    assert guided.modes_covered > plain.modes_covered
    assert int(guided.coverage.sum()) <= 8


def test_mode_coverage_counts_and_ignores_far_points():
    mix = ring_mixture(4, radius=3.0, std=0.1)
    pts = torch.cat([mix.means[[0, 0, 2]], torch.zeros(1, 2, dtype=mix.means.dtype)])  # origin: far from all
    assert mode_coverage(pts, mix).tolist() == [2, 0, 1, 0]


def test_inactive_guidance_window_leaves_ddim_unchanged():
    mix = ring_mixture(4)
    abar = alphas_bar_schedule("linear", 200)
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps_fn = lambda z, t: mix.eps(z, abar[t])  # noqa: E731
    pull = GuidanceTerm("pull", 1.0, lambda x0: x0.pow(2).sum(), window=(2.0, 3.0))  # t/T never reaches 2
    base = ddim_sample(eps_fn, abar, noise, steps=10)
    torch.testing.assert_close(ddim_sample(eps_fn, abar, noise, steps=10, terms=[pull]), base)
    on = GuidanceTerm("pull", 0.1, lambda x0: x0.pow(2).sum())  # pulls toward the origin in both modes
    for mode in ("zt", "x0"):
        assert ddim_sample(eps_fn, abar, noise, steps=10, terms=[on], mode=mode).norm() < base.norm()


# ----------------------------------------------------------------------------- LIA

def test_ensemble_size_rule():
    assert ensemble_size(1, 5) == 1
    assert ensemble_size(10, 5) == 3
    assert ensemble_size(50, 5) == 5 and ensemble_size(500, 5) == 5
    sizes = [ensemble_size(ipc, 4) for ipc in range(1, 80)]
    assert sizes == sorted(sizes)
    with pytest.raises(GeoddError):
        ensemble_size(0, 3)


def test_lia_label_entropy_rises_with_ensemble_size():
    gen = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(4, 1, 6, 6, generator=gen)
    labels = torch.arange(4).repeat(60)
    images = centres[labels] + 3.0 * torch.randn(len(labels), 1, 6, 6, generator=gen)
    specs = teacher_specs(4, archs=("mlp",), base_seed=3)  # each teacher: its own 40 images, order and init
    teachers = train_teachers(images, labels, specs, num_classes=4, epochs=3, batch_size=8, lr=3e-3, max_images=40)
    query = centres[torch.arange(4).repeat(10)] + 2.5 * torch.randn(40, 1, 6, 6, generator=gen)
    rows = entropy_vs_ensemble(teachers, query)
    assert [r["size"] for r in rows] == [1, 2, 3, 4]
    for r in rows:  # Jensen: the entropy of the average is at least the members' average entropy
        assert r["entropy"] >= r["member_entropy"] - 1e-6
    sub = [r["subset_entropy"] for r in rows]
    assert all(b >= a - 1e-6 for a, b in zip(sub, sub[1:]))  # monotone over all k-subsets (a theorem)
    assert sub[-1] > sub[0] + 0.03  # the teachers disagree, so the rise is real
    assert rows[-1]["entropy"] > rows[0]["entropy"] + 0.03
    assert max(sub) <= math.log(4) + 1e-6
    torch.testing.assert_close(label_entropy(torch.full((3, 4), 0.25)), torch.full((3,), math.log(4)))


# ----------------------------------------------------------------------------- OTM

def test_otm_reduces_to_weighted_ce_when_student_matches_teacher():
    gen = torch.Generator().manual_seed(0)
    teacher = torch.softmax(3 * torch.randn(16, 10, generator=gen), dim=1)
    labels = torch.randint(0, 10, (16,), generator=gen)
    logits = teacher.log().clone().requires_grad_(True)  # softmax(logits / T) == tempered(teacher, T) for any T
    terms = otm_terms(logits, teacher, labels, temperature=2.0, eps=0.1)
    assert terms["mse"].item() == 0.0 and terms["ot"].item() == 0.0
    loss = otm_loss(logits, teacher, labels, kappa1=0.7, kappa2=2.0, beta2=5.0, temperature=2.0, eps=0.1)
    assert loss.item() == pytest.approx(0.7 * terms["ce"].item(), rel=1e-6)
    assert terms["ce"].item() > 0
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(grad).all()
    (g_match,) = torch.autograd.grad(2.0 * terms["mse"] + 5.0 * terms["ot"], logits)
    assert g_match.abs().max() < 1e-5  # the matching terms sit at their minimum
    # the raw entropic cost is not zero at equality (why the debiased form is the default)
    assert otm_terms(logits, teacher, labels, ot_form="cost")["ot"].item() > 0


def test_otm_matching_terms_positive_and_finite_away_from_teacher():
    gen = torch.Generator().manual_seed(1)
    teacher = torch.softmax(torch.randn(32, 10, generator=gen), dim=1)
    labels = teacher.argmax(1)
    logits = (5 * torch.randn(32, 10, generator=gen)).requires_grad_(True)
    terms = otm_terms(logits, teacher, labels)
    assert terms["mse"].item() > 0 and terms["ot"].item() > 0
    (grad,) = torch.autograd.grad(otm_loss(logits, teacher, labels), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    torch.testing.assert_close(tempered(torch.softmax(logits.detach(), 1), 2.0), torch.softmax(logits.detach() / 2, 1))
    with pytest.raises(GeoddError):
        otm_loss(logits, teacher[:, :5], labels)


# ----------------------------------------------------------------------------- generative model

def _tiny_config(seed: int = 0) -> GenConfig:
    return make_config("smoke", None, channels=1, im_size=(8, 8), num_classes=3, diff_iters=20, seed=seed)


def _tiny_data(n: int = 48):
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(3).repeat(n // 3)
    images = torch.randn(3, 1, 8, 8, generator=gen)[labels] + 0.3 * torch.randn(n, 1, 8, 8, generator=gen)
    return images, labels


def test_generative_model_is_seeded_and_round_trips(tmp_path):
    images, labels = _tiny_data()
    cfg = _tiny_config(seed=0)
    m1, log = train_generative(cfg, images, labels)
    m2, _ = train_generative(cfg, images, labels)
    m3, _ = train_generative(_tiny_config(seed=1), images, labels)
    s1, s2 = m1.state_dict(), m2.state_dict()
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)  # the same seed and code path: bit-identical
    assert max(float((s1[k] - m3.state_dict()[k]).abs().max()) for k in s1) > 1e-3  # another seed: other weights
    assert len(log["vae_loss"]) == cfg.vae_epochs and all(math.isfinite(v) for v in log["diff_loss"])

    lat = m1.encode(images[:5])
    assert lat.shape == (5, cfg.latent_dim) and m1.decode(lat).shape == (5, 1, 8, 8)

    scfg = SamplerConfig(steps=5, batch_size=2, real_batch=8, repr_weight=0.3, div_weight=0.3, ot_weight=0.2)
    a = sample_set(m1, images, labels, 3, scfg, seed=4)
    b = sample_set(m2, images, labels, 3, scfg, seed=4)
    assert a.images.shape == (9, 1, 8, 8) and a.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.isfinite(a.images).all()
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)  # same seed, same path

    path = save_checkpoint(m1, tmp_path / "gen.pt")
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    torch.testing.assert_close(loaded.encode(images[:5]), lat, rtol=0, atol=0)
    with pytest.raises(GeoddError):
        load_checkpoint(tmp_path / "missing.pt")


def test_train_or_load_reuses_matching_checkpoint(tmp_path):
    images, labels = _tiny_data()

    class Data:
        pass

    data = Data()
    data.images, data.labels = images, labels
    cfg = _tiny_config()
    first, log1 = train_or_load(cfg, data, tmp_path)
    second, log2 = train_or_load(cfg, data, tmp_path)
    assert not log1["cached"] and log2["cached"]
    assert set(log2["trained_seconds"]) == {"vae", "diffusion"}  # the training time survives the cache
    torch.testing.assert_close(second.state_dict(), first.state_dict(), rtol=0, atol=0)  # a file round trip
    _, log3 = train_or_load(_tiny_config(seed=2), data, tmp_path)  # another config: trained anew
    assert not log3["cached"]
    data.images = images.clone()
    data.images[0, 0, 0, 0] += 1.0  # one pixel changed: the content fingerprint differs, so it is trained anew
    assert checkpoint_key(cfg, data.images, labels) != checkpoint_key(cfg, images, labels)
    assert checkpoint_key(cfg, images.clone(), labels) == checkpoint_key(cfg, images, labels)
    _, log4 = train_or_load(cfg, data, tmp_path)
    assert not log4["cached"]
    with pytest.raises(GeoddError):
        train_generative(cfg, images[:, :, :6, :6], labels)


# ----------------------------------------------------------------------------- options and the registry

#: sizes for the fast tests (digits, tiny model and students)
_SIZES = {"generator.size": "smoke", "sampler.steps": 4, "sampler.real_batch": 16, "teachers.num": 2,
          "teachers.archs": ["mlp"], "teachers.epochs": 1, "teachers.max_images": 300, "student.arch": "mlp",
          "student.epochs": 3, "student.batch_size": 16, "eval.max_test": 200}


def _opts(variant: str, sizes: dict | None = None, **change) -> PipelineOptions:
    """A row's options: sizes, the registry variant's settings, then one change (dotted keys as ``a__b``)."""
    values = {path: s.value for path, s in methods.get(variant).values().items()}
    return from_mapping(PipelineOptions, {**(sizes or _SIZES), **values,
                                          **{k.replace("__", "."): v for k, v in change.items()}})


@pytest.mark.parametrize("name", OT_GEN)
def test_ot_gen_variants_are_pipeline_method_settings_with_provenance(name):
    v = methods.get(name)
    assert v.method == "ot-gen" and v.by_ipc == {}
    for path, setting in v.values().items():
        assert path in METHOD_KEYS, path  # a method field of PipelineOptions, never a size
        assert setting.source.split(":")[0] in ("paper", "ours", "release"), (path, setting.source)
    opts = _opts(name)
    assert overrides(opts).items() >= {k: v.value for k, v in v.values().items()
                                       if v.value != getattr(getattr(PipelineOptions(), k.split(".")[0]),
                                                             k.split(".")[1])}.items()


def test_pipeline_options_are_checked_in_one_line():
    for bad, match in (({"nope": 1}, "valid: size"), ({"temperature": 1.0}, "ambiguous"),
                       ({"student.beta2": -1.0}, "beta2"), ({"sampler.guidance": "ddpm"}, "plain"),
                       ({"generator.size": "huge"}, "smoke"), ({"teachers.epochs": 1.5}, "integer")):
        with pytest.raises(GeoddError, match=match) as e:
            from_mapping(PipelineOptions, bad)
        assert "\n" not in str(e.value)
    assert from_mapping(PipelineOptions, {"beta2": 0.0}).student.beta2 == 0.0  # flat keys route to their group


def test_sampler_options_switch_the_guidance_terms():
    full = _opts("OT-gen (full)").sampler
    assert full.sampler_config().ot_weight > 0 and full.sampler_config().repr_weight > 0
    igd = SamplerOptions(**{**full.__dict__, "guidance": "igd"}).sampler_config()
    assert igd.ot_weight == 0 and igd.repr_weight == full.repr_weight and igd.div_weight == full.div_weight
    plain = SamplerOptions(**{**full.__dict__, "guidance": "plain"}).sampler_config()
    assert (plain.ot_weight, plain.repr_weight, plain.div_weight) == (0.0, 0.0, 0.0)
    assert (plain.steps, plain.real_batch) == (full.steps, full.real_batch)


# ----------------------------------------------------------------------------- pipeline

def test_pipeline_smoke_on_digits(digits, digits_test, tmp_path):
    from geodd.generative import run_pipeline
    rows = {"plain_hard": _opts("OT-gen (sampling only)", sampler__guidance="plain"),
            "otg_hard": _opts("OT-gen (full)", teachers__labels="hard"), "full": _opts("OT-gen (full)")}
    res = run_pipeline(digits, digits_test, 2, rows, seed=0, cache_dir=tmp_path, device="cpu")
    assert set(res.rows) == {"plain_hard", "otg_hard", "full"} and set(res.sets) == {"plain", "otg"}
    assert res.sets["otg"].images.shape == (20, 1, 8, 8) and res.sets["otg"].labels.bincount().tolist() == [2] * 10
    assert res.ensemble == {"lia": 1, "all": 2} and set(res.soft) == {"otg/lia"}
    soft = res.soft["otg/lia"]
    assert soft.shape == (20, 10) and torch.allclose(soft.sum(1), torch.ones(20))
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in res.rows.values())
    assert res.rows["full"]["labels"] == "soft" and res.rows["otg_hard"]["labels"] == "hard"
    assert {"generative_model", "sampling_otg", "teachers", "relabel", "student_full"} <= set(res.timings)
    again = run_pipeline(digits, digits_test, 2, {"plain_hard": rows["plain_hard"]}, seed=0, cache_dir=tmp_path,
                         device="cpu")
    assert again.logs["generative"]["cached"] and not again.teachers
    # the loaded checkpoint samples what the freshly trained model sampled (another code path: a tolerance)
    torch.testing.assert_close(again.sets["plain"].images, res.sets["plain"].images)
    fixed = {"full": _opts("OT-gen (full)", teachers__seed=0)}
    run_pipeline(digits, digits_test, 1, fixed, seed=0, cache_dir=tmp_path, device="cpu")
    other = run_pipeline(digits, digits_test, 1, fixed, seed=1, cache_dir=tmp_path, device="cpu")
    assert other.logs["teachers"]["cached"] and other.logs["teachers"]["trained_seconds"] > 0  # one shared ensemble
    assert len(other.teachers) == 2 and other.model is not None


def test_pipeline_rows_must_share_the_model_teachers_and_sampling(digits, digits_test):
    from geodd.generative import run_pipeline
    full = _opts("OT-gen (full)")
    for other in (_opts("OT-gen (full)", generator__size="cpu"), _opts("OT-gen (full)", teachers__num=3),
                  _opts("OT-gen (full)", sampler__ot_weight=0.5)):
        with pytest.raises(GeoddError):
            run_pipeline(digits, digits_test, 1, {"a": full, "b": other}, device="cpu")
    with pytest.raises(GeoddError):
        run_pipeline(digits, digits_test, 1, {}, device="cpu")


# ----------------------------------------------------------------------------- study (notebook 05)

def _study_settings(rows=("igd_hard", "full")):
    from geodd.studies.ot_generative import OTGenStudySettings
    return from_mapping(OTGenStudySettings, {
        "ipcs": (1,), "seeds": (0,), "ot_real_per_class": 5, "grid_ipc": 1, "grid_seed": 0, "rows": rows,
        "pipeline": {"generator": {"size": "smoke"}, "sampler": {"steps": 3, "real_batch": 16},
                     "teachers": {"num": 2, "archs": ["mlp"], "epochs": 1, "max_images": 200, "seed": 0},
                     "student": {"arch": "mlp", "epochs": 2, "batch_size": 16}, "eval": {"max_test": 100}},
        "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 64, "steps": 20, "ns": (8,), "seeds": (0, 1),
                "show_n": 8, "sweep_weights": (0.0, 0.2)}})


def test_study_settings_per_profile_hold_sizes_only():
    from geodd import profiles
    from geodd.studies import ot_generative as study
    for name in profiles.PROFILE_NAMES:
        s = study.settings(name)
        assert study.settings(profiles.get(name)) is s
        assert not set(overrides(s.pipeline)) & METHOD_KEYS
        assert set(s.rows) <= set(study.ROWS) and s.grid_ipc in s.ipcs
    assert study.settings("cpu").pipeline.student.epochs == 100 and study.settings("cpu").ipcs == (1, 10)
    with pytest.raises(GeoddError, match="registry"):  # a method setting in a study's sizes is refused
        from_mapping(study.OTGenStudySettings, {**_raw(study.settings("smoke")),
                                                "pipeline": {"student": {"beta2": 0.0}}})
    with pytest.raises(GeoddError, match="unknown ablation rows"):
        from_mapping(study.OTGenStudySettings, {**_raw(study.settings("smoke")), "rows": ("full", "nope")})
    with pytest.raises(GeoddError, match="choose one of smoke"):
        study.settings("nb99")


def _raw(s) -> dict:
    from dataclasses import fields
    return {f.name: getattr(s, f.name) for f in fields(s) if f.name not in ("pipeline", "toy")} | \
        {"toy": {f.name: getattr(s.toy, f.name) for f in fields(s.toy)}}


def test_each_ablation_row_is_its_variant_with_one_change():
    from geodd.studies import ot_generative as study
    s = study.settings("cpu")
    for name, row in study.ROWS.items():
        got, base = overrides(study.row_options(s, name)), overrides(study.row_options(s, "igd_hard"
                                                                     if row.variant == study.SAMPLING_ONLY else "full"))
        changed = {k for k in set(got) | set(base) if got.get(k) != base.get(k)}
        assert changed <= set(row.change) and len(row.change) <= 1, (name, changed)
    full, no_otm = study.row_options(s, "full"), study.row_options(s, "no_otm")
    assert no_otm.student.beta2 == 0 and full.student.beta2 > 0 and full.teachers.labels == "soft"
    assert study.row_options(s, "otg_hard").teachers.labels == "hard"
    assert study.row_options(s, "igd_soft").sampler.sampler_config().ot_weight == 0
    assert study.row_options(s, "no_lia").teachers.ensemble == "all"
    with pytest.raises(GeoddError):
        study.row_options(s, "nope")
    t = study.settings_table()
    assert set(OT_GEN) <= set(t.variant) and (t.source != "").all()


def test_latent_ot_zero_for_equal_sets_and_shift_for_translation():
    from geodd.studies.ot_generative import latent_ot, latent_ot_table
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0] * 6 + [1] * 6)
    assert latent_ot(ref, labels, ref, labels)["mean"] == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([0.3, -0.4, 0.0], dtype=torch.float64)  # translation: W_1 = |shift| under any norm
    out = latent_ot_table({"a": ref + shift}, {"a": labels}, ref, labels)["a"]
    assert out["w1_l2"]["mean"] == pytest.approx(0.5, rel=1e-9)
    assert out["w1_l1"]["mean"] == pytest.approx(0.7, rel=1e-9)
    assert len(out["w1_l2"]["per_class"]) == 2
    with pytest.raises(GeoddError):
        latent_ot(ref, labels + 5, ref, labels)


def _ablation(gains: dict[tuple[str, int], list[float]]):
    """An accuracy table (``accuracy_table``'s columns): row r at IPC i on seed s scores a level shared by every row
    of that (IPC, seed), plus ``gains[r, i][s]``; so a difference of two rows is the difference of their gains."""
    import pandas as pd
    rows = []
    for (row, ipc), per_seed in gains.items():
        for seed, gain in enumerate(per_seed):
            level = 60.0 + ipc + 0.7 * math.sin(3 * seed + ipc)          # a seed level shared by every row
            rows += [{"row": row, "ipc": ipc, "seed": seed, "acc": level + gain}]
    return pd.DataFrame(rows)


def test_claim_table_is_the_one_statistics_rule_over_seeds():
    import numpy as np
    from geodd import stats
    from geodd.studies.ot_generative import claim_table
    clear, null = [5.0, 5.4, 4.8, 5.1, 5.2], [0.4, -0.3, 0.1, -0.5, 0.3]
    acc = _ablation({("no_otm", 1): [0.0] * 5, ("full", 1): clear,          # OTM: a clear gain at IPC 1
                     ("no_otm", 10): [0.0] * 5, ("full", 10): null,         # and none at IPC 10
                     ("no_lia", 1): [0.0] * 5, ("no_lia", 10): [0.0] * 5})
    t = claim_table(acc, [("OTM", "full", "no_otm"), ("worse", "no_lia", "full"), ("absent", "full", "igd_soft")])
    assert set(t["claim"]) == {"OTM", "worse"}                              # pairs whose rows are absent: skipped
    got = t.set_index(["claim", "ipc"])
    assert got.loc[("OTM", 1), "verdict"] == "supported" and got.loc[("OTM", 1), "n"] == 5
    assert got.loc[("OTM", 10), "verdict"] == "inconclusive"
    assert got.loc[("OTM", 1), "mean diff"] == pytest.approx(np.mean(clear))
    ref = stats.paired_comparison(np.array(60 + 1 + 0.7 * np.sin(3 * np.arange(5) + 1)) + clear,
                                  60 + 1 + 0.7 * np.sin(3 * np.arange(5) + 1))
    assert (got.loc[("OTM", 1), "CI low"], got.loc[("OTM", 1), "p"], got.loc[("OTM", 1), "MDE"]) == \
        pytest.approx((ref.ci_low, ref.p, ref.mde))
    assert got.loc[("worse", 1), "verdict"] == "contradicted" and got.loc[("worse", 10), "verdict"] == "inconclusive"
    assert set(stats.COLUMNS) - {"comparison"} <= set(t.columns)


def test_claim_table_one_seed_is_inconclusive_with_n_1():
    import numpy as np
    from geodd.studies.ot_generative import claim_sentences, claim_table
    t = claim_table(_ablation({("full", 1): [9.0], ("no_otm", 1): [0.0]}), [("OTM helps", "full", "no_otm")])
    assert t["n"].tolist() == [1] and t["verdict"].tolist() == ["inconclusive"] and np.isnan(t["CI low"].iloc[0])
    line, = claim_sentences(t)
    assert line.startswith("- **OTM helps** (IPC 1): With 1 shared seed") and "inconclusive" in line
    assert "OT-gen (full)" in line and "OT-gen (+OTG +LIA)" in line        # rows by their METHOD_NAMES


def test_low_ipc_table_pairs_the_gains_at_two_ipcs():
    from geodd.studies.ot_generative import claim_sentences, low_ipc_table
    pairs = [("OTM", "full", "no_otm"), ("LIA", "full", "no_lia")]
    acc = _ablation({("full", 1): [5.0, 5.4, 4.8, 5.1, 5.2], ("no_otm", 1): [0.0] * 5,
                     ("full", 10): [1.0, 1.3, 0.8, 1.1, 0.9], ("no_otm", 10): [0.0] * 5,
                     ("no_lia", 1): [4.0, 5.0, 6.0, 4.5, 5.5], ("no_lia", 10): [1.5, 0.0, 2.0, 0.5, 1.0]})
    t = low_ipc_table(acc, pairs)
    assert t["claim"].tolist() == ["OTM: gain largest at the lowest IPC", "LIA: gain largest at the lowest IPC"]
    assert t["comparison"].tolist() == ["gain at IPC 1 − gain at IPC 10"] * 2
    assert t["verdict"].tolist() == ["supported", "inconclusive"] and t["n"].tolist() == [5, 5]
    assert t["mean diff"].iloc[0] == pytest.approx(5.1 - 1.02)
    assert claim_sentences(t)[0].startswith("- **OTM: gain largest at the lowest IPC**: gain at IPC 1 is ahead")
    assert low_ipc_table(acc[acc.ipc == 1], pairs).empty                    # one IPC: nothing to compare


def test_ot_entropy_baseline_and_toy_tables_use_the_same_rule():
    import pandas as pd
    from geodd.studies import ot_generative as study
    ot = pd.DataFrame([{"variant": v, "ipc": 1, "seed": s, "w1_l2": 1.0 + 0.1 * s - (0.2 if v == "otg" else 0),
                        "w1_l1": 2.0 + 0.1 * s + 0.01 * ((s % 2) - 0.5) * (v == "otg")}
                       for v in ("igd", "otg", "real") for s in range(4)])
    got = study.ot_claim_table(ot).set_index("claim")["verdict"]
    assert got["OTG brings the set closer to real latents (W1, l2 cost)"] == "supported"
    assert got["OTG brings the set closer to real latents (W1, l1 cost)"] == "inconclusive"
    assert "the claim that the OT-guided set scores lower than the IGD-style set" in \
        study.claim_sentences(study.ot_claim_table(ot))[0]
    ent = pd.DataFrame([{"ipc": ipc, "seed": s, "size": k, "entropy": 0.2 * k + 0.05 * s, "subset_entropy": 0.0,
                         "lia": k == (1 if ipc == 1 else 3)} for ipc in (1, 10) for s in range(3) for k in (1, 2, 3)])
    lia = study.lia_entropy_table(ent).set_index("ipc")
    assert lia.loc[1, "verdict"] == "supported" and lia.loc[1, "mean diff"] == pytest.approx(-0.4)
    assert lia.loc[10, "verdict"] == "inconclusive"                         # LIA picks all: one set
    compare = pd.DataFrame([{"method": m, "ipc": 1, "seed": s, "acc": 50 + s + g} for s in range(4) for m, g in
                            ((study.FULL, 3.0 + 0.1 * s), ("Random real (same student)", 0.0),
                             ("DM (same student)", 2.9 + 0.2 * (s % 2)), ("DM (standard protocol)", 9.0))])
    base = study.baseline_table(compare).set_index("comparison")["verdict"]
    assert base.to_dict() == {f"{study.FULL} − Random real (same student)": "supported",
                              f"{study.FULL} − DM (same student)": "inconclusive"}
    grid = pd.DataFrame([{"n": n, "ot_weight": w, "seed": s, "modes_covered": 4 + (3 if w and n == 4 else 0) + s % 2,
                          "w1": 1.0 - (0.3 if w else 0.0) + 0.1 * s} for n in (4, 32) for w in (0.0, 0.2)
                         for s in range(3)])
    toy = study.toy_claim_table(grid).set_index(["claim", "samples"])["verdict"]
    assert toy[("OT guidance covers more modes", 4)] == "supported"
    assert toy[("OT guidance covers more modes", 32)] == "inconclusive"
    assert toy[("OT guidance lowers W1 to the data", 32)] == "supported"
    view = study.claims_view(study.toy_claim_table(grid))
    assert "unit" not in view and view["H1"].tolist() == ["> 0", "> 0", "< 0", "< 0"]
    assert study.claim_sentences(study.toy_claim_table(grid))[0].startswith(
        "- **OT guidance covers more modes** (4 samples): β1 = 0.2 is ahead of plain DDIM")


def test_study_cell_is_cached_and_feeds_the_tables(digits, digits_test, tmp_path, monkeypatch):
    from geodd.studies import ot_generative as study
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path))
    s = _study_settings()
    cell = study.run_cell(s, digits, digits_test, 1, 0, device="cpu")
    assert set(cell["rows"]) == {"igd_hard", "full"} and cell["ensemble"] == {"lia": 1, "all": 2}
    assert set(cell["ot"]) == {"igd", "otg", "real"} and cell["ot"]["otg"]["w1_l1"]["mean"] > 0
    assert [r["size"] for r in cell["entropy"]] == [1, 2] and cell["generative_train_s"] > 0
    again = study.run_cell(s, digits, digits_test, 1, 0, device="cpu")  # from the memo: identical
    assert again == cell
    assert len(list((tmp_path / "memo").glob(f"{study.CELL_MEMO}-*.json"))) == 1
    sets = study.generated_sets(s, digits, digits_test, 1, 0, device="cpu")
    assert sets["otg"]["images"].shape == (10, 1, 8, 8) and sets["otg"]["labels"].tolist() == list(range(10))
    (tmp_path / "generative" / cell["sets_file"]).unlink()  # lost images: sampling (only) is redone
    redone = study.generated_sets(s, digits, digits_test, 1, 0, device="cpu")
    torch.testing.assert_close(redone["otg"]["latents"], sets["otg"]["latents"])

    rows = study.ablation_rows(s, digits, digits_test, device="cpu")
    assert rows["method"].tolist() == list(OT_GEN)  # the two registry variants keep their names
    assert list(rows.columns) == ["method", "ipc", "seed", "acc", "row"] and rows["acc"].between(0, 100).all()
    with pytest.raises(GeoddError):
        study.ablation_rows(s, digits, digits_test, rows=("no_lia",), device="cpu")
    ent = study.entropy_table([cell])
    assert ent["lia"].tolist() == [True, False]
    assert study.lia_entropy_table(ent)["n"].tolist() == [1]               # one seed: n = 1, inconclusive
    ot = study.ot_distance_table([cell])
    assert set(ot["variant"]) == {"igd", "otg", "real"}
    assert set(study.ot_claim_table(ot)["verdict"]) == {"inconclusive"}
    timing = study.timing_table([cell])
    assert {"sampling: otg", "student: full", "ot_distance", "relabel"} <= set(timing["stage"])
    acc = study.accuracy_table([cell]).set_index("row")
    assert acc.loc["full", "title"] == study.ROWS["full"].title
    base = study.same_student_baselines(s, digits, digits_test, device="cpu")
    assert base["method"].tolist() == ["Random real (same student)"] and 0 <= base["acc"].iloc[0] <= 100


def test_same_student_baselines_evaluate_a_synset_like_the_random_subset(digits, digits_test, tmp_path, monkeypatch):
    import pandas as pd
    from geodd.evaluate import random_subset
    from geodd.studies import ot_generative as study
    from geodd.synset import SynSet
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path))
    s = _study_settings()
    x, y = random_subset(digits, 1, seed=0)  # a "DM run" holding exactly the random subset: same student, same acc
    (tmp_path / "dm-run").mkdir()
    SynSet(x, y, {"method": "dm"}).save(tmp_path / "dm-run" / "synset.pt")
    runs = pd.DataFrame([{"method": "DM", "ipc": 1, "seed": 0, "run_dir": str(tmp_path / "dm-run")}])
    base = study.same_student_baselines(s, digits, digits_test, runs, device="cpu")
    assert base["method"].tolist() == ["Random real (same student)", "DM (same student)"]
    # the same images through two code paths (a random subset; a saved and loaded synthetic set)
    assert base["acc"].iloc[1] == pytest.approx(base["acc"].iloc[0], abs=1e-6)


def test_toy_grid_guidance_covers_more_modes_and_is_cached(tmp_path, monkeypatch):
    from geodd.studies import ot_generative as study
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path))
    toy = _study_settings().toy
    g = study.toy_guidance()
    assert g == {"ot_weight": methods.get("OT-gen (full)").values()["sampler.ot_weight"].value,
                 "ot_eps": methods.get("OT-gen (full)").values()["sampler.ot_eps"].value}
    grid = study.toy_grid(toy, ns=toy.ns, weights=toy.sweep_weights, seeds=toy.seeds)
    assert len(grid) == 4 and set(grid.columns) == {"n", "ot_weight", "seed", "modes_covered", "w1"}
    mean = grid.groupby("ot_weight")[["modes_covered", "w1"]].mean()
    assert mean.loc[0.2, "modes_covered"] > mean.loc[0.0, "modes_covered"] and mean.loc[0.2, "w1"] < mean.loc[0.0, "w1"]
    assert len(list((tmp_path / "memo").glob(f"{study.TOY_MEMO}-*.json"))) == 1
    real, plain, guided = study.toy_pair(toy, 8, seed=0)
    assert real.shape == (64, 2) and guided.modes_covered >= plain.modes_covered


# ----------------------------------------------------------------------------- notebook 05

#: a method setting of OT-gen (a ``PipelineOptions`` method field) or any registry setting, set to a literal
_KEYS = sorted({k.split(".")[-1] for k in METHOD_KEYS} | {"lr_img", "ce_weight", "lam", "sigma", "alpha_head"})


def test_notebook_05_defines_no_method_settings():
    from notebook_checks import literal_settings, notebook_code
    code = notebook_code("05_ot_generative")
    assert literal_settings(code, _KEYS) == []
    assert "study.settings(profile)" in code and "study.settings_table()" in code
    assert literal_settings('toy = {"ot_weight": 0.2, "beta2": w}', _KEYS) == ["ot_weight"]  # the rule can fail
