"""Notebook-level computations for notebook 05 (OT generative DD, ``papers/csdm_ot.md`` part B, C.2).

Everything the notebook shows is computed here, from cached pieces:

* ``run_cell(p, train, test, ipc, seed)``: one (IPC, seed) cell of the ablation: ``run_pipeline`` with the
  notebook's sizes (``p["nb05"]``), plus the OT distance between generated and held-out real latents per
  sampling variant, the soft-label entropy against ensemble size (LIA), and per-stage timings. The JSON result
  is cached with ``geodd.records.memo``; the generated images go next to the generative checkpoint
  (``runs_root()/"generative"/sets-<hash>.pt``) for the sample grids;
* ``ablation_rows``: "full pipeline" and "sampling only" accuracies per (IPC, seed) from the same cache, for the
  closing notebook 06;
* ``same_student_baselines``: DM synthetic sets and random real subsets evaluated by the *same* student protocol
  as the generated sets (so differences are due to the images, not the evaluator);
* ``toy_grid``: mode coverage and W_1 of the 2-D toy with and without OT guidance.

Reconstruction: our choice throughout (the paper has no code): the ablation rows are the paper's table
(B.7) read as a cumulative story, sampling only (IGD-style guidance, hard labels) -> +OTG -> +LIA (soft labels
from the IPC-sized ensemble, CE + MSE) -> +OTM (the Sinkhorn term), plus leave-one-out rows; the OT distance
of a generated set is the exact W_1 (POT's network simplex) per class between its latents and encodings of
held-out *test* images of that class, averaged over classes.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import torch

from .. import GeoddError, default_device
from ..records import config_hash, load_tensors, memo, runs_root, save_tensors
from .logit_matching import train_student
from .model import data_fingerprint, encode_all, make_config, train_or_load
from .pipeline import ROWS, resolve_profile, run_pipeline, test_subset
from .relabel import entropy_vs_ensemble, label_entropy
from .sampler import sample_set, sampler_config
from .toy import ring_mixture, sample_toy, wasserstein

STUDY_FORMAT = "geodd.nb05/1"
SETS_FORMAT = "geodd.nb05-sets/1"
#: the cumulative ablation (paper B.7 read in order): each step adds one component to the one before
CUMULATIVE: dict[str, str] = {
    "igd_hard": "sampling only (IGD-style guidance, hard labels)",
    "otg_hard": "+ OTG (OT-guided sampling)",
    "no_otm": "+ LIA (IPC-sized soft labels, CE + MSE)",
    "full": "+ OTM (Sinkhorn logit matching) = full",
}
#: leave-one-out rows: the full pipeline without one component (``no_otm`` doubles as "full - OTM")
LEAVE_ONE_OUT: dict[str, str] = {"igd_soft": "full - OTG", "no_lia": "full - LIA (whole ensemble)",
                                 "no_otm": "full - OTM"}
#: method names for tables shared with other notebooks (notebook 06)
METHOD_NAMES: dict[str, str] = {
    "plain_hard": "OT-gen (plain DDIM)", "igd_hard": "OT-gen (sampling only)", "otg_hard": "OT-gen (+OTG)",
    "no_otm": "OT-gen (+OTG +LIA)", "full": "OT-gen (full)", "igd_soft": "OT-gen (full - OTG)",
    "no_lia": "OT-gen (full - LIA)",
}
#: paired comparisons behind the paper's three claims: (claim, with, without)
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("OTG helps (hard labels)", "otg_hard", "igd_hard"),
    ("OTG helps (full pipeline)", "full", "igd_soft"),
    ("LIA helps (IPC-sized vs whole ensemble)", "full", "no_lia"),
    ("OTM helps (Sinkhorn term on top of CE + MSE)", "full", "no_otm"),
    ("soft labels help (+LIA step)", "no_otm", "otg_hard"),
)
#: W_1 ground metrics reported for latents (POT ``ot.dist`` names): Euclidean and the paper's l1
OT_METRICS = {"w1_l2": "euclidean", "w1_l1": "cityblock"}


def settings(p: Any) -> dict[str, Any]:
    """The notebook's settings ``p["nb05"]`` (accepts the dict itself)."""
    return p if isinstance(p, dict) else p["nb05"]


