"""Seeds and random initialisation: the one place netprobe turns a run seed into randomness.

Every random stream a command uses (a fresh initialisation, a control, a data order, a
generation mask) is derived from the run's ``--seed`` by :func:`derive_seed`, so the same
command twice gives the same numbers (docs/design.md, "Determinism").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import OptionError


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed for one random stream, from the run seed and the stream's coordinates
    (e.g. ``derive_seed(seed, arm, epoch)``). Distinct coordinates give independent streams."""
    state = np.random.SeedSequence(
        [int(seed) & 0xFFFFFFFFFFFFFFFF, *[int(p) for p in parts]]
    ).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1])) & 0x7FFFFFFFFFFFFFFF


def _cuda_devices(module: nn.Module | None) -> list[int]:
    if module is None:
        return []
    return sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})


@contextmanager
def seeded(seed: int, devices: Sequence[int] = ()) -> Iterator[None]:
    """Run a block with the global torch RNG seeded from ``seed``, restoring the caller's
    RNG afterwards. Building a model inside it makes its initialisation a function of
    ``seed``."""
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(int(seed))
        yield


def build_initialised(arch: str, seed: int, **arch_kwargs: Any) -> nn.Module:
    """Build an architecture by name (bundled, torchvision or ``timm:NAME``) with its own
    initialisation scheme, seeded. ``--weights none`` and the fresh-init controls use this."""
    with seeded(seed):
        if arch.startswith("timm:"):
            import timm

            return timm.create_model(arch[5:], pretrained=False, **arch_kwargs)
        from .archs import build

        return build(arch, **arch_kwargs)


def reset_initialised(module: nn.Module, seed: int) -> tuple[nn.Module, int]:
    """A copy of ``module`` re-initialised the way its submodules initialise themselves
    (``reset_parameters()``, seeded); a weight no submodule resets gets PyTorch's default
    Linear/Conv initialisation, a vector zeros. Returns (copy, submodules reset)."""
    net = copy.deepcopy(module)
    covered: set[int] = set()
    n = 0
    with seeded(seed, _cuda_devices(net)):
        for m in net.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                n += 1
                covered |= {id(p) for p in m.parameters(recurse=False)}
        with torch.no_grad():
            for p in net.parameters():
                if id(p) in covered:
                    continue
                if p.ndim >= 2:
                    nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                else:
                    p.zero_()
    return net, n


def fresh_init(lm: Any, seed: int) -> tuple[nn.Module, str]:
    """The fresh initialisation of a loaded model's architecture, and how it was made.

    One implementation for ``randomness --compare-init``, reconstruct's fresh-init control
    and ``--weights none``: when the architecture is known by name (torchvision, timm, a
    netprobe checkpoint) it is built again with its own init scheme; otherwise the module is
    copied and every submodule's ``reset_parameters()`` is called. Both are seeded, so the
    same seed gives the same weights in every command. ``lm`` is a
    :class:`~netprobe.loading.LoadedModel` or a bare ``nn.Module``.
    """
    if isinstance(lm, nn.Module):
        module, arch, kwargs, display = lm, None, {}, type(lm).__name__
    else:
        module, arch = lm.module, getattr(lm, "arch", None)
        kwargs = dict((getattr(lm, "meta", None) or {}).get("arch_kwargs") or {})
        display = lm.display
    if arch:
        net = build_initialised(str(arch), seed, **kwargs)
        if module is not None:
            net = net.to(next((p.device for p in module.parameters()), torch.device("cpu")))
        return net, f"fresh initialisation of {arch} (its own init scheme, seed {seed})"
    if module is None or isinstance(module, torch.jit.ScriptModule):
        raise OptionError(
            f"the architecture of {display} is not known, so it cannot be freshly initialised",
            hint="pass it with --arch NAME (e.g. --arch resnet18), or use a netprobe checkpoint",
        )
    net, n = reset_initialised(module, seed)
    if n == 0:
        raise OptionError(
            f"no submodule of {display} can re-initialise itself (no reset_parameters)",
            hint="pass the architecture with --arch NAME",
        )
    return net, f"PyTorch default initialisation (reset_parameters on {n} modules, seed {seed})"
