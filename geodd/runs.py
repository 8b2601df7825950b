"""The run store: run folders, cached distillations and evaluations, and memoised notebook results.

A run folder holds ``synset.pt`` (``geodd.synset``) and ``record.json`` (config, seed, library versions, device,
precision, timings, loss curve, evaluations). ``cached_distill`` and ``cached_evaluate`` make notebooks
re-runnable: a finished run or evaluation with the same inputs is loaded, not redone. Folders are named by the
config's fingerprint (``geodd.io.fingerprint``); evaluations are keyed by the synthetic set's content hash and the
evaluation settings. ``cached_evaluate_many`` evaluates the uncached ones of many run folders together
(``geodd.evaluate.evaluate_sets``), with the same records and keys. Every notebook reads its runs through this module.
"""
from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import GeoddError, resolve_device
from .distill import CheckpointError, distill, load_training_data
from .evaluate import MAX_GROUP, check_set, check_settings, evaluate_sets
from .io import check_output_dir, fingerprint, library_versions, read_json, write_json
from .precision import concrete
from .synset import SynSet

REPO_ROOT = Path(__file__).resolve().parent.parent


def runs_root() -> Path:
    """Where cached runs live: ``$GEODD_RUNS`` or ``<repo>/runs`` (ignored by git).
    Used in notebooks 01 (01_manifold_embeddings), 05 (05_ot_generative) through their study modules."""
    return Path(os.environ.get("GEODD_RUNS", REPO_ROOT / "runs"))


def read_record(run_dir: Path | str) -> dict:
    """The ``record.json`` of a run folder; a missing or malformed one is a one-line error.
    Shown in notebook 00 (00_dm_baseline)."""
    path = Path(run_dir) / "record.json"
    if not path.exists():
        raise GeoddError(f"no record.json in {run_dir}; is it a geodd run directory?")
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise GeoddError(f"{path} is not a geodd run record (no config)")
    return record


def memo(name: str, params: dict, fn, *, root: Path | None = None) -> dict:
    """Return the cached JSON result of ``fn()`` for (name, params), computing and storing it once.

    Used for baselines and evaluations that notebooks would otherwise repeat on every run.
    """
    return memo_many(name, [params], lambda missing: [fn()], root=root)[0]


def memo_many(name: str, params: Sequence[dict], compute: Callable[[list[int]], list], *,
              root: Path | None = None) -> list:
    """``memo`` for several parameter sets: ``compute(missing)`` returns, together, the results of the entries of
    ``params`` at the indices ``missing`` (those not stored yet), which are then stored one file each as ``memo``
    stores them. Not called in a notebook; used by ``geodd.runs``, ``geodd.studies.common``."""
    folder = Path(root or runs_root()) / "memo"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}-{fingerprint(q)}.json" for q in params]
    out = [read_json(path)["result"] if path.exists() else None for path in paths]
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    if missing:
        for i, result in zip(missing, compute(missing), strict=True):
            write_json(paths[i], {"name": name, "params": params[i], "result": result, "versions": library_versions()})
            out[i] = result
    return out


def run_folder(cfg, train, root: Path | None = None) -> Path:
    """The run-store folder of ``cfg`` distilled on ``train``: ``<runs>/<cfg.key()>-d<data hash>``. The training
    data's content hash (``Dataset.content_hash``) is part of the name, because a caller may pass another training
    set than the config's own (a validation split, a pruned or reordered set) and must never get its run back.
    Not called in a notebook; used by ``geodd.runs``."""
    return Path(root or runs_root()) / f"{cfg.key()}-d{train.content_hash()[:8]}"


def cached_distill(cfg, *, train=None, root: Path | None = None, device=None, progress: bool = True):
    """``distill(cfg)`` into its run folder (``run_folder``: config key and training-data hash), or load that run
    if it has finished before. ``train`` defaults to the config's own training data.

    ``amp="auto"`` is resolved for the device first, so the key names the precision really used. Returns
    ``(synset, record, run_dir)``. An interrupted run resumes from its checkpoint; a checkpoint that cannot be
    resumed (an older format, or damaged) is warned about and the run starts over.
    Used in notebooks 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase) through their study modules.
    """
    device = resolve_device(device)
    cfg = replace(cfg, amp=concrete(cfg.amp, device))
    train = load_training_data(cfg) if train is None else train
    run_dir = run_folder(cfg, train, root)
    overwrite = False
    if (run_dir / "synset.pt").exists() and (run_dir / "record.json").exists():
        synset = SynSet.load(run_dir / "synset.pt")
        if set(cfg.snapshot_at) <= set(synset.snapshots):
            return synset, read_record(run_dir), run_dir
        overwrite = True  # a cached run without the wanted snapshots reruns
    try:
        synset, record = distill(cfg, train=train, out=run_dir, device=device, progress=progress,
                                 overwrite=overwrite)
    except CheckpointError as exc:
        # the folder is named by this config, so its checkpoint is this run's: one of an older format or a damaged
        # one cannot be resumed exactly, and the cache starts the run over rather than stop a notebook
        warnings.warn(f"{exc}; the cache starts this run over", RuntimeWarning, stacklevel=2)
        synset, record = distill(cfg, train=train, out=run_dir, device=device, progress=progress, overwrite=True)
    return synset, record, run_dir


def eval_key(arch: str, epochs: int, runs: int, amp, seed: int, dsa_strategy=None) -> str:
    """The readable part of an evaluation's key: architecture, epochs, runs, precision, seed, DSA strategy.
    Not called in a notebook; used by ``geodd.runs``."""
    return f"{arch}-e{epochs}-r{runs}-{amp or 'fp32'}-s{seed}" + (f"-dsa[{dsa_strategy}]" if dsa_strategy is not None
                                                                    else "")


