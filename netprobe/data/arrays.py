"""User arrays into images and labels: pixel values to float32 in [0, 1], any common image
layout to (N, C, H, W), label vectors checked and cast to int64; each bad input a one-line
:class:`~netprobe.errors.DatasetError` with a hint."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DatasetError


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]


def _to_float01(arr: np.ndarray, where: str) -> np.ndarray:
    """Pixel values as float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats as given
    (or / 255 when they look like 0..255)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype.kind not in "uif":
        raise DatasetError(
            f"{where}: holds {arr.dtype} values, not numbers",
            hint="store pixel values as uint8 or float",
        )
    if arr.size == 0:
        return arr.astype(np.float32)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise DatasetError(f"{where}: holds NaN or infinite values", hint="clean the data")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if lo < 0 or hi > 65535 or (arr.dtype.kind == "f" and hi > 255):
        raise DatasetError(
            f"{where}: values range over [{lo:g}, {hi:g}]; netprobe expects unnormalised images "
            "in [0, 1] or [0, 255]",
            hint="store the images before normalising them (netprobe applies the model's mean/std)",
        )
    if hi <= 1.0:
        return arr.astype(np.float32)
    if hi <= 255:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32) / 65535.0


def _to_nchw(arr: np.ndarray, where: str, key: str = "x") -> torch.Tensor:
    """Images as (N, C, H, W) float32 in [0, 1] from (N,H,W), (N,H,W,C), (N,C,H,W) or flat
    square (N, H*W) arrays."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "buif":
        raise DatasetError(
            f"{where}: {key} holds {arr.dtype} values, not numbers",
            hint="store pixel values as uint8 or float",
        )
    shape = tuple(arr.shape)
    if arr.ndim == 2:
        side = int(round(shape[1] ** 0.5))
        if side * side != shape[1] or shape[1] < 4:
            raise DatasetError(
                f"{where}: {key} has shape {shape}; expected images (N,H,W), (N,H,W,C) or (N,C,H,W)",
                hint="reshape the rows into images (flat rows are read only when they are square)",
            )
        arr = arr.reshape(shape[0], 1, side, side)  # (N, H*W) -> (N,1,H,W)
    elif arr.ndim == 3:
        arr = arr[:, None]  # (N,H,W) -> (N,1,H,W)
    elif arr.ndim == 4:
        chans = (1, 3, 4)
        if shape[3] in chans and shape[1] not in chans:
            arr = arr.transpose(0, 3, 1, 2)  # (N,H,W,C) -> (N,C,H,W)
        elif shape[1] not in chans:
            raise DatasetError(
                f"{where}: {key} has shape {shape}; neither axis 1 nor axis 3 holds 1, 3 or 4 channels",
                hint="store images as (N,H,W), (N,H,W,C) or (N,C,H,W)",
            )
    else:
        raise DatasetError(
            f"{where}: {key} has shape {shape}; expected images (N,H,W), (N,H,W,C) or (N,C,H,W)",
            hint="store a batch of images under the key x",
        )
    return torch.from_numpy(np.ascontiguousarray(_to_float01(arr, f"{where}: {key}")))


def _labels(arr: np.ndarray | None, n: int, where: str, key: str) -> torch.Tensor | None:
    if arr is None:
        return None
    y = np.asarray(arr)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)  # (N,1) or (1,N) -> (N,)
    if y.ndim != 1:
        raise DatasetError(
            f"{where}: {key} has shape {tuple(y.shape)}; expected one label per example",
            hint=f"store {key} as (N,) integers",
        )
    if y.shape[0] != n:
        xk = "x_test" if key == "y_test" else "x"
        raise DatasetError(
            f"{where}: {xk} holds {n} examples but {key} holds {y.shape[0]} labels",
            hint="give one label per example",
        )
    if y.dtype.kind == "f" and y.size and not np.all(np.equal(np.mod(y, 1), 0)):
        raise DatasetError(
            f"{where}: {key} holds non-integer labels", hint=f"store {key} as class indices 0..K-1"
        )
    if y.dtype.kind not in "uif":
        raise DatasetError(
            f"{where}: {key} holds {y.dtype} values, not class indices",
            hint=f"store {key} as integers 0..K-1",
        )
    if y.size and y.min() < 0:
        raise DatasetError(
            f"{where}: {key} holds negative labels", hint=f"store {key} as class indices 0..K-1"
        )
    return torch.from_numpy(y.astype(np.int64))
