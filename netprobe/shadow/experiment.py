"""The SHADOW experiment: arms x seeds through ``training.fit``.

Within a seed every arm starts from the same weights (:meth:`ModelSpec.build`) and sees the same
data order and dropout draws (``fit``'s random streams are functions of the seed), so arms are
paired by seed. Only ``fit``'s public hooks are used: ``augment`` (the SHADOW batch from
:mod:`.generate`), an ``epoch_end`` callback (synthetic test error, validation error),
``checkpoint_dir`` and ``resume``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from ..seeds import derive_seed
from .generate import Augmenter, ShadowSettings, classify, synthetic_error
from .inputs import ExperimentData, ModelSpec, head_linear

ARM_NAMES = ("baseline", "shadow", "baseline+dropout", "shadow+dropout")

# ---------------------------------------------------------------------------------------
# arms, seeds, dropout


@dataclass(frozen=True)
class Arm:
    name: str

    @property
    def shadow(self) -> bool:
        return self.name.startswith("shadow")

    @property
    def dropout(self) -> bool:
        return self.name.endswith("+dropout")

    @property
    def slug(self) -> str:
        """File-name form: ``shadow+dropout`` -> ``shadow-dropout``."""
        return self.name.replace("+", "-")

    @property
    def reference(self) -> str | None:
        """The arm a SHADOW arm is compared with: the same arm without SHADOW."""
        return self.name.replace("shadow", "baseline") if self.shadow else None


def parse_arms(text: str | Sequence[str]) -> list[Arm]:
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if not items:
        raise OptionError("--arms: no arm given", hint=f"choose from {', '.join(ARM_NAMES)}")
    for t in items:
        if t not in ARM_NAMES:
            raise OptionError(
                f"--arms {t}: unknown arm",
                hint=f"choose from {', '.join(ARM_NAMES)} (comma-separated)",
            )
    if len(set(items)) != len(items):
        raise OptionError(
            f"--arms {','.join(items)}: an arm is listed twice", hint="list each arm once"
        )
    return [Arm(t) for t in items]


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        seeds: list[int] = []
        for p in parts:
            lo, sep, hi = p.partition("-")
            try:
                if sep and lo:
                    seeds += list(range(int(lo), int(hi) + 1))
                else:
                    seeds.append(int(p))
            except ValueError:
                raise OptionError(
                    f"--seeds {text}: '{p}' is not a whole number",
                    hint="e.g. --seeds 0,1,2 or --seeds 0-4",
                ) from None
    else:
        seeds = [int(s) for s in text]
    if not seeds:
        raise OptionError("--seeds: no seed given", hint="e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise OptionError(
            f"--seeds {text}: seeds must be distinct and >= 0", hint="e.g. --seeds 0,1,2"
        )
    return seeds


DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def set_dropout(model: nn.Module, p: float) -> str:
    """Every dropout module gets probability p; a model without one gets dropout on the input of
    its head (a forward pre-hook, so the state dict is unchanged). Returns what was done."""
    mods = [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
    for m in mods:
        m.p = float(p)
    if mods:
        return f"p={p:g} on {len(mods)} dropout module(s)"
    if p <= 0:
        return "none"
    head = head_linear(model)
    if head is None:
        raise OptionError(
            "the +dropout arms need a dropout module or a Linear head, and this model has neither",
            hint="use the arms without +dropout",
        )
    name, lin = head

    def pre(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (F.dropout(args[0], float(p), mod.training), *args[1:])

    lin.register_forward_pre_hook(pre)
    return f"p={p:g} on the input of {name} (the model has no dropout module)"


# ---------------------------------------------------------------------------------------
# the experiment: arms x seeds through training.fit


#: the stream of the per-epoch synthetic test set (seeds.derive_seed(seed, _TRACK, epoch))
_TRACK = 17


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0  # epochs before synthetic data starts
    dropout: float = 0.5  # p for the +dropout arms
    eval_batch_size: int = 512

    def check(self) -> TrainSettings:
        """The one check of shadow-train's training options: ``training.check_settings`` (the
        check ``fit`` makes too) plus SHADOW's own warmup and dropout."""
        from ..training import check_settings

        check_settings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            eval_batch_size=self.eval_batch_size,
        )
        if self.warmup < 0:
            raise OptionError(f"--warmup {self.warmup}: must be >= 0", hint="e.g. --warmup 1")
        if self.warmup >= self.epochs:
            raise OptionError(
                f"--warmup {self.warmup}: SHADOW would never start in {self.epochs} epochs",
                hint=f"use --warmup below {self.epochs} or more --epochs",
            )
        if not 0.0 <= self.dropout < 1.0:
            raise OptionError(
                f"--dropout {self.dropout}: must lie in [0, 1)", hint="e.g. --dropout 0.5"
            )
        return self


@dataclass
class RunResult:
    """One arm x seed: its history rows and final model."""

    arm: Arm
    seed: int
    rows: list[dict[str, Any]]
    model: nn.Module
    dropout: str
    resumed_from: tuple[int, int] | None = None
    generation_seconds: float = 0.0


