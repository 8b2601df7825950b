"""Notebook 03's computations: CSDM's alpha_head sweep, kernels x scales, DM/SDD/CSDM against the imbalance factor.

CSDM (Wu et al., arXiv 2603.01698; ``papers/csdm_ot.md`` part A) matches the characteristic functions of real and
synthetic features (SDD) and weights amplitude against phase per class, alpha(c). This module builds the
variants the notebook compares (so that equal configurations share one cached run), runs them on long-tailed
data through ``geodd.experiments``, and turns the rows into the paper's comparisons: the Fig. 3 sweep, the
Figs. 2/4 kernel study, the accuracy drop from imf 10 to imf 200 and the Fig. 5 image statistics.

Reconstruction: our choice, throughout (the paper's code and most settings are unpublished):
- the linear kernel is DM itself (the linear-kernel MMD^2 is DM's ||mu_r - mu_s||^2, as the paper frames
  "previous methods");
- because geodd's image optimiser is DM's SGD (lr 1), the loss scale of every SDD kernel/bandwidth is calibrated
  so that its gradient norm w.r.t. the synthetic images equals DM's (``calibrate_loss_scales``); otherwise a
  bandwidth change would mostly act as a change of learning rate (at the matcher's default loss scale, Laplace's
  Cauchy frequencies give gradients tens to hundreds of times DM's, RBF at sigma = 4 a tenth of it);
- ``class_alphas(rule="median")``: classes above the median count are "head" (amplitude weight alpha_head),
  below it "tail" (1 - alpha_head), as in the caption of the paper's Fig. 3.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import GeoddError, default_device
from .data import Dataset, per_class_subset
from .experiments import Variant, run_variant
from .matchers import build_matcher
from .matchers.sdd import NORM_EPS
from .nets import make_network
from .profiles import Profile
from .records import cached_distill, memo

#: the profile key of this notebook's settings
KEY = "nb03"
#: significant digits kept of a calibrated loss scale (a stable cache key across machines)
LOSS_SCALE_DIGITS = 3
#: floor on gradient norms in the calibration ratio
GRAD_EPS = 1e-12
#: the abstract's headline numbers (arXiv 2603.01698 v1, CIFAR-10-LT, IPC 10); in accuracy points
PAPER_CLAIMS = {
    "drop": (5.7, "CSDM's drop when the tail shrinks from 500 to 25 images (imf 10 -> 200), CIFAR-10-LT, IPC 10"),
    "gain": (14.0, "CSDM's improvement over state-of-the-art DD, CIFAR-10-LT, IPC 10 (imf 200 per a reviewer; "
                   "baseline unnamed)"),
}


def settings(p: Profile) -> dict[str, Any]:
    """This notebook's sizes, ``p["nb03"]``."""
    return p[KEY]


def study_profile(p: Profile) -> Profile:
    """``p`` with notebook 03's distillation and evaluation sizes (iterations, batch_real, inner_steps, epochs,
    runs)."""
    s = settings(p)
    return dataclasses.replace(p, iterations=s["iterations"], batch_real=s["batch_real"],
                               inner_steps=s["inner_steps"], eval_epochs=s["eval_epochs"], eval_runs=s["eval_runs"])


def lt_train(p: Profile, imf: float) -> Dataset:
    """The profile's long-tailed training set at imbalance factor ``imf`` (cached in memory)."""
    return p.train_data(p.lt_dataset, imf=imf)


def test_set(p: Profile) -> Dataset:
    """The balanced test set, reduced to ``test_per_class`` images per class when the settings ask for it."""
    test = p.test_data(p.lt_dataset)
    n = settings(p).get("test_per_class")
    if n is not None and n < min(test.counts):
        test = per_class_subset(test, int(n), seed=0)
    return test


# --------------------------------------------------------------------------------------------- variants

def sdd_options(kernel: str, scale: float, num_freqs: int, loss_scale: float, **extra) -> dict[str, Any]:
    """The SDD/CSDM matcher options with every cache-relevant key spelled out."""
    return {"kernel": kernel, "scale": float(scale), "num_freqs": int(num_freqs), "loss_scale": float(loss_scale),
            **extra}


def dm_variant() -> Variant:
    """DM: the linear-kernel MMD (mean matching)."""
    return Variant("DM", "dm", {})


