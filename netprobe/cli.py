"""The ``netprobe`` command line (Typer).

One thin command per subcommand: options -> one library call -> render -> write.
This module owns the two rich Consoles (results to stdout, progress and errors to stderr)
and maps every :class:`~netprobe.errors.NetprobeError` to one red line and its exit code.
Heavy imports (torch, matplotlib) happen inside the commands so ``--help`` stays quick.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from . import __version__
from .errors import EXIT_USAGE, NetprobeError, OptionError

if TYPE_CHECKING:
    from .report import OutputDir, Report, RunInfo

out = Console(soft_wrap=True)  # results (stdout)
err = Console(stderr=True, soft_wrap=True)  # progress, logs, errors (stderr)

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="netprobe",
    help="Analyse trained neural networks the way 'Why are deep nets reversible' "
    "(Arora, Liang & Ma) does: random-like weights, reverse reconstruction through Aᵀ, "
    "and SHADOW training.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"netprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """netprobe: randomness, reconstruction and SHADOW training for trained nets."""


# ---------------------------------------------------------------------------------------
# shared options

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="torchvision name (alexnet), timm:NAME, or a model file (.pt/.pth/.bin/.ckpt, "
        ".pt2, TorchScript, .safetensors, .onnx). Default: the bundled digit net.",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="For torchvision/timm names: default, none (random init) or a weights name.",
    ),
]
WeightsFileOpt = Annotated[
    Path | None,
    typer.Option("--weights-file", help="Local state dict to load into the named architecture."),
]
ArchOpt = Annotated[
    str | None,
    typer.Option(
        "--arch", help="Architecture for a bare state dict (torchvision name, digitnet, smallvgg)."
    ),
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow unpickling arbitrary Python objects (runs code from the file!).",
    ),
]
InputShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--input-shape", help="One input's shape, e.g. 3,224,224 (default: from the model)."
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (auto = CUDA when present).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (recorded in run.json).")]
OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir", "-o", help="Where to write results (default: ./netprobe-runs/COMMAND-TIME)."
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Write into an existing non-empty output folder.")
]
FormatOpt = Annotated[
    str, typer.Option("--format", help="What goes to stdout: table, json, csv or md.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="CPU threads for torch and BLAS (default: all).")
]

FORMATS = ("table", "json", "csv", "md")


# options that steer the terminal, not the analysis: not recorded in run.json
_NOT_RECORDED = {"ctx", "fmt", "quiet", "debug", "force", "output_dir", "threads"}


@dataclass
class Run:
    """What every command needs besides its own options: the device, the seed, the output
    format and folder, and the run.json record (options taken once from the click context)."""

    command: str
    device: str
    seed: int
    fmt: str
    quiet: bool
    output: OutputDir | None
    info: RunInfo

    @contextmanager
    def progress(self, what: str) -> Iterator[Callable[[int, int, str], None]]:
        """A progress bar on stderr (off with --quiet), as the ``progress(done, total,
        label)`` callback every long library call takes."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=self.quiet,
            transient=True,
        )
        with bar:
            task = bar.add_task(escape(what), total=None)

            def update(done: int, total: int, label: str = "") -> None:
                bar.update(task, completed=done, total=total, description=escape(label or what))

            yield update

    def log(self, msg: str) -> None:
        """A dim line on stderr (off with --quiet); ``msg`` is plain text, never markup."""
        if not self.quiet:
            err.print(Text(msg, style="dim"), highlight=False)

    def note(self, msg: str) -> None:
        if not self.quiet:
            err.print(Text.assemble(("note: ", "yellow"), msg), highlight=False)

    def emit(self, report: Report, table: Any) -> None:
        """Print the result to stdout in the format asked for."""
        from .report import frame_to_csv, to_json

        if self.fmt == "json":
            sys.stdout.write(to_json(report.to_dict()))
        elif self.fmt == "csv":
            sys.stdout.write(frame_to_csv(report.to_frame()))
        elif self.fmt == "md":
            sys.stdout.write(report.to_markdown())
        else:
            out.print(table)
        sys.stdout.flush()

    def loading(self, model: str | None) -> None:
        self.log(f"loading {model or 'the bundled digit net'}…")

    def finish(self, report: Report) -> None:
        """Write the report's files, then run.json last, so its presence means the run
        completed. The model's provenance comes from the report (``report.provenance``)."""
        if self.output is None:
            return
        report.write(self.output)
        self.info.model = getattr(report, "provenance", None)
        self.info.extra.update(report.headline())
        self.info.extra["files"] = list(self.output.written)
        self.output.write_json("run.json", self.info.to_dict())
        self.log(f"wrote {len(self.output.written)} files to {self.output.path}")


