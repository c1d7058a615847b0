"""What a loaded model is (:class:`LoadedModel`), where the bundled one lives, and the small
helpers every loader shares (one-line error text, the file digest). docs/design.md ("Loading")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LoadError, OptionError

ASSETS = Path(__file__).parent.parent / "assets"
BUNDLED_MODEL = ASSETS / "digitnet.pt"
CHECKPOINT_KEY = "netprobe_checkpoint"


@dataclass
class LoadedModel:
    """A model as netprobe sees it: weights always, a runnable module when known."""

    spec: str  # what the user passed ("alexnet", a path, "" for the bundled default)
    kind: str  # bundled | torchvision | timm | state_dict | checkpoint | export | torchscript | safetensors | onnx | pickle
    tensors: dict[str, torch.Tensor]
    module: nn.Module | None = None
    arch: str | None = None
    input_shape: tuple[int, ...] | None = None  # one input, without batch: (C, H, W)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None
    classes: list[str] | None = None
    path: Path | None = None
    sha256: str | None = None
    weights: str | None = None  # which weights were loaded, in words
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        if self.kind == "bundled":
            return "bundled digitnet"
        return self.spec

    def require_module(self, command: str) -> nn.Module:
        """The runnable module, or a LoadError saying how to give one."""
        if self.module is None:
            raise LoadError(
                f"{self.display}: `netprobe {command}` needs to run the network, and this "
                f"{self.kind.replace('_', ' ')} file holds weights only",
                hint="pass the architecture with --arch NAME (e.g. --arch resnet18), or use a "
                "netprobe checkpoint, a torch.export .pt2 or TorchScript file",
            )
        return self.module

    def require_input_shape(self, command: str) -> tuple[int, ...]:
        if self.input_shape is None:
            raise OptionError(
                f"{self.display}: `netprobe {command}` needs the model's input shape",
                hint="pass it with --input-shape, e.g. --input-shape 3,224,224",
            )
        return self.input_shape

    def provenance(self) -> dict[str, Any]:
        return {
            "spec": self.spec or "(bundled default)",
            "kind": self.kind,
            "arch": self.arch,
            "weights": self.weights,
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "parameters": self.parameter_count(),
        }

    def parameter_count(self) -> int:
        """Entries in every tensor; a streamed checkpoint answers from its headers, without
        reading data (loading.sharded.StreamedTensors)."""
        n = getattr(self.tensors, "parameter_count", None)
        if isinstance(n, int):
            return n
        return int(sum(t.numel() for t in self.tensors.values()))

    def size_line(self) -> str:
        """One line saying how big the model is: parameters and bytes, said before a long
        analysis starts (docs/design.md, "Hugging Face checkpoints and streaming"). Read
        from headers and the file system only: a streamed checkpoint's data is not touched."""
        from rich.filesize import decimal

        params = self.parameter_count()
        files = self.meta.get("files")
        if isinstance(self.meta.get("bytes"), int):  # streamed: the tensors' bytes on disk
            where = f"on disk in {len(files)} file(s)" if files else "on disk"
            size = int(self.meta["bytes"])
        elif self.path is not None and self.path.is_file():
            where, size = "on disk", self.path.stat().st_size
        else:
            where = "in memory"
            size = int(sum(t.numel() * t.element_size() for t in self.tensors.values()))
        return f"{self.display}: {params:,} parameters ({_short(params)}), {decimal(size)} {where}"


def _short(n: int) -> str:
    """1234567 -> 1.2M (the way model sizes are usually said)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]


def _sha(path: Path) -> str:
    """The file's SHA-256 (hex): hashed once per load and reused for provenance."""
    from ..report import sha256_file

    return sha256_file(path)


def _offline() -> bool:
    return os.environ.get("NETPROBE_OFFLINE", "") not in ("", "0")


def _suggest(name: str, names: list[str], listing: str) -> str:
    """``did you mean ...?`` from the close names, else the command that lists them all."""
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"did you mean {', '.join(close)}?" if close else f"see `{listing}`"
