"""Every model source -> a :class:`LoadedModel` (an ``nn.Module`` when the source has an
architecture, and always the named weight tensors).

MODEL is resolved in this order (README, "MODEL"):

1. nothing: the bundled default (``netprobe/assets/digitnet.pt``);
2. a torchvision classification name (``alexnet``), weights through torch hub's cache;
3. ``timm:NAME`` when timm is installed;
4. a file, its format sniffed from its bytes, not its extension.

Loading is safe by default: every ``torch.load`` is ``weights_only=True``; a file whose
pickle needs other globals is refused with the globals named, and nothing from it runs.
"""

from __future__ import annotations

import difflib
import io
import os
import pickletools
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import LoadError, NetprobeError, OptionError, UnsafeFileError
from .seeds import build_initialised, seeded

ASSETS = Path(__file__).parent / "assets"
BUNDLED_MODEL = ASSETS / "digitnet.pt"
CHECKPOINT_KEY = "netprobe_checkpoint"
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
STRIP_PREFIXES = ("module.", "_orig_mod.")


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
            "parameters": int(sum(t.numel() for t in self.tensors.values())),
        }


# ---------------------------------------------------------------------------------------
# format sniffing


def sniff(path: Path) -> str:
    """The file's format from its first bytes: zip-torch | torchscript | export |
    safetensors | onnx | legacy-torch | pickle, or ``unknown:<what it looks like>``."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "unknown:an empty file"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return "unknown:a truncated or corrupt zip archive"
        base = {n.split("/", 1)[-1] for n in names}
        if "archive_format" in base or any(n.endswith("models/model.json") for n in names):
            return "export"
        if "constants.pkl" in base and any("/code/" in n for n in names):
            return "torchscript"
        if "data.pkl" in base:
            return "zip-torch"
        return "unknown:a zip archive that is not a PyTorch file"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        # legacy torch.save starts with the pickled magic number 0x1950a86a20f9469cfc6c
        if head[2:14] == b"\x8a\x0a" + bytes.fromhex("6cfc9c46f9206aa85019"):
            return "legacy-torch"
        return "pickle"
    if (
        head[:1] == b"\x08"
        and len(head) > 3
        and head[1] < 0x20
        and head[2] in (0x12, 0x1A, 0x22, 0x3A, 0x42)
    ):
        return "onnx"
    for magic, what in (
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"%PDF", "a PDF document"),
        (b"\x93NUMPY", "a NumPy .npy array"),
        (b"\x89HDF", "an HDF5 file (Keras?)"),
    ):
        if head.startswith(magic):
            return f"unknown:{what}"
    try:
        head.decode("utf-8")
        return "unknown:a text file"
    except UnicodeDecodeError:
        return "unknown:unrecognised binary data"


# ---------------------------------------------------------------------------------------
# pickles


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
        except Exception:  # noqa: BLE001 - a broken stream just ends the scan
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
    except Exception:  # noqa: BLE001 - private API; fall back to torch.* only
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
        import re

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


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]


# ---------------------------------------------------------------------------------------
# state dicts


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


def load_state_dict_file(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A state dict from any weights file format netprobe reads."""
    lm = _load_file(path, arch=None, trust_pickle=trust_pickle, input_shape=None)
    return lm.tensors


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


# ---------------------------------------------------------------------------------------
# sources


def _sha(path: Path) -> str:
    from .report import sha256_file

    return sha256_file(path)


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return (
        f"did you mean {', '.join(close)}?"
        if close
        else "see `python -c 'import torchvision; print(torchvision.models.list_models())'`"
    )


def _offline() -> bool:
    return os.environ.get("NETPROBE_OFFLINE", "") not in ("", "0")


