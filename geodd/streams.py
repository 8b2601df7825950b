"""Named random streams: what makes two runs with the same seed see the same randomness.

A distillation run forks one ``torch.Generator`` per source of randomness from its seed (``STREAMS``):

- ``init``: the synthetic images' initialisation (which real images, or the noise);
- ``nets``: the seeds of the feature networks (DM's fresh network per round, IDM's pushed pool members);
- ``real``: the real batch of every class in every round;
- ``dsa``: the seeds of the siamese augmentations (one per class per round);
- ``matcher``: the matcher's own draws (SDD's frequencies, GeoDM's heads and OT subsamples);
- ``pool``: IDM's pool training (its batches, augmentations, which members train, which is drawn).

Each stream's seed is a hash of (run seed, stream name), so a draw in one stream never shifts another. Two
methods run with the same seed therefore sample the same networks, real batches and augmentations at every round
(as long as they sample networks at the same rounds, i.e. share ``inner_steps``), whatever their matchers draw;
only the method differs. ``Trace`` records short digests of what was drawn (each sampled network's initial weights,
each round's real-batch indices and augmentation seeds) into ``record.json`` under ``"trace"``, so anyone can
check that two runs were paired (``same_draws``). Not called in a notebook; used by ``geodd.distill``,
``geodd.schedules``.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import torch

#: the named streams of a run, in the order their seeds are listed
STREAMS = ("init", "nets", "real", "dsa", "matcher", "pool")
#: the version of this scheme; part of every run's cache key (``DistillConfig.result_hash``), because a change
#: here changes every result
SCHEME = "geodd.streams/1"
#: hex characters kept of each digest (48 bits: collisions are negligible over a run's few thousand draws)
DIGEST_CHARS = 12


def stream_seed(seed: int, name: str) -> int:
    """The 62-bit seed of stream ``name`` of a run seeded ``seed`` (SHA-256 of both; independent of the others).
    Not called in a notebook; used by ``geodd.streams``."""
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; the streams are {', '.join(STREAMS)}")
    h = hashlib.sha256(f"{SCHEME}/{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 2


class Streams:
    """One CPU ``torch.Generator`` per name of ``STREAMS``, seeded by ``stream_seed``; index by name.
    Not called in a notebook; used by ``geodd.distill``."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._gens = {name: torch.Generator().manual_seed(stream_seed(self.seed, name)) for name in STREAMS}

    def __getitem__(self, name: str) -> torch.Generator:
        return self._gens[name]

    def get_state(self) -> dict[str, torch.Tensor]:
        """Every stream's state (for a checkpoint)."""
        return {name: g.get_state() for name, g in self._gens.items()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``get_state``'s states (every stream must be present)."""
        missing = set(STREAMS) - set(state)
        if missing:
            raise KeyError(f"random stream states missing: {', '.join(sorted(missing))}")
        for name, g in self._gens.items():
            g.set_state(state[name])


def digest(parts: Iterable[torch.Tensor | int | str]) -> str:
    """A short hex digest of tensors (their dtype, shape and bytes, moved to the CPU) and plain values.
    Not called in a notebook; used by ``geodd.streams``, ``geodd.distill``."""
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, torch.Tensor):
            t = p.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:DIGEST_CHARS]


class Trace:
    """Digests of a run's draws, one entry per sampled network / round (``as_dict`` goes into record.json):
    ``nets`` (initial weights of every network built, in order), ``real`` (each round's real-batch indices,
    all classes) and ``dsa`` (each round's augmentation seeds).
    Not called in a notebook; used by ``geodd.distill``."""

    KEYS = ("nets", "real", "dsa")

    def __init__(self, state: dict | None = None):
        self.entries: dict[str, list[str]] = {k: list((state or {}).get(k, [])) for k in self.KEYS}

    def network(self, net: torch.nn.Module) -> None:
        """Record a freshly built network's initial weights (parameters and buffers, in state-dict order)."""
        self.entries["nets"].append(digest(net.state_dict().values()))

    def round(self, picks: list[torch.Tensor], aug_seeds: list[int]) -> None:
        """Record one round's real-batch indices (per class) and augmentation seeds."""
        self.entries["real"].append(digest(picks))
        self.entries["dsa"].append(digest(aug_seeds))

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.entries.items()}


def same_draws(record_a: dict, record_b: dict, keys: Iterable[str] = Trace.KEYS) -> bool:
    """True if two run records (``record.json`` dicts) drew the same networks, real batches and augmentations
    (equal ``trace`` entries for ``keys``); False if either has no trace.
    Not called in a notebook; used by ``geodd.streams``."""
    ta, tb = record_a.get("trace"), record_b.get("trace")
    if not isinstance(ta, dict) or not isinstance(tb, dict):
        return False
    return all(ta.get(k) == tb.get(k) and ta.get(k) is not None for k in keys)
