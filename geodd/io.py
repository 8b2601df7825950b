"""Files and identities: atomic writes, tagged tensor files, the one content fingerprint, versions and device.

The lowest layer of the run store (``geodd.runs``) and of every cache: it imports nothing of geodd but the
error type and ``precision.cpu_info`` (for ``device_info``). Notebooks meet it through the caches and run
records.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import socket
import tempfile
import time
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import GeoddError
from .precision import cpu_info

#: hex digits of a fingerprint used in file and folder names (collisions need ~16^5 = 1e6 entries to matter)
FINGERPRINT_LENGTH = 10


def _tensor_digest(t: torch.Tensor | np.ndarray) -> str:
    """sha256 of a tensor's bytes, prefixed with its shape and dtype (the full content, not a sample)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().to("cpu").contiguous()
        if t.dtype in (torch.bfloat16,) or t.dtype.is_complex and t.dtype == torch.complex32:  # no numpy dtype
            h = hashlib.sha256(f"{tuple(t.shape)}|{t.dtype}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
            return f"tensor:{h.hexdigest()}"
        arr = t.numpy()
    else:
        arr = np.ascontiguousarray(t)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(arr.reshape(-1).view(np.uint8) if arr.size else b"")
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


#: the key under which ``save_tensors(..., checksum=True)`` stores the sha256 of the rest of the payload
CHECKSUM_KEY = "sha256"


def payload_checksum(payload: dict) -> str:
    """The full sha256 of a tensor payload without its checksum entry (tensors by their bytes, the rest by its
    canonical JSON; ``fingerprint`` at full length). Not called in a notebook; used by ``geodd.io``."""
    return fingerprint({k: v for k, v in payload.items() if k != CHECKSUM_KEY}, length=64)


def save_tensors(path: Path | str, payload: dict, *, checksum: bool = False) -> None:
    """``torch.save`` atomically; with ``checksum`` the payload also carries the sha256 of its contents
    (``CHECKSUM_KEY``), which ``load_tensors`` verifies, so a flipped bit is caught, not trusted.
    Used in notebooks 01 (01_manifold_embeddings), 05 (05_ot_generative) through their study modules."""
    path = Path(path)
    if checksum:
        payload = {**payload, CHECKSUM_KEY: payload_checksum(payload)}
    tmp = _atomic_tmp(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_tensors(path: Path | str, expect_format: str, *, checksum: bool | None = None) -> dict:
    """Load a geodd tensor file with ``weights_only=True`` and check its format tag; one-line errors otherwise.

    ``checksum``: True requires a stored checksum and verifies it, None verifies one if the file has it, False
    skips the check. A failing checksum is a ``GeoddError`` that says so.
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
    if checksum is not False and (checksum or CHECKSUM_KEY in payload):
        stored = payload.get(CHECKSUM_KEY)
        try:
            actual = payload_checksum(payload)
        except Exception:  # a damaged payload may not even hash
            actual = None
        if stored != actual:
            raise GeoddError(f"{path} fails its checksum (damaged or edited)")
    return payload


# --------------------------------------------------------------------------------------------- devices and paths

def check_output_dir(path: Path | str) -> None:
    """Fail now, with one line, if ``path`` cannot become (or be written as) a run folder: an existing file, a
    path under a file, or a read-only place (probed by creating and removing a temporary file in the nearest
    existing folder). Writes nothing that stays. Not called in a notebook; used by ``geodd.distill``,
    ``geodd.runs``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GeoddError(f"{path} is a file, not a run folder; choose another --out")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise GeoddError(f"{path} cannot be created: {probe} is a file")
    try:
        fd, name = tempfile.mkstemp(prefix=".geodd-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise GeoddError(f"{path} cannot be written: {probe} is not writable "
                         f"({os.strerror(exc.errno) if exc.errno else type(exc).__name__})") from None


# --------------------------------------------------------------------------------------------- the run lock

LOCK_NAME = ".geodd.lock"


class LockedError(GeoddError):
    """Another live process holds a run folder's lock; the message names it (pid, host, start time).
    Not called in a notebook; used by ``geodd.distill``, ``geodd.cli``."""


class RunLock:
    """An exclusive lock on a run folder: ``DIR/.geodd.lock``, held with ``fcntl.flock`` for the life of the
    process and holding ``{"pid", "host", "started"}``.

    A second process gets ``LockedError`` naming the holder. The kernel drops a flock when its process dies, so
    a lock file left by a killed run (a dead pid) is taken over without a word. Acquiring creates the folder if
    needed; releasing removes the lock file, and the folder too if this lock created it and it is empty.
    Not called in a notebook; used by ``geodd.distill``."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._created = False

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def acquire(self) -> "RunLock":
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created = True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    self._cleanup_folder()
                    raise LockedError(f"{self.folder} is in use by {self._holder()} (lock {self.path}); wait for "
                                      "it to finish or choose another --out") from None
                raise
            try:  # the file may have been removed and recreated by its holder between open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def _cleanup_folder(self) -> None:
        if self._created:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass
            self._created = False

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
        self._cleanup_folder()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


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
    info: dict[str, Any] = {"type": device.type, "platform": platform.platform()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["threads"] = torch.get_num_threads()
        info.update(cpu_info())
    return info
