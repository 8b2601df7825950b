"""The run store: run folders, cached distillations and evaluations, and memoised notebook results.

A run folder holds ``synset.pt`` (``geodd.synset``) and ``record.json`` (config, seed, library versions, device,
precision, timings, loss curve, evaluations). ``cached_distill`` and ``cached_evaluate`` make notebooks
re-runnable: a finished run or evaluation with the same inputs is loaded, not redone. Folders are named by the
config's fingerprint (``geodd.io.fingerprint``); evaluations are keyed by the synthetic set's content hash and the
evaluation settings. Every notebook reads its runs through this module.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

from . import GeoddError, resolve_device
from .distill import CheckpointError, distill, load_training_data
from .evaluate import check_set, check_settings, evaluate_images
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
    folder = Path(root or runs_root()) / "memo"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{fingerprint(params)}.json"
    if path.exists():
        return read_json(path)["result"]
    result = fn()
    write_json(path, {"name": name, "params": params, "result": result, "versions": library_versions()})
    return result


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
    (``snapshot_at``) instead of the final ones (a shorter budget of the same run).
    Shown in notebook 06 (06_results).
    """
    run_dir = Path(run_dir)
    check_settings(runs=runs, epochs=epochs, seed=seed)
    device = resolve_device(device)
    record = read_record(run_dir)
    synset = SynSet.load(run_dir / "synset.pt")
    images, labels = synset.training_set(synset.snapshot(snapshot))
    check_set(images, labels, test, what=f"{run_dir / 'synset.pt'}")
    check_output_dir(run_dir)  # the record is written after training: fail now if it cannot be
    amp = concrete(amp, device)
    key = f"{test.name}:{test.split}:{len(test)}/" + eval_key(arch, epochs, runs, amp, seed, dsa_strategy) \
        + f"/set-{synset.content_hash(snapshot)}"
    if key in record.get("evals", {}):
        return record["evals"][key]
    res = evaluate_images(images, labels, test, arch=arch, runs=runs, epochs=epochs, amp=amp,
                          seed=seed, dsa_strategy=dsa_strategy, device=device,
                          train_counts=record.get("train_counts") if _long_tailed(record) else None,
                          progress=progress).as_dict()
    try:  # re-read: another process may have added an evaluation meanwhile
        record = read_record(run_dir)
    except GeoddError:  # ... or broken the record: keep the one read before training
        pass
    record.setdefault("evals", {})[key] = res
    if snapshot is None:
        record["eval"] = res
    write_json(run_dir / "record.json", record)
    return res


def _long_tailed(record: dict) -> bool:
    return str(record.get("config", {}).get("dataset", "")).lower().endswith("-lt")
