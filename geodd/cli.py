"""Command line: ``python -m geodd distill|evaluate|plan|sweep|info``.

Bad input (unknown dataset, method or architecture; IPC larger than a class; a number out of range; an unknown
or absent device; an ``--out`` that cannot be written; a corrupt or foreign synset file; a broken record;
missing data offline) prints one line, ``geodd: error: ...``, and exits 2, with nothing written. Argument
syntax errors are one line too. The checks are the library's (``DistillConfig.check``,
``geodd.evaluate.check_settings``/``check_set``, ``geodd.resolve_device``, ``geodd.io.check_output_dir``).

Run folders: ``distill`` into a folder that holds the same finished run prints "already done" and keeps it
(and its evaluations); another configuration's run or checkpoint, or foreign files, are refused unless
``--overwrite``; a second process on the same folder is refused by its lock (``geodd.io.RunLock``).
``distill --preset NAME`` takes a registry variant's settings (``geodd.methods``); flags given win.

Paper scale: ``plan`` prints what a grid costs (``geodd.plan``), ``sweep`` runs a grid on Ray (``geodd.sweep``;
exit status 1 when a run failed, its error in the summary).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from . import GeoddError, __version__


def _parse_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"matcher option {text!r} must look like key=value")
    key, value = text.split("=", 1)
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


class _Parser(argparse.ArgumentParser):
    """argparse with geodd's one-line errors (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"geodd: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m geodd", description="geometry-aware dataset distillation")
    ap.add_argument("--version", action="version", version=f"geodd {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("distill", help="distil a dataset into a synthetic set (writes OUT/synset.pt, record.json)")
    d.add_argument("--dataset", required=True, help="mnist, fashion-mnist, svhn, cifar10, cifar100, digits, "
                                                    "fashion-mnist-lt, cifar10-lt, cifar100-lt")
    d.add_argument("--preset", default=None,
                   help="a registry variant's full settings (method, schedule, lr_img, matcher and IDM options), "
                        "e.g. 'IDM+HDD'; the flags you give override its values")
    d.add_argument("--method", default=None, help="dm, hdd, sdd, csdm, geodm (default dm)")
    d.add_argument("--ipc", type=int, required=True, help="images per class")
    d.add_argument("--iterations", type=int, required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, required=True, help="run directory")
    d.add_argument("--schedule", default=None, help="feature schedule: dm (fresh random nets) or idm (default dm)")
    d.add_argument("--keep", type=float, default=1.0, help="HDD pruning: fraction of real data kept per class")
    d.add_argument("--imf", type=float, default=None, help="imbalance factor of a long-tailed dataset")
    d.add_argument("--batch-real", type=int, default=256)
    d.add_argument("--lr-img", type=float, default=None, help="image learning rate (default 1.0)")
    d.add_argument("--init", default="real", choices=["real", "noise"])
    d.add_argument("--no-dsa", action="store_true", help="switch off differentiable siamese augmentation")
    d.add_argument("--amp", default="fp32", choices=["auto", "bf16", "fp32"],
                   help="precision: fp32 (the protocol), bf16 autocast, or auto (bf16 where the device computes it "
                        "natively)")
    d.add_argument("--inner-steps", type=int, default=1, help="image steps per sampled network")
    d.add_argument("--train-per-class", type=int, default=None, help="use a seeded per-class subset")
    d.add_argument("--checkpoint-every", type=int, default=100)
    d.add_argument("--option", "-o", action="append", type=_parse_option, default=[],
                   help="matcher option key=value (repeatable), e.g. -o k=2.4 -o lam=100")
    d.add_argument("--idm", action="append", type=_parse_option, default=[],
                   help="IDM pool option key=value (repeatable, with --schedule idm), e.g. --idm net_num=10")
    d.add_argument("--width", type=int, default=128, help="ConvNet width (channels per layer)")
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: $GEODD_DEVICE, else auto)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace whatever OUT holds (another configuration's run or checkpoint; evaluations are lost)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="train fresh nets on DIR/synset.pt; adds 'eval' to DIR/record.json")
    e.add_argument("dir", type=Path)
    e.add_argument("--runs", type=int, default=5)
    e.add_argument("--epochs", type=int, default=1000)
    e.add_argument("--arch", default="convnet", help="convnet, mlp, lenet, alexnet, vgg11, resnet18")
    e.add_argument("--amp", default="fp32", choices=["auto", "bf16", "fp32"], help="as for distill")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default=None)
    e.add_argument("--quiet", action="store_true")

    _add_plan_and_sweep(sub)
    sub.add_parser("info", help="versions, device, precision and where the datasets are found")
    return ap


