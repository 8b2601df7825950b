"""Label-image-aligned soft relabelling (LIA) (OT generative DD: the paper's relabelling section;
``docs/methods/ot_generative.md``, "Equations").

Soft label of a distilled image x: t(x) = (1/|T(IPC)|) sum_{F in T(IPC)} softmax(F(x) / tau), the average
prediction of a teacher ensemble whose size grows with IPC: few teachers (simpler, low-entropy labels) for few
images per class, the whole ensemble for many. The teacher list, the T(IPC) schedule, averaging
probabilities (not logits) and the temperature tau are "reconstruction: our choice" (the paper gives none).
Shown in notebook 05 (05_ot_generative).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import GeoddError
from ..io import fingerprint
from ..nets import make_network
from .training import fit, predict_logits

#: default teacher architectures, cycled so that any prefix of the ensemble mixes architectures
DEFAULT_TEACHER_ARCHS = ("convnetW32", "lenet", "convnetD2", "mlp")
#: IPC at which LIA uses the whole ensemble (ours: one teacher at IPC 1, all K from IPC 50 on)
IPC_FULL = 50
#: log-probability floor for entropies
PROB_FLOOR = 1e-12
#: most k-subsets averaged by ``entropy_vs_ensemble``
MAX_SUBSETS = 256


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher: a ``geodd.nets`` architecture name and its init / data-order seed.
    Shown in notebook 05 (05_ot_generative)."""

    arch: str
    seed: int


def teacher_specs(num: int, archs: Sequence[str] = DEFAULT_TEACHER_ARCHS, base_seed: int = 0) -> list[TeacherSpec]:
    """``num`` teachers, architecture i mod len(archs), seed base_seed + i. Shown in notebook 05 (05_ot_generative)."""
    if num < 1 or not archs:
        raise GeoddError(f"need at least one teacher and one architecture, got num={num}, archs={list(archs)}")
    return [TeacherSpec(archs[i % len(archs)], base_seed + i) for i in range(num)]


def ensemble_size(ipc: int, num_teachers: int, ipc_full: int = IPC_FULL) -> int:
    """|T(IPC)| = clip(ceil(K log(IPC) / log(ipc_full)), 1, K): one teacher at IPC 1, all K from ``ipc_full``
    on, logarithmic in between (K=5: IPC 1 -> 1, 10 -> 3, 50 -> 5). Reconstruction: our choice.
    Shown in notebook 05 (05_ot_generative)."""
    if ipc < 1 or num_teachers < 1 or ipc_full < 2:
        raise GeoddError(f"need ipc >= 1, num_teachers >= 1, ipc_full >= 2; got {ipc}, {num_teachers}, {ipc_full}")
    k = math.ceil(num_teachers * math.log(ipc) / math.log(ipc_full) - 1e-9)
    return int(min(max(k, 1), num_teachers))


def train_teachers(images: torch.Tensor, labels: torch.Tensor, specs: Sequence[TeacherSpec], *, num_classes: int,
                   epochs: int = 1, batch_size: int = 128, lr: float = 1e-3, max_images: int | None = None,
                   device=None, amp: str | None = None, progress: bool = False) -> list[nn.Module]:
    """Train each teacher briefly on real data (Adam, cross-entropy); teacher i sees its own seeded subset of
    ``max_images`` images (all when None) in its own seeded order. Shown in notebook 05 (05_ot_generative)."""
    device = torch.device(device) if device is not None else images.device
    teachers = []
    for spec in specs:
        gen = torch.Generator().manual_seed(int(spec.seed))
        idx = torch.randperm(len(images), generator=gen)[:max_images] if max_images else torch.arange(len(images))
        x, y = images[idx].to(device), labels[idx].to(device)
        net = make_network(spec.arch, int(images.shape[1]), num_classes, tuple(images.shape[-2:]), seed=spec.seed,
                           device=device)
        fit(net, x, lambda logits, i, y=y: F.cross_entropy(logits, y[i]), epochs=epochs, batch_size=batch_size,
            lr=lr, optimizer="adam", seed=spec.seed, amp=amp, progress=progress, desc=f"teacher {spec.arch}")
        teachers.append(net)
    return teachers


