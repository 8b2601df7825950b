"""geodd: geometry-aware dataset distillation by distribution matching.

The library behind the numbered notebook series. Data flows one way:
``data -> augment -> nets features -> matchers loss -> distill step -> synthetic set -> evaluate -> records``.
"""
from __future__ import annotations

import os

import torch

__version__ = "0.1.0"


class GeoddError(ValueError):
    """A user-facing error: bad input, missing data, a foreign file. The CLI prints it on one line."""


def default_device() -> torch.device:
    """The device geodd runs on: ``GEODD_DEVICE`` if set, else CUDA when available, else CPU."""
    name = os.environ.get("GEODD_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


__all__ = ["GeoddError", "default_device", "__version__"]
