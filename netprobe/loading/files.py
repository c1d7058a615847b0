"""Model files: every format netprobe reads (PyTorch state dicts and netprobe checkpoints,
TorchScript, torch.export, safetensors, ONNX), sniffed by bytes, and the netprobe checkpoint
writer. docs/design.md ("Loading")."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LoadError
from .model import CHECKPOINT_KEY, LoadedModel, _first_line, _sha
from .pickles import _torch_load
from .sniff import sniff
from .statedict import _as_state_dict, _load_into, _strip


def _from_checkpoint(obj: Mapping[str, Any], lm: LoadedModel) -> LoadedModel:
    from ..archs import build

    arch = str(obj.get("arch"))
    module = build(arch, **dict(obj.get("arch_kwargs") or {}))
    sd = _as_state_dict(obj["state_dict"], lm.display)
    lm.module = _load_into(module, sd, lm.display, arch)
    lm.tensors = dict(module.state_dict())
    lm.arch = arch
    if obj.get("input_shape"):
        lm.input_shape = tuple(int(v) for v in obj["input_shape"])
    lm.mean = tuple(obj["mean"]) if obj.get("mean") is not None else None
    lm.std = tuple(obj["std"]) if obj.get("std") is not None else None
    lm.classes = list(obj["classes"]) if obj.get("classes") else None
    lm.meta = {
        k: v for k, v in obj.items() if k not in ("state_dict",) and not isinstance(v, torch.Tensor)
    }
    lm.weights = "netprobe checkpoint"
    return lm


def _rectifiers_as_torch_functions(gm: Any) -> Any:
    """torch.export programs call ``aten.relu`` directly, below the level where netprobe sees
    rectifier calls; point those graph nodes at the matching ``torch`` functions instead (same
    maths) on the program's own module copy."""
    import torch.nn.functional as F

    aten = torch.ops.aten
    table = {
        aten.relu.default: torch.relu,
        aten.relu_.default: torch.relu,
        aten.leaky_relu.default: F.leaky_relu,
        aten.leaky_relu_.default: F.leaky_relu,
        aten.relu6.default: F.relu6,
        aten.hardtanh.default: F.hardtanh,
        aten.hardtanh_.default: F.hardtanh,
    }
    changed = False
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in table:
            node.target = table[node.target]
            changed = True
    if changed:
        gm.recompile()
    return gm


def _read_safetensors(path: Path, lm: LoadedModel, trust_pickle: bool) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise LoadError(
            f"{path}: corrupt safetensors file ({_first_line(e)})",
            hint="re-download or re-save it",
        ) from e
    lm.kind, lm.tensors = "safetensors", _strip(sd)


def _read_onnx(path: Path, lm: LoadedModel, trust_pickle: bool) -> None:
    lm.kind, lm.tensors = "onnx", _onnx_tensors(path)


def _read_torchscript(path: Path, lm: LoadedModel, trust_pickle: bool) -> None:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # TorchScript raises its own (C++) error types
        raise LoadError(
            f"{path}: corrupt TorchScript archive ({_first_line(e)})",
            hint="re-save it with torch.jit.save",
        ) from e
    lm.kind, lm.module, lm.tensors = "torchscript", module, dict(module.state_dict())


