"""torchvision classification models by name, their weights through torch hub's cache.

A cached weights file is checked before it is loaded: torchvision's file names carry a
prefix of the file's SHA-256 (``resnet18-f37072fd.pth``), and a file that does not match it
is refused, as torch.hub's ``check_hash`` would, so another file saved under that name is
never reported as torchvision's weights. Downloads create the cache folder, show torch's
progress bar on stderr, and on failure name the real cause, the URL and the exact place to
copy the file to. docs/design.md ("Loading").
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
from pathlib import Path
from typing import Any

import torch

from ..errors import LoadError, OptionError
from ..seeds import build_initialised
from .model import LoadedModel, _first_line, _offline, _sha
from .pickles import _torch_load
from .statedict import _as_state_dict, _load_into

# torchvision's weight files end in "-<at least 8 hex digits of their SHA-256>.<ext>"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[^.]+$")

_TV: list[str] | None = None


def _tv_names() -> list[str]:
    """Every name torchvision lists (imports torchvision: for suggestions in errors; a name
    is recognised by :func:`netprobe.archs.is_torchvision_name`, without the import)."""
    global _TV
    if _TV is None:
        from ..archs import torchvision_names

        _TV = torchvision_names()
    return _TV


def _kinds_by_rank(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """The module kinds of a torchvision classifier's weights, read from the state dict:
    its 4-D weights are Conv2d, its 2-D ``weight`` tensors Linear and its ``in_proj_weight``
    MultiheadAttention (torchvision's classifiers have no other >= 2-D weight modules)."""
    kinds: dict[str, str] = {}
    for key, t in tensors.items():
        path, _, pname = key.rpartition(".")
        if pname == "in_proj_weight":
            kinds[path] = "MultiheadAttention"
        elif pname == "weight" and t.ndim == 4:
            kinds[path] = "Conv2d"
        elif pname == "weight" and t.ndim == 2:
            kinds[path] = "Linear"
    return kinds


def torchvision_file_tensors(name: str, weights_file: Path, trust_pickle: bool) -> LoadedModel:
    """``NAME --weights-file W`` where only the tensors are needed (``randomness``): W's state
    dict, checked against the architecture's tensor and entry counts
    (``archs.TORCHVISION_STATE``), with the module kinds read from it (:func:`_kinds_by_rank`),
    without importing torchvision or building the network (together 2-4 s of a 15 s AlexNet
    run). Commands that run the network load through :func:`_load_torchvision`, which checks
    every key and shape."""
    from ..archs import TORCHVISION_STATE
    from .files import _load_file

    src = _load_file(weights_file, None, trust_pickle, None)
    tensors = dict(src.tensors)
    want = TORCHVISION_STATE.get(name)  # None: a name only a newer torchvision has
    got = (len(tensors), sum(int(t.numel()) for t in tensors.values()))
    if want is not None and got != want:
        raise LoadError(
            f"{weights_file}: weights do not fit the {name} architecture: {got[0]} tensors "
            f"with {got[1]:,} entries, {name} has {want[0]} with {want[1]:,}",
            hint="pass the architecture the weights were trained with, or the file alone "
            "as MODEL (netprobe randomness FILE)",
        )
    return LoadedModel(
        spec=name,
        kind="torchvision",
        tensors=tensors,
        arch=name,
        path=weights_file,
        sha256=src.sha256,
        weights=f"file {weights_file}",
        meta={"kinds": _kinds_by_rank(tensors)},
    )


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


def hash_prefix(filename: str) -> str | None:
    """The SHA-256 prefix a torchvision weights file name promises, or None."""
    m = _HASH_IN_NAME.search(filename)
    return m.group(1) if m else None


def cache_path(url: str) -> Path:
    """Where torch hub caches the file at ``url`` (``$TORCH_HOME/hub/checkpoints/NAME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _elsewhere(url: str, cache: Path) -> str:
    return (
        f"fetch {url} on a machine with network access and copy it to {cache} "
        "(TORCH_HOME moves the cache), or pass --weights none for a random initialisation "
        "or --weights-file PATH for a local state dict"
    )


def verified_digest(label: str, url: str, cache: Path) -> str:
    """The cached file's SHA-256, after checking it against the prefix in its name (hashed once:
    the digest is the provenance's too)."""
    digest = _sha(cache)
    prefix = hash_prefix(cache.name)
    if prefix is not None and not digest.startswith(prefix):
        raise LoadError(
            f"{cache}: its SHA-256 starts {digest[: len(prefix)]}, not {prefix} as its name "
            f"says, so it is not the {label} weights file",
            hint=f"delete it and run again to download it, or {_elsewhere(url, cache)}",
        )
    return digest


def _download_reason(e: BaseException) -> str:
    """The underlying cause of a failed download, in one line."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        r = e.reason
        return _first_line(r) if isinstance(r, BaseException) else str(r)
    return _first_line(e)


def download(label: str, url: str, cache: Path) -> None:
    """Download ``url`` into the hub cache (creating the folder), checked against the hash
    prefix in its name; every failure is one LoadError with the cause and the way round it."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LoadError(
            f"cannot create the torch hub cache folder {cache.parent} ({_first_line(e)})",
            hint="set TORCH_HOME to a writable folder",
        ) from e
    print(f"downloading {label}: {url} -> {cache}", file=sys.stderr, flush=True)
    try:
        # looked up on torch.hub at call time, so tests can replace it
        torch.hub.download_url_to_file(url, str(cache), hash_prefix=hash_prefix(cache.name))
    except RuntimeError as e:  # torch.hub's hash check of the downloaded bytes
        raise LoadError(
            f"{label}: the file downloaded from {url} failed its SHA-256 check ({_first_line(e)})",
            hint=f"run again; if it fails again, {_elsewhere(url, cache)}",
        ) from e
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
        raise LoadError(
            f"{label}: could not download {url} ({_download_reason(e)})",
            hint=f"check the network, or {_elsewhere(url, cache)}",
        ) from e
    if not cache.is_file():
        raise LoadError(
            f"{label}: the download of {url} left no file at {cache}",
            hint=_elsewhere(url, cache),
        )


