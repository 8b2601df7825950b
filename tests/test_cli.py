"""The command line: the DESIGN.md contract and one-line errors for bad input, with nothing written."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from geodd.cli import main


def run(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr()


def test_distill_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = run(["distill", "--dataset", "digits", "--method", "dm", "--ipc", 1, "--iterations", 2, "--seed", 0,
                   "--out", out, "--batch-real", 16, "--quiet"], capsys)
    assert code == 0
    synset = torch.load(out / "synset.pt", weights_only=True)
    assert synset["images"].shape == (10, 1, 8, 8)
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["method"] == "dm" and len(record["loss"]) == 2
    code, io = run(["evaluate", out, "--runs", 2, "--epochs", 2, "--quiet"], capsys)
    assert code == 0 and "+-" in io.out
    ev = json.loads((out / "record.json").read_text())["eval"]
    assert ev["arch"] == "convnet" and len(ev["accs"]) == 2 and {"mean", "std"} <= set(ev)


@pytest.mark.parametrize("args,msg", [
    (["--dataset", "imagenet-9000"], "unknown dataset"),
    (["--method", "magic"], "unknown method"),
    (["--ipc", "500"], "larger than class"),
    (["--iterations", "0"], "iterations must be positive"),
])
def test_bad_distill_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, msg):
    base = {"--dataset": "digits", "--method": "dm", "--ipc": "1", "--iterations": "2"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["distill", *[x for kv in base.items() for x in kv], "--out", str(tmp_path / "out"), "--quiet"]
    code, io = run(argv, capsys)
    assert code == 2
    err = io.err.strip()
    assert err.startswith("geodd: error:") and msg in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_evaluate_rejects_unknown_arch_and_foreign_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["distill", "--dataset", "digits", "--ipc", 1, "--iterations", 1, "--out", out, "--quiet"],
               capsys)[0] == 0
    code, io = run(["evaluate", out, "--arch", "gpt"], capsys)
    assert code == 2 and "unknown architecture" in io.err
    torch.save({"weights": torch.zeros(2)}, out / "synset.pt")
    code, io = run(["evaluate", out], capsys)
    assert code == 2 and "not a geodd.synset" in io.err
    (out / "synset.pt").write_bytes(b"garbage")
    code, io = run(["evaluate", out], capsys)
    assert code == 2 and "not a readable geodd file" in io.err


def test_missing_data_offline_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEODD_DATA", str(tmp_path / "empty"))
    code, io = run(["distill", "--dataset", "cifar100", "--ipc", 1, "--iterations", 1, "--out", tmp_path / "o",
                    "--quiet"], capsys)
    assert code == 2 and "geodd: error:" in io.err and "GEODD_DATA" in io.err
    assert not (tmp_path / "o").exists()


def test_module_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "geodd", "distill", "--dataset", "nope", "--ipc", "1",
                           "--iterations", "1", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown dataset" in proc.stderr


# --------------------------------------------------------------------------------------------- --preset, plan

def test_preset_takes_the_registry_settings(tmp_path, capsys):
    out = tmp_path / "run"
    code, io = run(["distill", "--preset", "DM+HDD", "--dataset", "digits", "--ipc", 1, "--iterations", 1,
                    "--batch-real", 16, "--out", out, "--quiet"], capsys)
    assert code == 0 and "preset DM+HDD" in io.out
    config = json.loads((out / "record.json").read_text())["config"]
    assert (config["method"], config["schedule"], config["lr_img"]) == ("hdd", "dm", 1.0)
    from geodd.distill import DistillConfig
    matcher = DistillConfig.from_dict(config).matcher   # the record keeps non-default options only
    assert (matcher.k, matcher.lam, matcher.norm) == (1.0, 20.0, "rescale")


def test_flags_given_override_the_preset_and_only_those(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = run(["distill", "--preset", "IDM+HDD", "--dataset", "digits", "--ipc", 1, "--iterations", 1,
                   "--batch-real", 16, "--lr-img", 0.3, "-o", "lam=5", "--idm", "model_train_steps=1",
                   "--idm", "train_batch=16", "--out", out, "--quiet"], capsys)
    assert code == 0
    config = json.loads((out / "record.json").read_text())["config"]
    assert (config["method"], config["schedule"], config["lr_img"]) == ("hdd", "idm", 0.3)
    from geodd.distill import DistillConfig
    cfg = DistillConfig.from_dict(config)
    assert cfg.matcher.lam == 5 and cfg.matcher.k == 2.4 and cfg.matcher.norm == "rescale"  # k: the preset's
    assert cfg.idm.ce_weight == 50.0 and cfg.idm.model_train_steps == 1


def test_without_a_preset_the_defaults_are_unchanged():
    from geodd.cli import method_settings
    assert method_settings(None, 10) == {"method": "dm", "schedule": "dm", "lr_img": 1.0, "matcher": {}, "idm": {}}
    assert method_settings("IDM+HDD", 50)["lr_img"] == 0.2 and method_settings("IDM+HDD", 50)["idm"]["ce_weight"] == 10


@pytest.mark.parametrize("preset,msg", [("X", "unknown preset 'X'; choose one of DM, IDM"),
                                        ("OT-gen (full)", "unknown preset"),
                                        ("GeoDM", "pass --lr-img")])
def test_bad_preset_is_one_line_and_writes_nothing(tmp_path, capsys, preset, msg):
    code, io = run(["distill", "--preset", preset, "--dataset", "digits", "--ipc", 1, "--iterations", 1,
                    "--out", tmp_path / "o", "--quiet"], capsys)
    err = io.err.strip()
    assert code == 2 and err.startswith("geodd: error:") and msg in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_plan_prints_the_grid_and_its_totals(tmp_path, capsys):
    code, io = run(["plan", "--profile", "smoke", "--tflops", 50], capsys)
    assert code == 0
    assert "profile:smoke" in io.out and "50 TFLOP/s" in io.out and "FlopCounterMode" in io.out
    assert "computed from activation sizes" in io.out and "total: 14 runs" in io.out


@pytest.mark.parametrize("tflops", ["0", "-1", "abc", "nan", "inf"])
def test_plan_refuses_a_bad_tflops_on_one_line(capsys, tflops):
    with pytest.raises(SystemExit) as exc:
        main(["plan", f"--tflops={tflops}"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("geodd: error: argument --tflops") and "\n" not in err
