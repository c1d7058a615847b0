"""A generic train / evaluate loop: deterministic, resumable, DDP-ready, silent.

:func:`fit` trains a classifier with cross-entropy on a :class:`~netprobe.data.Dataset` and
knows nothing about SHADOW: an ``augment`` hook may add an extra ``(x, y)`` batch per step
(that is how ``shadow-train`` plugs in), a ``transform`` hook may perturb the real batch
(random shifts and rotations, :class:`RandomAffine`), and callbacks see every event (the CLI
draws a rich progress bar from them; the library prints nothing).

Determinism. Every random stream is a pure function of ``(seed, epoch, rank)``: the data
order of epoch e is ``randperm(N)`` from a generator seeded by (seed, e); the transform and
augment generators and the global torch RNG (dropout) are reseeded per epoch and rank. Same
seed -> identical results on CPU; a resumed run repeats exactly what the uninterrupted run
would have done.

Never lose a run. With ``checkpoint_dir`` the full training state (model, optimizer, RNG
states, epoch, step, history) is written atomically to ``training-state.pt`` after every
epoch. Ctrl-C sets a flag that is honoured at the next batch boundary: the mid-epoch state is
saved and KeyboardInterrupt re-raised; ``resume=True`` continues from either kind of
checkpoint and reaches the same weights as an uninterrupted run (a SIGKILLed process resumes
from its last epoch checkpoint).

DDP. When ``torch.distributed`` is initialised the model is wrapped in
DistributedDataParallel; ``batch_size`` is the global batch, each rank takes every
world-th example of it (the same permutation on every rank, as DistributedSampler would
shard it), and the loss is scaled so that DDP's gradient average equals the full-batch mean
gradient: one DDP step equals one single-process step on the full batch. Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import io
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset
from .errors import DatasetError, LoadError, OptionError

STATE_FILE = "training-state.pt"
STATE_KEY = "netprobe_training_state"
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")
# independent random streams, mixed into the seed (see _derive)
_ORDER, _TRANSFORM, _AUGMENT, _TORCH = 1, 2, 3, 4


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
    test_error, lr, examples, extra_examples, seconds (training), eval_seconds, wall_seconds
    (cumulative), plus whatever callbacks added."""

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
# randomness


def _derive(seed: int, *parts: int) -> int:
    """A 63-bit seed for one stream, from the run seed and the stream's coordinates."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *parts]).generate_state(
        2, dtype=np.uint32
    )
    return (int(state[0]) << 31 | int(state[1])) & 0x7FFFFFFFFFFFFFFF


@contextmanager
def seeded(seed: int, devices: Sequence[int] = ()) -> Iterator[None]:
    """Run a block with the global torch RNG seeded, restoring the caller's RNG afterwards.
    Building a model inside it makes its initialisation a function of ``seed``."""
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(int(seed))
        yield


def init_model(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every submodule that has ``reset_parameters`` from ``seed`` (in place)."""
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


def _dist() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(device: str | torch.device, world: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        import os

        dev = torch.device(
            "cuda",
            int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else torch.cuda.current_device(),
        )
    return dev


def _optimizer(
    spec: str | Callable[..., torch.optim.Optimizer], params: Any, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if callable(spec):
        return spec(params, lr=lr)
    name = spec.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise OptionError(f"optimizer '{spec}': unknown", hint=f"use one of {', '.join(OPTIMIZERS)}")


def _lr_at(schedule: str, lr: float, step: int, total: int) -> float:
    """Learning rate before optimizer step ``step`` (0-based) of ``total``; stateless, so a
    resumed run gets the same rates."""
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))
    return lr


