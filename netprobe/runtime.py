"""Where and how a command computes: the device (``--device``) and CPU threads (``--threads``).

One implementation for every command and for the training loop (which adds the DDP local
rank on top of :func:`resolve_device`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import OptionError


def resolve_device(spec: str) -> str:
    """``auto`` -> ``cuda`` when present, else ``cpu``; ``cpu``; ``cuda``; ``cuda:N``.
    A device this machine does not have is an :class:`OptionError` naming the fix."""
    import torch

    s = spec.strip().lower()
    if s == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if s == "cpu":
        return "cpu"
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise OptionError(
                f"--device {spec}: CUDA is not available on this machine",
                hint="use --device cpu or auto",
            )
        if ":" in s:
            idx = s.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise OptionError(
                    f"--device {spec}: no such GPU (this machine has {torch.cuda.device_count()})",
                    hint="use cuda:0 .. cuda:N-1",
                )
        return s
    raise OptionError(f"--device {spec}: unknown device", hint="use auto, cpu, cuda or cuda:N")


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise OptionError(f"--threads {threads}: must be at least 1", hint="e.g. --threads 2")


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Limit torch's and the BLAS libraries' CPU threads (scipy's syrk, numpy's products)
    for a block; ``None`` leaves them as they are."""
    check_threads(threads)
    if threads is None:
        yield
        return
    import torch

    torch.set_num_threads(threads)
    # threadpoolctl limits the BLAS libraries already loaded; one loaded inside the block
    # (scipy's own OpenBLAS, with the first scipy.linalg import) starts with the thread count
    # its environment variable gives: without it, AlexNet's syrk ran on 2 threads at --threads 1
    env = {k: os.environ.get(k) for k in BLAS_THREAD_VARS}
    os.environ.update({k: str(threads) for k in BLAS_THREAD_VARS})
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# the most threads a default run takes: netprobe's matrices (at most a few thousand per side)
# gain little beyond this, and each extra thread is one more to wait for on a shared machine
MAX_DEFAULT_THREADS = 4


@dataclass(frozen=True)
class ThreadChoice:
    """How many CPU threads a command runs with, and why (recorded in run.json)."""

    threads: int
    how: str

    def to_dict(self) -> dict[str, object]:
        return {"threads": self.threads, "how": self.how}


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def runnable_elsewhere(samples: int = 10, gap: float = 0.001) -> float | None:
    """How many tasks besides this process want a core right now: the mean of the kernel's
    count of runnable tasks (``procs_running`` in /proc/stat, this process included) over
    ``samples`` readings ``gap`` seconds apart (~10 ms), minus this process. None where there
    is no /proc/stat (macOS, Windows)."""
    import time

    got: list[int] = []
    try:
        for i in range(samples):
            if i:
                time.sleep(gap)
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"procs_running"):
                        got.append(int(line.split()[1]))
                        break
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, sum(got) / len(got) - 1.0) if got else None


def default_threads(
    cpus: int | None = None, load: float | None = None, running: float | None = None
) -> ThreadChoice:
    """The thread count when ``--threads`` is not given: the cores no other process is
    using, at least 1 and at most :data:`MAX_DEFAULT_THREADS`. What the other processes use
    is measured now (:func:`runnable_elsewhere`); the 1-minute load average stands in only
    where that cannot be read. The load average lags: it still counted a job that had just
    finished, so back-to-back runs on an idle 2-core machine took one thread where two were
    free (reconstruct on the bundled net: 3.8 s instead of 3.1 s).

    torch's own default is every core, and a thread that has to wait for a busy core
    stalls every parallel region it is part of: on a busy 2-core machine two threads ran
    a small training loop 7x slower than one (docs/design.md, "Speed")."""
    cpus = usable_cpus() if cpus is None else cpus
    if running is None and load is None:
        running = runnable_elsewhere()
    if running is not None:
        busy, what = running, f"{running:.1f} other runnable tasks"
    else:
        if load is None:
            try:
                load = os.getloadavg()[0]
            except (AttributeError, OSError):
                load = 0.0
        busy, what = load, f"load average {load:.1f}"
    free = cpus - int(round(busy))
    n = max(1, min(free, cpus, MAX_DEFAULT_THREADS))
    return ThreadChoice(n, f"default: {cpus} usable cores, {what} -> {n}")


def choose_threads(threads: int | None) -> ThreadChoice:
    """``--threads N`` as given, else :func:`default_threads`."""
    check_threads(threads)
    if threads is not None:
        return ThreadChoice(threads, "--threads")
    return default_threads()


def apply_threads(threads: int) -> None:
    """Set torch's and the BLAS libraries' thread counts for the rest of the process (and
    its children): those loaded later too, through their environment variables
    (:func:`cpu_threads`)."""
    import torch

    torch.set_num_threads(threads)
    os.environ.update({k: str(threads) for k in BLAS_THREAD_VARS})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
