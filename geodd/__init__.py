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
    """A user-facing error: bad input, missing data, a foreign file. The CLI prints it on one line.
    Not called in a notebook or elsewhere in geodd: a public entry point for scripts and users."""


def default_device() -> torch.device:
    """The device geodd runs on: ``GEODD_DEVICE`` if set, else CUDA when available, else CPU.
    Shown in notebooks 00 (00_dm_baseline), 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 03
    (03_csdm_amplitude_phase), 04 (04_geodm_product_space) and 05 (05_ot_generative)."""
    name = os.environ.get("GEODD_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


__all__ = ["GeoddError", "default_device", "__version__"]
