"""The torchvision datasets netprobe reads by name (``mnist``, ``fashion-mnist``, ``cifar10``,
``cifar100``): where they live on disk, and loading them offline unless ``--download``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .arrays import _first_line, _to_nchw
from .dataset import Dataset

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


def default_data_dir() -> Path:
    """Where torchvision datasets live: ``$NETPROBE_DATA`` or ``~/.cache/netprobe/data``."""
    env = os.environ.get("NETPROBE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "netprobe" / "data"


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
