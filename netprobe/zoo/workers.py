"""The process pool behind ``netprobe check --jobs N --timeout S``: each model is measured
in its own worker process, so a crash, out-of-memory kill or hang is that model's
``error``, never the run's (docs/design.md)."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import EXIT_LOAD, NetprobeError
from .config import Config, Rules
from .results import ModelResult

#: what the forkserver imports before it forks the first worker (see :func:`_context`)
PRELOAD = [
    "torch",
    "numpy",
    "scipy.special",
    "scipy.linalg",
    "scipy.stats",
    "scipy.sparse.linalg",
    "pandas",
    "netprobe.zoo.rules",
    "netprobe.loading",
    "netprobe.netlayers",
    "netprobe.iid",
    "netprobe.reconstruction",
]

#: seconds between looks at the running workers when none has finished
_POLL_S = 0.02


def _worker(conn: Any, spec: str, rules: Rules, opts: Mapping[str, Any], path: list[str]) -> None:
    """Child process body: measure one model and send back a plain dict."""
    sys.path[:] = path
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.get("threads", 1)))
    try:
        import torch

        from .rules import measure

        torch.set_num_threads(int(opts.get("threads", 1)))
        res = measure(spec, rules, opts)
        conn.send(("ok", res.to_dict()))
    except NetprobeError as e:
        conn.send(("load" if e.exit_code == EXIT_LOAD else "error", e.one_line()))
    except MemoryError:
        conn.send(("error", "out of memory"))
    except Exception as e:  # loaders and third-party code raise anything: this model's error
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        conn.send(("error", f"{type(e).__name__}: {msg[:300]}"))
    finally:
        conn.close()


def _death(code: int | None) -> str:
    """Why a worker ended without reporting, from its exit code."""
    import signal

    if code is None:
        return "worker vanished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker died from {name}{hint}"
    return f"worker exited with code {code} before reporting"


def _context() -> Any:
    """forkserver where there is one (fast starts, no inherited threads), else spawn.

    The server imports, once, everything :func:`~.rules.measure` reaches (torch, the
    loaders, the analyses and the scipy and pandas parts they use), so each forked worker
    starts with them in memory instead of importing them again: ~0.25 s of CPU per model
    on top of torch (docs/design.md, "Speed")."""
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


@dataclass
class _Job:
    """One running worker."""

    proc: Any
    conn: Any
    started: float
    limit: float
    spec: str

    def poll(self) -> ModelResult | None:
        """The model's result once the worker reported, died or ran out of time; else None."""
        elapsed = time.time() - self.started
        if self.conn.poll():
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):  # the pipe broke: the worker died mid-send
                self.proc.join(5)
                kind, payload = "error", _death(self.proc.exitcode)
            self.proc.join(10)
            if kind == "ok":
                return ModelResult.from_dict(payload)
            return ModelResult.failed(
                self.spec, "load" if kind == "load" else "worker", payload, elapsed
            )
        if not self.proc.is_alive():
            return ModelResult.failed(self.spec, "worker", _death(self.proc.exitcode), elapsed)
        if elapsed > self.limit:
            self.stop()
            return ModelResult.failed(
                self.spec, "worker", f"timed out after {self.limit:g} s", self.limit
            )
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(3)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(3)


def _start(ctx: Any, spec: str, rules: Rules, limit: float, opts: Mapping[str, Any]) -> _Job:
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(child, spec, rules, opts, list(sys.path)), daemon=True)
    proc.start()
    child.close()
    return _Job(proc, parent, time.time(), limit, spec)


def run_checks(
    targets: list[str],
    config: Config,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    opts: Mapping[str, Any] | None = None,
    on_done: Callable[[ModelResult], None] | None = None,
) -> list[ModelResult]:
    """Check every target in its own worker process, ``jobs`` at a time. Results come back
    in target order; a crash, hang or load failure is that model's ``error``. ``timeout``
    overrides each model's ``timeout`` rule."""
    opts = dict(opts or {})
    ctx = _context()
    pending = list(enumerate(targets))
    running: dict[int, _Job] = {}
    results: dict[int, ModelResult] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                i, spec = pending.pop(0)
                rules = config.for_model(spec)
                limit = float(timeout if timeout is not None else rules.timeout)
                running[i] = _start(ctx, spec, rules, limit, opts)
            finished = []
            for i, job in running.items():
                res = job.poll()
                if res is not None:
                    job.conn.close()
                    results[i] = res
                    finished.append(i)
                    if on_done:
                        on_done(res)
            for i in finished:
                running.pop(i)
            if running and not finished:
                time.sleep(_POLL_S)
    finally:  # interrupted (Ctrl-C) or failed: leave no worker behind
        for job in running.values():
            job.proc.kill()
            job.conn.close()
    return [results[i] for i in range(len(targets))]
