"""Run records and cached synthetic sets.

A run directory holds ``synset.pt`` (tensors + config, loadable with ``torch.load(weights_only=True)``) and
``record.json`` (config, seed, library versions, device, timings, loss curve, evaluations). ``cached_distill``
and ``cached_evaluate`` make notebooks re-runnable: a finished run with the same config is loaded, not redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from . import GeoddError

REPO_ROOT = Path(__file__).resolve().parent.parent
SYNSET_FORMAT = "geodd.synset/1"


def runs_root() -> Path:
    """Where cached runs live: ``$GEODD_RUNS`` or ``<repo>/runs`` (ignored by git)."""
    return Path(os.environ.get("GEODD_RUNS", REPO_ROOT / "runs"))


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("geodd", "torch", "torchvision", "numpy", "geoopt", "pot", "umap-learn", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def device_info(device: torch.device) -> dict[str, Any]:
    """The device a run used, in words (GPU name or CPU threads)."""
    info: dict[str, Any] = {"type": device.type, "platform": platform.platform()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["threads"] = torch.get_num_threads()
        info["processor"] = platform.processor() or platform.machine()
    return info


def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-serialisable config (keys sorted)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def write_json(path: Path, obj: dict) -> None:
    """Write JSON atomically (a temp file renamed into place), so a crash never leaves half a record."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable))
    os.replace(tmp, path)


def read_record(run_dir: Path) -> dict:
    path = Path(run_dir) / "record.json"
    if not path.exists():
        raise GeoddError(f"no record.json in {run_dir}; is it a geodd run directory?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GeoddError(f"{path} is not valid JSON ({exc.msg})") from None


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def save_tensors(path: Path, payload: dict) -> None:
    """``torch.save`` atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_tensors(path: Path, expect_format: str) -> dict:
    """Load a geodd tensor file with ``weights_only=True`` and check its format tag; one-line errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise GeoddError(f"{path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign pickles
        raise GeoddError(f"{path} is not a readable geodd file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != expect_format:
        raise GeoddError(f"{path} is not a {expect_format} file (foreign or corrupt)")
    return payload


def command_line() -> str:
    return " ".join(sys.argv)


def memo(name: str, params: dict, fn, *, root: Path | None = None) -> dict:
    """Return the cached JSON result of ``fn()`` for (name, params), computing and storing it once.

    Used for baselines and evaluations that notebooks would otherwise repeat on every run.
    """
    folder = Path(root or runs_root()) / "memo"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{config_hash(params)}.json"
    if path.exists():
        return json.loads(path.read_text())["result"]
    result = fn()
    write_json(path, {"name": name, "params": params, "result": result, "versions": library_versions()})
    return result


def cached_distill(cfg, *, train=None, root: Path | None = None, device=None, progress: bool = True):
    """``distill(cfg)`` into ``<runs>/<cfg.key()>``, or load that run if it has finished before.

    Returns ``(synset, record, run_dir)``. An interrupted run resumes from its checkpoint.
    """
    from .distill import SynSet, distill
    run_dir = Path(root or runs_root()) / cfg.key()
    if (run_dir / "synset.pt").exists() and (run_dir / "record.json").exists():
        synset = SynSet.load(run_dir / "synset.pt")
        if set(cfg.snapshot_at) <= set(synset.snapshots):  # a cached run without the wanted snapshots reruns
            return synset, read_record(run_dir), run_dir
    synset, record = distill(cfg, train=train, out=run_dir, device=device, progress=progress)
    return synset, record, run_dir


def eval_key(arch: str, epochs: int, runs: int, amp, seed: int, dsa_strategy=None) -> str:
    return f"{arch}-e{epochs}-r{runs}-{amp or 'fp32'}-s{seed}" + (f"-dsa[{dsa_strategy}]" if dsa_strategy is not None
                                                                    else "")


def cached_evaluate(run_dir: Path, test, *, arch: str = "convnet", epochs: int = 1000, runs: int = 5, amp=None,
                    seed: int = 0, dsa_strategy=None, device=None, progress: bool = True) -> dict:
    """Evaluate the synthetic set in ``run_dir`` once per setting; results live in its record.json.

    Adds ``"eval"`` (the latest: arch, mean, std, accs, per_class, ...) and ``"evals"[key]`` (every setting).
    """
    from .distill import SynSet
    from .evaluate import evaluate_images
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    key = f"{test.name}:{test.split}:{len(test)}/" + eval_key(arch, epochs, runs, amp, seed, dsa_strategy)
    if key in record.get("evals", {}):
        return record["evals"][key]
    images, labels = SynSet.load(run_dir / "synset.pt").training_set()
    res = evaluate_images(images, labels, test, arch=arch, runs=runs, epochs=epochs, amp=amp,
                          seed=seed, dsa_strategy=dsa_strategy, device=device,
                          train_counts=record.get("train_counts") if _long_tailed(record) else None,
                          progress=progress).as_dict()
    record = read_record(run_dir)  # re-read: another process may have added an evaluation meanwhile
    record.setdefault("evals", {})[key] = res
    record["eval"] = res
    write_json(run_dir / "record.json", record)
    return res


def _long_tailed(record: dict) -> bool:
    return str(record.get("config", {}).get("dataset", "")).lower().endswith("-lt")
