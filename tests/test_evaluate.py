import numpy as np
import pytest
import torch

from geodd import GeoddError
from geodd.evaluate import (class_groups, evaluate_images, group_accuracy, random_subset, held_out_accuracy,
                            whole_dataset)
from geodd.nets import make_network


def test_training_on_real_digits_beats_chance(digits, digits_test):
    x, y = random_subset(digits, 10, seed=0)
    res = evaluate_images(x, y, digits_test, runs=2, epochs=30, progress=False)
    assert len(res.accs) == 2 and res.mean > 0.5
    assert len(res.per_class) == 10
    assert res.std == pytest.approx(np.std(res.accs))


def test_random_subset_is_seeded_and_balanced(digits):
    a, la = random_subset(digits, 3, seed=1)
    b, _ = random_subset(digits, 3, seed=1)
    assert torch.equal(a, b) and torch.bincount(la).tolist() == [3] * 10
    with pytest.raises(GeoddError, match="fewer than ipc"):
        random_subset(digits, 10_000)


def test_per_class_accuracy_is_consistent_with_accuracy(digits_test):
    net = make_network("convnet", 1, 10, (8, 8), seed=0)
    acc, per_class = held_out_accuracy(net, digits_test)
    counts = torch.bincount(digits_test.labels, minlength=10).numpy()
    assert acc == pytest.approx(float(np.dot(per_class, counts) / counts.sum()))


def test_head_medium_tail_weighted_by_group_size_average_to_balanced():
    counts = [500, 300, 200, 120, 80, 50, 30, 20, 10, 5]
    rng = np.random.default_rng(0)
    per_class = rng.uniform(0, 1, 10).tolist()
    g = group_accuracy(per_class, counts)
    sizes = {k: len(v) for k, v in class_groups(counts).items()}
    assert sizes == {"head": 3, "medium": 4, "tail": 3}
    weighted = sum(g[k] * sizes[k] for k in sizes) / 10
    assert weighted == pytest.approx(g["balanced"])
    assert class_groups(counts)["head"] == [0, 1, 2]


def test_whole_dataset_baseline_runs(digits, digits_test):
    res = whole_dataset(digits, digits_test, epochs=1, progress=False)
    assert res.epochs == 1 and 0 <= res.mean <= 1


@pytest.mark.parametrize("arch", ["mlp", "alexnet"])
def test_cross_architecture_evaluation(arch, digits, digits_test):
    x, y = random_subset(digits, 2)
    res = evaluate_images(x, y, digits_test, arch=arch, runs=1, epochs=2, progress=False)
    assert res.arch == arch
