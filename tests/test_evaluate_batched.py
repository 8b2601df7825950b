"""Batched evaluation (``geodd.evaluate.train_nets_batched`` / ``evaluate_sets``, ``geodd.runs.cached_evaluate_many``)
equals the sequential protocol within float tolerance. Smoke sizes: tiny random sets, a few epochs, one thread."""
import json

import pytest
import torch

import geodd.evaluate as ev
from geodd import GeoddError
from geodd.augment import DSA
from geodd.data import per_class_subset
from geodd.evaluate import (batch_method, evaluate_images, evaluate_sets, group_size, held_out_accuracy,
                            random_subset, train_net, train_nets_batched)
from geodd.nets import make_network

#: fp32: the grouped / vmapped kernels sum in another order, so weights agree to float rounding grown over the steps
FP32 = {"rtol": 1e-4, "atol": 1e-5}
#: bf16 autocast: rounding to 8 bits of mantissa in the forward; differences stay at that level
BF16 = {"rtol": 2e-2, "atol": 2e-3}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _sets(m: int, n: int, size=(16, 16), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, *size, generator=g), torch.randint(0, 10, (n,), generator=g)) for _ in range(m)]


def _trained(arch, sets, seeds, size, *, batched, method="auto", **kw):
    nets = [make_network(arch, 1, 10, size, seed=s) for s in seeds]
    if batched:
        return train_nets_batched(nets, sets, seeds=seeds, method=method, **kw)
    return [train_net(net, x, y, seed=s, **kw) for net, (x, y), s in zip(nets, sets, seeds)]


