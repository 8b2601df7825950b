"""Shared by the benchmarks: the machine a result was measured on, the engine's median seconds per iteration
(methods interleaved), and saving a result with its markdown section in benchmarks/README.md."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from geodd.distill import DistillConfig, distill
from geodd.precision import cpu_info, resolve


def machine() -> dict:
    """What a timing depends on: CPU model and flags, native bf16, threads, torch, and what amp="auto" picks."""
    auto = resolve("auto", "cpu")
    return {**cpu_info(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "amp_auto": auto.used, "amp_auto_reason": auto.reason}


def machine_line(m: dict) -> str:
    """One line naming the machine of a result, for benchmarks/README.md."""
    flags = ", ".join(m["flags"]) if isinstance(m["flags"], list) else m["flags"]
    return (f"{m['processor']} ({flags}; native bf16: {'yes' if m['bf16_native'] else 'no'}), "
            f"{m['threads']} threads, torch {m['torch']}")


def engine_medians(train, methods: dict[str, tuple[str, dict]], *, iters: int, repeats: int, batch_real: int,
                   amp: str | None) -> dict[str, list[float]]:
    """Per method name, the engine's median seconds per iteration of each repeat (methods interleaved, so a
    burst of load on the shared machine hits every method alike). ``methods``: name -> (method, matcher options)."""
    out: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, (method, opts) in methods.items():
            cfg = DistillConfig(dataset=train.name, method=method, ipc=10, iterations=iters + 1, seed=0,
                                batch_real=batch_real, amp=amp, matcher=opts)
            _, record = distill(cfg, train=train, progress=False)
            out[name].append(record["timings"]["median_iter_s"])
            print(f"  {name}: {out[name][-1]:.3f} s/iter", flush=True)
    return out


def write_section(readme: Path, text: str, title: str) -> None:
    """Replace the ``title`` section of ``readme`` (up to the next ``## `` heading) or append it; create the
    file with a ``# Benchmarks`` heading if it is missing."""
    old = readme.read_text() if readme.exists() else "# Benchmarks\n"
    lines = old.splitlines()
    if title in lines:
        start = lines.index(title)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = lines[:start] + text.rstrip("\n").splitlines() + ([""] + lines[end:] if end < len(lines) else [])
        readme.write_text("\n".join(new).rstrip("\n") + "\n")
    else:
        readme.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")


def report(text: str, readme: Path | None, title: str, *, results: dict | None = None,
           out: Path | None = None) -> None:
    """Save ``results`` as JSON to ``out`` (when given), print the markdown ``text`` and, with ``readme``,
    put it in place of that file's ``title`` section."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    print(text)
    if readme is not None:
        write_section(readme, text, title)
