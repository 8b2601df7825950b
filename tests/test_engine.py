"""The distillation engine: shapes, seeding, the batched-vs-loop loss, checkpoint/resume, the NaN guard."""
from __future__ import annotations

import pytest
import torch

from geodd import GeoddError
from geodd.augment import DSA, strategy_for
from geodd.distill import DistillConfig, NonFiniteLossError, distill, embed_batches
from geodd.synset import SynSet
from geodd.matchers import Matcher, dm_loss
from geodd.nets import make_network


def cfg(**kw):
    base = dict(dataset="digits", method="dm", ipc=2, iterations=3, batch_real=16, seed=0)
    base.update(kw)
    return DistillConfig(**base)


def test_dm_loss_is_squared_mean_difference():
    real, syn = torch.randn(50, 7), torch.randn(5, 7)
    assert torch.isclose(dm_loss(real, syn), ((real.mean(0) - syn.mean(0)) ** 2).sum())
    assert dm_loss(real, real) == 0


def test_distill_returns_synset_and_record(digits):
    synset, record = distill(cfg(), train=digits, progress=False)
    assert synset.images.shape == (20, 1, 8, 8)
    assert synset.labels.tolist() == sorted(list(range(10)) * 2)
    assert len(record["loss"]) == 3 and all(l >= 0 for l in record["loss"])
    assert {"config", "seed", "versions", "device", "timings", "loss"} <= set(record)
    assert record["versions"]["torch"] == torch.__version__.split("+")[0] or record["versions"]["torch"]


def test_distill_moves_images_and_lowers_the_loss(digits):
    c = cfg(iterations=30, dsa=False, batch_real=64, ipc=1, snapshot_at=(0,))
    synset, record = distill(c, train=digits, progress=False)
    assert (synset.images - synset.snapshots[0]).abs().max() > 1e-3  # lr_img=0 is refused: the snapshot at 0
    first, last = sum(record["loss"][:5]) / 5, sum(record["loss"][-5:]) / 5
    assert last < first


def test_same_seed_same_result_other_seed_differs(digits):
    a, _ = distill(cfg(), train=digits, progress=False)
    b, _ = distill(cfg(), train=digits, progress=False)
    c, _ = distill(cfg(seed=1), train=digits, progress=False)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("chunk", [None, -1, 7])
def test_batched_call_gives_the_per_class_loop_loss(digits, chunk):
    """One network call for all classes (or chunks across class borders) == the original per-class loop
    (instance norm is per sample)."""
    net = make_network("convnet", 1, 10, (8, 8), seed=0)
    dsa = DSA(strategy_for("digits"))
    real = [digits.images[m[:32]] for m in digits.indices_by_class]
    syn = [digits.images[m[32:34]] for m in digits.indices_by_class]
    seeds = list(range(10))
    aug = lambda xs: [dsa(x, torch.Generator().manual_seed(s)) for x, s in zip(xs, seeds)]  # noqa: E731
    real_a, syn_a = aug(real), aug(syn)
    fr = embed_batches(net, real_a, grad=False, amp=None, chunk=chunk)
    fs = embed_batches(net, syn_a, grad=True, amp=None, chunk=chunk)
    batched = sum(dm_loss(r, s) for r, s in zip(fr, fs))
    loop = sum(dm_loss(net.embed(r).detach(), net.embed(s)) for r, s in zip(real_a, syn_a))
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [None, -1, 7])
def test_batch_norm_nets_keep_per_class_batch_statistics(digits, chunk):
    """A net with batch statistics (convnetbn) must see each class's batch alone, as the original per-class loop
    does: chunks (or one call for all classes) would mix statistics across classes and change the loss."""
    net = make_network("convnetbn", 1, 10, (8, 8), seed=0)
    net.train()
    real = [digits.images[m[:32]] for m in digits.indices_by_class]
    syn = [digits.images[m[32:34]] for m in digits.indices_by_class]
    fr = embed_batches(net, real, grad=False, amp=None, chunk=chunk)
    fs = embed_batches(net, syn, grad=True, amp=None, chunk=chunk)
    batched = sum(dm_loss(r, s) for r, s in zip(fr, fs))
    with torch.no_grad():
        loop_real = [net.embed(r) for r in real]
    loop = sum(dm_loss(r, net.embed(s)) for r, s in zip(loop_real, syn))
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-6)