def start(
    ctx: typer.Context,
    *,
    device: str = "auto",
    seed: int = 0,
    fmt: str = "table",
    quiet: bool = False,
    output_dir: Path | None = None,
    force: bool = False,
    threads: int | None = None,
    writes: bool = True,
) -> Run:
    """Check the shared options at the door and set up the run (nothing is written yet).
    The command's options are recorded once, from the click context."""
    from .report import OutputDir, RunInfo, default_output_dir
    from .runtime import check_threads, resolve_device

    command = ctx.info_name or "netprobe"
    if fmt not in FORMATS:
        raise OptionError(
            f"--format {fmt}: unknown format", hint=f"use one of {', '.join(FORMATS)}"
        )
    check_threads(threads)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    dev = resolve_device(device)
    output = None
    if writes:
        output = OutputDir(output_dir or default_output_dir(command), force=force).check()
    opts = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in ctx.params.items()
        if k not in _NOT_RECORDED
    }
    info = RunInfo(
        command=command, argv=["netprobe", *sys.argv[1:]], options=opts, device=dev, seed=seed
    )
    return Run(command, dev, seed, fmt, quiet, output, info)


F = TypeVar("F", bound=Callable[..., Any])


def command(fn: F) -> F:
    """Run a command body: NetprobeError -> one red line + its exit code; --debug shows
    the traceback; Ctrl-C exits 130; anything else is an internal error (exit 70)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug")) or os.environ.get("NETPROBE_DEBUG", "") not in ("", "0")
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except NetprobeError as e:
            if debug:
                err.print_exception()
            err.print(Text.assemble(("error: ", "bold red"), e.one_line()), highlight=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print(Text("interrupted", style="yellow"))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:  # the last line of defence
            if debug:
                err.print_exception()
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            err.print(
                Text.assemble(
                    ("internal error: ", "bold red"),
                    f"{type(e).__name__}: {msg[:300]}; this is a bug in netprobe: "
                    "rerun with --debug and report the traceback",
                ),
                highlight=False,
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# netprobe layers


@app.command("layers")
@command
def layers_cmd(
    ctx: typer.Context,
    model: ModelArg = None,
    weights: WeightsOpt = "default",
    weights_file: WeightsFileOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    seed: SeedOpt = 0,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the weight layers (as matrices) and the hidden layers h1..hL, named the way
    --layer accepts them."""
    from .listing import layers
    from .render import layers_table

    run = start(ctx, device="cpu", seed=seed, fmt=fmt, quiet=quiet, writes=False)
    run.loading(model)
    report = layers(
        model,
        weights=weights,
        weights_file=weights_file,
        arch=arch,
        trust_pickle=trust_pickle,
        input_shape=input_shape,
        seed=seed,
    )
    run.emit(report, layers_table(report))
    if report.hidden_note:
        run.note(report.hidden_note)


# ---------------------------------------------------------------------------------------
# netprobe randomness


