"""Checkpoints as people store them today: one ``.safetensors`` file, a folder of shards with
or without an index (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``), or
one shard of such a folder, read as a lazy, read-only mapping of tensors
(:class:`StreamedTensors`). docs/design.md ("Hugging Face checkpoints and streaming").

Only headers are read at load time: names, shapes, dtypes and byte ranges, so ``layers``
lists a 7B model without touching its data, and every shard the index names is checked up
front (missing, truncated, a tensor the shard does not hold) before anything is analysed or
written. A tensor's data is read when the mapping is indexed, one tensor at a time, and is
not cached: the caller drops it and the memory goes back (constant memory, bounded by the
largest tensor).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import LoadError
from .model import _first_line
from .roles import natural_key

#: safetensors dtype names -> torch dtypes (the float8 pair needs torch >= 2.1)
ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        ST_DTYPES[_name] = getattr(torch, _attr)

_SHARD_NAME = re.compile(r"-(\d{5})-of-(\d{5})\.(safetensors|bin)$")
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives, read from headers only."""

    key: str  # the name in the model
    file: Path
    name: str  # the name inside the file
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    fmt: str  # safetensors | bin


def _bad_shard(path: Path, what: str) -> LoadError:
    return LoadError(
        f"{path}: {what}",
        hint="re-download the checkpoint (e.g. `hf download ORG/NAME`) or re-save it",
    )


def safetensors_header(path: Path) -> list[TensorEntry]:
    """The tensors one ``.safetensors`` file holds, from its JSON header; a truncated or
    corrupt file is a LoadError naming it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _bad_shard(path, "truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", head)
            if not 2 <= n <= _MAX_HEADER or n + 8 > size:
                raise _bad_shard(path, "truncated or corrupt safetensors header")
            meta = json.loads(f.read(n))
    except FileNotFoundError:
        raise LoadError(f"{path}: shard is missing", hint="re-download the checkpoint") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise _bad_shard(path, f"corrupt safetensors header ({_first_line(e)})") from e
    out: list[TensorEntry] = []
    end = 0
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        try:
            dtype = ST_DTYPES[info["dtype"]]
            shape = tuple(int(v) for v in info["shape"])
            lo, hi = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise _bad_shard(path, f"tensor {name!r} has an unreadable header entry") from None
        end = max(end, hi)
        out.append(TensorEntry(name, path, name, shape, dtype, hi - lo, "safetensors"))
    if 8 + n + end > size:
        raise _bad_shard(path, f"truncated: holds {size:,} bytes, its header needs {8 + n + end:,}")
    return out


def bin_header(path: Path) -> list[TensorEntry]:
    """The tensors a ``pytorch_model*.bin`` shard holds: ``torch.load(weights_only=True,
    mmap=True)`` maps the storages without reading them; the map is dropped at once."""
    if not path.exists():
        raise LoadError(f"{path}: shard is missing", hint="re-download the checkpoint")
    sd = _load_bin(path)
    out = [
        TensorEntry(k, path, k, tuple(t.shape), t.dtype, t.numel() * t.element_size(), "bin")
        for k, t in sd.items()
        if isinstance(t, torch.Tensor)
    ]
    del sd
    return out


def _load_bin(path: Path) -> Mapping[str, Any]:
    import pickle
    import zipfile

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
    ) as e:
        raise _bad_shard(path, f"not a readable PyTorch shard ({_first_line(e)})") from e
    if not isinstance(obj, Mapping):
        raise _bad_shard(path, f"holds a {type(obj).__name__}, not a state dict")
    return obj


class StreamedTensors(Mapping[str, torch.Tensor]):
    """A read-only mapping name -> tensor whose data stays on disk until indexed.

    Iteration is in natural order of the names (``layers.2`` before ``layers.10``), whatever
    the order of the index or the shards. ``meta(key)`` / ``metas()`` give shapes and dtypes
    as ``meta``-device tensors without reading data. Each ``tensors[key]`` reads that tensor
    afresh (safetensors through ``safe_open``, ``.bin`` through an mmap that is closed at
    once) and keeps no reference to it.
    """

    def __init__(
        self,
        entries: Mapping[str, TensorEntry],
        *,
        config: Mapping[str, Any] | None = None,
        note: str = "",
        how: str = "",
    ) -> None:
        self._entries = {k: entries[k] for k in sorted(entries, key=natural_key)}
        self.config: dict[str, Any] = dict(config or {})
        self.note = note  # said beside the results (e.g. one shard analysed alone)
        self.how = how  # what was read, in words (provenance)
        self.bytes_read = 0

    # Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, key: str) -> torch.Tensor:
        e = self._entries[key]
        t = _read_entry(e)
        self.bytes_read += e.nbytes
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    # shapes without data ----------------------------------------------------------------
    def entry(self, key: str) -> TensorEntry:
        return self._entries[key]

    def meta(self, key: str) -> torch.Tensor:
        e = self._entries[key]
        return torch.empty(e.shape, dtype=e.dtype, device="meta")

    def metas(self) -> dict[str, torch.Tensor]:
        return {k: self.meta(k) for k in self._entries}

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    @property
    def parameter_count(self) -> int:
        n = 0
        for e in self._entries.values():
            c = 1
            for s in e.shape:
                c *= s
            n += c
        return n

    @property
    def files(self) -> list[Path]:
        return sorted({e.file for e in self._entries.values()}, key=lambda p: natural_key(p.name))


def _read_entry(e: TensorEntry) -> torch.Tensor:
    """One tensor's data, owned by the returned tensor (no map kept open)."""
    try:
        if e.fmt == "safetensors":
            from safetensors import safe_open

            with safe_open(str(e.file), "pt", device="cpu") as f:
                return f.get_tensor(e.name)
        sd = _load_bin(e.file)
        t = sd[e.name].clone()  # a copy, so the mmap goes with `sd`
        del sd
        return t
    except LoadError:
        raise
    except Exception as ex:  # safetensors raises its own (Rust) error types
        raise _bad_shard(e.file, f"tensor {e.name!r} cannot be read ({_first_line(ex)})") from ex