def _assert_same_weights(a, b, tol):
    for net_a, net_b in zip(a, b, strict=True):
        for (name, p), q in zip(net_a.named_parameters(), net_b.parameters(), strict=True):
            torch.testing.assert_close(q.detach(), p.detach(), **tol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("arch", ["convnet", "lenet", "mlp"])
def test_batched_weights_match_sequential_train_net(arch):
    """Own set, own seed, own shuffling and DSA per member; two batches per epoch (the last one short) and the
    learning-rate drop at half."""
    sets, seeds = _sets(3, 6), [11, 1012, 7]
    kw = dict(epochs=4, batch_size=4, dsa=DSA())
    _assert_same_weights(_trained(arch, sets, seeds, (16, 16), batched=False, **kw),
                         _trained(arch, sets, seeds, (16, 16), batched=True, **kw), FP32)


def test_batched_weights_match_under_bf16_autocast():
    sets, seeds = _sets(2, 5), [3, 4]
    kw = dict(epochs=3, batch_size=4, dsa=DSA(), amp="bf16")
    _assert_same_weights(_trained("convnet", sets, seeds, (16, 16), batched=False, **kw),
                         _trained("convnet", sets, seeds, (16, 16), batched=True, **kw), BF16)


def test_vmap_path_matches_sequential_for_a_convnet():
    """The general path (torch.vmap over functional_call) gives the same weights as the grouped one."""
    sets, seeds = _sets(2, 5), [1, 2]
    kw = dict(epochs=2, batch_size=4, dsa=DSA())
    _assert_same_weights(_trained("convnet", sets, seeds, (16, 16), batched=False, **kw),
                         _trained("convnet", sets, seeds, (16, 16), batched=True, method="vmap", **kw), FP32)


#: every architecture of make_network (and the ConvNet norms) with the path it trains by
PATHS = {"convnet": "grouped", "mlp": "grouped", "lenet": "grouped", "alexnet": "grouped", "vgg11": "grouped",
         "resnet18": "vmap", "convnetLN": "vmap", "convnetBN": "sequential", "convnetGN": "grouped",
         "convnetNN": "grouped", "convnetD2": "grouped"}


def test_every_architecture_has_a_path():
    from geodd.nets import ARCHITECTURES
    assert set(ARCHITECTURES) <= set(PATHS)


@pytest.mark.parametrize("arch", list(PATHS))
def test_each_architecture_trains_batched_equal_or_falls_back(arch, monkeypatch):
    """Nets with buffers (batch norm updates running statistics in place) train one after another with
    ``train_net``; the others train together and end with the same weights."""
    size = (32, 32) if arch in ("alexnet", "vgg11") else (16, 16)
    assert batch_method(make_network(arch, 1, 10, size, seed=0)) == PATHS[arch]
    sets, seeds = _sets(2, 3, size), [5, 6]
    kw = dict(epochs=2, batch_size=4, dsa=DSA())
    want = _trained(arch, sets, seeds, size, batched=False, **kw)
    calls = []
    monkeypatch.setattr(ev, "train_net", lambda *a, **k: calls.append(1) or train_net(*a, **k))
    got = _trained(arch, sets, seeds, size, batched=True, **kw)
    assert len(calls) == (2 if PATHS[arch] == "sequential" else 0)
    # resnet18: biases of its instance norms start at 0 and stay near 1e-4, so compare at the weights' scale
    _assert_same_weights(want, got, {"rtol": 1e-3, "atol": 1e-4} if arch == "resnet18" else FP32)


def test_vmap_nets_under_bf16_fall_back_to_train_net(monkeypatch):
    """vmap does not autocast the ops it batches, so bf16 nets of the vmap path train one by one."""
    calls = []
    monkeypatch.setattr(ev, "train_net", lambda *a, **k: calls.append(1) or train_net(*a, **k))
    _trained("convnetLN", _sets(2, 3), [0, 1], (16, 16), batched=True, epochs=1, amp="bf16")
    assert len(calls) == 2


def test_a_group_must_share_shape_and_architecture():
    nets = [make_network("mlp", 1, 10, (16, 16), seed=s) for s in (0, 1)]
    with pytest.raises(GeoddError, match="one shape"):
        train_nets_batched(nets, _sets(1, 4) + _sets(1, 5), seeds=[0, 1], epochs=1)
    with pytest.raises(GeoddError, match="one architecture"):
        train_nets_batched([nets[0], make_network("convnet", 1, 10, (16, 16), seed=1)], _sets(2, 4), seeds=[0, 1],
                           epochs=1)
    with pytest.raises(GeoddError, match="one seed per net"):
        train_nets_batched(nets, _sets(2, 4), seeds=[0], epochs=1)


def test_group_size_bounds_the_images_per_step():
    assert group_size(10, max_group=8) == 8                   # IPC 1: the cap binds
    assert group_size(100, max_group=16) == ev.GROUP_IMAGES // 100
    assert group_size(5000, batch_size=256, max_group=16) == ev.GROUP_IMAGES // 256
    assert group_size(10**6, batch_size=10**6) == 1


def _sequential(sets, seeds, test, runs, epochs):
    """The protocol written out: net r of set i trained alone with seed seeds[i] * 1000 + r, then tested."""
    out = []
    for (x, y), seed in zip(sets, seeds):
        accs = []
        for r in range(runs):
            net = make_network("convnet", test.channels, test.num_classes, test.im_size, seed=seed * 1000 + r)
            train_net(net, x, y, epochs=epochs, dsa=DSA("color_crop_cutout_scale_rotate"), seed=seed * 1000 + r)
            accs.append(held_out_accuracy(net, test)[0])
        out.append(accs)
    return out


def test_evaluate_sets_equals_sequential_evaluation_across_groups_and_shapes(digits, digits_test):
    """Sets of two shapes (IPC 1 and 2), two runs each, groups cut at 2 nets: the same accuracies as training each
    net alone (a flipped prediction or two at most: the weights differ by float rounding)."""
    test = per_class_subset(digits_test, 10, seed=0)
    sets = [random_subset(digits, 1, seed=0), random_subset(digits, 2, seed=1), random_subset(digits, 1, seed=2)]
    seeds = [0, 1, 2]
    got = evaluate_sets(sets, test, runs=2, epochs=3, seeds=seeds, max_group=2, progress=False)
    want = _sequential(sets, seeds, test, runs=2, epochs=3)
    assert [len(r.accs) for r in got] == [2, 2, 2]
    for res, accs in zip(got, want):
        assert res.accs == pytest.approx(accs, abs=2.5 / len(test))
    one = evaluate_images(*sets[1], test, runs=2, epochs=3, seed=1, progress=False)
    assert one.accs == pytest.approx(got[1].accs, abs=2.5 / len(test))
    assert all(r.seconds > 0 for r in got)


def _run_dir(path, images, labels, snapshots=None):
    from geodd.synset import SynSet
    path.mkdir(parents=True)
    SynSet(images, labels, {"dataset": "digits"}, snapshots=snapshots or {}).save(path / "synset.pt")
    (path / "record.json").write_text(json.dumps({"config": {"dataset": "digits"}}))
    return path


def test_cached_evaluate_many_writes_what_cached_evaluate_writes(digits, digits_test, tmp_path, monkeypatch):
    from geodd import runs
    test = per_class_subset(digits_test, 5, seed=0)
    sets = [random_subset(digits, 1, seed=s) for s in range(3)]
    many = [_run_dir(tmp_path / "many" / str(i), x, y, {0: x + 1}) for i, (x, y) in enumerate(sets)]
    one = [_run_dir(tmp_path / "one" / str(i), x, y, {0: x + 1}) for i, (x, y) in enumerate(sets)]
    kw = dict(epochs=2, runs=1, progress=False)
    # the final sets of three runs (seeds 0, 1, 2) and a snapshot of the first, in one call; the first folder twice
    got = runs.cached_evaluate_many(many + [many[0], many[0]], test, seeds=[0, 1, 2, 0, 0],
                                    snapshots=[None, None, None, None, 0], **kw)
    want = [runs.cached_evaluate(d, test, seed=s, **kw) for d, s in zip(one, (0, 1, 2))]
    want.append(runs.cached_evaluate(one[0], test, seed=0, snapshot=0, **kw))
    assert got[3] == got[0]
    for d_many, d_one in zip(many, one):
        rec_many = json.loads((d_many / "record.json").read_text())
        rec_one = json.loads((d_one / "record.json").read_text())
        assert rec_many.keys() == rec_one.keys() and rec_many["evals"].keys() == rec_one["evals"].keys()
        for key, entry in rec_one["evals"].items():
            assert rec_many["evals"][key].keys() == entry.keys()
            assert rec_many["evals"][key]["accs"] == pytest.approx(entry["accs"], abs=2.5 / len(test))
        assert rec_many["eval"]["accs"] == pytest.approx(rec_one["eval"]["accs"], abs=2.5 / len(test))
    for g, w in zip(got[:3] + got[4:], want, strict=True):
        assert g["accs"] == pytest.approx(w["accs"], abs=2.5 / len(test))

    # a second call, and cached_evaluate on a folder the many-version evaluated, compute nothing
    monkeypatch.setattr(runs, "evaluate_sets", lambda *a, **k: pytest.fail("evaluated again"))
    assert runs.cached_evaluate_many(many, test, seeds=[0, 1, 2], **kw) == got[:3]
    assert runs.cached_evaluate(many[2], test, seed=2, **kw) == got[2]
    assert runs.cached_evaluate(many[0], test, seed=0, snapshot=0, **kw) == got[4]
