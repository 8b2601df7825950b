import json

import pytest
import torch

from geodd import GeoddError, profiles
from geodd.io import fingerprint, library_versions
from geodd.runs import cached_distill, cached_evaluate, memo


def test_profiles_exist_and_scale_up():
    s, c, p = (profiles.get(n) for n in ("smoke", "cpu", "paper"))
    assert s.iterations < c.iterations < p.iterations
    assert s.eval_epochs < c.eval_epochs <= p.eval_epochs == 1000
    assert p.dataset == "cifar10" and c.dataset == "fashion-mnist"
    cfg = c.distill_config("dm", ipc=10, seed=2, iterations=7)
    assert cfg.ipc == 10 and cfg.seed == 2 and cfg.iterations == 7 and cfg.amp == c.amp
    with pytest.raises(GeoddError, match="unknown profile"):
        profiles.get("huge")


def test_fingerprint_is_stable_order_free_and_content_keyed():
    import hashlib
    import torch
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    # a plain config keeps the hash run folders were named by: sha256 of the sorted JSON
    assert fingerprint({"a": 1}) == hashlib.sha256(b'{"a": 1}').hexdigest()[:10]
    x = torch.arange(6.0).reshape(2, 3)
    assert fingerprint({"x": x}) == fingerprint({"x": x.clone()})
    y = x.clone()
    y[1, 2] = 5.000001
    assert fingerprint({"x": x}) != fingerprint({"x": y})                  # one value changed
    assert fingerprint({"x": x}) != fingerprint({"x": x.reshape(3, 2)})    # same bytes, other shape
    assert fingerprint({"x": x}) != fingerprint({"x": x.double()})         # same values, other dtype


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


def test_evaluations_are_cached_per_test_set(digits, digits_test, tmp_path):
    from geodd.distill import DistillConfig
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=16)
    _, _, run_dir = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    full = cached_evaluate(run_dir, digits_test, epochs=2, runs=1, progress=False)
    half = cached_evaluate(run_dir, digits_test.subset(list(range(100))), epochs=2, runs=1, progress=False)
    assert len(json.loads((run_dir / "record.json").read_text())["evals"]) == 2


def test_resized_takes_a_notebooks_budget_and_keeps_the_rest():
    p = profiles.get("cpu")
    q = p.resized(iterations=24, eval_epochs=100, eval_runs=None)
    assert (q.iterations, q.eval_epochs, q.eval_runs) == (24, 100, p.eval_runs)
    assert (q.batch_real, q.inner_steps, q.seeds, q.dataset) == (p.batch_real, p.inner_steps, p.seeds, p.dataset)
    with pytest.raises(GeoddError, match="unknown profile sizes"):
        p.resized(ce_weight=3)


def test_profiles_hold_sizes_only():
    """Method settings live in geodd.methods: a profile has no matcher options, learning rates or loss weights."""
    from dataclasses import fields
    for name in profiles.PROFILE_NAMES:
        p = profiles.get(name)
        assert not {"extra", "lr_img", "matcher", "ce_weight"} & {f.name for f in fields(p)}
        assert not {"lr_img", "ce_weight", "expand"} & set(p.idm_pool)


def test_evaluation_cache_is_keyed_by_the_sets_content(digits, digits_test, tmp_path):
    """Replacing synset.pt must not bring back the old set's accuracy."""
    from geodd.distill import DistillConfig
    from geodd.synset import SynSet
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=16)
    _, _, run_dir = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    first = cached_evaluate(run_dir, digits_test, epochs=2, runs=1, progress=False)
    s = SynSet.load(run_dir / "synset.pt")
    SynSet(-s.images, s.labels, s.config, s.mean, s.std).save(run_dir / "synset.pt")
    second = cached_evaluate(run_dir, digits_test, epochs=2, runs=1, progress=False)
    evals = json.loads((run_dir / "record.json").read_text())["evals"]
    assert len(evals) == 2 and list(evals.values()) == [first, second]


