"""Paired randomness (``geodd.streams``): runs with one seed draw the same networks, real batches and
augmentations whatever their matcher draws, and the record's ``trace`` shows it."""
from __future__ import annotations

import pytest
import torch

from geodd.distill import DistillConfig, distill
from geodd.streams import STREAMS, Streams, Trace, digest, same_draws, stream_seed


def cfg(**kw):
    base = dict(dataset="digits", method="dm", ipc=2, iterations=4, batch_real=16, seed=3, width=16)
    base.update(kw)
    return DistillConfig(**base)


def test_stream_seeds_are_distinct_stable_and_62_bit():
    seeds = {stream_seed(0, n) for n in STREAMS} | {stream_seed(1, n) for n in STREAMS}
    assert len(seeds) == 2 * len(STREAMS)
    assert all(0 <= s < 2**62 for s in seeds)
    assert stream_seed(7, "dsa") == stream_seed(7, "dsa")
    with pytest.raises(KeyError, match="unknown random stream"):
        stream_seed(0, "other")


def test_a_draw_in_one_stream_does_not_shift_another():
    a, b = Streams(5), Streams(5)
    torch.rand(1000, generator=a["matcher"])  # one method's matcher draws, the other's does not
    assert torch.equal(torch.rand(3, generator=a["real"]), torch.rand(3, generator=b["real"]))
    state = a.get_state()
    x = torch.rand(4, generator=a["nets"])
    a.set_state(state)
    assert torch.equal(torch.rand(4, generator=a["nets"]), x)


def test_digest_depends_on_values_dtype_and_shape():
    t = torch.arange(6, dtype=torch.float32)
    assert digest([t]) == digest([t.clone()])
    assert digest([t]) != digest([t.double()])
    assert digest([t]) != digest([t.view(2, 3)])
    assert digest([t]) != digest([t + 1])
    assert len(digest([t])) == 12


# HDD at keep=1 (its matcher alone: pruning changes the real set by design); SDD draws frequencies and GeoDM
# builds heads and OT subsamples from the matcher stream
PAIRED = [("dm", {}), ("sdd", {}), ("hdd", {}), ("geodm", {}), ("csdm", {})]


def test_methods_with_one_seed_have_identical_traces(digits, one_thread):
    records = {m: distill(cfg(method=m, matcher=o), train=digits, progress=False)[1] for m, o in PAIRED}
    dm = records["dm"]
    assert len(dm["trace"]["nets"]) == 4 and len(dm["trace"]["real"]) == 4 and len(dm["trace"]["dsa"]) == 4
    assert len(set(dm["trace"]["nets"])) == 4  # a fresh network every round
    for m, rec in records.items():
        assert rec["trace"] == dm["trace"], m
        assert same_draws(rec, dm)
    # the methods still differ: the same draws, another loss
    assert records["sdd"]["loss"] != dm["loss"]


def test_another_seed_draws_differently_and_the_trace_catches_it(digits, one_thread):
    _, a = distill(cfg(), train=digits, progress=False)
    _, b = distill(cfg(seed=4), train=digits, progress=False)
    assert not same_draws(a, b)
    assert all(x != y for x, y in zip(a["trace"]["nets"], b["trace"]["nets"]))
    assert not same_draws(a, {"loss": []})  # no trace: not shown to be paired


def test_the_trace_digests_the_networks_the_run_used(digits, one_thread):
    """The first network's digest is that of a ConvNet built from the ``nets`` stream's first seed."""
    from geodd.nets import make_network
    from geodd.schedules import seed_from
    c = cfg(iterations=1)
    _, rec = distill(c, train=digits, progress=False)
    seed = seed_from(Streams(c.seed)["nets"])
    net = make_network("convnet", 1, 10, (8, 8), seed=seed, width=16)
    assert rec["trace"]["nets"][0] == digest(net.state_dict().values())


def test_inner_steps_record_one_entry_per_network(digits, one_thread):
    _, rec = distill(cfg(iterations=6, inner_steps=3), train=digits, progress=False)
    assert [len(v) for v in rec["trace"].values()] == [2, 2, 2]


def test_idm_pool_members_share_dm_network_seeds(digits, one_thread):
    """IDM's pool takes its members' seeds from the same ``nets`` stream as DM's fresh networks: the pool's
    first members are DM's first networks; its training draws come from the ``pool`` stream."""
    idm = {"initial_nets": 2, "net_num": 3, "model_train_steps": 1, "train_batch": 8, "net_generate_interval": 2,
           "fetch_net_num": 1}
    _, dm = distill(cfg(), train=digits, progress=False)
    _, pool = distill(cfg(schedule="idm", idm=idm), train=digits, progress=False)
    assert pool["trace"]["nets"][:2] == dm["trace"]["nets"][:2]
    assert pool["trace"]["real"] == dm["trace"]["real"] and pool["trace"]["dsa"] == dm["trace"]["dsa"]


def test_trace_survives_a_resume(digits, tmp_path, one_thread):
    c = cfg(iterations=5, checkpoint_every=1, schedule="idm",
            idm={"initial_nets": 2, "model_train_steps": 1, "train_batch": 8, "net_generate_interval": 2})
    _, full = distill(c, train=digits, progress=False)

    class Stop(Exception):
        pass

    def stop(it, images, labels):
        if it == 3:
            raise Stop

    with pytest.raises(Stop):
        distill(c, train=digits, out=tmp_path, progress=False, callback=stop)
    _, resumed = distill(c, train=digits, out=tmp_path, progress=False)
    assert resumed["timings"]["resumed_from"] == 2  # the callback at 3 runs before its checkpoint
    assert resumed["trace"] == full["trace"]


def test_trace_state_round_trip():
    t = Trace()
    t.round([torch.tensor([1, 2])], [5, 6])
    assert Trace(t.as_dict()).as_dict() == t.as_dict()
