"""Image files and folders: one image, a flat folder, class sub-folders (torchvision's
ImageFolder layout) or ``train/`` + ``test/`` (or ``val/``) sub-folders; mixed channels and
sizes are reconciled."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .arrays import _first_line
from .dataset import Dataset

IMAGE_EXTS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)
MAX_IMAGE_SIDE = 512  # folders of mixed-size images are cropped to squares no larger than this


def _read_image(path: Path) -> np.ndarray:
    """One image as (H, W, C) float32 in [0, 1], C = 1 (grey) or 3 (colour; alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("1", "L", "LA"):
                arr = np.asarray(im.convert("L"), dtype=np.float32)[..., None] / 255.0
            elif mode.startswith("I") or mode == "F":
                raw = np.asarray(im, dtype=np.float64)
                scale = (
                    1.0 if raw.max(initial=0) <= 1.0 else (255.0 if raw.max() <= 255 else 65535.0)
                )
                arr = np.clip(raw / scale, 0.0, 1.0).astype(np.float32)[..., None]
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as e:
        raise DatasetError(
            f"{path}: not a readable image ({_first_line(e)})",
            hint="give a PNG/JPEG/... image, an .npz with x (and y), or a folder of images",
        ) from e
    return arr


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in it
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _stack_images(paths: Sequence[Path]) -> torch.Tensor:
    """Read and stack images; mixed channels become RGB, mixed sizes become squares (shorter
    side to the median shorter side, at most MAX_IMAGE_SIDE, then a centre crop)."""
    arrays = [_read_image(p) for p in paths]
    chans = max(a.shape[2] for a in arrays)
    tensors = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]  # (H,W,C) -> (C,H,W)
    tensors = [t.expand(chans, -1, -1) if t.shape[0] != chans else t for t in tensors]
    sizes = {tuple(t.shape[1:]) for t in tensors}
    if len(sizes) > 1:
        from torchvision.transforms.v2 import functional as TF

        side = min(int(np.median([min(t.shape[1:]) for t in tensors])), MAX_IMAGE_SIDE)
        tensors = [
            TF.center_crop(TF.resize(t, [side], antialias=True), [side, side]) for t in tensors
        ]
    return torch.stack(tensors).contiguous()  # (N, C, H, W)


def _load_folder(path: Path, split: str) -> Dataset:
    """A folder: ``train/`` + ``test/`` (or ``val/``) sub-folders, one sub-folder per class
    (ImageFolder), or a flat folder of images (unlabelled)."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {p.name.lower(): p for p in subdirs}
    test_dir = names.get("test") or names.get("val")
    if "train" in names and test_dir is not None:
        return _load_split_folders(path, names["train"], test_dir, split)
    classes = [p for p in subdirs if _images_in(p, recursive=True)]
    flat = _images_in(path, recursive=False)
    if classes and flat:
        raise DatasetError(
            f"{path}: holds both images and class sub-folders",
            hint="put every image in a class sub-folder (ImageFolder layout), or use a flat folder",
        )
    if classes:
        return _load_class_folders(path, classes)
    if not flat:
        raise DatasetError(
            f"{path}: no images found (looked for {', '.join(IMAGE_EXTS)})",
            hint="give a folder of images, one sub-folder per class, or an .npz file",
        )
    return Dataset(x=_stack_images(flat), y=None, classes=None, source=str(path))


def _load_split_folders(path: Path, train_dir: Path, test_dir: Path, split: str) -> Dataset:
    """``split`` of a folder with train/ and test/ (or val/) sub-folders; for ``all`` both
    must hold the same classes at the same image size."""
    parts = {"train": [train_dir], "test": [test_dir], "all": [train_dir, test_dir]}[split]
    loaded = [_load_folder(p, "all") for p in parts]
    if len(loaded) == 1:
        d = loaded[0]
        return Dataset(d.x, d.y, d.classes, f"{path} ({split} split)")
    a, b = loaded
    if a.classes != b.classes:
        raise DatasetError(
            f"{path}: train/ and {test_dir.name}/ hold different class folders",
            hint="give both the same class sub-folders",
        )
    if a.shape != b.shape:
        raise DatasetError(
            f"{path}: train/ images are {a.shape} but {test_dir.name}/ images are {b.shape}",
            hint="store both splits at one size",
        )
    ys = None if a.y is None or b.y is None else torch.cat([a.y, b.y])
    return Dataset(torch.cat([a.x, b.x]), ys, a.classes, f"{path} (all)")


def _load_class_folders(path: Path, classes: list[Path]) -> Dataset:
    """ImageFolder layout: label i for every image under the i-th class sub-folder (sorted)."""
    paths: list[Path] = []
    labels: list[int] = []
    for i, c in enumerate(classes):
        files = _images_in(c, recursive=True)
        paths += files
        labels += [i] * len(files)
    x = _stack_images(paths)
    return Dataset(
        x=x,
        y=torch.tensor(labels, dtype=torch.int64),
        classes=[c.name for c in classes],
        source=str(path),
    )