def sdd_variant(kernel: str, scale: float, num_freqs: int, loss_scale: float, alpha: float = 0.5,
                label: str = "SDD", **overrides) -> Variant:
    """SDD with one amplitude weight ``alpha`` for every class."""
    return Variant(label, "sdd", {"matcher": sdd_options(kernel, scale, num_freqs, loss_scale, alpha=float(alpha)),
                                  **overrides})


def csdm_variant(kernel: str, scale: float, num_freqs: int, loss_scale: float, alpha_head: float,
                 label: str = "CSDM") -> Variant:
    """CSDM: amplitude weight alpha_head on head classes, 1 - alpha_head on tail classes (median rule)."""
    return Variant(label, "csdm", {"matcher": sdd_options(kernel, scale, num_freqs, loss_scale,
                                                          alpha_head=float(alpha_head), rule="median",
                                                          direction="tail_realism")})


def loss_scale_key(kernel: str, scale: float, alpha: float = 0.5) -> str:
    """The name of a (kernel, bandwidth[, uniform alpha]) calibration entry: ``"rbf@1"``, ``"rbf@1/a=0"``."""
    return f"{kernel}@{float(scale):g}" + ("" if math.isclose(alpha, 0.5) else f"/a={float(alpha):g}")


def table_variants(s: Mapping[str, Any], loss_scales: Mapping[str, float]) -> list[Variant]:
    """DM, SDD (alpha = 0.5) and CSDM (alpha_head from the settings) at the table's kernel and bandwidth."""
    k, sc, nf = s["kernel"], s["scale"], s["num_freqs"]
    ls = loss_scales[loss_scale_key(k, sc)]
    return [dm_variant(), sdd_variant(k, sc, nf, ls), csdm_variant(k, sc, nf, ls, s["alpha_head"])]


def sweep_variants(s: Mapping[str, Any], loss_scales: Mapping[str, float]) -> list[tuple[float, Variant]]:
    """(alpha_head, variant) for the Fig. 3 sweep. alpha_head = 0.5 gives every class 0.5, which is SDD exactly
    (same loss, same frequency draws), so that point *is* the table's SDD run; alpha_head = the table's value is
    the table's CSDM run."""
    k, sc, nf = s["kernel"], s["scale"], s["num_freqs"]
    ls = loss_scales[loss_scale_key(k, sc)]
    out = []
    for a in s["alpha_heads"]:
        if math.isclose(a, 0.5):
            out.append((float(a), sdd_variant(k, sc, nf, ls)))
        elif math.isclose(a, s["alpha_head"]):
            out.append((float(a), csdm_variant(k, sc, nf, ls, s["alpha_head"])))
        else:
            out.append((float(a), csdm_variant(k, sc, nf, ls, a, label=f"CSDM a={a:g}")))
    return out


def kernel_variants(s: Mapping[str, Any], loss_scales: Mapping[str, float]) -> list[tuple[Variant, dict[str, Any]]]:
    """(variant, {"kernel", "scale"}) for Fig. 2: DM as the linear kernel (no bandwidth: NaN), then SDD
    (alpha = 0.5) with RBF and Laplace at every bandwidth of the settings. The table's (kernel, scale) is the
    table's SDD run."""
    out: list[tuple[Variant, dict[str, Any]]] = [(dm_variant(), {"kernel": "linear", "scale": float("nan")})]
    for kernel, scales in (("rbf", s["rbf_scales"]), ("laplace", s["laplace_scales"])):
        for sc in scales:
            out.append((_kernel_sdd(s, loss_scales, kernel, sc), {"kernel": kernel, "scale": float(sc)}))
    return out


def kernel_imf_variants(s: Mapping[str, Any], loss_scales: Mapping[str, float]) -> list[tuple[Variant, dict[str, Any]]]:
    """(variant, {"kernel", "scale"}) for Fig. 4: linear (DM), RBF at the table's bandwidth (the table's SDD) and
    Laplace at ``laplace_scale``, to be run at every imf."""
    return [(dm_variant(), {"kernel": "linear", "scale": float("nan")}),
            (_kernel_sdd(s, loss_scales, "rbf", s["scale"]), {"kernel": "rbf", "scale": float(s["scale"])}),
            (_kernel_sdd(s, loss_scales, "laplace", s["laplace_scale"]),
             {"kernel": "laplace", "scale": float(s["laplace_scale"])})]


