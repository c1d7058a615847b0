"""The training loop: :func:`fit` builds a :class:`_Loop` and runs it as named steps (restore,
wrap for DDP, per epoch: data order and streams, steps, metrics and checkpoint)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import OptionError
from ..seeds import derive_seed
from .parts import (
    Augment,
    Callback,
    DivergedError,
    Event,
    History,
    Transform,
    apply_norm,
    check_labelled,
    check_settings,
    eval_sums,
    lr_at,
    make_optimizer,
    norm_tensors,
    rank_world,
    train_device,
)
from .state import (
    STATE_FILE,
    STATE_KEY,
    StopFlag,
    check_resume,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
)

# independent random streams, mixed into the run seed by seeds.derive_seed
_ORDER, _TRANSFORM, _AUGMENT, _TORCH = 1, 2, 3, 4


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
    check_settings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        eval_batch_size=eval_batch_size,
    )
    ytrain = check_labelled(train, "training")
    if test is not None:
        check_labelled(test, "test")
    rank, world = rank_world()
    dev = train_device(device, world)
    model.to(dev)
    ckpt = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir is not None else None
    loop = _Loop(
        model=model,
        opt=make_optimizer(optimizer, model.parameters(), lr, weight_decay),
        train=train,
        ytrain=ytrain,
        test=test,
        dev=dev,
        rank=rank,
        world=world,
        seed=int(seed),
        epochs=int(epochs),
        batch_size=int(batch_size),
        lr=float(lr),
        schedule=schedule,
        eval_batch_size=int(eval_batch_size),
        transform=transform,
        augment=augment,
        augment_start=int(augment_start),
        callbacks=list(callbacks),
        ckpt=ckpt,
        hist=History(seed=int(seed), checkpoint=ckpt),
        config={
            "seed": int(seed),
            "batch_size": int(batch_size),
            "n_train": len(train),
            "lr": float(lr),
            "optimizer": optimizer.lower()
            if isinstance(optimizer, str)
            else getattr(optimizer, "__name__", "custom"),
            "weight_decay": float(weight_decay),
            "schedule": schedule,
            "epochs": int(epochs),
            "world_size": world,
        },
    )
    loop.norm = norm_tensors(mean, std, train.x.shape[1], dev)
    if resume is not False:
        loop.restore(_resume_source(resume, ckpt))
    loop.wrap()
    return loop.run()


def _resume_source(resume: bool | str | Path, ckpt: Path | None) -> Path:
    if resume is True:
        if ckpt is None:
            raise OptionError(
                "resume needs a checkpoint folder",
                hint="pass checkpoint_dir (the CLI: --resume RUN_DIR)",
            )
        return ckpt
    return Path(resume)  # type: ignore[arg-type]


def _fresh_acc() -> dict[str, float]:
    """An epoch's running sums (saved in mid-epoch checkpoints as ``partial``)."""
    return {
        "loss": 0.0,
        "correct": 0.0,
        "count": 0.0,
        "extra": 0.0,
        "seconds": 0.0,
        "cpu_seconds": 0.0,
    }


