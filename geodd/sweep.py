"""Grids of runs on Ray: ``python -m geodd sweep GRID`` distils and evaluates every (method, dataset, IPC, seed).

A grid is a small TOML file or ``profile:NAME``, the profile's own grid: every distillation variant of the registry
(``geodd.methods``; the generative OT pipelines are not distillation configs) on the profile's dataset at its
IPCs and seeds (``profile:paper``: 7 variants x CIFAR-10 x IPC 1, 10, 50 x seeds 0, 1, 2 = 63 runs). A file
holds these keys, each optional but ``methods``::

    profile = "smoke"                 # sizes (geodd.profiles); default "cpu"
    methods = ["DM", "IDM+HDD"]       # registry names
    datasets = ["fashion-mnist"]      # default: the profile's dataset
    ipcs = [1, 10]                    # default: the profile's
    seeds = [0, 1, 2]                 # default: the profile's
    iterations = 1000                 # distillation iterations; default: the profile's
    epochs = 300                      # evaluation epochs; default: the profile's
    eval_runs = 1                     # evaluation nets per run; default: the profile's

Each run is ``geodd.studies.common.run_arm``'s pair, ``cached_distill`` then ``cached_evaluate`` (ConvNet, the
profile's evaluation), into the run store the notebooks read (``geodd.runs.runs_root()`` unless ``store``), with
the configs the notebooks build (``studies.common.Arm.config`` on ``Profile.train_data``), so a sweep's runs are the
notebooks' cached runs and the other way round. One preparation task on a worker with a run's resources builds
every config there: it resolves ``amp="auto"`` for that worker's device, calibrates the image learning rate of the
variants the registry marks ``EQUAL_FIRST_STEP`` (``geodd.stepsize``, memo-cached in the store) and names each
run's folder (``geodd.runs.run_folder``: config key and training-data hash), so the driver knows every run key
before it submits anything: a run whose folder holds the finished set with this evaluation is not submitted
again, and grid points with the same key become one task. A task holds the run folder's lock
(``geodd.io.RunLock``) while it distils and while it evaluates, so two tasks for one key (two sweeps at once)
cannot both write: the second reports the lock's holder.

Every run is a Ray task with ``num_cpus``/``num_gpus`` per run (fractions allowed) and ``max_retries``: a task
whose worker dies is run again (it resumes from the run's checkpoint, written every ``CHECKPOINT_EVERY``
iterations on long runs); a run that raises is not retried (``retry_exceptions=False``) but reported with its
error, and the others go on. Ray is imported only here, when a sweep starts.
Not called in a notebook; used by ``geodd.cli`` and ``geodd.plan``.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from . import GeoddError, methods, profiles

#: the keys a grid file may hold
GRID_KEYS = ("profile", "methods", "datasets", "ipcs", "seeds", "iterations", "epochs", "eval_runs")
#: a grid with more runs than this is refused unless confirmed (``--yes``)
MAX_RUNS = 200
#: seconds to wait for a Ray cluster's address to answer before giving up
CONNECT_TIMEOUT_S = 5.0
#: runs longer than this many iterations checkpoint every this many (a retried task resumes from there)
CHECKPOINT_EVERY = 500
#: how often a task is retried after its worker died
MAX_RETRIES = 2
#: the one-line hint for a missing Ray
INSTALL_HINT = "the sweep runs on Ray, which is not installed; pip install 'geodd[ray]'"
#: the summary table's columns
SUMMARY_COLUMNS = ("run key", "method", "dataset", "ipc", "seed", "status", "accuracy (%)", "seconds")


def distillation_variants() -> list[str]:
    """The registry variants a sweep can run (every one but the generative pipelines).
    Not called in a notebook; used by ``geodd.sweep``."""
    return [n for n in methods.names() if methods.get(n).schedule != "generative"]


@dataclass(frozen=True)
class Grid:
    """A grid of runs: registry ``methods`` x ``datasets`` x ``ipcs`` x ``seeds`` at ``profile``'s sizes, with the
    optional size overrides. Not called in a notebook; used by ``geodd.sweep``, ``geodd.plan``."""

    name: str
    profile: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    ipcs: tuple[int, ...]
    seeds: tuple[int, ...]
    iterations: int | None = None
    epochs: int | None = None
    eval_runs: int | None = None

    def sized(self) -> profiles.Profile:
        """The profile with this grid's overrides (iterations, evaluation epochs and runs)."""
        return profiles.get(self.profile).resized(iterations=self.iterations, eval_epochs=self.epochs,
                                                  eval_runs=self.eval_runs)

    def points(self) -> Iterator[tuple[str, str, int, int]]:
        """Every (method, dataset, ipc, seed), methods outermost."""
        return itertools.product(self.methods, self.datasets, self.ipcs, self.seeds)

    def __len__(self) -> int:
        return len(self.methods) * len(self.datasets) * len(self.ipcs) * len(self.seeds)


