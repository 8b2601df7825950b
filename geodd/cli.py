"""Command line: ``python -m geodd distill|evaluate|info``.

Bad input (unknown dataset, method or architecture; IPC larger than a class; a number out of range; an unknown
or absent device; an ``--out`` that cannot be written; a corrupt or foreign synset file; a broken record;
missing data offline) prints one line, ``geodd: error: ...``, and exits 2, with nothing written. Argument
syntax errors are one line too. The checks are the library's (``DistillConfig.check``,
``geodd.evaluate.check_settings``/``check_set``, ``geodd.resolve_device``, ``geodd.io.check_output_dir``).

Run folders: ``distill`` into a folder that holds the same finished run prints "already done" and keeps it
(and its evaluations); another configuration's run or checkpoint, or foreign files, are refused unless
``--overwrite``; a second process on the same folder is refused by its lock (``geodd.io.RunLock``).
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
    d.add_argument("--method", default="dm", help="dm, hdd, sdd, csdm, geodm")
    d.add_argument("--ipc", type=int, required=True, help="images per class")
    d.add_argument("--iterations", type=int, required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, required=True, help="run directory")
    d.add_argument("--schedule", default="dm", help="feature schedule: dm (fresh random nets) or idm")
    d.add_argument("--keep", type=float, default=1.0, help="HDD pruning: fraction of real data kept per class")
    d.add_argument("--imf", type=float, default=None, help="imbalance factor of a long-tailed dataset")
    d.add_argument("--batch-real", type=int, default=256)
    d.add_argument("--lr-img", type=float, default=1.0)
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

    sub.add_parser("info", help="versions, device, precision and where the datasets are found")
    return ap


def _cmd_distill(args) -> int:
    from .distill import DistillConfig, distill, finished_run
    from . import resolve_device
    from .io import check_output_dir
    cfg = DistillConfig(dataset=args.dataset, method=args.method, ipc=args.ipc, iterations=args.iterations,
                        seed=args.seed, imf=args.imf, train_per_class=args.train_per_class,
                        batch_real=args.batch_real, lr_img=args.lr_img, init=args.init, dsa=not args.no_dsa,
                        schedule=args.schedule, keep=args.keep, amp=args.amp, inner_steps=args.inner_steps,
                        checkpoint_every=args.checkpoint_every, matcher=dict(args.option), idm=dict(args.idm),
                        width=args.width)
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


def main(argv: list[str] | None = None) -> int:
    import warnings
    from .precision import PrecisionWarning
    warnings.simplefilter("default", PrecisionWarning)
    warnings.formatwarning = lambda message, *args, **kwargs: f"{message}\n"
    args = build_parser().parse_args(argv)
    from .distill import NonFiniteLossError
    try:
        return {"distill": _cmd_distill, "evaluate": _cmd_evaluate, "info": _cmd_info}[args.command](args)
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
