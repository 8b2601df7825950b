"""Datasets by name: local sources, checksums, long-tailed subsets and the per-class index.

``load(name, split)`` returns a :class:`Dataset` of float32 images normalised per channel,
``x = (pixel / 255 - mean) / std``, with the constants of the DM code base (``docs/methods/dm.md`` "Settings").

Where files are looked for, in order (the first folder holding the split's files wins):

1. ``root=`` if given;
2. every folder in ``$GEODD_DATA`` (``os.pathsep``-separated);
3. the default cache ``$XDG_CACHE_HOME/geodd/data`` (``~/.cache/geodd/data`` when unset), where downloads go
   when neither ``root=`` nor ``$GEODD_DATA`` is given;
4. for Fashion-MNIST, Debian's ``dataset-fashion-mnist`` folder ``/usr/share/datasets/fashion-mnist``.

Inside each folder, torchvision's on-disk layouts are accepted (``FashionMNIST/raw/``, ``MNIST/raw/`` with IDX
files raw or ``.gz``; ``cifar-10-batches-py/``; ``cifar-100-python/``; ``train_32x32.mat`` / ``test_32x32.mat``),
as are a ``<name>/`` sub-folder and the files directly in the folder (Debian layout). Files are read directly
with numpy (IDX), a restricted unpickler (CIFAR) and ``scipy.io.loadmat`` (SVHN); torchvision is used only to
download missing data. Long-tailed variants (``*-lt``) follow ``docs/methods/sdd_csdm.md`` "Long-tailed data".
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import math
import os
import pickle
import re
import socket
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import GeoddError

# ----------------------------------------------------------------------------------------------- constants

#: canonical dataset names; every one also has a long-tailed ``<name>-lt`` variant
DATASETS = ("mnist", "fashion-mnist", "svhn", "cifar10", "cifar100", "digits")
#: the long-tailed names of the benchmark (any ``<name>-lt`` is accepted)
LT_DATASETS = ("fashion-mnist-lt", "cifar10-lt", "cifar100-lt")
#: imbalance factor n_max / n_min used when a ``*-lt`` name is loaded without ``imf``
DEFAULT_IMF = 100.0
#: Debian's ``dataset-fashion-mnist`` package installs the gzipped IDX files here
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: environment variable naming extra data folders
ENV_DATA = "GEODD_DATA"
#: environment variable that turns off automatic downloads when set to 0/false/no/off
ENV_DOWNLOAD = "GEODD_DOWNLOAD"
#: socket timeout (seconds) while torchvision downloads, so an offline machine fails fast
DOWNLOAD_TIMEOUT_S = 30.0
#: sklearn digits: test-split size and the fixed seed of the stratified train/test split
DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0
#: decoded uint8 arrays kept in memory (keyed by path, size and mtime) so repeated loads skip decoding
ARRAY_CACHE_SIZE = 8

#: per-channel (mean, std) of pixel/255 on the train split, from the DM code (dm_protocol.md 1.2); digits: ours
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2861,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    # population mean/std of pixel/16 over the 1297-image digits train split (test_data checks them)
    "digits": ((0.3052258517,), (0.3759720769,)),
}

#: Known checksums, one table: dataset -> file name -> (hash algorithm, hex digest).
#: Rule: an entry keyed by a file's own name is the hash of the file's bytes as stored; a ``.gz`` file whose
#: name without ``.gz`` is keyed is checked on its decompressed bytes. Fashion-MNIST entries are sha256 of the
#: decompressed IDX bytes (Debian re-gzips, so the upstream .gz md5s differ); the other datasets get the md5
#: lists torchvision carries, filled in on first use (see :func:`checksum_table`). Tests monkeypatch this dict.
CHECKSUMS: dict[str, dict[str, tuple[str, str]]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": ("sha256", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": ("sha256", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": ("sha256", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": ("sha256", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}

_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_UBYTE = 0x08
_CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR100_FILES = {"train": ("train",), "test": ("test",)}
_SVHN_FILES = {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)}
_FALSY = {"0", "false", "no", "off"}


class DataNotFoundError(GeoddError):
    """The dataset's files are in none of the searched places and could not be downloaded.
    Not called in a notebook; used by ``geodd.data``, ``geodd.cli``."""


# ------------------------------------------------------------------------------------------------ Dataset

@dataclass(repr=False, eq=False)
class Dataset:
    """A labelled image set: ``images [N, C, H, W]`` float32 normalised with ``mean``/``std``, ``labels [N]`` long.
    Used in notebooks 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase), 04
    (04_geodm_product_space) through their study modules."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    split: str = "train"
    imf: float | None = None  # imbalance factor of a long-tailed dataset (its test split stays balanced)
    _index: list[torch.Tensor] | None = field(default=None, init=False, repr=False)
    _digest: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise GeoddError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.labels.dim() != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise GeoddError(f"labels must be [N] with N = {self.images.shape[0]}, got {tuple(self.labels.shape)}")
        if not (len(self.mean) == len(self.std) == self.images.shape[1]):
            raise GeoddError(f"mean/std need one value per channel ({self.images.shape[1]}), "
                             f"got {len(self.mean)}/{len(self.std)}")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if not self.class_names:
            self.class_names = [str(c) for c in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise GeoddError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        lt = f", imf={self.imf:g}" if self.imf is not None else ""
        return (f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, shape=({c}, {h}, {w}), "
                f"classes={self.num_classes}{lt}, device={self.images.device})")

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def im_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def counts(self) -> list[int]:
        """Images per class, ``[num_classes]``."""
        return [len(i) for i in self.indices_by_class]

    @property
    def indices_by_class(self) -> list[torch.Tensor]:
        """Per-class index: ``indices_by_class[c]`` = positions of class c in ascending order (built once, cached)."""
        if self._index is None:
            order = torch.argsort(self.labels, stable=True)
            sizes = torch.bincount(self.labels, minlength=self.num_classes)
            if sizes.numel() > self.num_classes:
                raise GeoddError(f"labels reach {sizes.numel() - 1} but the dataset has {self.num_classes} classes")
            self._index = list(torch.split(order, sizes.tolist()))
        return self._index

    def content_hash(self) -> str:
        """16 hex digits of SHA-256 over the name, split, imbalance factor, shapes and the bytes of images and
        labels; computed once per object (datasets are not changed in place). Two training sets that differ in
        one image get different run-store keys (``geodd.runs.cached_distill``)."""
        if self._digest is None:
            h = hashlib.sha256(f"{self.name}|{self.split}|{self.imf}|{tuple(self.images.shape)}|"
                               f"{self.images.dtype}".encode())
            for t in (self.images, self.labels):
                h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
            self._digest = h.hexdigest()[:16]
        return self._digest

    def subset(self, indices: torch.Tensor | Sequence[int] | np.ndarray) -> "Dataset":
        """The images at ``indices`` (in that order), same metadata."""
        idx = torch.as_tensor(np.asarray(indices) if not torch.is_tensor(indices) else indices, dtype=torch.long)
        idx = idx.to(self.images.device)
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx.to(self.labels.device)])

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return mean, std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """``x * std + mean`` per channel for ``x [..., C, H, W]`` on any device (back to pixel/255 units)."""
        mean, std = self._stats(x)
        return x * std + mean

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel: the inverse of :meth:`denormalise`."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def to(self, device: torch.device | str) -> "Dataset":
        """The same dataset with images and labels on ``device`` (the class index is rebuilt there on demand)."""
        return dataclasses.replace(self, images=self.images.to(device), labels=self.labels.to(device))


