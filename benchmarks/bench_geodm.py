"""Cost of a GeoDM iteration against a DM iteration at the same config.

Config: Fashion-MNIST, IPC 10, ConvNet-128, DSA, seed 0, ``inner_steps=1`` (so every iteration samples a network,
embeds the real batch and takes GeoDM's geometry step); ``--batch-real`` and ``--amp``. GeoDM uses the matcher's
defaults (E^64 x H^64 x S^64, DM base, Sinkhorn OT, curvature regulariser). Target: a GeoDM iteration costs at
most 1.5x a DM iteration (engine ``median_iter_s``, medians over repeats).

    python benchmarks/bench_geodm.py [--iters 5] [--repeats 3] [--batch-real 128] [--amp bf16] [--threads 1 2]
                                     [--out benchmarks/results/geodm_speed.json] [--readme benchmarks/README.md]

1. engine: ``distill`` runs of ``--iters + 1`` iterations for dm, geodm, geodm without OT, geodm E only and
   geodm with the SDD base, interleaved ``--repeats`` times (drifting load on a shared machine hits all alike);
   each run gives the engine's ``median_iter_s``; the table shows the median over repeats and the ratio to dm.
2. matcher only: on fixed ConvNet-like features (real [batch_real, 2048] per class, syn [10, 2048]), the
   milliseconds of GeoDM's geometry step (``update_geometry``) and of the image loss (forward + backward summed
   over 10 classes) against ``dm_loss``, medians over ``--loss-reps``: where GeoDM's extra time goes.
Both parts run once per ``--threads`` value (torch intra-op threads). ``--readme`` replaces (or appends) the
``## GeoDM`` section of that Markdown file, leaving other sections alone.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from _engine import engine_medians, report
from geodd.data import load
from geodd.matchers import GeoDMMatcher, dm_loss

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.5
METHODS = {"dm": ("dm", {}), "geodm": ("geodm", {}), "geodm-no-ot": ("geodm", {"lambda_ot": 0.0}),
           "geodm-E": ("geodm", {"factors": "E", "dims": [192]}), "geodm-sdd": ("geodm", {"base": "sdd"})}


def matcher_medians(batch_real: int, reps: int, dim: int = 2048, classes: int = 10) -> dict[str, float]:
    """Median ms of GeoDM's geometry step and of the image loss (forward + backward over classes) vs dm_loss."""
    gen = torch.Generator().manual_seed(0)
    real = [torch.rand(batch_real, dim, generator=gen) * 0.95 for _ in range(classes)]
    syn0 = [torch.rand(10, dim, generator=gen) * 0.95 for _ in range(classes)]
    labels = torch.arange(classes).repeat_interleave(batch_real)
    out = {}

    def loss_ms(fn) -> float:
        times = []
        for _ in range(reps + 1):
            syn = [s.clone().requires_grad_(True) for s in syn0]
            t0 = time.perf_counter()
            loss = sum(fn(r, s, c) for c, (r, s) in enumerate(zip(real, syn)))
            loss.backward()
            times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times[1:])

    out["dm_loss_ms"] = loss_ms(lambda r, s, c: dm_loss(r, s))
    for name, (_, opts) in METHODS.items():
        if name == "dm":
            continue
        m = GeoDMMatcher(**opts)
        m.start_iteration(0, torch.Generator().manual_seed(0), dim, torch.device("cpu"))
        steps = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            m.update_geometry(torch.cat(real), labels)
            steps.append(time.perf_counter() - t0)
        out[f"{name}_geometry_ms"] = 1000 * statistics.median(steps[1:])
        out[f"{name}_loss_ms"] = loss_ms(m)
    return out


