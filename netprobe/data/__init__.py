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

The package, one job per file: ``dataset`` (the type and the seeded split), ``bundled`` (the
shipped digits and photographs), ``torchvision_sets`` (datasets by name), ``files`` (.npz and
.npy), ``images`` (image files and folders), ``arrays`` (user arrays to images and labels),
``load`` (:func:`load_dataset`, which picks among them) and ``transforms`` (:func:`prepare`,
:func:`unnormalise`).
"""

from __future__ import annotations

from .bundled import ASSETS, BUNDLED_DIGITS, BUNDLED_PHOTOS, bundled_digits, bundled_photos
from .dataset import SPLITS, Dataset, train_test_split
from .images import IMAGE_EXTS, MAX_IMAGE_SIDE
from .load import load_dataset
from .torchvision_sets import ALIASES, TORCHVISION, default_data_dir
from .transforms import convert_channels, denormalize, prepare, unnormalise

__all__ = [
    "ALIASES",
    "ASSETS",
    "BUNDLED_DIGITS",
    "BUNDLED_PHOTOS",
    "IMAGE_EXTS",
    "MAX_IMAGE_SIDE",
    "SPLITS",
    "TORCHVISION",
    "Dataset",
    "bundled_digits",
    "bundled_photos",
    "convert_channels",
    "default_data_dir",
    "denormalize",
    "load_dataset",
    "prepare",
    "train_test_split",
    "unnormalise",
]
