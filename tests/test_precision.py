"""geodd.precision: amp="auto" picks bf16 only where the device computes it natively (issue: bf16 on an
AVX2-only CPU ran ~100x slower than fp32)."""
import warnings

import pytest
import torch

from geodd import GeoddError, precision
from geodd.precision import PrecisionWarning, autocast, resolve


@pytest.fixture
def fresh(monkeypatch):
    """Forget which one-time messages were said, so each test sees its own."""
    monkeypatch.setattr(precision, "_said", set())


def test_auto_resolves_to_fp32_on_a_cpu_without_native_bf16(monkeypatch, fresh):
    monkeypatch.setenv(precision.ENV_CPU_BF16, "0")
    with pytest.warns(PrecisionWarning, match="amp='auto' uses fp32 here"):
        choice = resolve("auto", "cpu")
    assert choice.used == "fp32" and choice.autocast_arg is None and "emulates" in choice.reason
    with autocast(torch.device("cpu"), "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_auto_resolves_to_bf16_on_a_cpu_with_native_bf16(monkeypatch, fresh):
    monkeypatch.setenv(precision.ENV_CPU_BF16, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        choice = resolve("auto", "cpu")
    assert choice.used == "bf16" and choice.autocast_arg == "bf16"
    with autocast(torch.device("cpu"), "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_cpu_flags_decide_without_the_override(monkeypatch, fresh):
    monkeypatch.delenv(precision.ENV_CPU_BF16, raising=False)
    monkeypatch.setattr(precision, "_cpuinfo", lambda: ("test CPU", frozenset({"avx2", "fma"})))
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    support = precision.cpu_bf16_native()
    assert not support.native and "no avx512_bf16" in support.basis
    monkeypatch.setattr(precision, "_cpuinfo", lambda: ("test CPU", frozenset({"avx2", "avx512_bf16"})))
    assert precision.cpu_bf16_native().native


def test_explicit_bf16_on_an_emulating_cpu_warns_once_and_is_kept(monkeypatch, fresh):
    monkeypatch.setenv(precision.ENV_CPU_BF16, "0")
    with pytest.warns(PrecisionWarning, match="bf16 asked for"):
        assert resolve("bf16", "cpu").used == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        resolve("bf16", "cpu")  # said once per process, not per call


@pytest.mark.parametrize("name", [None, "none", "fp32", "float32"])
def test_fp32_names(name):
    assert resolve(name, "cpu").used == "fp32"


def test_unknown_amp_is_a_one_line_error():
    with pytest.raises(GeoddError, match="unknown amp mode 'fp16'"):
        resolve("fp16", "cpu")


def test_the_engine_records_the_precision_it_used(monkeypatch, fresh, digits):
    from geodd.distill import DistillConfig, distill
    monkeypatch.setenv(precision.ENV_CPU_BF16, "0")
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=8, amp="auto")
    with pytest.warns(PrecisionWarning):
        _, record = distill(cfg, train=digits, progress=False, device="cpu")
    assert record["precision"]["requested"] == "auto" and record["precision"]["used"] == "fp32"
    assert "emulates bf16" in record["precision"]["reason"]
    assert {"processor", "flags", "bf16_native"} <= set(record["device"])


def test_cached_runs_are_keyed_by_the_precision_really_used(monkeypatch, fresh, digits, tmp_path):
    from geodd.distill import DistillConfig
    from geodd.runs import cached_distill
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=8, amp="auto")
    monkeypatch.setenv(precision.ENV_CPU_BF16, "0")
    with pytest.warns(PrecisionWarning):
        _, _, fp32_dir = cached_distill(cfg, train=digits, root=tmp_path, progress=False, device="cpu")
    monkeypatch.setenv(precision.ENV_CPU_BF16, "1")
    _, _, bf16_dir = cached_distill(cfg, train=digits, root=tmp_path, progress=False, device="cpu")
    assert fp32_dir != bf16_dir
    assert fp32_dir.name.startswith(DistillConfig(dataset="digits", ipc=1, iterations=1, batch_real=8).key() + "-d")