@pytest.mark.parametrize("name", profiles.PROFILE_NAMES)
def test_notebook_06_long_tail_rows_exist_in_notebook_03(name):
    """Notebook 06 reads notebook 03's long-tailed runs: its imf and IPC must be among notebook 03's."""
    from geodd.studies import csdm_amplitude_phase as nb03, results as nb06
    s6, s3 = nb06.settings(name), nb03.settings(name)
    assert s6.imf in s3.imfs and s6.lt_ipc in s3.table_ipcs
    assert len(s3.table_seeds) >= (3 if name != "smoke" else 1)


def test_cached_distill_starts_over_from_a_checkpoint_it_cannot_resume(digits, tmp_path):
    import warnings
    from geodd.distill import DistillConfig
    from geodd.runs import cached_distill
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=2, batch_real=16, width=16, checkpoint_every=1)
    from geodd.runs import run_folder
    run_dir = run_folder(cfg, digits, tmp_path)
    run_dir.mkdir()
    torch.save({"format": "geodd.checkpoint/1", "config_hash": cfg.result_hash()}, run_dir / "checkpoint.pt")
    with pytest.warns(RuntimeWarning, match="starts this run over"):
        synset, record, out = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    assert out == run_dir and record["timings"]["resumed_from"] == 0 and not (run_dir / "checkpoint.pt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _, _ = cached_distill(cfg, train=digits, root=tmp_path, progress=False)  # finished: loaded
    torch.testing.assert_close(again.images, synset.images, rtol=0, atol=0)


def test_the_run_store_keys_runs_by_their_training_data(digits, tmp_path):
    """A run distilled on another training set (here: the digits minus a validation split) is another run, never
    the cached run of the config's own data; the same data object or an equal copy hits the cache."""
    from geodd.data import validation_split
    from geodd.distill import DistillConfig
    from geodd.runs import cached_distill, run_folder
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=8, width=16)
    rest, _ = validation_split(digits, 5, seed=0)
    _, _, full_dir = cached_distill(cfg, train=digits, root=tmp_path, progress=False)
    _, _, rest_dir = cached_distill(cfg, train=rest, root=tmp_path, progress=False)
    assert full_dir != rest_dir and full_dir.name.startswith(cfg.key())
    copy = digits.subset(torch.arange(len(digits)))
    assert run_folder(cfg, copy, tmp_path) == full_dir
    assert cached_distill(cfg, root=tmp_path, progress=False)[2] == full_dir  # train=None loads the same data


def test_run_grid_budgets_are_snapshots_of_one_run_evaluated_alike(digits, digits_test, tmp_path, monkeypatch):
    """Two budgets: one run to the larger, the smaller is its snapshot; the snapshot's evaluation is the one of
    a separate run stopped there (same seed: the same draws), and the run's record keeps the final evaluation."""
    from dataclasses import replace
    from geodd import profiles
    from geodd.runs import read_record
    from geodd.studies.common import Arm, run_grid
    monkeypatch.setenv("GEODD_RUNS", str(tmp_path / "runs"))
    p = replace(profiles.get("smoke"), dataset="digits", batch_real=8, train_per_class=None, amp=None,
                eval_amp=None, inner_steps=1, eval_epochs=2, eval_runs=1)
    arm = Arm("DM", "DM", {"width": 16})
    rows = run_grid(p, [arm], [1], [0], train=digits, test=digits_test, budgets=(2, 4))
    assert rows.budget.tolist() == [2, 4] and rows.run_dir.nunique() == 1
    short = run_grid(p.resized(iterations=2), [arm], [1], [0], train=digits, test=digits_test)
    assert rows.acc.iloc[0] == pytest.approx(short.acc.iloc[0], abs=1e-6)
    assert read_record(rows.run_dir.iloc[0])["eval"]["mean"] * 100 == pytest.approx(rows.acc.iloc[1])
