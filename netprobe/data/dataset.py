"""The one in-memory data type every source loads into (:class:`Dataset`), the split names,
and the seeded train/test split of a single-split source (docs/design.md, "data")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError, OptionError

SPLITS = ("train", "test", "all")


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


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise OptionError(f"split '{split}': unknown split", hint=f"use one of {', '.join(SPLITS)}")


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
