"""Shared fixtures. Tests never need the network; figures and cached runs go to a temporary folder."""
from __future__ import annotations

import os

import pytest
import torch

# keep smoke runs away from the committed figures/ and the user's runs/ cache
_TMP = os.environ.setdefault("GEODD_TEST_TMP", os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                            f"geodd-tests-{os.getpid()}"))
os.environ["GEODD_FIGURES"] = os.path.join(_TMP, "figures")
os.environ["GEODD_RUNS"] = os.path.join(_TMP, "runs")
os.environ.setdefault("GEODD_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one thread each, inherited by the notebook kernels they start, so OpenMP's
    # spin-waiting threads never fight over the cores (that made small ops 10-30x slower when oversubscribed)
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits (train split): the fastest real dataset."""
    from geodd.data import load
    return load("digits", "train")


@pytest.fixture(scope="session")
def digits_test():
    from geodd.data import load
    return load("digits", "test")


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: its tensors are tiny, and a second thread on a shared 2-core machine
    only adds OpenMP synchronisation cost. Restores the previous setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
