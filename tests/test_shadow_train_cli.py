"""`netprobe shadow-train` end to end, on a tiny subset of the bundled digits."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from netprobe.archs import DigitNet
from netprobe.cli import app
from netprobe.loading import load, save_checkpoint

runner = CliRunner()
TINY = ["--train-size", "64", "--test-size", "32", "--epochs", "3", "--seeds", "0,1", "--batch-size", "32",
        "--grid", "4"]
OUTPUTS = ["history.csv", "report.json", "report.md", "run.json", "settings.json", "learning_curves.png",
           "tracking.png", "synthetic_grid.png"]
TIMING = {"seconds", "cpu_seconds", "eval_seconds", "wall_seconds", "tracking_seconds"}


@pytest.fixture(autouse=True)
def _one_thread():
    """--threads changes torch's global thread count: put it back after each test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def invoke(args: list[str]):
    return runner.invoke(app, ["shadow-train", *args], catch_exceptions=False)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def test_end_to_end_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = invoke([*TINY, "--threads", "1", "-o", str(out), "--format", "json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    hist = rows(out / "history.csv")
    assert len(hist) == 2 * 2 * 3  # arms x seeds x epochs
    assert {r["arm"] for r in hist} == {"baseline", "shadow"}
    assert all(float(r["synthetic_test_error"]) >= 0 for r in hist)
    assert [r["extra_examples"] for r in hist if r["arm"] == "shadow"] == ["64"] * 6
    assert report["seeds"] == [0, 1] and {s["arm"] for s in report["summary"]} == {"baseline", "shadow"}
    final = [c for c in report["comparisons"] if c["metric"] == "final test error"]
    # 32 test examples make equal differences likely: then "cannot tell", not a verdict
    verdicts = ("helped", "hurt", "no clear difference", "cannot tell: every seed gave the same difference")
    assert len(final) == 1 and final[0]["verdict"] in verdicts
    if final[0]["verdict"] == verdicts[-1]:
        assert final[0]["low"] is None and final[0]["p"] is None  # NaN: no interval, no test
    assert "shadow vs baseline" in report["conclusion"]
    assert report["data"]["split_seed"] == 0 and report["data"]["train"] == 64 and report["data"]["test"] == 32
    md = (out / "report.md").read_text()
    assert "![Learning curves](learning_curves.png)" in md and "synthetic_grid.png" in md
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["seeds"] == "0,1" and "history.csv" in run["files"] and run["conclusion"]
    # every arm x seed leaves a checkpoint that the other commands load as a MODEL
    for arm in ("baseline", "shadow"):
        for seed in (0, 1):
            ck = out / "models" / f"{arm}-seed{seed}.pt"
            lm = load(str(ck))
            assert lm.arch == "digitnet" and lm.input_shape == (1, 28, 28) and lm.meta["arm"] == arm
            assert lm.module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    layers = runner.invoke(app, ["layers", str(out / "models" / "shadow-seed0.pt"), "--format", "json", "-q"])
    assert layers.exit_code == 0 and len(json.loads(layers.stdout)["hidden_layers"]) == 3


def test_dropout_arms_and_table_output(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = invoke(["--train-size", "32", "--test-size", "16", "--epochs", "1", "--seeds", "0", "--batch-size", "32",
                  "--arms", "baseline+dropout,shadow+dropout", "--grid", "0", "--val-fraction", "0.1", "--threads", "1",
                  "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert all(0 <= float(r["val_error"]) <= 1 for r in rows(out / "history.csv"))
    assert "shadow+dropout" in res.stdout and "result:" in res.stdout
    assert (out / "models" / "shadow-dropout-seed0.pt").is_file() and not (out / "synthetic_grid.png").exists()
    assert "cannot tell from one seed" in json.loads((out / "report.json").read_text())["conclusion"]


def test_fine_tune_from_checkpoint_with_a_new_head(tmp_path: Path) -> None:
    ck = tmp_path / "digit.pt"
    save_checkpoint(ck, DigitNet(), arch="digitnet", arch_kwargs={"num_classes": 10}, input_shape=(1, 28, 28),
                    mean=(0.1307,), std=(0.3081,))
    rng = np.random.default_rng(0)
    data = tmp_path / "three.npz"
    np.savez(data, x=rng.integers(0, 255, (30, 28, 28), dtype=np.uint8), y=np.repeat(np.arange(3), 10))
    common = ["--from", str(ck), "--dataset", str(data), "--epochs", "1", "--seeds", "0", "--batch-size", "16",
              "--grid", "3", "--threads", "1", "-q"]
    res = invoke([*common, "-o", str(tmp_path / "no")])
    assert res.exit_code == 2 and "--new-head" in res.stderr and not (tmp_path / "no").exists()
    res = invoke([*common, "--new-head", "-o", str(tmp_path / "ft")])
    assert res.exit_code == 0, res.stderr
    lm = load(str(tmp_path / "ft" / "models" / "shadow-seed0.pt"))
    assert lm.module(torch.zeros(1, 1, 28, 28)).shape == (1, 3) and lm.mean == (0.1307,)
    rep = json.loads((tmp_path / "ft" / "report.json").read_text())
    assert rep["data"]["test"] == 6 and "stratified" in rep["data"]["split"] and "fine-tuned" in rep["model"]["source"]


def _one_error(res, code: int, *needles: str) -> None:
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("loading")]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (["--dataset", "nosuchset"], 3, ("unknown dataset 'nosuchset'",)),
        (["--dataset", "mnist"], 3, ("mnist: not found in", "--download")),
        (["--arms", "baseline,foo"], 2, ("--arms foo", "shadow+dropout")),
        (["--layer", "h99"], 2, ("--layer h99", "h1..h3")),
        (["--seeds", "x"], 2, ("--seeds",)),
        (["--gen-keep", "0"], 2, ("--gen-keep",)),
        (["--warmup", "3", "--epochs", "3"], 2, ("--warmup 3",)),
        (["--arch", "resnett18"], 2, ("--arch resnett18", "resnet18")),
        (["--new-head"], 2, ("--new-head goes with --from",)),
        (["--batch-size", "0"], 2, ("--batch-size 0",)),
        (["--lr", "0"], 2, ("--lr 0",)),
        (["--optimizer", "rmsprop"], 2, ("--optimizer rmsprop", "adamw")),
        (["--schedule", "step"], 2, ("--schedule step", "cosine")),
        (["--grid", "-1"], 2, ("--grid -1",)),
    ],
)
def test_bad_input_is_one_line_with_its_exit_code(tmp_path: Path, args: list[str], code: int, needles: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    _one_error(invoke([*args, "--threads", "1", "-o", str(out)]), code, *needles)
    assert not out.exists()


def test_resume_refuses_a_foreign_folder_and_a_second_output_dir(tmp_path: Path) -> None:
    _one_error(invoke(["--resume", str(tmp_path)]), 2, "not a shadow-train run folder")
    (tmp_path / "settings.json").write_text(json.dumps({"options": {}}))
    _one_error(invoke(["--resume", str(tmp_path)]), 2, "settings.json lacks")
    _one_error(invoke(["--resume", str(tmp_path), "--epochs", "9"]), 2, "settings.json lacks")
    from netprobe.shadow import ShadowOptions

    (tmp_path / "settings.json").write_text(json.dumps({"options": ShadowOptions().to_dict()}))
    _one_error(invoke(["--resume", str(tmp_path), "-o", str(tmp_path / "elsewhere")]), 2,
               "--output-dir", "its own folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


def test_cli_defaults_are_the_library_defaults() -> None:
    """The CLI passes only the options given on the command line, so its defaults must be
    netprobe.shadow_train's (ShadowOptions')."""
    import dataclasses

    import typer

    from netprobe.shadow import ShadowOptions

    params = {p.name: p.default for p in typer.main.get_command(app).commands["shadow-train"].params}
    for f in dataclasses.fields(ShadowOptions):
        assert params[f.name] == f.default, f.name


FINISHED = ["--train-size", "32", "--test-size", "16", "--epochs", "2", "--seeds", "0", "--batch-size", "32",
            "--grid", "0", "--threads", "1"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under folder: (content, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: 2 arms x 1 seed x 2 epochs."""
    out = tmp_path_factory.mktemp("finished") / "run"
    res = invoke([*FINISHED, "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    # the plan line counts in words: "1 seed", never "1 seeds"
    assert "2 arms x 1 seed x 2 epochs on 32 examples" in res.stderr and "1 seeds" not in res.stderr
    return out


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished: Path) -> None:
    """Issue 8: resuming a finished run printed `test error nan%` and rewrote every report file."""
    before = snapshot(finished)
    time.sleep(0.01)  # a rewrite would show in the mtimes
    res = invoke(["--resume", str(finished), "--threads", "1"])
    assert res.exit_code == 0, res.stderr
    assert "the run is complete (2 arms x 1 seed x 2 epochs); nothing changed" in res.stderr
    assert "nan" not in res.stderr.lower() and "result:" in res.stdout
    assert snapshot(finished) == before
    # giving a saved setting again is no change either
    res = invoke(["--resume", str(finished), "--epochs", "2", "--seeds", "0", "--threads", "1", "-q"])
    assert res.exit_code == 0 and snapshot(finished) == before


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--epochs", "1"], ("--epochs 1", "not lower it")),
        (["--seeds", "1"], ("--seeds 1", "also has seed(s) 0", "not drop them")),
        (["--lr", "0.01"], ("--lr cannot change it",)),
        (["--arms", "shadow"], ("--arms cannot change it",)),
        (["--from", "alexnet"], ("--from cannot change it",)),
    ],
)
def test_resume_refuses_lower_epochs_fewer_seeds_and_other_changes(
    finished: Path, args: list[str], needles: tuple[str, ...]
) -> None:
    """Issue 9: only raising --epochs and adding --seeds may change a resumed run."""
    before = snapshot(finished)
    _one_error(invoke(["--resume", str(finished), *args, "--threads", "1"]), 2, *needles)
    assert snapshot(finished) == before


def test_resume_extends_a_finished_run_to_more_epochs_and_seeds(tmp_path: Path) -> None:
    """Issue 9: `--resume DIR --epochs 3` said "--epochs cannot change it". Raising --epochs
    continues every run from its saved state and --seeds adds runs: the result equals a fresh
    run with the larger settings."""
    small = ["--train-size", "32", "--test-size", "16", "--batch-size", "32", "--grid", "2", "--threads", "1", "-q"]
    run = tmp_path / "run"
    assert invoke([*small, "--epochs", "1", "--seeds", "0", "-o", str(run)]).exit_code == 0
    res = invoke(["--resume", str(run), "--epochs", "2", "--seeds", "0,1", "--threads", "1", "-q"])
    assert res.exit_code == 0, res.stderr
    ref = tmp_path / "ref"
    assert invoke([*small, "--epochs", "2", "--seeds", "0,1", "-o", str(ref)]).exit_code == 0
    assert rows(run / "history.csv") == rows(ref / "history.csv")
    assert len(rows(run / "history.csv")) == 2 * 2 * 2
    info = json.loads((run / "run.json").read_text())
    assert info["options"]["epochs"] == 2 and info["options"]["seeds"] == "0,1"
    assert json.loads((run / "settings.json").read_text())["options"]["seeds"] == "0,1"
    assert (run / "models" / "shadow-seed1.pt").is_file()


@pytest.mark.slow
def test_torchrun_two_processes_rank_zero_writes(tmp_path: Path) -> None:
    """DDP: under torchrun (gloo, CPU) both processes train, only rank 0 writes and prints."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "netprobe", "shadow-train", *FINISHED, "-o", str(out), "--format", "json"],
        env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)  # one report: rank 1 printed nothing
    assert report["settings"]["world_size"] == 2
    for name in ["history.csv", "report.json", "run.json", "settings.json", "models/shadow-seed0.pt"]:
        assert (out / name).is_file(), name
    assert len(rows(out / "history.csv")) == 2 * 2


@pytest.mark.slow
def test_resume_after_kill_reaches_the_same_final_metrics(tmp_path: Path) -> None:
    """kill -9 during the run, --resume, and the result equals an uninterrupted run's exactly."""
    args = ["--train-size", "128", "--test-size", "64", "--epochs", "3", "--seeds", "0", "--batch-size", "32",
            "--grid", "2", "--threads", "1", "-q"]
    cmd = [sys.executable, "-m", "netprobe", "shadow-train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    p = subprocess.Popen([*cmd, "-o", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "baseline-seed0" / "training-state.pt"
    deadline = time.time() + 120
    while not first.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert first.exists() and not (killed / "run.json").exists(), "the run was not interrupted"
    res = subprocess.run([sys.executable, "-m", "netprobe", "shadow-train", "--resume", str(killed), "--threads", "1",
                          "-q"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref = tmp_path / "ref"
    res = subprocess.run([*cmd, "-o", str(ref)], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert rows(killed / "history.csv") == rows(ref / "history.csv")
    for arm in ("baseline", "shadow"):
        a = load(str(killed / "models" / f"{arm}-seed0.pt")).module.state_dict()
        b = load(str(ref / "models" / f"{arm}-seed0.pt")).module.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