@app.command("randomness")
@command
def randomness_cmd(
    ctx: typer.Context,
    model: ModelArg = None,
    layers: Annotated[
        list[str] | None,
        typer.Option(
            "--layers",
            help="Only tensors whose name or module path matches this glob (repeatable).",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave out tensors matching this glob (repeatable)."),
    ] = None,
    spectrum: Annotated[
        str,
        typer.Option(
            "--spectrum",
            help="exact (Gram eigenvalues), approx (stochastic Lanczos quadrature) or auto (approx above 8192 per side).",
        ),
    ] = "auto",
    alpha: Annotated[
        float,
        typer.Option(
            "--alpha",
            help="Share of matrices with i.i.d. entries (any law) allowed to be called structured; split over the 3 tests.",
        ),
    ] = 0.05,
    entry_test: Annotated[
        str,
        typer.Option(
            "--entry-test",
            help="Test for Gaussian entries, reported beside the verdict: ks (Lilliefors) or ad (Anderson-Darling).",
        ),
    ] = "ks",
    compare_init: Annotated[
        bool,
        typer.Option(
            "--compare-init",
            help="Also analyse the architecture's fresh initialisation, side by side.",
        ),
    ] = False,
    figures: Annotated[
        bool, typer.Option("--figures/--no-figures", help="Draw the per-layer and summary figures.")
    ] = True,
    dpi: Annotated[int, typer.Option("--dpi", help="Resolution of the figures.")] = 100,
    weights: WeightsOpt = "default",
    weights_file: WeightsFileOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustPickleOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    output_dir: OutputDirOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Test the random-like weight hypothesis layer by layer: independence of rows and
    columns, spectrum against Marchenko-Pastur, spikes (i.i.d. entries of any law are
    random-like); the entry law and whether it is Gaussian are reported beside it
    (docs/science.md §2.1)."""
    from .iid import randomness
    from .render import randomness_table

    run = start(
        ctx,
        device=device,
        seed=seed,
        fmt=fmt,
        quiet=quiet,
        output_dir=output_dir,
        force=force,
        threads=threads,
    )
    run.loading(model)
    with run.progress("layers") as progress:
        report = randomness(
            model,
            layers=layers,
            exclude=exclude,
            spectrum=spectrum,
            alpha=alpha,
            entry_test=entry_test,
            compare_init=compare_init,
            figures=figures,
            dpi=dpi,
            device=run.device,
            seed=seed,
            threads=threads,
            progress=progress,
            weights=weights,
            weights_file=weights_file,
            arch=arch,
            trust_pickle=trust_pickle,
        )
    if report.figure_files():
        run.log("drawing figures…")
    run.emit(report, randomness_table(report))
    run.finish(report)


# ---------------------------------------------------------------------------------------
# netprobe reconstruct


@app.command("reconstruct")
@command
def reconstruct_cmd(
    ctx: typer.Context,
    model: ModelArg = None,
    layer: Annotated[
        str,
        typer.Option(
            "--layer",
            "-l",
            help="Hidden layer to generate from: h2, a module path, a comma list, or all.",
        ),
    ] = "h2",
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            help="An image, a folder of images, or an .npz (x[, y]) / .npy of images "
            "(default: bundled photographs for 3-channel models, bundled digits otherwise).",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="mnist, fashion-mnist, cifar10 or cifar100 (torchvision)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder holding torchvision datasets.")
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Download --dataset if it is missing.")
    ] = False,
    split: Annotated[str, typer.Option("--split", help="train, test or all.")] = "test",
    num: Annotated[
        int,
        typer.Option(
            "--num", "-n", help="How many inputs (a seeded random subset when there are more)."
        ),
    ] = 32,
    mean: Annotated[
        str | None,
        typer.Option(
            "--mean",
            help="Per-channel mean to normalise with, e.g. 0.485,0.456,0.406 (default: the model's).",
        ),
    ] = None,
    std: Annotated[
        str | None,
        typer.Option("--std", help="Per-channel std to normalise with (default: the model's)."),
    ] = None,
    gen_scale: Annotated[
        str,
        typer.Option(
            "--gen-scale",
            help="Generation scale α per layer: theory (2/(ρ·mean‖A_i‖²)), calibrated, or a number.",
        ),
    ] = "theory",
    gen_keep: Annotated[
        float,
        typer.Option("--gen-keep", help="Keep-probability ρ of generation dropout (1 = none)."),
    ] = 1.0,
    unpool: Annotated[
        str, typer.Option("--unpool", help="Max-pool reversal: random, switches or copy.")
    ] = "random",
    smooth: Annotated[
        float,
        typer.Option(
            "--smooth", help="Gaussian blur σ (pixels) of x̃ before re-inference; 0 = off."
        ),
    ] = 0.0,
    no_controls: Annotated[
        bool,
        typer.Option("--no-controls", help="Skip the fresh-init, permuted and random-h controls."),
    ] = False,
    pixel_metrics: Annotated[
        bool,
        typer.Option(
            "--pixel-metrics/--no-pixel-metrics",
            help="Also measure PSNR and SSIM of x̃ against x (context only).",
        ),
    ] = True,
    save_tensors: Annotated[
        bool, typer.Option("--save-tensors", help="Also write x, x̃, h and h̃ to tensors.npz.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Inputs per forward/reverse pass.")
    ] = 64,
    weights: WeightsOpt = "default",
    weights_file: WeightsFileOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    output_dir: OutputDirOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Run the network backwards through Aᵀ from hidden layer h_ℓ and measure how well the
    forward pass re-infers h_ℓ from the generated x̃, next to controls (docs/science.md §2.2)."""
    from .reconstruction import reconstruct
    from .render import reconstruct_table

    run = start(
        ctx,
        device=device,
        seed=seed,
        fmt=fmt,
        quiet=quiet,
        output_dir=output_dir,
        force=force,
        threads=threads,
    )
    run.loading(model)
    with run.progress("reconstruct") as progress:
        report = reconstruct(
            model,
            layer=layer,
            inputs=inputs,
            dataset=dataset,
            data_dir=data_dir,
            download=download,
            split=split,
            num=num,
            mean=mean,
            std=std,
            gen_scale=gen_scale,
            gen_keep=gen_keep,
            unpool=unpool,
            smooth=smooth,
            controls=not no_controls,
            pixel_metrics=pixel_metrics,
            save_tensors=save_tensors,
            batch_size=batch_size,
            device=run.device,
            seed=seed,
            progress=progress,
            log=run.log,
            weights=weights,
            weights_file=weights_file,
            arch=arch,
            trust_pickle=trust_pickle,
            input_shape=input_shape,
        )
    run.emit(report, reconstruct_table(report))
    run.finish(report)


# ---------------------------------------------------------------------------------------
# netprobe shadow-train


@app.command("shadow-train")
@command
def shadow_train_cmd(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="mnist, fashion-mnist, cifar10, cifar100 (torchvision), an .npz (x, y, optional x_test, y_test) or an image folder. Default: the bundled real digits (4,000 train / 1,000 test).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder of torchvision datasets (default $NETPROBE_DATA or ~/.cache/netprobe/data).",
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option("--download", help="Let torchvision download the dataset (needs a network)."),
    ] = False,
    train_size: Annotated[
        int | None,
        typer.Option("--train-size", help="Train on a seeded random subset of this many examples."),
    ] = None,
    test_size: Annotated[
        int | None,
        typer.Option("--test-size", help="Test on a seeded random subset of this many examples."),
    ] = None,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help="Hold out this share of the training data as a validation set (tracked per epoch).",
        ),
    ] = 0.0,
    test_fraction: Annotated[
        float,
        typer.Option(
            "--test-fraction", help="Test share for sources without their own test split."
        ),
    ] = 0.2,
    split_seed: Annotated[
        int,
        typer.Option(
            "--split-seed", help="Seed of the train/validation/test split and subsets (recorded)."
        ),
    ] = 0,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help="Architecture to train: digitnet (28x28), smallvgg (32x32 colour) or any torchvision name; with --from a state dict, its architecture. Default: digitnet for greyscale data, smallvgg for colour.",
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Fine-tune this MODEL (netprobe checkpoint, torchvision name, state dict with --arch) instead of training from scratch.",
        ),
    ] = None,
    new_head: Annotated[
        bool,
        typer.Option(
            "--new-head",
            help="With --from: replace the last Linear layer by a fresh one for the data's classes.",
        ),
    ] = False,
    weights: WeightsOpt = "default",
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    arms: Annotated[
        str,
        typer.Option(
            "--arms", help="Comma-separated: baseline, shadow, baseline+dropout, shadow+dropout."
        ),
    ] = "baseline,shadow",
    seeds: Annotated[
        str,
        typer.Option(
            "--seeds",
            help="Seeds (e.g. 0,1,2 or 0-4); every arm runs once per seed, arms of a seed share init and data order.",
        ),
    ] = "0,1,2",
    layer: Annotated[
        str,
        typer.Option(
            "--layer", help="Hidden layer SHADOW generates from (h1..hL or a module path)."
        ),
    ] = "h2",
    ratio: Annotated[
        float,
        typer.Option(
            "--ratio", help="Weight of the loss on synthetic inputs next to the real loss."
        ),
    ] = 1.0,
    gen_keep: Annotated[
        float,
        typer.Option(
            "--gen-keep",
            help="Keep-probability of the generation dropout masks (the paper's sampling; 1 = none).",
        ),
    ] = 1.0,
    smooth: Annotated[
        float,
        typer.Option(
            "--smooth",
            help="Gaussian blur of synthetic inputs, sigma in pixels (the paper's smoothing; 0 = off).",
        ),
    ] = 0.0,
    unpool: Annotated[
        str,
        typer.Option("--unpool", help="Max-pool reversal in generation: random, switches or copy."),
    ] = "random",
    gen_scale: Annotated[
        str,
        typer.Option(
            "--gen-scale",
            help="match: give each synthetic input its real input's mean/std; theory: the reverse net's scale α as it comes.",
        ),
    ] = "match",
    warmup: Annotated[
        int, typer.Option("--warmup", help="Epochs of plain training before SHADOW starts.")
    ] = 0,
    dropout: Annotated[
        float, typer.Option("--dropout", help="Dropout probability of the +dropout arms.")
    ] = 0.5,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs per arm and seed.")] = 3,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", help="Real examples per step (global batch under torchrun)."),
    ] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 1e-3,
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="adam, adamw or sgd (momentum 0.9).")
    ] = "adam",
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="Weight decay.")] = 0.0,
    schedule: Annotated[
        str, typer.Option("--schedule", help="Learning-rate schedule: constant or cosine.")
    ] = "constant",
    grid: Annotated[
        int,
        typer.Option("--grid", help="Test inputs in the grid of synthetic images (0 = no grid)."),
    ] = 10,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue an interrupted run in RUN_DIR with its saved settings (--epochs and --seeds may be raised to extend it).",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    output_dir: OutputDirOpt = None,
    force: ForceOpt = False,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """SHADOW training: train arms with and without synthetic inputs from the reverse net, over seeds, and say whether SHADOW helped.

    With no arguments: the bundled 4,000 / 1,000 real digits, DigitNet from scratch, arms baseline and shadow, seeds 0,1,2,
    3 epochs (about 2 minutes on two free CPU cores). Writes history.csv, report.json, report.md, figures, run.json and a
    checkpoint per arm and seed (models/ARM-seedS.pt); `--resume RUN_DIR` continues an interrupted run, or extends a
    finished one with more --epochs or --seeds.
    """
    from .render import shadow_table
    from .shadow import ShadowOptions, launch_rank, shadow_train

    rank = launch_rank()  # under torchrun only rank 0 writes and prints
    run = start(
        ctx,
        device=device,
        fmt=fmt,
        quiet=quiet or rank > 0,
        output_dir=output_dir or resume,
        force=force or resume is not None,
        threads=threads,
        writes=rank == 0,
    )
    # only the options given on the command line: with --resume the rest come from the run
    # (typer vendors click, so the parameter source is compared by name)
    given = {
        k: v
        for k, v in ctx.params.items()
        if k in ShadowOptions.__dataclass_fields__
        and getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
    }
    with run.progress("shadow-train") as progress:
        report = shadow_train(
            output=run.output or output_dir or resume,
            resume=resume,
            device=run.device,
            progress=progress,
            log=run.log,
            **given,
        )
    if rank > 0:
        return
    run.emit(report, shadow_table(report))
    if report.complete:
        return  # a finished run, resumed with nothing to add: its files stay as they are
    run.info.options = {**run.info.options, **report.options}  # with --resume: the saved ones
    run.info.seed = report.seeds[0]
    run.finish(report)


