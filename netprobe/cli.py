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
from .errors import EXIT_USAGE, NetprobeError, NothingToAnalyseError, OptionError

if TYPE_CHECKING:
    from .loading import LoadedModel
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

    def progress_bar(self) -> Any:
        """Transitional: the bare rich Progress for commands not yet on :meth:`progress`."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        return Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=self.quiet,
            transient=True,
        )

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

    def finish_legacy(self, model: Any = None, **extra: Any) -> None:
        """Transitional: run.json for commands not yet on :meth:`finish`."""
        if self.output is None:
            return
        if model is not None:
            self.info.model = model.provenance()
        self.info.extra.update(extra)
        self.info.extra["files"] = list(self.output.written)
        self.output.write_json("run.json", self.info.to_dict())

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
    ctx: typer.Context | str,
    *,
    device: str = "auto",
    seed: int = 0,
    fmt: str = "table",
    quiet: bool = False,
    output_dir: Path | None = None,
    force: bool = False,
    threads: int | None = None,
    writes: bool = True,
    options: dict[str, Any] | None = None,  # transitional: commands not yet on ctx
) -> Run:
    """Check the shared options at the door and set up the run (nothing is written yet).
    The command's options are recorded once, from the click context."""
    from .report import OutputDir, RunInfo, default_output_dir
    from .runtime import check_threads, resolve_device

    command = ctx if isinstance(ctx, str) else (ctx.info_name or "netprobe")
    params = options or {} if isinstance(ctx, str) else ctx.params
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
        for k, v in params.items()
        if k not in _NOT_RECORDED
    }
    info = RunInfo(
        command=command, argv=["netprobe", *sys.argv[1:]], options=opts, device=dev, seed=seed
    )
    return Run(command, dev, seed, fmt, quiet, output, info)


def load_model(model: str | None, *, quiet: bool = False, **kw: Any) -> LoadedModel:
    """Transitional: commands not yet on the one-library-call pattern load here."""
    from .loading import load

    if not quiet:
        err.print(Text(f"loading {model or 'the bundled digit net'}…", style="dim"))
    return load(model, **kw)


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


def emit(run: Run, frame: Any, json_obj: Any, md: str, table: Any) -> None:
    """Print the result to stdout in the format asked for."""
    from .report import frame_to_csv, to_json

    if run.fmt == "json":
        sys.stdout.write(to_json(json_obj))
    elif run.fmt == "csv":
        sys.stdout.write(frame_to_csv(frame))
    elif run.fmt == "md":
        sys.stdout.write(md)
    else:
        out.print(table)
    sys.stdout.flush()


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
# netprobe randomness  (section owned by the randomness work; add the command below)


