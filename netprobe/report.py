"""Result files: the output folder, atomic writes, and run.json provenance.

Every file goes through :func:`atomic_write_bytes` (temp file in the same folder, fsync,
``os.replace``), so a reader never sees half a file and an interrupted run leaves either
the old file or the new one. The output folder is created only when the first file is
written, so a run that fails while loading leaves nothing behind.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import OptionError, OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; reports are ordinary files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    """Numbers, numpy scalars/arrays, tensors, paths and dataclasses as plain JSON values.
    NaN and infinities become null (JSON has no NaN)."""
    import dataclasses

    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays/scalars, torch tensors
        return _jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return str(obj)


def to_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def frame_to_csv(frame: Any) -> str:
    """A pandas DataFrame (or a list of dict rows) as CSV text."""
    if hasattr(frame, "to_csv"):
        return str(frame.to_csv(index=False))
    rows = list(frame)
    buf = io.StringIO()
    if rows:
        # as pandas writes them: every key of every row, in order of first appearance, and
        # NaN or None as an empty field
        fields = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows({k: _csv_cell(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _csv_cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return v


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_output_dir(command: str, root: Path | None = None) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (root or Path("netprobe-runs")) / f"{command}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@dataclass
class OutputDir:
    """The folder a command writes its results to.

    ``check()`` refuses an existing non-empty folder unless ``force``; the folder itself is
    made lazily by the first write.
    """

    path: Path
    force: bool = False
    written: list[str] = field(default_factory=list)

    def check(self) -> OutputDir:
        p = self.path
        if p.exists() and not p.is_dir():
            raise OptionError(
                f"--output-dir {p}: exists and is not a folder", hint="choose another path"
            )
        if p.is_dir() and any(p.iterdir()) and not self.force:
            raise OutputExistsError(
                f"--output-dir {p}: folder exists and is not empty",
                hint="pass --force to overwrite its files, or choose another folder",
            )
        return self

    def file(self, name: str) -> Path:
        return self.path / name

    def _note(self, name: str) -> Path:
        if name not in self.written:
            self.written.append(name)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self._note(name), text)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self._note(name), obj)

    def write_csv(self, name: str, frame: Any) -> Path:
        return atomic_write_text(self._note(name), frame_to_csv(frame))

    def write_npz(self, name: str, arrays: Mapping[str, Any]) -> Path:
        import numpy as np

        buf = io.BytesIO()
        arrs: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez_compressed(buf, **arrs)
        return atomic_write_bytes(self._note(name), buf.getvalue())

    def write_figure(self, name: str, fig: Any, dpi: int = 120, tight: bool = True) -> Path:
        """``tight=False`` for a figure laid out with fixed margins: the tight bounding box
        costs a second draw of every artist."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
        return atomic_write_bytes(self._note(name), buf.getvalue())


def as_output_dir(output: OutputDir | str | os.PathLike[str], force: bool = True) -> OutputDir:
    """The CLI's checked :class:`OutputDir` as it is; a path from an API caller
    (``report.write("runs/x")``) means "write here": the report's own files are replaced
    atomically, anything else in the folder is left alone (``force=False`` refuses a
    non-empty folder instead, as a fresh training run does)."""
    if isinstance(output, OutputDir):
        return output
    return OutputDir(Path(output), force=force).check()


@runtime_checkable
class Report(Protocol):
    """The surface every netprobe report shares (randomness, reconstruct, shadow-train,
    check, layers): one row per layer/model/epoch as a DataFrame, a JSON-able dict, a
    Markdown summary, and ``write(output_dir)`` that writes the report's own files
    atomically and returns their names. ``headline()`` is the short dict (verdict, key
    numbers) that run.json records beside the options.
    """

    def to_frame(self) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...

    def to_markdown(self) -> str: ...

    def write(self, output: OutputDir | str | os.PathLike[str]) -> list[str]: ...

    def headline(self) -> dict[str, Any]: ...


# the packages whose versions change netprobe's numbers, recorded in run.json
VERSIONED = ("torch", "torchvision", "numpy", "scipy")


def versions() -> dict[str, str]:
    """netprobe's, Python's and :data:`VERSIONED`'s versions, read from their installed
    metadata (importlib.metadata), not by importing them: importing torchvision only to
    read its version cost a command that never uses it ~2 s (docs/design.md, "Speed")."""
    from importlib import metadata

    from . import __version__

    out = {"netprobe": __version__, "python": platform.python_version()}
    for dist in VERSIONED:
        m = sys.modules.get(dist)
        if m is not None and isinstance(getattr(m, "__version__", None), str):
            out[dist] = m.__version__  # an imported module's own word (e.g. a source build)
            continue
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class RunInfo:
    """Provenance of one run, written as run.json next to the results."""

    command: str
    argv: Sequence[str]
    options: dict[str, Any]
    device: str
    seed: int | None
    model: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, finished: float | None = None) -> dict[str, Any]:
        finished = finished or time.time()
        return {
            "command": self.command,
            "argv": list(self.argv),
            "options": self.options,
            "device": self.device,
            "seed": self.seed,
            "model": self.model,
            "versions": versions(),
            "platform": platform.platform(),
            "started": _dt.datetime.fromtimestamp(self.started, _dt.timezone.utc).isoformat(),
            "wall_time_s": round(finished - self.started, 3),
            **self.extra,
        }


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    rows = list(rows)
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if not math.isfinite(v):
                return "—"
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
