"""Cost of SDD and CSDM iterations relative to DM in geodd's engine.

Target: with 4096 frequencies an SDD or CSDM iteration costs at most 1.2x a DM iteration at the same config
(the engine's ``median_iter_s``; Fashion-MNIST, IPC 10, ConvNet-128, DSA, same seed). Two configs: the
protocol's float32 with batch_real 256, and the ``cpu`` profile's bf16 with batch_real 128.

    python benchmarks/bench_sdd.py [--iters 6] [--rounds 3] [--freqs 4096] [--threads N] [--readme]

Runs are interleaved in ``--rounds`` rounds (rotating the method order), so that a load change on a shared
machine hits every method alike. Reported per (config, method): the median over rounds of the engine's
``median_iter_s``, the median over rounds of the per-iteration process CPU seconds, and the ratio to DM
computed within each round (median over rounds). On a machine shared with other jobs use ``--threads 1``:
with several threads, OpenMP's spin-waiting inflates the CPU time of whichever run waits most. Also times the
matcher alone on fixed features, which is the whole difference between the methods. ``--readme`` writes the
"## SDD / CSDM" section of benchmarks/README.md (replacing only that section, appending it if absent).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from geodd.data import load
from geodd.distill import DistillConfig, distill
from geodd.matchers import build_matcher

HERE = Path(__file__).parent
SECTION = "## SDD / CSDM"
TARGET = 1.2
CONFIGS = {"fp32_b256": dict(batch_real=256, amp=None), "bf16_b128": dict(batch_real=128, amp="bf16")}


def methods(freqs: int) -> dict[str, tuple[str, dict]]:
    return {"dm": ("dm", {}), "sdd": ("sdd", {"num_freqs": freqs}), "csdm": ("csdm", {"num_freqs": freqs})}


def time_engine(train, method: str, matcher: dict, iters: int, **kw) -> dict:
    """One engine run of ``iters + 1`` iterations: its median_iter_s and the median process CPU s/iteration."""
    cfg = DistillConfig(dataset=train.name, method=method, ipc=10, iterations=iters + 1, seed=0, matcher=matcher,
                        **kw)
    stamps = [time.process_time()]
    _, record = distill(cfg, train=train, progress=False, callback=lambda *a: stamps.append(time.process_time()))
    cpu = [b - a for a, b in zip(stamps[1:-1], stamps[2:])]  # skip the first (warm-up) iteration
    return {"median_iter_s": record["timings"]["median_iter_s"], "cpu_s": statistics.median(cpu)}


def matcher_only(freqs: int, batch_real: int, reps: int = 5) -> dict[str, float]:
    """Seconds for forward + backward of the summed per-class loss on fixed float32 features (10 classes,
    ``batch_real`` real and 10 synthetic features of dim 2048 each); median over ``reps``."""
    g = torch.Generator().manual_seed(0)
    real = [torch.randn(batch_real, 2048, generator=g).relu() for _ in range(10)]
    out = {}
    for name, (method, opts) in methods(freqs).items():
        m = build_matcher(method, **opts)
        m.set_class_counts([6000] * 10)
        times = []
        for r in range(reps + 1):
            m.start_iteration(r, torch.Generator().manual_seed(r), 2048, torch.device("cpu"))
            syn = torch.randn(100, 2048, generator=g).relu().requires_grad_(True)
            t0 = time.perf_counter()
            loss = sum(m(real[c], syn[10 * c:10 * c + 10], c) for c in range(10))
            loss.backward()
            if r:
                times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def update_readme(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path`` (from its heading to the next ``## `` heading), or append it;
    other sections are left as they are. Creates the file if absent."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + len(SECTION))
        tail = "" if end < 0 else text[end:]
        text = text[:start] + section.rstrip("\n") + "\n" + tail
    path.write_text(text)


def markdown(results: dict) -> str:
    lines = [SECTION, "",
             f"`python benchmarks/bench_sdd.py --iters {results['iters']} --rounds {results['rounds']} "
             f"--freqs {results['freqs']} --threads {results['threads']}` (Fashion-MNIST, IPC 10, ConvNet-128, DSA, "
             f"inner_steps 1, seed 0; torch threads: {results['threads']}; {results['machine']}). "
             f"Medians over {results['rounds']} interleaved rounds of the engine's `median_iter_s` "
             f"({results['iters']} timed iterations after one warm-up), "
             "the per-iteration process CPU time, and the SDD/DM ratio taken within each round. "
             f"Target: SDD and CSDM with {results['freqs']} frequencies cost at most {TARGET}x DM.", "",
             "| config | method | median_iter_s | CPU s / iter | x DM (wall) | x DM (CPU) | <= 1.2x (wall / CPU) |",
             "|---|---|---|---|---|---|---|"]
    for cname, rows in results["configs"].items():
        for mname, r in rows.items():
            met = "" if mname == "dm" else " / ".join("yes" if r[k] <= TARGET else "no"
                                                      for k in ("ratio_wall", "ratio_cpu"))
            lines.append(f"| {cname} | {mname} | {r['median_iter_s']:.3f} | {r['cpu_s']:.3f} | "
                         f"{r['ratio_wall']:.2f} | {r['ratio_cpu']:.2f} | {met} |")
    mo = results["matcher_only"]
    lines += ["", "The matcher alone (forward + backward of the 10 per-class losses on fixed float32 features, "
              f"batch_real {results['matcher_only_batch_real']}): "
              + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in mo.items()) + ".", ""]
    if results.get("note"):
        lines += [results["note"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--freqs", type=int, default=4096)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--machine", default="2-core CPU, shared with other jobs")
    ap.add_argument("--note", default="")
    ap.add_argument("--readme", action="store_true", help="write the section into benchmarks/README.md")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sdd_speed.json")
    ap.add_argument("--render", type=Path, default=None,
                    help="only re-render the Markdown (and --readme) from a results JSON written earlier")
    args = ap.parse_args()
    if args.render is not None:
        results = json.loads(args.render.read_text())
        if args.note:
            results["note"] = args.note
        md = markdown(results)
        print(md)
        if args.readme:
            update_readme(HERE / "README.md", md)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    train = load("fashion-mnist", "train")
    ms = methods(args.freqs)
    results = {"threads": torch.get_num_threads(), "iters": args.iters, "rounds": args.rounds, "freqs": args.freqs,
               "machine": args.machine, "note": args.note, "configs": {}}
    for cname in args.configs:
        raw: dict[str, list[dict]] = {m: [] for m in ms}
        names = list(ms)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for m in order:
                method, opts = ms[m]
                raw[m].append(time_engine(train, method, opts, args.iters, **CONFIGS[cname]))
                print(f"{cname} round {r} {m}: {raw[m][-1]}", flush=True)
        rows = {}
        for m in names:
            rows[m] = {"median_iter_s": statistics.median(x["median_iter_s"] for x in raw[m]),
                       "cpu_s": statistics.median(x["cpu_s"] for x in raw[m]),
                       "ratio_wall": statistics.median(a["median_iter_s"] / b["median_iter_s"]
                                                       for a, b in zip(raw[m], raw["dm"])),
                       "ratio_cpu": statistics.median(a["cpu_s"] / b["cpu_s"] for a, b in zip(raw[m], raw["dm"])),
                       "rounds": raw[m]}
        results["configs"][cname] = rows
    results["matcher_only_batch_real"] = 256
    results["matcher_only"] = matcher_only(args.freqs, 256)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    md = markdown(results)
    print(md)
    if args.readme:
        update_readme(HERE / "README.md", md)


if __name__ == "__main__":
    main()
