"""The one rule for image step sizes across methods: equal first steps (``docs/methods/step_sizes.md``).

Methods whose authors published an image learning rate (DM, IDM, DM+HDD, IDM+HDD) run at that rate: the
registry (``geodd.methods``) holds it with its release file. Methods without one (SDD, CSDM, GeoDM: their loss
lives on another scale than DM's, so DM's rate would make their images move much more or much less) are marked
``methods.EQUAL_FIRST_STEP`` and get, at every IPC they run,

    lr_img = median over calibration seeds of ||Delta_DM|| / ||Delta_method(lr_img = 1)||,

where Delta is the first image step (the change of the synthetic set after one iteration) of the registry's DM and
of the method, from the same seed. Paired streams (``geodd.streams``) make both first steps use the same network,
real batch and augmentation, so the ratio compares the losses alone. SGD with momentum is linear in the gradient
scale, so the rule is the same as rescaling the method's loss (a loss scale) to DM's first gradient norm.
Reconstruction: our choice. ``benchmarks/bench_stepsize.py`` measures it against tuning the rate on a
validation split held out of the training set (``geodd.data.validation_split``); ``benchmarks/README.md``,
"Step sizes", has the result. Not called in a notebook; used by ``geodd.studies``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from . import GeoddError, default_device, methods
from .data import Dataset
from .distill import DistillConfig, distill
from .runs import memo

RULE = methods.EQUAL_FIRST_STEP
REFERENCE = "DM"
MEMO = "first-step"
#: the seeds whose first steps calibrate a rate (the median of their ratios): one rate per (variant, IPC),
#: whatever seeds the runs use
CALIBRATION_SEEDS = (0, 1, 2)
#: significant digits of a calibrated rate (more would only record float noise of one draw)
DIGITS = 3


def first_step_norm(cfg: DistillConfig, train: Dataset, device: torch.device | str | None = None) -> float:
    """||S_1 - S_0||_F: the size of the first image step of ``cfg`` (one iteration at ``cfg.lr_img``).
    Not called in a notebook; used by ``geodd.stepsize``."""
    one = replace(cfg, iterations=1, snapshot_at=(0,), checkpoint_every=0)
    syn, _ = distill(one, train=train, device=device, progress=False, resume=False)
    return float((syn.images - syn.snapshots[0]).norm())


def _cached_step(cfg: DistillConfig, train: Dataset, device) -> float:
    params = {"run": cfg.result_hash(), "config": cfg.as_dict(), "data": [train.name, train.split, train.imf,
              len(train)], "device": str(device or default_device())}
    return memo(MEMO, params, lambda: {"norm": first_step_norm(cfg, train, device)})["norm"]


def calibrate(name: str, profile, train: Dataset, ipc: int, *, seeds: Iterable[int] = CALIBRATION_SEEDS,
              matcher: dict | None = None, overrides: dict | None = None,
              device: torch.device | str | None = None) -> dict:
    """The rule for variant ``name`` at ``ipc``: per seed the first-step norms of the registry's DM and of
    ``name`` at lr 1 (``matcher``: the variant's matcher options, ``overrides``: further config fields for
    both), their ratio, and ``lr_img``, the median ratio to ``DIGITS`` significant digits. Memo-cached per run.
    Not called in a notebook; used by ``geodd.stepsize``, ``geodd.studies``."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise GeoddError("calibrate needs at least one seed")
    common = {"dataset": train.name, "imf": train.imf, **(overrides or {})}
    rows = []
    for seed in seeds:
        ref = methods.config(REFERENCE, profile, ipc=ipc, seed=seed, **common)
        cfg = methods.config(name, profile, ipc=ipc, seed=seed, matcher=dict(matcher or {}),
                             **{**common, "lr_img": 1.0})
        ref_step, step = _cached_step(ref, train, device), _cached_step(cfg, train, device)
        if not (step > 0 and np.isfinite(step)):
            raise GeoddError(f"{name}'s first image step at IPC {ipc} (seed {seed}) is {step}; "
                             "cannot calibrate its learning rate")
        rows.append((ref_step, step))
    ratios = [r / s for r, s in rows]
    lr = float(f"{float(np.median(ratios)):.{DIGITS}g}")
    return {"lr_img": lr, "ratios": ratios, "reference_steps": [r for r, _ in rows],
            "steps": [s for _, s in rows], "seeds": seeds}


def image_lr(name: str, profile, train: Dataset, ipc: int, *, seeds: Iterable[int] = CALIBRATION_SEEDS,
             matcher: dict | None = None, overrides: dict | None = None,
             device: torch.device | str | None = None) -> float:
    """Variant ``name``'s image learning rate at ``ipc``: the registry's number, or the rule's (``calibrate``)
    where the registry marks it ``EQUAL_FIRST_STEP``. A rate is calibrated at every IPC it is used at.
    Not called in a notebook; used by ``geodd.studies``."""
    lr = methods.get(name).values(ipc).get("lr_img")
    if lr is None:
        raise GeoddError(f"variant {name!r} has no image learning rate in the registry")
    if lr.value != RULE:
        return float(lr.value)
    return calibrate(name, profile, train, ipc, seeds=seeds, matcher=matcher, overrides=overrides,
                     device=device)["lr_img"]


def rates(names: Iterable[str], profile, train: Dataset, ipcs: Iterable[int], *,
          seeds: Iterable[int] = CALIBRATION_SEEDS,
          device: torch.device | str | None = None) -> pd.DataFrame:
    """One row per (variant, IPC): its ``lr_img`` and where it comes from (the registry's source, or the rule
    with the per-seed ratios). Not called in a notebook; used by ``geodd.studies``."""
    rows = []
    seeds = tuple(seeds)
    for name in names:
        for ipc in ipcs:
            setting = methods.get(name).values(ipc).get("lr_img")
            if setting is not None and setting.value == RULE:
                cal = calibrate(name, profile, train, ipc, seeds=seeds, device=device)
                spread = ", ".join(f"{r:.3g}" for r in cal["ratios"])
                rows.append({"variant": name, "ipc": ipc, "lr_img": cal["lr_img"],
                             "source": f"rule: equal first step with DM, median of {len(seeds)} seeds ({spread})"})
            elif setting is not None:
                rows.append({"variant": name, "ipc": ipc, "lr_img": float(setting.value), "source": setting.source})
    return pd.DataFrame(rows)
