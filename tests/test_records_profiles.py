import json

import pytest

from geodd import GeoddError, profiles
from geodd.records import cached_distill, cached_evaluate, config_hash, library_versions, memo


def test_profiles_exist_and_scale_up():
    s, c, p = (profiles.get(n) for n in ("smoke", "cpu", "paper"))
    assert s.iterations < c.iterations < p.iterations
    assert s.eval_epochs < c.eval_epochs <= p.eval_epochs == 1000
    assert p.dataset == "cifar10" and c.dataset == "fashion-mnist"
    cfg = c.distill_config("dm", ipc=10, seed=2, iterations=7)
    assert cfg.ipc == 10 and cfg.seed == 2 and cfg.iterations == 7 and cfg.amp == c.amp
    with pytest.raises(GeoddError, match="unknown profile"):
        profiles.get("huge")


def test_config_hash_is_stable_and_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_memo_computes_once(tmp_path):
    calls = []

    def f():
        calls.append(1)
        return {"x": 3}

    assert memo("t", {"p": 1}, f, root=tmp_path) == {"x": 3}
    assert memo("t", {"p": 1}, f, root=tmp_path) == {"x": 3}
    assert len(calls) == 1


def test_cached_distill_and_evaluate_reuse_finished_runs(digits, digits_test, tmp_path):
    from geodd.distill import DistillConfig
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=2, batch_real=16)
    s1, r1, d1 = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    s2, r2, d2 = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    assert d1 == d2 and r1["timings"] == r2["timings"]
    e1 = cached_evaluate(d1, digits_test, epochs=2, runs=1, progress=False)
    e2 = cached_evaluate(d1, digits_test, epochs=2, runs=1, progress=False)
    assert e1 == e2 and json.loads((d1 / "record.json").read_text())["eval"]["accs"] == e1["accs"]


def test_versions_are_recorded():
    v = library_versions()
    assert {"python", "torch", "geoopt", "pot"} <= set(v)


def test_snapshots_and_checkpoints_do_not_change_the_cache_key():
    from geodd.distill import DistillConfig
    a = DistillConfig(dataset="digits", ipc=1, iterations=2)
    b = DistillConfig(dataset="digits", ipc=1, iterations=2, snapshot_at=(0, 1), checkpoint_every=1)
    c = DistillConfig(dataset="digits", ipc=1, iterations=3)
    assert a.key() == b.key() != c.key()


def test_cached_run_without_wanted_snapshots_is_recomputed(digits, tmp_path):
    from geodd.distill import DistillConfig
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=2, batch_real=16)
    cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    wanted = DistillConfig(dataset="digits", ipc=1, iterations=2, batch_real=16, snapshot_at=(0, 1))
    synset, _, _ = cached_distill(wanted, train=digits, root=tmp_path, progress=False)
    assert set(synset.snapshots) == {0, 1}


def test_standard_variants_cover_every_method_in_every_profile():
    from geodd.experiments import standard_variants
    from geodd.matchers import MATCHERS
    for name in profiles.PROFILE_NAMES:
        variants = standard_variants(profiles.get(name))
        assert {v.method for v in variants.values()} <= set(MATCHERS)
        assert variants["IDM"].overrides["schedule"] == "idm"


def test_evaluations_are_cached_per_test_set(digits, digits_test, tmp_path):
    from geodd.distill import DistillConfig
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=16)
    _, _, run_dir = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    full = cached_evaluate(run_dir, digits_test, epochs=2, runs=1, progress=False)
    half = cached_evaluate(run_dir, digits_test.subset(list(range(100))), epochs=2, runs=1, progress=False)
    assert len(json.loads((run_dir / "record.json").read_text())["evals"]) == 2


def test_with_sizes_takes_a_notebook_block_and_keeps_the_rest():
    p = profiles.get("cpu")
    q = profiles.with_sizes(p, "nb06")
    s = p["nb06"]
    assert (q.iterations, q.eval_epochs, q.eval_runs) == (s["iterations"], s["eval_epochs"], s["eval_runs"])
    assert (q.batch_real, q.inner_steps, q.seeds, q.dataset) == (p.batch_real, p.inner_steps, p.seeds, p.dataset)
    assert q.iterations < p.iterations  # notebook 06's shared budget is the shorter one
    with pytest.raises(GeoddError):
        profiles.with_sizes(p, "nb99")


@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_notebook_06_long_tail_rows_exist_in_notebook_03(name):
    """Notebook 06 reads notebook 03's long-tailed runs: its imf and IPC must be among notebook 03's."""
    p = profiles.get(name)
    s6, s3 = p["nb06"], p["nb03"]
    assert s6["imf"] in s3["imfs"] and s6["lt_ipc"] in s3["table_ipcs"]
    assert len(s3["table_seeds"]) >= (3 if name != "smoke" else 1)