def cached_weights(label: str, url: str) -> tuple[Path, str]:
    """(the verified cached file, its SHA-256), downloading it first unless offline."""
    cache = cache_path(url)
    if not cache.is_file():
        if _offline():
            raise LoadError(
                f"{label}: {cache.name} is not in the torch hub cache ({cache.parent}) and "
                "netprobe is offline (NETPROBE_OFFLINE is set)",
                hint=_elsewhere(url, cache),
            )
        download(label, url, cache)
    return cache, verified_digest(label, url, cache)


def _weights_entry(enum: Any, weights: str, name: str) -> Any:
    """The torchvision weights enum member --weights names (``default`` = DEFAULT)."""
    if weights.lower() in ("default", ""):
        return enum.DEFAULT
    try:
        return enum[weights]
    except KeyError:
        opts = ", ".join(["default", "none", *[e.name for e in enum]])
        raise OptionError(
            f"--weights {weights}: not a weights name for {name}", hint=f"use one of {opts}"
        ) from None


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
        from .files import _load_file

        src = _load_file(weights_file, None, trust_pickle, None)
        model = tvm.get_model(name, weights=None, num_classes=len(classes) if classes else 1000)
        lm.module = _load_into(model, src.tensors, str(weights_file), name)
        lm.path, lm.sha256, lm.weights = weights_file, src.sha256, f"file {weights_file}"
    elif weights.lower() == "none":
        lm.module = build_initialised(name, seed)
        lm.weights = f"random initialisation (--weights none, seed {seed})"
    else:
        w = _weights_entry(enum, weights, name)
        label = f"torchvision {name} {w.name}"
        cache, digest = cached_weights(label, w.url)
        sd = _torch_load(cache, trust_pickle=False)
        model = tvm.get_model(name, weights=None)
        lm.module = _load_into(model, _as_state_dict(sd, str(cache)), str(cache), name)
        lm.path, lm.sha256, lm.weights = cache, digest, label
    lm.tensors = dict(lm.module.state_dict())
    return lm
