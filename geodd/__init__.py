"""geodd: geometry-aware dataset distillation by distribution matching.

The library behind the numbered notebook series. Data flows one way:
``data -> augment -> nets -> (geometry, transport) -> matchers -> schedules -> distill -> synset -> evaluate
-> runs -> studies -> notebook figures``. Low-level helpers: ``io`` (files, fingerprint), ``precision``
(autocast), ``options`` (typed options); ``methods`` is the registry of method settings, ``profiles`` the sizes.
"""
from __future__ import annotations

import os
import warnings

import torch

# geoopt decorates helpers with torch.jit.script, which this torch deprecates: one FutureWarning per process
# that would turn every one-line CLI error into three lines. Filtered here, before geoopt is first imported.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=DeprecationWarning)

__version__ = "0.1.0"


class GeoddError(ValueError):
    """A user-facing error: bad input, missing data, a foreign file. The CLI prints it on one line. Raised across
    geodd; a notebook shows it wherever a setting is wrong."""


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """The device to run on, checked before any work: ``device`` or ``$GEODD_DEVICE`` or the default (CUDA when
    available, else CPU). An unknown name or an absent GPU is a one-line ``GeoddError``.
    Used by the CLI, the engine, the run store and ``default_device``."""
    source = "device"
    if device is None:
        name = os.environ.get("GEODD_DEVICE")
        if not name:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device, source = name, "GEODD_DEVICE"
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(str(device))
        except (RuntimeError, ValueError, TypeError):
            raise GeoddError(f"unknown {source} {str(device)!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GeoddError(f"{source} {str(device)!r} asks for a CUDA GPU, but none is available; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise GeoddError(f"{source} {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return dev
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GeoddError(f"{source} {str(device)!r}: MPS is not available on this machine; use cpu")
        return dev
    raise GeoddError(f"unsupported {source} {str(device)!r}; use cpu, cuda, cuda:N or mps")


def default_device() -> torch.device:
    """The device geodd runs on: ``GEODD_DEVICE`` if set (checked: a bad name is a one-line ``GeoddError``), else
    CUDA when available, else CPU. Shown in notebooks 00 (00_dm_baseline), 01 and 03."""
    return resolve_device(None)


__all__ = ["GeoddError", "default_device", "resolve_device", "__version__"]
