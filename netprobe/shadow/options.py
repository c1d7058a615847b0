"""shadow-train's options: :class:`ShadowOptions` (the experiment's settings, saved in
RUN_DIR/settings.json), their one check, and the one reader of a run folder for ``--resume``
(:func:`resumed_options`: the saved settings, with ``--epochs`` or ``--seeds`` raised when
asked; :func:`is_complete`: whether the folder holds a finished run)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionError
from .experiment import Arm, TrainSettings, parse_arms, parse_seeds
from .generate import ShadowSettings

SETTINGS_FILE = "settings.json"
#: what a --resume may change: raise these (continue training, add seeds)
EXTENDABLE = ("epochs", "seeds")


@dataclass(frozen=True)
class ShadowOptions:
    """Every option that defines a shadow-train experiment, with the CLI's defaults (a test
    keeps the two in step). ``from_`` is a MODEL spec to fine-tune (the CLI's ``--from``)."""

    dataset: str | None = None
    data_dir: str | None = None
    download: bool = False
    train_size: int | None = None
    test_size: int | None = None
    val_fraction: float = 0.0
    test_fraction: float = 0.2
    split_seed: int = 0
    arch: str | None = None
    from_: str | None = None
    new_head: bool = False
    weights: str = "default"
    trust_pickle: bool = False
    input_shape: str | None = None
    arms: str = "baseline,shadow"
    seeds: str = "0,1,2"
    layer: str = "h2"
    ratio: float = 1.0
    gen_keep: float = 1.0
    smooth: float = 0.0
    unpool: str = "random"
    gen_scale: str = "match"
    warmup: int = 0
    dropout: float = 0.5
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    grid: int = 10

    @classmethod
    def make(cls, **options: Any) -> ShadowOptions:
        """Options from keywords (API callers, the CLI): paths become strings, a list of arms
        or seeds becomes their comma-separated form (as settings.json records them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        for name in options:
            if name not in known:
                raise TypeError(f"shadow_train() got an unexpected option {name!r}")
        return cls(**{k: _plain(k, v) for k, v in options.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def arm_list(self) -> list[Arm]:
        return parse_arms(self.arms)

    def seed_list(self) -> list[int]:
        return parse_seeds(self.seeds)

    def train_settings(self) -> TrainSettings:
        return TrainSettings(
            epochs=int(self.epochs),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            optimizer=str(self.optimizer).lower(),
            weight_decay=float(self.weight_decay),
            schedule=str(self.schedule),
            warmup=int(self.warmup),
            dropout=float(self.dropout),
        )

    def shadow_settings(self) -> ShadowSettings:
        """How synthetic inputs are made (the layer index is resolved against the model
        later, by ``setup``)."""
        return ShadowSettings(
            layer=1,
            ratio=float(self.ratio),
            keep=float(self.gen_keep),
            smooth=float(self.smooth),
            unpool=str(self.unpool),
            scale=str(self.gen_scale),
        )

    def check(self) -> ShadowOptions:
        """The one check of the options, before anything is loaded or written: a one-line
        :class:`OptionError` naming the option. (The data, the model and ``--layer`` are
        checked by ``setup``, which needs them loaded.)"""
        self.arm_list()
        self.seed_list()
        self.train_settings().check()
        self.shadow_settings().check()
        if int(self.grid) < 0:
            raise OptionError(f"--grid {self.grid}: must be >= 0", hint="e.g. --grid 10; 0 = none")
        return self


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if name in ("arms", "seeds") and isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join(str(getattr(v, "name", v)) for v in value)
    return value


def flag(name: str) -> str:
    """The CLI flag of an option: ``from_`` -> ``--from``, ``gen_keep`` -> ``--gen-keep``."""
    return "--" + name.rstrip("_").replace("_", "-")


def read_settings(run_dir: Path) -> ShadowOptions:
    """The options a run folder was started with (its settings.json)."""
    sfile = run_dir / SETTINGS_FILE
    if not sfile.is_file():
        raise OptionError(
            f"--resume {run_dir}: not a shadow-train run folder (no {SETTINGS_FILE})",
            hint="pass the output folder of an earlier `netprobe shadow-train` run",
        )
    try:
        saved = dict(json.loads(sfile.read_text(encoding="utf-8"))["options"])
    except (ValueError, KeyError, TypeError) as e:
        raise OptionError(
            f"--resume {run_dir}: {SETTINGS_FILE} is unreadable ({e})", hint="start a fresh run"
        ) from None
    names = [f.name for f in dataclasses.fields(ShadowOptions)]
    missing = [k for k in names if k not in saved]
    if missing:
        raise OptionError(
            f"--resume {run_dir}: {SETTINGS_FILE} lacks {', '.join(missing[:3])}",
            hint="it was not written by this version of netprobe; start a fresh run",
        )
    return ShadowOptions(**{k: saved[k] for k in names})


def resumed_options(
    run_dir: Path, changes: Mapping[str, Any]
) -> tuple[ShadowOptions, ShadowOptions]:
    """(the options to continue with, the saved ones). ``changes`` are the options given
    with ``--resume``: ``epochs`` and ``seeds`` may be raised (more epochs continue every run
    from its saved state; more seeds add runs); lowering them, or changing any other option,
    is an :class:`OptionError` naming it. A value equal to the saved one is no change."""
    saved = read_settings(run_dir)
    asked = ShadowOptions.make(**changes)
    new: dict[str, Any] = {}
    for name in changes:
        value, old = getattr(asked, name), getattr(saved, name)
        if name == "seeds":
            value = _added_seeds(run_dir, parse_seeds(old), parse_seeds(value))
        if value == old:
            continue
        if name == "epochs":
            _check_more_epochs(run_dir, saved, int(value))
        elif name != "seeds":
            raise OptionError(
                f"--resume takes every setting from {run_dir / SETTINGS_FILE}; "
                f"{flag(name)} cannot change it",
                hint=f"drop {flag(name)}, or start a fresh run (a resume may raise --epochs "
                "or add --seeds)",
            )
        new[name] = value
    return dataclasses.replace(saved, **new), saved


def _added_seeds(run_dir: Path, old: list[int], asked: list[int]) -> str:
    dropped = [s for s in old if s not in asked]
    if dropped:
        raise OptionError(
            f"--seeds {','.join(map(str, asked))}: the run in {run_dir} also has seed(s) "
            f"{','.join(map(str, dropped))}; a resume can add seeds, not drop them",
            hint=f"list every seed of the run, e.g. --seeds {','.join(map(str, old))},…",
        )
    return ",".join(str(s) for s in [*old, *(s for s in asked if s not in old)])


def _check_more_epochs(run_dir: Path, saved: ShadowOptions, epochs: int) -> None:
    if epochs < int(saved.epochs):
        raise OptionError(
            f"--epochs {epochs}: the run in {run_dir} trains {saved.epochs} epochs; "
            "a resume can raise --epochs, not lower it",
            hint=f"use --epochs {saved.epochs} or more, or start a fresh run",
        )
    if saved.schedule != "constant":
        raise OptionError(
            f"--epochs {epochs}: the run in {run_dir} uses --schedule {saved.schedule}, whose "
            "length is part of the run, so its epochs cannot be raised",
            hint="start a fresh run with more --epochs",
        )


def state_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def is_complete(run_dir: Path, options: ShadowOptions) -> bool:
    """Whether the folder holds the finished run these options describe: run.json (written
    last) and the report are there, and every arm x seed's training state has all its
    epochs. A run that is being extended loses its run.json first."""
    from ..training import STATE_FILE, load_state

    if not all((run_dir / f).is_file() for f in ("run.json", "report.json", "history.csv")):
        return False
    for seed in options.seed_list():
        for arm in options.arm_list():
            path = state_dir(run_dir) / f"{arm.slug}-seed{seed}" / STATE_FILE
            if not path.is_file():
                return False
            state = load_state(path)
            if int(state["epoch"]) < int(options.epochs) or int(state["step"]) != 0:
                return False
    return True
