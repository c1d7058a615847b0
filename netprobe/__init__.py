"""netprobe: analyse trained neural networks the way Arora, Liang & Ma's
"Why are deep nets reversible" does (arXiv 1511.05653), and further.

The public API is imported lazily, so ``import netprobe`` and ``netprobe --help`` stay quick:

>>> import netprobe
>>> model = netprobe.load("alexnet", weights="none")
>>> netprobe.layers(model).hidden[0].shape
(64, 55, 55)
"""

from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"

# OpenBLAS (numpy's and scipy's) keeps its idle worker threads spinning for 2^28 cycles
# (~0.1 s) after every call, read once when the library loads. netprobe alternates scipy's
# BLAS (the syrk Gram) with torch's own thread pool many times a second (one shuffled draw
# is a permutation, a syrk and an eigensolve), and the spinning workers took the cores
# torch's threads were waiting for: at two threads on two cores a 256-side syrk + eigensolve
# took 14 ms (0.8 ms with this setting, 0.5 ms at one thread), and AlexNet's randomness ran
# 27% slower than at one thread. 2^16 cycles (tens of microseconds) keeps back-to-back calls
# warm. The user's own setting wins.
# docs/design.md, "Speed".
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

# The five entry points mirror the five commands; each returns its report object. No
# submodule shares a name with them (importing one would shadow the function).
_LAZY = {
    "randomness": ("netprobe.iid", "randomness"),
    "reconstruct": ("netprobe.reconstruction", "reconstruct"),
    "shadow_train": ("netprobe.shadow", "shadow_train"),
    "check": ("netprobe.zoo", "check"),
    "layers": ("netprobe.listing", "layers"),
    "propagate": ("netprobe.propagation", "propagate"),
    "load": ("netprobe.loading", "load"),
    "LoadedModel": ("netprobe.loading", "LoadedModel"),
    "NetprobeError": ("netprobe.errors", "NetprobeError"),
    "load_dataset": ("netprobe.data", "load_dataset"),
    "bundled_digits": ("netprobe.data", "bundled_digits"),
    "fit": ("netprobe.training", "fit"),
    "evaluate": ("netprobe.training", "evaluate"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'netprobe' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