def section(results: dict) -> str:
    """The ``## GeoDM`` Markdown section for benchmarks/README.md (one column pair per thread count)."""
    by = results["by_threads"]
    threads = list(by)
    cmd = (f"`python benchmarks/bench_geodm.py --iters {results['iters']} --repeats {results['repeats']} "
           f"--batch-real {results['batch_real']} --amp {results['amp'] or 'none'} --threads {' '.join(threads)}`")
    loads = ", ".join(f"{t} thread(s): {by[t]['loadavg_start']:.1f} -> {by[t]['loadavg_end']:.1f}" for t in threads)
    env = f"OMP_WAIT_POLICY={results['omp_wait_policy']} " if results.get("omp_wait_policy") else ""
    lines = ["## GeoDM", "", f"{env}{cmd} ({results['machine']}, torch {results['torch']}; 1-minute load average "
             f"during the runs, {loads}).", "",
             "Fashion-MNIST, IPC 10, ConvNet-128, DSA, seed 0, `inner_steps=1` (every iteration samples a network, "
             "embeds the real batch and takes GeoDM's geometry step). Engine `median_iter_s`, median over repeats "
             f"(methods interleaved). Target: GeoDM at most {TARGET_RATIO}x DM.", "",
             "| method | " + " | ".join(f"s / iteration ({t} thr) | vs DM" for t in threads) + " |",
             "|---|" + "---|---|" * len(threads)]
    for name in METHODS:
        lines.append(f"| {name} | " + " | ".join(f"{by[t]['engine_median_s'][name]:.3f} | "
                                                 f"{by[t]['ratio_vs_dm'][name]:.2f}x" for t in threads) + " |")
    lines += ["", f"Matcher only (fixed features, real {results['batch_real']} x 2048 per class, 10 classes; median "
                  "ms): geometry step = `update_geometry`, loss = forward + backward summed over classes.", "",
              "| objective | " + " | ".join(f"geometry step, ms ({t} thr) | loss, ms ({t} thr)" for t in threads)
              + " |", "|---|" + "---|---|" * len(threads),
              "| dm | " + " | ".join(f"- | {by[t]['matcher_ms']['dm_loss_ms']:.1f}" for t in threads) + " |"]
    for name in METHODS:
        if name != "dm":
            lines.append(f"| {name} | " + " | ".join(f"{by[t]['matcher_ms'][f'{name}_geometry_ms']:.1f} | "
                                                     f"{by[t]['matcher_ms'][f'{name}_loss_ms']:.1f}"
                                                     for t in threads) + " |")
    lines.append("")
    for t in threads:
        r = by[t]["ratio_vs_dm"]["geodm"]
        lines.append(f"- {t} thread(s): GeoDM / DM = {r:.2f}x, target ({TARGET_RATIO}x) "
                     f"{'met' if r <= TARGET_RATIO else 'NOT met'}.")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-real", type=int, default=128)
    ap.add_argument("--amp", default="bf16", help="bf16 or none")
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    ap.add_argument("--loss-reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "geodm_speed.json")
    ap.add_argument("--readme", type=Path, default=None)
    args = ap.parse_args()
    amp = None if args.amp in ("none", "fp32", "") else args.amp
    train = load("fashion-mnist", "train")
    results = {"batch_real": args.batch_real, "amp": amp, "iters": args.iters, "repeats": args.repeats,
               "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "by_threads": {}}
    for t in args.threads:
        torch.set_num_threads(t)
        res = {"loadavg_start": os.getloadavg()[0]}
        print(f"{t} thread(s); engine (median s/iteration per repeat):")
        runs = engine_medians(train, METHODS, iters=args.iters, repeats=args.repeats, batch_real=args.batch_real, amp=amp)
        res["engine_runs_s"] = runs
        res["engine_median_s"] = {k: statistics.median(v) for k, v in runs.items()}
        res["ratio_vs_dm"] = {k: v / res["engine_median_s"]["dm"] for k, v in res["engine_median_s"].items()}
        res["matcher_ms"] = matcher_medians(args.batch_real, args.loss_reps)
        res["loadavg_end"] = os.getloadavg()[0]
        results["by_threads"][str(t)] = res
        print({k: round(v, 1) for k, v in res["matcher_ms"].items()}, flush=True)
    report(section(results), args.readme, "## GeoDM", results=results, out=args.out)


if __name__ == "__main__":
    main()
