"""``hf:ORG/NAME[@REVISION]``: a Hugging Face Hub checkpoint, resolved with
``huggingface_hub`` (the optional ``netprobe[hf]`` extra, imported only here), local cache
first. docs/design.md ("Hugging Face checkpoints and streaming").

- The cache folder is read at call time: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
  ``~/.cache/huggingface/hub`` (huggingface_hub itself reads these once, at import).
- ``HF_HUB_OFFLINE`` or ``NETPROBE_OFFLINE`` set: the cache only; a checkpoint that is not
  cached is one line naming the repository, revision, cache folder and the command that
  fetches it (exit 3).
- Downloads fetch only what netprobe reads: ``config.json``, the index and the weight
  shards (safetensors, else ``pytorch_model*.bin``), with huggingface_hub's progress bar.
- Tokens come from where huggingface_hub looks (``HF_TOKEN``, the token file) and are never
  printed nor recorded: provenance holds the repository, revision and commit only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import LoadError
from .model import _first_line

_SAFETENSORS = ["config.json", "*.safetensors.index.json", "*.safetensors"]
_BIN = ["config.json", "pytorch_model*.bin.index.json", "pytorch_model*.bin"]


def parse_hf(spec: str) -> tuple[str, str]:
    """``hf:ORG/NAME[@REV]`` -> (``ORG/NAME``, revision, ``main`` by default)."""
    body = spec[3:] if spec.startswith("hf:") else spec
    repo, _, rev = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo):
        raise LoadError(
            f"{spec}: not a Hugging Face model id",
            hint="write hf:ORG/NAME or hf:ORG/NAME@REVISION, e.g. hf:gpt2/gpt2",
        )
    return repo, rev or "main"


def hf_cache_dir() -> Path:
    """Where huggingface_hub caches models, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hf_offline() -> bool:
    """HF_HUB_OFFLINE (huggingface_hub's switch) or NETPROBE_OFFLINE (netprobe's)."""
    truthy = ("1", "true", "yes", "on")
    return any(
        os.environ.get(v, "").strip().lower() in truthy
        for v in ("HF_HUB_OFFLINE", "NETPROBE_OFFLINE")
    )


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise LoadError(
            "hf: model ids need the huggingface_hub package",
            hint="pip install 'netprobe[hf]'",
        ) from None
    return huggingface_hub


def _not_cached(repo: str, rev: str, cache: Path) -> LoadError:
    return LoadError(
        f"hf:{repo}@{rev} is not in the Hugging Face cache ({cache}) and downloads are off "
        "(HF_HUB_OFFLINE / NETPROBE_OFFLINE)",
        hint=f"fetch it with `hf download {repo} --revision {rev}` "
        f"(or `huggingface-cli download {repo}`), or pass the folder itself",
    )


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))


def resolve_hf(spec: str) -> tuple[Path, str, str, str]:
    """(snapshot folder, repo, revision, commit) for ``hf:ORG/NAME[@REV]``."""
    repo, rev = parse_hf(spec)
    hub = _hub()
    cache = hf_cache_dir()
    offline = hf_offline()
    import importlib

    errors = importlib.import_module("huggingface_hub.errors")
    not_found = tuple(
        getattr(errors, n)
        for n in ("LocalEntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError")
        if hasattr(errors, n)
    )
    folder: Path | None = None
    try:  # the cache first, whatever the network
        folder = Path(
            hub.snapshot_download(
                repo,
                revision=rev,
                cache_dir=str(cache),
                local_files_only=True,
                allow_patterns=_SAFETENSORS + _BIN,
            )
        )
    except not_found:
        folder = None
    except (OSError, ValueError) as e:
        raise LoadError(f"hf:{repo}@{rev}: {_first_line(e)}", hint="check the id") from e
    if folder is not None and _has_weights(folder):
        return folder, repo, rev, folder.name
    if offline:
        raise _not_cached(repo, rev, cache)
    try:
        for patterns in (_SAFETENSORS, _BIN):
            folder = Path(
                hub.snapshot_download(
                    repo, revision=rev, cache_dir=str(cache), allow_patterns=patterns
                )
            )
            if _has_weights(folder):
                return folder, repo, rev, folder.name
    except not_found as e:
        raise LoadError(
            f"hf:{repo}@{rev}: no such repository or revision on the Hub ({_first_line(e)})",
            hint="check the id; private repositories need a token (`hf auth login`)",
        ) from e
    except Exception as e:  # network errors come in many types (requests, httpx, OSError)
        raise LoadError(
            f"hf:{repo}@{rev}: download failed ({type(e).__name__})",
            hint=f"check the network, or fetch it with `hf download {repo} --revision {rev}`",
        ) from e
    raise LoadError(
        f"hf:{repo}@{rev}: the repository has no safetensors or pytorch_model*.bin weights",
        hint="netprobe reads Hugging Face checkpoints in those formats",
    )


def load_hf(spec: str) -> Any:
    """``hf:ORG/NAME[@REV]`` as a streamed :class:`LoadedModel` (kind ``hf``)."""
    from .sharded import load_folder, streamed_model

    folder, repo, rev, commit = resolve_hf(spec)
    st = load_folder(folder)
    lm = streamed_model(spec, folder, "hf", st, f"{repo}@{rev} (commit {commit}), {st.how}")
    lm.meta.update({"repo": repo, "revision": rev, "commit": commit})
    return lm