def _norm(
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


def _apply_norm(x: torch.Tensor, m: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor:
    if m is not None and x.ndim == 4:
        x = x - m
    if s is not None and x.ndim == 4:
        x = x / s
    return x


def _check_labelled(ds: Dataset, what: str) -> torch.Tensor:
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


class _StopFlag:
    """SIGINT -> a flag checked at batch boundaries (so the state saved is consistent). A second
    Ctrl-C interrupts at once. Installed only in the main thread."""

    def __init__(self) -> None:
        self.flag = False
        self._prev: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.flag = True
        signal.signal(
            signal.SIGINT, self._prev if callable(self._prev) else signal.default_int_handler
        )

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            try:
                self._prev = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except (ValueError, OSError):  # e.g. an embedded interpreter
                self._installed = False
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(
                signal.SIGINT, self._prev if self._prev is not None else signal.default_int_handler
            )


def _rng_state(device: torch.device, gens: Mapping[str, torch.Generator]) -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    for k, g in gens.items():
        out[k] = g.get_state()
    return out


def _set_rng_state(
    state: Mapping[str, Any], device: torch.device, gens: Mapping[str, torch.Generator]
) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    for k, g in gens.items():
        if state.get(k) is not None:
            g.set_state(state[k])


def _save(path: Path, obj: Mapping[str, Any]) -> None:
    from .report import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(dict(obj), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | Path) -> dict[str, Any]:
    """A training state written by :func:`fit` (``training-state.pt`` or its folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    if not p.is_file():
        raise LoadError(
            f"{p}: no training state to resume from",
            hint="pass the checkpoint folder of an earlier run",
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise LoadError(
            f"{p}: not a readable training state ({str(e).splitlines()[0][:160]})",
            hint="start a fresh run",
        ) from e
    if not isinstance(obj, Mapping) or not obj.get(STATE_KEY):
        raise LoadError(
            f"{p}: not a netprobe training state",
            hint="pass the checkpoint folder an earlier run wrote",
        )
    return dict(obj)


# ---------------------------------------------------------------------------------------
# evaluation


def _eval_sums(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    m: torch.Tensor | None,
    s: torch.Tensor | None,
    batch_size: int,
    device: torch.device,
) -> tuple[float, int, int]:
    """(sum of cross-entropy, number correct, count) over x, in eval mode, without gradients."""
    from .netlayers import eval_mode

    loss, correct = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = _apply_norm(x[i : i + batch_size].to(device), m, s)
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
    y = _check_labelled(ds, "evaluation")
    dev = (
        torch.device(device)
        if device is not None
        else next((p.device for p in model.parameters()), torch.device("cpu"))
    )
    m, s = _norm(mean, std, ds.x.shape[1], dev)
    loss, correct, n = _eval_sums(model, ds.x, y, m, s, batch_size, dev)
    return {"loss": loss / n, "accuracy": correct / n, "error": 1.0 - correct / n, "n": n}


# ---------------------------------------------------------------------------------------
# training


def fit(
    model: nn.Module,
    train: Dataset,
    *,
    test: Dataset | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    seed: int = 0,
    device: str | torch.device = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    transform: Transform | None = None,
    augment: Augment | None = None,
    augment_start: int = 1,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    eval_batch_size: int = 512,
) -> History:
    """Train ``model`` in place (it stays on ``device``) and return the per-epoch history.

    Per step: the real batch (``transform``-ed when given, then normalised with mean/std),
    plus, from epoch ``augment_start`` on, ``augment(model, x, y, generator)``'s extra batch
    (already in model input space); loss = mean CE on the real batch + weight x mean CE on the
    extra batch (weight 1 unless augment returns a third element; weight 0 skips the extra
    batch entirely). ``resume``: True continues from ``checkpoint_dir``'s state, a folder or
    file from that one (and keeps writing there unless ``checkpoint_dir`` says otherwise); the
    settings that fix the run (seed, batch size, lr, optimizer, schedule, data size) must
    match. ``device``: cpu | cuda | cuda:N | auto; under DDP, ``cuda`` means cuda:LOCAL_RANK.
    """
    ytrain = _check_labelled(train, "training")
    if test is not None:
        _check_labelled(test, "test")
    for name, val in (
        ("epochs", epochs),
        ("batch size", batch_size),
        ("eval batch size", eval_batch_size),
    ):
        if int(val) < 1:
            raise OptionError(f"{name} {val}: must be at least 1", hint=f"e.g. {name} 10")
    if not lr > 0:
        raise OptionError(f"learning rate {lr}: must be positive", hint="e.g. 1e-3")
    if schedule not in SCHEDULES:
        raise OptionError(
            f"schedule '{schedule}': unknown", hint=f"use one of {', '.join(SCHEDULES)}"
        )
    if isinstance(optimizer, str) and optimizer.lower() not in OPTIMIZERS:
        raise OptionError(
            f"optimizer '{optimizer}': unknown", hint=f"use one of {', '.join(OPTIMIZERS)}"
        )

    rank, world = _dist()
    dev = _device(device, world)
    model.to(dev)
    opt = _optimizer(optimizer, model.parameters(), lr, weight_decay)
    n = len(train)
    steps = math.ceil(n / batch_size)
    total_steps = steps * epochs
    config = {
        "seed": int(seed),
        "batch_size": int(batch_size),
        "n_train": n,
        "lr": float(lr),
        "optimizer": optimizer.lower()
        if isinstance(optimizer, str)
        else getattr(optimizer, "__name__", "custom"),
        "weight_decay": float(weight_decay),
        "schedule": schedule,
        "epochs": int(epochs),
        "world_size": world,
    }
    ckpt = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir is not None else None
    hist = History(seed=int(seed), checkpoint=ckpt)
    start_epoch, start_step = 1, 0
    resumed: dict[str, Any] | None = None
    if resume is not False:
        src = ckpt if resume is True else Path(resume)  # type: ignore[arg-type]
        if src is None:
            raise OptionError(
                "resume needs a checkpoint folder",
                hint="pass checkpoint_dir (the CLI: --resume RUN_DIR)",
            )
        resumed = load_state(src)
        _check_resume(resumed, config, src)
        if ckpt is None:  # keep writing where the run was written
            ckpt = hist.checkpoint = (
                src if src.suffix == ".pt" and not src.is_dir() else src / STATE_FILE
            )
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        hist.rows = [dict(r) for r in resumed["history"]]
        start_epoch, start_step = int(resumed["epoch"]) + 1, int(resumed["step"])
        hist.resumed_from = (int(resumed["epoch"]), start_step)
    net: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    # An augment hook may also offer ``shared_forward(net, model, x, y, generator)``, returning
    # (net's output on x, extra batch) or None: its forward then serves the training loss too
    # (SHADOW's generation graph is the training forward). Single process only: under DDP the
    # hook's plain call is used, so DDP's gradient hooks see the usual forward.
    shared = getattr(augment, "shared_forward", None) if world == 1 else None
    trainable = [p for p in model.parameters() if p.requires_grad]

    m, s = _norm(mean, std, train.x.shape[1], dev)
    was_training = model.training
    stop = _StopFlag()
    epoch = start_epoch
    done = 0  # steps completed in the current epoch
    consistent = True  # at a batch boundary: model and optimizer state belong together
    synced_stop = False  # every rank agreed to stop at this boundary
    acc: dict[str, float] = {}
    gens: dict[str, torch.Generator] = {}

    def emit(ev: Event) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for cb in callbacks:
            got = cb(ev)
            if got:
                extra.update(got)
        return extra

    def state(at_epoch: int, at_step: int) -> dict[str, Any]:
        rngs = [_rng_state(dev, gens)]
        if world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        return {
            STATE_KEY: 1,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "epoch": at_epoch,
            "step": at_step,
            "partial": dict(acc),
            "rng": rngs,
            "history": hist.rows,
            "config": config,
        }

    def write(obj: dict[str, Any]) -> None:
        if ckpt is not None and rank == 0:
            _save(ckpt, obj)

    cuda_devices = [dev.index] if dev.type == "cuda" and dev.index is not None else []
    try:
        with torch.random.fork_rng(devices=cuda_devices), stop:
            try:
                model.train()
                emit(Event("fit_start", start_epoch - 1, epochs, 0, steps, model=model, rank=rank))
                for epoch in range(start_epoch, epochs + 1):
                    perm = torch.randperm(
                        n, generator=torch.Generator().manual_seed(_derive(seed, _ORDER, epoch))
                    )
                    torch.manual_seed(_derive(seed, _TORCH, epoch, rank))
                    gens = {
                        "transform": torch.Generator(device=dev).manual_seed(
                            _derive(seed, _TRANSFORM, epoch, rank)
                        ),
                        "augment": torch.Generator(device=dev).manual_seed(
                            _derive(seed, _AUGMENT, epoch, rank)
                        ),
                    }
                    acc = {"loss": 0.0, "correct": 0.0, "count": 0.0, "extra": 0.0, "seconds": 0.0}
                    done = 0
                    if epoch == start_epoch and start_step > 0 and resumed is not None:
                        # continue mid-epoch: same permutation, restored accumulators and RNG states
                        acc = {k: float(v) for k, v in resumed["partial"].items()}
                        rng = resumed["rng"]
                        _set_rng_state(rng[rank] if isinstance(rng, list) else rng, dev, gens)
                        done = start_step
                    emit(Event("epoch_start", epoch, epochs, done, steps, model=model, rank=rank))
                    for step in range(done, steps):
                        t0 = time.perf_counter()
                        consistent = False
                        glob = perm[
                            step * batch_size : (step + 1) * batch_size
                        ]  # this step's global batch
                        idx = glob[rank::world] if world > 1 else glob  # this rank's share
                        xb = train.x[idx].to(dev, non_blocking=True)
                        yb = ytrain[idx].to(dev, non_blocking=True)
                        if transform is not None:
                            xb = transform(xb, gens["transform"])
                        xb = _apply_norm(xb, m, s)
                        extra = None
                        shared_out = None  # the output of net on xb, when the hook ran it
                        only = None  # backward into these leaves only (None: all)
                        if augment is not None and epoch >= augment_start:
                            got = (
                                shared(net, model, xb, yb, gens["augment"])
                                if shared is not None
                                else None
                            )
                            if got is not None:
                                shared_out, extra = got
                                # its input is a leaf of the generation graph: no gradient
                                only = trainable or None
                            else:
                                extra = augment(model, xb, yb, gens["augment"])
                        weight = 1.0
                        if extra is not None:
                            if len(extra) == 3:
                                weight = float(extra[2])
                            if weight == 0.0:
                                extra = None
                        for group in opt.param_groups:
                            group["lr"] = _lr_at(
                                schedule, lr, (epoch - 1) * steps + step, total_steps
                            )
                        opt.zero_grad(set_to_none=True)
                        k = len(idx)
                        scale = world / len(
                            glob
                        )  # DDP averages over ranks: sum / len(glob) overall
                        if extra is None:
                            out = net(xb) if shared_out is None else shared_out  # (k, classes)
                            loss_sum = F.cross_entropy(out, yb, reduction="sum")
                            loss = loss_sum * scale
                        else:
                            # real and extra batch as two forward/backward passes into one
                            # gradient: the same sum as one concatenated pass, and cheaper on
                            # CPU (two batches of k stay in cache; one of 2k does not)
                            xe, ye = extra[0].to(dev), extra[1].to(dev)
                            sync = getattr(net, "no_sync", None) if world > 1 else None
                            with sync() if sync is not None else contextlib.nullcontext():
                                out = net(xb) if shared_out is None else shared_out  # (k, classes)
                                loss_sum = F.cross_entropy(out, yb, reduction="sum")
                                (loss_sum * scale).backward(inputs=only)
                            out_e = net(xe)  # (k', classes)
                            loss_e = F.cross_entropy(out_e, ye) if len(ye) else out_e.sum() * 0.0
                            loss_extra = weight * loss_e * (k * scale)
                            loss = loss_sum.detach() * scale + loss_extra
                            acc["extra"] += len(ye)
                        bad = not bool(torch.isfinite(loss))
                        if bad and world == 1:
                            raise DivergedError(
                                f"training diverged at epoch {epoch}, step {step + 1}: the loss is {float(loss.detach())}",
                                hint="lower the learning rate (--lr)",
                            )
                        if extra is None:
                            loss.backward(inputs=only)
                        else:
                            loss_extra.backward()
                        opt.step()
                        acc["loss"] += float(loss_sum.detach())
                        acc["correct"] += float((out.detach().argmax(1) == yb).sum())
                        acc["count"] += k
                        acc["seconds"] += time.perf_counter() - t0
                        done = step + 1
                        consistent = True
                        emit(
                            Event(
                                "batch_end",
                                epoch,
                                epochs,
                                done,
                                steps,
                                loss=float(loss_sum.detach()) / max(k, 1),
                                model=model,
                                rank=rank,
                            )
                        )
                        flags = torch.tensor([float(stop.flag), float(bad)])
                        if world > 1:
                            import torch.distributed as dist

                            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                        if flags[1] > 0:
                            raise DivergedError(
                                f"training diverged at epoch {epoch}, step {done}",
                                hint="lower the learning rate (--lr)",
                            )
                        if flags[0] > 0:
                            synced_stop = True
                            raise KeyboardInterrupt
                    row = _close_epoch(epoch, acc, world, opt)
                    t1 = time.perf_counter()
                    if test is not None:
                        row.update(
                            _test_metrics(model, test, m, s, eval_batch_size, dev, rank, world)
                        )
                    row["eval_seconds"] = time.perf_counter() - t1
                    prev_wall = float(hist.rows[-1]["wall_seconds"]) if hist.rows else 0.0
                    row["wall_seconds"] = prev_wall + row["seconds"] + row["eval_seconds"]
                    model.train()
                    row.update(
                        emit(
                            Event(
                                "epoch_end",
                                epoch,
                                epochs,
                                steps,
                                steps,
                                row=row,
                                model=model,
                                rank=rank,
                            )
                        )
                    )
                    hist.rows.append(row)
                    write(state(epoch, 0))
                    done = 0
                emit(Event("fit_end", epochs, epochs, steps, steps, model=model, rank=rank))
            except KeyboardInterrupt:
                # Save where the run stands if that is a batch boundary that every rank agrees on;
                # otherwise the last epoch checkpoint stands.
                if ckpt is not None and consistent and done > 0 and (world == 1 or synced_stop):
                    write(state(epoch - 1, done))
                raise
    finally:
        model.train(was_training)
    return hist


def _close_epoch(
    epoch: int, acc: Mapping[str, float], world: int, opt: torch.optim.Optimizer
) -> dict[str, Any]:
    vals = torch.tensor(
        [acc["loss"], acc["correct"], acc["count"], acc["extra"]], dtype=torch.float64
    )
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(vals)
    loss, correct, count, extra = (float(v) for v in vals)
    return {
        "epoch": epoch,
        "train_loss": loss / max(count, 1.0),
        "train_accuracy": correct / max(count, 1.0),
        "lr": float(opt.param_groups[0]["lr"]),
        "examples": int(count),
        "extra_examples": int(extra),
        "seconds": float(acc["seconds"]),
    }


def _test_metrics(
    model: nn.Module,
    test: Dataset,
    m: torch.Tensor | None,
    s: torch.Tensor | None,
    batch_size: int,
    dev: torch.device,
    rank: int,
    world: int,
) -> dict[str, float]:
    assert test.y is not None  # checked on entry
    n = len(test)
    lo, hi = n * rank // world, n * (rank + 1) // world  # this rank's contiguous share
    loss, correct, count = _eval_sums(model, test.x[lo:hi], test.y[lo:hi], m, s, batch_size, dev)
    if world > 1:
        import torch.distributed as dist

        vals = torch.tensor([loss, correct, count], dtype=torch.float64)
        dist.all_reduce(vals)
        loss, correct, count = float(vals[0]), int(vals[1]), int(vals[2])
    return {
        "test_loss": loss / count,
        "test_accuracy": correct / count,
        "test_error": 1.0 - correct / count,
    }


def _check_resume(saved: Mapping[str, Any], config: Mapping[str, Any], src: Path) -> None:
    old = dict(saved.get("config") or {})
    keys = ["seed", "batch_size", "n_train", "lr", "optimizer", "weight_decay", "schedule"]
    if config["schedule"] != "constant":
        keys.append("epochs")  # the schedule's length is part of the run
    if int(saved.get("step", 0)) > 0:
        keys.append("world_size")  # mid-epoch states hold per-rank RNG states
    for k in keys:
        if old.get(k) != config[k]:
            raise OptionError(
                f"cannot resume from {src}: it was trained with {k} {old.get(k)!r}, this run uses {config[k]!r}",
                hint="resume with the settings of the interrupted run, or start a fresh one",
            )
    if int(saved["epoch"]) > int(config["epochs"]):
        raise OptionError(
            f"cannot resume from {src}: it already ran {saved['epoch']} epochs, more than the {config['epochs']} asked for",
            hint="ask for at least as many epochs",
        )