def cache_dir() -> Path:
    """Where generative checkpoints, teachers and generated sets live: ``runs_root()/"generative"``."""
    return runs_root() / "generative"


def pipeline_profile(p: Any) -> dict[str, Any]:
    """``run_pipeline``'s profile: ``DEFAULT_PROFILE`` merged with ``p["nb05"]["pipeline"]``."""
    return resolve_profile(settings(p)["pipeline"])


def cell_params(p: Any, train: Any, test: Any, ipc: int, seed: int) -> dict[str, Any]:
    """The cache key of one (IPC, seed) cell: pipeline profile, OT reference size, data fingerprints."""
    cfg = settings(p)
    return {"format": STUDY_FORMAT, "pipeline": pipeline_profile(cfg), "ot_real_per_class": cfg["ot_real_per_class"],
            "train": [train.name, data_fingerprint(train.images, train.labels)],
            "test": [test.name, data_fingerprint(test.images, test.labels)], "ipc": int(ipc), "seed": int(seed)}


# ---- OT distances between generated and real latents ----------------------------------------------------------

def held_out_latents(model: Any, test: Any, per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised latents of ``per_class`` test images per class (seeded choice; all when fewer)."""
    gen = torch.Generator().manual_seed(int(seed))
    labels = test.labels.cpu()
    picks = []
    for c in range(int(test.num_classes)):
        idx = torch.nonzero(labels == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    idx = torch.cat(picks)
    return encode_all(model, test.images[idx]), labels[idx]


def latent_ot(latents: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor, ref_labels: torch.Tensor,
              metric: str = "euclidean") -> dict[str, Any]:
    """Per-class exact OT cost W_1 = min_P <P, C>, C_ij = ||z_i - r_j|| (uniform marginals, POT's ``emd2``)
    between the generated latents of each class and the reference latents of that class; and its class mean."""
    labels, ref_labels = labels.cpu(), ref_labels.cpu()
    per_class = []
    for c in sorted(set(labels.tolist())):
        r = ref[(ref_labels == c).to(ref.device)]
        if len(r) == 0:
            raise GeoddError(f"no reference latents for class {c}")
        per_class.append(wasserstein(latents[(labels == c).to(latents.device)].detach(), r.detach(), metric=metric))
    return {"mean": float(sum(per_class) / len(per_class)), "per_class": per_class}


def latent_ot_table(latents: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], ref: torch.Tensor,
                    ref_labels: torch.Tensor) -> dict[str, dict[str, Any]]:
    """``latent_ot`` under every metric of ``OT_METRICS`` for each named latent set."""
    return {name: {key: latent_ot(latents[name], labels[name], ref, ref_labels, metric)
                   for key, metric in OT_METRICS.items()} for name in latents}


# ---- one cell of the ablation ---------------------------------------------------------------------------------

def _sets_path(key: str) -> Path:
    return cache_dir() / f"sets-{key}.pt"


def _compute_cell(p: Any, train: Any, test: Any, ipc: int, seed: int, key: str, device, progress: bool) -> dict:
    cfg = settings(p)
    prof = pipeline_profile(cfg)
    res = run_pipeline(train, test, ipc, seed=seed, profile=prof, cache_dir=cache_dir(), device=device,
                       progress=progress)
    t0 = time.perf_counter()
    ref, ref_labels = held_out_latents(res.model, test, int(cfg["ot_real_per_class"]), seed=seed)
    from ..evaluate import random_subset
    real_x, real_y = random_subset(train, ipc, seed=seed)
    lat = {v: s.latents for v, s in res.sets.items()}
    lab = {v: s.labels for v, s in res.sets.items()}
    lat["real"], lab["real"] = encode_all(res.model, real_x), real_y
    ot = latent_ot_table(lat, lab, ref, ref_labels)
    timings = {**res.timings, "ot_distance": time.perf_counter() - t0}

    entropy, soft_entropy = [], {}
    if res.teachers:
        variant = "otg" if "otg" in res.sets else next(iter(res.sets))
        entropy = entropy_vs_ensemble(res.teachers, res.sets[variant].images,
                                      temperature=prof["lia"]["temperature"])
        soft_entropy = {k: float(label_entropy(v).mean()) for k, v in res.soft.items()}

    gen_log, teach_log = res.logs.get("generative", {}), res.logs.get("teachers", {})
    trained = gen_log.get("trained_seconds") if gen_log.get("cached") else gen_log.get("seconds")
    save_tensors(_sets_path(key), {
        "format": SETS_FORMAT,
        "sets": {v: {"images": s.images.cpu(), "labels": s.labels.cpu(), "latents": s.latents.cpu()}
                 for v, s in res.sets.items()},
        "soft": {k: v.cpu() for k, v in res.soft.items()}})
    return {"ipc": int(ipc), "seed": int(seed), "rows": res.rows, "ensemble": res.ensemble, "timings": timings,
            "ot": ot, "entropy": entropy, "soft_entropy": soft_entropy,
            "generative_train_s": float(sum((trained or {}).values())),
            "generative_cached": bool(gen_log.get("cached", False)),
            "teachers_train_s": float(teach_log.get("trained_seconds" if teach_log.get("cached") else "seconds",
                                                    float("nan"))),
            "diff_loss": gen_log.get("diff_loss", []), "sets_file": _sets_path(key).name}


def run_cell(p: Any, train: Any, test: Any, ipc: int, seed: int, *, device=None, progress: bool = False) -> dict:
    """One (IPC, seed) cell of the ablation, cached with ``memo`` (a rerun is instant). See the module docstring."""
    params = cell_params(p, train, test, ipc, seed)
    key = config_hash(params)
    return memo("nb05-cell", params, lambda: _compute_cell(p, train, test, ipc, seed, key, device, progress))


def run_cells(p: Any, train: Any, test: Any, ipcs: Iterable[int] | None = None, seeds: Iterable[int] | None = None,
             *, device=None, progress: bool = False) -> list[dict]:
    """``run_cell`` over every (IPC, seed); IPCs and seeds default to ``p["nb05"]``."""
    cfg = settings(p)
    ipcs = cfg["ipcs"] if ipcs is None else ipcs
    seeds = cfg["seeds"] if seeds is None else seeds
    return [run_cell(p, train, test, ipc, seed, device=device, progress=progress) for ipc in ipcs for seed in seeds]


def generated_sets(p: Any, train: Any, test: Any, ipc: int, seed: int, *, device=None) -> dict[str, dict]:
    """The generated sets of a cell (``{variant: {"images", "labels", "latents"}}``) from the cache; when the
    file is gone, sampling (only) is redone with the cached generative model and saved again."""
    params = cell_params(p, train, test, ipc, seed)
    key = config_hash(params)
    run_cell(p, train, test, ipc, seed, device=device)
    path = _sets_path(key)
    if path.exists():
        return load_tensors(path, SETS_FORMAT)["sets"]
    prof = params["pipeline"]
    device = torch.device(device) if device is not None else default_device()
    model, _ = train_or_load(make_config(prof["gen_size"], train, **prof["gen"]), train, cache_dir(), device=device)
    sets = {}
    for variant in dict.fromkeys(ROWS[r].variant for r in prof["rows"]):
        scfg = sampler_config(variant, **{**prof["sampler"], **prof["variants"].get(variant, {})})
        s = sample_set(model, train.images, train.labels, ipc, scfg, seed=seed)
        sets[variant] = {"images": s.images.cpu(), "labels": s.labels.cpu(), "latents": s.latents.cpu()}
    save_tensors(path, {"format": SETS_FORMAT, "sets": sets, "soft": {}})
    return sets


# ---- tables -----------------------------------------------------------------------------------------------------

def accuracy_table(cells: Sequence[dict]) -> pd.DataFrame:
    """One row per (row, IPC, seed): ``row``, ``title``, ``method``, ``ipc``, ``seed``, ``acc`` (%), ``seconds``."""
    out = []
    for cell in cells:
        for name, r in cell["rows"].items():
            out.append({"row": name, "title": r["title"], "method": METHOD_NAMES.get(name, name), "ipc": cell["ipc"],
                        "seed": cell["seed"], "acc": 100 * r["accuracy"], "seconds": r["seconds"]})
    return pd.DataFrame(out)


def ablation_rows(p: Any, train: Any, test: Any, ipcs: Iterable[int] | None = None,
                  seeds: Iterable[int] | None = None, rows: Sequence[str] | None = ("igd_hard", "full"), *,
                  device=None, progress: bool = False) -> pd.DataFrame:
    """Accuracy (%) per (method, IPC, seed) from notebook 05's cache, for notebook 06: columns ``method``, ``ipc``,
    ``seed``, ``acc``, ``row``. Default rows: "OT-gen (sampling only)" and "OT-gen (full)"; ``rows=None``: all.
    Uses the same settings (``p["nb05"]``) and data as notebook 05, so its cells are reused (computed if absent)."""
    table = accuracy_table(run_cells(p, train, test, ipcs, seeds, device=device, progress=progress))
    if rows is not None:
        unknown = set(rows) - set(table["row"])
        if unknown:
            raise GeoddError(f"rows {sorted(unknown)} are not in p['nb05']['pipeline']['rows']")
        table = table[table["row"].isin(rows)]
    return table[["method", "ipc", "seed", "acc", "row"]].reset_index(drop=True)


def paired_deltas(acc: pd.DataFrame, pairs: Sequence[tuple[str, str, str]] = CLAIMS) -> pd.DataFrame:
    """For each (claim, with, without) and IPC: the mean and std over seeds of acc(with) - acc(without) (paired
    by seed, percentage points) and how many seeds improved. Pairs whose rows are absent are skipped."""
    wide = acc.pivot_table(index=["ipc", "seed"], columns="row", values="acc")
    out = []
    for claim, with_row, without in pairs:
        if with_row not in wide or without not in wide:
            continue
        d = (wide[with_row] - wide[without]).groupby(level="ipc")
        for ipc, s in d:
            out.append({"claim": claim, "with": with_row, "without": without, "ipc": ipc, "delta": float(s.mean()),
                        "delta_std": float(s.std(ddof=0)), "improved": f"{int((s > 0).sum())}/{len(s)}"})
    return pd.DataFrame(out)


def claim_verdicts(deltas: pd.DataFrame) -> pd.DataFrame:
    """One line per (claim, IPC) from ``paired_deltas``: "supported" when every seed improved, "contradicted" when
    every seed got worse, else "inconclusive" (the seeds disagree); and per claim whether its gain is largest at
    the smallest IPC (the paper: "larger gains at low IPC"). Reconstruction: our choice of rule."""
    out = deltas.copy()
    if out.empty:
        return out.assign(verdict=[], largest_at_low_ipc=[])
    up = out["improved"].str.split("/").map(lambda t: (int(t[0]), int(t[1])))
    out["verdict"] = ["supported" if k == n and d > 0 else "contradicted" if k == 0 and d < 0 else "inconclusive"
                      for (k, n), d in zip(up, out["delta"])]
    low = out.loc[out.groupby("claim")["ipc"].idxmin()].set_index("claim")["delta"]
    best = out.groupby("claim")["delta"].max()
    several = out.groupby("claim")["ipc"].nunique() > 1
    out["largest_at_low_ipc"] = [bool(several[c] and low[c] >= best[c]) for c in out["claim"]]
    return out


def ot_distance_table(cells: Sequence[dict]) -> pd.DataFrame:
    """One row per (variant, IPC, seed): the class-mean W_1 of its latents to held-out real latents (both metrics);
    variant "real" is a random real subset of the same size (the reference a real sample of that size reaches)."""
    out = []
    for cell in cells:
        for variant, d in cell["ot"].items():
            out.append({"variant": variant, "ipc": cell["ipc"], "seed": cell["seed"],
                        **{k: d[k]["mean"] for k in OT_METRICS if k in d}})
    return pd.DataFrame(out)


def entropy_table(cells: Sequence[dict]) -> pd.DataFrame:
    """Soft-label entropy against ensemble size per (IPC, seed), with the size LIA picks marked (``lia``)."""
    out = []
    for cell in cells:
        for r in cell["entropy"]:
            out.append({"ipc": cell["ipc"], "seed": cell["seed"], **r,
                        "lia": r["size"] == cell["ensemble"].get("lia")})
    return pd.DataFrame(out)


def timing_table(cells: Sequence[dict]) -> pd.DataFrame:
    """Seconds per stage: one-off training of the generative model and the teachers (as recorded when they were
    trained), then the median over seeds, per IPC, of sampling per variant, relabelling, OT distances and the
    student of each row."""
    out = []
    first = cells[0] if cells else {}
    if first:
        out.append({"stage": "generative model training (once)", "ipc": "all", "seconds": first["generative_train_s"]})
        out.append({"stage": "teacher ensemble training (once)", "ipc": "all", "seconds": first["teachers_train_s"]})
    per: dict[tuple[str, int], list[float]] = {}
    for cell in cells:
        for name, sec in cell["timings"].items():
            if name in ("generative_model", "teachers"):
                continue
            label = name.replace("sampling_", "sampling: ").replace("student_", "student: ")
            per.setdefault((label, cell["ipc"]), []).append(sec)
    for (label, ipc), secs in per.items():
        out.append({"stage": label, "ipc": ipc, "seconds": float(pd.Series(secs).median())})
    return pd.DataFrame(out)


# ---- the same student for other synthetic sets ----------------------------------------------------------------

def student_accuracy(p: Any, images: torch.Tensor, labels: torch.Tensor, test: Any, seed: int, *, device=None,
                     progress: bool = False) -> float:
    """Test accuracy of the pipeline's hard-label student (``p["nb05"]["pipeline"]["student"]``, run 0, seed
    ``seed * 1000``) trained on ``images``/``labels``, on the same test subset as the pipeline's cell ``seed``."""
    from ..evaluate import test_accuracy
    prof = pipeline_profile(p)
    st = dict(prof["student"])
    st.pop("runs")
    device = torch.device(device) if device is not None else default_device()
    net, _ = train_student(images.to(device), labels.to(device), None, num_classes=int(test.num_classes),
                           seed=int(seed) * 1000, device=device, progress=progress, **st)
    sub = test_subset(test, prof["eval"]["max_test"], seed).to(device)
    acc, _ = test_accuracy(net, sub, batch_size=prof["eval"]["batch_size"], amp=prof["eval"]["amp"])
    return float(acc)


def same_student_baselines(p: Any, train: Any, test: Any, dm_runs: pd.DataFrame | None = None,
                           ipcs: Iterable[int] | None = None, seeds: Iterable[int] | None = None, *,
                           device=None) -> pd.DataFrame:
    """Random real subsets (and the DM synthetic sets in ``dm_runs``, a ``geodd.experiments.run_grid`` frame) evaluated
    by the generated sets' student protocol; cached. Columns ``method``, ``ipc``, ``seed``, ``acc`` (%)."""
    from ..distill import SynSet
    from ..evaluate import random_subset
    cfg = settings(p)
    prof = pipeline_profile(cfg)
    base = {"format": STUDY_FORMAT, "student": prof["student"], "eval": prof["eval"],
            "test": [test.name, data_fingerprint(test.images, test.labels)]}
    out = []
    for ipc in (cfg["ipcs"] if ipcs is None else ipcs):
        for seed in (cfg["seeds"] if seeds is None else seeds):
            params = {**base, "what": "random", "train": [train.name, data_fingerprint(train.images, train.labels)],
                      "ipc": int(ipc), "seed": int(seed)}

            def rand(ipc=ipc, seed=seed):
                x, y = random_subset(train, ipc, seed=seed)
                return {"acc": student_accuracy(cfg, x, y, test, seed, device=device)}

            out.append({"method": "Random real (same student)", "ipc": ipc, "seed": seed,
                        "acc": 100 * memo("nb05-student", params, rand)["acc"]})
    if dm_runs is not None:
        for r in dm_runs.itertuples():
            params = {**base, "what": "synset", "run": Path(r.run_dir).name, "seed": int(r.seed)}

            def dm(run_dir=r.run_dir, seed=int(r.seed)):
                x, y = SynSet.load(Path(run_dir) / "synset.pt").training_set()
                return {"acc": student_accuracy(cfg, x, y, test, seed, device=device)}

            out.append({"method": f"{r.method} (same student)", "ipc": int(r.ipc), "seed": int(r.seed),
                        "acc": 100 * memo("nb05-student", params, dm)["acc"]})
    return pd.DataFrame(out)


# ---- the 2-D toy --------------------------------------------------------------------------------------------------

def toy_mixture(toy: dict[str, Any]):
    """The ring mixture of the toy settings (``modes``, ``radius``, ``std``, optional ``weights``)."""
    return ring_mixture(int(toy["modes"]), radius=float(toy["radius"]), std=float(toy["std"]),
                        weights=toy.get("weights"))


def toy_real(toy: dict[str, Any], seed: int) -> torch.Tensor:
    """The "real batch" the OT guidance sees: ``toy["real"]`` mixture points drawn with ``seed``."""
    real, _ = toy_mixture(toy).sample(int(toy["real"]), torch.Generator().manual_seed(10_000 + int(seed)))
    return real


def toy_pair(toy: dict[str, Any], n: int, seed: int = 0, ot_weight: float | None = None):
    """(real batch, plain DDIM result, OT-guided result) for ``n`` samples: the toy's scatter figure."""
    mix, real = toy_mixture(toy), toy_real(toy, seed)
    kw = dict(real=real, steps=int(toy["steps"]), seed=seed, ot_eps=float(toy["ot_eps"]))
    weight = float(toy["ot_weight"]) if ot_weight is None else float(ot_weight)
    return real, sample_toy(mix, n, **kw), sample_toy(mix, n, ot_weight=weight, **kw)


def toy_grid(toy: dict[str, Any], ns: Sequence[int], weights: Sequence[float], seeds: Sequence[int]) -> pd.DataFrame:
    """Modes covered and W_1 (to a fresh mixture sample) for every (n, OT weight beta_1, seed); weight 0 is
    plain DDIM. Cached with ``memo``."""
    params = {"format": STUDY_FORMAT, "toy": toy, "ns": list(ns), "weights": list(weights), "seeds": list(seeds)}

    def compute():
        mix, rows = toy_mixture(toy), []
        for seed in seeds:
            real = toy_real(toy, seed)
            for n in ns:
                for w in weights:
                    r = sample_toy(mix, int(n), real=real, ot_weight=float(w), ot_eps=float(toy["ot_eps"]),
                                   steps=int(toy["steps"]), seed=int(seed))
                    rows.append({"n": int(n), "ot_weight": float(w), "seed": int(seed),
                                 "modes_covered": r.modes_covered, "w1": r.w1})
        return rows

    return pd.DataFrame(memo("nb05-toy", params, compute))


__all__ = ["STUDY_FORMAT", "SETS_FORMAT", "CUMULATIVE", "LEAVE_ONE_OUT", "METHOD_NAMES", "CLAIMS", "OT_METRICS",
           "settings", "cache_dir", "pipeline_profile", "cell_params", "held_out_latents", "latent_ot",
           "latent_ot_table", "run_cell", "run_cells", "generated_sets", "accuracy_table", "ablation_rows",
           "paired_deltas", "claim_verdicts", "ot_distance_table", "entropy_table", "timing_table", "student_accuracy",
           "same_student_baselines", "toy_mixture", "toy_real", "toy_pair", "toy_grid"]
