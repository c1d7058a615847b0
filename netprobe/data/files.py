"""Array files: an ``.npz`` archive (``x``, optional ``y``, ``x_test``, ``y_test``, ``classes``)
or a single ``.npy`` array of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .arrays import _first_line, _labels, _to_nchw
from .dataset import Dataset

_NPZ_KEYS = ("x", "y", "x_test", "y_test", "classes")


def _load_npz(path: Path, split: str) -> Dataset:
    """An .npz archive: ``x`` (and ``y``) alone is a single-split source; with ``x_test`` (and
    ``y_test``) ``split`` picks train, test or both."""
    arrays = _read_npz(path)
    x, y = _npz_split(path, arrays, split)
    classes = _npz_classes(path, arrays, y)
    which = f" ({split} split)" if "x_test" in arrays else ""
    return Dataset(x=x, y=y, classes=classes, source=f"{path}{which}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of :data:`_NPZ_KEYS` the archive holds; ``x`` must be among them."""
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(
            f"{path}: not a readable .npz file ({_first_line(e)})", hint="save it with numpy.savez"
        ) from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DatasetError(
            f"{path}: is a single .npy array, not an .npz archive",
            hint="save it with numpy.savez(x=..., y=...)",
        )
    with z:
        keys = set(z.files)
        if "x" not in keys:
            have = ", ".join(sorted(keys)) or "nothing"
            raise DatasetError(
                f"{path}: has no array 'x' (it holds {have})",
                hint="save images as x (and labels as y) with numpy.savez",
            )
        try:
            return {k: z[k] for k in _NPZ_KEYS if k in keys}
        except (ValueError, OSError, EOFError) as e:
            raise DatasetError(
                f"{path}: an array could not be read ({_first_line(e)})",
                hint="save plain numeric arrays with numpy.savez",
            ) from e


def _npz_split(
    path: Path, arrays: dict[str, np.ndarray], split: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images and labels of ``split``: both splits must agree in image size and in having
    labels."""
    if ("y_test" in arrays) and ("x_test" not in arrays):
        raise DatasetError(
            f"{path}: has y_test but no x_test", hint="store the test images as x_test"
        )
    parts: list[tuple[str, str]] = [("x", "y")]
    if "x_test" in arrays:
        parts = {
            "train": parts,
            "test": [("x_test", "y_test")],
            "all": [("x", "y"), ("x_test", "y_test")],
        }[split]
    xs, ys = [], []
    for xk, yk in parts:
        x = _to_nchw(arrays[xk], str(path), xk)
        xs.append(x)
        ys.append(_labels(arrays.get(yk), x.shape[0], str(path), yk))
    if len(xs) > 1 and xs[0].shape[1:] != xs[1].shape[1:]:
        raise DatasetError(
            f"{path}: x is {tuple(xs[0].shape[1:])} per image but x_test is {tuple(xs[1].shape[1:])}",
            hint="store both splits at one size",
        )
    if any(y is None for y in ys) and not all(y is None for y in ys):
        raise DatasetError(
            f"{path}: labels for one split only", hint="store both y and y_test, or neither"
        )
    y = (
        None
        if ys[0] is None
        else (torch.cat([t for t in ys if t is not None]) if len(ys) > 1 else ys[0])
    )
    return (torch.cat(xs) if len(xs) > 1 else xs[0]), y


def _npz_classes(
    path: Path, arrays: dict[str, np.ndarray], y: torch.Tensor | None
) -> list[str] | None:
    """Class names: the archive's ``classes`` (one per label), else "0".."K-1" from the labels."""
    if "classes" in arrays:
        classes = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
        if y is not None and len(y) and int(y.max()) >= len(classes):
            raise DatasetError(
                f"{path}: a label is {int(y.max())} but classes names only {len(classes)}",
                hint="list one name per class",
            )
        return classes
    if y is not None and len(y):
        return [str(i) for i in range(int(y.max()) + 1)]
    return None


def _load_npy(path: Path) -> Dataset:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(
            f"{path}: not a readable .npy array ({_first_line(e)})", hint="save it with numpy.save"
        ) from e
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise DatasetError(f"{path}: is an .npz archive with a .npy name", hint="rename it to .npz")
    return Dataset(x=_to_nchw(arr, str(path)), y=None, classes=None, source=str(path))
