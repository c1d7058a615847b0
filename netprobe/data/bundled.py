"""The data shipped with netprobe (``netprobe/assets/``, see ``assets/PROVENANCE.md``): real
MNIST digits with a recorded train/test split, and natural colour photographs for
3-channel models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .dataset import Dataset, _check_split

ASSETS = Path(__file__).parent.parent / "assets"
BUNDLED_DIGITS = ASSETS / "digits.npz"
BUNDLED_PHOTOS = ASSETS / "photos.npz"


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