def cached_evaluate(run_dir: Path, test, *, arch: str = "convnet", epochs: int = 1000, runs: int = 5, amp=None,
                    seed: int = 0, dsa_strategy=None, device=None, progress: bool = True,
                    snapshot: int | None = None) -> dict:
    """Evaluate the synthetic set in ``run_dir`` once per (set content, setting); results live in its record.

    Adds ``"eval"`` (the latest: arch, mean, std, accs, per_class, ...) and ``"evals"[key]`` (every setting); the
    key holds the test set, the evaluation settings and the content hash of the synthetic set, so a replaced
    ``synset.pt`` is evaluated afresh. ``snapshot`` evaluates the images kept after that many image steps
    (``snapshot_at``) instead of the final ones (a shorter budget of the same run). ``cached_evaluate_many`` with
    one folder.
    Shown in notebook 06 (06_results).
    """
    return cached_evaluate_many([run_dir], test, arch=arch, epochs=epochs, runs=runs, amp=amp, seeds=seed,
                                dsa_strategy=dsa_strategy, device=device, progress=progress,
                                snapshots=[snapshot])[0]


def _eval_entry(run_dir: Path, test, key_part: str, snapshot: int | None) -> dict:
    """What evaluating a run folder's set (its ``snapshot``, or the final images) needs: its record, the images and
    labels, and the key of the evaluation; checks first that the set can be evaluated on ``test`` and that the
    record can be written."""
    record = read_record(run_dir)
    synset = SynSet.load(run_dir / "synset.pt")
    images, labels = synset.training_set(synset.snapshot(snapshot))
    check_set(images, labels, test, what=f"{run_dir / 'synset.pt'}")
    check_output_dir(run_dir)  # the record is written after training: fail now if it cannot be
    key = f"{test.name}:{test.split}:{len(test)}/{key_part}/set-{synset.content_hash(snapshot)}"
    return {"dir": run_dir, "record": record, "set": (images, labels), "key": key, "final": snapshot is None}


def _store_eval(entry: dict, res: dict) -> None:
    """Write ``res`` into the run's record as ``evals[key]`` (and as ``eval`` for the final images), re-read first."""
    try:  # re-read: another process may have added an evaluation meanwhile
        record = read_record(entry["dir"])
    except GeoddError:  # ... or broken the record: keep the one read before training
        record = entry["record"]
    record.setdefault("evals", {})[entry["key"]] = res
    if entry["final"]:
        record["eval"] = res
    write_json(entry["dir"] / "record.json", record)


def cached_evaluate_many(run_dirs: Iterable[Path | str], test, *, arch: str = "convnet", epochs: int = 1000,
                         runs: int = 5, amp=None, seeds: int | Sequence[int] = 0, dsa_strategy=None, device=None,
                         progress: bool = True, snapshots: Sequence[int | None] | None = None,
                         max_group: int = MAX_GROUP) -> list[dict]:
    """What ``cached_evaluate`` returns for each of ``run_dirs`` (``seeds``: one for all or one per folder;
    ``snapshots``: None or one per folder), computing only the uncached ones, all together
    (``geodd.evaluate.evaluate_sets``: their nets train in groups of up to ``max_group``), and writing each into its
    folder's record with ``cached_evaluate``'s entries and key. Every folder is checked before any training; one
    evaluation asked for twice is computed once.
    Used in notebooks 00 (00_dm_baseline), 04 (04_geodm_product_space), 05 (05_ot_generative) and 06 (06_results)
    through ``geodd.studies.common.run_grid``."""
    run_dirs = [Path(d) for d in run_dirs]
    seeds = [seeds] * len(run_dirs) if isinstance(seeds, numbers.Integral) else list(seeds)
    snapshots = [None] * len(run_dirs) if snapshots is None else list(snapshots)
    if not len(seeds) == len(snapshots) == len(run_dirs):
        raise GeoddError(f"cached_evaluate_many needs one seed and one snapshot per run folder, got {len(run_dirs)} "
                         f"folders, {len(seeds)} seeds and {len(snapshots)} snapshots")
    for seed in seeds:
        check_settings(runs=runs, epochs=epochs, seed=seed)
    device = resolve_device(device)
    amp = concrete(amp, device)
    out: list[dict | None] = [None] * len(run_dirs)
    todo: dict[tuple[str, str], dict] = {}
    for i, (run_dir, seed, snap) in enumerate(zip(run_dirs, seeds, snapshots)):
        entry = _eval_entry(run_dir, test, eval_key(arch, epochs, runs, amp, seed, dsa_strategy), snap)
        if entry["key"] in entry["record"].get("evals", {}):
            out[i] = entry["record"]["evals"][entry["key"]]
            continue
        job = todo.setdefault((str(run_dir.resolve()), entry["key"]), {**entry, "seed": seed, "at": []})
        job["final"] |= entry["final"]
        job["at"].append(i)
    jobs = list(todo.values())
    results = evaluate_sets([j["set"] for j in jobs], test, arch=arch, runs=runs, epochs=epochs, amp=amp,
                            seeds=[j["seed"] for j in jobs], dsa_strategy=dsa_strategy, device=device,
                            train_counts=[j["record"].get("train_counts") if _long_tailed(j["record"]) else None
                                          for j in jobs], max_group=max_group, progress=progress) if jobs else []
    for job, res in zip(jobs, results):
        res = res.as_dict()
        _store_eval(job, res)
        for i in job["at"]:
            out[i] = res
    return out


def _long_tailed(record: dict) -> bool:
    return str(record.get("config", {}).get("dataset", "")).lower().endswith("-lt")
