"""Notebook 00 (00_dm_baseline): the DM baseline's own settings: the accuracy-against-image-steps curve.

The curve distils DM once per seed to the largest step count and keeps a snapshot at every smaller one; the
image optimiser (SGD, constant rate and momentum) and DM's fresh-network schedule do not depend on the run's
length, so each snapshot is exactly the set a run of that many steps returns. Every snapshot is evaluated with
the profile's evaluation. Step 0 is the initialisation (random real images, the "Random" baseline's kind of set,
under the same evaluation). Reconstruction: our choice of step counts.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile
from .common import for_profile, settings_by_profile


@dataclass(frozen=True)
class DMBaselineSettings:
    """The curve's IPC, seeds and image-step counts (snapshots of one run per seed)."""

    curve_ipc: int
    curve_seeds: tuple[int, ...]
    curve_steps: tuple[int, ...]


SETTINGS = settings_by_profile(DMBaselineSettings, {
    "smoke": {"curve_ipc": 1, "curve_seeds": (0,), "curve_steps": (0, 1, 3)},
    # 3 seeds x 1000 image steps at IPC 10 (the cpu profile's engine settings), 9 snapshots evaluated each
    "cpu": {"curve_ipc": 10, "curve_seeds": (0, 1, 2), "curve_steps": (0, 20, 50, 100, 160, 250, 400, 600, 1000)},
    "paper": {"curve_ipc": 10, "curve_seeds": (0, 1, 2), "curve_steps": (0, 1000, 2000, 5000, 10000, 20000)},
}, "00")


def settings(profile: str | Profile) -> DMBaselineSettings:
    """Notebook 00's settings for ``profile`` (a name or a ``Profile``). Shown in notebook 00 (00_dm_baseline)."""
    return for_profile(SETTINGS, profile, "00")
