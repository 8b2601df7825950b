"""Reliability through the command line (issue 12): every bad input is one line, exit 2, nothing written.

The table below is run through ``geodd.cli.main`` in-process (a subprocess where an environment variable or a
kill is the point). Each case must exit 2, print exactly one stderr line starting ``geodd: error:``, and leave
the output folder as it was (its files, sizes and modification times). Also here: a SIGKILLed run resumes to the
uninterrupted run's set (both schedules, inside ``inner_steps``), and two processes on one ``--out`` (one runs,
the other names the lock holder). Sizes: digits, ipc 1, width 16, a few iterations.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from geodd.cli import main
from geodd.io import LOCK_NAME, RunLock

ROOT = Path(__file__).resolve().parent.parent
BASE = ["--dataset", "digits", "--ipc", "1", "--iterations", "2", "--batch-real", "16", "--width", "16", "--quiet"]
HAS_CUDA = torch.cuda.is_available()


def snapshot(folder: Path):
    """Every file under ``folder`` with its size and mtime (None if the folder does not exist)."""
    if not folder.exists():
        return None
    if not folder.is_dir():
        return {"": (folder.stat().st_size, folder.stat().st_mtime_ns)}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse exits
        code = exc.code
    io = capsys.readouterr()
    return code, io.out, io.err


def assert_clean(code, err, msg=None):
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("geodd: error:"), err
    if msg is not None:
        assert msg in lines[0], lines[0]


def distill_args(out: Path, *extra) -> list[str]:
    args = dict(zip(BASE[0:-1:2], BASE[1:-1:2]))
    flags = []
    it = iter(extra)
    for a in it:
        if a.startswith("--") and a not in ("--overwrite", "--no-dsa", "--quiet"):
            v = next(it)
            if a in args:
                args[a] = v
            else:
                flags += [a, v]
        else:
            flags.append(a)
    return ["distill", *[x for kv in args.items() for x in kv], "--quiet", "--out", str(out), *flags]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished digits run (seed 0, 2 iterations) with one evaluation, made once; cases copy it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(distill_args(out)) == 0
    assert main(["evaluate", str(out), "--runs", "1", "--epochs", "1", "--quiet"]) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst


def _checkpoint_folder(tmp_path: Path, *extra) -> Path:
    """A folder holding only a checkpoint: a run with checkpoint_every 1 stopped after its first iteration."""
    from geodd.distill import DistillConfig, distill
    out = tmp_path / "ck"

    class Stop(Exception):
        pass

    def stop(i, *_):
        if i == 2:
            raise Stop
    cfg = DistillConfig(dataset="digits", ipc=1, iterations=3, batch_real=16, width=16, checkpoint_every=1,
                        seed=int(extra[0]) if extra else 0)
    with pytest.raises(Stop):
        distill(cfg, out=out, progress=False, callback=stop)
    assert (out / "checkpoint.pt").exists()
    return out


def _flip_byte(path: Path, where: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------- distill table

# (id, extra distill arguments, expected message fragment)
DISTILL_CASES = [
    ("unknown-dataset", ["--dataset", "imagenet-9000"], "unknown dataset"),
    ("unknown-method", ["--method", "magic"], "unknown method"),
    ("ipc-larger-than-class", ["--ipc", "500"], "larger than class"),
    ("ipc-0", ["--ipc", "0"], "ipc must be positive"),
    ("ipc-negative", ["--ipc", "-1"], "ipc must be positive"),
    ("ipc-not-int", ["--ipc", "x"], "invalid int"),
    ("iterations-0", ["--iterations", "0"], "iterations must be positive"),
    ("iterations-negative", ["--iterations", "-3"], "iterations must be positive"),
    ("iterations-float", ["--iterations", "1.5"], "invalid int"),
    ("seed-negative", ["--seed", "-1"], "seed must be in [0, 2**63)"),
    ("seed-expression", ["--seed", "2**70"], "invalid int"),
    ("seed-2-70", ["--seed", str(2**70)], "seed must be in [0, 2**63)"),
    ("lr-img-0", ["--lr-img", "0"], "lr_img must be positive"),
    ("lr-img-negative", ["--lr-img", "-1"], "lr_img must be positive"),
    ("lr-img-nan", ["--lr-img", "nan"], "lr_img must be finite"),
    ("lr-img-inf", ["--lr-img", "inf"], "lr_img must be finite"),
    ("lr-img-text", ["--lr-img", "abc"], "invalid float"),
    ("checkpoint-every-negative", ["--checkpoint-every", "-1"], "checkpoint_every must be non-negative"),
    ("batch-real-0", ["--batch-real", "0"], "batch_real must be positive"),
    ("inner-steps-0", ["--inner-steps", "0"], "inner_steps must be positive"),
    ("train-per-class-0", ["--train-per-class", "0"], "train_per_class must be positive"),
    ("train-per-class-too-many", ["--train-per-class", "100000"], "fewer than"),
    ("keep-0", ["--keep", "0"], "keep must be in (0, 1]"),
    ("keep-above-1", ["--keep", "1.5"], "keep must be in (0, 1]"),
    ("keep-nan", ["--keep", "nan"], "keep must be finite"),
    ("imf-below-1", ["--dataset", "digits-lt", "--imf", "0.5"], "imf must be at least 1"),
    ("width-0", ["--width", "0"], "width must be positive"),
    ("schedule-unknown", ["--schedule", "bogus"], "unknown schedule"),
    ("init-unknown", ["--init", "zeros"], "invalid choice"),
    ("amp-unknown", ["--amp", "fp16"], "invalid choice"),
    ("option-unknown-key", ["-o", "bogus=1"], "unknown dm option"),
    ("option-scale-unknown-key", ["--method", "sdd", "-o", "scale=-1"], "valid: kernel"),
    ("option-scale-text", ["--method", "sdd", "-o", "scale=abc"], "unknown sdd option"),
    ("option-loss-scale-negative", ["--method", "sdd", "-o", "loss_scale=-1"], "loss_scale must be positive"),
    ("option-k-text", ["--method", "hdd", "-o", "k=abc"], "must be a number"),
    ("option-k-inf", ["--method", "hdd", "-o", "k=inf"], "must be a number"),
    ("option-k-nan", ["--method", "hdd", "-o", "k=nan"], "must be a number"),
    ("option-k-bool", ["--method", "hdd", "-o", "k=True"], "must be a number"),
    ("option-k-list", ["--method", "hdd", "-o", "k=[1,2]"], "must be a number"),
    ("option-lam-negative", ["--method", "hdd", "-o", "lam=-1"], "lam"),
    ("option-dims-int", ["--method", "geodm", "-o", "dims=5"], "dims"),
    ("option-no-equals", ["-o", "novalue"], "key=value"),
    ("idm-option-range", ["--schedule", "idm", "--idm", "net_num=0"], "net_num"),
    ("idm-option-unknown", ["--schedule", "idm", "--idm", "bogus=1"], "unknown idm option"),
    ("device-bogus", ["--device", "bogus"], "unknown device 'bogus'"),
    ("device-cuda-without-gpu", ["--device", "cuda"], "none is available"),
    ("device-cuda-index", ["--device", "cuda:99"], "cuda:99"),
    ("device-meta", ["--device", "meta"], "unsupported device"),
]


@pytest.mark.parametrize("extra,msg", [
    pytest.param(*c[1:], id=c[0], marks=pytest.mark.skipif(HAS_CUDA and c[0] == "device-cuda-without-gpu",
                                                           reason="this machine has a GPU")) for c in DISTILL_CASES])
def test_bad_distill_input_is_one_clean_line(tmp_path, capsys, extra, msg):
    out = tmp_path / "out"
    before = snapshot(out)
    code, _, err = cli(distill_args(out, *extra), capsys)
    assert_clean(code, err, msg)
    assert snapshot(out) == before
    assert not out.exists()


def test_missing_data_offline_is_clean(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GEODD_DATA", str(tmp_path / "empty"))
    out = tmp_path / "out"
    code, _, err = cli(distill_args(out, "--dataset", "cifar100"), capsys)
    assert_clean(code, err, "GEODD_DATA")
    assert not out.exists()


def test_missing_required_argument_and_unknown_command_are_one_line(tmp_path, capsys):
    code, _, err = cli(["distill", "--ipc", "1", "--iterations", "1", "--out", tmp_path / "o"], capsys)
    assert_clean(code, err, "--dataset")
    code, _, err = cli(["train"], capsys)
    assert_clean(code, err, "invalid choice")


# ------------------------------------------------------------------------------------------------- output paths

def test_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    before = snapshot(tmp_path)
    code, _, err = cli(distill_args(f), capsys)
    assert_clean(code, err, "is a file")
    assert snapshot(tmp_path) == before


def test_out_under_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    before = snapshot(tmp_path)
    code, _, err = cli(distill_args(f / "run"), capsys)
    assert_clean(code, err, "is a file")
    assert snapshot(tmp_path) == before


def test_out_on_a_read_only_place(capsys):
    out = Path("/proc/geodd-test-run")  # /proc takes no new folders, even for root
    code, _, err = cli(distill_args(out), capsys)
    assert_clean(code, err, "cannot be written")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = cli(distill_args(ro / "run"), capsys)
        assert_clean(code, err, "cannot be written")
        assert snapshot(ro) == {}
    finally:
        ro.chmod(0o755)


# ------------------------------------------------------------------------------------------------- run folders

def test_same_run_again_is_a_no_op_that_keeps_its_evaluations(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "run")
    evals = json.loads((out / "record.json").read_text())["evals"]
    assert evals
    before = snapshot(out)
    code, stdout, err = cli(distill_args(out), capsys)
    assert code == 0 and "already done" in stdout and not err.strip()
    assert snapshot(out) == before
    assert json.loads((out / "record.json").read_text())["evals"] == evals
    # a different checkpoint cadence is the same configuration
    code, stdout, _ = cli(distill_args(out, "--checkpoint-every", "7"), capsys)
    assert code == 0 and "already done" in stdout and snapshot(out) == before


def test_other_configuration_into_a_finished_run_is_refused_then_overwritten(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "run")
    before = snapshot(out)
    code, _, err = cli(distill_args(out, "--seed", "1"), capsys)
    assert_clean(code, err, "another configuration")
    assert "--overwrite" in err and snapshot(out) == before
    code, _, _ = cli(distill_args(out, "--seed", "1", "--overwrite"), capsys)
    assert code == 0
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["seed"] == 1 and "evals" not in record
    assert not (out / LOCK_NAME).exists()


def test_foreign_files_in_out_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    code, _, err = cli(distill_args(out), capsys)
    assert_clean(code, err, "not empty")
    assert snapshot(out) == before


def test_checkpoint_of_another_configuration_is_refused_and_named(tmp_path, capsys):
    out = _checkpoint_folder(tmp_path, 5)
    before = snapshot(out)
    code, _, err = cli(distill_args(out, "--iterations", "3", "--checkpoint-every", "1"), capsys)
    assert_clean(code, err, "checkpoint of another configuration (digits-dm-ipc1-it3-s5-")
    assert "--overwrite" in err and snapshot(out) == before


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_checkpoint_is_refused_with_how_to_start_over(tmp_path, capsys, damage):
    out = _checkpoint_folder(tmp_path)
    ck = out / "checkpoint.pt"
    if damage == "truncate":
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif damage == "flip":
        from geodd.io import load_tensors
        from geodd.distill import CHECKPOINT_FORMAT
        payload = load_tensors(ck, CHECKPOINT_FORMAT)
        payload["images"][0, 0, 0, 0] += 235.0  # a changed value with the old checksum: a flipped bit in the data
        torch.save(payload, ck)
    else:
        ck.write_bytes(b"\x00garbage")
    before = snapshot(out)
    code, _, err = cli(distill_args(out, "--iterations", "3", "--checkpoint-every", "1"), capsys)
    assert_clean(code, err, "--overwrite")
    assert "delete" in err and snapshot(out) == before
    # and the advice works
    code, _, _ = cli(distill_args(out, "--iterations", "3", "--checkpoint-every", "1", "--overwrite"), capsys)
    assert code == 0 and (out / "synset.pt").exists() and not ck.exists()


def test_raw_bit_flip_in_a_checkpoint_file_is_never_trusted(tmp_path, capsys):
    out = _checkpoint_folder(tmp_path)
    _flip_byte(out / "checkpoint.pt", 0.5)
    code, _, err = cli(distill_args(out, "--iterations", "3", "--checkpoint-every", "1"), capsys)
    assert_clean(code, err, "--overwrite")


def test_locked_folder_names_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):
        before = snapshot(out)
        code, _, err = cli(distill_args(out), capsys)
        assert_clean(code, err, f"pid {os.getpid()}")
        assert snapshot(out) == before
    assert not out.exists()  # the lock made the folder and took it away again


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename,
                                             "started": "earlier"}))
    code, _, _ = cli(distill_args(out), capsys)
    assert code == 0 and (out / "synset.pt").exists() and not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------------- evaluate table

def _bad_record(kind):
    def make(out: Path):
        path = out / "record.json"
        rec = json.loads(path.read_text())
        if kind == "list":
            path.write_text("[1, 2]")
        elif kind == "no-config":
            path.write_text(json.dumps({"seed": 0}))
        elif kind == "binary":
            path.write_bytes(bytes(range(256)))
        elif kind == "dataset-not-text":
            rec["config"]["dataset"] = 5
            path.write_text(json.dumps(rec))
        elif kind == "dataset-unknown":
            rec["config"]["dataset"] = "nope"
            path.write_text(json.dumps(rec))
    return make


def _bad_synset(kind):
    def make(out: Path):
        from geodd.synset import SynSet
        s = SynSet.load(out / "synset.pt")
        if kind == "nan":
            s.images = torch.full_like(s.images, float("nan"))
        elif kind == "label-high":
            s.labels = s.labels.clone()
            s.labels[0] = 10
        elif kind == "label-negative":
            s.labels = s.labels.clone()
            s.labels[0] = -1
        elif kind == "shape":  # the record names digits (8x8), the set is 16x16
            s.images = torch.zeros(len(s.labels), 1, 16, 16)
        elif kind == "channels":
            s.images = torch.zeros(len(s.labels), 3, 8, 8)
        s.save(out / "synset.pt")
        if kind == "flip":
            _flip_byte(out / "synset.pt", 0.5)
        elif kind == "garbage":
            (out / "synset.pt").write_bytes(b"garbage")
        elif kind == "foreign":
            torch.save({"weights": torch.zeros(2)}, out / "synset.pt")
        elif kind == "missing":
            (out / "synset.pt").unlink()
    return make


EVAL_CASES = [
    ("record-list", _bad_record("list"), [], "no config"),
    ("record-no-config", _bad_record("no-config"), [], "no config"),
    ("record-binary", _bad_record("binary"), [], "not valid JSON"),
    ("record-dataset-not-text", _bad_record("dataset-not-text"), [], "names no dataset"),
    ("record-dataset-unknown", _bad_record("dataset-unknown"), [], "unknown dataset"),
    ("synset-nan", _bad_synset("nan"), [], "non-finite"),
    ("synset-label-out-of-range", _bad_synset("label-high"), [], "outside the 10 classes"),
    ("synset-label-negative", _bad_synset("label-negative"), [], "outside the 10 classes"),
    ("synset-shape-mismatch", _bad_synset("shape"), [], "does the record name the right dataset"),
    ("synset-channels-mismatch", _bad_synset("channels"), [], "does the record name the right dataset"),
    ("synset-bit-flip", _bad_synset("flip"), [], "synset.pt"),
    ("synset-garbage", _bad_synset("garbage"), [], "not a readable geodd file"),
    ("synset-foreign", _bad_synset("foreign"), [], "not a geodd.synset"),
    ("synset-missing", _bad_synset("missing"), [], "does not exist"),
    ("runs-0", None, ["--runs", "0"], "runs must be positive"),
    ("runs-text", None, ["--runs", "abc"], "invalid int"),
    ("epochs-0", None, ["--epochs", "0"], "epochs must be positive"),
    ("epochs-negative", None, ["--epochs", "-1"], "epochs must be positive"),
    ("seed-negative", None, ["--seed", "-1"], "seed must be an integer in [0, 2**53)"),
    ("seed-huge", None, ["--seed", str(2**70)], "seed must be an integer in [0, 2**53)"),
    ("arch-unknown", None, ["--arch", "gpt"], "unknown architecture"),
    ("amp-unknown", None, ["--amp", "fp16"], "invalid choice"),
    ("device-bogus", None, ["--device", "bogus"], "unknown device"),
]


@pytest.mark.parametrize("damage,extra,msg", [pytest.param(*c[1:], id=c[0]) for c in EVAL_CASES])
def test_bad_evaluate_input_is_one_clean_line_before_training(finished, tmp_path, capsys, damage, extra, msg):
    out = _copy(finished, tmp_path / "run")
    if damage is not None:
        damage(out)
    before = snapshot(out)
    code, _, err = cli(["evaluate", out, "--runs", "1", "--epochs", "1", "--quiet", *extra], capsys)
    assert_clean(code, err, msg)
    assert snapshot(out) == before


def test_evaluate_of_a_missing_folder_is_clean(tmp_path, capsys):
    code, _, err = cli(["evaluate", tmp_path / "nothing", "--quiet"], capsys)
    assert_clean(code, err, "no record.json")
    assert not (tmp_path / "nothing").exists()


def test_evaluation_cache_follows_the_sets_content_through_the_cli(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "run")
    args = ["evaluate", out, "--runs", "1", "--epochs", "1", "--quiet"]
    first = json.loads((out / "record.json").read_text())["evals"]
    assert len(first) == 1
    before = snapshot(out)
    assert cli(args, capsys)[0] == 0  # the same set and settings: the cached result, nothing rewritten
    assert snapshot(out) == before
    from geodd.synset import SynSet
    s = SynSet.load(out / "synset.pt")
    s.images = s.images + 0.5  # a replaced synset.pt is evaluated afresh
    s.save(out / "synset.pt")
    assert cli(args, capsys)[0] == 0
    evals = json.loads((out / "record.json").read_text())["evals"]
    assert len(evals) == 2 and set(first) < set(evals)


# ------------------------------------------------------------------------------------------------- subprocesses

def _env(**extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("GEODD_DEVICE", None)
    env.update(extra)
    return env


def test_bad_geodd_device_is_clean_for_distill_and_reported_by_info(tmp_path):
    out = tmp_path / "out"
    code = ("import sys; from geodd.cli import main; "
            "r1 = main(sys.argv[1:]); print('RC', r1, flush=True); r2 = main(['info']); print('RC', r2)")
    proc = subprocess.run([sys.executable, "-c", code, *distill_args(out)], capture_output=True, text=True,
                          env=_env(GEODD_DEVICE="bogus"), cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geodd: error:") and "GEODD_DEVICE 'bogus'" in lines[0], \
        proc.stderr
    assert "RC 2" in proc.stdout and "RC 0" in proc.stdout and "device_error" in proc.stdout
    assert not out.exists()


KILL_ARGS = ["--iterations", "60", "--inner-steps", "3", "--checkpoint-every", "1"]
SCHEDULES = {"dm": [], "idm": ["--schedule", "idm", "--idm", "model_train_steps=1", "--idm", "train_batch=16",
                               "--idm", "net_generate_interval=5"]}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "the run never got there"
        time.sleep(0.002)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_sigkill_then_resume_gives_the_uninterrupted_set(tmp_path, capsys, schedule, one_thread):
    args = [*KILL_ARGS, *SCHEDULES[schedule]]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "geodd", *distill_args(killed, *args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    _wait_for(killed / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert not (killed / "synset.pt").exists()
    (killed / ".checkpoint.pt.999999.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-write leaves
    assert cli(distill_args(killed, *args), capsys)[0] == 0  # takes over the dead run's lock and resumes
    assert sorted(p.name for p in killed.iterdir()) == ["record.json", "synset.pt"]  # no lock, no leftovers
    record = json.loads((killed / "record.json").read_text())
    assert 0 < record["timings"]["resumed_from"] < 60
    full = tmp_path / "full"
    assert cli(distill_args(full, *args), capsys)[0] == 0
    a = torch.load(killed / "synset.pt", weights_only=True)
    b = torch.load(full / "synset.pt", weights_only=True)
    torch.testing.assert_close(a["images"], b["images"], rtol=0, atol=0)  # the same code path, run twice
    assert record["loss"] == json.loads((full / "record.json").read_text())["loss"]


def test_two_processes_on_one_out_one_runs_the_other_names_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "geodd", *distill_args(out, "--iterations", "3000")],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        _wait_for(out / LOCK_NAME, first)
        before = snapshot(out)
        code, _, err = cli(distill_args(out, "--seed", "1"), capsys)
        assert_clean(code, err, f"pid {first.pid}")
        assert "in use by" in err and snapshot(out) == before
        assert first.poll() is None  # the first one is still running, undisturbed
    finally:
        first.kill()
        first.communicate()