def image_variant(s: Mapping[str, Any], loss_scales: Mapping[str, float], alpha: float) -> Variant:
    """SDD with one ``alpha`` for every class (Fig. 5: 0 = phase only, 1 = amplitude only), at the table's kernel
    and bandwidth, with its own calibrated loss scale and a snapshot of the initialisation."""
    k, sc = s["kernel"], s["scale"]
    return sdd_variant(k, sc, s["num_freqs"], loss_scales[loss_scale_key(k, sc, alpha)], alpha=alpha,
                       label=f"SDD alpha={alpha:g}", snapshot_at=(0,))


def _kernel_sdd(s: Mapping[str, Any], loss_scales: Mapping[str, float], kernel: str, sc: float) -> Variant:
    label = "SDD" if (kernel, float(sc)) == (s["kernel"], float(s["scale"])) else f"SDD {kernel} {sc:g}"
    return sdd_variant(kernel, sc, s["num_freqs"], loss_scales[loss_scale_key(kernel, sc)], label=label)


def calibration_entries(s: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (method, matcher options) for every (kernel, bandwidth) the notebook uses, plus DM as reference:
    SDD at alpha = 0.5, and at each uniform alpha of the Fig. 5 images (amplitude-only and phase-only losses have
    very different gradient sizes); all at the matcher's default loss scale."""
    pairs = {(s["kernel"], float(s["scale"])), ("laplace", float(s["laplace_scale"]))}
    pairs |= {("rbf", float(x)) for x in s["rbf_scales"]} | {("laplace", float(x)) for x in s["laplace_scales"]}
    entries: dict[str, tuple[str, dict[str, Any]]] = {"dm": ("dm", {})}
    for kernel, sc in sorted(pairs):
        entries[loss_scale_key(kernel, sc)] = ("sdd", {"kernel": kernel, "scale": sc, "num_freqs": s["num_freqs"],
                                                       "alpha": 0.5})
    for a in s["image_alphas"]:
        entries.setdefault(loss_scale_key(s["kernel"], s["scale"], a),
                           ("sdd", {"kernel": s["kernel"], "scale": float(s["scale"]), "num_freqs": s["num_freqs"],
                                    "alpha": float(a)}))
    return entries


# ------------------------------------------------------------------------------------ gradient calibration

def _first_per_class(ds: Dataset, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """min(k, n_c) random images of every class c, and their labels."""
    idx = [m[torch.randperm(len(m), generator=gen)[:k]] for m in ds.indices_by_class]
    idx = torch.cat(idx)
    return ds.images[idx], ds.labels[idx]


def gradient_norms(train: Dataset, entries: Mapping[str, tuple[str, dict[str, Any]]], *, ipc: int,
                   batch_real: int, draws: int = 2, seed: int = 0, arch: str = "convnet",
                   device: torch.device | str | None = None) -> dict[str, list[float]]:
    """||d L / d S|| at a real-initialised synthetic set S, L = sum_c matcher(real_c, syn_c, c), per entry and draw.

    Each draw samples a random ``arch`` network, a real batch of ``batch_real`` per class and (through
    ``start_iteration``) the frequencies; every entry sees the same network, batch and images, in float32 without
    augmentation. ``entries``: name -> (method, matcher options).
    """
    if draws < 1:
        raise GeoddError(f"draws must be >= 1, got {draws}")
    device = torch.device(device) if device is not None else default_device()
    gen = torch.Generator().manual_seed(int(seed))
    syn0, syn_labels = _first_per_class(train, ipc, gen)
    syn0, syn_labels = syn0.to(device), syn_labels.to(device)
    out: dict[str, list[float]] = {name: [] for name in entries}
    for d in range(draws):
        net_seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        real, real_labels = _first_per_class(train, batch_real, gen)
        real_labels = real_labels.to(device)
        net = make_network(arch, train.channels, train.num_classes, train.im_size, seed=net_seed, device=device)
        for q in net.parameters():
            q.requires_grad_(False)
        with torch.no_grad():
            f_real = net.embed(real.to(device)).float()
        for name, (method, opts) in entries.items():
            matcher = build_matcher(method, **opts).to(device)
            matcher.set_class_counts(train.counts)
            matcher.start_iteration(d, torch.Generator().manual_seed(net_seed), f_real.shape[1], device)
            syn = syn0.clone().requires_grad_(True)
            f_syn = net.embed(syn).float()
            loss = sum(matcher(f_real[real_labels == c], f_syn[syn_labels == c], c)
                       for c in range(train.num_classes))
            (grad,) = torch.autograd.grad(loss, syn)
            out[name].append(float(grad.norm()))
    return out


def round_significant(x: float, digits: int = LOSS_SCALE_DIGITS) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def calibrate_loss_scales(norms: Mapping[str, Sequence[float]], base: Mapping[str, float],
                          reference: str = "dm") -> dict[str, float]:
    """loss_scale(name) = base(name) * median ||grad_reference|| / median ||grad_name||, to 3 significant digits.

    Every SDD loss is linear in its loss scale, so the calibrated loss has the reference's median gradient norm
    on the calibration draws. Reconstruction: our choice (see the module docstring).
    """
    if reference not in norms:
        raise GeoddError(f"the reference {reference!r} is not among the gradient norms {sorted(norms)}")
    ref = float(np.median(norms[reference]))
    out = {}
    for name, b in base.items():
        if name not in norms:
            raise GeoddError(f"no gradient norms for {name!r}")
        out[name] = round_significant(b * ref / max(float(np.median(norms[name])), GRAD_EPS))
    return out


def _calibration(p: Profile, train: Dataset) -> tuple[dict, dict[str, float], dict]:
    """(entries, default loss scales, cached {"norms", "loss_scales"}) of the gradient calibration on ``train``."""
    s = settings(p)
    entries = calibration_entries(s)
    base = {name: float(build_matcher(m, **o).loss_scale) for name, (m, o) in entries.items() if name != "dm"}
    params = {"dataset": train.name, "imf": train.imf, "n": len(train), "ipc": s["ipc"],
              "batch_real": s["batch_real"], "draws": s["calib_draws"], "entries": entries, "base": base}

    def compute() -> dict:
        norms = gradient_norms(train, entries, ipc=s["ipc"], batch_real=s["batch_real"], draws=s["calib_draws"])
        return {"norms": norms, "loss_scales": calibrate_loss_scales(norms, base)}

    return entries, base, memo("nb03-calibration", params, compute)


def calibrated_loss_scales(p: Profile, train: Dataset) -> dict[str, float]:
    """The calibrated loss scale of every (kernel, bandwidth) in the settings (cached with ``records.memo``)."""
    return _calibration(p, train)[2]["loss_scales"]


def calibration_table(p: Profile, train: Dataset) -> pd.DataFrame:
    """The calibration as a table: kernel, bandwidth, default and calibrated loss scale, median gradient norms."""
    entries, base, res = _calibration(p, train)
    rows = [{"kernel": "linear (DM)", "scale": float("nan"), "alpha": float("nan"), "default loss_scale": float("nan"),
             "median grad norm (default)": float(np.median(res["norms"]["dm"])),
             "calibrated loss_scale": float("nan")}]
    for name, (_, o) in entries.items():
        if name != "dm":
            rows.append({"kernel": o["kernel"], "scale": o["scale"], "alpha": o["alpha"],
                         "default loss_scale": base[name],
                         "median grad norm (default)": float(np.median(res["norms"][name])),
                         "calibrated loss_scale": res["loss_scales"][name]})
    return pd.DataFrame(rows)


def feature_median_distances(train: Dataset, *, n: int = 512, seed: int = 0, arch: str = "convnet",
                             device: torch.device | str | None = None) -> dict[str, float]:
    """Median pairwise L2 and L1 distances of per-sample L2-normalised features of a random ``arch`` network.

    The bandwidth sigma of an RBF (L2) or Laplace (L1) kernel is read against these (the "median heuristic"):
    sigma << median makes every characteristic function ~0, sigma >> median the linear (mean-matching) limit.
    """
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(train), generator=gen)[:n]
    device = torch.device(device) if device is not None else default_device()
    net = make_network(arch, train.channels, train.num_classes, train.im_size, seed=seed, device=device)
    with torch.no_grad():
        f = net.embed(train.images[idx].to(device)).float()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(NORM_EPS)
    off = ~torch.eye(len(f), dtype=torch.bool, device=f.device)
    return {"l2": float(torch.cdist(f, f)[off].median()), "l1": float(torch.cdist(f, f, p=1)[off].median())}


def bandwidth_table(med: Mapping[str, float], s: Mapping[str, Any]) -> pd.DataFrame:
    """The settings' bandwidths beside the median feature distance of their kernel (L2 for RBF, L1 for Laplace)."""
    rows = []
    for kernel, dist, scales in (("rbf", "l2", s["rbf_scales"]), ("laplace", "l1", s["laplace_scales"])):
        rows.append({"kernel": kernel, "distance": dist.upper(), "median distance": med[dist],
                     "bandwidths": ", ".join(f"{x:g}" for x in scales),
                     "sigma / median": ", ".join(f"{x / med[dist]:.2g}" for x in scales)})
    return pd.DataFrame(rows)


def relative_scale(kernel: str, scale: float, med: Mapping[str, float]) -> float:
    """sigma divided by the kernel's median feature distance (NaN for the linear kernel)."""
    return {"rbf": scale / med["l2"], "laplace": scale / med["l1"]}.get(kernel, float("nan"))


# ------------------------------------------------------------------------------------------------ running

def run_rows(p: Profile, variants: Iterable[Variant | tuple[Variant, Mapping[str, Any]]], imfs: Iterable[float],
             seeds: Iterable[int], ipcs: Iterable[int], *, test: Dataset, progress: bool = False) -> pd.DataFrame:
    """``run_variant`` (cached) for every (variant, imf, ipc, seed) on the long-tailed data at notebook 03's sizes.

    ``variants``: variants or (variant, extra columns) pairs; each row gets ``imf`` and the extra columns.
    """
    sp = study_profile(p)
    rows = []
    for item in variants:
        v, extra = (item, {}) if isinstance(item, Variant) else item
        for imf in imfs:
            train = lt_train(p, imf)
            for ipc in ipcs:
                for seed in seeds:
                    row = run_variant(sp, v, ipc, seed, train=train, test=test, progress=progress)
                    rows.append({**row, "imf": imf, **extra})
    return pd.DataFrame(rows)


def distill_only(p: Profile, v: Variant, imf: float, seed: int, ipc: int, *, progress: bool = False):
    """Distil (cached) without evaluating; returns ``(synset, record, run_dir)``."""
    sp = study_profile(p)
    train = lt_train(p, imf)
    cfg = sp.distill_config(v.method, ipc=ipc, seed=seed, **{"dataset": train.name, "imf": train.imf, **v.overrides})
    return cached_distill(cfg, train=train, progress=progress)


# ----------------------------------------------------------------------------------------------- analysis

def imf_table(df: pd.DataFrame, value_cols: Sequence[str] = ("acc_balanced", "acc_head", "acc_medium", "acc_tail"),
              by: Sequence[str] = ("method", "ipc", "imf")) -> pd.DataFrame:
    """Mean ± std over seeds of each value column per (method, ipc, imf), with the number of seeds."""
    missing = [c for c in (*value_cols, *by) if c not in df.columns]
    if missing:
        raise GeoddError(f"columns {missing} are missing; long-tailed runs report acc_balanced/head/medium/tail")
    g = df.groupby(list(by), sort=False)
    out = g.size().rename("seeds").reset_index()
    for c in value_cols:
        m, sd = g[c].mean().values, g[c].std(ddof=0).values
        out[c.replace("acc_", "") + " (%)"] = [f"{a:.2f} ± {b:.2f}" for a, b in zip(m, sd)]
        out[c + "_mean"] = m
    return out


def accuracy_drop(df: pd.DataFrame, lo: float, hi: float, value: str = "acc_balanced",
                  by: Sequence[str] = ("method", "ipc")) -> pd.DataFrame:
    """Per method: mean accuracy at imf ``lo`` and ``hi`` and the drop between them.

    drop = acc(lo) - acc(hi) in accuracy points, paired by seed (mean ± std over seeds), and relative to acc(lo)
    in percent. Rows without both imfs for a seed are ignored.
    """
    sub = df[df["imf"].isin([lo, hi])]
    wide = sub.pivot_table(index=[*by, "seed"], columns="imf", values=value, aggfunc="mean").dropna()
    if wide.empty or lo not in wide.columns or hi not in wide.columns:
        raise GeoddError(f"need runs at imf {lo} and imf {hi} with the same seeds")
    wide = wide.reset_index()
    wide["drop"] = wide[lo] - wide[hi]
    wide["rel"] = 100.0 * wide["drop"] / wide[lo]
    g = wide.groupby(list(by), sort=False)
    out = g.agg(acc_lo=(lo, "mean"), acc_hi=(hi, "mean"), drop=("drop", "mean"),
                drop_std=("drop", lambda x: float(np.std(x, ddof=0))), rel_drop=("rel", "mean"),
                seeds=("drop", "count")).reset_index()
    return out.rename(columns={"acc_lo": f"acc imf {lo:g}", "acc_hi": f"acc imf {hi:g}"})


def gain(df: pd.DataFrame, ours: str, baseline: str, imf: float, ipc: int,
         value: str = "acc_balanced") -> dict[str, float]:
    """Our method minus a baseline at one (imf, ipc), paired by seed: mean, std and the number of seeds."""
    sub = df[(df["imf"] == imf) & (df["ipc"] == ipc)]
    wide = sub.pivot_table(index="seed", columns="method", values=value, aggfunc="mean")
    if ours not in wide.columns or baseline not in wide.columns:
        raise GeoddError(f"need {ours!r} and {baseline!r} at imf {imf:g}, ipc {ipc}")
    d = (wide[ours] - wide[baseline]).dropna()
    return {"mean": float(d.mean()), "std": float(np.std(d, ddof=0)), "seeds": int(len(d))}


def claims_table(drops: pd.DataFrame, gains: Mapping[str, Mapping[str, float]], *, dataset: str,
                 ipc: int) -> pd.DataFrame:
    """The abstract's two numbers beside ours: the imf 10 -> 200 drop of each method, and CSDM's gain."""
    rows = []
    paper_drop, src_drop = PAPER_CLAIMS["drop"]
    for r in drops[drops["ipc"] == ipc].itertuples():
        rows.append({"claim": "accuracy drop imf 10 -> 200 (points)", "method": r.method,
                     "paper (CIFAR-10-LT)": paper_drop if r.method == "CSDM" else float("nan"),
                     f"ours ({dataset})": r.drop, "ours std": r.drop_std, "ours relative (%)": r.rel_drop,
                     "source": src_drop if r.method == "CSDM" else ""})
    paper_gain, src_gain = PAPER_CLAIMS["gain"]
    for baseline, gn in gains.items():
        sota = baseline == "DM"  # the paper's baseline is unnamed; DM is the only prior method we run
        rows.append({"claim": "CSDM gain at imf 200 (points)", "method": f"CSDM - {baseline}",
                     "paper (CIFAR-10-LT)": paper_gain if sota else float("nan"), f"ours ({dataset})": gn["mean"],
                     "ours std": gn["std"], "ours relative (%)": float("nan"),
                     "source": src_gain if sota else "ours only: the class-aware alpha on top of SDD"})
    return pd.DataFrame(rows)


def short_class_table(counts_by_imf: Mapping[float, Sequence[int]], ipcs: Iterable[int],
                      policy: str) -> pd.DataFrame:
    """For each (imf, IPC): the tail count and the classes with fewer real images than IPC (n_c < IPC), which the
    engine's ``short_class`` policy (duplicate | cap | noise) has to handle."""
    rows = []
    for imf, counts in counts_by_imf.items():
        for ipc in ipcs:
            short = [c for c, n in enumerate(counts) if n < ipc]
            rows.append({"imf": imf, "ipc": ipc, "head n_c": max(counts), "tail n_c": min(counts),
                         "classes with n_c < IPC": ", ".join(f"{c} ({counts[c]})" for c in short) or "none",
                         "policy used": policy if short else "not needed"})
    return pd.DataFrame(rows)


def image_stats(images: torch.Tensor, labels: torch.Tensor, real: Dataset,
                init: torch.Tensor | None = None) -> pd.DataFrame:
    """Per class: diversity = mean pairwise L2 distance between the class's synthetic images; realism proxy =
    mean L2 distance from each synthetic image to its nearest real image of the class; drift = mean L2 distance
    to the initial image (if ``init`` is given). Pixel space, normalised images. Reconstruction: our choice of
    proxies for the paper's "diversity" (amplitude) and "realism" (phase)."""
    rows = []
    flat = images.detach().flatten(1).double()
    for c in sorted(set(labels.tolist())):
        idx = torch.nonzero(labels == c).flatten()
        x = flat[idx]
        k = len(x)
        diversity = float(torch.pdist(x).mean()) if k > 1 else float("nan")
        r = real.images[real.indices_by_class[c]].flatten(1).double()
        nearest = float(torch.cdist(x, r).min(dim=1).values.mean())
        row = {"class": c, "diversity": diversity, "nearest real": nearest}
        if init is not None:
            row["drift"] = float((x - init.flatten(1).double()[idx]).norm(dim=1).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def image_summary(stats_by_alpha: Mapping[float, pd.DataFrame], sets: Mapping[float, torch.Tensor]) -> pd.DataFrame:
    """One row per alpha: the class means of ``image_stats`` and the mean pixel distance of each image to the
    same image of the other alphas' sets (``sets``: alpha -> images, same initialisation and order)."""
    rows = []
    for a, st in stats_by_alpha.items():
        row = {"alpha": a, **st[["diversity", "nearest real", "drift"]].mean().to_dict()}
        others = [b for b in sets if b != a]
        if others:
            row["distance to other alpha"] = float(np.mean(
                [(sets[a] - sets[b]).flatten(1).norm(dim=1).mean() for b in others]))
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- claim checks

#: a difference counts as a finding only beyond this many standard deviations of its noise
NOISE_SIGMAS = 2.0


def seed_noise(df: pd.DataFrame, value: str = "acc_balanced",
               by: Sequence[str] = ("method", "ipc", "imf")) -> float:
    """The run-to-run noise of one run: root-mean-square over groups (of >= 2 seeds) of the std over seeds."""
    g = df.groupby(list(by))[value]
    var = g.var(ddof=1)[g.count() >= 2]
    if var.empty:
        return float("nan")
    return float(np.sqrt(var.mean()))


def verdict(diff: float, noise: float, sigmas: float = NOISE_SIGMAS) -> str:
    """"supported" if diff > sigmas * noise, "contradicted" if diff < -sigmas * noise, else "within noise"
    ("no noise estimate" when the noise is unknown)."""
    if not math.isfinite(noise):
        return "no noise estimate"
    if diff > sigmas * noise:
        return "supported"
    if diff < -sigmas * noise:
        return "contradicted"
    return "within noise"


def _paired(df: pd.DataFrame, a: str, b: str, value: str) -> pd.Series:
    wide = df.pivot_table(index="seed", columns="method", values=value, aggfunc="mean")
    if a not in wide.columns or b not in wide.columns:
        raise GeoddError(f"need {a!r} and {b!r} among the methods {list(wide.columns)}")
    return (wide[a] - wide[b]).dropna()


def _mean_noise(d: pd.Series | np.ndarray, fallback: float) -> tuple[float, float]:
    """Mean of paired differences and its standard error (``fallback`` for a single pair)."""
    d = np.asarray(d, dtype=float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else fallback


def claim_checks(table: pd.DataFrame, sweep: pd.DataFrame, kernels: pd.DataFrame,
                 stats_by_alpha: Mapping[float, pd.DataFrame], *, s: Mapping[str, Any],
                 value: str = "acc_balanced") -> pd.DataFrame:
    """Each claim of the paper beside our difference, its noise and a verdict (``verdict``).

    Noise: single-run comparisons (sweep, kernels) use sqrt(2) x the table's seed noise; seed-paired comparisons
    use the standard error of the paired differences; image statistics the standard error over classes.
    """
    run = seed_noise(table, value)
    single = math.sqrt(2.0) * run
    lo, hi = s["drop_imfs"]
    ipc = s["ipc"]
    rows = []

    def add(claim: str, paper: str, ours: str, diff: float, noise: float) -> None:
        rows.append({"claim": claim, "paper": paper, "ours": ours, "difference": diff, "noise (1 sd)": noise,
                     "verdict": verdict(diff, noise)})

    big = max(s["sweep_imfs"])
    sw = sweep[sweep["imf"] == big]
    best = sw.loc[sw[value].idxmax()]
    inside = sw[(sw["alpha_head"] >= 0.7 - 1e-9) & (sw["alpha_head"] <= 0.9 + 1e-9)][value]
    outside = sw[(sw["alpha_head"] < 0.7 - 1e-9) | (sw["alpha_head"] > 0.9 + 1e-9)][value]
    if len(inside) and len(outside):
        add(f"Fig. 3: at imf {big:g} the best alpha_head lies in 0.7-0.9", "peak at 0.7-0.9 (large imf)",
            f"best alpha_head = {best['alpha_head']:g}", float(inside.max() - outside.max()), single)

    lin = kernels[kernels["kernel"] == "linear"][value]
    uni = kernels[kernels["kernel"].isin(["rbf", "laplace"])]
    if len(lin) and len(uni):
        top = uni.loc[uni[value].idxmax()]
        add("Fig. 2: a universal kernel at a good scale beats the linear kernel", "yes (CIFAR-10-LT, imf 200)",
            f"best: {top['kernel']} sigma={top['scale']:g}", float(top[value] - lin.mean()), single)
        rbf, lap = uni[uni["kernel"] == "rbf"][value], uni[uni["kernel"] == "laplace"][value]
        if len(rbf) and len(lap):
            add("Fig. 2: RBF is the best kernel", "yes", "best RBF - best Laplace", float(rbf.max() - lap.max()),
                single)

    at_hi = table[(table["imf"] == hi) & (table["ipc"] == ipc)]
    for base, paper in (("DM", f"+{PAPER_CLAIMS['gain'][0]:g} points over SOTA (baseline unnamed)"),
                        ("SDD", "class-aware alpha helps (Fig. 3)")):
        d, noise = _mean_noise(_paired(at_hi, "CSDM", base, value), single)
        add(f"CSDM beats {base} at imf {hi:g}, IPC {ipc}", paper, f"CSDM - {base} over seeds", d, noise)

    drops = []
    for method in ("DM", "CSDM"):
        sub = table[(table["method"] == method) & (table["ipc"] == ipc)]
        wide = sub.pivot_table(index="seed", columns="imf", values=value, aggfunc="mean")
        drops.append(wide[lo] - wide[hi])
    d, noise = _mean_noise((drops[0] - drops[1]).dropna(), single)
    add(f"CSDM's drop imf {lo:g} -> {hi:g} is smaller than DM's",
        f"CSDM drops {PAPER_CLAIMS['drop'][0]:g} points", "DM drop - CSDM drop over seeds", d, noise)

    if 0.0 in stats_by_alpha and 1.0 in stats_by_alpha:
        s0, s1 = stats_by_alpha[0.0], stats_by_alpha[1.0]
        d, noise = _mean_noise(s1["diversity"] - s0["diversity"], float("nan"))
        add("Fig. 5: amplitude-only (alpha=1) images are more diverse", "yes (visual)",
            "diversity(alpha=1) - diversity(alpha=0), per class", d, noise)
        d, noise = _mean_noise(s1["nearest real"] - s0["nearest real"], float("nan"))
        add("Fig. 5: phase-only (alpha=0) images are more realistic", "yes (visual)",
            "nearest-real distance(alpha=1) - (alpha=0), per class", d, noise)
    return pd.DataFrame(rows)


__all__ = ["KEY", "PAPER_CLAIMS", "settings", "study_profile", "lt_train", "test_set", "sdd_options", "dm_variant",
           "sdd_variant", "csdm_variant", "loss_scale_key", "table_variants", "sweep_variants", "kernel_variants",
           "kernel_imf_variants", "image_variant",
           "calibration_entries", "gradient_norms", "round_significant", "calibrate_loss_scales",
           "calibrated_loss_scales", "calibration_table", "feature_median_distances", "bandwidth_table",
           "relative_scale", "image_summary", "run_rows", "distill_only",
           "imf_table", "accuracy_drop", "gain", "claims_table", "short_class_table", "image_stats",
           "NOISE_SIGMAS", "seed_noise", "verdict", "claim_checks"]
