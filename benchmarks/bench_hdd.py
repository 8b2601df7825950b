"""Cost of an HDD iteration against a DM iteration at the same config, and IDM's pool-training cost.

Config: Fashion-MNIST, IPC 10, ConvNet-128, DSA, same seed; ``--batch-real`` (128 or 256) and ``--amp``.
Target: an HDD iteration costs at most 1.15x a DM iteration.

    python benchmarks/bench_hdd.py [--iters 4] [--repeats 3] [--batch-real 128] [--amp bf16]
                                   [--out benchmarks/results/hdd_speed.json] [--readme benchmarks/README.md]

1. engine: ``distill`` runs of ``--iters + 1`` iterations for dm, hdd (default options: rescale) and hdd with the
   release settings, interleaved ``--repeats`` times (so drifting load on a shared machine hits all alike);
   each run reports the engine's ``median_iter_s``; the table gives the median over repeats and the ratio to dm.
2. loss only: forward + backward of the per-class loss summed over 10 classes on fixed features
   (real [batch_real, 2048] detached, syn [10, 2048]), dm_loss vs hdd_loss, median over ``--loss-reps``; the
   extra loss time gives an iteration ratio that the load scatters less than the engine's; ``fused_hdd_loss``
   (a proposal for ``matchers.hdd``, checked equal to ``hdd_loss``) is timed beside it.
3. IDM: ``schedule="idm"`` runs (dm and hdd matchers) with a small pool (``--pool-steps`` SGD steps on
   ``--pool-batch`` images for 2 nets per iteration); reports ``timings["pool_train_s"]`` per iteration and
   its share of the run, separately from the matching cost.
``--readme`` replaces (or appends) the ``## HDD`` section of that Markdown file, leaving other sections alone;
``--from-json`` rewrites that section from a saved result without measuring again.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from _engine import engine_medians, report
from geodd.data import load
from geodd.distill import DistillConfig, distill
from geodd.matchers import dm_loss, hdd_loss
from geodd.geometry import CENTROID_EPS, NORM_EPS, RELEASE_EXP_MAX_THETA, SAFE_EXP_MAX_THETA, lorentz_distance
from geodd.matchers.hdd import RELEASE_SETTINGS

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.15
METHODS = {"dm": ("dm", {}), "hdd": ("hdd", {}), "hdd-release": ("hdd", dict(RELEASE_SETTINGS["dm"]))}


def _fused_centroid(v: torch.Tensor, k: float, factor: torch.Tensor | float, max_theta: float) -> torch.Tensor:
    """Closed-form centroid of the exp-lifted ``factor * v`` straight from the ambient mean:
    ``m = (sqrt(k) mean_i cosh t_i, mean_i sqrt(k) sinh(t_i) / |v_i| * v_i)`` with ``t_i = min(factor |v_i| /
    sqrt(k), max_theta)``: one norm and one matrix-vector product instead of pad / expmap0 / projx per sample."""
    v = v.to(torch.float64)
    n = v.norm(dim=-1).clamp_min(NORM_EPS)
    t = (factor * n / math.sqrt(k)).clamp_max(max_theta)
    m = torch.cat(((math.sqrt(k) * torch.cosh(t)).mean().reshape(1), (math.sqrt(k) * torch.sinh(t) / n) @ v / len(v)))
    return math.sqrt(k) * m / (m[0] ** 2 - m[1:].pow(2).sum()).abs().clamp_min(CENTROID_EPS).sqrt()


def fused_hdd_loss(real: torch.Tensor, syn: torch.Tensor, k: float = 1.0, scale: float = 20.0, *,
                   norm: str = "rescale", target_radius: float = 2.0) -> torch.Tensor:
    """A proposal for ``matchers.hdd`` (exp lift only), timed here beside ``hdd_loss`` and checked against it:
    the same loss from ``_fused_centroid`` (real branch without autograd)."""
    if norm == "release":
        factor, max_theta = 1.0, RELEASE_EXP_MAX_THETA
    else:
        factor = math.sqrt(k) * target_radius / real.detach().to(torch.float64).norm(dim=-1).mean()
        max_theta = SAFE_EXP_MAX_THETA
    with torch.no_grad():
        c_real = _fused_centroid(real, k, factor, max_theta)
    return scale * lorentz_distance(c_real, _fused_centroid(syn, k, factor, max_theta), k)


def loss_medians(batch_real: int, reps: int, dim: int = 2048, classes: int = 10) -> dict[str, float]:
    """Median ms of forward + backward of the loss summed over classes, on ConvNet-like features (norm ~25);
    also the largest relative difference between ``fused_hdd_loss`` and ``hdd_loss`` (loss and gradient)."""
    gen = torch.Generator().manual_seed(0)
    real = [torch.rand(batch_real, dim, generator=gen) * 0.95 for _ in range(classes)]
    syn0 = [torch.rand(10, dim, generator=gen) * 0.95 for _ in range(classes)]
    release = dict(RELEASE_SETTINGS["dm"])
    fns = {"dm": dm_loss, "hdd": hdd_loss, "hdd-release": lambda r, s: hdd_loss(r, s, **release),
           "hdd-fused (proposal)": fused_hdd_loss,
           "hdd-release-fused (proposal)": lambda r, s: fused_hdd_loss(r, s, norm="release")}
    out = {}
    worst = 0.0
    for ref, new in (("hdd", "hdd-fused (proposal)"), ("hdd-release", "hdd-release-fused (proposal)")):
        grads = []
        for name in (ref, new):
            syn = [x.clone().requires_grad_(True) for x in syn0]
            loss = sum(fns[name](r, x) for r, x in zip(real, syn))
            loss.backward()
            grads.append((float(loss.detach()), torch.cat([x.grad.flatten() for x in syn])))
        (la, ga), (lb, gb) = grads
        worst = max(worst, abs(la - lb) / abs(la), float((ga - gb).norm() / ga.norm()))
    out["fused_max_rel_diff"] = worst
    for name, fn in fns.items():
        times = []
        for _ in range(reps + 1):
            syn = [s.clone().requires_grad_(True) for s in syn0]
            t0 = time.perf_counter()
            loss = sum(fn(r, s) for r, s in zip(real, syn))
            loss.backward()
            times.append(time.perf_counter() - t0)
        out[name] = 1000 * statistics.median(times[1:])
    return out


def idm_costs(train, *, iters: int, batch_real: int, amp: str | None, pool_steps: int, pool_batch: int) -> dict:
    """IDM runs (dm and hdd matchers): median seconds per iteration and pool-training seconds per iteration."""
    out = {}
    for name in ("dm", "hdd"):
        cfg = DistillConfig(dataset=train.name, method=name, ipc=10, iterations=iters + 1, seed=0,
                            batch_real=batch_real, amp=amp, schedule="idm",
                            idm={"model_train_steps": pool_steps, "train_batch": pool_batch})
        _, record = distill(cfg, train=train, progress=False)
        t = record["timings"]
        out[name] = {"median_iter_s": t["median_iter_s"], "pool_train_s": t["pool_train_s"], "total_s": t["total_s"],
                     "pool_train_s_per_iter": t["pool_train_s"] / t["iterations_run"],
                     "pool_share": t["pool_train_s"] / t["total_s"]}
        print(f"  idm+{name}: {t['median_iter_s']:.3f} s/iter, pool {out[name]['pool_train_s_per_iter']:.3f} s/iter "
              f"({100 * out[name]['pool_share']:.0f}% of the run)", flush=True)
    return out


def markdown(res: dict) -> str:
    """The ``## HDD`` section of benchmarks/README.md."""
    e, l, i = res["engine"], res["loss_ms"], res["idm"]
    lines = ["## HDD", "",
             f"`python benchmarks/bench_hdd.py --iters {res['iters']} --repeats {res['repeats']} "
             f"--batch-real {res['batch_real']} --amp {res['amp'] or 'none'}` — Fashion-MNIST, IPC 10, ConvNet-128, "
             f"DSA, seed 0; torch threads: {res['threads']}, {res['machine']}; load average "
             f"{res['load_before'][0]:.1f} before, {res['load_after'][0]:.1f} after (2 cores; a load above 2 means "
             "other jobs shared the cores, which inflates and scatters the times).", "",
             f"Target: an HDD iteration costs at most {TARGET_RATIO}x a DM iteration.", "",
             "| method | median s / iteration (median over repeats) | all repeats | ratio to dm |",
             "|---|---|---|---|"]
    for name in METHODS:
        lines.append(f"| {name} | {e['median'][name]:.3f} | {', '.join(f'{t:.3f}' for t in e['runs'][name])} | "
                     f"{e['ratio'][name]:.3f} |")
    d = res["derived_ratio"]
    worst = max(d["hdd"], d["hdd-release"])
    lines += ["", f"Engine ratio (medians): hdd / dm = {e['ratio']['hdd']:.3f}, release settings "
              f"{e['ratio']['hdd-release']:.3f}. Implied by the loss overhead (below): {d['hdd']:.3f} and "
              f"{d['hdd-release']:.3f}; target {'met' if worst <= TARGET_RATIO else 'NOT met'} at this config by that "
              f"measure (with the fused proposal: {max(d['hdd-fused (proposal)'], d['hdd-release-fused (proposal)']):.3f}).",
              "",
              f"Loss only (forward + backward summed over 10 classes, real [{res['batch_real']}, 2048], "
              f"syn [10, 2048], float64 hyperbolic maths), median ms, and the ratio it implies for one iteration "
              "(dm's median iteration + the extra loss time, over dm's; less sensitive to the machine's load than the "
              "engine ratio, since both terms slow down together):", "",
              "| loss | ms | implied iteration ratio |", "|---|---|---|"]
    for name, ms in l.items():
        if name == "fused_max_rel_diff":
            continue
        ratio = res["derived_ratio"].get(name, 1.0)
        lines.append(f"| {name} | {ms:.2f} | {ratio:.3f} |")
    lines += ["", "The fused rows compute the same closed-form centroid from the ambient mean directly "
              "(one norm and one matrix-vector product per class instead of pad / expmap0 / projx per sample); "
              f"largest relative difference to `hdd_loss` in loss or gradient: {l['fused_max_rel_diff']:.1e}. "
              "They are a proposal for `geodd/matchers/hdd.py`, measured here only.", "",
              f"IDM pool training (reported separately; `timings[\"pool_train_s\"]`; 2 nets x {res['pool_steps']} "
              f"SGD steps x {res['pool_batch']} images per iteration):", "",
              "| run | median s / iteration | pool s / iteration | pool share of the run |", "|---|---|---|---|"]
    for name, t in i.items():
        lines.append(f"| IDM + {name} | {t['median_iter_s']:.3f} | {t['pool_train_s_per_iter']:.3f} | "
                     f"{100 * t['pool_share']:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-real", type=int, default=128)
    ap.add_argument("--amp", default="bf16", help="bf16 or none")
    ap.add_argument("--loss-reps", type=int, default=20)
    ap.add_argument("--pool-steps", type=int, default=2)
    ap.add_argument("--pool-batch", type=int, default=64)
    ap.add_argument("--idm-iters", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "hdd_speed.json")
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="only rewrite the section from a saved result")
    args = ap.parse_args()
    if args.from_json is not None:
        report(markdown(json.loads(args.from_json.read_text())), args.readme, "## HDD")
        return
    amp = None if args.amp in ("none", "fp32") else args.amp
    train = load("fashion-mnist", "train")
    res = {"iters": args.iters, "repeats": args.repeats, "batch_real": args.batch_real, "amp": amp,
           "threads": torch.get_num_threads(), "machine": f"{platform.processor() or platform.machine()}",
           "torch": torch.__version__, "pool_steps": args.pool_steps, "pool_batch": args.pool_batch,
           "load_before": os.getloadavg()}
    print("engine (dm / hdd / hdd-release, interleaved):", flush=True)
    runs = engine_medians(train, METHODS, iters=args.iters, repeats=args.repeats, batch_real=args.batch_real, amp=amp)
    med = {k: statistics.median(v) for k, v in runs.items()}
    res["engine"] = {"runs": runs, "median": med, "ratio": {k: med[k] / med["dm"] for k in med}}
    res["loss_ms"] = loss_medians(args.batch_real, args.loss_reps)
    # robust to load: the DM iteration plus the deterministic extra cost of the HDD loss
    extra = {k: (res["loss_ms"][k] - res["loss_ms"]["dm"]) / 1000 for k in res["loss_ms"] if k.startswith("hdd")}
    res["derived_ratio"] = {k: (med["dm"] + v) / med["dm"] for k, v in extra.items()}
    print("loss only (ms):", {k: round(v, 4) for k, v in res["loss_ms"].items()}, flush=True)
    print("IDM:", flush=True)
    res["idm"] = idm_costs(train, iters=args.idm_iters, batch_real=args.batch_real, amp=amp,
                           pool_steps=args.pool_steps, pool_batch=args.pool_batch)
    res["load_after"] = os.getloadavg()
    report(markdown(res), args.readme, "## HDD", results=res, out=args.out)


if __name__ == "__main__":
    main()
