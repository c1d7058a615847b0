"""Input data for the commands that run a network: one :class:`Dataset` type for every source.

Sources (:func:`load_dataset`):

* nothing: the bundled real MNIST digits (``netprobe/assets/digits.npz``; 5,000 digits split
  4,000 train / 1,000 test by a fixed, recorded seed; see ``assets/PROVENANCE.md``);
* ``mnist`` | ``fashion-mnist`` | ``cifar10`` | ``cifar100`` through torchvision, read from
  ``--data-dir`` (default ``$NETPROBE_DATA`` or ``~/.cache/netprobe/data``), downloaded only
  with ``--download``;
* a path: an ``.npz`` (``x``, optional ``y``, ``x_test``, ``y_test``, ``classes``), an
  ``.npy`` array of images, one image file, or a folder of images (class sub-folders as
  torchvision's ImageFolder, ``train/`` + ``test/`` sub-folders, or a flat folder).

A :class:`Dataset` holds unnormalised images in [0, 1] as ``(N, C, H, W)`` float32, whatever
the source; :func:`prepare` turns them into what one model eats (channels, size, mean/std).
Sources with a single split (an npz without ``x_test``, an image folder without
``train/``/``test/``) return all their examples for every ``split``; :func:`train_test_split`
splits them with a seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DatasetError, OptionError

ASSETS = Path(__file__).parent / "assets"
BUNDLED_DIGITS = ASSETS / "digits.npz"
BUNDLED_PHOTOS = ASSETS / "photos.npz"
SPLITS = ("train", "test", "all")
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

# name -> (torchvision class, folder under root, files torchvision checks for)
TORCHVISION: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mnist": (
        "MNIST",
        "MNIST/raw",
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
    ),
    "fashion-mnist": (
        "FashionMNIST",
        "FashionMNIST/raw",
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ),
    ),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        (
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        ),
    ),
    "cifar100": ("CIFAR100", "cifar-100-python", ("train", "test", "meta")),
}
ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


@dataclass(frozen=True)
class Dataset:
    """Images and (optionally) labels, in memory.

    ``x`` is ``(N, C, H, W)`` float32 in [0, 1], unnormalised; ``y`` is ``(N,)`` int64 or None;
    ``classes`` names the labels (``classes[y[i]]``) when known; ``source`` says where the data
    came from, in words, for reports.
    """

    x: torch.Tensor  # (N, C, H, W) float32 in [0, 1], unnormalised
    y: torch.Tensor | None  # (N,) int64
    classes: list[str] | None
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape, (C, H, W)."""
        return tuple(int(v) for v in self.x.shape[1:])

    @property
    def num_classes(self) -> int | None:
        if self.classes is not None:
            return len(self.classes)
        if self.y is not None and len(self.y):
            return int(self.y.max()) + 1
        return None

    def subset(self, idx: Any) -> Dataset:
        """The examples at ``idx`` (indices, a boolean mask, a slice or a range)."""
        if isinstance(idx, range):
            idx = slice(idx.start, idx.stop, idx.step)
        if not isinstance(idx, slice):
            idx = torch.as_tensor(np.asarray(idx) if not isinstance(idx, torch.Tensor) else idx)
            if idx.dtype != torch.bool:
                idx = idx.long().reshape(-1)
        x = self.x[idx]
        y = self.y[idx] if self.y is not None else None
        return Dataset(x=x, y=y, classes=self.classes, source=self.source)


# ---------------------------------------------------------------------------------------
# the bundled digits


def bundled_digits(split: str = "test") -> Dataset:
    """The real MNIST digits shipped with netprobe: ``train`` (4,000), ``test`` (1,000) or
    ``all`` (5,000). The split is stored in the file (``train_idx``/``test_idx``), made by
    ``scripts/build_assets.py`` with the seed recorded in ``split_seed``."""
    _check_split(split)
    if not BUNDLED_DIGITS.is_file():
        raise DatasetError(
            f"the bundled digits are missing ({BUNDLED_DIGITS})",
            hint="reinstall netprobe, or rebuild them with `python scripts/build_assets.py`",
        )
    with np.load(BUNDLED_DIGITS, allow_pickle=False) as z:
        x, y = z["x"], z["y"]
        idx = {"train": z["train_idx"], "test": z["test_idx"]}.get(split)
        seed = int(np.asarray(z["split_seed"]).reshape(-1)[0])
    if idx is not None:
        x, y = x[idx], y[idx]
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)  # (N,28,28) -> (N,1,28,28)
    return Dataset(
        x=xt,
        y=torch.from_numpy(y.astype(np.int64)),
        classes=[str(i) for i in range(10)],
        source=f"bundled MNIST digits ({split} split, seed {seed})",
    )


