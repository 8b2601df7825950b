"""Shared by the per-method speed benchmarks: the engine's median seconds per iteration, methods interleaved."""
from __future__ import annotations

from geodd.distill import DistillConfig, distill


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