# ---------------------------------------------------------------------------------------
# netprobe check


@app.command("check")
@command
def check_cmd(
    ctx: typer.Context,
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Model files, globs, folders (searched recursively), torchvision names, @list.txt.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Rules file (default: ./netprobe.toml, else \\[tool.netprobe.check] in "
            "./pyproject.toml, else built-in rules).",
        ),
    ] = None,
    init: Annotated[
        bool,
        typer.Option(
            "--init",
            help="Write a commented starter config (./netprobe.toml, or --config PATH) and exit.",
        ),
    ] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Models checked at once, each in its own process.")
    ] = 1,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Seconds per model before it is stopped (default: config, 600)."
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="JSON lines of an earlier run (--json): flag drift beyond tolerances.",
        ),
    ] = None,
    shard_: Annotated[
        str | None,
        typer.Option("--shard", help="K/N: check only the K-th of N deterministic shards."),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Write JUnit XML (one testcase per model and rule)."),
    ] = None,
    json_: Annotated[
        Path | None, typer.Option("--json", help="Write JSON lines (one per model).")
    ] = None,
    markdown_: Annotated[
        Path | None,
        typer.Option("--markdown", help="Write a Markdown summary (for a pull-request comment)."),
    ] = None,
    weights: WeightsOpt = "default",
    arch: ArchOpt = None,
    trust_pickle: TrustPickleOpt = False,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads per worker.")] = 1,
    force: ForceOpt = False,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check randomness and reversibility rules over a model zoo; exit 1 when a rule fails."""
    from .render import check_table
    from .zoo import check, init_config

    # --threads is per worker: the parent process computes nothing
    run = start(ctx, device=device, seed=seed, fmt=fmt, quiet=quiet, writes=False)
    if init:
        dest = init_config(config, force=force)
        found = config is None  # ./netprobe.toml is found without --config
        use = "netprobe check in this folder uses it" if found else f"use it with --config {dest}"
        run.log(f"wrote {dest}; {use}")
        return
    with run.progress("models") as progress:
        report = check(
            targets or [],
            config=config,
            jobs=jobs,
            timeout=timeout,
            shard=shard_,
            baseline=baseline,
            junit=junit,
            json=json_,
            markdown=markdown_,
            weights=weights,
            arch=arch,
            trust_pickle=trust_pickle,
            device=run.device,
            seed=seed,
            threads=threads,
            progress=progress,
            log=run.log,
        )
    run.emit(report, check_table(report))
    run.log(report.summary())
    if report.exit_code():
        raise typer.Exit(report.exit_code())


def main() -> None:
    try:
        app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        sys.exit(code)


if __name__ == "__main__":
    main()
