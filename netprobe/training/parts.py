"""The pieces :func:`~netprobe.training.fit` is built from: events and history, the one
check of training settings, optimizer and schedule, normalisation, :func:`evaluate`, and
:class:`RandomAffine`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import DatasetError, OptionError
from ..runtime import resolve_device
from ..seeds import seeded

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")


class DivergedError(OptionError):
    """The loss became NaN or infinite (exit 2: usually a learning rate that is too high)."""


@dataclass
class Event:
    """What a callback sees. ``kind``: fit_start | epoch_start | batch_end | epoch_end | fit_end.

    ``epoch`` is 1-based; ``step`` counts batches done in this epoch (1..steps); ``loss`` is the
    last batch's mean loss on the real examples (batch_end); ``row`` is the history row being
    finished (epoch_end). A callback may return a mapping at epoch_end: its values are added to
    the row (e.g. an extra test metric) before the checkpoint is written.
    """

    kind: str
    epoch: int
    epochs: int
    step: int = 0
    steps: int = 0
    loss: float | None = None
    row: dict[str, Any] | None = None
    model: nn.Module | None = None  # the unwrapped model
    rank: int = 0


Callback = Callable[[Event], Mapping[str, Any] | None]
# (model, x, y, generator) -> (x_extra, y_extra) or (x_extra, y_extra, weight) or None
Augment = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], Any]
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class History:
    """One row per epoch: epoch, train_loss, train_accuracy, test_loss, test_accuracy,
    test_error, lr, examples, extra_examples, seconds (training, wall clock), cpu_seconds
    (process CPU time in the training steps: what a busy machine stretches least),
    eval_seconds, wall_seconds (cumulative), plus whatever callbacks added."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    resumed_from: tuple[int, int] | None = None  # (epochs done, steps done in the next) at resume
    checkpoint: Path | None = None

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    @property
    def final(self) -> dict[str, Any]:
        return dict(self.rows[-1]) if self.rows else {}

    def __len__(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------------------------------
# randomness (seeds.derive_seed mixes the streams; seeds.seeded seeds a block)


def init_model(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every submodule that has ``reset_parameters`` from ``seed``, in place (the
    in-place form of :func:`netprobe.seeds.reset_initialised`, which returns a copy)."""
    with seeded(seed):
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return model


@dataclass(frozen=True)
class RandomAffine:
    """Per-example random rotation, scale and shift of a batch, as tensor ops with an explicit
    generator (bilinear resampling, zero fill: the background of unnormalised images)."""

    degrees: float = 10.0
    translate: float = 0.1  # largest shift as a fraction of width / height
    scale: tuple[float, float] = (0.9, 1.1)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        u = torch.rand(n, 4, generator=generator, device=x.device, dtype=torch.float32)  # (N, 4)
        ang = (u[:, 0] * 2 - 1) * math.radians(self.degrees)
        sc = self.scale[0] + u[:, 1] * (self.scale[1] - self.scale[0])
        tx = (u[:, 2] * 2 - 1) * 2 * self.translate  # normalised coordinates span 2
        ty = (u[:, 3] * 2 - 1) * 2 * self.translate
        cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
        theta = torch.stack(
            [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
        )  # (N,2,3)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (N,H,W,2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------------------------
# helpers


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_device(device: str | torch.device, world: int) -> torch.device:
    """:func:`netprobe.runtime.resolve_device`, plus the DDP local rank: under torchrun a bare
    ``cuda`` means this process's GPU (``LOCAL_RANK``)."""
    dev = torch.device(resolve_device(str(device)))
    if dev.type == "cuda" and dev.index is None:
        local = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else None
        dev = torch.device("cuda", local if local is not None else torch.cuda.current_device())
    return dev


def check_settings(
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    eval_batch_size: int = 512,
) -> None:
    """The one check of the training options (:func:`fit` and shadow-train's ``TrainSettings``
    both call it): a one-line :class:`OptionError` naming the option and a fix."""
    for flag, val, example in (
        ("--epochs", epochs, 5),
        ("--batch-size", batch_size, 64),
        ("eval batch size", eval_batch_size, 512),
    ):
        if int(val) < 1:
            raise OptionError(f"{flag} {val}: must be at least 1", hint=f"e.g. {flag} {example}")
    if not (math.isfinite(lr) and lr > 0):
        raise OptionError(f"--lr {lr}: must be a positive number", hint="e.g. --lr 1e-3")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise OptionError(
            f"--weight-decay {weight_decay}: must be a number >= 0", hint="e.g. --weight-decay 1e-4"
        )
    if schedule not in SCHEDULES:
        raise OptionError(
            f"--schedule {schedule}: unknown schedule", hint=f"use one of {', '.join(SCHEDULES)}"
        )
    if isinstance(optimizer, str) and optimizer.lower() not in OPTIMIZERS:
        raise OptionError(
            f"--optimizer {optimizer}: unknown optimizer",
            hint=f"use one of {', '.join(OPTIMIZERS)}",
        )


def make_optimizer(
    spec: str | Callable[..., torch.optim.Optimizer], params: Any, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimizer by name (checked by :func:`check_settings`) or a factory's."""
    if callable(spec):
        return spec(params, lr=lr)
    name = spec.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def lr_at(schedule: str, lr: float, step: int, total: int) -> float:
    """Learning rate before optimizer step ``step`` (0-based) of ``total``; stateless, so a
    resumed run gets the same rates."""
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    return lr


def norm_tensors(
    mean: Sequence[float] | None, std: Sequence[float] | None, chans: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    def t(v: Sequence[float] | None) -> torch.Tensor | None:
        if v is None:
            return None
        out = torch.as_tensor([float(a) for a in v], dtype=torch.float32, device=device)
        if out.numel() == 1:
            out = out.expand(chans)
        if out.numel() != chans:
            raise OptionError(
                f"mean/std have {out.numel()} values for {chans} channels",
                hint=f"give 1 or {chans} values",
            )
        return out.view(1, chans, 1, 1)

    return t(mean), t(std)


def apply_norm(x: torch.Tensor, m: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor:
    if m is not None and x.ndim == 4:
        x = x - m
    if s is not None and x.ndim == 4:
        x = x / s
    return x


def check_labelled(ds: Dataset, what: str) -> torch.Tensor:
    if ds.y is None:
        raise DatasetError(
            f"{ds.source}: the {what} data has no labels",
            hint="give labelled data (an .npz with y, or class sub-folders)",
        )
    if len(ds) == 0:
        raise DatasetError(
            f"{ds.source}: the {what} data is empty", hint="give at least one example"
        )
    return ds.y


# ---------------------------------------------------------------------------------------
# evaluation


def eval_sums(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor | None,
    s: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
) -> tuple[float, int, int]:
    """(sum of cross-entropy, number correct, count) over x, in eval mode, without gradients."""
    from ..netlayers import eval_mode

    loss, correct = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = apply_norm(x[i : i + batch_size].to(device), m, s)
            yb = y[i : i + batch_size].to(device)
            out = model(xb)  # (n, classes)
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    return loss, correct, len(x)


def evaluate(
    model: nn.Module,
    ds: Dataset,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Mean cross-entropy, accuracy and error of ``model`` on labelled ``ds`` (normalised
    with ``mean``/``std`` when given). The model's train/eval mode is restored."""
    y = check_labelled(ds, "evaluation")
    dev = (
        torch.device(device)
        if device is not None
        else next((p.device for p in model.parameters()), torch.device("cpu"))
    )
    m, s = norm_tensors(mean, std, ds.x.shape[1], dev)
    loss, correct, n = eval_sums(model, ds.x, y, m, s, batch_size, dev)
    return {"loss": loss / n, "accuracy": correct / n, "error": 1.0 - correct / n, "n": n}
