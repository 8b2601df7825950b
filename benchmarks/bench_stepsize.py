"""The step-size rule (``geodd.stepsize``: equal first steps with DM) against its alternatives, on a validation split.

For each method without a published image learning rate (SDD, GeoDM) and each IPC, the rule's rate is compared
with (a) DM's rate 1.0 used as it is (no calibration) and (b) the rule's rate times 1/4 and times 4 (a coarse
tuning grid around it). Every arm distils on the training set minus a held-out validation split
(``geodd.data.validation_split``, 100 images per class) and is scored on that split, never on the test set, with
the ``cpu`` profile's sizes and evaluation. All arms of a seed are paired (same networks, batches, augmentations:
``geodd.streams``), and each alternative is compared with the rule by ``geodd.stats.paired_comparison``
(two-sided). If no alternative is better with a CI that excludes 0, tuning on the validation split would not have
beaten the rule at this budget.

    python benchmarks/bench_stepsize.py run --seeds 0 1 2      # cached in the run store; resumable
    python benchmarks/bench_stepsize.py table                  # markdown into benchmarks/README.md

Results: ``results/stepsize.jsonl`` (one row per method, IPC, arm and seed).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from _engine import machine, machine_line, write_section
from geodd import methods, profiles, stepsize
from geodd.data import validation_split
from geodd.runs import cached_distill, cached_evaluate
from geodd.stats import compare_table, format_table

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "stepsize.jsonl"
VARIANTS = ("SDD", "GeoDM")
VALIDATION_PER_CLASS = 100
ARMS = {"rule": None, "DM's rate (1.0)": 1.0, "rule x 1/4": 0.25, "rule x 4": 4.0}


def split(p):
    """(training part, validation part) of the profile's training set."""
    return validation_split(p.train_data(), VALIDATION_PER_CLASS, seed=0)


def cmd_run(args) -> None:
    p = profiles.get("cpu")
    train, val = split(p)
    done = set()
    if OUT.exists():
        done = {(r["variant"], r["ipc"], r["arm"], r["seed"]) for r in map(json.loads, OUT.read_text().splitlines())}
    for name in args.variants:
        for ipc in args.ipcs:
            rule = stepsize.image_lr(name, p, train, ipc)
            for arm, factor in ARMS.items():
                lr = rule if factor is None else (factor if arm.startswith("DM") else rule * factor)
                for seed in args.seeds:
                    if (name, ipc, arm, seed) in done:
                        continue
                    cfg = methods.config(name, p, ipc=ipc, seed=seed, dataset=train.name, lr_img=lr)
                    _, record, run_dir = cached_distill(cfg, train=train, progress=args.progress)
                    ev = cached_evaluate(run_dir, val, seed=seed, progress=False, **p.eval_kwargs())
                    row = {"variant": name, "ipc": ipc, "arm": arm, "lr_img": lr, "rule_lr": rule, "seed": seed,
                           "acc": ev["mean"], "iterations": cfg.iterations, "distill_s": record["timings"]["total_s"],
                           "eval": {"epochs": p.eval_epochs, "runs": p.eval_runs, "amp": p.eval_amp},
                           "threads": torch.get_num_threads()}
                    with OUT.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)


def cmd_table(args) -> None:
    rows = pd.DataFrame([json.loads(x) for x in OUT.read_text().splitlines()])
    parts = []
    for name, frame in rows.groupby("variant", sort=False):
        pairs = [(arm, "rule", "two-sided") for arm in ARMS if arm != "rule"]
        t = compare_table(frame, by=["ipc"], score="acc", pair_on="seed", pairs=pairs, label="arm")
        t.insert(0, "variant", name)
        parts.append(t)
    cmp = format_table(pd.concat(parts, ignore_index=True))
    means = rows.groupby(["variant", "ipc", "arm"], sort=False).agg(
        lr_img=("lr_img", "first"), acc=("acc", lambda s: f"{100 * s.mean():.2f} ± {100 * s.std(ddof=1):.2f}"),
        seeds=("seed", "count")).reset_index()
    p = profiles.get("cpu")
    text = "\n".join([
        "## Step sizes", "",
        f"`python benchmarks/bench_stepsize.py run && python benchmarks/bench_stepsize.py table`. Machine: "
        f"{machine_line(machine())}. The `cpu` profile's sizes ({p.iterations} image steps, a network every "
        f"{p.inner_steps}; evaluation {p.eval_runs} ConvNet x {p.eval_epochs} epochs), Fashion-MNIST minus a "
        f"validation split of {VALIDATION_PER_CLASS} images per class, which scores every arm (validation "
        "accuracy, %; the test set is not used). The rule is `geodd.stepsize` (equal first steps with DM, median "
        "of 3 calibration seeds); each alternative is compared with it by `geodd.stats.paired_comparison` "
        "(two-sided, paired on seed).", "",
        means.to_markdown(index=False), "",
        cmp.to_markdown(index=False, disable_numparse=True), ""])
    print(text)
    if args.readme:
        write_section(Path(__file__).parent / "README.md", text, "## Step sizes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--variants", nargs="+", default=list(VARIANTS))
    r.add_argument("--ipcs", nargs="+", type=int, default=[1, 10])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--progress", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--no-readme", dest="readme", action="store_false")
    args = ap.parse_args()
    {"run": cmd_run, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
