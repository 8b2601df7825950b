"""The ``smoke`` / ``cpu`` / ``paper`` parameter sets shared by notebooks, the CLI and tests.

Every notebook's parameters cell holds ``profile = "cpu"``; ``get(profile)`` turns the name into sizes.

- ``smoke``: tests and CI. Fashion-MNIST subsets, tiny IPC, a few iterations and epochs; all notebooks together
  in a few minutes on 2 CPU cores. Numbers from it only show that the code runs.
- ``cpu``: the default of ``run_all.sh``; a laptop. Fashion-MNIST, bf16 autocast, a budgeted evaluation
  (fewer epochs and runs than the protocol, stated in every table), cached runs.
- ``paper``: a GPU. CIFAR-10 and the other published settings, 20k iterations, the full protocol
  (1000 epochs, float32, 5 distillations x 20 evaluation nets are the paper's; we default to 3 x 5).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from . import GeoddError
from .data import Dataset, load, per_class_subset

PROFILE_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class Profile:
    """Sizes for one profile. ``extra`` holds notebook-specific settings (looked up with ``p["key"]``)."""

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
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key not in self.extra:
            raise GeoddError(f"profile {self.name!r} has no setting {key!r}")
        return self.extra[key]

    def distill_config(self, method: str = "dm", ipc: int | None = None, seed: int = 0, **overrides):
        """A ``DistillConfig`` with this profile's sizes; keyword overrides win."""
        from .distill import DistillConfig
        cfg = DistillConfig(dataset=self.dataset, method=method, ipc=ipc or self.ipcs[0], seed=seed,
                            iterations=self.iterations, batch_real=self.batch_real, amp=self.amp,
                            inner_steps=self.inner_steps, dsa=self.dsa, train_per_class=self.train_per_class)
        return replace(cfg, **overrides)

    def train_data(self, dataset: str | None = None, imf: float | None = None) -> Dataset:
        return _cached_load(dataset or self.dataset, "train", imf, self.train_per_class)

    def test_data(self, dataset: str | None = None) -> Dataset:
        return _cached_load(dataset or self.dataset, "test", None, self.test_per_class)

    def eval_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``geodd.evaluate.evaluate_images`` / ``records.cached_evaluate``."""
        return {"epochs": self.eval_epochs, "runs": self.eval_runs, "amp": self.eval_amp}


@functools.lru_cache(maxsize=8)
def _cached_load(name: str, split: str, imf: float | None, per_class: int | None) -> Dataset:
    ds = load(name, split, imf=imf)
    if per_class is not None:
        ds = per_class_subset(ds, min(per_class, min(ds.counts)), seed=0)
    return ds


#: IDM's pool per profile: the release's CIFAR-10 commands on a GPU, a cheap pool on CPU
_IDM_PAPER = {"lr_img": 0.2}
_IDM_CPU = {"lr_img": 0.2, "initial_nets": 3, "net_generate_interval": 10, "fetch_net_num": 1,
            "model_train_steps": 2, "train_batch": 128}
_IDM_SMOKE = {"lr_img": 0.2, "initial_nets": 2, "net_generate_interval": 2, "fetch_net_num": 1,
              "model_train_steps": 1, "train_batch": 32}

#: the verdict tables of notebooks 02-05 that notebook 06 collects
NB06_CLAIM_TABLES = [("02_hdd_pruning", "hdd_gains"), ("02_hdd_pruning", "pruning_final"),
                     ("03_csdm_amplitude_phase", "paper_claims"), ("04_geodm_product_space", "subsets_paired"),
                     ("04_geodm_product_space", "ot_ablation"), ("05_ot_generative", "claims")]

_PROFILES = {
    "smoke": Profile(
        name="smoke", dataset="fashion-mnist", ipcs=(1, 2), iterations=3, batch_real=16, seeds=(0,),
        eval_epochs=4, eval_runs=1, amp=None, eval_amp=None, train_per_class=60, test_per_class=20,
        whole_epochs=1, imfs=(10, 100), archs=("mlp", "lenet"),
        extra={
            # notebook 02 (HDD) settings
            "nb02": {
                "train_per_class": None, "test_per_class": None,      # the profile's 60 / 20 per class
                "iterations": 2, "inner_steps": 1, "batch_real": 8, "snapshots": (0, 2),
                "eval_steps": 2, "eval_runs": 1, "ipcs": (1,), "seeds": (0,),
                "variants": {
                    "DM": {"method": "dm"},
                    "DM+HDD": {"method": "hdd", "overrides": {"matcher": {"k": 1.0, "scale": 20.0,
                                                                          "target_radius": 2.0}}},
                    "IDM": {"method": "dm", "overrides": {"schedule": "idm", "lr_img": 0.2, "idm": {
                        "model_train_steps": 1, "train_batch": 16, "net_generate_interval": 1,
                        "initial_nets": 1, "ce_weight": 50.0}}},
                    "IDM+HDD": {"method": "hdd", "overrides": {"schedule": "idm", "idm": {
                        "model_train_steps": 1, "train_batch": 16, "net_generate_interval": 1, "initial_nets": 1,
                        "ce_weight": 50.0},
                        "matcher": {"k": 2.4, "scale": 100.0}}, "by_ipc": {1: {"lr_img": 0.5}, 10: {"lr_img": 1.0}}},
                },
                "keeps": (1.0, 0.2), "curve_ipc": 1, "curve_seed": 0,
                "sweeps": {"scale": (20.0, 5.0), "target_radius": (2.0,)},
                "probe_per_class": 10, "k_values": (0.5, 1.0, 4.0), "pull_radii": (0.5, 2.0, 6.0),
                "extremes": {"n_show": 3, "pool_per_class": 10},
            },
            # notebook 03 (CSDM) settings
            "nb03": {
                # tiny: every code path once (the smoke LT data is a balanced per-class subset)
                "ipc": 2, "table_ipcs": (2,), "imfs": (10, 200), "sweep_imfs": (200,), "table_seeds": (0,),
                "sweep_seed": 0, "iterations": 1, "inner_steps": 1, "batch_real": 8, "eval_epochs": 1,
                "eval_runs": 1, "test_per_class": 10, "num_freqs": 64, "kernel": "rbf", "scale": 1.0,
                "alpha_head": 0.7, "alpha_heads": (0.5, 0.7), "rbf_scales": (1.0,), "laplace_scales": (32.0,),
                "laplace_scale": 32.0, "scale_imf": 200, "scale_ipc": 2, "image_imf": 10, "image_alphas": (0.0, 1.0),
                "calib_draws": 1, "policy_ipcs": (10, 50), "drop_imfs": (10, 200)},
            # notebook 04 (GeoDM) settings
            "nb04": {
                # GeoDM product space (reconstruction: our choice); tiny sizes that only show the notebook runs
                "ipc": 2, "seeds": (0,), "iterations": 1, "batch_real": 4, "inner_steps": 1,
                "eval_epochs": 2, "eval_runs": 1, "test_per_class": 10,
                "total_dim": 12, "dim_splits": ((6, 3, 3),), "split_seeds": (0,),
                "subsets": ("E", "H", "S", "EHS"),
                "lr_img": "auto", "matcher": {}, "cost_iterations": 1, "cost_isolate": False,
            },
            # notebook 05 (OT generative) settings
            "nb05": {
                # tiny: every code path once (smoke generative model, 2 teachers, 2-epoch students)
                "ipcs": (1, 2), "seeds": (0,), "ot_real_per_class": 10, "grid_ipc": 2, "grid_seed": 0,
                "pipeline": {"gen_size": "smoke", "sampler": {"steps": 5, "real_batch": 32},
                             "teachers": {"num": 2, "archs": ["convnetW32", "mlp"], "epochs": 1, "max_images": 300,
                                          "seed": 0},
                             "student": {"arch": "convnetW32", "epochs": 2, "batch_size": 256, "amp": None},
                             "eval": {"max_test": 100, "amp": None},
                             "rows": ["igd_hard", "otg_hard", "no_otm", "full", "igd_soft", "no_lia"]},
                "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 64, "steps": 10, "ot_eps": 0.05,
                        "ot_weight": 0.2},
                "toy_ns": (4, 8), "toy_seeds": (0, 1), "toy_show_n": 8, "toy_sweep_weights": (0.0, 0.2),
            },
            # notebooks 01 and 06 settings
            "nb01": {
                # features of per_class test images per class; UMAP on embed_per_class of them (UMAP's JIT dominates)
                "per_class": 10, "embed_per_class": 10, "show": 4, "arch": "convnet", "seed": 0,
                "train_size": 200, "epochs": 1, "k": 1.0, "target_radius": 2.0,
                "n_neighbors": 15, "umap_epochs": 50, "delta_samples": 5_000, "quantile": 0.2,
            },
            "nb06": {"methods": ["DM", "DM+HDD", "IDM", "IDM+HDD", "SDD", "GeoDM"], "imf": 10, "lt_ipc": 2,
                     "cross_methods": ["DM"], "cross_epochs": 2,
                     "claim_tables": NB06_CLAIM_TABLES},
            # IDM pool sizes (IDMOptions fields) and its image learning rate, shared by notebooks 02 and 06
            "idm": _IDM_SMOKE,
        }),
    "cpu": Profile(
        name="cpu", dataset="fashion-mnist", ipcs=(1, 10), iterations=160, batch_real=128, seeds=(0, 1, 2),
        eval_epochs=300, eval_runs=1, amp="bf16", eval_amp="bf16", whole_epochs=1, inner_steps=4,
        extra={
            # notebook 02 (HDD) settings
            "nb02": {
                # about 15 min on 2 uncontended cores; estimate in notebooks/02 and benchmarks/README.md
                "train_per_class": 500, "test_per_class": 200,
                "iterations": 20, "inner_steps": 4, "batch_real": 64, "snapshots": (0, 10, 20),
                "eval_steps": 50, "eval_runs": 1, "ipcs": (1, 10), "seeds": (0, 1, 2),
                "variants": {
                    "DM": {"method": "dm"},
                    "DM+HDD": {"method": "hdd", "overrides": {"matcher": {"k": 1.0, "scale": 20.0,
                                                                          "target_radius": 2.0}}},
                    "IDM": {"method": "dm", "overrides": {"schedule": "idm", "lr_img": 0.2, "idm": {
                        "model_train_steps": 2, "train_batch": 64, "net_generate_interval": 4,
                        "ce_weight": 50.0}}},
                    "IDM+HDD": {"method": "hdd", "overrides": {"schedule": "idm", "idm": {
                        "model_train_steps": 2, "train_batch": 64, "net_generate_interval": 4, "ce_weight": 50.0},
                        "matcher": {"k": 2.4, "scale": 100.0}}, "by_ipc": {1: {"lr_img": 0.5}, 10: {"lr_img": 1.0}}},
                },
                "keeps": (1.0, 0.8, 0.6, 0.4, 0.2), "curve_ipc": 10, "curve_seed": 0,
                "sweeps": {"scale": (5.0, 20.0, 80.0), "target_radius": (0.5, 2.0, 6.0)},
                "probe_per_class": 50, "k_values": (0.25, 0.5, 1.0, 2.4, 4.0),
                "pull_radii": (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0),
                "extremes": {"n_show": 6, "pool_per_class": 100},
            },
            # notebook 03 (CSDM) settings
            "nb03": {
                # ~13 min on 2 uncontended cores: 45 short distillations (24 image steps, a new net every 4), 43
                # of them evaluated by one ConvNet trained 30 epochs and tested on 100 images per class
                "ipc": 10, "table_ipcs": (10,), "imfs": (10, 100, 200), "sweep_imfs": (10, 100, 200),
                "table_seeds": (0, 1, 2), "sweep_seed": 0, "iterations": 24, "inner_steps": 4, "batch_real": 64,
                "eval_epochs": 30, "eval_runs": 1, "test_per_class": 100, "num_freqs": 1024, "kernel": "rbf",
                "scale": 1.0, "alpha_head": 0.7, "alpha_heads": (0.1, 0.3, 0.5, 0.7, 0.9),
                "rbf_scales": (0.25, 1.0, 4.0), "laplace_scales": (8.0, 32.0, 128.0), "laplace_scale": 32.0,
                "scale_imf": 200, "scale_ipc": 10, "image_imf": 10, "image_alphas": (0.0, 1.0), "calib_draws": 3,
                "policy_ipcs": (10, 50), "drop_imfs": (10, 200)},
            # notebook 04 (GeoDM) settings
            "nb04": {
                # GeoDM product space (reconstruction: our choice): 7 subsets x 3 seeds + DM, no-OT, SDD-base
                # (3 seeds each) + 3 dimension splits = 33 short runs, 36 evaluations; ~15 min on 2 free cores
                "ipc": 10, "seeds": (0, 1, 2), "iterations": 40, "batch_real": 64, "inner_steps": 4,
                "eval_epochs": 50, "eval_runs": 1, "test_per_class": 200,
                "total_dim": 192, "dim_splits": ((128, 32, 32), (32, 128, 32), (32, 32, 128)), "split_seeds": (0,),
                "subsets": ("E", "H", "S", "EH", "ES", "HS", "EHS"),
                "lr_img": "auto", "matcher": {}, "cost_iterations": 8, "cost_isolate": True,
            },
            # notebook 05 (OT generative) settings
            "nb05": {
                # ~10 min on 2 uncontended cores: generative model ~200 s + 4 teachers ~75 s (once, cached);
                # 3 seeds x (IPC 10: 6 ConvNet-W32 students x 100 epochs, ~6-9 s each + 0.7 s test on 2000 images,
                # sampling ~3 s; IPC 1: ~1-2 s each) ~210 s; same-student random/DM baselines ~60 s; toy ~15 s.
                # DM runs are shared with notebook 00 (its budget)
                "ipcs": (1, 10), "seeds": (0, 1, 2), "ot_real_per_class": 200, "grid_ipc": 10, "grid_seed": 0,
                "pipeline": {"gen_size": "cpu",
                             "teachers": {"num": 4, "epochs": 1, "max_images": 10_000, "seed": 0},
                             "student": {"arch": "convnetW32", "epochs": 100, "batch_size": 256, "amp": "bf16"},
                             "eval": {"max_test": 2000, "amp": "bf16"},
                             "rows": ["igd_hard", "otg_hard", "no_otm", "full", "igd_soft", "no_lia"]},
                "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 256, "steps": 50, "ot_eps": 0.05,
                        "ot_weight": 0.2},
                "toy_ns": (4, 8, 16, 32), "toy_seeds": (0, 1, 2, 3, 4), "toy_show_n": 8,
                "toy_sweep_weights": (0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
            },
            # notebooks 01 and 06 settings
            "nb01": {
                # ~3000 test images embedded; a ConvNet trained 2 epochs on 10k images (bf16, cached); UMAP on 2000
                "per_class": 300, "embed_per_class": 200, "show": 8, "arch": "convnet", "seed": 0,
                "train_size": 10_000, "epochs": 2, "k": 1.0, "target_radius": 2.0,
                "n_neighbors": 15, "umap_epochs": 200, "delta_samples": 50_000, "quantile": 0.2,
            },
            "nb06": {
                # every method at ONE shared budget, shorter than notebook 00's, so that the notebook stays under
                # 30 min on 2 free cores: 36 distillations of 24 image steps (a new net every 4; bf16, batch_real
                # 128) and their evaluations (1 ConvNet x 100 bf16 epochs, full test set). The long-tailed rows
                # are notebook 03's runs (its sizes, cached), the OT-generative rows notebook 05's.
                "iterations": 24, "eval_epochs": 100, "eval_runs": 1,
                "methods": ["DM", "DM+HDD", "IDM", "IDM+HDD", "SDD", "GeoDM"], "imf": 100, "lt_ipc": 10,
                "cross_methods": ["DM", "DM+HDD"], "cross_epochs": 50,
                "claim_tables": NB06_CLAIM_TABLES},
            # IDM pool sizes (IDMOptions fields) and its image learning rate, shared by notebooks 02 and 06
            "idm": _IDM_CPU,
        }),
    "paper": Profile(
        name="paper", dataset="cifar10", ipcs=(1, 10, 50), iterations=20000, batch_real=256, seeds=(0, 1, 2),
        eval_epochs=1000, eval_runs=5, amp=None, eval_amp=None, whole_epochs=30, lt_dataset="cifar10-lt",
        imfs=(10, 50, 100, 200),
        extra={
            # notebook 02 (HDD) settings
            "nb02": {
                # the released settings (HDD-repo DM-HDD/main_DM.py, IDM-HDD/command.txt; papers/hdd_geodm.md 1.6);
                # None: the profile's value (20k iterations, batch_real 256, 1000 epochs, 5 evaluation nets)
                "train_per_class": None, "test_per_class": None,
                "iterations": None, "inner_steps": None, "batch_real": None,
                "snapshots": tuple(range(0, 20001, 2000)), "eval_steps": None, "eval_runs": None,
                "ipcs": (1, 10), "seeds": (0, 1, 2),
                "variants": {
                    "DM": {"method": "dm"},
                    # = matchers.hdd.RELEASE_SETTINGS["dm"]
                    "DM+HDD": {"method": "hdd", "overrides": {"matcher": {"k": 1.0, "scale": 20.0, "lift": "exp",
                                                                          "norm": "release"}}},
                    # IDM command.txt (CIFAR-10): lr_img 0.2, ce_weight 0.5 in percent units = 50 in ours
                    "IDM": {"method": "dm", "overrides": {"schedule": "idm", "lr_img": 0.2, "idm": {"ce_weight": 50.0}},
                            "by_ipc": {1: {"batch_real": 5000, "idm": {"net_generate_interval": 5}}}},
                    # = RELEASE_SETTINGS["idm-cifar10"]; IDM_cifar10.py's default 10000 iterations
                    "IDM+HDD": {"method": "hdd", "overrides": {
                        "schedule": "idm", "iterations": 10000, "idm": {"ce_weight": 50.0},
                        "matcher": {"k": 2.4, "scale": 100.0, "lift": "exp", "norm": "release"}},
                        "by_ipc": {1: {"lr_img": 0.5, "batch_real": 5000, "idm": {"net_generate_interval": 5}},
                                   10: {"lr_img": 1.0}}},
                },
                "keeps": (1.0, 0.8, 0.6, 0.4, 0.2), "curve_ipc": 10, "curve_seed": 0,
                "sweeps": {"scale": (5.0, 20.0, 80.0), "k": (1.0, 8.0, 32.0)},
                "probe_per_class": 100, "k_values": (0.25, 0.5, 1.0, 2.4, 4.0, 8.0),
                "pull_radii": (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0),
                "extremes": {"n_show": 8, "pool_per_class": 500},
            },
            # notebook 03 (CSDM) settings
            "nb03": {
                # CIFAR-10-LT at the published scale (20k iterations, full protocol, NCFM's 4096 frequencies)
                "ipc": 10, "table_ipcs": (10, 50), "imfs": (10, 50, 100, 200), "sweep_imfs": (10, 100, 200),
                "table_seeds": (0, 1, 2), "sweep_seed": 0, "iterations": 20000, "inner_steps": 1,
                "batch_real": 256, "eval_epochs": 1000, "eval_runs": 5, "test_per_class": None, "num_freqs": 4096,
                "kernel": "rbf", "scale": 1.0, "alpha_head": 0.7,
                "alpha_heads": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                "rbf_scales": (0.125, 0.25, 0.5, 1.0, 2.0, 4.0), "laplace_scales": (4.0, 8.0, 16.0, 32.0, 64.0, 128.0),
                "laplace_scale": 32.0, "scale_imf": 200, "scale_ipc": 50, "image_imf": 10, "image_alphas": (0.0, 1.0),
                "calib_draws": 5, "policy_ipcs": (10, 50), "drop_imfs": (10, 200)},
            # notebook 04 (GeoDM) settings
            "nb04": {
                # GeoDM product space (reconstruction: our choice): the paper's Fig. 3 setting, CIFAR-10 IPC 10
                "ipc": 10, "seeds": (0, 1, 2), "iterations": 20000, "batch_real": 256, "inner_steps": 1,
                "eval_epochs": 1000, "eval_runs": 5, "test_per_class": None,
                "total_dim": 192, "dim_splits": ((128, 32, 32), (32, 128, 32), (32, 32, 128)),
                "split_seeds": (0, 1, 2), "subsets": ("E", "H", "S", "EH", "ES", "HS", "EHS"),
                "lr_img": "auto", "matcher": {}, "cost_iterations": 20, "cost_isolate": True,
            },
            # notebook 05 (OT generative) settings
            "nb05": {
                # CIFAR-10 with the "paper" size of our latent model (the paper samples DiT-XL/2 + IGD; a wrapped
                # DiT plugs into the sampler, see geodd.generative.model); stronger teachers trained 30 epochs;
                # ConvNet students, 300 epochs (the paper's shorter budget), 3 runs, the full test set
                "ipcs": (1, 10, 50), "seeds": (0, 1, 2), "ot_real_per_class": 1000, "grid_ipc": 10, "grid_seed": 0,
                "pipeline": {"gen_size": "paper",
                             "teachers": {"num": 5, "archs": ["convnet", "resnet18", "vgg11", "alexnet", "convnetW64"],
                                          "epochs": 30, "max_images": None, "batch_size": 256, "seed": 0},
                             "student": {"arch": "convnet", "epochs": 300, "batch_size": 256, "amp": None, "runs": 3},
                             "eval": {"max_test": None, "amp": None},
                             "rows": ["plain_hard", "igd_hard", "otg_hard", "no_otm", "full", "igd_soft", "no_lia"]},
                "toy": {"modes": 8, "radius": 3.0, "std": 0.25, "real": 512, "steps": 50, "ot_eps": 0.05,
                        "ot_weight": 0.2},
                "toy_ns": (4, 8, 16, 32, 64), "toy_seeds": tuple(range(10)), "toy_show_n": 8,
                "toy_sweep_weights": (0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
            },
            # notebooks 01 and 06 settings
            "nb01": {
                # CIFAR-10 test images; a ConvNet trained 5 epochs on all 50k; UMAP with its default 500 epochs
                "per_class": 500, "embed_per_class": 300, "show": 10, "arch": "convnet", "seed": 0,
                "train_size": 50_000, "epochs": 5, "k": 1.0, "target_radius": 2.0,
                "n_neighbors": 15, "umap_epochs": None, "delta_samples": 200_000, "quantile": 0.2,
            },
            "nb06": {"methods": ["DM", "DM+HDD", "IDM", "IDM+HDD", "SDD", "GeoDM"], "imf": 100, "lt_ipc": 10,
                     "cross_methods": ["DM", "DM+HDD", "GeoDM"],
                     "cross_epochs": 1000, "claim_tables": NB06_CLAIM_TABLES},
            # IDM pool sizes (IDMOptions fields) and its image learning rate, shared by notebooks 02 and 06
            "idm": _IDM_PAPER,
        }),
}


#: profile fields that a notebook's own settings block (``p["nbNN"]``) may override, see ``with_sizes``
SIZE_FIELDS = ("iterations", "batch_real", "inner_steps", "eval_epochs", "eval_runs", "test_per_class", "seeds")


def with_sizes(p: Profile, key: str) -> Profile:
    """``p`` with the sizes found in ``p[key]`` (any of ``SIZE_FIELDS``) in place of the profile's own, so that
    ``experiments.run_grid`` runs a notebook's own budget. Fields the block does not name stay as they are."""
    cfg = p[key]
    changes = {f: (tuple(cfg[f]) if f == "seeds" else cfg[f]) for f in SIZE_FIELDS if f in cfg}
    return replace(p, **changes)


def get(name: str) -> Profile:
    """The profile called ``name`` (smoke, cpu or paper)."""
    if name not in _PROFILES:
        raise GeoddError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return _PROFILES[name]