def train_or_load_teachers(data: Any, specs: Sequence[TeacherSpec], cache_dir: str | Path | None, *,
                           device=None, progress: bool = False,
                           **train_kw: Any) -> tuple[list[nn.Module], dict[str, Any]]:
    """``train_teachers`` on ``data.images``/``data.labels`` with a cache keyed by ``geodd.io.fingerprint`` of
    (specs, training options, the data by content); files are ``torch.save`` state dicts, loaded with
    ``weights_only=True``. Shown in notebook 05 (05_ot_generative)."""
    device = torch.device(device) if device is not None else data.images.device
    key = fingerprint({"specs": [asdict(s) for s in specs], "train": train_kw,
                       "data": {"images": data.images, "labels": data.labels}})
    path = Path(cache_dir) / f"teachers-{key}.pt" if cache_dir is not None else None
    t0 = time.perf_counter()
    if path is not None and path.exists():
        states = torch.load(path, map_location="cpu", weights_only=True)
        teachers = []
        for spec, state in zip(specs, states["states"]):
            net = make_network(spec.arch, data.channels, data.num_classes, tuple(data.im_size), seed=spec.seed,
                               device=device)
            net.load_state_dict(state)
            teachers.append(net.eval())
        return teachers, {"cached": True, "path": str(path), "seconds": time.perf_counter() - t0,
                          "trained_seconds": float(states.get("seconds", float("nan")))}
    teachers = train_teachers(data.images, data.labels, specs, num_classes=data.num_classes, device=device,
                              progress=progress, **train_kw)
    log: dict[str, Any] = {"cached": False, "seconds": time.perf_counter() - t0}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"specs": [asdict(s) for s in specs], "seconds": log["seconds"],
                    "states": [{k: v.detach().cpu() for k, v in t.state_dict().items()} for t in teachers]}, path)
        log["path"] = str(path)
    return teachers, log


def teacher_probs(teachers: Sequence[nn.Module], images: torch.Tensor, *, temperature: float = 1.0,
                  batch_size: int = 512, amp: str | None = None) -> torch.Tensor:
    """softmax(F_k(x) / tau) of every teacher: ``[K, N, C]``. Shown in notebook 05 (05_ot_generative)."""
    if temperature <= 0:
        raise GeoddError(f"temperature must be positive, got {temperature}")
    return torch.stack([torch.softmax(predict_logits(t, images, batch_size=batch_size, amp=amp) / temperature, 1)
                        for t in teachers])


def soft_labels(teachers: Sequence[nn.Module], images: torch.Tensor, *, temperature: float = 1.0,
                num: int | None = None, batch_size: int = 512, amp: str | None = None) -> torch.Tensor:
    """t(x) = mean over the first ``num`` teachers (all when None) of softmax(F(x)/tau): ``[N, C]``.
    Shown in notebook 05 (05_ot_generative)."""
    num = len(teachers) if num is None else num
    if not 1 <= num <= len(teachers):
        raise GeoddError(f"ensemble size must lie in [1, {len(teachers)}], got {num}")
    return teacher_probs(teachers[:num], images, temperature=temperature, batch_size=batch_size, amp=amp).mean(0)


def lia_soft_labels(teachers: Sequence[nn.Module], images: torch.Tensor, ipc: int, *, ipc_full: int = IPC_FULL,
                    temperature: float = 1.0, amp: str | None = None) -> tuple[torch.Tensor, int]:
    """LIA: soft labels from the IPC-sized prefix T(IPC) of the ensemble; returns (labels [N, C], |T(IPC)|).
    Shown in notebook 05 (05_ot_generative)."""
    k = ensemble_size(ipc, len(teachers), ipc_full)
    return soft_labels(teachers, images, temperature=temperature, num=k, amp=amp), k


def label_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row: H(p) = -sum_c p_c log p_c. Shown in notebook 05 (05_ot_generative)."""
    return -(probs * probs.clamp_min(PROB_FLOOR).log()).sum(-1)


def entropy_vs_ensemble(teachers: Sequence[nn.Module], images: torch.Tensor, *, sizes: Sequence[int] | None = None,
                        temperature: float = 1.0, amp: str | None = None,
                        max_subsets: int = MAX_SUBSETS) -> list[dict[str, float]]:
    """Mean soft-label entropy per ensemble size k. Per row:

    * ``entropy``: H of the average of the first k teachers (the ensemble LIA uses);
    * ``member_entropy``: the mean entropy of those k members (Jensen: ``entropy`` >= ``member_entropy``);
    * ``subset_entropy``: the mean of H(average) over all k-subsets of the teachers (the first ``max_subsets``
      in lexicographic order when there are more). With all subsets it is non-decreasing in k: a k-subset
      average is the mean of its (k-1)-subset averages, so Jensen applies to every k-subset.
    Shown in notebook 05 (05_ot_generative)."""
    probs = teacher_probs(teachers, images, temperature=temperature, amp=amp)
    sizes = list(range(1, len(teachers) + 1)) if sizes is None else list(sizes)
    rows = []
    for k in sizes:
        if not 1 <= k <= len(teachers):
            raise GeoddError(f"ensemble size must lie in [1, {len(teachers)}], got {k}")
        subsets = list(itertools.islice(itertools.combinations(range(len(teachers)), k), max_subsets))
        sub = torch.stack([label_entropy(probs[list(c)].mean(0)).mean() for c in subsets]).mean()
        rows.append({"size": k, "entropy": float(label_entropy(probs[:k].mean(0)).mean()),
                     "member_entropy": float(label_entropy(probs[:k]).mean()), "subset_entropy": float(sub)})
    return rows


__all__ = ["DEFAULT_TEACHER_ARCHS", "IPC_FULL", "TeacherSpec", "teacher_specs", "ensemble_size", "train_teachers",
           "train_or_load_teachers", "teacher_probs", "soft_labels", "lia_soft_labels", "label_entropy",
           "entropy_vs_ensemble"]
