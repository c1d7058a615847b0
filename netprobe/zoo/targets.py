"""Which models ``netprobe check`` checks: files, globs, folders (searched recursively; a
Hugging Face checkpoint folder is one model), model names, ``hf:`` ids and ``@list.txt`` files expanded to an ordered list of MODEL specs, and the
deterministic ``--shard K/N`` split of that list (docs/design.md)."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from ..errors import OptionError

MODEL_EXTS = {
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".pt2",
    ".safetensors",
    ".onnx",
    ".ts",
    ".jit",
    ".tar",
    ".pkl",
}

#: @list files may name other @list files, this deep
_MAX_LIST_DEPTH = 8


def _looks_like_model(path: Path) -> bool:
    """A file a folder search keeps: a model extension, or contents netprobe recognises."""
    if path.suffix.lower() in MODEL_EXTS:
        return True
    from ..loading import sniff

    try:
        return not sniff(path).startswith("unknown:")
    except OSError:  # unreadable: not a model the search should report
        return False


def _read_list(item: str, base: Path | None, depth: int) -> list[str]:
    lst = Path(item[1:])
    if base is not None and not lst.is_absolute():
        lst = base / lst
    if not lst.is_file():
        raise OptionError(
            f"{item}: no such list file", hint="give one MODEL per line in a text file"
        )
    if depth > _MAX_LIST_DEPTH:
        raise OptionError(f"{item}: list files nest too deeply", hint="flatten the @list files")
    lines = lst.read_text(encoding="utf-8").splitlines()
    return expand_targets(lines, lst.parent, depth + 1)


def is_checkpoint_folder(folder: Path) -> bool:
    """A Hugging Face style checkpoint folder, one MODEL: an index file, or a config.json
    beside weight files (docs/design.md, "Hugging Face checkpoints and streaming")."""
    if any(folder.glob("*.safetensors.index.json")) or any(folder.glob("*.bin.index.json")):
        return True
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))
    )


def _search(folder: Path) -> list[str]:
    """Model files under ``folder``, sorted, hidden files and folders left out; a checkpoint
    folder (shards + index, or config.json + weights) is one model, not one per shard."""
    if is_checkpoint_folder(folder):
        return [str(folder)]
    ckpts = sorted(
        d
        for d in folder.rglob("*")
        if d.is_dir()
        and not any(part.startswith(".") for part in d.relative_to(folder).parts)
        and is_checkpoint_folder(d)
    )
    found = sorted(
        f
        for f in folder.rglob("*")
        if f.is_file()
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
        and not any(c in f.parents for c in ckpts)
        and _looks_like_model(f)
    )
    return sorted([str(f) for f in found] + [str(d) for d in ckpts])


def expand_targets(items: Iterable[str], base: Path | None = None, _depth: int = 0) -> list[str]:
    """Files, globs, folders (searched recursively), model names and @list.txt files ->
    an ordered, de-duplicated list of MODEL specs. Blank lines and ``#`` comments are
    skipped; a relative path in a list file is relative to that file."""
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("@"):
            out += _read_list(item, base, _depth)
            continue
        p = Path(item).expanduser()
        if base is not None and not p.is_absolute() and (base / p).exists():
            p = base / p
        if any(c in item for c in "*?["):
            hits = sorted(glob.glob(str(p), recursive=True))
            if not hits:
                raise OptionError(
                    f"{item}: the pattern matches no file",
                    hint="check the glob (quote it so the shell leaves it alone)",
                )
            out += expand_targets(hits, None, _depth + 1)
            continue
        if p.is_dir():
            out += _search(p)
            continue
        # a path that does not exist may be a model name (alexnet, timm:...): the worker
        # reports it as that model's load error when it is neither
        out.append(str(p) if p.exists() else item)
    return list(dict.fromkeys(out))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` -> ``(K, N)``; a bad value is an :class:`OptionError`."""
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        k = n = 0
    if n < 1 or not 1 <= k <= n:
        raise OptionError(f"--shard {text}: expected K/N with 1 <= K <= N", hint="e.g. --shard 1/4")
    return k, n


def shard(targets: list[str], which: tuple[int, int] | None) -> list[str]:
    """Deterministic split: the K-th of N shards holds every N-th target of the sorted list."""
    if which is None:
        return targets
    k, n = which
    return [t for i, t in enumerate(sorted(targets)) if i % n == k - 1]
