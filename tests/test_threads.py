"""The default CPU thread count (docs/design.md, "Speed"): never the slow choice on a busy
machine, and recorded in run.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netprobe.runtime import (
    MAX_DEFAULT_THREADS,
    choose_threads,
    default_threads,
    runnable_elsewhere,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("cpus", "load", "expected"),
    [
        (2, 0.0, 2),  # idle 2-core machine: both cores
        (2, 1.3, 1),  # one core busy: one thread (two ran a training loop 7x slower)
        (2, 11.0, 1),  # overloaded: still at least one
        (1, 0.0, 1),
        (64, 0.0, MAX_DEFAULT_THREADS),  # capped
        (8, 5.6, 2),
    ],
)
def test_default_threads_takes_the_free_cores(cpus: int, load: float, expected: int) -> None:
    got = default_threads(cpus=cpus, load=load)
    assert got.threads == expected
    assert f"{cpus} usable cores" in got.how


@pytest.mark.parametrize(
    ("running", "load", "expected"),
    [
        (0.0, 1.9, 2),  # a job that just finished still weighs on the load average
        (1.0, 0.0, 1),  # a job that just started does not weigh on it yet
        (0.3, 0.0, 2),
        (1.6, 0.0, 1),
    ],
)
def test_default_threads_go_by_what_runs_now(running: float, load: float, expected: int) -> None:
    got = default_threads(cpus=2, load=load, running=running)
    assert got.threads == expected
    assert "other runnable tasks" in got.how


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_a_busy_process_counts_as_runnable_elsewhere() -> None:
    """A process spinning on a core is always runnable, so every reading counts it."""
    burner = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: pass"])
    try:
        import time

        time.sleep(0.5)  # past its start-up (reading its files, it is not runnable)
        others = runnable_elsewhere()
        assert others is not None and others >= 0.95
    finally:
        burner.kill()
        burner.wait()


def test_threads_option_wins() -> None:
    assert choose_threads(3).threads == 3
    assert choose_threads(3).how == "--threads"


def test_run_json_records_the_threads_used(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "netprobe", "randomness", "--no-figures", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "run.json").read_text())
    assert info["threads"]["threads"] >= 1
    assert info["threads"]["how"].startswith("default:")
    assert "CPU threads:" in proc.stderr


def test_threads_reach_a_blas_library_loaded_later() -> None:
    """threadpoolctl limits the BLAS libraries already loaded; scipy's own OpenBLAS loads with
    the first scipy.linalg import, inside the analysis, and ran AlexNet's syrk on two threads
    at --threads 1. Its thread count now comes from the environment cpu_threads sets."""
    probe = (
        "import os, json, torch\n"
        "from netprobe.runtime import cpu_threads\n"
        "before = os.environ.get('OPENBLAS_NUM_THREADS')\n"
        "with cpu_threads(1):\n"
        "    from scipy.linalg import blas\n"
        "    from threadpoolctl import threadpool_info\n"
        "    libs = [i for i in threadpool_info() if 'scipy_openblas-' in i['filepath']]\n"
        "    inside = [i['num_threads'] for i in libs]\n"
        "print(json.dumps([inside, before, os.environ.get('OPENBLAS_NUM_THREADS')]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    inside, before, after = json.loads(proc.stdout)
    assert inside == [1]  # scipy's OpenBLAS, loaded inside the block, runs one thread
    assert before is None and after is None  # the environment is as it was


@pytest.mark.parametrize(("given", "expected"), [(None, "16"), ("20", "20")])
def test_openblas_idle_threads_sleep_soon_unless_the_user_says(
    given: str | None, expected: str
) -> None:
    """netprobe shortens OpenBLAS's idle spin (docs/design.md, "Speed") before any OpenBLAS
    loads, and leaves a value the user set alone."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    env["PYTHONPATH"] = str(ROOT)
    code = "import netprobe, os, sys; print(os.environ['OPENBLAS_THREAD_TIMEOUT'], 'numpy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out == [expected, "False"]  # set before numpy (and its OpenBLAS) could load