def bundled_photos() -> Dataset:
    """The natural colour photographs shipped with netprobe (public-domain / CC0 sample
    images of scikit-image, 256x256 RGB; see ``assets/PROVENANCE.md``): the default inputs
    of ``reconstruct`` for 3-channel (ImageNet-shaped) models. No labels; the pictures'
    names (the file's ``names``) are listed in ``source``."""
    if not BUNDLED_PHOTOS.is_file():
        raise DatasetError(
            f"the bundled photographs are missing ({BUNDLED_PHOTOS})",
            hint="reinstall netprobe, or rebuild them with `python scripts/build_assets.py --photos-only`",
        )
    with np.load(BUNDLED_PHOTOS, allow_pickle=False) as z:
        x, names = z["x"], [str(n) for n in z["names"]]
    xt = torch.from_numpy(x.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
    return Dataset(  # (N,H,W,3) uint8 -> (N,3,H,W) in [0, 1]
        x=xt,
        y=None,
        classes=None,
        source=f"bundled photographs ({', '.join(names)})",
    )


# ---------------------------------------------------------------------------------------
# loading


def default_data_dir() -> Path:
    """Where torchvision datasets live: ``$NETPROBE_DATA`` or ``~/.cache/netprobe/data``."""
    env = os.environ.get("NETPROBE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "netprobe" / "data"


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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise OptionError(f"split '{split}': unknown split", hint=f"use one of {', '.join(SPLITS)}")


def _load_torchvision(name: str, split: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls_name, folder, files = TORCHVISION[name]
    cls = getattr(tvd, cls_name)
    where = root / folder

    def missing_error() -> DatasetError:
        return DatasetError(
            f"{name}: not found in {where} (torchvision expects {', '.join(files)} there)",
            hint="pass --download to fetch it (needs a network), or --data-dir DIR for the folder "
            f"that holds {folder}/ (or set NETPROBE_DATA)",
        )

    if not download:
        absent = [f for f in files if not (where / f).is_file()]
        if absent:
            raise missing_error()
    parts = []
    for train in [True, False] if split == "all" else [split == "train"]:
        try:
            parts.append(cls(root=str(root), train=train, download=download))
        except RuntimeError as e:
            if download:
                raise DatasetError(
                    f"{name}: could not download into {root} ({_first_line(e)})",
                    hint=f"copy {', '.join(files)} into {where} and pass --data-dir {root}",
                ) from e
            raise missing_error() from e
        except Exception as e:  # noqa: BLE001 - corrupt files and failed downloads come in many types
            what = "could not download" if download else "could not read"
            raise DatasetError(
                f"{name}: {what} the files in {where} ({_first_line(e)})",
                hint="delete the folder and fetch it again with --download",
            ) from e
    xs, ys = [], []
    for d in parts:
        data = d.data if isinstance(d.data, torch.Tensor) else torch.from_numpy(np.asarray(d.data))
        xs.append(_to_nchw(data.numpy() if isinstance(data, torch.Tensor) else data, f"{name}"))
        ys.append(torch.as_tensor(np.asarray(d.targets), dtype=torch.int64))
    classes = [str(c) for c in getattr(parts[0], "classes", [])] or None
    return Dataset(
        x=torch.cat(xs) if len(xs) > 1 else xs[0],
        y=torch.cat(ys) if len(ys) > 1 else ys[0],
        classes=classes,
        source=f"torchvision {cls_name} ({split} split) from {root}",
    )


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


def _load_npz(path: Path, split: str) -> Dataset:
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DatasetError(
            f"{path}: not a readable .npz file ({_first_line(e)})", hint="save it with numpy.savez"
        ) from e
    except (OSError, EOFError) as e:
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
            arrays: dict[str, np.ndarray] = {
                k: z[k] for k in ("x", "y", "x_test", "y_test", "classes") if k in keys
            }
        except (ValueError, OSError, EOFError) as e:
            raise DatasetError(
                f"{path}: an array could not be read ({_first_line(e)})",
                hint="save plain numeric arrays with numpy.savez",
            ) from e
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
    classes: list[str] | None = None
    if "classes" in arrays:
        classes = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
        if y is not None and len(y) and int(y.max()) >= len(classes):
            raise DatasetError(
                f"{path}: a label is {int(y.max())} but classes names only {len(classes)}",
                hint="list one name per class",
            )
    elif y is not None and len(y):
        classes = [str(i) for i in range(int(y.max()) + 1)]
    which = f" ({split} split)" if "x_test" in arrays else ""
    return Dataset(
        x=torch.cat(xs) if len(xs) > 1 else xs[0], y=y, classes=classes, source=f"{path}{which}"
    )


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
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {p.name.lower(): p for p in subdirs}
    test_dir = names.get("test") or names.get("val")
    if "train" in names and test_dir is not None:
        parts = {"train": [names["train"]], "test": [test_dir], "all": [names["train"], test_dir]}[
            split
        ]
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
    classes = [p for p in subdirs if _images_in(p, recursive=True)]
    flat = _images_in(path, recursive=False)
    if classes and flat:
        raise DatasetError(
            f"{path}: holds both images and class sub-folders",
            hint="put every image in a class sub-folder (ImageFolder layout), or use a flat folder",
        )
    if classes:
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
    if not flat:
        raise DatasetError(
            f"{path}: no images found (looked for {', '.join(IMAGE_EXTS)})",
            hint="give a folder of images, one sub-folder per class, or an .npz file",
        )
    return Dataset(x=_stack_images(flat), y=None, classes=None, source=str(path))


# ---------------------------------------------------------------------------------------
# splitting


def train_test_split(
    ds: Dataset, test_fraction: float = 0.2, seed: int = 0, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """A seeded split of a single-split source into (train, test); stratified by label when
    labels exist, so every class keeps its share. Indices inside each part stay sorted."""
    if not 0.0 < test_fraction < 1.0:
        raise OptionError(
            f"test fraction {test_fraction}: must lie strictly between 0 and 1", hint="e.g. 0.2"
        )
    n = len(ds)
    g = torch.Generator().manual_seed(int(seed))
    test_mask = torch.zeros(n, dtype=torch.bool)
    groups = (
        [torch.arange(n)]
        if (ds.y is None or not stratify)
        else [torch.nonzero(ds.y == c).flatten() for c in torch.unique(ds.y)]
    )
    for idx in groups:
        k = int(round(len(idx) * test_fraction))
        pick = idx[torch.randperm(len(idx), generator=g)[:k]]
        test_mask[pick] = True
    if test_mask.all() or not test_mask.any():
        raise DatasetError(
            f"{ds.source}: {n} examples are too few to split at {test_fraction:g}",
            hint="give more data",
        )
    return ds.subset(~test_mask), ds.subset(test_mask)


# ---------------------------------------------------------------------------------------
# model input


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
        if int(np.prod(x.shape[1:])) != shape[0]:
            raise DatasetError(
                f"the data is {tuple(x.shape[1:])} per example ({int(np.prod(x.shape[1:]))} values) "
                f"and the model expects {shape[0]} values",
                hint="pass data of the model's input size, or the model's image shape with --input-shape C,H,W",
            )
        m = _stats(mean, x.shape[1], "mean")
        s = _stats(std, x.shape[1], "std")
        out = x.float()
        if m is not None:
            out = out - m
        if s is not None:
            out = out / s
        return out.reshape(len(x), shape[0]).contiguous()  # (N,C,H,W) -> (N,D)
    if len(shape) != 3:
        raise OptionError(
            f"input shape {shape}: expected C,H,W", hint="e.g. --input-shape 3,224,224"
        )
    c, h, w = shape
    m = _stats(mean, c, "mean")
    s = _stats(std, c, "std")
    from torchvision.transforms.v2 import functional as TF

    out = torch.empty((len(x), c, h, w), dtype=torch.float32)
    for i in range(0, len(x), chunk):
        b = convert_channels(x[i : i + chunk].float(), c)
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
