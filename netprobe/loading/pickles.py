"""Safe unpickling: every ``torch.load`` is ``weights_only=True`` unless the user trusts the
file; a pickle that needs other globals is refused with the globals named, before anything
from it runs. docs/design.md ("Loading")."""

from __future__ import annotations

import io
import pickletools
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import LoadError, UnsafeFileError
from .model import _first_line


def pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle stream would import, in order, without
    unpickling anything. Handles several concatenated pickles (legacy torch.save)."""
    out: list[str] = []
    pos = 0
    while pos < len(data):
        strings: list[str] = []
        memo: dict[int, Any] = {}
        last: Any = None
        end = None
        try:
            for op, arg, at in pickletools.genops(io.BytesIO(data[pos:])):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    out.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL":
                    if len(strings) >= 2:
                        out.append(f"{strings[-2]}.{strings[-1]}")
                    else:
                        out.append("<unknown>")
                elif (
                    isinstance(arg, str)
                    and "UNICODE" in name
                    or name in ("SHORT_BINSTRING", "BINSTRING", "STRING")
                ):
                    last = arg if isinstance(arg, str) else str(arg)
                    strings.append(last)
                    continue
                elif name == "MEMOIZE":
                    memo[len(memo)] = last
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg or 0)] = last
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    got = memo.get(int(arg or 0))
                    if isinstance(got, str):
                        strings.append(got)
                        last = got
                        continue
                elif name == "STOP":
                    end = (at or 0) + 1
                last = None
        except Exception:  # a broken stream (any error from genops) just ends the scan
            break
        if end is None:
            break
        pos += end
    seen: list[str] = []
    for g in out:
        if g not in seen:
            seen.append(g)
    return seen


def _allowed_globals() -> set[str]:
    try:
        from torch import _weights_only_unpickler as wou

        allowed = set(wou._get_allowed_globals().keys())
        allowed |= set(getattr(wou, "_get_user_allowed_globals", dict)().keys())
        return allowed
    except Exception:  # a private torch API: if it moved, allow torch.* only
        return set()


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream inside a torch zip (``*/data.pkl``), or the raw file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.endswith("data.pkl"):
                    return z.read(n)
        return b""
    return path.read_bytes()


def _unsafe_globals(path: Path) -> list[str]:
    allowed = _allowed_globals()
    try:
        found = pickle_globals(_pickle_bytes(path))
    except (OSError, zipfile.BadZipFile):
        return []
    return [
        g
        for g in found
        if g not in allowed
        and not g.startswith(("torch._utils.", "torch.serialization."))
        and g != "<unknown>"
        and not (g.startswith("torch.") and g.endswith("Storage"))
    ]


def _refuse_pickle(path: Path, err: Exception | None = None) -> UnsafeFileError:
    bad = _unsafe_globals(path)
    if not bad and err is not None:
        bad = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))
    names = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
    what = f"it imports {names}" if names else "it needs Python objects other than tensors"
    return UnsafeFileError(
        f"{path}: refused to unpickle: {what}, and unpickling can run arbitrary code",
        hint="if you trust the file and its source, pass --trust-pickle",
    )


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load with weights_only=True unless the user opted in; every failure is a
    LoadError or an UnsafeFileError naming the globals."""
    import pickle

    if not trust_pickle:
        bad = _unsafe_globals(path)
        if bad:  # refuse before torch.load reads anything
            raise _refuse_pickle(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            raise LoadError(
                f"{path}: corrupt pickle data ({_first_line(e)})", hint="re-save the file"
            ) from e
        raise _refuse_pickle(path, e) from e
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise LoadError(
            f"{path}: the pickled object needs code that is not importable here ({_first_line(e)})",
            hint="put the module that defines the model on PYTHONPATH, or save a state dict instead",
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error) as e:
        raise LoadError(
            f"{path}: not a readable PyTorch file ({_first_line(e)})",
            hint="the file may be truncated or corrupt; re-download or re-save it",
        ) from e
