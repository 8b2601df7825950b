"""geodd.sweep on a local Ray (started once for this module): a grid completes, a rerun executes nothing, a killed
worker's run is retried and stored once, a failing run is reported by name while the others finish, a held run
folder is not written twice, and bad input is one line. Smoke sizes, a temporary store. All Ray tests share one
xdist group, so only one worker starts Ray."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from geodd.cli import main
from geodd.io import RunLock
from geodd.sweep import load_grid, prepare, run_sweep

ray = pytest.importorskip("ray", reason="the sweep needs Ray: pip install 'geodd[ray]'")

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.slow]

GRID = """profile = "smoke"
methods = ["DM", "DM+HDD"]
ipcs = [1, 2]
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_grid(tmp_path, text=GRID):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def sweep(capsys, *args):
    code = main(["sweep", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    return code, out.out, out.err


def folders(store):
    return sorted(p for p in store.iterdir() if (p / "synset.pt").exists()) if store.exists() else []


def one_key(grid, store):
    (job,) = prepare(grid, str(store))["jobs"]
    return job.key


def test_a_grid_completes_and_a_rerun_executes_nothing(local_ray, tmp_path, capsys, monkeypatch):
    store, grid = tmp_path / "store", write_grid(tmp_path)
    code, out, _ = sweep(capsys, grid, "--store", store)
    assert code == 0, out
    assert out.count("| done ") == 4 and "4 runs: 4 executed, 0 found in the store, 0 failed" in out
    runs = folders(store)
    assert len(runs) == 4
    assert all(len(json.loads((r / "record.json").read_text())["evals"]) == 1 for r in runs)
    code, out, _ = sweep(capsys, grid, "--store", store)
    assert code == 0 and "4 runs: 0 executed, 4 found in the store, 0 failed" in out and out.count("| cached ") == 4
    assert folders(store) == runs
    # the notebooks' helper finds the sweep's run and evaluation in the same store, and computes nothing
    from geodd.studies.common import Arm, run_arm
    monkeypatch.setenv("GEODD_RUNS", str(store))
    p = load_grid(grid).sized()
    row = run_arm(p, Arm("DM", "DM"), 1, 0, train=p.train_data(), test=p.eval_data(), progress=False)
    assert row["run_dir"] in map(str, runs) and folders(store) == runs


def test_a_killed_worker_is_retried_and_its_run_stored_once(local_ray, tmp_path):
    store = tmp_path / "store"
    grid = load_grid(write_grid(tmp_path, 'profile = "smoke"\nmethods = ["DM"]\nipcs = [1]\nseeds = [1]\n'))
    key, marker = one_key(grid, store), tmp_path / "crashed-once"
    result = run_sweep(grid, store=store, progress=False, crash_markers={key: str(marker)})
    assert marker.exists()                                  # the first attempt died ...
    assert result.executed == 1 and result.failed == 0      # ... and the retry ran it
    assert [p.name for p in folders(store)] == [key]
    assert len(json.loads((store / key / "record.json").read_text())["evals"]) == 1


def test_a_worker_that_keeps_dying_is_an_error_row(local_ray, tmp_path):
    store = tmp_path / "store"
    grid = load_grid(write_grid(tmp_path, 'profile = "smoke"\nmethods = ["DM"]\nipcs = [2]\nseeds = [1]\n'))
    key = one_key(grid, store)
    result = run_sweep(grid, store=store, progress=False, max_retries=0,
                       crash_markers={key: str(tmp_path / "crash")})
    row = result.rows.iloc[0]
    assert result.failed == 1 and row["status"] == "error" and "0 retries" in row["error"]
    assert folders(store) == []


def test_a_failing_run_is_reported_by_name_and_the_others_finish(local_ray, tmp_path, capsys):
    store = tmp_path / "store"
    grid = write_grid(tmp_path, 'profile = "smoke"\nmethods = ["DM"]\nipcs = [2, 100]\nseeds = [3]\n')
    code, out, _ = sweep(capsys, grid, "--store", store)
    assert code == 1 and "2 runs: 2 executed, 0 found in the store, 1 failed" in out
    failed = [line for line in out.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "(DM, fashion-mnist, ipc 100, seed 3)" in failed[0]
    assert "ipc=100 is larger than class" in failed[0]
    assert len(folders(store)) == 1


def test_a_run_folder_in_use_is_not_written_twice(local_ray, tmp_path):
    store = tmp_path / "store"
    grid = load_grid(write_grid(tmp_path, 'profile = "smoke"\nmethods = ["DM"]\nipcs = [1]\nseeds = [4]\n'))
    key = one_key(grid, store)
    with RunLock(store / key):                              # another sweep (or notebook) is on this run
        held = run_sweep(grid, store=store, progress=False)
    assert held.failed == 1 and "in use by" in held.rows.iloc[0]["error"] and folders(store) == []
    assert run_sweep(grid, store=store, progress=False).executed == 1 and len(folders(store)) == 1


def test_profile_grids_are_the_registry_at_the_profile_sizes():
    grid = load_grid("profile:smoke")
    assert grid.methods == ("DM", "IDM", "DM+HDD", "IDM+HDD", "SDD", "CSDM", "GeoDM")
    assert (grid.datasets, grid.ipcs, grid.seeds, len(grid)) == (("fashion-mnist",), (1, 2), (0,), 14)
    assert len(load_grid("profile:paper")) == 63


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "grids").glob("*.toml")),
                         ids=lambda p: p.name)
def test_the_example_grids_load(path):
    grid = load_grid(path)
    assert len(grid) > 0 and grid.profile in ("smoke", "paper")


@pytest.mark.parametrize("text,args,msg", [
    ('profile = "smoke"\nmethods = ["DM"]\nfoo = 1\n', [], "unknown grid key 'foo'"),
    ('profile = "smoke"\nmethods = ["DM", "Magic"]\n', [], "unknown method 'Magic'"),
    ('methods = ["OT-gen (full)"]\n', [], "a generative pipeline"),
    ('methods = ["DM"]\ndatasets = ["imagenet"]\n', [], "unknown dataset 'imagenet'"),
    ('methods = ["DM"]\nipcs = [0]\n', [], "grid key 'ipcs'"),
    ('methods = ["DM"\n', [], "is not valid TOML"),
    (GRID, ["--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (GRID, ["--max-runs", "3"], "has 4 runs, more than the limit of 3; pass --yes"),
    (GRID, ["--cpus-per-run", "0"], "--cpus-per-run must be a positive number"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, text, args, msg):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, _, err = sweep(capsys, write_grid(tmp_path, text), "--store", tmp_path / "store", *args)
    assert code == 2 and err.strip().startswith("geodd: error:") and msg in err and "\n" not in err.strip()
    assert not (tmp_path / "store").exists()


def test_a_missing_ray_is_one_line_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = sweep(capsys, write_grid(tmp_path), "--store", tmp_path / "store")
    assert code == 2 and "pip install 'geodd[ray]'" in err and "\n" not in err.strip()
