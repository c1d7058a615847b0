"""From a :class:`~netprobe.data.Dataset` to what one model eats and back: channel conversion,
resizing as torchvision's presets do, mean/std normalisation (:func:`prepare`) and its undoing
for display (:func:`unnormalise`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import DatasetError, OptionError
from .dataset import Dataset


def _stats(values: Sequence[float] | None, chans: int, what: str) -> torch.Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if t.numel() == 1:
        t = t.expand(chans)
    if t.numel() != chans:
        raise OptionError(
            f"{what} has {t.numel()} values for {chans} channels", hint=f"give 1 or {chans} values"
        )
    if what == "std" and bool((t <= 0).any()):
        raise OptionError(
            "std: every value must be positive", hint="check the model's normalisation"
        )
    return t.view(1, chans, 1, 1)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, channels, H, W): grey -> RGB by repetition, RGB -> grey by ITU-R
    601-2 luma (as PIL's ``convert("L")``), RGBA -> RGB by dropping alpha."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 4:
        x, c = x[:, :3], 3  # drop alpha
        if channels == 3:
            return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)  # (N,1,H,W) -> (N,3,H,W)
    if c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)  # (N,3,H,W) -> (N,1,H,W)
    raise DatasetError(
        f"the data has {c} channels and the model expects {channels}",
        hint="give greyscale (1) or colour (3 channel) images",
    )


def prepare(
    ds: Dataset | torch.Tensor,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """What a model eats: ``(N, *input_shape)`` float32.

    Channels are converted (:func:`convert_channels`); with ``resize`` the shorter side goes
    to ``resize`` and the centre is cropped to (H, W) (torchvision's classification preset:
    bilinear, antialiased); without it the images are resized to (H, W) when they differ;
    then ``(x - mean) / std`` per channel. An ``input_shape`` of one number (an MLP) flattens
    each example after that.
    """
    x = ds.x if isinstance(ds, Dataset) else ds
    if x.ndim == 3:
        x = x.unsqueeze(0)  # one image (C,H,W) -> (1,C,H,W)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 1:
        return _prepare_flat(x, shape[0], mean, std)
    if len(shape) != 3:
        raise OptionError(
            f"input shape {shape}: expected C,H,W", hint="e.g. --input-shape 3,224,224"
        )
    return _prepare_images(x, shape, mean, std, resize, chunk)


def _prepare_flat(
    x: torch.Tensor, d: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> torch.Tensor:
    """An MLP's input: normalised per channel, then each example flattened to ``d`` values."""
    if int(np.prod(x.shape[1:])) != d:
        raise DatasetError(
            f"the data is {tuple(x.shape[1:])} per example ({int(np.prod(x.shape[1:]))} values) "
            f"and the model expects {d} values",
            hint="pass data of the model's input size, or the model's image shape with --input-shape C,H,W",
        )
    m = _stats(mean, x.shape[1], "mean")
    s = _stats(std, x.shape[1], "std")
    out = x.float()
    if m is not None:
        out = out - m
    if s is not None:
        out = out / s
    return out.reshape(len(x), d).contiguous()  # (N,C,H,W) -> (N,D)


def _prepare_images(
    x: torch.Tensor,
    shape: tuple[int, ...],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    resize: int | None,
    chunk: int,
) -> torch.Tensor:
    """An image model's input (N, C, H, W): channels, size, then mean/std, ``chunk`` images
    at a time so the intermediate converted and resized copies stay small."""
    c, h, w = shape
    m = _stats(mean, c, "mean")
    s = _stats(std, c, "std")
    out = torch.empty((len(x), c, h, w), dtype=torch.float32)
    for i in range(0, len(x), chunk):
        b = convert_channels(x[i : i + chunk].float(), c)
        if resize is not None or tuple(b.shape[2:]) != (h, w):
            # only a resize needs torchvision (its import reaches torch._dynamo: ~2 s)
            from torchvision.transforms.v2 import functional as TF
        if resize is not None:
            b = TF.resize(b, [int(resize)], antialias=True)  # shorter side -> resize
            b = TF.center_crop(b, [h, w])  # -> (n, c, h, w)
        elif tuple(b.shape[2:]) != (h, w):
            b = TF.resize(b, [h, w], antialias=True)  # -> (n, c, h, w)
        if m is not None:
            b = b - m
        if s is not None:
            b = b / s
        out[i : i + len(b)] = b
    return out


def unnormalise(
    x: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    clamp: bool = True,
) -> torch.Tensor:
    """Undo :func:`prepare`'s normalisation for display: ``x * std + mean``, clamped to [0, 1].
    Works on (N, C, H, W) and (C, H, W)."""
    single = x.ndim == 3
    b = x.unsqueeze(0) if single else x  # (C,H,W) -> (1,C,H,W)
    s = _stats(std, b.shape[1], "std")
    m = _stats(mean, b.shape[1], "mean")
    out = b.float()
    if s is not None:
        out = out * s.to(out.device)
    if m is not None:
        out = out + m.to(out.device)
    if clamp:
        out = out.clamp(0.0, 1.0)
    return out[0] if single else out


denormalize = unnormalise  # the spelling most PyTorch code uses
