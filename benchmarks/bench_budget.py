"""Accuracy at a fixed distillation budget (the figure that matters to CPU users).

Fashion-MNIST, IPC 10, DM. A budget is wall-clock seconds of distillation on this machine. Three steps:

    # 1. how long one image step takes per setting, on the cores the budget is stated for (2 here)
    python benchmarks/bench_budget.py calibrate --threads 2
    # 2. distil for budget / step_s iterations, keeping snapshots at the fractions of the budget,
    #    and evaluate every snapshot with the `cpu` profile's evaluation
    python benchmarks/bench_budget.py run --budget-min 15 --seeds 0 1 2 --settings fp32_b256 bf16_b128_inner4
    # 3. mean +- std over seeds per setting and budget, as a markdown table
    python benchmarks/bench_budget.py table

Why snapshots: DM's image optimiser has no schedule tied to the run length (constant lr and momentum), so the
images after the first third of a 15-minute run are exactly the images a 5-minute run would return. One run thus
answers every budget up to its own.

Why calibrate separately: the result of a run depends on its iteration count, not on the threads it ran with, so
``run --threads 1`` lets two seeds run side by side on a 2-core machine while the iteration count still says what
the budget buys on 2 cores (calibrated with 2 threads). Thread count changes float summation order only.

Results: ``results/budget_calibration.json`` and ``results/budget.jsonl`` (one JSON object per setting, seed and
budget).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from _engine import machine
from geodd import profiles
from geodd.data import load
from geodd.distill import DistillConfig, distill
from geodd.evaluate import evaluate_images

RESULTS = Path(__file__).parent / "results"
SETTINGS = {
    "fp32_b256": dict(batch_real=256),
    "bf16_b256": dict(batch_real=256, amp="bf16"),
    "bf16_b128": dict(batch_real=128, amp="bf16"),
    "bf16_b128_inner4": dict(batch_real=128, amp="bf16", inner_steps=4),
    "bf16_b256_inner8": dict(batch_real=256, amp="bf16", inner_steps=8),
    "bf16_b64_inner4": dict(batch_real=64, amp="bf16", inner_steps=4),
}


def calibrate(train, setting: dict, rounds: int = 2) -> float:
    """Mean seconds per image step, so that inner_steps' cheap and expensive steps are both counted.
    Each round runs two network draws' worth of steps; the median over rounds is returned."""
    steps = 2 * setting.get("inner_steps", 1) * (4 if setting.get("inner_steps", 1) == 1 else 1)
    per_round = []
    distill(DistillConfig(dataset=train.name, ipc=10, iterations=1, seed=98, **setting), train=train,
            progress=False)  # warm-up
    for r in range(rounds):
        cfg = DistillConfig(dataset=train.name, ipc=10, iterations=steps, seed=99 + r, **setting)
        _, record = distill(cfg, train=train, progress=False)
        per_round.append(record["timings"]["total_s"] / steps)
    return float(np.median(per_round))


def cmd_calibrate(args, train):
    path = RESULTS / "budget_calibration.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    for name in args.settings:
        step_s = calibrate(train, SETTINGS[name])
        data[name] = {"threads": torch.get_num_threads(), "step_s": step_s, "load_avg": os.getloadavg(),
                      "machine": machine(), "torch": torch.__version__,
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}
        print(f"{name}: {step_s:.3f} s / image step with {torch.get_num_threads()} threads", flush=True)
        path.write_text(json.dumps(data, indent=1))


def cmd_run(args, train):
    calib = json.loads((RESULTS / "budget_calibration.json").read_text())
    p = profiles.get("cpu")
    test = load("fashion-mnist", "test")
    for name in args.settings:
        setting, step_s = SETTINGS[name], calib[name]["step_s"]
        iterations = max(1, int(args.budget_min * 60 / step_s))
        marks = {max(1, int(round(f * iterations))): f for f in args.fractions}
        for seed in args.seeds:
            cfg = DistillConfig(dataset="fashion-mnist", ipc=10, iterations=iterations, seed=seed,
                                snapshot_at=tuple(sorted(marks)), **setting)
            t0 = time.perf_counter()
            synset, _ = distill(cfg, train=train, progress=args.progress)
            wall = time.perf_counter() - t0
            for it, frac in sorted(marks.items()):
                images = synset.snapshots.get(it, synset.images)  # the last mark is the run's end
                ev = evaluate_images(images, synset.labels, test, seed=seed, progress=False, **p.eval_kwargs())
                row = {"setting": name, **setting, "budget_min": args.budget_min * frac, "step_s": step_s,
                       "calibrated_threads": calib[name]["threads"], "run_threads": torch.get_num_threads(),
                       "iterations": it, "seed": seed, "distill_wall_s": wall * it / iterations,
                       "acc": 100 * ev.mean, "eval": {"epochs": ev.epochs, "runs": len(ev.accs), "amp": p.eval_amp}}
                with (RESULTS / "budget.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def table(rows: list[dict]) -> str:
    """Markdown: one line per setting and budget, mean +- std over the seeds present."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["setting"], round(r["budget_min"], 2))].append(r)
    lines = ["| setting | budget (min) | image steps | s / step (calibrated) | seeds | accuracy % (mean +- std) |",
             "|---|---|---|---|---|---|"]
    for (name, budget), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accs = np.array([r["acc"] for r in rs])
        lines.append(f"| {name} | {budget:g} | {rs[0]['iterations']} | {rs[0]['step_s']:.2f} | "
                     f"{len(rs)} | {accs.mean():.2f} +- {accs.std():.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["calibrate", "run", "table"])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--budget-min", type=float, default=15.0)
    ap.add_argument("--fractions", type=float, nargs="+", default=[1 / 3, 2 / 3, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "table":
        rows = [json.loads(line) for line in (RESULTS / "budget.jsonl").read_text().splitlines() if line.strip()]
        print(table(rows))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    train = load("fashion-mnist", "train")
    (cmd_calibrate if args.command == "calibrate" else cmd_run)(args, train)


if __name__ == "__main__":
    main()