#: (arm, seed, run index, training event) -> None: progress for the CLI
OnEvent = Callable[[Arm, int, int, Any], None]
#: called with each arm x seed's result as soon as it is trained
OnRun = Callable[[RunResult], None]


def _tracker(
    data: ExperimentData, settings: ShadowSettings, seed: int, batch_size: int
) -> Callable[[Any], dict[str, Any] | None]:
    """epoch_end callback: synthetic test error (and validation error) for the history row.
    The synthetic test set is regenerated each epoch with the current net, from a seed fixed
    by (seed, epoch), so arms and resumed runs see the same draw."""
    xt = data.normalised(data.test.x)
    yt = data.test.y
    xv = data.normalised(data.val.x) if data.val is not None else None
    yv = data.val.y if data.val is not None else None

    def on(ev: Any) -> dict[str, Any] | None:
        if ev.kind != "epoch_end" or ev.rank != 0 or ev.model is None:
            return None
        t0 = time.perf_counter()
        assert yt is not None
        gen_seed = derive_seed(seed, _TRACK, ev.epoch)
        err, loss = synthetic_error(ev.model, xt, yt, settings, gen_seed, batch_size)
        row: dict[str, Any] = {"synthetic_test_error": err, "synthetic_test_loss": loss}
        if xv is not None and yv is not None:
            row["val_error"], row["val_loss"] = classify(ev.model, xv, yv, batch_size)
        row["tracking_seconds"] = time.perf_counter() - t0
        return row

    return on


def _callback(
    arm: Arm,
    seed: int,
    idx: int,
    track: Callable[[Any], dict[str, Any] | None],
    on_event: OnEvent | None,
) -> Callable[[Any], dict[str, Any] | None]:
    """fit's callback for one run: the tracker's metrics go into the row, and the caller's
    ``on_event`` sees every event (epoch_end with the tracked metrics in its row)."""

    def callback(ev: Any) -> dict[str, Any] | None:
        extra = track(ev)
        if on_event is not None:
            shown = (
                dataclasses.replace(ev, row={**ev.row, **extra})
                if extra and ev.row is not None
                else ev
            )
            on_event(arm, seed, idx, shown)
        return extra

    return callback


def run_experiment(
    data: ExperimentData,
    spec: ModelSpec,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    settings: ShadowSettings,
    train: TrainSettings,
    *,
    device: str = "cpu",
    state_dir: Path | None = None,
    resume: bool = False,
    on_event: OnEvent | None = None,
    on_run: OnRun | None = None,
) -> list[RunResult]:
    """Train every arm for every seed. Within a seed all arms start from the same weights
    (``spec.build(seed)``) and see the same data order and dropout draws (``fit``'s streams
    are functions of the seed). With ``state_dir`` each run checkpoints every epoch to
    ``state_dir/ARM-seedS/``; ``resume`` continues every run that has a state there (up to
    ``train.epochs``, which may be more than it had) and starts the others afresh."""
    from ..training import STATE_FILE, fit

    settings.check()
    train.check()
    results: list[RunResult] = []
    for seed in seeds:
        base = spec.build(seed)
        for arm in arms:
            model = copy.deepcopy(base)
            how = set_dropout(model, train.dropout if arm.dropout else 0.0)
            aug = Augmenter(settings) if arm.shadow else None
            ck = state_dir / f"{arm.slug}-seed{seed}" if state_dir is not None else None
            track = _tracker(data, settings, seed, train.eval_batch_size)
            hist = fit(
                model,
                data.train,
                test=data.test,
                epochs=train.epochs,
                batch_size=train.batch_size,
                lr=train.lr,
                optimizer=train.optimizer,
                weight_decay=train.weight_decay,
                schedule=train.schedule,
                seed=seed,
                device=device,
                mean=data.mean,
                std=data.std,
                augment=aug,
                augment_start=train.warmup + 1,
                callbacks=[_callback(arm, seed, len(results), track, on_event)],
                checkpoint_dir=ck,
                resume=bool(resume and ck is not None and (ck / STATE_FILE).is_file()),
                eval_batch_size=train.eval_batch_size,
            )
            result = RunResult(
                arm=arm,
                seed=seed,
                rows=[{"arm": arm.name, "seed": seed, **r} for r in hist.rows],
                model=model,
                dropout=how,
                resumed_from=hist.resumed_from,
                generation_seconds=aug.seconds if aug is not None else 0.0,
            )
            results.append(result)
            if on_run is not None:
                on_run(result)
    return results


def launch_rank() -> int:
    """This process's rank as torchrun launched it (0 outside torchrun): known before the
    process group is joined, so the CLI can tell at once whether this process writes."""
    return int(os.environ.get("RANK", "0") or 0)


@contextmanager
def distributed(device: str) -> Iterator[tuple[int, int]]:
    """(rank, world size) for a run started by ``torchrun``: joins the process group (NCCL on
    CUDA, gloo on CPU) when WORLD_SIZE > 1 and leaves it afterwards; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        yield 0, 1
        return
    import torch.distributed as dist

    if dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size()
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size()
        dist.barrier()
    finally:
        dist.destroy_process_group()
