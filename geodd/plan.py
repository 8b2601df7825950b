"""What a grid costs before it runs: ``python -m geodd plan --profile paper [--tflops T]``.

For every run of a grid (``geodd.sweep``: ``profile:NAME`` or a grid file) the plan gives the image steps, the
floating-point operations of the distillation and of its evaluation, the peak device memory, and GPU-hours at an
effective throughput the user states (``--tflops``, default ``DEFAULT_TFLOPS``).

FLOPs are measured, not assumed: ``torch.utils.flop_counter.FlopCounterMode`` counts the network's forward pass,
an image step (forward, then backward to the images with the parameters frozen) and a training step (forward,
backward to the parameters) on a ``SAMPLE_BATCH``-image CPU batch; every term is linear in the batch, so the
per-image counts times the batch sizes a run uses give its total:

- per sampled network (``ceil(iterations / inner_steps)`` of them): the real batch, ``min(batch_real, n_c)``
  images of every class, forward only; IDM's pool trains ``fetch_net_num`` members ``model_train_steps`` steps
  on ``train_batch`` real images; the matcher's per-network geometry step;
- per image step: every class's synthetic images (``ipc``, times ``expand^2`` for IDM's partitions) forward and
  backward to the images, and the matcher's loss and its backward (counted at the run's real feature shapes);
- per evaluation: ``eval_runs`` nets trained ``eval_epochs`` epochs on the (expanded) synthetic set, each then
  tested on the test set.

The counter sees convolutions and matrix products (the FLOPs that matter), not element-wise work (norms,
activations, augmentation). Peak memory is computed from activation sizes, not measured on a GPU: the bytes
autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``, counted once per tensor) and the
largest layer input plus output of a no-grad forward, per image on the same CPU batch, times each phase's batch,
plus what stays on the device (the training set, the synthetic set with its gradient and momentum, the networks:
IDM's whole pool with gradients and momenta). It is fp32; bf16 autocast stores about half the activations, and
the CUDA context and the allocator's slack come on top.
Not called in a notebook; used by ``geodd.cli``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from . import GeoddError, methods
from .sweep import Grid

#: the effective throughput GPU-hours are computed at unless ``--tflops`` says otherwise (TFLOP/s)
DEFAULT_TFLOPS = 100.0
#: images per measured batch (per-image counts are the batch's divided by this)
SAMPLE_BATCH = 2
#: (train, test) images of each dataset's published splits (digits: geodd's own split of scikit-learn's 1797)
SPLIT_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000), "svhn": (73257, 26032),
               "cifar10": (50000, 10000), "cifar100": (50000, 10000), "digits": (1297, 500)}
#: the evaluation's batch of ``geodd.evaluate`` (training) and its test batch
EVAL_BATCH, TEST_BATCH = 256, 1024
GIB = 2**30


def count_flops(fn: Callable[[], object]) -> int:
    """The FLOPs ``FlopCounterMode`` counts while ``fn()`` runs (convolutions, matrix products; forward and
    backward). Not called in a notebook; used by ``geodd.plan``."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def saved_bytes(fn: Callable[[], object], exclude=()) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs, each tensor counted once, without
    those that share storage with ``exclude`` (a network's parameters: they stay on the device anyway).
    Not called in a notebook; used by ``geodd.plan``."""
    seen: dict[tuple[int, int], int] = {}
    skip = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(t: torch.Tensor):
        if t.untyped_storage().data_ptr() not in skip:
            seen[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _peak_forward_bytes(net: torch.nn.Module, x: torch.Tensor) -> int:
    """The largest input + output bytes of one leaf module in a no-grad forward of ``x``."""
    peak = [0]

    def hook(module, inputs, output):
        size = sum(t.numel() * t.element_size() for t in (*inputs, output) if isinstance(t, torch.Tensor))
        peak[0] = max(peak[0], size)

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return peak[0]


@dataclass(frozen=True)
class NetCost:
    """Per-image FLOPs and activation bytes of one network, measured on a CPU batch (``network_cost``).
    Not called in a notebook; used by ``geodd.plan``."""

    forward: float        # FLOPs of a no-grad forward (embedding and classifier)
    image_step: float     # forward + backward to the input, parameters frozen (a synthetic image step)
    train_step: float     # forward + backward to the parameters (IDM's pool, the evaluation)
    saved_image: float    # bytes saved for backward by an image step
    saved_train: float    # bytes saved for backward by a training step
    peak_forward: float   # bytes of the largest layer input + output of a no-grad forward
    params: int
    embed_dim: int


@functools.lru_cache(maxsize=32)
def network_cost(arch: str, channels: int, num_classes: int, im_size: tuple[int, int], *, width: int = 128,
                 depth: int = 3, norm: str = "instancenorm", batch: int = SAMPLE_BATCH) -> NetCost:
    """Measure a network's per-image costs on a ``batch``-image CPU batch (cached).
    Not called in a notebook; used by ``geodd.plan``."""
    from .nets import make_network
    net = make_network(arch, channels, num_classes, im_size, seed=0, width=width, depth=depth, norm=norm)
    x = torch.randn(batch, channels, *im_size)
    with torch.no_grad():
        forward = count_flops(lambda: net(x))
    for p in net.parameters():
        p.requires_grad_(False)
    xi = x.clone().requires_grad_(True)
    image = count_flops(lambda: net(xi).sum().backward())
    saved_image = saved_bytes(lambda: net(xi.detach().requires_grad_(True)), exclude=list(net.parameters()))
    for p in net.parameters():
        p.requires_grad_(True)
    train = count_flops(lambda: net(x).sum().backward())
    saved_train = saved_bytes(lambda: net(x), exclude=list(net.parameters()))
    return NetCost(forward / batch, image / batch, train / batch, saved_image / batch, saved_train / batch,
                   _peak_forward_bytes(net, x) / batch, sum(p.numel() for p in net.parameters()), net.embed_dim)


_MATCHER_CACHE: dict[tuple, tuple[int, int]] = {}


def matcher_flops(cfg, counts: list[int], dim: int, real: list[int], syn: int) -> tuple[int, int]:
    """(per sampled network, per image step) FLOPs of ``cfg``'s matcher at the run's shapes: ``real[c]`` real and
    ``syn`` synthetic ``dim``-d features per class (random features; the counts do not depend on their values;
    cached per options and shapes). Not called in a notebook; used by ``geodd.plan``."""
    from .io import fingerprint
    from .matchers import build_matcher
    from .options import overrides
    key = (cfg.method, fingerprint(overrides(cfg.matcher)), tuple(counts), dim, tuple(real), syn)
    if key not in _MATCHER_CACHE:
        matcher = build_matcher(cfg.method, cfg.matcher)
        matcher.set_class_counts(list(counts))
        gen = torch.Generator().manual_seed(0)
        feats = [torch.randn(n, dim, generator=gen) for n in real]
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate(real)])
        per_net = count_flops(lambda: (matcher.start_iteration(0, gen, dim, torch.device("cpu")),
                                       matcher.update_geometry(torch.cat(feats), labels)))
        fake = [torch.randn(syn, dim, generator=gen, requires_grad=True) for _ in real]
        per_step = count_flops(lambda: sum(matcher(f, s, c) for c, (f, s) in enumerate(zip(feats, fake))).backward())
        _MATCHER_CACHE[key] = (per_net, per_step)
    return _MATCHER_CACHE[key]


@dataclass(frozen=True)
class DataShape:
    """What a plan needs of a dataset without loading it: image shape, classes, per-class training counts (after
    the profile's subset) and test images. Not called in a notebook; used by ``geodd.plan``."""

    name: str
    channels: int
    im_size: tuple[int, int]
    num_classes: int
    train_counts: tuple[int, ...]
    test: int


def data_shape(dataset: str, profile) -> DataShape:
    """``dataset``'s shape from its published split sizes (``SPLIT_SIZES``), long-tailed at the default imbalance
    (``geodd.data.DEFAULT_IMF``) for ``-lt`` names, capped by the profile's ``train_per_class`` /
    ``test_per_class`` as ``Profile.train_data`` / ``eval_data`` cap it. Not called in a notebook; used by
    ``geodd.plan``."""
    from .data import _SPECS, DEFAULT_IMF, long_tail_counts, resolve_name
    base, lt = resolve_name(dataset)
    spec = _SPECS[base]  # geodd.data's table of shapes and classes
    classes, (n_train, n_test) = spec.num_classes, SPLIT_SIZES[base]
    counts = long_tail_counts(n_train // classes, classes, DEFAULT_IMF) if lt else [n_train // classes] * classes
    cap = profile.train_per_class
    if cap is not None:
        top = max(counts)
        counts = [min(n, max(1, round(n * cap / top))) for n in counts] if lt else [min(n, cap) for n in counts]
    test_cap = profile.test_per_class
    test = n_test if test_cap is None else classes * min(test_cap, n_test // classes)
    return DataShape(f"{base}-lt" if lt else base, spec.shape[0], tuple(spec.shape[1:]), classes, tuple(counts),
                     test)


def run_cost(cfg, profile, data: DataShape) -> dict[str, float]:
    """One run's image steps, distillation and evaluation FLOPs and peak device memory in bytes (module
    docstring: what is counted and how). Not called in a notebook; used by ``geodd.plan``."""
    net = network_cost(cfg.arch, data.channels, data.num_classes, data.im_size, width=cfg.width, depth=cfg.depth,
                       norm=cfg.norm)
    idm = cfg.schedule == "idm"
    expand = cfg.idm.expand if idm else 1
    syn_per_class = cfg.ipc * expand * expand
    syn = syn_per_class * data.num_classes
    real = [min(cfg.batch_real, n) for n in data.train_counts]
    nets = math.ceil(cfg.iterations / cfg.inner_steps)
    per_net, per_step = matcher_flops(cfg, list(data.train_counts), net.embed_dim, real, syn_per_class)
    pool = cfg.idm.fetch_net_num * cfg.idm.model_train_steps * cfg.idm.train_batch * net.train_step if idm else 0
    distill = nets * (sum(real) * net.forward + pool + per_net) + cfg.iterations * (syn * net.image_step + per_step)
    evaluation = profile.eval_runs * (profile.eval_epochs * syn * net.train_step + data.test * net.forward)
    image = data.channels * data.im_size[0] * data.im_size[1] * 4
    members = min(cfg.idm.net_num, cfg.idm.initial_nets + cfg.iterations // cfg.idm.net_generate_interval)
    resident = (sum(data.train_counts) * image + 3 * cfg.ipc * data.num_classes * image
                + (3 * members if idm else 1) * net.params * 4)
    feats = sum(real) * net.embed_dim * 4
    phases = (sum(real) * net.peak_forward + feats,                       # real batch, one call on a GPU
              syn * net.saved_image + feats + syn * net.embed_dim * 4,     # image step
              cfg.idm.train_batch * net.saved_train if idm else 0)        # pool training
    evaluating = syn * image + 3 * net.params * 4 + max(min(EVAL_BATCH, syn) * net.saved_train,
                                                        TEST_BATCH * net.peak_forward)
    return {"image steps": cfg.iterations, "distill FLOPs": distill, "eval FLOPs": evaluation,
            "peak bytes": max(resident + max(phases), evaluating)}


def check_tflops(tflops: float) -> float:
    """``tflops`` if it is a positive finite throughput, else a one-line ``GeoddError``.
    Not called in a notebook; used by ``geodd.plan``, ``geodd.cli``."""
    if isinstance(tflops, bool) or not isinstance(tflops, (int, float)) or not (math.isfinite(tflops) and tflops > 0):
        raise GeoddError(f"--tflops must be a positive number of TFLOP/s, got {tflops!r}")
    return float(tflops)


def plan_table(grid: Grid, tflops: float = DEFAULT_TFLOPS) -> pd.DataFrame:
    """One row per (method, dataset, IPC) of ``grid``: its number of runs (seeds; runs differ only in their
    seed, not in cost), image steps, per-run TFLOP of distillation and evaluation, peak GiB, GPU-hours per run at
    ``tflops`` and for all its runs. Not called in a notebook; used by ``geodd.plan``."""
    tflops = check_tflops(tflops)
    p = grid.sized()
    rows = []
    for method in grid.methods:
        calibrated = {"lr_img": 1.0} if methods.get(method).calibrated_lr else {}  # a rate changes no cost
        for dataset in grid.datasets:
            data = data_shape(dataset, p)
            for ipc in grid.ipcs:
                cfg = methods.config(method, p, ipc=ipc, seed=grid.seeds[0], dataset=data.name,
                                     imf=None if not data.name.endswith("-lt") else _default_imf(), **calibrated)
                cost = run_cost(cfg, p, data)
                flops = cost["distill FLOPs"] + cost["eval FLOPs"]
                hours = flops / (tflops * 1e12) / 3600
                rows.append({"method": method, "dataset": data.name, "ipc": ipc, "runs": len(grid.seeds),
                             "image steps": cost["image steps"], "distill TFLOP": cost["distill FLOPs"] / 1e12,
                             "eval TFLOP": cost["eval FLOPs"] / 1e12, "peak GiB": cost["peak bytes"] / GIB,
                             "GPU-h/run": hours, "GPU-h": hours * len(grid.seeds)})
    return pd.DataFrame(rows)


def _default_imf() -> float:
    from .data import DEFAULT_IMF
    return DEFAULT_IMF


def format_plan(grid: Grid, tflops: float = DEFAULT_TFLOPS) -> str:
    """The plan as text: what the grid is, how costs were obtained, the table (tabulate) and the totals.
    Not called in a notebook; used by ``geodd.cli``."""
    from tabulate import tabulate
    tflops = check_tflops(tflops)
    table = plan_table(grid, tflops)
    p = grid.sized()
    runs = int(table["runs"].sum())
    total_flops = float(((table["distill TFLOP"] + table["eval TFLOP"]) * table["runs"]).sum()) * 1e12
    lines = [
        f"plan for {grid.name} (profile {grid.profile}): {len(grid.methods)} methods x {len(grid.datasets)} "
        f"dataset(s) x IPC {', '.join(map(str, grid.ipcs))} x seeds {', '.join(map(str, grid.seeds))} = {runs} runs; "
        f"{p.iterations} iterations, evaluation {p.eval_runs} ConvNets x {p.eval_epochs} epochs per run",
        f"FLOPs: measured with torch.utils.flop_counter.FlopCounterMode on a {SAMPLE_BATCH}-image CPU batch of the "
        "network (forward, image step, training step) and the matcher at the run's feature shapes, times the "
        "batch sizes a run uses; convolutions and matrix products only",
        "peak memory: computed from activation sizes (tensors saved for backward and the largest layer of a "
        "forward, per image, times each phase's batch) plus the data, synthetic set and networks on the device; "
        "fp32, not measured on a GPU",
        f"GPU-hours at {tflops:g} TFLOP/s effective (--tflops)",
        "",
        tabulate(table, headers="keys", tablefmt="github", showindex=False, floatfmt=".3g"),
        "",
        f"total: {runs} runs, {total_flops / 1e15:.4g} PFLOP, {table['GPU-h'].sum():.4g} GPU-hours at "
        f"{tflops:g} TFLOP/s; largest peak {table['peak GiB'].max():.3g} GiB",
    ]
    return "\n".join(lines)


__all__ = ["DEFAULT_TFLOPS", "DataShape", "NetCost", "SAMPLE_BATCH", "SPLIT_SIZES", "check_tflops", "count_flops",
           "data_shape", "format_plan", "matcher_flops", "network_cost", "plan_table", "run_cost", "saved_bytes"]
