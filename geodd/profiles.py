"""The ``smoke`` / ``cpu`` / ``paper`` sizes shared by notebooks, the CLI and tests. Sizes only: method settings
live in ``geodd.methods`` and each notebook's own settings in its ``geodd.studies`` module.

Every notebook's parameters cell holds ``profile = "cpu"``; ``get(profile)`` turns the name into sizes.

- ``smoke``: tests and CI. Fashion-MNIST subsets, tiny IPC, a few iterations and epochs; all notebooks together
  in a few minutes on 2 CPU cores. Numbers from it only show that the code runs.
- ``cpu``: the default of ``run_all.sh``; a laptop. Fashion-MNIST, ``amp="auto"`` (bf16 where the CPU computes
  it natively, else fp32), a budgeted evaluation (fewer epochs and runs than the protocol, stated in every
  table), cached runs.
- ``paper``: a GPU. CIFAR-10 and the other published settings, 20k iterations, the full protocol
  (1000 epochs; 5 distillations x 20 evaluation nets are the paper's; we default to 3 x 5).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import GeoddError
from .data import Dataset, load, per_class_subset, proportional_subset
from .distill import DistillConfig

PROFILE_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class Profile:
    """Sizes for one profile (``idm_pool``: the sizes of IDM's network pool, ``IDMOptions`` fields).
    Used in notebooks 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase), 04 (04_geodm_product_space), 05
    (05_ot_generative) through their study modules."""

    name: str
    dataset: str
    ipcs: tuple[int, ...]
    iterations: int
    batch_real: int
    seeds: tuple[int, ...]
    eval_epochs: int
    eval_runs: int
    amp: str | None
    eval_amp: str | None
    train_per_class: int | None = None
    test_per_class: int | None = None
    whole_epochs: int = 1
    inner_steps: int = 1
    dsa: bool = True
    lt_dataset: str = "fashion-mnist-lt"
    imfs: tuple[int, ...] = (10, 100, 200)
    archs: tuple[str, ...] = ("mlp", "lenet", "alexnet", "vgg11", "resnet18")
    idm_pool: dict[str, Any] = field(default_factory=dict)

    def resized(self, **sizes: Any) -> "Profile":
        """This profile with some sizes replaced (a notebook's own budget); ``None`` values keep the profile's."""
        unknown = set(sizes) - {f.name for f in fields(self)}
        if unknown:
            raise GeoddError(f"unknown profile sizes {sorted(unknown)}")
        return replace(self, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in sizes.items()
                                if v is not None})

    def distill_config(self, method: str = "dm", ipc: int | None = None, seed: int = 0, **overrides):
        """A ``DistillConfig`` with this profile's sizes; keyword overrides win."""
        cfg = DistillConfig(dataset=self.dataset, method=method, ipc=ipc or self.ipcs[0], seed=seed,
                            iterations=self.iterations, batch_real=self.batch_real, amp=self.amp,
                            inner_steps=self.inner_steps, dsa=self.dsa, train_per_class=self.train_per_class)
        return replace(cfg, **overrides)

    def train_data(self, dataset: str | None = None, imf: float | None = None) -> Dataset:
        """The training split of ``dataset`` (default: the profile's), long-tailed at ``imf``, at the profile's
        ``train_per_class`` (cached in memory). Shown in every notebook."""
        return _cached_load(dataset or self.dataset, "train", imf, self.train_per_class)

    def eval_data(self, dataset: str | None = None) -> Dataset:
        """The test split of ``dataset`` (default: the profile's) at the profile's ``test_per_class`` (cached in
        memory): what evaluations report on. Shown in every notebook."""
        return _cached_load(dataset or self.dataset, "test", None, self.test_per_class)

    def eval_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``geodd.evaluate.evaluate_images`` / ``runs.cached_evaluate``."""
        return {"epochs": self.eval_epochs, "runs": self.eval_runs, "amp": self.eval_amp}


@functools.lru_cache(maxsize=8)
def _cached_load(name: str, split: str, imf: float | None, per_class: int | None) -> Dataset:
    """``load`` once per process; ``per_class`` caps a balanced set per class and a long-tailed training set
    proportionally (its largest class gets ``per_class``), so the imbalance the record names is kept."""
    ds = load(name, split, imf=imf)
    if per_class is None:
        return ds
    if imf is not None and split == "train":
        return proportional_subset(ds, per_class, seed=0)
    return per_class_subset(ds, min(per_class, min(ds.counts)), seed=0)


#: IDM's pool sizes per profile (IDMOptions fields): the release's CIFAR-10 commands on a GPU, a cheap pool on CPU
_IDM_PAPER: dict[str, Any] = {}
_IDM_CPU = {"initial_nets": 3, "net_generate_interval": 10, "fetch_net_num": 1, "model_train_steps": 2,
            "train_batch": 128}
_IDM_SMOKE = {"initial_nets": 2, "net_generate_interval": 2, "fetch_net_num": 1, "model_train_steps": 1,
              "train_batch": 32}

_PROFILES = {
    "smoke": Profile(
        name="smoke", dataset="fashion-mnist", ipcs=(1, 2), iterations=3, batch_real=16, seeds=(0,),
        eval_epochs=4, eval_runs=1, amp="auto", eval_amp="auto", train_per_class=60, test_per_class=20,
        whole_epochs=1, imfs=(10, 100), archs=("mlp", "lenet"),
        idm_pool=_IDM_SMOKE),
    "cpu": Profile(
        name="cpu", dataset="fashion-mnist", ipcs=(1, 10), iterations=160, batch_real=128, seeds=(0, 1, 2),
        eval_epochs=300, eval_runs=1, amp="auto", eval_amp="auto", whole_epochs=1, inner_steps=4,
        idm_pool=_IDM_CPU),
    "paper": Profile(
        name="paper", dataset="cifar10", ipcs=(1, 10, 50), iterations=20000, batch_real=256, seeds=(0, 1, 2),
        eval_epochs=1000, eval_runs=5, amp="auto", eval_amp="auto", whole_epochs=30, lt_dataset="cifar10-lt",
        imfs=(10, 50, 100, 200),
        idm_pool=_IDM_PAPER),
}


def get(name: str) -> Profile:
    """The profile called ``name`` (smoke, cpu or paper).
    Shown in notebooks 00 (00_dm_baseline), 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 03
    (03_csdm_amplitude_phase), 04 (04_geodm_product_space), 05 (05_ot_generative) and 06 (06_results)."""
    if name not in _PROFILES:
        raise GeoddError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return _PROFILES[name]
