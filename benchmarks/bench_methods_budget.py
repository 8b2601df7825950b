"""Accuracy at a fixed CPU budget for every method of the registry (Fashion-MNIST, 2 cores).

IPC 10 gets 15 minutes of distillation and IPC 1 gets 5; each method runs with its fastest engine settings
(``FAST``: bf16 where the CPU computes it natively, 128 real images per class, a new network every 4 image steps,
the settings ``bench_budget.py`` found fastest for DM), its registry settings (``geodd.methods``, rates from
``geodd.stepsize``), and the ``cpu`` profile's evaluation. Three steps:

    python benchmarks/bench_methods_budget.py calibrate --threads 2            # seconds per image step
    python benchmarks/bench_methods_budget.py run --seeds 0 1 2 --threads 1    # two seeds side by side
    python benchmarks/bench_methods_budget.py table                            # into benchmarks/README.md

As in ``bench_budget.py``: a run's result depends on its iteration count, not on its threads, so the count is
set from the 2-thread calibration and runs may use one thread each. Snapshots at 1/3 and 2/3 of the budget give
the shorter budgets from the same run. Results: ``results/methods_budget_calibration.json`` and
``results/methods_budget.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _engine import machine, machine_line, write_section
from geodd import methods, profiles, stepsize
from geodd.distill import distill
from geodd.evaluate import evaluate_images

RESULTS = Path(__file__).parent / "results"
CALIBRATION = RESULTS / "methods_budget_calibration.json"
OUT = RESULTS / "methods_budget.jsonl"
VARIANTS = ("DM", "IDM", "DM+HDD", "IDM+HDD", "SDD", "GeoDM")
BUDGET_MIN = {10: 15.0, 1: 5.0}
FAST = {"amp": "auto", "batch_real": 128, "inner_steps": 4}
#: published targets for the README's table (DSA at IPC 10, IDM+HDD at IPC 1; geodd.studies.published)
TARGETS = {10: 84.6, 1: 78.5}


def _config(name: str, p, train, ipc: int, seed: int, iterations: int, **extra):
    lr = stepsize.image_lr(name, p, train, ipc)
    return methods.config(name, p, ipc=ipc, seed=seed, dataset=train.name, iterations=iterations,
                          lr_img=lr, **FAST, **extra)


def cmd_calibrate(args, p, train) -> None:
    data = json.loads(CALIBRATION.read_text()) if CALIBRATION.exists() else {}
    for name in args.variants:
        for ipc in args.ipcs:
            steps = 16
            distill(_config(name, p, train, ipc, 98, FAST["inner_steps"]), train=train, progress=False)  # warm-up
            _, rec = distill(_config(name, p, train, ipc, 99, steps), train=train, progress=False)
            data[f"{name}@{ipc}"] = {"step_s": rec["timings"]["total_s"] / steps, "threads": torch.get_num_threads(),
                                     "load_avg": os.getloadavg(), "machine": machine()}
            print(f"{name} IPC {ipc}: {data[f'{name}@{ipc}']['step_s']:.3f} s / image step", flush=True)
            CALIBRATION.write_text(json.dumps(data, indent=1))


def cmd_run(args, p, train) -> None:
    calib = json.loads(CALIBRATION.read_text())
    test = p.eval_data()
    for name in args.variants:
        for ipc in args.ipcs:
            step_s = calib[f"{name}@{ipc}"]["step_s"]
            iterations = max(3, int(BUDGET_MIN[ipc] * 60 / step_s))
            marks = sorted({max(1, round(f * iterations)) for f in (1 / 3, 2 / 3)})
            for seed in args.seeds:
                cfg = _config(name, p, train, ipc, seed, iterations, snapshot_at=tuple(marks))
                t0 = time.perf_counter()
                synset, _ = distill(cfg, train=train, progress=args.progress)
                wall = time.perf_counter() - t0
                for it in [*marks, iterations]:
                    x, y = synset.training_set(synset.snapshots.get(it) if it != iterations else None)
                    ev = evaluate_images(x, y, test, seed=seed, progress=False, **p.eval_kwargs())
                    row = {"variant": name, "ipc": ipc, "seed": seed, "iterations": it, "step_s": step_s,
                           "budget_min": BUDGET_MIN[ipc] * it / iterations, "distill_wall_s": wall * it / iterations,
                           "run_threads": torch.get_num_threads(), "acc": 100 * ev.mean, "lr_img": cfg.lr_img,
                           "eval": {"epochs": ev.epochs, "runs": len(ev.accs), "precision": ev.precision}}
                    with OUT.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)


def cmd_table(args, p, train) -> None:
    rows = pd.DataFrame([json.loads(x) for x in OUT.read_text().splitlines() if x.strip()])
    full = rows[np.isclose(rows.budget_min, rows.ipc.map(BUDGET_MIN))]
    t = full.groupby(["ipc", "variant"], sort=False).agg(
        budget_min=("budget_min", "first"), image_steps=("iterations", "first"), seeds=("seed", "count"),
        acc=("acc", lambda s: f"{s.mean():.2f} ± {s.std(ddof=1) if len(s) > 1 else float('nan'):.2f}"),
    ).reset_index()
    t["target"] = t.ipc.map(TARGETS)
    text = "\n".join([
        "## Accuracy at a fixed CPU budget, every method (`bench_methods_budget.py`)", "",
        f"Machine: {machine_line(machine())}. Fashion-MNIST; each method with `{FAST}`, its registry settings and "
        f"step-size rule; evaluation: the `cpu` profile's ({p.eval_runs} ConvNet x {p.eval_epochs} epochs, test "
        "accuracy %, mean ± std over seeds). Targets: DSA's published 84.6 % at IPC 10 (20k GPU iterations) and "
        "IDM+HDD's 78.5 % at IPC 1.", "", t.to_markdown(index=False), ""])
    print(text)
    write_section(Path(__file__).parent / "README.md", text,
                  "## Accuracy at a fixed CPU budget, every method (`bench_methods_budget.py`)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["calibrate", "run", "table"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--ipcs", nargs="+", type=int, default=[1, 10], choices=sorted(BUDGET_MIN))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = profiles.get("cpu")
    train = p.train_data()
    {"calibrate": cmd_calibrate, "run": cmd_run, "table": cmd_table}[args.command](args, p, train)


if __name__ == "__main__":
    main()