def profile_grid(name: str) -> Grid:
    """``profile:NAME``: every distillation variant on the profile's dataset at its IPCs and seeds.
    Not called in a notebook; used by ``geodd.sweep``."""
    p = profiles.get(name)
    return Grid(f"profile:{name}", name, tuple(distillation_variants()), (p.dataset,), p.ipcs, p.seeds)


def _ints(value: Any, key: str, where: str, lo: int) -> tuple[int, ...]:
    """A non-empty list of integers >= lo (one integer is a list of one)."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= lo for v in values):
        raise GeoddError(f"grid key {key!r} in {where} must be {'a' if lo else 'a non-negative'} integer or a "
                         f"non-empty list of {'positive' if lo else 'non-negative'} integers, got {value!r}")
    return tuple(dict.fromkeys(values))


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise GeoddError(f"grid key {key!r} in {where} must be a non-empty list of names, got {value!r}")
    return tuple(dict.fromkeys(values))


def _dataset(name: str, where: str) -> str:
    from .data import resolve_name
    try:
        base, lt = resolve_name(name)
    except GeoddError as exc:
        raise GeoddError(f"{exc} (grid {where})") from None
    return f"{base}-lt" if lt else base


def grid_from_mapping(raw: Mapping[str, Any], where: str) -> Grid:
    """A checked ``Grid`` from a grid file's table; an unknown key, method, dataset or profile, or a bad value,
    is a one-line ``GeoddError`` naming it and ``where``. Not called in a notebook; used by ``geodd.sweep``."""
    unknown = [k for k in raw if k not in GRID_KEYS]
    if unknown:
        raise GeoddError(f"unknown grid key {unknown[0]!r} in {where}; choose from {', '.join(GRID_KEYS)}")
    if "methods" not in raw:
        raise GeoddError(f"grid {where} names no methods; add e.g. methods = [\"DM\"]")
    profile = raw.get("profile", "cpu")
    if not isinstance(profile, str) or profile not in profiles.PROFILE_NAMES:
        raise GeoddError(f"unknown profile {profile!r} in {where}; choose one of {', '.join(profiles.PROFILE_NAMES)}")
    p = profiles.get(profile)
    names = _names(raw["methods"], "methods", where)
    known = distillation_variants()
    for m in names:
        if m not in known:
            extra = " (a generative pipeline, not a distillation)" if m in methods.names() else ""
            raise GeoddError(f"unknown method {m!r}{extra} in {where}; choose one of {', '.join(known)}")
    datasets = tuple(dict.fromkeys(_dataset(d, where) for d in _names(raw.get("datasets", [p.dataset]),
                                                                       "datasets", where)))
    sizes = {k: raw[k] for k in ("iterations", "epochs", "eval_runs") if k in raw}
    for k, v in sizes.items():
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise GeoddError(f"grid key {k!r} in {where} must be one positive integer, got {v!r}")
    return Grid(where, profile, names, datasets, _ints(raw.get("ipcs", list(p.ipcs)), "ipcs", where, 1),
                _ints(raw.get("seeds", list(p.seeds)), "seeds", where, 0), **sizes)


def load_grid(spec: str | Path) -> Grid:
    """The grid ``spec`` names: ``profile:NAME`` or a TOML file (``grid_from_mapping``); one-line errors for a
    missing or malformed file. Not called in a notebook; used by ``geodd.cli``."""
    text = str(spec)
    if text.startswith("profile:"):
        return profile_grid(text.removeprefix("profile:"))
    path = Path(spec)
    if not path.is_file():
        raise GeoddError(f"grid {text} does not exist; pass a TOML file or profile:NAME "
                         f"({', '.join('profile:' + n for n in profiles.PROFILE_NAMES)})")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GeoddError(f"grid {text} is not valid TOML ({' '.join(str(exc).split())})") from None
    return grid_from_mapping(raw, text)


# --------------------------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class Job:
    """One run of a sweep: its run-store folder name (``key``: ``geodd.runs.run_folder``, the config key plus the
    training data's hash), labels, and the config (concrete precision) as a dict.
    Not called in a notebook; used by ``geodd.sweep``."""

    key: str
    method: str
    dataset: str
    ipc: int
    seed: int
    config: dict
    error: str = ""  # the config could not be built (reported, not submitted)


def _imf(dataset: str) -> float | None:
    from .data import DEFAULT_IMF
    return DEFAULT_IMF if dataset.endswith("-lt") else None


@contextlib.contextmanager
def _store_env(store: Path) -> Iterator[None]:
    """``$GEODD_RUNS`` set to ``store`` for the block (memo caches of helpers that take no root: the step-size
    calibration's first steps)."""
    before = os.environ.get("GEODD_RUNS")
    os.environ["GEODD_RUNS"] = str(store)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("GEODD_RUNS", None)
        else:
            os.environ["GEODD_RUNS"] = before


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _jobs(grid: Grid, store: Path, device) -> tuple[list[Job], dict[str, str]]:
    """Every run of ``grid`` as the notebooks build it (``studies.common.Arm.config``: the registry, the profile's
    sizes, ``geodd.stepsize``'s rate where the registry marks one calibrated) at the precision ``amp`` means on
    ``device``, one job per run folder (a point whose config cannot be built is a job with its ``error``); and
    each dataset's test-set identity (evaluation keys)."""
    from .precision import concrete
    from .runs import run_folder
    from .studies.common import Arm
    p = grid.sized()
    out: dict[str, Job] = {}
    tests = {}
    for dataset in grid.datasets:
        train, test = p.train_data(dataset, imf=_imf(dataset)), p.eval_data(dataset)
        tests[dataset] = f"{test.name}:{test.split}:{len(test)}"
        for method, ipc, seed in itertools.product(grid.methods, grid.ipcs, grid.seeds):
            try:
                cfg = Arm(method, method).config(p, ipc, seed, train)
            except Exception as exc:  # e.g. a step-size calibration that cannot run: this point fails alone
                key = f"{method}/{dataset}/ipc{ipc}/s{seed}"
                out[key] = Job(key, method, dataset, ipc, seed, {}, error=_one_line(exc))
                continue
            cfg = replace(cfg, amp=concrete(cfg.amp, device),
                          checkpoint_every=CHECKPOINT_EVERY if cfg.iterations > CHECKPOINT_EVERY else 0)
            key = run_folder(cfg, train, store).name
            out.setdefault(key, Job(key, method, dataset, ipc, seed, cfg.as_dict()))
    return list(out.values()), tests


def prepare(grid: Grid, store: str) -> dict[str, Any]:
    """On a worker with a run's resources: the grid's jobs (``_jobs``: configs, run folders; the step-size
    calibration's memos go to ``store``), the test sets' identities and what the profile's ``eval_amp`` means
    there, so the driver knows every run's folder and evaluation before it submits anything. Returns
    ``{"error": ...}`` instead of raising. Not called in a notebook; used by ``geodd.sweep`` (a Ray task)."""
    try:
        from . import resolve_device
        from .precision import concrete
        device = resolve_device()
        with _store_env(Path(store)):
            jobs, tests = _jobs(grid, Path(store), device)
        return {"device": str(device), "jobs": jobs, "tests": tests,
                "eval_amp": concrete(grid.sized().eval_amp, device)}
    except Exception as exc:  # reported by the driver on one line
        return {"error": _one_line(exc)}


def stored_result(grid: Grid, job: Job, store: Path, prepared: Mapping[str, Any]) -> dict | None:
    """The summary row of ``job`` if its folder in ``store`` holds the finished set and its evaluation under the
    grid's settings (the key ``geodd.runs.cached_evaluate`` writes), else None: then the sweep runs it.
    Not called in a notebook; used by ``geodd.sweep``."""
    from .runs import eval_key, read_record
    from .synset import SynSet
    run_dir, p = store / job.key, grid.sized()
    if not ((run_dir / "synset.pt").exists() and (run_dir / "record.json").exists()):
        return None
    try:
        record = read_record(run_dir)
        key = f"{prepared['tests'][job.dataset]}/" + eval_key("convnet", p.eval_epochs, p.eval_runs,
                                                              prepared["eval_amp"], job.seed) \
            + f"/set-{SynSet.load(run_dir / 'synset.pt').content_hash()}"
    except GeoddError:
        return None  # unreadable: the task finds out what is wrong and says so
    ev = record.get("evals", {}).get(key)
    return None if ev is None else _row(job, "cached", record, ev)


def _row(job: Job, status: str, record: dict | None = None, ev: dict | None = None, error: str = "") -> dict:
    seconds = (record["timings"]["total_s"] + ev["seconds"]) if record and ev else None
    return {"run key": job.key, "method": job.method, "dataset": job.dataset, "ipc": job.ipc, "seed": job.seed,
            "status": status, "accuracy (%)": 100 * ev["mean"] if ev else None, "seconds": seconds,
            "error": error}


def execute(grid: Grid, job: Job, store: str, eval_amp: str | None, threads: int = 1,
            crash_marker: str | None = None) -> dict:
    """Distil (cached) and evaluate (cached) one run into ``store``, as ``studies.common.run_arm`` does; returns
    its summary row, status "done", or "error" with the error on one line (a raising run is reported, not
    retried). ``crash_marker`` is for tests only: when that file does not exist yet, the task creates it and
    kills its own worker (``os._exit``), so the first attempt dies and Ray's retry runs the job.
    Not called in a notebook; used by ``geodd.sweep`` (the Ray task)."""
    if crash_marker is not None and not os.path.exists(crash_marker):
        Path(crash_marker).touch()
        os._exit(1)
    try:
        import torch
        from .distill import DistillConfig
        from .io import RunLock
        from .runs import cached_distill, cached_evaluate
        torch.set_num_threads(max(1, threads))
        p = grid.sized()
        cfg = DistillConfig.from_dict(job.config)
        train, test = p.train_data(job.dataset, imf=cfg.imf), p.eval_data(job.dataset)
        _, record, run_dir = cached_distill(cfg, train=train, root=Path(store), progress=False)
        if run_dir.name != job.key:
            raise GeoddError(f"the worker's run folder is {run_dir.name}, not {job.key}; are the driver's and the "
                             "worker's geodd and data the same?")
        with RunLock(run_dir):  # one writer of the record at a time
            ev = cached_evaluate(run_dir, test, arch="convnet", seed=job.seed, progress=False,
                                 epochs=p.eval_epochs, runs=p.eval_runs, amp=eval_amp)
        return _row(job, "done", record, ev)
    except Exception as exc:
        return _row(job, "error", error=_one_line(exc))


# --------------------------------------------------------------------------------------------- Ray

def import_ray():
    """The ``ray`` module, or a one-line ``GeoddError`` that says how to install it.
    Not called in a notebook; used by ``geodd.sweep``."""
    try:
        import ray
    except ImportError:
        raise GeoddError(INSTALL_HINT) from None
    return ray


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds, on one line, if a Ray address (``host:port`` or ``ray://host:port``)
    does not answer; ``auto`` and ``local`` are left to Ray. Not called in a notebook; used by ``geodd.sweep``."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host:
        host, port = hostport, "6379"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _one_line(exc)
        raise GeoddError(f"cannot reach the Ray cluster at {address} ({reason}); start one with `ray start --head`, "
                         "or drop --address (and unset RAY_ADDRESS) to run on a local Ray") from None


def connect(ray, address: str | None, local_cpus: int | None) -> bool:
    """Connect to the cluster at ``address`` (else ``$RAY_ADDRESS``), or start a local Ray with ``local_cpus``
    CPUs; an unreachable address is a one-line error (``check_address``). A Ray already started in this process
    is used as it is. Returns True if this call started the connection (the caller shuts it down).
    Not called in a notebook; used by ``geodd.sweep``."""
    import logging
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_address(address)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError ... from Ray
        raise GeoddError(f"cannot start Ray{f' at {address}' if address else ''}: {_one_line(exc)}") from None
    return True


def _check_resources(ray, cpus: float, gpus: float) -> None:
    have = ray.cluster_resources()
    for name, want in (("CPU", cpus), ("GPU", gpus)):
        if want > have.get(name, 0):
            raise GeoddError(f"each run asks for {want:g} {name}(s), but the Ray cluster has "
                             f"{have.get(name, 0):g}; lower --{name.lower()}s-per-run")


@dataclass
class SweepResult:
    """What a sweep did: one summary row per run key (``SUMMARY_COLUMNS`` plus ``error``), and how many runs it
    executed (submitted), found in the store, and saw fail. Not called in a notebook; used by ``geodd.cli``."""

    rows: pd.DataFrame
    executed: int
    cached: int
    failed: int


def check_request(grid: Grid, *, cpus_per_run: float, gpus_per_run: float, max_retries: int, max_runs: int,
                  yes: bool) -> None:
    """One-line errors, before Ray starts, for a grid larger than ``max_runs`` without ``yes`` and for
    resources that are not positive CPUs / non-negative GPUs. Not called in a notebook; used by ``geodd.sweep``."""
    if len(grid) > max_runs and not yes:
        raise GeoddError(f"grid {grid.name} has {len(grid)} runs, more than the limit of {max_runs}; pass --yes "
                         "to run them all (or raise --max-runs)")
    if not (math.isfinite(cpus_per_run) and cpus_per_run > 0):
        raise GeoddError(f"--cpus-per-run must be a positive number, got {cpus_per_run}")
    if not (math.isfinite(gpus_per_run) and gpus_per_run >= 0):
        raise GeoddError(f"--gpus-per-run must be a non-negative number, got {gpus_per_run}")
    if max_retries < 0:
        raise GeoddError(f"--max-retries must be non-negative, got {max_retries}")


def _wait_all(ray, futures: dict, retries: int, progress: bool) -> dict[str, dict]:
    """Rows of the submitted runs as they finish (``ray.wait``), with a progress bar over runs; a task whose
    worker died more often than ``retries`` allows is an error row."""
    from tqdm.auto import tqdm
    rows: dict[str, dict] = {}
    pending, failed = list(futures), 0
    with tqdm(total=len(pending), desc="sweep", unit="run", disable=not progress, file=sys.stderr) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                job = futures[ref]
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    row = _row(job, "error", error=f"{type(exc).__name__} after {retries} retries: {first}")
                rows[job.key] = row
                failed += row["status"] == "error"
                bar.set_postfix(failed=failed, refresh=False)
                bar.update(1)
    return rows


def run_sweep(grid: Grid, *, store: Path | str | None = None, address: str | None = None,
              local_cpus: int | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
              max_retries: int = MAX_RETRIES, max_runs: int = MAX_RUNS, yes: bool = False, progress: bool = True,
              crash_markers: Mapping[str, str] | None = None) -> SweepResult:
    """Run every missing run of ``grid`` as a Ray task (module docstring) and return the summary of all of them.

    ``store``: the run store (default ``geodd.runs.runs_root()``); ``address``: a Ray cluster (default
    ``$RAY_ADDRESS``, else a local Ray with ``local_cpus`` CPUs); ``cpus_per_run``/``gpus_per_run``: each task's
    resources; ``max_retries``: retries of a task whose worker died. ``crash_markers`` (run key -> file) is for
    tests only (``execute``). Not called in a notebook; used by ``geodd.cli``."""
    check_request(grid, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, max_retries=max_retries,
                  max_runs=max_runs, yes=yes)
    from .io import check_output_dir
    from .runs import runs_root
    store = Path(store) if store is not None else runs_root()
    check_output_dir(store)
    ray = import_ray()
    started = connect(ray, address, local_cpus)
    try:
        _check_resources(ray, cpus_per_run, gpus_per_run)
        opts = {"num_cpus": cpus_per_run, "num_gpus": gpus_per_run, "max_retries": max_retries}
        prepared = ray.get(ray.remote(prepare).options(**opts).remote(grid, str(store)))
        if "error" in prepared:
            raise GeoddError(f"preparing the sweep failed on a worker: {prepared['error']}")
        all_jobs = prepared["jobs"]
        rows = {j.key: _row(j, "error", error=j.error) for j in all_jobs if j.error}
        rows.update({j.key: r for j in all_jobs if not j.error and (r := stored_result(grid, j, store, prepared))})
        todo = [j for j in all_jobs if j.key not in rows]
        task = ray.remote(execute).options(**opts, retry_exceptions=False)
        threads = max(1, int(cpus_per_run))
        futures = {task.remote(grid, j, str(store), prepared["eval_amp"], threads,
                               (crash_markers or {}).get(j.key)): j for j in todo}
        rows.update(_wait_all(ray, futures, max_retries, progress))
    finally:
        if started:
            ray.shutdown()
    table = pd.DataFrame([rows[j.key] for j in all_jobs], columns=[*SUMMARY_COLUMNS, "error"])
    return SweepResult(table, executed=len(todo), cached=len(all_jobs) - len(todo),
                       failed=int((table["status"] == "error").sum()))


def format_summary(result: SweepResult) -> str:
    """The summary table (tabulate) with one line per failed run and the counts.
    Not called in a notebook; used by ``geodd.cli``."""
    from tabulate import tabulate
    shown = result.rows[list(SUMMARY_COLUMNS)]
    lines = [tabulate(shown, headers="keys", tablefmt="github", showindex=False, floatfmt=".2f", missingval="-")]
    for row in result.rows[result.rows["status"] == "error"].itertuples(index=False):
        lines.append(f"failed: {row[0]} ({row.method}, {row.dataset}, ipc {row.ipc}, seed {row.seed}): {row.error}")
    lines.append(f"{len(result.rows)} runs: {result.executed} executed, {result.cached} found in the store, "
                 f"{result.failed} failed")
    return "\n".join(lines)


__all__ = ["CHECKPOINT_EVERY", "GRID_KEYS", "Grid", "Job", "MAX_RUNS", "SweepResult", "check_address",
           "check_request", "connect", "distillation_variants", "execute", "format_summary", "grid_from_mapping",
           "import_ray", "load_grid", "prepare", "profile_grid", "run_sweep",
           "stored_result"]
