"""Training checkpoints: write and read ``training-state.pt``, check that a resume fits the
run, RNG states, and the Ctrl-C flag honoured at batch boundaries."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import LoadError, OptionError

STATE_FILE = "training-state.pt"
STATE_KEY = "netprobe_training_state"


class StopFlag:
    """SIGINT -> a flag checked at batch boundaries (so the state saved is consistent). A second
    Ctrl-C interrupts at once. Installed only in the main thread."""

    def __init__(self) -> None:
        self.flag = False
        self._prev: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.flag = True
        signal.signal(
            signal.SIGINT, self._prev if callable(self._prev) else signal.default_int_handler
        )

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            try:
                self._prev = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except (ValueError, OSError):  # e.g. an embedded interpreter
                self._installed = False
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(
                signal.SIGINT, self._prev if self._prev is not None else signal.default_int_handler
            )


def rng_state(device: torch.device, gens: Mapping[str, torch.Generator]) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    for k, g in gens.items():
        out[k] = g.get_state()
    return out


def set_rng_state(
    state: Mapping[str, Any], device: torch.device, gens: Mapping[str, torch.Generator]
) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    for k, g in gens.items():
        if state.get(k) is not None:
            g.set_state(state[k])


def save_state(path: Path, obj: Mapping[str, Any]) -> None:
    from ..report import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(dict(obj), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | Path) -> dict[str, Any]:
    """A training state written by :func:`fit` (``training-state.pt`` or its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    if not p.is_file():
        raise LoadError(
            f"{p}: no training state to resume from",
            hint="pass the checkpoint folder of an earlier run",
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign files raise many kinds of errors
        raise LoadError(
            f"{p}: not a readable training state ({str(e).splitlines()[0][:160]})",
            hint="start a fresh run",
        ) from e
    if not isinstance(obj, Mapping) or not obj.get(STATE_KEY):
        raise LoadError(
            f"{p}: not a netprobe training state",
            hint="pass the checkpoint folder an earlier run wrote",
        )
    return dict(obj)


def check_resume(saved: Mapping[str, Any], config: Mapping[str, Any], src: Path) -> None:
    old = dict(saved.get("config") or {})
    keys = ["seed", "batch_size", "n_train", "lr", "optimizer", "weight_decay", "schedule"]
    if config["schedule"] != "constant":
        keys.append("epochs")  # the schedule's length is part of the run
    if int(saved.get("step", 0)) > 0:
        keys.append("world_size")  # mid-epoch states hold per-rank RNG states
    for k in keys:
        if old.get(k) != config[k]:
            raise OptionError(
                f"cannot resume from {src}: it was trained with {k} {old.get(k)!r}, this run uses {config[k]!r}",
                hint="resume with the settings of the interrupted run, or start a fresh one",
            )
    if int(saved["epoch"]) > int(config["epochs"]):
        raise OptionError(
            f"cannot resume from {src}: it already ran {saved['epoch']} epochs, more than the {config['epochs']} asked for",
            hint="ask for at least as many epochs",
        )
