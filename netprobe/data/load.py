"""Every source netprobe knows, by one call: :func:`load_dataset` picks the bundled digits, a
torchvision dataset by name, or a file or folder by its path (see the package docstring)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import DatasetError
from .bundled import bundled_digits
from .dataset import Dataset, _check_split
from .files import _load_npy, _load_npz
from .images import _load_folder, _read_image
from .torchvision_sets import ALIASES, TORCHVISION, _load_torchvision, default_data_dir


def load_dataset(
    spec: str | os.PathLike[str] | None,
    *,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Dataset:
    """Load data from any source netprobe knows (see the module docstring).

    ``split`` is ``train``, ``test`` or ``all``. Known dataset names win over a file of the
    same name in the current folder; write ``./mnist`` for the file.
    """
    _check_split(split)
    if spec is None or str(spec) == "":
        return bundled_digits(split)
    s = str(spec)
    name = ALIASES.get(s.lower(), s.lower())
    if not isinstance(spec, os.PathLike) and name in TORCHVISION:
        return _load_torchvision(
            name, split, Path(data_dir).expanduser() if data_dir else default_data_dir(), download
        )
    path = Path(s).expanduser()
    if not path.exists():
        if os.sep not in s and "." not in s:
            import difflib

            close = difflib.get_close_matches(name, list(TORCHVISION), n=2, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else (
                    f"use one of {', '.join(TORCHVISION)}, or a .npz file, an image or a folder of images"
                )
            )
            raise DatasetError(f"unknown dataset '{s}': not a dataset name nor a file", hint=hint)
        raise DatasetError(f"{path}: no such file or folder", hint="check the path")
    if path.is_dir():
        return _load_folder(path, split)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, split)
    if suffix == ".npy":
        return _load_npy(path)
    arr = _read_image(path)  # an image file, whatever its extension; else a one-line error
    x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()  # (H,W,C) -> (1,C,H,W)
    return Dataset(x=x, y=None, classes=None, source=str(path))
