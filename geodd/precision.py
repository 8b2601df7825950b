"""Numeric precision: the one autocast context of geodd, and what ``amp="auto"`` resolves to on this machine.

``amp`` is one of ``"auto"``, ``"bf16"`` or ``"fp32"`` (``None``, ``"none"`` and ``"float32"`` mean fp32).

- On CUDA, ``auto`` is bf16 where the card supports it (``torch.cuda.is_bf16_supported``), else fp32.
- On a CPU, ``auto`` is bf16 only where the CPU computes it natively (the ``avx512_bf16`` or ``amx_bf16`` flags
  on x86 Linux). Elsewhere torch emulates bf16, and emulated bf16 ran about 100x slower than fp32 on an
  AVX2-only EPYC (20.9 s against ~0.2 s per DM step; see benchmarks/README.md). Where the flags cannot be read
  (not Linux), a short measured probe (bf16 against fp32 on the engine's first conv layer) decides, cached per
  machine under ``~/.cache/geodd``.

``auto`` falls back to fp32 with one line on stderr (once per process) and the reason goes into each record.
An explicit ``bf16`` on a CPU that emulates it warns once. Notebook 00 shows the precision a run used.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from . import GeoddError

AMP_MODES = ("auto", "bf16", "fp32")
_FP32_NAMES = (None, "none", "fp32", "float32")
#: CPU flags (Linux /proc/cpuinfo names) that mean native bf16 arithmetic
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: flags recorded with benchmark results and shown by ``geodd info``
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
#: bf16 must be at least this much faster than fp32 in the probe to be chosen
PROBE_MIN_SPEEDUP = 1.2
ENV_CPU_BF16 = "GEODD_CPU_BF16"  # "0" / "1": override the CPU answer (tests, or a CPU the flags misdescribe)


class PrecisionWarning(UserWarning):
    """The precision geodd uses differs from the one asked for, or the one asked for is slow here.
    Not called in a notebook; used by ``geodd.precision``, ``geodd.cli``."""


class AmpChoice(NamedTuple):
    """What an ``amp`` request resolved to: ``used`` is ``"bf16"`` or ``"fp32"``, with the reason in words.
    Not called in a notebook; used by ``geodd.precision``."""

    requested: str
    used: str
    reason: str

    @property
    def autocast_arg(self) -> str | None:
        return "bf16" if self.used == "bf16" else None


def normalise(amp: str | None) -> str:
    """``"auto"``, ``"bf16"`` or ``"fp32"``; anything else is a one-line error.
    Not called in a notebook; used by ``geodd.precision``, ``geodd.distill``."""
    if amp in _FP32_NAMES:
        return "fp32"
    if amp in ("auto", "bf16"):
        return amp
    raise GeoddError(f"unknown amp mode {amp!r}; choose one of {', '.join(AMP_MODES)}")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str] | None]:
    """(model name, flags) from /proc/cpuinfo; flags None where the file does not exist (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), None
    model, flags = platform.processor() or platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return model, frozenset(flags)


def cpu_info() -> dict:
    """The CPU model, the flags that matter for speed, and whether it computes bf16 natively.
    Not called in a notebook; used by ``geodd.io``."""
    model, flags = _cpuinfo()
    native = cpu_bf16_native()
    return {"processor": model,
            "flags": sorted(f for f in REPORTED_FLAGS if flags and f in flags) if flags is not None else "unknown",
            "bf16_native": native.native, "bf16_basis": native.basis}


class Bf16Support(NamedTuple):
    native: bool
    basis: str  # how it was decided: flags, probe or environment


