"""Files and identities: atomic writes, tagged tensor files, the one content fingerprint, versions and device.

The lowest layer of the run store (``geodd.runs``) and of every cache: nothing here imports another geodd
module except the error type. Notebooks meet it through the caches (every notebook), and directly in
notebook 00 (``library_versions``, ``device_info``).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import GeoddError

#: hex digits of a fingerprint used in file and folder names (collisions need ~16^5 = 1e6 entries to matter)
FINGERPRINT_LENGTH = 10


def _tensor_digest(t: torch.Tensor | np.ndarray) -> str:
    """sha256 of a tensor's bytes, prefixed with its shape and dtype (the full content, not a sample)."""
    arr = t.detach().to("cpu").contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(arr.view(np.uint8).reshape(-1) if arr.size else b"")
    return f"tensor:{h.hexdigest()}"


def _canonical(obj: Any) -> Any:
    """A JSON-able form: tensors and arrays become their digests, dataclasses dicts, tuples lists."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return _tensor_digest(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(asdict(obj))
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def fingerprint(obj: Any, length: int = FINGERPRINT_LENGTH) -> str:
    """The content hash geodd keys every cache by: sha256 of the canonical JSON of ``obj`` (keys sorted;
    tensors and arrays by the sha256 of their bytes), cut to ``length`` hex digits.

    For a plain JSON config it equals the hash of ``json.dumps(config, sort_keys=True, default=str)``, so run
    folders named by configs keep their names.
    Used in notebooks 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 04 (04_geodm_product_space), 05
    (05_ot_generative) through their study modules.
    """
    blob = json.dumps(_canonical(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _atomic_tmp(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process uses (pid-suffixed)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json(path: Path | str, obj: dict) -> None:
    """Write JSON atomically (a temp file renamed into place), so a crash never leaves half a record.
    Not called in a notebook; used by ``geodd.distill``, ``geodd.runs``."""
    path = Path(path)
    tmp = _atomic_tmp(path)
    tmp.write_text(json.dumps(obj, indent=1, default=_jsonable))
    os.replace(tmp, path)


def read_json(path: Path | str) -> Any:
    """Parse a JSON file; a missing or malformed file is a one-line ``GeoddError``.
    Not called in a notebook; used by ``geodd.runs``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GeoddError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GeoddError(f"{path} is not valid JSON ({type(exc).__name__})") from None


def save_tensors(path: Path | str, payload: dict) -> None:
    """``torch.save`` atomically.
    Used in notebooks 01 (01_manifold_embeddings), 05 (05_ot_generative) through their study modules."""
    path = Path(path)
    tmp = _atomic_tmp(path)
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_tensors(path: Path | str, expect_format: str) -> dict:
    """Load a geodd tensor file with ``weights_only=True`` and check its format tag; one-line errors otherwise.
    Used in notebooks 01 (01_manifold_embeddings), 05 (05_ot_generative) through their study modules."""
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


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on.
    Not called in a notebook; used by ``geodd.cli``, ``geodd.distill``, ``geodd.runs``."""
    out = {"python": platform.python_version()}
    for pkg in ("geodd", "torch", "torchvision", "numpy", "geoopt", "pot", "umap-learn", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def device_info(device: torch.device) -> dict[str, Any]:
    """The device a run used, in words (GPU name, or CPU model, threads and bf16 support).
    Not called in a notebook; used by ``geodd.cli``, ``geodd.distill``."""
    from .precision import cpu_info
    info: dict[str, Any] = {"type": device.type, "platform": platform.platform()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["threads"] = torch.get_num_threads()
        info.update(cpu_info())
    return info