# ---------------------------------------------------------------------------------------- long-tailed maths

def long_tail_counts(n_max: int, num_classes: int, imf: float) -> list[int]:
    """Per-class sizes of a long-tailed split: ``n_c = floor(n_max * imf**(-c / (C - 1)))`` (csdm_ot.md A.4).

    Computed exactly: n_c is the largest integer n with ``n**(C-1) * imf**c <= n_max**(C-1)`` (imf taken as the
    exact rational value of the float), so e.g. ``floor(5000 * 10**-1)`` is 500, never 499.
    Not called in a notebook; used by ``geodd.data``.
    """
    if num_classes < 1 or n_max < 0:
        raise GeoddError(f"need num_classes >= 1 and n_max >= 0, got {num_classes} and {n_max}")
    if not math.isfinite(imf) or imf < 1:
        raise GeoddError(f"the imbalance factor imf = n_max / n_min must be a finite number >= 1, got {imf}")
    if num_classes == 1:
        return [int(n_max)]
    r, k, n_max = Fraction(imf), num_classes - 1, int(n_max)
    bound = Fraction(n_max) ** k
    counts = []
    for c in range(num_classes):
        scale = r ** c

        def fits(n: int) -> bool:
            return n >= 0 and Fraction(n) ** k * scale <= bound

        n = int(math.floor(n_max * float(imf) ** (-c / k)))
        while n > 0 and not fits(n):
            n -= 1
        while fits(n + 1):
            n += 1
        counts.append(n)
    return counts