@app.command("randomness")
@command
def randomness_cmd(
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
            help="Share of i.i.d. Gaussian matrices allowed to be called structured; split over the 4 tests.",
        ),
    ] = 0.05,
    entry_test: Annotated[
        str,
        typer.Option(
            "--entry-test", help="Entry normality test: ks (Lilliefors) or ad (Anderson-Darling)."
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
    """Test the random-like weight hypothesis layer by layer: entries, independence,
    spectrum against Marchenko-Pastur, spikes (paper §2.1)."""
    import contextlib

    from .iid import SPECTRUM_MODES, Thresholds, analyse
    from .render import randomness_table

    if spectrum not in SPECTRUM_MODES:
        raise OptionError(f"--spectrum {spectrum}: unknown mode", hint="use exact, approx or auto")
    if dpi < 20 or dpi > 600:
        raise OptionError(f"--dpi {dpi}: out of range", hint="use 20..600, e.g. --dpi 100")
    th = Thresholds(alpha=alpha, entry_test=entry_test).check()
    opts = {
        "model": model,
        "layers": layers,
        "exclude": exclude,
        "spectrum": spectrum,
        "alpha": alpha,
        "entry_test": entry_test,
        "compare_init": compare_init,
        "weights": weights,
        "weights_file": weights_file,
        "arch": arch,
        "figures": figures,
    }
    run = start(
        "randomness",
        device=device,
        seed=seed,
        fmt=fmt,
        quiet=quiet,
        output_dir=output_dir,
        force=force,
        threads=threads,
        options=opts,
    )
    lm = load_model(
        model,
        weights=weights,
        weights_file=weights_file,
        arch=arch,
        trust_pickle=trust_pickle,
        quiet=quiet,
    )
    limit: Any = contextlib.nullcontext()
    if threads is not None:
        try:  # BLAS threads too (scipy's syrk, numpy's products), not only torch's
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(limits=threads)
        except ImportError:
            pass
    with limit, run.progress_bar() as bar:
        task = bar.add_task("layers", total=None)

        def on_layer(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name or "done")

        report = analyse(
            lm,
            layers=layers,
            exclude=exclude,
            spectrum=spectrum,
            thresholds=th,
            compare_init=compare_init,
            device=run.device,
            seed=seed,
            progress=on_layer,
        )
    out = run.output
    assert out is not None  # start(writes=True)
    figs: list[tuple[str, str]] = []
    if figures and report.analysed:
        from .iid import reference_singular_values
        from .plots import randomness_layer_grid, randomness_summary

        run.log("drawing figures…")
        fig = randomness_summary(report)
        out.write_figure("summary.png", fig, dpi=dpi)
        figs.append(("summary.png", "all layers: p-values, kurtosis, spikes"))
        done = report.analysed
        per = 8
        for page in range(0, len(done), per):
            chunk = done[page : page + per]
            refs = {x.name: reference_singular_values(x, seed) for x in chunk}
            name = f"layers-{page // per + 1:02d}.png"
            title = f"{Path(report.model).name if '/' in report.model else report.model}: layers {page + 1}-{page + len(chunk)}"
            out.write_figure(name, randomness_layer_grid(chunk, refs, title=title), dpi=dpi)
            figs.append((name, f"spectra and entries, layers {page + 1}-{page + len(chunk)}"))
    out.write_csv("layers.csv", report.to_frame())
    out.write_json("report.json", report.to_dict())
    out.write_npz("spectra.npz", report.arrays())
    out.write_text("report.md", report.to_markdown(figs))
    emit(
        run, report.to_frame(), report.to_dict(), report.to_markdown(figs), randomness_table(report)
    )
    run.finish_legacy(
        lm,
        verdict=report.verdict,
        summary=report.summary,
        analysis_seconds=round(report.seconds, 3),
    )


# <<randomness-command>>

# ---------------------------------------------------------------------------------------
# netprobe reconstruct  (section owned by the reconstruct work; add the command below)


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


# <<reconstruct-command>>

# ---------------------------------------------------------------------------------------
# netprobe shadow-train  (section owned by the shadow-train work; add the command below)

#: the experiment's own options: saved in RUN_DIR/settings.json, taken from there by --resume
SHADOW_OPTIONS = (
    "dataset",
    "data_dir",
    "download",
    "train_size",
    "test_size",
    "val_fraction",
    "test_fraction",
    "split_seed",
    "arch",
    "from_",
    "new_head",
    "weights",
    "trust_pickle",
    "input_shape",
    "arms",
    "seeds",
    "layer",
    "ratio",
    "gen_keep",
    "smooth",
    "unpool",
    "gen_scale",
    "warmup",
    "dropout",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "schedule",
    "grid",
)
SHADOW_SETTINGS_FILE = "settings.json"


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
            help="match: give each synthetic input its real input's mean/std; theory: the reverse net's alpha as it comes.",
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
            "--resume", help="Continue an interrupted run in RUN_DIR with its saved settings."
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
    checkpoint per arm and seed (models/ARM-seedS.pt); `--resume RUN_DIR` continues an interrupted run.
    """
    import json

    from . import shadow as sh

    local = dict(locals())
    opts: dict[str, Any] = {
        k: (str(local[k]) if isinstance(local[k], Path) else local[k]) for k in SHADOW_OPTIONS
    }
    if resume is not None:
        given = [
            k
            for k in SHADOW_OPTIONS
            if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
        ]
        if given or output_dir is not None:
            flag = "--" + (given[0].rstrip("_").replace("_", "-") if given else "output-dir")
            raise OptionError(
                f"--resume takes every setting from {resume / SHADOW_SETTINGS_FILE}; {flag} cannot change it",
                hint=f"drop {flag}, or start a fresh run",
            )
        sfile = resume / SHADOW_SETTINGS_FILE
        if not sfile.is_file():
            raise OptionError(
                f"--resume {resume}: not a shadow-train run folder (no {SHADOW_SETTINGS_FILE})",
                hint="pass the output folder of an earlier `netprobe shadow-train` run",
            )
        try:
            saved = dict(json.loads(sfile.read_text())["options"])
        except (ValueError, KeyError, TypeError) as e:
            raise OptionError(
                f"--resume {resume}: {SHADOW_SETTINGS_FILE} is unreadable ({e})",
                hint="start a fresh run",
            ) from None
        missing = [k for k in SHADOW_OPTIONS if k not in saved]
        if missing:
            raise OptionError(
                f"--resume {resume}: {SHADOW_SETTINGS_FILE} lacks {', '.join(missing[:3])}",
                hint="it was not written by this version of netprobe; start a fresh run",
            )
        opts = {k: saved[k] for k in SHADOW_OPTIONS}
    arm_list = sh.parse_arms(opts["arms"])
    seed_list = sh.parse_seeds(opts["seeds"])
    train_cfg = sh.TrainSettings(
        epochs=int(opts["epochs"]),
        batch_size=int(opts["batch_size"]),
        lr=float(opts["lr"]),
        optimizer=str(opts["optimizer"]),
        weight_decay=float(opts["weight_decay"]),
        schedule=str(opts["schedule"]),
        warmup=int(opts["warmup"]),
        dropout=float(opts["dropout"]),
    ).check()
    if train_cfg.batch_size < 1 or not train_cfg.lr > 0:
        raise OptionError(
            f"--batch-size {train_cfg.batch_size} / --lr {train_cfg.lr}: must be positive",
            hint="e.g. --batch-size 64 --lr 1e-3",
        )
    if train_cfg.optimizer not in ("adam", "adamw", "sgd") or train_cfg.schedule not in (
        "constant",
        "cosine",
    ):
        raise OptionError(
            f"--optimizer {train_cfg.optimizer} / --schedule {train_cfg.schedule}: unknown",
            hint="optimizers: adam, adamw, sgd; schedules: constant, cosine",
        )
    base_settings = sh.ShadowSettings(
        layer=1,
        ratio=float(opts["ratio"]),
        keep=float(opts["gen_keep"]),
        smooth=float(opts["smooth"]),
        unpool=str(opts["unpool"]),
        scale=str(opts["gen_scale"]),
    ).check()
    with sh.distributed(__import__("netprobe.runtime", fromlist=["x"]).resolve_device(device)) as (
        rank,
        world,
    ):
        run = start(
            "shadow-train",
            device=device,
            seed=seed_list[0],
            fmt=fmt,
            quiet=quiet or rank > 0,
            output_dir=resume or output_dir,
            force=force or resume is not None,
            threads=threads,
            writes=rank == 0,
            options=opts,
        )
        lm = None
        if opts["from_"]:
            lm = load_model(
                opts["from_"],
                weights=str(opts["weights"]),
                arch=opts["arch"],
                trust_pickle=bool(opts["trust_pickle"]),
                input_shape=opts["input_shape"],
                quiet=run.quiet,
            )
        run.log(f"loading {opts['dataset'] or 'the bundled digits'}…")
        setup = sh.setup(
            opts["dataset"],
            from_model=lm,
            arch=opts["arch"],
            new_head=bool(opts["new_head"]),
            input_shape=opts["input_shape"],
            layer=str(opts["layer"]),
            settings=base_settings,
            seed=seed_list[0],
            data_dir=opts["data_dir"],
            download=bool(opts["download"]),
            test_fraction=float(opts["test_fraction"]),
            val_fraction=float(opts["val_fraction"]),
            split_seed=int(opts["split_seed"]),
            train_size=opts["train_size"],
            test_size=opts["test_size"],
        )
        data, spec, settings = setup.data, setup.spec, setup.settings
        run.log(
            f"{spec.source}; SHADOW from {setup.layer_name}; {len(arm_list)} arms x {len(seed_list)} seeds x "
            f"{train_cfg.epochs} epochs on {len(data.train)} examples{f' ({world} processes)' if world > 1 else ''}"
        )
        state_dir = (
            run.output.path if run.output is not None else Path(resume or output_dir or ".")
        ) / "checkpoints"
        if run.output is not None:
            if resume is None:
                run.output.write_json(
                    SHADOW_SETTINGS_FILE, {"command": "shadow-train", "options": opts}
                )
            elif SHADOW_SETTINGS_FILE not in run.output.written:
                run.output.written.append(SHADOW_SETTINGS_FILE)
        steps = -(-len(data.train) // train_cfg.batch_size)
        total = len(arm_list) * len(seed_list) * train_cfg.epochs * steps
        last: dict[str, Any] = {}
        try:
            with run.progress_bar() as bar:
                task = bar.add_task("shadow-train", total=total)

                def on_event(arm: Any, seed: int, idx: int, ev: Any) -> None:
                    base = idx * train_cfg.epochs * steps
                    head = f"{arm.name} seed {seed} epoch {max(ev.epoch, 1)}/{ev.epochs}"
                    if ev.kind == "fit_start":
                        bar.update(task, completed=base + ev.epoch * steps, description=head)
                    elif ev.kind == "batch_end":
                        last["loss"] = ev.loss
                        errs = (
                            f" test {100 * last['test']:.2f}% synth {100 * last['synth']:.2f}%"
                            if "test" in last
                            else ""
                        )
                        bar.update(
                            task,
                            completed=base + (ev.epoch - 1) * steps + ev.step,
                            description=f"{head} loss {ev.loss:.3f}{errs}",
                        )
                    elif ev.kind == "epoch_end" and ev.row is not None:
                        last["test"] = float(ev.row.get("test_error", float("nan")))
                        last["synth"] = float(ev.row.get("synthetic_test_error", float("nan")))
                    elif ev.kind == "fit_end":
                        run.log(
                            f"{arm.name:>16} seed {seed}: test error {100 * last.get('test', float('nan')):.2f}%, "
                            f"synthetic {100 * last.get('synth', float('nan')):.2f}%"
                        )
                        last.clear()

                results = sh.run_experiment(
                    data,
                    spec,
                    arm_list,
                    seed_list,
                    settings,
                    train_cfg,
                    device=run.device,
                    state_dir=state_dir,
                    resume=resume is not None,
                    on_event=on_event,
                )
        except KeyboardInterrupt:
            if run.output is not None and rank == 0:
                err.print(
                    f"[yellow]stopped; continue where it stopped with `netprobe shadow-train --resume {run.output.path}`[/yellow]",
                    highlight=False,
                )
            raise
    if rank != 0 or run.output is None:
        return
    settings_rec = {
        **{k.rstrip("_"): v for k, v in opts.items()},
        "layer_name": setup.layer_name,
        "layer_index": settings.layer,
        "world_size": world,
    }
    model_rec = {
        "source": spec.source,
        "arch": spec.arch,
        "arch_kwargs": spec.arch_kwargs,
        "input_shape": list(spec.input_shape),
        "from": spec.provenance or None,
    }
    report = sh.summarise(results, settings=settings_rec, data=data.info, model=model_rec)
    run.log("writing curves, grids, checkpoints…")
    sh.write_outputs(run.output, report, results, data, spec, settings, grid=int(opts["grid"]))
    from .render import shadow_table

    emit(run, report.summary_frame(), report.to_dict(), report.to_markdown(), shadow_table(report))
    if lm is None:
        run.info.model = model_rec
    run.finish_legacy(lm, conclusion=report.conclusion)


# <<shadow-train-command>>

# ---------------------------------------------------------------------------------------
# netprobe check  (section owned by the check work; add the command below)


@app.command("check")
@command
def check_cmd(
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
            "--config", help="Rules file (default: [tool.netprobe.check] in ./pyproject.toml)."
        ),
    ] = None,
    init: Annotated[
        bool,
        typer.Option(
            "--init",
            help="Write a commented starter config (netprobe.toml, or --config PATH) and exit.",
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
    import time

    from . import zoo as chk
    from .render import check_table
    from .report import atomic_write_text

    if init:
        dest = config or Path("netprobe.toml")
        if dest.exists() and not force:
            raise OptionError(
                f"{dest}: exists", hint="pass --force to overwrite it, or --config OTHER.toml"
            )
        atomic_write_text(dest, chk.STARTER_CONFIG)
        err.print(
            f"wrote {dest}; use it with --config {dest}, or copy its table into pyproject.toml",
            highlight=False,
        )
        return
    if not targets:
        raise OptionError(
            "no models to check", hint="pass files, folders, globs, names or @list.txt (see --help)"
        )
    if jobs < 1:
        raise OptionError(f"--jobs {jobs}: must be at least 1", hint="e.g. --jobs 2")
    if timeout is not None and timeout <= 0:
        raise OptionError(
            f"--timeout {timeout:g}: must be positive", hint="seconds, e.g. --timeout 600"
        )
    run = start("check", device=device, seed=seed, fmt=fmt, quiet=quiet, writes=False)
    cfg = chk.load_config(config)
    which = chk.parse_shard(shard_)
    prev = chk.read_results(baseline) if baseline else None
    for target in (junit, json_, markdown_):
        if target is not None and target.is_dir():
            raise OptionError(f"{target}: is a folder", hint="give a file path")
    todo = chk.shard(chk.expand_targets(targets), which)
    if not todo:
        raise NothingToAnalyseError(
            "no models to check after expanding the targets"
            + (f" and taking shard {shard_}" if which else ""),
            hint="check the paths and globs",
        )
    run.log(f"checking {len(todo)} models with {jobs} workers; rules from {cfg.source}")
    opts = {
        "weights": weights,
        "arch": arch,
        "trust_pickle": trust_pickle,
        "device": run.device,
        "seed": seed,
        "threads": threads,
    }
    t0 = time.time()
    with run.progress_bar() as bar:
        task = bar.add_task("check", total=len(todo))
        results = chk.run_checks(
            todo,
            cfg,
            jobs=jobs,
            timeout=timeout,
            opts=opts,
            on_done=lambda r: bar.update(
                task, advance=1, description=f"{r.status} {Path(r.model).name}"
            ),
        )
    if prev is not None:
        results = chk.compare_baseline(results, prev, cfg)
    seconds = time.time() - t0
    if junit:
        atomic_write_text(junit, chk.junit_xml(results, seconds))
    if json_:
        atomic_write_text(json_, chk.json_lines(results))
    if markdown_:
        atomic_write_text(markdown_, chk.markdown(results))
    rows = [
        {
            "model": r.model,
            "rule": x.rule,
            "status": x.status,
            "value": x.value,
            "threshold": x.threshold,
            "layer": x.layer,
            "message": x.message,
        }
        for r in results
        for x in r.rules
    ]
    import pandas as pd

    emit(
        run,
        pd.DataFrame(rows),
        [r.to_dict() for r in results],
        chk.markdown(results),
        check_table(results),
    )
    code = chk.exit_code(results)
    n = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "error")}
    run.log(
        f"{len(results)} models: {n['pass']} passed, {n['fail']} failed, {n['error']} errors in {seconds:.1f} s"
    )
    if code:
        raise typer.Exit(code)


# <<check-command>>


def main() -> None:
    try:
        app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        sys.exit(code)


if __name__ == "__main__":
    main()