def _read_export(path: Path, lm: LoadedModel, trust_pickle: bool) -> None:
    try:
        ep = torch.export.load(str(path))
    except Exception as e:  # torch.export raises its own (C++ and serde) error types
        raise LoadError(
            f"{path}: corrupt torch.export archive ({_first_line(e)})",
            hint="re-save it with torch.export.save",
        ) from e
    module = _rectifiers_as_torch_functions(ep.module())
    lm.kind, lm.module = "export", module
    lm.tensors = {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    if lm.input_shape is None:
        # the program's example inputs give the input shape; they are optional
        example = getattr(ep, "example_inputs", None)
        args = example[0] if example else ()
        if args and isinstance(args[0], torch.Tensor):
            lm.input_shape = tuple(args[0].shape[1:])


def _read_torch(path: Path, lm: LoadedModel, trust_pickle: bool) -> None:
    """zip-torch, legacy-torch and plain pickles: a state dict, a netprobe checkpoint, or (only
    with --trust-pickle) a whole pickled module."""
    obj = _torch_load(path, trust_pickle)
    if isinstance(obj, nn.Module):
        lm.kind, lm.module, lm.tensors = "pickle", obj, dict(obj.state_dict())
    elif isinstance(obj, Mapping) and obj.get(CHECKPOINT_KEY):
        given = lm.input_shape
        lm.kind = "checkpoint"
        _from_checkpoint(obj, lm)
        if given is not None:  # --input-shape wins over the checkpoint's
            lm.input_shape = given
    else:
        lm.tensors = _as_state_dict(obj, str(path))


_READERS: dict[str, Callable[[Path, LoadedModel, bool], None]] = {
    "safetensors": _read_safetensors,
    "onnx": _read_onnx,
    "torchscript": _read_torchscript,
    "export": _read_export,
    "zip-torch": _read_torch,
    "legacy-torch": _read_torch,
    "pickle": _read_torch,
}


def _sniffed(path: Path) -> str:
    """The file's format, or a LoadError when it is missing, a folder or not a model file."""
    if not path.exists():
        raise LoadError(
            f"{path}: no such file",
            hint="check the path, or give a torchvision model name such as alexnet",
        )
    if path.is_dir():
        raise LoadError(
            f"{path}: is a folder, not a model file",
            hint="pass one model file (use `netprobe check DIR` to check every model in a folder)",
        )
    try:
        fmt = sniff(path)
    except OSError as e:
        raise LoadError(
            f"{path}: cannot be read ({_first_line(e)})", hint="check its permissions"
        ) from e
    if fmt.startswith("unknown:"):
        raise LoadError(
            f"{path}: not a model file: it looks like {fmt.split(':', 1)[1]}",
            hint="netprobe reads PyTorch (.pt/.pth/.bin/.ckpt), TorchScript, torch.export (.pt2), .safetensors and .onnx files",
        )
    return fmt


def _with_arch(lm: LoadedModel, path: Path, arch: str) -> None:
    """Weights-only file + --arch: build the architecture and load the weights into it."""
    from ..archs import build, is_torchvision_name
    from .torchvision_hub import _torchvision_transform_info

    lm.module = _load_into(build(arch), lm.tensors, str(path), arch)
    lm.arch = arch
    name = arch.removeprefix("torchvision:")
    if lm.input_shape is None and is_torchvision_name(name):
        import torchvision.models as tvm

        info = _torchvision_transform_info(tvm.get_model_weights(name).DEFAULT)
        lm.input_shape, lm.mean, lm.std, lm.resize = info


def _load_file(
    path: Path, arch: str | None, trust_pickle: bool, input_shape: tuple[int, ...] | None
) -> LoadedModel:
    fmt = _sniffed(path)
    lm = LoadedModel(
        spec=str(path),
        kind="state_dict",
        tensors={},
        path=path,
        sha256=_sha(path),
        input_shape=input_shape,
    )
    _READERS[fmt](path, lm, trust_pickle)
    if arch is not None and lm.module is None:
        _with_arch(lm, path, arch)
    if not lm.tensors:
        raise LoadError(f"{path}: holds no weight tensors", hint="save the model's state_dict()")
    return lm


def load_state_dict_file(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from any weights file format netprobe reads."""
    return _load_file(path, arch=None, trust_pickle=trust_pickle, input_shape=None).tensors


def _onnx_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise LoadError(
            f"{path}: reading ONNX files needs the onnx package",
            hint="pip install 'netprobe[onnx]'",
        ) from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common base class
        raise LoadError(f"{path}: corrupt ONNX file ({_first_line(e)})", hint="re-export it") from e
    out: dict[str, torch.Tensor] = {}
    for init in model.graph.initializer:
        out[init.name] = torch.from_numpy(numpy_helper.to_array(init).copy())
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t is not None and a.t.dims:
                    out[node.output[0]] = torch.from_numpy(numpy_helper.to_array(a.t).copy())
    return out


def save_checkpoint(
    path: str | os.PathLike[str],
    module: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    classes: list[str] | None = None,
    **meta: Any,
) -> Path:
    """Write a netprobe checkpoint (a plain-data dict: loadable with weights_only=True) atomically."""
    from ..report import atomic_write_bytes

    obj = {
        CHECKPOINT_KEY: 1,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "input_shape": list(input_shape) if input_shape else None,
        "mean": list(mean) if mean else None,
        "std": list(std) if std else None,
        "classes": classes,
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        **meta,
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(Path(path), buf.getvalue())
