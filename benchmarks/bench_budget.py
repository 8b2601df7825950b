"""Accuracy at a fixed distillation budget (the figure that matters to CPU users).

Fashion-MNIST, IPC 10, DM. For each engine setting, a short calibration run measures the median seconds per
image step on this machine; the run then gets ``budget / step`` iterations, and the synthetic set is evaluated
with the `cpu` profile's evaluation. Mean +- std over seeds.

    python benchmarks/bench_budget.py --budget-min 15 --seeds 0 1 2 [--settings fp32_b256 bf16_b128_inner4 ...]

Results are appended to benchmarks/results/budget.jsonl (one JSON object per setting and seed).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from geodd import profiles
from geodd.data import load
from geodd.distill import DistillConfig, distill
from geodd.evaluate import evaluate_images

SETTINGS = {
    "fp32_b256": dict(batch_real=256),
    "bf16_b256": dict(batch_real=256, amp="bf16"),
    "bf16_b128": dict(batch_real=128, amp="bf16"),
    "bf16_b128_inner4": dict(batch_real=128, amp="bf16", inner_steps=4),
    "bf16_b256_inner8": dict(batch_real=256, amp="bf16", inner_steps=8),
    "bf16_b64_inner4": dict(batch_real=64, amp="bf16", inner_steps=4),
}


def calibrate(train, setting: dict, steps: int = 8) -> float:
    cfg = DistillConfig(dataset=train.name, ipc=10, iterations=steps, seed=99, **setting)
    _, record = distill(cfg, train=train, progress=False)
    # mean over all steps, so that inner_steps' cheap steps and expensive steps are both counted
    return record["timings"]["total_s"] / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-min", type=float, default=15.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "budget.jsonl")
    args = ap.parse_args()
    p = profiles.get("cpu")
    train, test = load("fashion-mnist", "train"), load("fashion-mnist", "test")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.settings:
        setting = SETTINGS[name]
        step_s = calibrate(train, setting)
        iterations = max(1, int(args.budget_min * 60 / step_s))
        accs = []
        for seed in args.seeds:
            cfg = DistillConfig(dataset="fashion-mnist", ipc=10, iterations=iterations, seed=seed, **setting)
            t0 = time.perf_counter()
            synset, record = distill(cfg, train=train, progress=False)
            wall = time.perf_counter() - t0
            ev = evaluate_images(synset.images, synset.labels, test, seed=seed, progress=False, **p.eval_kwargs())
            accs.append(100 * ev.mean)
            row = {"setting": name, **setting, "budget_min": args.budget_min, "step_s": step_s,
                   "iterations": iterations, "seed": seed, "distill_wall_s": wall, "acc": 100 * ev.mean,
                   "eval": {"epochs": ev.epochs, "runs": len(ev.accs), "amp": p.eval_amp}}
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
        print(f"{name}: {np.mean(accs):.2f} +- {np.std(accs):.2f} % over seeds {args.seeds} "
              f"({iterations} iterations of {step_s:.2f} s)", flush=True)


if __name__ == "__main__":
    main()
