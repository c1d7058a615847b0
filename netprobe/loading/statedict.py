"""State dicts: unwrapping ``{"state_dict": ...}`` and friends, stripping ``module.`` /
``_orig_mod.`` prefixes, and loading one into an architecture with a one-line account of
what does not fit. docs/design.md ("Loading")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import LoadError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
STRIP_PREFIXES = ("module.", "_orig_mod.")


def _strip(sd: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in sd.items():
        k = str(k)
        changed = True
        while changed:
            changed = False
            for p in STRIP_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
            k = k.replace("._orig_mod.", ".")
        out[k] = v
    return out


def _as_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Unwrap {"state_dict": ...} and friends; every value must be a tensor."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and any(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                obj = inner
                break
            if isinstance(inner, nn.Module):
                return _strip(inner.state_dict())
        bad = [(k, type(v).__name__) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if bad:
            k, t = bad[0]
            raise LoadError(
                f"{where}: entry '{k}' is a {t}, not a tensor, so this is not a state dict",
                hint="netprobe reads {name: tensor} state dicts, optionally wrapped as "
                "{'state_dict': ...}, {'model': ...} or {'model_state_dict': ...}",
            )
        if not obj:
            raise LoadError(
                f"{where}: the state dict is empty", hint="save the model's state_dict()"
            )
        return _strip(obj)
    raise LoadError(
        f"{where}: holds a {type(obj).__name__}, not a state dict or model",
        hint="save model.state_dict() with torch.save",
    )


def _load_into(
    module: nn.Module, sd: Mapping[str, torch.Tensor], where: str, arch: str
) -> nn.Module:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or mismatched:
        bits = []
        if mismatched:
            k = mismatched[0]
            bits.append(
                f"{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(sd[k].shape)}, {arch} {tuple(own[k].shape)})"
            )
        if missing:
            bits.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            bits.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise LoadError(
            f"{where}: weights do not fit the {arch} architecture: " + "; ".join(bits),
            hint="pass the architecture the weights were trained with (--arch NAME)",
        )
    module.load_state_dict(sd, strict=True)
    return module
