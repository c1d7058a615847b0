"""Every model source -> a :class:`LoadedModel` (an ``nn.Module`` when the source has an
architecture, and always the named weight tensors). See docs/design.md ("Loading").

MODEL is resolved in this order (README, "MODEL"):

1. nothing: the bundled default (``netprobe/assets/digitnet.pt``);
2. a torchvision classification name (``alexnet``), weights through torch hub's cache,
   checked against the SHA-256 prefix in their file name (:mod:`.torchvision_hub`);
3. ``timm:NAME`` when timm is installed (:mod:`.timm_hub`);
4. ``hf:ORG/NAME[@REV]`` through the Hugging Face cache (:mod:`.hf`);
5. a checkpoint folder (Hugging Face layout, shards + index) or a file, its format sniffed
   from its bytes, not its extension (:mod:`.sniff`, :mod:`.files`); folders and
   safetensors files are streamed, one tensor at a time (:mod:`.sharded`).

Loading is safe by default: every ``torch.load`` is ``weights_only=True``; a file whose
pickle needs other globals is refused with the globals named, and nothing from it runs
(:mod:`.pickles`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..archs import is_torchvision_name
from ..errors import LoadError, NetprobeError, OptionError
from .files import (
    _from_checkpoint,
    _load_file,
    _onnx_tensors,
    _rectifiers_as_torch_functions,
    load_state_dict_file,
    save_checkpoint,
)
from .model import ASSETS, BUNDLED_MODEL, CHECKPOINT_KEY, LoadedModel, _suggest
from .pickles import pickle_globals
from .sniff import sniff
from .statedict import STRIP_PREFIXES, WRAPPER_KEYS
from .timm_hub import _load_timm
from .torchvision_hub import _load_torchvision, _tv_names, torchvision_file_tensors

__all__ = [
    "ASSETS",
    "BUNDLED_MODEL",
    "CHECKPOINT_KEY",
    "STRIP_PREFIXES",
    "WRAPPER_KEYS",
    "LoadedModel",
    "_from_checkpoint",
    "_onnx_tensors",
    "_rectifiers_as_torch_functions",
    "ensure_loaded",
    "load",
    "load_state_dict_file",
    "parse_input_shape",
    "pickle_globals",
    "save_checkpoint",
    "sniff",
]

_TV_LISTING = "python -c 'import torchvision; print(torchvision.models.list_models())'"


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
    tensors_only: bool = False,
) -> LoadedModel:
    """Load MODEL from any source netprobe knows (see the module docstring). ``seed`` makes
    a random initialisation (``weights="none"``) reproducible. ``tensors_only`` (for
    commands that read the weights and never run the network) lets a torchvision NAME with
    ``weights_file`` skip building the network: see :func:`.torchvision_hub.torchvision_file_tensors`."""
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
            not isinstance(spec, os.PathLike) and not Path(s).is_file() and is_torchvision_name(s)
        ):  # names are recognised without importing torchvision (archs.TORCHVISION_CLASSIFIERS)
            if tensors_only and wf is not None:
                return torchvision_file_tensors(s, wf, trust_pickle)
            lm = _load_torchvision(s, weights, wf, trust_pickle, seed)
            if input_shape is not None:
                lm.input_shape = input_shape
            return lm
        if s.startswith("hf:"):
            from .hf import load_hf

            lm = load_hf(s)
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
                hint=_suggest(s, _tv_names(), _TV_LISTING),
            )
        if wf is not None:
            raise OptionError(
                "--weights-file goes with a torchvision model name",
                hint="for a file MODEL, pass the file itself",
            )
        if wf is None:
            from .sharded import load_path

            streamed = load_path(path, s, arch)  # folders, .safetensors, one .bin shard
            if streamed is not None:
                streamed.input_shape = input_shape
                return streamed
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
