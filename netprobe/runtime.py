"""Where and how a command computes: the device (``--device``) and CPU threads (``--threads``).

One implementation for every command and for the training loop (which adds the DDP local
rank on top of :func:`resolve_device`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
    limit: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=threads)
    except ImportError:
        pass
    with limit:
        yield
