"""``netprobe.shadow_train``: the library call behind ``netprobe shadow-train``.

Options are checked first (nothing is loaded or written before), then the data and model
(:func:`~.inputs.setup`), then every arm x seed trains (:func:`~.experiment.run_experiment`),
checkpointing into ``output/checkpoints/``, and the result is summarised
(:func:`~.summary.summarise`). The report's :meth:`~.report.ShadowReport.write` writes the
rest of the files. Under ``torchrun`` every process trains its share and only rank 0 writes
or reports progress.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..report import OutputDir, as_output_dir
from .experiment import RunResult, distributed, launch_rank, run_experiment
from .inputs import Setup, setup
from .options import (
    SETTINGS_FILE,
    ShadowOptions,
    is_complete,
    resumed_options,
    state_dir,
)
from .report import ShadowReport, Trained
from .summary import plural, summarise

Progress = Callable[[int, int, str], None]
Log = Callable[[str], None]


def _quiet(text: str) -> None:
    """The log of a call that was given none."""


def _pct(v: Any) -> str:
    return "n/a" if v is None or v != v else f"{100 * float(v):.2f}%"


class _Reporter:
    """Training events -> ``progress(done, total, label)`` and one log line per arm x seed."""

    def __init__(self, progress: Progress | None, log: Log, runs: int, epochs: int, steps: int):
        self.progress, self.log = progress, log
        self.epochs, self.steps = epochs, steps
        self.total = runs * epochs * steps
        self.errors = ""  # the last epoch's test and synthetic errors, for the label

    def event(self, arm: Any, seed: int, idx: int, ev: Any) -> None:
        if self.progress is None:
            return
        base = idx * self.epochs * self.steps
        head = f"{arm.name} seed {seed} epoch {max(ev.epoch, 1)}/{ev.epochs}"
        if ev.kind == "fit_start":
            self.errors = ""
            self.progress(base + ev.epoch * self.steps, self.total, head)
        elif ev.kind == "batch_end":
            done = base + (ev.epoch - 1) * self.steps + ev.step
            self.progress(done, self.total, f"{head} loss {ev.loss:.3f}{self.errors}")
        elif ev.kind == "epoch_end" and ev.row is not None:
            test, syn = ev.row.get("test_error"), ev.row.get("synthetic_test_error")
            self.errors = f" test {_pct(test)} synth {_pct(syn)}"

    def run_done(self, r: RunResult) -> None:
        row = r.rows[-1] if r.rows else {}
        before = r.resumed_from[0] if r.resumed_from is not None else 0
        was = f" (all {plural(before, 'epoch')} trained before)" if before == len(r.rows) else ""
        self.log(
            f"{r.arm.name:>16} seed {r.seed}: test error {_pct(row.get('test_error'))}, "
            f"synthetic {_pct(row.get('synthetic_test_error'))}{was}"
        )


def shadow_train(
    dataset: str | os.PathLike[str] | None = None,
    *,
    output: OutputDir | str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    log: Log | None = None,
    **options: Any,
) -> ShadowReport:
    """SHADOW training (docs/science.md §2.3): train each arm (baseline, shadow, and their
    +dropout forms) for each seed on ``dataset`` (default: the bundled real digits) and say
    whether SHADOW helped. ``options`` are :class:`~.options.ShadowOptions` fields (the CLI's
    options: ``arms``, ``seeds``, ``epochs``, ``layer``, ``ratio``, ``from_``, ...).

    ``output``: the run folder; settings.json and ``checkpoints/`` (training states) are
    written there while training, and ``report.write(output)`` writes the rest. ``resume``:
    continue the run in that folder with its saved settings; ``epochs`` and ``seeds`` may be
    raised to extend it, any other option given must equal the saved one. Resuming a finished
    run with nothing to add returns its saved report, marked ``complete``, and changes nothing.
    ``progress(done, total, label)`` and ``log(text)`` receive progress and plain-text lines.
    """
    if dataset is not None:
        options["dataset"] = dataset
    opts, extending = _options(resume, options)
    run_dir = _run_dir(output, resume)
    from ..runtime import resolve_device

    dev = resolve_device(device)
    say = log if log is not None and launch_rank() == 0 else _quiet
    if resume is not None and not extending and is_complete(Path(resume), opts):
        report = ShadowReport.read(resume)
        report.options = opts.to_dict()
        say(
            f"{resume}: the run is complete ({plural(len(report.arms), 'arm')} x "
            f"{plural(len(report.seeds), 'seed')} x {plural(int(opts.epochs), 'epoch')}); "
            "nothing changed. Raise --epochs or add --seeds to extend it."
        )
        return report
    with distributed(dev) as (rank, world):
        st, lm = _set_up(opts, say)
        out = _open_output(output, run_dir, rank, resume is not None, extending, opts)
        results = _train(
            st, opts, dev, run_dir, resume is not None, progress if rank == 0 else None, say, world
        )
    return _report(results, st, opts, lm, dev, world, run_dir, out)


def _options(
    resume: str | os.PathLike[str] | None, options: dict[str, Any]
) -> tuple[ShadowOptions, bool]:
    """(the checked options, whether a resume extends the run)."""
    if resume is None:
        return ShadowOptions.make(**options).check(), False
    opts, saved = resumed_options(Path(resume), options)
    return opts.check(), opts != saved


def _run_dir(
    output: OutputDir | str | os.PathLike[str] | None, resume: str | os.PathLike[str] | None
) -> Path | None:
    path = output.path if isinstance(output, OutputDir) else Path(output) if output else None
    if resume is None:
        return path
    if path is not None and path.resolve() != Path(resume).resolve():
        raise OptionError(
            f"--output-dir {path}: a resumed run writes into its own folder {resume}",
            hint="drop --output-dir",
        )
    return Path(resume)


def _set_up(opts: ShadowOptions, say: Log) -> tuple[Setup, Any]:
    """The --from model (when fine-tuning), the data splits and the SHADOW layer."""
    from ..loading import ensure_loaded

    lm = None
    seeds = opts.seed_list()
    if opts.from_:
        say(f"loading {opts.from_}…")
        lm = ensure_loaded(
            opts.from_,
            weights=str(opts.weights),
            arch=opts.arch,
            trust_pickle=bool(opts.trust_pickle),
            input_shape=opts.input_shape,
            seed=seeds[0],
        )
    say(f"loading {opts.dataset or 'the bundled digits'}…")
    st = setup(
        opts.dataset,
        from_model=lm,
        arch=opts.arch,
        new_head=bool(opts.new_head),
        input_shape=opts.input_shape,
        layer=str(opts.layer),
        settings=opts.shadow_settings(),
        seed=seeds[0],
        data_dir=opts.data_dir,
        download=bool(opts.download),
        test_fraction=float(opts.test_fraction),
        val_fraction=float(opts.val_fraction),
        split_seed=int(opts.split_seed),
        train_size=opts.train_size,
        test_size=opts.test_size,
    )
    return st, lm


def _open_output(
    output: OutputDir | str | os.PathLike[str] | None,
    run_dir: Path | None,
    rank: int,
    resumed: bool,
    extending: bool,
    opts: ShadowOptions,
) -> OutputDir | None:
    """Rank 0's run folder, with settings.json saying what the run is (written for a fresh or
    extended run; an extended run drops its run.json, which now describes less than the
    folder will hold)."""
    if output is None or rank != 0 or run_dir is None:
        return None
    out = output if isinstance(output, OutputDir) else as_output_dir(output, force=resumed)
    if resumed and not extending:
        if SETTINGS_FILE not in out.written:
            out.written.append(SETTINGS_FILE)
        return out
    out.write_json(SETTINGS_FILE, {"command": "shadow-train", "options": opts.to_dict()})
    if extending:
        (run_dir / "run.json").unlink(missing_ok=True)
    return out


def _train(
    st: Setup,
    opts: ShadowOptions,
    dev: str,
    run_dir: Path | None,
    resumed: bool,
    progress: Progress | None,
    say: Log,
    world: int,
) -> list[RunResult]:
    arms, seeds, train = opts.arm_list(), opts.seed_list(), opts.train_settings()
    procs = f" ({world} processes)" if world > 1 else ""
    say(
        f"{st.spec.source}; SHADOW from {st.layer_name}; {plural(len(arms), 'arm')} x "
        f"{plural(len(seeds), 'seed')} x {plural(train.epochs, 'epoch')} on "
        f"{plural(len(st.data.train), 'example')}{procs}"
    )
    steps = -(-len(st.data.train) // train.batch_size)
    rep = _Reporter(progress, say, len(arms) * len(seeds), train.epochs, steps)
    try:
        return run_experiment(
            st.data,
            st.spec,
            arms,
            seeds,
            st.settings,
            train,
            device=dev,
            state_dir=state_dir(run_dir) if run_dir is not None else None,
            resume=resumed,
            on_event=rep.event,
            on_run=rep.run_done,
        )
    except KeyboardInterrupt:
        if run_dir is not None:
            say(
                f"stopped; continue where it stopped with `netprobe shadow-train --resume {run_dir}`"
            )
        raise


def _report(
    results: list[RunResult],
    st: Setup,
    opts: ShadowOptions,
    lm: Any,
    dev: str,
    world: int,
    run_dir: Path | None,
    out: OutputDir | None,
) -> ShadowReport:
    model_rec = {
        "source": st.spec.source,
        "arch": st.spec.arch,
        "arch_kwargs": st.spec.arch_kwargs,
        "input_shape": list(st.spec.input_shape),
        "from": st.spec.provenance or None,
    }
    settings_rec = {
        **{k.rstrip("_"): v for k, v in opts.to_dict().items()},
        "layer_name": st.layer_name,
        "layer_index": st.settings.layer,
        "world_size": world,
    }
    report = summarise(
        results,
        settings=settings_rec,
        data=st.data.info,
        model=model_rec,
        timing="cpu" if dev == "cpu" else "wall",
    )
    report.provenance = lm.provenance() if lm is not None else model_rec
    report.options = opts.to_dict()
    report.run_dir = out.path if out is not None else run_dir
    report.trained = Trained(results, st.data, st.spec, st.settings, grid=int(opts.grid))
    return report