def _tflops(text: str) -> float:
    from .plan import check_tflops
    try:
        return check_tflops(float(text))
    except (ValueError, GeoddError):
        raise argparse.ArgumentTypeError(f"must be a positive number of TFLOP/s, got {text!r}") from None


def _add_plan_and_sweep(sub) -> None:
    """The ``plan`` and ``sweep`` subcommands (``geodd.plan``, ``geodd.sweep``)."""
    from .plan import DEFAULT_TFLOPS
    from .sweep import MAX_RETRIES, MAX_RUNS
    pl = sub.add_parser("plan", help="FLOPs, peak memory and GPU-hours of a grid of runs (e.g. the paper's)")
    pl.add_argument("grid", nargs="?", default=None, help="a grid TOML file or profile:NAME (default: --profile)")
    pl.add_argument("--profile", default=None, help="plan profile:NAME's grid (default paper)")
    pl.add_argument("--tflops", type=_tflops, default=DEFAULT_TFLOPS,
                    help=f"effective throughput per GPU in TFLOP/s (default {DEFAULT_TFLOPS:g})")
    sw = sub.add_parser("sweep", help="distil and evaluate every run of a grid on Ray, into the run store")
    sw.add_argument("grid", help="a grid TOML file (keys: profile, methods, datasets, ipcs, seeds, iterations, "
                                 "epochs, eval_runs) or profile:NAME")
    sw.add_argument("--store", type=Path, default=None, help="run store (default $GEODD_RUNS, else <repo>/runs)")
    sw.add_argument("--address", default=None, help="a Ray cluster, host:port (default $RAY_ADDRESS, else a "
                                                    "local Ray)")
    sw.add_argument("--local-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    sw.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs per run (fractions allowed)")
    sw.add_argument("--gpus-per-run", type=float, default=0.0, help="GPUs per run (fractions allowed, e.g. 0.25)")
    sw.add_argument("--max-retries", type=int, default=MAX_RETRIES, help="retries of a run whose worker died")
    sw.add_argument("--max-runs", type=int, default=MAX_RUNS, help="refuse a larger grid unless --yes")
    sw.add_argument("--yes", action="store_true", help="run a grid larger than --max-runs")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")


def method_settings(preset: str | None, ipc: int, *, method=None, schedule=None, lr_img=None, matcher=(),
                    idm=()) -> dict:
    """``DistillConfig`` fields for ``distill``: the defaults (dm, dm, lr 1), then registry variant ``preset``'s
    settings at ``ipc``, then the values given (``matcher``/``idm`` key by key). An unknown or generative preset,
    or a calibrated rate without ``lr_img``, is a one-line ``GeoddError``.
    Not called in a notebook; used by ``geodd.cli``."""
    from . import methods
    out: dict = {"method": "dm", "schedule": "dm", "lr_img": 1.0, "matcher": {}, "idm": {}}
    if preset is not None:
        choices = [n for n in methods.names() if methods.get(n).schedule != "generative"]
        if preset not in choices:
            raise GeoddError(f"unknown preset {preset!r}; choose one of {', '.join(choices)}")
        out.update(methods.get(preset).overrides(ipc))
        if out["lr_img"] == methods.EQUAL_FIRST_STEP and lr_img is None:
            raise GeoddError(f"{preset}'s image learning rate is calibrated per IPC ({methods.EQUAL_FIRST_STEP}, "
                             "geodd.stepsize); pass --lr-img")
    given = {"method": method, "schedule": schedule, "lr_img": lr_img}
    out.update({k: v for k, v in given.items() if v is not None})
    out["matcher"] = {**out["matcher"], **dict(matcher)}
    out["idm"] = {**out["idm"], **dict(idm)}
    return out