class _Interrupt(Exception):
    pass


def test_checkpoint_and_resume_give_the_uninterrupted_result(digits, tmp_path):
    full, _ = distill(cfg(iterations=4), train=digits, progress=False)

    def stop_at_3(it, images, labels):
        if it == 3:
            raise _Interrupt

    c = cfg(iterations=4, checkpoint_every=2)
    with pytest.raises(_Interrupt):
        distill(c, train=digits, out=tmp_path, progress=False, callback=stop_at_3)
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "synset.pt").exists()
    resumed, record = distill(c, train=digits, out=tmp_path, progress=False)
    assert record["timings"]["resumed_from"] == 2
    torch.testing.assert_close(resumed.images, full.images)
    assert not (tmp_path / "checkpoint.pt").exists()


METHODS = ("dm", "hdd", "sdd", "csdm", "geodm")
_IDM_SMALL = {"model_train_steps": 1, "train_batch": 16, "net_generate_interval": 2}


@pytest.mark.parametrize("inner", [1, 3])
@pytest.mark.parametrize("schedule", ["dm", "idm"])
@pytest.mark.parametrize("method", METHODS)
def test_resume_is_exact_for_every_matcher_schedule_and_inner_steps(digits, tmp_path, method, schedule, inner,
                                                                     one_thread):
    """Stopped after iteration 2 (inside the first network's 3 inner steps for inner=3), resumed: the same set
    as the uninterrupted run, exactly (the same code path run twice)."""
    c = cfg(method=method, schedule=schedule, inner_steps=inner, ipc=1, iterations=5, width=16, checkpoint_every=1,
            idm=_IDM_SMALL if schedule == "idm" else {})
    full, full_record = distill(c, train=digits, progress=False)

    def stop_at_3(it, images, labels):
        if it == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        distill(c, train=digits, out=tmp_path, progress=False, callback=stop_at_3)
    resumed, record = distill(c, train=digits, out=tmp_path, progress=False)
    assert record["timings"]["resumed_from"] == 2
    torch.testing.assert_close(resumed.images, full.images, rtol=0, atol=0)
    assert record["loss"] == full_record["loss"] and record["geometry"] == full_record["geometry"]


def test_checkpoint_of_another_config_is_refused_and_overwrite_starts_over(digits, tmp_path):
    from geodd.distill import CheckpointError

    def stop_at_2(it, images, labels):
        if it == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        distill(cfg(checkpoint_every=1, seed=3), train=digits, out=tmp_path, progress=False, callback=stop_at_2)
    with pytest.raises(CheckpointError, match=r"another configuration \(digits-dm-ipc2-it3-s3-.*overwrite"):
        distill(cfg(checkpoint_every=1), train=digits, out=tmp_path, progress=False)
    synset, record = distill(cfg(checkpoint_every=1), train=digits, out=tmp_path, progress=False, overwrite=True)
    assert record["timings"]["resumed_from"] == 0
    alone, _ = distill(cfg(), train=digits, progress=False)
    torch.testing.assert_close(synset.images, alone.images, rtol=0, atol=0)


def test_finished_run_is_returned_not_recomputed_and_another_config_is_refused(digits, tmp_path):
    first, record = distill(cfg(), train=digits, out=tmp_path, progress=False)
    record_text = (tmp_path / "record.json").read_text()
    again, again_record = distill(cfg(checkpoint_every=5), train=digits, out=tmp_path, progress=False)
    torch.testing.assert_close(again.images, first.images, rtol=0, atol=0)
    assert again_record == __import__("json").loads(record_text) and (tmp_path / "record.json").read_text() == \
        record_text
    with pytest.raises(GeoddError, match="another configuration.*overwrite"):
        distill(cfg(seed=1), train=digits, out=tmp_path, progress=False)
    other, _ = distill(cfg(seed=1), train=digits, out=tmp_path, progress=False, overwrite=True)
    assert (other.images - first.images).abs().max() > 1e-3