@dataclass
class _Loop:
    """The moving parts of one :func:`fit` call, as named steps: restore a checkpoint, wrap
    for DDP, then per epoch ``_begin_epoch`` (data order and random streams), ``_step`` per
    batch, ``_end_epoch`` (metrics, callbacks, checkpoint)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    train: Dataset
    ytrain: torch.Tensor
    test: Dataset | None
    dev: torch.device
    rank: int
    world: int
    seed: int
    epochs: int
    batch_size: int
    lr: float
    schedule: str
    eval_batch_size: int
    transform: Transform | None
    augment: Augment | None
    augment_start: int
    callbacks: list[Callback]
    ckpt: Path | None
    hist: History
    config: dict[str, Any]
    norm: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    net: nn.Module | None = None  # the model, DDP-wrapped under torchrun
    shared: Any = None  # the augment hook's one-pass variant, when it has one
    start_epoch: int = 1
    start_step: int = 0
    resumed: dict[str, Any] | None = None
    # where the loop stands
    epoch: int = 1
    done: int = 0  # steps completed in the current epoch
    consistent: bool = True  # at a batch boundary: model and optimizer state belong together
    synced_stop: bool = False  # every rank agreed to stop at this boundary
    acc: dict[str, float] = field(default_factory=_fresh_acc)
    gens: dict[str, torch.Generator] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return math.ceil(len(self.train) / self.batch_size)

    # --- set-up -----------------------------------------------------------------------

    def restore(self, src: Path) -> None:
        """Continue from a training state: weights, optimizer, history and where it stopped."""
        resumed = load_state(src)
        check_resume(resumed, self.config, src)
        if self.ckpt is None:  # keep writing where the run was written
            self.ckpt = self.hist.checkpoint = (
                src if src.suffix == ".pt" and not src.is_dir() else src / STATE_FILE
            )
        self.model.load_state_dict(resumed["model"])
        self.opt.load_state_dict(resumed["optimizer"])
        self.hist.rows = [dict(r) for r in resumed["history"]]
        self.start_epoch, self.start_step = int(resumed["epoch"]) + 1, int(resumed["step"])
        self.hist.resumed_from = (int(resumed["epoch"]), self.start_step)
        self.resumed = resumed

    def wrap(self) -> None:
        """DDP under torchrun. An augment hook may also offer ``shared_forward(net, model, x,
        y, generator)``, returning (net's output on x, extra batch) or None: its forward then
        serves the training loss too (SHADOW's generation graph is the training forward).
        Single process only: under DDP the hook's plain call is used, so DDP's gradient hooks
        see the usual forward."""
        self.net = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.dev.index] if self.dev.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids)
        self.shared = getattr(self.augment, "shared_forward", None) if self.world == 1 else None

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> History:
        was_training = self.model.training
        stop = StopFlag()
        cuda = [self.dev.index] if self.dev.type == "cuda" and self.dev.index is not None else []
        self.epoch = self.start_epoch
        try:
            with torch.random.fork_rng(devices=cuda), stop:
                try:
                    self.model.train()
                    self._emit("fit_start", self.start_epoch - 1, 0)
                    for epoch in range(self.start_epoch, self.epochs + 1):
                        self.epoch = epoch
                        perm = self._begin_epoch(epoch)
                        for step in range(self.done, self.steps):
                            self._step(epoch, step, perm, stop)
                        self._end_epoch(epoch)
                    self._emit("fit_end", self.epochs, self.steps)
                except KeyboardInterrupt:
                    self._save_interrupted()
                    raise
        finally:
            self.model.train(was_training)
        return self.hist

    def _begin_epoch(self, epoch: int) -> torch.Tensor:
        """This epoch's data order and random streams, all functions of (seed, epoch, rank);
        mid-epoch after a resume, the saved running sums and RNG states."""
        seed, rank = self.seed, self.rank
        order = torch.Generator().manual_seed(derive_seed(seed, _ORDER, epoch))
        perm = torch.randperm(len(self.train), generator=order)
        torch.manual_seed(derive_seed(seed, _TORCH, epoch, rank))
        self.gens = {
            "transform": torch.Generator(device=self.dev).manual_seed(
                derive_seed(seed, _TRANSFORM, epoch, rank)
            ),
            "augment": torch.Generator(device=self.dev).manual_seed(
                derive_seed(seed, _AUGMENT, epoch, rank)
            ),
        }
        self.acc = _fresh_acc()
        self.done = 0
        if epoch == self.start_epoch and self.start_step > 0 and self.resumed is not None:
            self.acc.update({k: float(v) for k, v in self.resumed["partial"].items()})
            rng = self.resumed["rng"]
            set_rng_state(rng[rank] if isinstance(rng, list) else rng, self.dev, self.gens)
            self.done = self.start_step
        self._emit("epoch_start", epoch, self.done)
        return perm

    def _step(self, epoch: int, step: int, perm: torch.Tensor, stop: StopFlag) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        self.consistent = False
        glob = perm[step * self.batch_size : (step + 1) * self.batch_size]  # the global batch
        idx = glob[self.rank :: self.world] if self.world > 1 else glob  # this rank's share
        xb = self.train.x[idx].to(self.dev, non_blocking=True)
        yb = self.ytrain[idx].to(self.dev, non_blocking=True)
        if self.transform is not None:
            xb = self.transform(xb, self.gens["transform"])
        xb = apply_norm(xb, *self.norm)
        shared_out, extra, weight, only = self._extra_batch(epoch, xb, yb)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(
                self.schedule, self.lr, (epoch - 1) * self.steps + step, self.epochs * self.steps
            )
        self.opt.zero_grad(set_to_none=True)
        # DDP averages the ranks' gradients: scaling by world / len(glob) makes the average
        # the full batch's mean gradient
        scale = self.world / len(glob)
        out, loss_sum, bad = self._backward(
            xb, yb, shared_out, extra, weight, only, scale, f"epoch {epoch}, step {step + 1}"
        )
        self.opt.step()
        k = len(idx)
        self.acc["loss"] += float(loss_sum.detach())
        self.acc["correct"] += float((out.detach().argmax(1) == yb).sum())
        self.acc["count"] += k
        self.acc["seconds"] += time.perf_counter() - t0
        self.acc["cpu_seconds"] += time.process_time() - c0
        self.done = step + 1
        self.consistent = True
        self._emit("batch_end", epoch, self.done, loss=float(loss_sum.detach()) / max(k, 1))
        self._agree(stop, bad, epoch)

    def _extra_batch(
        self, epoch: int, xb: torch.Tensor, yb: torch.Tensor
    ) -> tuple[torch.Tensor | None, Any, float, list[Any] | None]:
        """(net's output on xb when the hook's one-pass forward ran it, the extra batch or
        None, its weight, the leaves to backpropagate into: None for all)."""
        if self.augment is None or epoch < self.augment_start:
            return None, None, 1.0, None
        gen = self.gens["augment"]
        got = self.shared(self.net, self.model, xb, yb, gen) if self.shared is not None else None
        shared_out, only = None, None
        if got is not None:
            shared_out, extra = got
            # its input is a leaf of the generation graph: no gradient into it
            only = [p for p in self.model.parameters() if p.requires_grad] or None
        else:
            extra = self.augment(self.model, xb, yb, gen)
        weight = 1.0
        if extra is not None:
            if len(extra) == 3:
                weight = float(extra[2])
            if weight == 0.0:
                extra = None
        return shared_out, extra, weight, only

    def _backward(
        self,
        xb: torch.Tensor,
        yb: torch.Tensor,
        shared_out: torch.Tensor | None,
        extra: Any,
        weight: float,
        only: list[Any] | None,
        scale: float,
        where: str,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Loss and gradients of one step: (output on the real batch, its summed loss, whether
        the loss is not finite). Single process, a non-finite loss raises at once."""
        net = self.net
        assert net is not None  # wrap() ran
        if extra is None:
            out = net(xb) if shared_out is None else shared_out  # (k, classes)
            loss_sum = F.cross_entropy(out, yb, reduction="sum")
            loss = loss_sum * scale
            bad = self._diverged(loss, where)
            loss.backward(inputs=only)
            return out, loss_sum, bad
        # real and extra batch as two forward/backward passes into one gradient: the same sum
        # as one concatenated pass, and cheaper on CPU (two batches of k stay in cache; one of
        # 2k does not)
        xe, ye = extra[0].to(self.dev), extra[1].to(self.dev)
        sync = getattr(net, "no_sync", None) if self.world > 1 else None
        with sync() if sync is not None else contextlib.nullcontext():
            out = net(xb) if shared_out is None else shared_out  # (k, classes)
            loss_sum = F.cross_entropy(out, yb, reduction="sum")
            (loss_sum * scale).backward(inputs=only)
        out_e = net(xe)  # (k', classes)
        loss_e = F.cross_entropy(out_e, ye) if len(ye) else out_e.sum() * 0.0
        loss_extra = weight * loss_e * (len(yb) * scale)
        self.acc["extra"] += len(ye)
        bad = self._diverged(loss_sum.detach() * scale + loss_extra, where)
        loss_extra.backward()
        return out, loss_sum, bad

    def _diverged(self, loss: torch.Tensor, where: str) -> bool:
        bad = not bool(torch.isfinite(loss))
        if bad and self.world == 1:
            raise DivergedError(
                f"training diverged at {where}: the loss is {float(loss.detach())}",
                hint="lower the learning rate (--lr)",
            )
        return bad

    def _agree(self, stop: StopFlag, bad: bool, epoch: int) -> None:
        """Every rank stops together: on a Ctrl-C anywhere, or a non-finite loss anywhere."""
        flags = torch.tensor([float(stop.flag), float(bad)])
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags[1] > 0:
            raise DivergedError(
                f"training diverged at epoch {epoch}, step {self.done}",
                hint="lower the learning rate (--lr)",
            )
        if flags[0] > 0:
            self.synced_stop = True
            raise KeyboardInterrupt

    def _end_epoch(self, epoch: int) -> None:
        row = _close_epoch(epoch, self.acc, self.world, self.opt)
        t1 = time.perf_counter()
        if self.test is not None:
            row.update(
                _test_metrics(
                    self.model, self.test, *self.norm, self.eval_batch_size, self.dev,
                    self.rank, self.world,
                )
            )  # fmt: skip
        row["eval_seconds"] = time.perf_counter() - t1
        prev_wall = float(self.hist.rows[-1]["wall_seconds"]) if self.hist.rows else 0.0
        row["wall_seconds"] = prev_wall + row["seconds"] + row["eval_seconds"]
        self.model.train()
        row.update(self._emit("epoch_end", epoch, self.steps, row=row))
        self.hist.rows.append(row)
        self._save(self._snapshot(epoch, 0))
        self.done = 0

    # --- events and checkpoints -----------------------------------------------------------

    def _emit(self, kind: str, epoch: int, step: int, **kw: Any) -> dict[str, Any]:
        ev = Event(
            kind, epoch, self.epochs, step, self.steps, model=self.model, rank=self.rank, **kw
        )
        extra: dict[str, Any] = {}
        for cb in self.callbacks:
            got = cb(ev)
            if got:
                extra.update(got)
        return extra

    def _snapshot(self, at_epoch: int, at_step: int) -> dict[str, Any]:
        """The full training state. Under DDP every rank must call it (it gathers the ranks'
        RNG states), whether or not it writes."""
        rngs = [rng_state(self.dev, self.gens)]
        if self.world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        return {
            STATE_KEY: 1,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "epoch": at_epoch,
            "step": at_step,
            "partial": dict(self.acc),
            "rng": rngs,
            "history": self.hist.rows,
            "config": self.config,
        }

    def _save(self, obj: dict[str, Any]) -> None:
        if self.ckpt is not None and self.rank == 0:
            save_state(self.ckpt, obj)

    def _save_interrupted(self) -> None:
        """Save where the run stands if that is a batch boundary that every rank agrees on;
        otherwise the last epoch checkpoint stands."""
        if not (self.consistent and self.done > 0):
            return
        if self.world == 1 and self.ckpt is not None:
            self._save(self._snapshot(self.epoch - 1, self.done))
        elif self.world > 1 and self.synced_stop:  # every rank takes part in the snapshot
            self._save(self._snapshot(self.epoch - 1, self.done))


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
        "cpu_seconds": float(acc.get("cpu_seconds", 0.0)),
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
    loss, correct, count = eval_sums(model, test.x[lo:hi], test.y[lo:hi], m, s, batch_size, dev)
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