def cpu_bf16_native() -> Bf16Support:
    """Whether this CPU computes bf16 natively: ``$GEODD_CPU_BF16``, else the CPU flags, else a cached probe.
    Not called in a notebook; used by ``geodd.precision``."""
    env = os.environ.get(ENV_CPU_BF16)
    if env in ("0", "1"):
        return Bf16Support(env == "1", f"${ENV_CPU_BF16}={env}")
    _, flags = _cpuinfo()
    if flags is not None and platform.machine() in ("x86_64", "AMD64", "i686"):
        hit = [f for f in BF16_FLAGS if f in flags]
        return Bf16Support(bool(hit), f"CPU flags ({', '.join(hit) if hit else 'no ' + ' / '.join(BF16_FLAGS)})")
    speedup = probe_speedup()
    return Bf16Support(speedup >= PROBE_MIN_SPEEDUP, f"measured probe (bf16 {speedup:.2f}x fp32)")


def _probe_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geodd" / "bf16_probe.json"


def probe_speedup(repeats: int = 5) -> float:
    """fp32 time / bf16 time of the engine's first ConvNet layer (32 images of 28x28, 128 channels) on this
    CPU, median of ``repeats``; cached per (processor, torch version, threads).
    Not called in a notebook; used by ``geodd.precision``."""
    key = f"{_cpuinfo()[0]}|{torch.__version__}|{torch.get_num_threads()}"
    cache = _probe_cache()
    try:
        stored = json.loads(cache.read_text())
        if key in stored:
            return float(stored[key])
    except (OSError, ValueError):
        stored = {}
    conv = torch.nn.Conv2d(1, 128, 3, padding=1)
    x = torch.randn(32, 1, 28, 28)
    w = torch.randn(256, 256)

    def timed(amp: str | None) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad(), autocast(torch.device("cpu"), amp):
                conv(x).relu().sum()
                (w @ w).sum()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    timed(None), timed("bf16")  # warm-up
    speedup = timed(None) / max(timed("bf16"), 1e-9)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({**stored, key: speedup}))
    except OSError:
        pass
    return speedup


_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        warnings.warn(message, PrecisionWarning, stacklevel=3)


def resolve(amp: str | None, device: torch.device | str) -> AmpChoice:
    """What ``amp`` means on ``device``: bf16 or fp32, and why. Says so once where ``auto`` falls back to fp32,
    or where an explicit bf16 is emulated on this CPU. Shown in notebook 00 (00_dm_baseline)."""
    requested = normalise(amp)
    device = torch.device(device)
    if requested == "fp32":
        return AmpChoice(requested, "fp32", "asked for fp32")
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        basis = f"CUDA device {'supports' if ok else 'lacks'} bf16"
    elif device.type == "cpu":
        support = cpu_bf16_native()
        ok, basis = support.native, f"CPU {'computes bf16 natively' if support.native else 'emulates bf16'}: " \
                                    f"{support.basis}"
    else:
        ok, basis = False, f"no bf16 autocast rule for device type {device.type!r}"
    if requested == "bf16":
        if not ok:
            _say_once(f"geodd: bf16 asked for, but this {device.type.upper()} is slow at it ({basis}); "
                      "amp='auto' would pick fp32")
        return AmpChoice(requested, "bf16", f"asked for bf16 ({basis})")
    if not ok:
        _say_once(f"geodd: amp='auto' uses fp32 here ({basis})")
    return AmpChoice(requested, "bf16" if ok else "fp32", basis)


def concrete(amp: str | None, device: torch.device | str) -> str | None:
    """``resolve(amp, device)`` as the value a config stores: ``"bf16"`` or ``None`` (fp32).
    Used in notebook 02 (02_hdd_pruning) through its study module."""
    return resolve(amp, device).autocast_arg


def autocast(device: torch.device | str, amp: str | None):
    """The autocast context for ``amp`` on ``device`` (bf16 autocast, or a no-op for fp32); ``auto`` is resolved
    with ``resolve``. Works on CPU and CUDA. Used in notebook 01 (01_manifold_embeddings) through its study module."""
    device = torch.device(device)
    if normalise(amp) == "fp32":
        return contextlib.nullcontext()
    if normalise(amp) == "auto" and resolve(amp, device).used == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


__all__ = ["AMP_MODES", "AmpChoice", "PrecisionWarning", "autocast", "concrete", "cpu_bf16_native",
           "cpu_info", "normalise", "probe_speedup", "resolve"]