def _read_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return {}
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LoadError(f"{cfg}: not valid JSON ({_first_line(e)})", hint="re-download it") from e
    return data if isinstance(data, dict) else {}


def _from_index(index: Path) -> dict[str, TensorEntry]:
    """Every tensor the index names, checked against its shard's header: a missing or
    truncated shard, or a tensor its shard does not hold, is a LoadError naming it."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = dict(data["weight_map"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LoadError(
            f"{index}: not a readable index file ({_first_line(e)})", hint="re-download it"
        ) from e
    headers: dict[str, dict[str, TensorEntry]] = {}
    out: dict[str, TensorEntry] = {}
    for name, shard in weight_map.items():
        path = index.parent / str(shard)
        if shard not in headers:
            if not path.is_file():
                raise LoadError(
                    f"{path}: shard {shard} is listed in {index.name} but missing",
                    hint="re-download the checkpoint (e.g. `hf download ORG/NAME`)",
                )
            read = safetensors_header if path.suffix == ".safetensors" else bin_header
            headers[shard] = {x.name: x for x in read(path)}
        found = headers[shard].get(name)
        if found is None:
            raise LoadError(
                f"{index}: names tensor {name!r} in shard {shard}, which does not hold it",
                hint="the index and the shards come from different versions; re-download",
            )
        out[name] = found
    return out


def _from_files(files: list[Path]) -> dict[str, TensorEntry]:
    out: dict[str, TensorEntry] = {}
    for f in files:
        read = safetensors_header if f.suffix == ".safetensors" else bin_header
        for e in read(f):
            if e.name in out:
                raise LoadError(
                    f"{f}: tensor {e.name!r} is also in {out[e.name].file.name}",
                    hint="the folder mixes two checkpoints; pass one file or clean the folder",
                )
            out[e.name] = e
    return out


def _pick_index(folder: Path) -> Path | None:
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.safetensors.index.json")) or sorted(
        folder.glob("*.bin.index.json")
    )
    return found[0] if found else None


def folder_entries(folder: Path) -> tuple[dict[str, TensorEntry], str]:
    """(tensors, how) for a checkpoint folder: an index with its shards, else
    ``model.safetensors``, else every ``*.safetensors`` (then ``pytorch_model*.bin``)."""
    index = _pick_index(folder)
    if index is not None:
        return _from_index(index), f"sharded checkpoint ({index.name})"
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return _from_files([folder / single]), single
    shards = sorted(folder.glob("*.safetensors"), key=lambda p: natural_key(p.name))
    if not shards:
        shards = sorted(folder.glob("pytorch_model*.bin"), key=lambda p: natural_key(p.name))
    if not shards:
        raise LoadError(
            f"{folder}: the folder holds no model weights (no *.safetensors, no "
            "pytorch_model*.bin, no index)",
            hint="pass a Hugging Face checkpoint folder, or one model file",
        )
    return _from_files(shards), f"folder of {len(shards)} weight file(s)"


def load_folder(folder: Path) -> StreamedTensors:
    entries, how = folder_entries(folder)
    if not entries:
        raise LoadError(f"{folder}: holds no tensors", hint="check the checkpoint")
    return StreamedTensors(entries, config=_read_config(folder), how=how)


def shard_note(path: Path) -> str:
    """A note when ``path`` is one shard of a sharded model (``-00002-of-00004``)."""
    m = _SHARD_NAME.search(path.name)
    if m is None or int(m.group(2)) < 2:
        return ""
    return (
        f"{path.name} is shard {int(m.group(1))} of {int(m.group(2))} of a sharded model, "
        f"analysed alone; pass the folder {path.parent} for the whole model"
    )


def load_single(path: Path, fmt: str) -> StreamedTensors:
    """One ``.safetensors`` file (or one ``.bin`` shard) as a streamed mapping, with the
    sibling ``config.json`` when there is one."""
    from .statedict import _strip

    read = safetensors_header if fmt == "safetensors" else bin_header
    # the same `module.` / `_orig_mod.` prefix stripping as whole-file state dicts
    entries = _strip({e.name: e for e in read(path)})
    return StreamedTensors(
        entries, config=_read_config(path.parent), note=shard_note(path), how=path.name
    )


def streamed_model(spec: str, path: Path, kind: str, tensors: StreamedTensors, weights: str) -> Any:
    """A :class:`LoadedModel` over a streamed mapping: no module (weights only), the
    checkpoint's config.json in ``meta``; the files are not hashed (gigabytes), their
    names and sizes are recorded instead."""
    from .model import LoadedModel

    lm = LoadedModel(spec=spec, kind=kind, tensors=tensors, path=path, weights=weights)  # type: ignore[arg-type]
    lm.meta = {
        "config": tensors.config,
        "files": [f.name for f in tensors.files],
        "bytes": tensors.nbytes,
        "how": tensors.how,
    }
    if tensors.note:
        lm.meta["note"] = tensors.note
    return lm


def load_path(path: Path, spec: str, arch: str | None) -> Any:
    """A folder, a ``.safetensors`` file or one ``*-0000K-of-0000N.bin`` shard as a
    streamed :class:`LoadedModel`; None when ``path`` is another kind of file (or an
    architecture was asked for, which needs the whole state dict in a module)."""
    from .sniff import sniff

    if path.is_dir():
        if arch is not None:
            raise LoadError(
                f"{path}: --arch goes with one weights file, not a checkpoint folder",
                hint="drop --arch (randomness, layers and check read folders as they are)",
            )
        st = load_folder(path)
        return streamed_model(spec, path, "folder", st, st.how)
    if arch is not None or not path.is_file():
        return None
    try:
        fmt = sniff(path)
    except OSError:
        return None
    if fmt == "safetensors":
        st = load_single(path, "safetensors")
    elif fmt == "zip-torch" and _SHARD_NAME.search(path.name):
        st = load_single(path, "bin")
    else:
        return None
    from .model import _sha

    kind = "safetensors" if fmt == "safetensors" else "state_dict"
    lm = streamed_model(spec, path, kind, st, st.how)
    lm.sha256 = _sha(path)  # streamed in chunks: constant memory
    return lm