def long_tail_indices(labels: torch.Tensor | np.ndarray, num_classes: int, imf: float, seed: int = 0,
                      n_max: int | None = None) -> np.ndarray:
    """Sorted positions of a long-tailed subsample: class c keeps ``long_tail_counts(n_max, C, imf)[c]`` images.

    Images are drawn without replacement by ``numpy.random.default_rng(seed)``, class 0 (the head) first;
    ``n_max`` defaults to the smallest class count. Reconstruction: our choice (LTDD draws with
    ``RandomState(42)``; the counts are the same, the chosen images differ).
    Not called in a notebook; used by ``geodd.data``.
    """
    y = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    present = np.bincount(y, minlength=num_classes)
    if len(present) > num_classes:
        raise GeoddError(f"labels reach {len(present) - 1} but there are {num_classes} classes")
    if n_max is None:
        n_max = int(present.min())
    counts = long_tail_counts(n_max, num_classes, imf)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, n_c in enumerate(counts):
        idx = np.flatnonzero(y == c)
        if n_c > len(idx):
            raise GeoddError(f"class {c} has {len(idx)} images but the long tail asks for {n_c} (n_max = {n_max})")
        chosen.append(rng.choice(idx, size=n_c, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def long_tail_subset(ds: Dataset, imf: float, seed: int = 0, n_max: int | None = None) -> Dataset:
    """The long-tailed subsample of ``ds`` (see :func:`long_tail_indices`), named ``<name>-lt`` with ``imf`` set.
    Not called in a notebook or elsewhere in geodd: a public entry point for scripts and users."""
    idx = long_tail_indices(ds.labels, ds.num_classes, imf, seed=seed, n_max=n_max)
    out = ds.subset(idx)
    name = ds.name if ds.name.endswith("-lt") else f"{ds.name}-lt"
    return dataclasses.replace(out, name=name, imf=float(imf))


def per_class_subset(ds: Dataset, n_per_class: int, seed: int | None = 0) -> Dataset:
    """``n_per_class`` images of every class, class-major (class 0 first), each class in ascending index order.

    ``seed=None`` takes the first n of each class; an int draws them without replacement with
    ``numpy.random.default_rng(seed)``. A class with fewer images raises :class:`GeoddError`.
    Shown in notebook 01 (01_manifold_embeddings).
    """
    if n_per_class < 1:
        raise GeoddError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = None if seed is None else np.random.default_rng(seed)
    parts = []
    for c, idx in enumerate(ds.indices_by_class):
        if len(idx) < n_per_class:
            raise GeoddError(f"{ds.name}: class {c} ({ds.class_names[c]}) has {len(idx)} images, "
                             f"fewer than the {n_per_class} asked for")
        idx_np = idx.cpu().numpy()
        pick = idx_np[:n_per_class] if rng is None else np.sort(rng.choice(idx_np, n_per_class, replace=False))
        parts.append(pick)
    return ds.subset(np.concatenate(parts))


def validation_split(ds: Dataset, per_class: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(rest, validation): ``per_class`` images of every class held out of ``ds`` (a seeded draw without
    replacement, ``numpy.random.default_rng(seed)``), and everything else. The two are disjoint and together
    are ``ds``; tuning (step sizes, guidance weights) is scored on the validation part, never on the test set.
    A class with no more than ``per_class`` images raises :class:`GeoddError` (it would leave nothing to train).
    Not called in a notebook; used by ``geodd.stepsize``."""
    if per_class < 1:
        raise GeoddError(f"per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    held = []
    for c, idx in enumerate(ds.indices_by_class):
        if len(idx) <= per_class:
            raise GeoddError(f"{ds.name}: class {c} ({ds.class_names[c]}) has {len(idx)} images; holding out "
                             f"{per_class} would leave none to train on")
        held.append(rng.choice(idx.cpu().numpy(), per_class, replace=False))
    val = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(ds)), val)
    return ds.subset(keep), dataclasses.replace(ds.subset(val), split=f"{ds.split}-validation")


def proportional_subset(ds: Dataset, n_largest: int, seed: int | None = 0) -> Dataset:
    """A subset that keeps a long-tailed set's imbalance: the largest class keeps ``n_largest`` images and every
    class c keeps ``max(1, round(n_c * n_largest / max n))`` (never more than it has), so the imbalance factor
    stays what it was up to rounding. Class-major, ascending index order; ``seed`` as in ``per_class_subset``.
    ``n_largest`` at or above the largest class keeps everything. Not called in a notebook; used by
    ``geodd.distill`` (``train_per_class`` on a ``-lt`` dataset).
    """
    if n_largest < 1:
        raise GeoddError(f"n_largest must be >= 1, got {n_largest}")
    largest = max(ds.counts)
    if n_largest >= largest:
        return ds
    rng = None if seed is None else np.random.default_rng(seed)
    parts = []
    for idx in ds.indices_by_class:
        idx_np = idx.cpu().numpy()
        k = min(len(idx_np), max(1, round(len(idx_np) * n_largest / largest)))
        parts.append(idx_np[:k] if rng is None else np.sort(rng.choice(idx_np, k, replace=False)))
    return ds.subset(np.concatenate(parts))


# --------------------------------------------------------------------------------------------- names

@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str  # idx | cifar10 | cifar100 | svhn | digits
    num_classes: int
    shape: tuple[int, int, int]
    subdirs: tuple[str, ...]  # folders under a root where the files may be; "" = the root itself
    torchvision: str | None  # torchvision.datasets class used to download and for the md5 lists
    fix: str


def _fix_generic(name: str, layout: str) -> str:
    return (f"set {ENV_DATA}=/path/to/data holding {layout} (torchvision's layout), or run once with internet: "
            f"python -c \"import geodd.data as d; d.load('{name}', download=True)\"")


_SPECS = {
    "mnist": _Spec("mnist", "idx", 10, (1, 28, 28), ("MNIST/raw", "mnist", ""), "MNIST",
                   _fix_generic("mnist", "MNIST/raw/")),
    "fashion-mnist": _Spec("fashion-mnist", "idx", 10, (1, 28, 28), ("FashionMNIST/raw", "fashion-mnist", ""),
                           "FashionMNIST",
                           f"apt-get install dataset-fashion-mnist (or set {ENV_DATA}=/path holding "
                           f"FashionMNIST/raw/)"),
    "svhn": _Spec("svhn", "svhn", 10, (3, 32, 32), ("", "svhn", "SVHN"), "SVHN",
                  _fix_generic("svhn", "train_32x32.mat and test_32x32.mat")),
    "cifar10": _Spec("cifar10", "cifar10", 10, (3, 32, 32), ("cifar-10-batches-py",), "CIFAR10",
                     _fix_generic("cifar10", "cifar-10-batches-py/")),
    "cifar100": _Spec("cifar100", "cifar100", 100, (3, 32, 32), ("cifar-100-python",), "CIFAR100",
                      _fix_generic("cifar100", "cifar-100-python/")),
    "digits": _Spec("digits", "digits", 10, (1, 8, 8), (), None, "pip install scikit-learn"),
}
_ALIASES = {"mnist": "mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "svhn": "svhn",
            "cifar10": "cifar10", "cifar100": "cifar100", "digits": "digits", "sklearndigits": "digits"}


def resolve_name(name: str) -> tuple[str, bool]:
    """``(canonical base name, long_tailed)`` for a case/punctuation-insensitive name, e.g. 'CIFAR-10-LT'.
    Not called in a notebook; used by ``geodd.data``."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    lt = key.endswith("lt") and key[:-2] in _ALIASES
    base = _ALIASES.get(key[:-2] if lt else key)
    if base is None:
        valid = ", ".join(DATASETS + tuple(f"{d}-lt" for d in DATASETS))
        raise GeoddError(f"unknown dataset {name!r}; valid names: {valid}")
    return base, lt


# ------------------------------------------------------------------------------------- where to look

def default_cache() -> Path:
    """``$XDG_CACHE_HOME/geodd/data`` (``~/.cache/geodd/data`` when unset): downloads land here by default.
    Not called in a notebook; used by ``geodd.data``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "geodd" / "data"


def search_roots(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The base folders searched for ``name``, in order: root, $GEODD_DATA entries, default cache, Debian.
    Not called in a notebook; used by ``geodd.data``."""
    base, _ = resolve_name(name)
    roots = [Path(root).expanduser()] if root is not None else []
    roots += [Path(p).expanduser() for p in os.environ.get(ENV_DATA, "").split(os.pathsep) if p]
    roots.append(default_cache())
    if base == "fashion-mnist":
        roots.append(DEBIAN_FASHION_MNIST)
    return roots


def _candidate_dirs(spec: _Spec, root: str | os.PathLike | None) -> list[Path]:
    out: list[Path] = []
    for r in search_roots(spec.name, root):
        for sub in spec.subdirs:
            d = r / sub if sub else r
            if d not in out:
                out.append(d)
    return out


def _idx_path(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _split_files(spec: _Spec, folder: Path, split: str) -> list[Path] | None:
    """The split's files in ``folder`` (raw IDX preferred over .gz), or None when any is missing."""
    if spec.kind == "idx":
        paths = [_idx_path(folder, s) for s in _IDX_FILES[split]]
        return None if any(p is None for p in paths) else paths  # type: ignore[return-value]
    names = {"cifar10": _CIFAR10_FILES, "cifar100": _CIFAR100_FILES, "svhn": _SVHN_FILES}[spec.kind][split]
    paths = [folder / n for n in names]
    return paths if all(p.is_file() for p in paths) else None


# ------------------------------------------------------------------------------------------- checksums

def _torchvision_checksums(name: str) -> dict[str, tuple[str, str]]:
    """The md5 lists torchvision carries for the files as it stores them (read at run time)."""
    if name not in ("mnist", "cifar10", "cifar100", "svhn"):
        return {}
    import torchvision.datasets as tvd

    if name == "mnist":
        return {f: ("md5", m) for f, m in tvd.MNIST.resources}
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        table = {f: ("md5", m) for f, m in cls.train_list + cls.test_list}
        table[cls.meta["filename"]] = ("md5", cls.meta["md5"])
        return table
    if name == "svhn":
        return {f: ("md5", m) for _, f, m in tvd.SVHN.split_list.values()}
    return {}


def checksum_table(name: str) -> dict[str, tuple[str, str]]:
    """``CHECKSUMS[name]``, filled from torchvision's md5 lists on first use for mnist/cifar/svhn.
    Not called in a notebook; used by ``geodd.data``."""
    if name not in CHECKSUMS:
        CHECKSUMS[name] = _torchvision_checksums(name)
    return CHECKSUMS[name]


_VERIFIED: set[tuple] = set()  # (path, size, mtime_ns, algo, digest) already checked in this process


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _expected(path: Path, table: dict[str, tuple[str, str]]) -> tuple[str, str, bool] | None:
    """``(algo, digest, on_decompressed_bytes)`` that applies to ``path``, or None (see ``CHECKSUMS``)."""
    if path.name in table:
        return (*table[path.name], False)
    if path.suffix == ".gz" and path.stem in table:
        return (*table[path.stem], True)
    return None


def _mismatch(path: Path, algo: str, got: str, want: str, dataset: str) -> GeoddError:
    fix = ("reinstall it: apt-get install --reinstall dataset-fashion-mnist"
           if str(path).startswith(str(DEBIAN_FASHION_MNIST)) else "delete it and download it again")
    return GeoddError(f"{dataset}: checksum mismatch for {path} ({algo} {got[:12]}..., expected {want[:12]}...); "
                      f"the file is corrupt or not the expected release: {fix} (verify=False skips the check)")


def _verify(path: Path, dataset: str, content: Callable[[], bytes] | None = None) -> None:
    """Check ``path`` against the checksum table; ``content`` gives its decompressed bytes for .gz entries."""
    exp = _expected(path, checksum_table(dataset))
    if exp is None:
        return
    algo, want, decompressed = exp
    key = (*_stat_key(path), algo, want)
    if key in _VERIFIED:
        return
    h = hashlib.new(algo)
    if decompressed and content is not None:
        h.update(content())
    elif decompressed:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    got = h.hexdigest()
    if got != want.lower():
        raise _mismatch(path, algo, got, want, dataset)
    _VERIFIED.add(key)


def _needs_check(path: Path, dataset: str) -> bool:
    exp = _expected(path, checksum_table(dataset))
    return exp is not None and (*_stat_key(path), exp[0], exp[1]) not in _VERIFIED


# -------------------------------------------------------------------------------------------- readers

_ARRAYS: "OrderedDict[tuple, Any]" = OrderedDict()


def clear_cache() -> None:
    """Forget decoded arrays and verification results kept in memory.
    Not called in a notebook or elsewhere in geodd: a public entry point for scripts and users."""
    _ARRAYS.clear()
    _VERIFIED.clear()


def _cached(path: Path, dataset: str, verify: bool, read: Callable[[Path, str, bool], Any]) -> Any:
    """``read(path, dataset, verify)`` once per (path, size, mtime); re-read when a check is still due."""
    key = (*_stat_key(path), read.__name__)
    if key in _ARRAYS and not (verify and _needs_check(path, dataset)):
        _ARRAYS.move_to_end(key)
        return _ARRAYS[key]
    value = read(path, dataset, verify)
    _ARRAYS[key] = value
    while len(_ARRAYS) > ARRAY_CACHE_SIZE:
        _ARRAYS.popitem(last=False)
    return value


def _read_idx(path: Path, dataset: str, verify: bool) -> np.ndarray:
    """An IDX file (raw or gzip) as a read-only uint8 array; validates magic, dims and length."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:
        raise GeoddError(f"{dataset}: cannot read {path}: {e}") from None
    if verify:
        _verify(path, dataset, content=lambda: data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE:
        raise GeoddError(f"{dataset}: {path} is not an unsigned-byte IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise GeoddError(f"{dataset}: {path} has a truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if len(data) != header + math.prod(dims):
        raise GeoddError(f"{dataset}: {path} holds {len(data) - header} bytes of data but its header says "
                         f"{dims} = {math.prod(dims)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays (what CIFAR batches hold), nothing executable."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: py3 protocol-2 bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path, dataset: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise GeoddError(f"{dataset}: {path} is not a CIFAR python batch: {e}") from None
    if not isinstance(obj, dict):
        raise GeoddError(f"{dataset}: {path} is not a CIFAR python batch (no dict inside)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar(path: Path, dataset: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: (uint8 [N, 3, 32, 32], int64 [N]) from 'data' and 'labels'/'fine_labels'."""
    if verify:
        _verify(path, dataset)
    d = _unpickle(path, dataset)
    key = "fine_labels" if "fine_labels" in d else "labels"
    if "data" not in d or key not in d:
        raise GeoddError(f"{dataset}: {path} lacks 'data' or 'labels'/'fine_labels'")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d[key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise GeoddError(f"{dataset}: {path} has data {data.shape} and {len(labels)} labels, "
                         f"expected [N, 3072] and N labels")
    images = data.reshape(-1, 3, 32, 32)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _read_svhn(path: Path, dataset: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN .mat file: X [32, 32, 3, N] -> uint8 [N, 3, 32, 32]; label 10 means digit 0."""
    import scipy.io

    if verify:
        _verify(path, dataset)
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for a foreign file
        raise GeoddError(f"{dataset}: cannot read {path} as a .mat file: {e}") from None
    if "X" not in mat or "y" not in mat or mat["X"].ndim != 4 or mat["X"].shape[:3] != (32, 32, 3):
        raise GeoddError(f"{dataset}: {path} lacks X [32, 32, 3, N] and y")
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.uint8))
    labels = mat["y"].astype(np.int64).reshape(-1) % 10
    if len(labels) != len(images):
        raise GeoddError(f"{dataset}: {path} holds {len(images)} images but {len(labels)} labels")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _read_cifar_meta(folder: Path, spec: _Spec, verify: bool) -> list[str]:
    path, key = (folder / "batches.meta", "label_names") if spec.kind == "cifar10" else \
        (folder / "meta", "fine_label_names")
    if not path.is_file():
        return []
    if verify:
        _verify(path, spec.name)
    names = _unpickle(path, spec.name).get(key, [])
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _read_split(spec: _Spec, folder: Path, files: list[Path], split: str,
                verify: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 images [N, C, H, W], int64 labels [N], class names) of one split found in ``folder``."""
    if spec.kind == "idx":
        images = _cached(files[0], spec.name, verify, _read_idx)
        labels = _cached(files[1], spec.name, verify, _read_idx)
        if images.ndim != 3 or labels.ndim != 1:
            raise GeoddError(f"{spec.name}: {files[0].name} must hold [N, H, W] images and {files[1].name} [N] "
                             f"labels, got {images.shape} and {labels.shape}")
        if len(images) != len(labels):
            raise GeoddError(f"{spec.name}: {files[0]} holds {len(images)} images but {files[1]} "
                             f"{len(labels)} labels")
        images = images[:, None]
        names = _FASHION_CLASSES if spec.name == "fashion-mnist" else [str(c) for c in range(10)]
    else:
        reader = _read_svhn if spec.kind == "svhn" else _read_cifar
        parts = [_cached(p, spec.name, verify, reader) for p in files]
        images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        names = [str(c) for c in range(10)] if spec.kind == "svhn" else _read_cifar_meta(folder, spec, verify)
    if images.shape[1:] != spec.shape:
        raise GeoddError(f"{spec.name}: images in {folder} have shape {images.shape[1:]}, expected {spec.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise GeoddError(f"{spec.name}: labels in {folder} fall outside 0..{spec.num_classes - 1}")
    return images, labels.astype(np.int64, copy=False), names


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's bundled 8x8 digits, pixel/16 in [0, 1], fixed stratified split (1297 train / 500 test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    train, test = train_test_split(np.arange(len(d.target)), test_size=DIGITS_TEST_SIZE, stratify=d.target,
                                   random_state=DIGITS_SPLIT_SEED)
    idx = np.sort(train if split == "train" else test)
    return (d.images[idx] / 16.0).astype(np.float32)[:, None], d.target[idx].astype(np.int64)


# ------------------------------------------------------------------------------------------- download

def _torchvision_download(spec: _Spec, split: str, target: Path) -> None:
    """Let torchvision fetch ``spec`` into ``target`` (its own layout), with its output silenced."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision)
    kwargs = {"split": split} if spec.kind == "svhn" else {"train": split == "train"}
    created = [p for p in (target, *target.parents) if not p.exists()]
    target.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cls(str(target), download=True, **kwargs)
    except BaseException:
        for p in created:  # leave no empty folders behind after a failed download (deepest first)
            with contextlib.suppress(OSError):
                _remove_empty_tree(p)
        raise
    finally:
        socket.setdefaulttimeout(old)


def _remove_empty_tree(path: Path) -> None:
    """Remove ``path`` if it holds nothing but empty folders."""
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    path.rmdir()


def _download_allowed(download: bool | None) -> bool:
    if download is not None:
        return bool(download)
    return os.environ.get(ENV_DOWNLOAD, "1").strip().lower() not in _FALSY


def _download_target(root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = [p for p in os.environ.get(ENV_DATA, "").split(os.pathsep) if p]
    return Path(env[0]).expanduser() if env else default_cache()


def _locate(spec: _Spec, split: str, root: str | os.PathLike | None,
            download: bool | None) -> tuple[Path, list[Path]]:
    dirs = _candidate_dirs(spec, root)
    for d in dirs:
        files = _split_files(spec, d, split)
        if files is not None:
            return d, files
    if not _download_allowed(download):
        note = ("download=False" if download is False
                else f"downloads are off ({ENV_DOWNLOAD}={os.environ.get(ENV_DOWNLOAD)})")
    else:
        target = _download_target(root)
        try:
            _torchvision_download(spec, split, target)
            note = f"download into {target} gave no usable files"
        except Exception as e:  # any network or archive failure falls back to the clear error below
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            note = f"download into {target} failed ({type(e).__name__}: {first[:200]})"
        for sub in spec.subdirs:
            d = target / sub if sub else target
            files = _split_files(spec, d, split)
            if files is not None:
                return d, files
    raise DataNotFoundError(f"{spec.name} ({split} split) not found; looked in: {', '.join(map(str, dirs))}; "
                            f"{note}; fix: {spec.fix}")


# ----------------------------------------------------------------------------------------------- load

def _to_float(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], scale: float) -> torch.Tensor:
    """``(images / scale - mean) / std`` per channel as float32, one conversion."""
    x = torch.from_numpy(images.astype(np.float32))  # a fresh writable copy
    shape = (1, -1, 1, 1)
    a = torch.tensor([1.0 / (scale * s) for s in std], dtype=torch.float32).view(shape)
    b = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float32).view(shape)
    return x.mul_(a).sub_(b)


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, *, imf: float | None = None,
         seed: int = 0, download: bool | None = None, verify: bool = True) -> Dataset:
    """Load a dataset split by name, normalised per channel: ``x = (pixel/255 - mean) / std`` (dm_protocol.md 1.2).

    ``name``: mnist, fashion-mnist, svhn, cifar10, cifar100, digits, or ``<name>-lt`` (csdm_ot.md A.4): the train
    split keeps ``long_tail_counts(n_max, C, imf)`` images per class (``imf`` defaults to ``DEFAULT_IMF``; n_max =
    smallest class count; drawn with ``default_rng(seed)``), the test split stays balanced. ``download=None``
    tries torchvision when the files are missing (unless ``$GEODD_DOWNLOAD=0``) and falls back to
    :class:`DataNotFoundError`; ``verify`` checks known checksums (``CHECKSUMS``).
    Not called in a notebook; used by ``geodd.cli``, ``geodd.distill``, ``geodd.profiles``.
    """
    base, lt = resolve_name(name)
    spec = _SPECS[base]
    split = str(split).lower()
    if split not in ("train", "test"):
        raise GeoddError(f"unknown split {split!r}; choose 'train' or 'test'")
    if imf is not None and not lt:
        raise GeoddError(f"imf applies to long-tailed datasets only; use {base}-lt")
    if lt:
        imf = DEFAULT_IMF if imf is None else float(imf)
        if not math.isfinite(imf) or imf < 1:
            raise GeoddError(f"imf must be a finite number >= 1, got {imf}")
    mean, std = NORMALISATION[base]
    if spec.kind == "digits":
        images, labels = _digits(split)
        scale, names = 1.0, [str(c) for c in range(10)]
    else:
        folder, files = _locate(spec, split, root, download)
        images, labels, names = _read_split(spec, folder, files, split, verify)
        scale = 255.0
    if lt and split == "train":
        keep = long_tail_indices(labels, spec.num_classes, imf, seed=seed)
        images, labels = images[keep], labels[keep]
    return Dataset(name=f"{base}-lt" if lt else base, images=_to_float(images, mean, std, scale),
                   labels=torch.from_numpy(np.array(labels, dtype=np.int64)), num_classes=spec.num_classes,
                   mean=mean, std=std, class_names=list(names) or [str(c) for c in range(spec.num_classes)],
                   split=split, imf=imf if lt else None)


__all__ = ["Dataset", "DataNotFoundError", "load", "long_tail_counts", "long_tail_indices", "long_tail_subset",
           "per_class_subset", "resolve_name", "search_roots", "default_cache", "checksum_table", "clear_cache",
           "CHECKSUMS", "NORMALISATION", "DATASETS", "LT_DATASETS", "DEFAULT_IMF", "DEBIAN_FASHION_MNIST"]
