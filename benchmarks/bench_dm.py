"""Speed of one DM iteration: the plain per-class float32 loop (as the original DM code runs it) against
geodd's engine paths. Standard config: Fashion-MNIST, IPC 10, ConvNet-128, batch_real 256, DSA.

    python benchmarks/bench_dm.py [--iters 5] [--batch-real 256] [--out benchmarks/results/dm_speed.json]

Reports the median seconds per iteration over ``--iters`` timed iterations (after one warm-up) and checks that
the engine's default float32 loss equals the plain loop's loss on the same network, batch and augmentation.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from _engine import machine
from geodd.augment import DSA, strategy_for
from geodd.data import load
from geodd.distill import CPU_CHUNK, DistillConfig, distill, embed_batches
from geodd.matchers import dm_loss
from geodd.nets import make_network


def plain_loop_iteration(train, images, labels, net, dsa, gen, batch_real):
    """The original code's shape: per class, embed the real batch (graph built, then detached) and the
    synthetic images, accumulate the loss; one step (the optimiser step is timed by the caller)."""
    loss = torch.zeros(())
    for c, members in enumerate(train.indices_by_class):
        real = train.images[members[torch.randperm(len(members), generator=gen)[:batch_real]]]
        syn = images[labels == c]
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        real = dsa(real, torch.Generator().manual_seed(seed))
        syn = dsa(syn, torch.Generator().manual_seed(seed))
        loss = loss + dm_loss(net.embed(real).detach(), net.embed(syn))
    return loss


def time_plain(train, iters, batch_real):
    gen = torch.Generator().manual_seed(0)
    idx = torch.cat([m[:10] for m in train.indices_by_class])
    images = train.images[idx].clone().requires_grad_(True)
    labels = train.labels[idx]
    opt = torch.optim.SGD([images], lr=1.0, momentum=0.5)
    dsa = DSA(strategy_for(train.name))
    times = []
    for i in range(iters + 1):
        t0 = time.perf_counter()
        net = make_network("convnet", 1, 10, (28, 28), seed=i)
        for q in net.parameters():
            q.requires_grad_(False)
        loss = plain_loop_iteration(train, images, labels, net, dsa, gen, batch_real)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def same_loss_check(train, batch_real):
    """Engine (one call per branch for all classes) vs plain loop on identical inputs: relative difference."""
    net = make_network("convnet", 1, 10, (28, 28), seed=0)
    dsa = DSA(strategy_for(train.name))
    real = [train.images[m[:batch_real]] for m in train.indices_by_class]
    syn = [train.images[m[batch_real:batch_real + 10]] for m in train.indices_by_class]
    real = [dsa(x, torch.Generator().manual_seed(c)) for c, x in enumerate(real)]
    syn = [dsa(x, torch.Generator().manual_seed(c)) for c, x in enumerate(syn)]
    fr = embed_batches(net, real, grad=False, amp=None)
    fs = embed_batches(net, syn, grad=True, amp=None)
    engine = sum(dm_loss(r, s) for r, s in zip(fr, fs)).item()
    plain = sum(dm_loss(net.embed(r).detach(), net.embed(s)) for r, s in zip(real, syn)).item()
    return engine, plain, abs(engine - plain) / abs(plain)


def time_engine(train, iters, **kw):
    iters = iters * kw.get("inner_steps", 1)  # whole cycles of network reuse
    cfg = DistillConfig(dataset=train.name, ipc=10, iterations=iters + 1, **kw)
    _, record = distill(cfg, train=train, progress=False)
    return record["timings"], record


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch-real", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dm_speed.json")
    args = ap.parse_args()
    train = load("fashion-mnist", "train")
    results = {"machine": machine(), "threads": torch.get_num_threads(), "batch_real": args.batch_real,
               "iters": args.iters,
               "glibc_tunables": os.environ.get("GLIBC_TUNABLES"), "cpu_chunk": CPU_CHUNK}
    e, pl, rel = same_loss_check(train, args.batch_real)
    results["loss_check"] = {"engine": e, "plain": pl, "rel_diff": rel}
    print(f"loss engine {e:.6f} plain {pl:.6f} rel diff {rel:.2e}")
    t = time_plain(train, args.iters, args.batch_real)
    results["plain_fp32"] = statistics.median(t)
    print(f"plain per-class fp32 loop: {results['plain_fp32']:.3f} s/iter")
    variants = {
        "engine_fp32": dict(batch_real=args.batch_real),
        "engine_bf16": dict(batch_real=args.batch_real, amp="bf16"),
        "engine_auto": dict(batch_real=args.batch_real, amp="auto"),
        "engine_bf16_channels_last": dict(batch_real=args.batch_real, amp="bf16", channels_last=True),
        "engine_bf16_b128": dict(batch_real=128, amp="bf16"),
        "engine_bf16_inner4": dict(batch_real=args.batch_real, amp="bf16", inner_steps=4),
    }
    for name, kw in variants.items():
        timings, record = time_engine(train, args.iters, **kw)
        # median per image step; with inner_steps > 1 most steps are cheap, so the mean over all steps
        # (including the first, warm-up one) is the honest cost per step
        mean = timings["total_s"] / timings["iterations_run"]
        results[name] = {"median_s": timings["median_iter_s"], "mean_s": mean}
        print(f"{name}: median {timings['median_iter_s']:.3f} s/step, mean {mean:.3f} s/step "
              f"({results['plain_fp32'] / max(timings['median_iter_s'], mean):.2f}x vs plain, slower of the two)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