def torchvision_cache_file(name: str) -> tuple[Any, Path]:
    """(DEFAULT weights enum, the file torch hub caches its state dict in)."""
    import torchvision.models as tvm

    w = tvm.get_model_weights(name).DEFAULT
    return w, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def _torchvision_transform_info(
    w: Any,
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], int | None]:
    t = w.transforms()
    crop = getattr(t, "crop_size", [224])
    crop = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    resize = getattr(t, "resize_size", None)
    resize = int(resize[0]) if isinstance(resize, (list, tuple)) and resize else None
    mean = tuple(float(v) for v in getattr(t, "mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in getattr(t, "std", (0.229, 0.224, 0.225)))
    return (3, crop, crop), mean, std, resize


def _load_torchvision(
    name: str, weights: str, weights_file: Path | None, trust_pickle: bool, seed: int = 0
) -> LoadedModel:
    import torchvision.models as tvm

    enum = tvm.get_model_weights(name)
    default = enum.DEFAULT
    shape, mean, std, resize = _torchvision_transform_info(default)
    classes = list(default.meta.get("categories") or []) or None
    lm = LoadedModel(
        spec=name,
        kind="torchvision",
        tensors={},
        arch=name,
        input_shape=shape,
        mean=mean,
        std=std,
        resize=resize,
        classes=classes,
    )
    if weights_file is not None:
        model = tvm.get_model(name, weights=None, num_classes=len(classes) if classes else 1000)
        sd = load_state_dict_file(weights_file, trust_pickle)
        lm.module = _load_into(model, sd, str(weights_file), name)
        lm.path, lm.sha256, lm.weights = weights_file, _sha(weights_file), f"file {weights_file}"
    elif weights.lower() == "none":
        lm.module = build_initialised(name, seed)
        lm.weights = f"random initialisation (--weights none, seed {seed})"
    else:
        if weights.lower() in ("default", ""):
            w = default
        else:
            try:
                w = enum[weights]
            except KeyError:
                opts = ", ".join(["default", "none", *[e.name for e in enum]])
                raise OptionError(
                    f"--weights {weights}: not a weights name for {name}", hint=f"use one of {opts}"
                ) from None
        cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
        if not cache.is_file() and _offline():
            raise _missing_weights(name, cache)
        if not cache.is_file():
            try:
                torch.hub.download_url_to_file(w.url, str(cache), progress=True)
            except (OSError, Exception) as e:  # noqa: BLE001 - any download failure
                raise _missing_weights(name, cache, _first_line(e)) from e
        sd = _torch_load(cache, trust_pickle=False)
        model = tvm.get_model(name, weights=None)
        lm.module = _load_into(model, _as_state_dict(sd, str(cache)), str(cache), name)
        lm.path, lm.sha256, lm.weights = cache, _sha(cache), f"torchvision {name} {w.name}"
    lm.tensors = dict(lm.module.state_dict())
    return lm


def _missing_weights(name: str, cache: Path, why: str | None = None) -> LoadError:
    because = (
        f" and the download failed ({why})"
        if why
        else " and netprobe is offline (NETPROBE_OFFLINE)"
    )
    return LoadError(
        f"{name}: weights file {cache.name} is not in {cache.parent}{because}",
        hint=f"copy {cache.name} into {cache.parent} (set TORCH_HOME to use another cache), "
        "or pass --weights none for the random initialisation or --weights-file PATH for a local state dict",
    )


def _load_timm(
    name: str, weights: str, weights_file: Path | None, trust_pickle: bool, seed: int = 0
) -> LoadedModel:
    if _offline():  # read before huggingface_hub is imported
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import timm
    except ImportError:
        raise LoadError(
            f"timm:{name}: timm is not installed", hint="pip install 'netprobe[timm]'"
        ) from None
    if name not in timm.list_models():
        raise LoadError(f"timm:{name}: unknown timm model", hint=_suggest(name, timm.list_models()))
    pretrained = weights.lower() != "none" and weights_file is None
    try:
        with seeded(seed):  # the random init (--weights none) is a function of the seed
            model = timm.create_model(name, pretrained=pretrained)
    except Exception as e:  # noqa: BLE001 - hub failures come in many types
        raise LoadError(
            f"timm:{name}: could not get pretrained weights ({_first_line(e)})",
            hint="fill the Hugging Face cache (HF_HOME) on a networked machine, or pass --weights none / --weights-file PATH",
        ) from e
    if weights_file is not None:
        _load_into(model, load_state_dict_file(weights_file, trust_pickle), str(weights_file), name)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    shape = tuple(int(v) for v in cfg.get("input_size", (3, 224, 224)))
    return LoadedModel(
        spec=f"timm:{name}",
        kind="timm",
        tensors=dict(model.state_dict()),
        module=model,
        arch=f"timm:{name}",
        input_shape=shape,
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        weights="pretrained"
        if pretrained
        else ("file" if weights_file else "random initialisation"),
    )


def _from_checkpoint(obj: Mapping[str, Any], lm: LoadedModel) -> LoadedModel:
    from .archs import build

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


def _load_file(
    path: Path, arch: str | None, trust_pickle: bool, input_shape: tuple[int, ...] | None
) -> LoadedModel:
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
    lm = LoadedModel(
        spec=str(path),
        kind="state_dict",
        tensors={},
        path=path,
        sha256=_sha(path),
        input_shape=input_shape,
    )
    if fmt.startswith("unknown:"):
        raise LoadError(
            f"{path}: not a model file: it looks like {fmt.split(':', 1)[1]}",
            hint="netprobe reads PyTorch (.pt/.pth/.bin/.ckpt), TorchScript, torch.export (.pt2), .safetensors and .onnx files",
        )
    if fmt == "safetensors":
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
    elif fmt == "onnx":
        lm.kind, lm.tensors = "onnx", _onnx_tensors(path)
    elif fmt == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001 - TorchScript raises its own error types
            raise LoadError(
                f"{path}: corrupt TorchScript archive ({_first_line(e)})",
                hint="re-save it with torch.jit.save",
            ) from e
        lm.kind, lm.module, lm.tensors = "torchscript", module, dict(module.state_dict())
    elif fmt == "export":
        try:
            ep = torch.export.load(str(path))
        except Exception as e:  # noqa: BLE001
            raise LoadError(
                f"{path}: corrupt torch.export archive ({_first_line(e)})",
                hint="re-save it with torch.export.save",
            ) from e
        module = _rectifiers_as_torch_functions(ep.module())
        lm.kind, lm.module = "export", module
        lm.tensors = {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
        if lm.input_shape is None:
            try:
                args = ep.example_inputs[0] if ep.example_inputs else ()
                if args and isinstance(args[0], torch.Tensor):
                    lm.input_shape = tuple(args[0].shape[1:])
            except Exception:  # noqa: BLE001 - example inputs are optional
                pass
    else:  # zip-torch, legacy-torch, pickle
        obj = _torch_load(path, trust_pickle)
        if isinstance(obj, nn.Module):
            lm.kind, lm.module, lm.tensors = "pickle", obj, dict(obj.state_dict())
        elif isinstance(obj, Mapping) and obj.get(CHECKPOINT_KEY):
            lm.kind = "checkpoint"
            _from_checkpoint(obj, lm)
            if input_shape is not None:
                lm.input_shape = input_shape
        else:
            lm.tensors = _as_state_dict(obj, str(path))
    if arch is not None and lm.module is None:
        from .archs import build

        module = build(arch)
        lm.module = _load_into(module, lm.tensors, str(path), arch)
        lm.arch = arch
        if lm.input_shape is None and arch.removeprefix("torchvision:") in _tv_names():
            import torchvision.models as tvm

            shape, mean, std, resize = _torchvision_transform_info(
                tvm.get_model_weights(arch.removeprefix("torchvision:")).DEFAULT
            )
            lm.input_shape, lm.mean, lm.std, lm.resize = shape, mean, std, resize
    if not lm.tensors:
        raise LoadError(f"{path}: holds no weight tensors", hint="save the model's state_dict()")
    return lm


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
    except Exception as e:  # noqa: BLE001 - protobuf decode errors
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


_TV: list[str] | None = None


def _tv_names() -> list[str]:
    global _TV
    if _TV is None:
        from .archs import torchvision_names

        _TV = torchvision_names()
    return _TV


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None or text == "":
        return None
    import re

    parts = [p.strip() for p in re.split(r"[,x×]", text.strip())]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise OptionError(
            f"--input-shape {text}: expected positive integers like 3,224,224",
            hint="give C,H,W for images or N for vectors",
        )
    return shape


def load(
    spec: str | os.PathLike[str] | None = None,
    *,
    weights: str = "default",
    weights_file: str | os.PathLike[str] | None = None,
    arch: str | None = None,
    trust_pickle: bool = False,
    input_shape: tuple[int, ...] | str | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Load MODEL from any source netprobe knows (see the module docstring). ``seed`` makes
    a random initialisation (``weights="none"``) reproducible."""
    if isinstance(input_shape, str):
        input_shape = parse_input_shape(input_shape)
    wf = Path(weights_file) if weights_file is not None else None
    if wf is not None and not wf.is_file():
        raise LoadError(f"--weights-file {wf}: no such file", hint="check the path")
    if spec is None or str(spec) == "":
        if not BUNDLED_MODEL.is_file():
            raise LoadError(
                f"the bundled default model is missing ({BUNDLED_MODEL})",
                hint="reinstall netprobe, or rebuild it with `python scripts/build_assets.py`",
            )
        lm = _load_file(BUNDLED_MODEL, None, False, input_shape)
        lm.spec, lm.kind = "", "bundled"
        return lm
    s = str(spec)
    try:
        if (
            not isinstance(spec, os.PathLike) and not Path(s).is_file() and s in _tv_names()
        ):  # files skip the torchvision import
            lm = _load_torchvision(s, weights, wf, trust_pickle, seed)
            if input_shape is not None:
                lm.input_shape = input_shape
            return lm
        if s.startswith("timm:"):
            lm = _load_timm(s[5:], weights, wf, trust_pickle, seed)
            if input_shape is not None:
                lm.input_shape = input_shape
            return lm
        path = Path(s).expanduser()
        if not path.exists() and os.sep not in s and "." not in s:
            raise LoadError(
                f"unknown model '{s}': not a torchvision model name nor a file",
                hint=_suggest(s, _tv_names()),
            )
        if wf is not None:
            raise OptionError(
                "--weights-file goes with a torchvision model name",
                hint="for a file MODEL, pass the file itself",
            )
        return _load_file(path, arch, trust_pickle, input_shape)
    except NetprobeError:
        raise
    except MemoryError as e:
        raise LoadError(
            f"{s}: out of memory while loading", hint="free memory or use a smaller model"
        ) from e


def ensure_loaded(
    model: LoadedModel | nn.Module | str | os.PathLike[str] | None, **load_kwargs: Any
) -> LoadedModel:
    """What every library entry point (``netprobe.randomness(model, ...)`` and the rest)
    does with its ``model`` argument: a :class:`LoadedModel` is used as it is, an
    ``nn.Module`` is wrapped, anything else is a MODEL spec for :func:`load`."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, nn.Module):
        return LoadedModel(
            spec=type(model).__name__,
            kind="module",
            tensors=dict(model.state_dict()),
            module=model,
            input_shape=parse_input_shape(load_kwargs.get("input_shape"))
            if isinstance(load_kwargs.get("input_shape"), str)
            else load_kwargs.get("input_shape"),
        )
    return load(model, **load_kwargs)


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
    from .report import atomic_write_bytes

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
