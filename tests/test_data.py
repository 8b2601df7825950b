"""geodd.data: readers for torchvision's on-disk formats, checksums, search order, long-tailed subsets.

Every file is generated in tmp_path in the dataset's own format; nothing touches the network, and only the
last test (skipped when absent) reads Debian's Fashion-MNIST.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import geodd.data as data
from geodd import GeoddError
from geodd.data import DataNotFoundError, Dataset, load, long_tail_counts, per_class_subset

ORIGINAL_CHECKSUMS = {k: dict(v) for k, v in data.CHECKSUMS.items()}
IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real data folder, cache, env setting or download leaks into a test."""
    monkeypatch.delenv("GEODD_DATA", raising=False)
    monkeypatch.setenv("GEODD_DOWNLOAD", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr(data, "CHECKSUMS", {})  # no torchvision lists: tests install their own
    data.clear_cache()
    yield
    data.clear_cache()


# ------------------------------------------------------------------------------------------- writers

def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def make_idx(folder: Path, split: str = "train", n: int = 20, gz: bool = False, seed: int = 0):
    """IDX image/label files of ``n`` 28x28 images, labels cycling 0..9; returns (images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in zip(IDX_NAMES[split], (images, labels)):
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return images, labels


def make_cifar10(root: Path, per_batch: int = 4, n_test: int = 10, protocol: int = 2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else per_batch
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in (np.arange(n) + i) % 10]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": x, b"labels": y, b"filenames": []}, f, protocol=protocol)
        images[name] = (x, y)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, f, protocol=2)
    return folder, images


def file_hash(path: Path, algo: str, decompress: bool = False) -> str:
    raw = path.read_bytes()
    return hashlib.new(algo, gzip.decompress(raw) if decompress else raw).hexdigest()


def corrupt(path: Path, offset: int = -1) -> None:
    """Flip one byte and move the mtime, as a real edit would (the verification cache keys on it)."""
    b = bytearray(path.read_bytes())
    b[offset] ^= 0xFF
    st = path.stat()
    path.write_bytes(bytes(b))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


# ------------------------------------------------------------------------------------------- readers

@pytest.mark.parametrize("name,sub", [("fashion-mnist", "FashionMNIST/raw"), ("mnist", "MNIST/raw")])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_torchvision_layout(tmp_path, name, sub, gz):
    images, labels = make_idx(tmp_path / sub, "train", n=20, gz=gz)
    make_idx(tmp_path / sub, "test", n=10, gz=gz, seed=1)
    ds = load(name, root=tmp_path, verify=False, download=False)
    assert isinstance(ds, Dataset) and ds.name == name and ds.split == "train"
    assert ds.images.shape == (20, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.long and ds.labels.tolist() == labels.tolist()
    assert ds.channels == 1 and ds.im_size == (28, 28) and ds.num_classes == 10 and len(ds) == 20
    assert ds.mean == data.NORMALISATION[name][0] and ds.std == data.NORMALISATION[name][1]
    back = ds.denormalise(ds.images)[:, 0] * 255
    assert torch.allclose(back, torch.from_numpy(images).float(), atol=1e-3)
    expected = (images / 255.0 - ds.mean[0]) / ds.std[0]
    assert np.allclose(ds.images[:, 0].numpy(), expected, atol=1e-5)
    test = load(name, "test", root=tmp_path, verify=False, download=False)
    assert len(test) == 10 and test.split == "test"


def test_debian_layout_files_directly_in_folder(tmp_path, monkeypatch):
    deb = tmp_path / "debian-fashion"
    _, labels = make_idx(deb, "train", n=30, gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", deb)
    ds = load("FashionMNIST", download=False)  # found only through the Debian folder
    assert ds.labels.tolist() == labels.tolist() and ds.class_names[0] == "T-shirt/top"
    assert load("fashion-mnist", root=deb, download=False).labels.tolist() == labels.tolist()


def test_idx_validation(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    make_idx(folder, n=20)
    img = folder / IDX_NAMES["train"][0]
    img.write_bytes(b"\x00\x00\x0d\x03" + img.read_bytes()[4:])  # float IDX type, not ubyte
    with pytest.raises(GeoddError, match="magic"):
        load("fashion-mnist", root=tmp_path, verify=False, download=False)
    make_idx(folder, n=20)
    (folder / IDX_NAMES["train"][1]).write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(GeoddError, match="20 images but"):
        load("fashion-mnist", root=tmp_path, verify=False, download=False)
    make_idx(folder, n=20)
    (folder / IDX_NAMES["train"][0]).write_bytes(idx_bytes(np.zeros((20, 28, 28), np.uint8))[:-5])
    with pytest.raises(GeoddError, match="header says"):
        load("fashion-mnist", root=tmp_path, verify=False, download=False)
    make_idx(folder, n=20)
    (folder / IDX_NAMES["train"][0]).write_bytes(idx_bytes(np.zeros((20, 32, 32), np.uint8)))
    with pytest.raises(GeoddError, match="expected"):
        load("fashion-mnist", root=tmp_path, verify=False, download=False)


def test_cifar10_pickle_batches(tmp_path):
    _, batches = make_cifar10(tmp_path)
    ds = load("CIFAR-10", root=tmp_path, verify=False, download=False)
    assert ds.images.shape == (20, 3, 32, 32) and ds.num_classes == 10
    assert ds.class_names[:2] == ["airplane", "automobile"]
    x0, y0 = batches["data_batch_1"]
    assert ds.labels[:4].tolist() == y0
    pix = torch.from_numpy(x0[1].reshape(3, 32, 32)).float() / 255  # row = R plane, G plane, B plane
    assert torch.allclose(ds.denormalise(ds.images[1]), pix, atol=1e-5)
    test = load("cifar10", "test", root=tmp_path, verify=False, download=False)
    assert len(test) == 10 and test.labels.tolist() == batches["test_batch"][1]


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name, n in (("train", 6), ("test", 3)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": [99, 0, 5, 7, 1, 2][:n], b"coarse_labels": [0] * n}, f, protocol=2)
    ds = load("cifar100", root=tmp_path, verify=False, download=False)
    assert ds.num_classes == 100 and ds.labels.tolist() == [99, 0, 5, 7, 1, 2] and ds.channels == 3
    assert ds.counts[99] == 1 and sum(ds.counts) == 6 and len(ds.class_names) == 100


def test_cifar_refuses_foreign_pickles(tmp_path):
    folder, _ = make_cifar10(tmp_path)
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": os.getcwd, b"labels": []}, f)  # a pickle that references a function
    with pytest.raises(GeoddError, match="refusing"):
        load("cifar10", root=tmp_path, verify=False, download=False)


def test_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [9], [10]], dtype=np.uint8)
    scipy_io.savemat(str(tmp_path / "train_32x32.mat"), {"X": x, "y": y})
    ds = load("svhn", root=tmp_path, verify=False, download=False)
    assert ds.images.shape == (5, 3, 32, 32) and ds.labels.tolist() == [0, 1, 2, 9, 0]  # 10 means digit 0
    pix = torch.from_numpy(x[:, :, :, 3].transpose(2, 0, 1).copy()).float() / 255
    assert torch.allclose(ds.denormalise(ds.images[3]), pix, atol=1e-5)


# ----------------------------------------------------------------------------------------- checksums

def test_checksum_content_sha256_gz_and_raw(tmp_path, monkeypatch):
    folder = tmp_path / "FashionMNIST" / "raw"
    make_idx(folder, n=20, gz=True)
    table = {stem: ("sha256", file_hash(folder / f"{stem}.gz", "sha256", decompress=True))
             for stem in IDX_NAMES["train"]}
    monkeypatch.setitem(data.CHECKSUMS, "fashion-mnist", table)
    assert len(load("fashion-mnist", root=tmp_path, download=False)) == 20  # decompressed bytes match
    raw = tmp_path / "raw-root" / "FashionMNIST" / "raw"
    for stem in IDX_NAMES["train"]:  # the same content uncompressed matches the same entries
        raw.mkdir(parents=True, exist_ok=True)
        (raw / stem).write_bytes(gzip.decompress((folder / f"{stem}.gz").read_bytes()))
    assert len(load("fashion-mnist", root=tmp_path / "raw-root", download=False)) == 20
    corrupt(raw / IDX_NAMES["train"][0])
    with pytest.raises(GeoddError, match="checksum mismatch for .*train-images-idx3-ubyte.*delete it"):
        load("fashion-mnist", root=tmp_path / "raw-root", download=False)
    assert len(load("fashion-mnist", root=tmp_path / "raw-root", download=False, verify=False)) == 20


def test_checksum_stored_md5_cifar(tmp_path, monkeypatch):
    folder, batches = make_cifar10(tmp_path, protocol=4)
    names = [f"data_batch_{j}" for j in range(1, 6)] + ["batches.meta"]
    monkeypatch.setitem(data.CHECKSUMS, "cifar10", {n: ("md5", file_hash(folder / n, "md5")) for n in names})
    assert len(load("cifar10", root=tmp_path, download=False)) == 20
    pixels_at = (folder / "data_batch_2").read_bytes().find(batches["data_batch_2"][0].tobytes())
    corrupt(folder / "data_batch_2", offset=pixels_at + 5)  # inside the pixel data: still a valid pickle
    assert len(load("cifar10", root=tmp_path, download=False, verify=False)) == 20
    with pytest.raises(GeoddError, match="data_batch_2.*md5"):
        load("cifar10", root=tmp_path, download=False)


def test_checksum_table_comes_from_torchvision(monkeypatch):
    monkeypatch.setattr(data, "CHECKSUMS", {})
    tv = pytest.importorskip("torchvision.datasets")
    table = data.checksum_table("cifar10")
    assert table["data_batch_1"] == ("md5", dict(tv.CIFAR10.train_list)["data_batch_1"])
    assert set(data.checksum_table("mnist")) == {f for f, _ in tv.MNIST.resources}
    assert "test_32x32.mat" in data.checksum_table("svhn")


# ---------------------------------------------------------------------------------- where data comes from

def test_env_var_is_honoured(tmp_path, monkeypatch):
    _, labels = make_idx(tmp_path / "env" / "MNIST" / "raw", n=20)
    monkeypatch.setenv("GEODD_DATA", os.pathsep.join([str(tmp_path / "empty"), str(tmp_path / "env")]))
    assert load("mnist", verify=False, download=False).labels.tolist() == labels.tolist()
    _, other = make_idx(tmp_path / "explicit" / "MNIST" / "raw", n=30, seed=5)  # root= comes first
    assert len(load("mnist", root=tmp_path / "explicit", verify=False, download=False)) == 30
    assert data.search_roots("mnist", "/r")[:3] == [Path("/r"), tmp_path / "empty", tmp_path / "env"]


def test_default_cache_is_searched(tmp_path):
    make_idx(tmp_path / "xdg-cache" / "geodd" / "data" / "FashionMNIST" / "raw", n=20)
    assert data.default_cache() == tmp_path / "xdg-cache" / "geodd" / "data"
    assert len(load("fashion-mnist", verify=False, download=False)) == 20


def test_missing_data_error_lists_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODD_DATA", str(tmp_path / "env-data"))
    with pytest.raises(DataNotFoundError) as err:
        load("fashion-mnist", root=tmp_path / "mine", download=False)
    msg = str(err.value)
    for place in (tmp_path / "mine" / "FashionMNIST" / "raw", tmp_path / "env-data",
                  tmp_path / "xdg-cache" / "geodd" / "data", tmp_path / "no-debian"):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "\n" not in msg
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py.*GEODD_DATA=.*download=True"):
        load("cifar10", download=False)
    assert issubclass(DataNotFoundError, GeoddError)


def test_failed_download_falls_back_to_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GEODD_DOWNLOAD")
    calls = []

    def offline(spec, split, target):
        calls.append(target)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(data, "_torchvision_download", offline)
    with pytest.raises(DataNotFoundError, match="download into .* failed .*URLError.*fix: set GEODD_DATA"):
        load("cifar10", root=tmp_path / "r")  # download=None: try, then the clear error
    assert calls == [tmp_path / "r"]
    monkeypatch.setenv("GEODD_DOWNLOAD", "0")
    with pytest.raises(DataNotFoundError, match="downloads are off"):
        load("cifar10", root=tmp_path / "r")
    assert len(calls) == 1


def test_download_lands_in_torchvision_layout(tmp_path, monkeypatch):
    def fake(spec, split, target):  # stands in for torchvision: writes its layout under target
        make_idx(target / "MNIST" / "raw", split, n=20, gz=True)

    monkeypatch.setattr(data, "_torchvision_download", fake)
    monkeypatch.setenv("GEODD_DATA", str(tmp_path / "store"))
    assert len(load("mnist", download=True, verify=False)) == 20
    assert (tmp_path / "store" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()


def test_names_and_arguments():
    assert data.resolve_name("CIFAR-10-LT") == ("cifar10", True)
    assert data.resolve_name("Fashion_MNIST") == ("fashion-mnist", False)
    assert data.resolve_name("cifar100lt") == ("cifar100", True)
    with pytest.raises(GeoddError, match="valid names: .*fashion-mnist.*cifar100-lt"):
        load("imagenet")
    with pytest.raises(GeoddError, match="long-tailed"):
        load("digits", imf=10)
    with pytest.raises(GeoddError, match="split"):
        load("digits", "val")
    with pytest.raises(GeoddError, match=">= 1"):
        load("digits-lt", imf=0.5)


# ------------------------------------------------------------------------------------------ long tail

@pytest.mark.parametrize("num_classes,n_max", [(10, 5000), (100, 500)])
@pytest.mark.parametrize("imf", [10, 50, 100, 200])
def test_long_tail_counts_formula(num_classes, n_max, imf):
    counts = long_tail_counts(n_max, num_classes, imf)
    k = num_classes - 1
    assert counts[0] == n_max and len(counts) == num_classes
    assert counts[-1] == math.floor(n_max / imf + 1e-9)
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    for c, n in enumerate(counts):  # exact floor: n^k imf^c <= n_max^k < (n+1)^k imf^c
        assert n ** k * imf ** c <= n_max ** k < (n + 1) ** k * imf ** c
        assert abs(n - n_max * imf ** (-c / k)) < 1 + 1e-9


def test_long_tail_counts_table_and_rounding():
    # papers/csdm_ot.md A.4
    assert long_tail_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    totals = {(10, 10): 20431, (10, 50): 13996, (10, 100): 12406, (10, 200): 11203,
              (100, 10): 19573, (100, 50): 12608, (100, 100): 10847}
    for (c, imf), total in totals.items():
        assert sum(long_tail_counts(5000 if c == 10 else 500, c, imf)) == total
    assert long_tail_counts(5000, 10, 200)[-2:] == [45, 25]
    assert sum(n < 50 for n in long_tail_counts(500, 100, 50)) == 41
    assert long_tail_counts(5000, 2, 10) == [5000, 500]
    # exact integers that plain float arithmetic floors one too low
    assert int(729 * 729.0 ** -1.0) == 0 and long_tail_counts(729, 2, 729) == [729, 1]
    assert long_tail_counts(4096, 7, 64) == [4096, 2048, 1024, 512, 256, 128, 64]
    assert long_tail_counts(7, 1, 10) == [7] and long_tail_counts(6000, 10, 1) == [6000] * 10
    with pytest.raises(GeoddError):
        long_tail_counts(100, 10, 0.5)


def test_long_tail_load_is_seeded_and_test_stays_balanced(tmp_path):
    make_idx(tmp_path / "FashionMNIST" / "raw", "train", n=200)  # 20 per class
    make_idx(tmp_path / "FashionMNIST" / "raw", "test", n=50, seed=1)
    kw = dict(root=tmp_path, verify=False, download=False)
    a = load("fashion-mnist-lt", imf=10, seed=3, **kw)
    b = load("Fashion-MNIST-LT", imf=10, seed=3, **kw)
    c = load("fashion-mnist-lt", imf=10, seed=4, **kw)
    assert a.name == "fashion-mnist-lt" and a.imf == 10
    assert a.counts == long_tail_counts(20, 10, 10) == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images) and a.counts == c.counts
    full = load("fashion-mnist", **kw)
    assert set(np.round(a.images.sum((1, 2, 3)).numpy(), 3)) <= set(np.round(full.images.sum((1, 2, 3)).numpy(), 3))
    assert load("fashion-mnist-lt", **kw).counts[-1] == 0  # default imf 100: floor(20/100)
    test = load("fashion-mnist-lt", "test", imf=10, **kw)
    assert test.counts == [5] * 10


def test_long_tail_subset_helper():
    ds = load("digits")
    lt = data.long_tail_subset(ds, 10, seed=0)
    n_max = min(ds.counts)
    assert lt.counts == long_tail_counts(n_max, 10, 10) and lt.name == "digits-lt" and lt.imf == 10
    assert torch.equal(lt.images, data.long_tail_subset(ds, 10, seed=0).images)
    assert torch.equal(lt.images, load("digits-lt", imf=10, seed=0).images)
    with pytest.raises(GeoddError, match="class 0"):
        data.long_tail_indices(ds.labels, 10, 10, n_max=n_max + 100)


# ------------------------------------------------------------------------------------- Dataset object

def test_digits_fast_and_constants():
    t0 = time.perf_counter()
    tr, te = load("digits"), load("digits", "test")
    assert time.perf_counter() - t0 < 3.0
    assert len(tr) == 1297 and len(te) == 500 and tr.num_classes == 10 and tr.im_size == (8, 8)
    assert min(tr.counts) > 100 and min(te.counts) >= 45  # stratified
    pix = tr.denormalise(tr.images)
    assert pix.min() >= -1e-6 and pix.max() <= 1 + 1e-6
    assert abs(pix.mean().item() - tr.mean[0]) < 1e-5 and abs(pix.std(unbiased=False).item() - tr.std[0]) < 1e-5
    assert abs(tr.images.mean().item()) < 1e-4 and abs(tr.images.std().item() - 1) < 1e-3
    assert torch.equal(tr.images, load("digits").images)  # the split is fixed


def test_index_subset_to_and_normalise():
    ds = load("digits")
    idx = ds.indices_by_class
    assert idx is ds.indices_by_class  # cached
    assert sorted(torch.cat(idx).tolist()) == list(range(len(ds)))
    for c, i in enumerate(idx):
        assert i.dtype == torch.long and bool((ds.labels[i] == c).all()) and bool((i[1:] > i[:-1]).all())
    assert ds.counts == torch.bincount(ds.labels, minlength=10).tolist()
    sub = ds.subset(idx[3][:5])
    assert len(sub) == 5 and sub.counts[3] == 5 and sum(sub.counts) == 5 and sub.name == "digits"
    assert torch.equal(sub.images, ds.images[idx[3][:5]])
    moved = ds.to("cpu")
    assert moved.indices_by_class[2].tolist() == idx[2].tolist()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(ds.normalise(ds.denormalise(x)), x)
    assert ds.denormalise(x).dtype == torch.float64
    assert "digits" in repr(ds) and "1297" in repr(ds)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_dataset_on_device(device):
    ds = per_class_subset(load("digits"), 4, seed=0).to(device)
    assert ds.images.device.type == device and ds.labels.device.type == device
    assert ds.counts == [4] * 10 and ds.indices_by_class[5].device.type == device
    sub = ds.subset(ds.indices_by_class[5])
    assert bool((sub.labels == 5).all()) and sub.images.device.type == device
    x = ds.denormalise(ds.images)
    assert x.device.type == device and torch.allclose(ds.normalise(x), ds.images, atol=1e-5)
    assert per_class_subset(ds, 2, seed=None).labels.device.type == device


def test_denormalise_three_channels():
    ds = Dataset("t", torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), 2, (0.1, 0.2, 0.3), (0.5, 1.0, 2.0), ["a", "b"])
    out = ds.denormalise(torch.ones(2, 3, 4, 4))
    assert torch.allclose(out[:, 0], torch.tensor(0.6)) and torch.allclose(out[:, 2], torch.tensor(2.3))
    with pytest.raises(GeoddError):
        Dataset("t", torch.zeros(2, 3, 4, 4), torch.tensor([0]), 2, (0.0,) * 3, (1.0,) * 3, ["a", "b"])


def test_per_class_subset():
    ds = load("digits")
    a = per_class_subset(ds, 7, seed=1)
    assert a.counts == [7] * 10 and a.labels.tolist() == [c for c in range(10) for _ in range(7)]
    assert torch.equal(a.images, per_class_subset(ds, 7, seed=1).images)
    assert not torch.equal(a.images, per_class_subset(ds, 7, seed=2).images)
    first = per_class_subset(ds, 3, seed=None)
    assert torch.equal(first.images[:3], ds.images[ds.indices_by_class[0][:3]])
    with pytest.raises(GeoddError, match="fewer than"):
        per_class_subset(ds, 200)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", Path("/usr/share/datasets/fashion-mnist"))
    monkeypatch.setattr(data, "CHECKSUMS", {"fashion-mnist": ORIGINAL_CHECKSUMS["fashion-mnist"]})
    t0 = time.perf_counter()
    ds = load("fashion-mnist", download=False)  # verified against the sha256 table
    seconds = time.perf_counter() - t0
    assert ds.images.shape == (60000, 1, 28, 28) and ds.counts == [6000] * 10
    assert abs(ds.images.mean().item()) < 0.01 and abs(ds.images.std().item() - 1) < 0.01
    assert seconds < 5.0