def test_checksummed_files_catch_a_changed_value(tmp_path):
    from geodd.io import load_tensors, save_tensors
    path = tmp_path / "t.pt"
    save_tensors(path, {"format": "x/1", "a": torch.arange(4.0), "step": torch.tensor(3)}, checksum=True)
    assert load_tensors(path, "x/1", checksum=True)["a"].tolist() == [0, 1, 2, 3]
    payload = torch.load(path, weights_only=True)
    payload["a"][1] = 1.0000001
    torch.save(payload, path)
    with pytest.raises(GeoddError, match="fails its checksum"):
        load_tensors(path, "x/1")
    torch.save({"format": "x/1", "a": torch.zeros(1)}, path)  # no checksum: refused only where one is required
    load_tensors(path, "x/1")
    with pytest.raises(GeoddError, match="fails its checksum"):
        load_tensors(path, "x/1", checksum=True)


def test_run_lock_excludes_a_second_holder_and_takes_over_a_dead_ones(tmp_path):
    import json
    import os
    from geodd.io import LOCK_NAME, LockedError, RunLock
    with RunLock(tmp_path / "run") as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid() and {"host", "started"} <= set(info)
        with pytest.raises(LockedError, match=f"pid {os.getpid()} on "):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 1, "host": "here", "started": "then"}))
    with RunLock(tmp_path / "kept"):  # a lock file nobody holds (its process died) is taken over
        assert json.loads((tmp_path / "kept" / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert (tmp_path / "kept").exists() and not (tmp_path / "kept" / LOCK_NAME).exists()


def test_divergence_is_warned_once_and_recorded(digits):
    from geodd.distill import DivergenceWarning, loss_rising
    with pytest.warns(DivergenceWarning, match="iteration 1: images reach") as caught:
        _, record = distill(cfg(lr_img=1e7, iterations=3), train=digits, progress=False)
    assert len([w for w in caught if issubclass(w.category, DivergenceWarning)]) == 1
    assert record["divergence"]["iteration"] == 1
    _, calm = distill(cfg(), train=digits, progress=False)
    assert "divergence" not in calm
    assert loss_rising([float(i) for i in range(1, 41)]) and loss_rising([2.0 ** (i // 10) for i in range(40)])
    assert not loss_rising([1.0] * 40) and not loss_rising(list(range(30)))
    assert not loss_rising([1.0, 5.0] * 20)  # noisy, not rising


def test_long_tailed_subset_keeps_its_imbalance(tmp_path):
    from geodd.distill import load_training_data
    full = load_training_data(DistillConfig(dataset="digits-lt", imf=10, ipc=1, iterations=1))
    sub = load_training_data(DistillConfig(dataset="digits-lt", imf=10, ipc=1, iterations=1, train_per_class=40))
    assert max(sub.counts) == 40 and sub.counts == sorted(sub.counts, reverse=True)
    ratio = max(sub.counts) / min(sub.counts)
    assert abs(ratio - max(full.counts) / min(full.counts)) / ratio < 0.25  # the imbalance, up to rounding
    balanced = load_training_data(DistillConfig(dataset="digits", ipc=1, iterations=1, train_per_class=40))
    assert set(balanced.counts) == {40}


class _NaNAt(Matcher):
    def __init__(self, at):
        super().__init__()
        self.at, self.it = at, 0

    def start_iteration(self, iteration, generator, feature_dim, device):
        self.it = iteration

    def forward(self, real, syn, cls=0):
        loss = dm_loss(real, syn)
        return loss * float("nan") if self.it == self.at else loss


def test_nan_guard_names_the_iteration(digits, tmp_path):
    with pytest.raises(NonFiniteLossError, match="iteration 1"):
        distill(cfg(), train=digits, matcher=_NaNAt(1), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kw,msg", [(dict(iterations=0), "iterations"), (dict(method="nope"), "unknown method"),
                                    (dict(ipc=0), "ipc"), (dict(keep=0.0), "keep"), (dict(init="zeros"), "init")])
def test_bad_config_is_a_clear_error(kw, msg):
    with pytest.raises(GeoddError, match=msg):
        cfg(**kw).validate()


def test_ipc_larger_than_a_class_is_an_error(digits):
    small = digits.subset(torch.cat([m[:3] for m in digits.indices_by_class]))
    with pytest.raises(GeoddError, match="larger than class"):
        distill(cfg(ipc=5), train=small, progress=False)


def test_synset_round_trip_with_weights_only(digits, tmp_path):
    synset, _ = distill(cfg(iterations=1), train=digits, progress=False)
    synset.save(tmp_path / "s.pt")
    raw = torch.load(tmp_path / "s.pt", weights_only=True)
    assert raw["format"].startswith("geodd.synset")
    back = SynSet.load(tmp_path / "s.pt")
    assert torch.equal(back.images, synset.images) and back.config["ipc"] == 2


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_corrupt_or_foreign_synset_is_a_clear_error(tmp_path, content):
    path = tmp_path / "s.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a foreign but valid torch file
    else:
        path.write_bytes(content)
    with pytest.raises(GeoddError, match="not a"):
        SynSet.load(path)


def test_options_bf16_channels_last_inner_steps_run(digits):
    synset, record = distill(cfg(amp="bf16", channels_last=True, inner_steps=2, iterations=4), train=digits,
                             progress=False)
    assert torch.isfinite(synset.images).all() and len(record["loss"]) == 4


def test_partition_expand_inverts_pack_up_to_resampling():
    from geodd.schedules import partition_expand, partition_pack
    smooth = torch.randn(8, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.interpolate(smooth, size=(8, 8), mode="bilinear", align_corners=False)
    packed = partition_pack(x, 2)
    assert packed.shape == (2, 1, 8, 8)
    expanded = partition_expand(packed, 2)
    assert expanded.shape == (8, 1, 8, 8)
    # each expanded patch is a blurred version of its source image: far closer to it than to the others
    d = torch.cdist(expanded.flatten(1), x.flatten(1))
    assert (d.argmin(1) == torch.arange(8)).all()


def test_idm_schedule_runs_with_any_matcher_and_expands_for_evaluation(digits):
    c = cfg(schedule="idm", ipc=1, iterations=3, lr_img=0.2,
            idm={"initial_nets": 2, "fetch_net_num": 1, "model_train_steps": 2, "train_batch": 32,
                 "net_generate_interval": 2})
    synset, record = distill(c, train=digits, progress=False)
    assert synset.images.shape == (10, 1, 8, 8)
    x, y = synset.training_set()
    assert x.shape == (40, 1, 8, 8) and torch.bincount(y).tolist() == [4] * 10
    assert record["timings"]["pool_train_s"] > 0 and len(record["loss"]) == 3
    with pytest.raises(GeoddError, match="unknown idm option 'nets'; valid: net_num: int"):
        cfg(schedule="idm", idm={"nets": 3})
    with pytest.raises(GeoddError, match="'ce_weight' must be non-negative"):
        cfg(schedule="idm", idm={"ce_weight": -1.0})


def test_joint_step_equals_per_class_steps(digits):
    """IDM updates one class at a time; with per-sample norms the class losses are separable, so one joint
    SGD step on the summed loss is exactly the per-class steps. Checked on a single iteration."""
    net = make_network("convnet", 1, 10, (8, 8), seed=0)
    for q in net.parameters():
        q.requires_grad_(False)
    real = [digits.images[m[:16]] for m in digits.indices_by_class]
    init = torch.cat([digits.images[m[16:18]] for m in digits.indices_by_class])
    fr = embed_batches(net, real, grad=False, amp=None)
    joint = init.clone().requires_grad_(True)
    loss = sum(dm_loss(fr[c], net.embed(joint[2 * c:2 * c + 2])) for c in range(10))
    loss.backward()
    per_class = init.clone()
    for c in range(10):
        x = init[2 * c:2 * c + 2].clone().requires_grad_(True)
        dm_loss(fr[c], net.embed(x)).backward()
        per_class[2 * c:2 * c + 2] -= x.grad
    torch.testing.assert_close(init - joint.grad, per_class)


def test_config_stores_typed_options_and_serialises_their_overrides():
    from geodd.schedules import IDMOptions
    c = cfg(schedule="idm", idm={"expand": 1})
    assert isinstance(c.idm, IDMOptions) and c.idm.expand == 1
    d = c.as_dict()
    assert d["idm"] == {"expand": 1} and d["matcher"] == {}
    back = DistillConfig.from_dict(d)
    assert back == c and back.key() == c.key()
    # giving a default explicitly is the same run
    assert cfg(idm={"expand": 2}).key() == cfg().key()


def test_fp32_spellings_are_one_config():
    assert cfg(amp="fp32").key() == cfg(amp=None).key() == cfg(amp="float32").key() != cfg(amp="bf16").key()