def _cmd_distill(args) -> int:
    from .distill import DistillConfig, distill, finished_run
    from . import resolve_device
    from .io import check_output_dir
    settings = method_settings(args.preset, args.ipc, method=args.method, schedule=args.schedule,
                               lr_img=args.lr_img, matcher=args.option, idm=args.idm)
    cfg = DistillConfig(dataset=args.dataset, ipc=args.ipc, iterations=args.iterations,
                        seed=args.seed, imf=args.imf, train_per_class=args.train_per_class,
                        batch_real=args.batch_real, init=args.init, dsa=not args.no_dsa,
                        keep=args.keep, amp=args.amp, inner_steps=args.inner_steps,
                        checkpoint_every=args.checkpoint_every, width=args.width, **settings)
    if args.preset is not None:
        print(f"preset {args.preset} at IPC {args.ipc}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    device = resolve_device(args.device)
    check_output_dir(args.out)
    if not args.overwrite:
        done = finished_run(cfg, args.out)  # another configuration's finished run is an error here
        if done is not None:
            print(f"already done: {args.out} holds this run ({len(done[0].images)} images, final loss "
                  f"{done[1]['loss'][-1]:.4g}); its evaluations are kept. Pass --overwrite to recompute it")
            return 0
    synset, record = distill(cfg, out=args.out, device=device, overwrite=args.overwrite, progress=not args.quiet)
    t = record["timings"]
    print(f"wrote {args.out / 'synset.pt'} ({len(synset.images)} images) in {t['total_s']:.1f} s; "
          f"final loss {record['loss'][-1]:.4g}")
    return 0


def _cmd_evaluate(args) -> int:
    from .data import load
    from .evaluate import check_settings
    from . import resolve_device
    from .nets import get_network
    from .runs import cached_evaluate, read_record
    from .synset import SynSet
    check_settings(runs=args.runs, epochs=args.epochs, seed=args.seed)
    device = resolve_device(args.device)
    record = read_record(args.dir)
    SynSet.load(args.dir / "synset.pt")  # fail early on a corrupt/foreign file
    get_network(args.arch, 1, 2, (28, 28))  # fail early on an unknown architecture
    dataset = record["config"].get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise GeoddError(f"{args.dir / 'record.json'} names no dataset (config.dataset is {dataset!r})")
    test = load(dataset.removesuffix("-lt"), "test")
    res = cached_evaluate(args.dir, test, arch=args.arch, epochs=args.epochs, runs=args.runs, amp=args.amp,
                          seed=args.seed, device=device, progress=not args.quiet)
    print(f"{args.arch} on {dataset}: {100 * res['mean']:.2f} +- {100 * res['std']:.2f} % "
          f"over {len(res['accs'])} runs ({args.epochs} epochs)")
    return 0


def _cmd_info(args) -> int:
    from .data import DataNotFoundError, load
    from . import resolve_device
    from .io import device_info, library_versions
    from .precision import resolve
    problem = None
    try:
        device = resolve_device()
    except GeoddError as exc:  # a bad $GEODD_DEVICE is reported, not fatal: info is where one looks for it
        device, problem = resolve_device("cpu"), str(exc)
    choice = resolve("auto", device)
    info = {"versions": library_versions(), "device": device_info(device),
            "amp_auto": {"uses": choice.used, "reason": choice.reason}}
    if problem:
        info["device_error"] = problem
    print(json.dumps(info, indent=1))
    for name in ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "svhn"):
        try:
            ds = load(name, "test", download=False)
            print(f"{name:14s} found ({len(ds)} test images)")
        except DataNotFoundError as exc:
            print(f"{name:14s} missing: {str(exc).splitlines()[0]}")
    return 0


def _cmd_plan(args) -> int:
    from .plan import format_plan
    from .sweep import load_grid
    if args.grid is not None and args.profile is not None:
        raise GeoddError("pass a GRID or --profile, not both")
    print(format_plan(load_grid(args.grid or f"profile:{args.profile or 'paper'}"), args.tflops))
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import format_summary, load_grid, run_sweep
    result = run_sweep(load_grid(args.grid), store=args.store, address=args.address, local_cpus=args.local_cpus,
                       cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                       max_retries=args.max_retries, max_runs=args.max_runs, yes=args.yes,
                       progress=not args.quiet)
    print(format_summary(result))
    return 1 if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    import warnings
    from .precision import PrecisionWarning
    warnings.simplefilter("default", PrecisionWarning)
    warnings.formatwarning = lambda message, *args, **kwargs: f"{message}\n"
    args = build_parser().parse_args(argv)
    from .distill import NonFiniteLossError
    try:
        return {"distill": _cmd_distill, "evaluate": _cmd_evaluate, "plan": _cmd_plan, "sweep": _cmd_sweep,
                "info": _cmd_info}[args.command](args)
    except (GeoddError, NonFiniteLossError) as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"geodd: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filled up or the folder became read-only during the run
        print(f"geodd: error: {exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("geodd: interrupted", file=sys.stderr)
        return 130
