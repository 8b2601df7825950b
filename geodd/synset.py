"""The synthetic set: normalised images, labels, the config that made them, and their file format.

``synset.pt`` loads with ``torch.load(path, weights_only=True)``: a dict with ``format``, ``images [N, C, H, W]``
(normalised with the dataset's ``mean``/``std``), ``labels [N]``, ``config``, ``mean``, ``std`` and
``snapshots`` (iteration -> images), and ``sha256``, a checksum of the rest that ``SynSet.load`` verifies (files
written before it existed load without one). Every notebook reads synthetic sets through ``SynSet``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import GeoddError
from .io import fingerprint, load_tensors, save_tensors
from .schedules import IDMOptions, partition_expand

SYNSET_FORMAT = "geodd.synset/1"


@dataclass
class SynSet:
    """A synthetic set: normalised images ``[N, C, H, W]``, labels ``[N]``, and the config that made it.
    Shown in notebooks 00 (00_dm_baseline) and 04 (04_geodm_product_space)."""

    images: torch.Tensor
    labels: torch.Tensor
    config: dict
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path | str) -> None:
        save_tensors(Path(path), {"format": SYNSET_FORMAT, "images": self.images.detach().cpu(),
                                  "labels": self.labels.cpu(), "config": self.config, "mean": list(self.mean),
                                  "std": list(self.std),
                                  "snapshots": {int(k): v.cpu() for k, v in self.snapshots.items()}},
                     checksum=True)

    def expand_factor(self) -> int:
        """IDM's partition-and-expansion factor per side for this set (1 for every other schedule)."""
        if self.config.get("schedule") != "idm":
            return 1
        idm = self.config.get("idm") or {}
        return int(idm.get("expand", IDMOptions.expand))

    def training_set(self, images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The images a student trains on: the stored ones (or ``images``, e.g. a snapshot of this set), expanded
        into factor^2 patches per image for IDM. Shown in notebook 02 (02_hdd_pruning)."""
        factor = self.expand_factor()
        images = self.images if images is None else images
        return partition_expand(images, factor), self.labels.repeat_interleave(factor * factor)

    def content_hash(self, snapshot: int | None = None) -> str:
        """The fingerprint of the images (the final ones, or those of ``snapshot``) and labels: what an evaluation
        of this set depends on."""
        return fingerprint({"images": self.snapshot(snapshot), "labels": self.labels, "factor": self.expand_factor()})

    def snapshot(self, iteration: int | None = None) -> torch.Tensor:
        """The images after ``iteration`` image steps (a kept snapshot), or the final images for None; a missing
        snapshot is a one-line ``GeoddError`` naming the ones kept."""
        if iteration is None:
            return self.images
        if int(iteration) not in self.snapshots:
            raise GeoddError(f"this synthetic set kept no snapshot at iteration {iteration}; it has "
                             f"{sorted(self.snapshots) or 'none'} (distil with snapshot_at=...)")
        return self.snapshots[int(iteration)]

    @classmethod
    def load(cls, path: Path | str) -> "SynSet":
        p = load_tensors(Path(path), SYNSET_FORMAT)
        try:
            images, labels = p["images"], p["labels"]
            ok = images.ndim == 4 and labels.ndim == 1 and len(images) == len(labels)
        except (KeyError, AttributeError):
            ok = False
        if not ok:
            raise GeoddError(f"{path} is not a valid synthetic set (missing or inconsistent images/labels)")
        return cls(images, labels, p.get("config", {}), tuple(p.get("mean", ())), tuple(p.get("std", ())),
                   {int(k): v for k, v in p.get("snapshots", {}).items()})
