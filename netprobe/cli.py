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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from . import __version__
from .errors import EXIT_USAGE, NetprobeError, OptionError

if TYPE_CHECKING:
    from .loading import LoadedModel
    from .report import OutputDir, RunInfo

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
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
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
    str, typer.Option("--weights", help="For torchvision/timm names: default, none (random init) or a weights name.")
]
WeightsFileOpt = Annotated[
    Path | None, typer.Option("--weights-file", help="Local state dict to load into the named architecture.")
]
ArchOpt = Annotated[
    str | None, typer.Option("--arch", help="Architecture for a bare state dict (torchvision name, digitnet, smallvgg).")
]
TrustPickleOpt = Annotated[
    bool, typer.Option("--trust-pickle", help="Allow unpickling arbitrary Python objects (runs code from the file!).")
]
InputShapeOpt = Annotated[
    str | None, typer.Option("--input-shape", help="One input's shape, e.g. 3,224,224 (default: from the model).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (auto = CUDA when present).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (recorded in run.json).")]
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output-dir", "-o", help="Where to write results (default: ./netprobe-runs/COMMAND-TIME).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into an existing non-empty output folder.")]
FormatOpt = Annotated[str, typer.Option("--format", help="What goes to stdout: table, json, csv or md.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads for torch and BLAS (default: all).")]

FORMATS = ("table", "json", "csv", "md")


@dataclass
class Run:
    """What every command needs besides its own options."""

    command: str
    device: str
    seed: int
    fmt: str
    quiet: bool
    output: OutputDir | None
    info: RunInfo

    def progress(self) -> Any:
        """A rich Progress on stderr (disabled with --quiet)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=self.quiet,
            transient=True,
        )

    def log(self, msg: str) -> None:
        if not self.quiet:
            err.print(msg, highlight=False)

    def finish(self, model: LoadedModel | None = None, **extra: Any) -> None:
        """Write run.json last, so its presence means the run completed."""
        if self.output is None:
            return
        if model is not None:
            self.info.model = model.provenance()
        self.info.extra.update(extra)
        self.info.extra["files"] = list(self.output.written)
        self.output.write_json("run.json", self.info.to_dict())
        self.log(f"[dim]wrote {len(self.output.written)} files to {self.output.path}[/dim]")


def resolve_device(spec: str) -> str:
    import torch

    s = spec.strip().lower()
    if s == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if s == "cpu":
        return "cpu"
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {spec}: CUDA is not available on this machine", hint="use --device cpu or auto")
        if ":" in s:
            idx = s.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise OptionError(
                    f"--device {spec}: no such GPU (this machine has {torch.cuda.device_count()})",
                    hint="use cuda:0 .. cuda:N-1",
                )
        return s
    raise OptionError(f"--device {spec}: unknown device", hint="use auto, cpu, cuda or cuda:N")


def start(
    command: str,
    *,
    device: str = "auto",
    seed: int = 0,
    fmt: str = "table",
    quiet: bool = False,
    output_dir: Path | None = None,
    force: bool = False,
    threads: int | None = None,
    writes: bool = True,
    options: dict[str, Any] | None = None,
) -> Run:
    """Check the shared options at the door and set up the run (nothing is written yet)."""
    from .report import OutputDir, RunInfo, default_output_dir

    if fmt not in FORMATS:
        raise OptionError(f"--format {fmt}: unknown format", hint=f"use one of {', '.join(FORMATS)}")
    if threads is not None:
        if threads < 1:
            raise OptionError(f"--threads {threads}: must be at least 1", hint="e.g. --threads 2")
        import torch

        torch.set_num_threads(threads)
    dev = resolve_device(device)
    output = None
    if writes:
        output = OutputDir(output_dir or default_output_dir(command), force=force).check()
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in (options or {}).items()}
    info = RunInfo(command=command, argv=["netprobe", *sys.argv[1:]], options=opts, device=dev, seed=seed)
    return Run(command, dev, seed, fmt, quiet, output, info)


def load_model(
    model: str | None,
    *,
    weights: str = "default",
    weights_file: Path | None = None,
    arch: str | None = None,
    trust_pickle: bool = False,
    input_shape: str | None = None,
    quiet: bool = False,
) -> LoadedModel:
    from .loading import load

    if not quiet:
        err.print(f"[dim]loading {model or 'the bundled digit net'}…[/dim]", highlight=False)
    return load(
        model, weights=weights, weights_file=weights_file, arch=arch, trust_pickle=trust_pickle, input_shape=input_shape
    )


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
            err.print(f"[bold red]error:[/bold red] {e.one_line()}", highlight=False, markup=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence
            if debug:
                err.print_exception()
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            err.print(
                f"[bold red]internal error:[/bold red] {type(e).__name__}: {msg[:300]}; "
                "this is a bug in netprobe: rerun with --debug and report the traceback",
                highlight=False,
                markup=False,
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
    model: ModelArg = None,
    weights: WeightsOpt = "default",
    weights_file: WeightsFileOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustPickleOpt = False,
    input_shape: InputShapeOpt = None,
    fmt: FormatOpt = "table",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the weight layers (as matrices) and the hidden layers h1..hL that --layer names."""
    from .inspect import inspect
    from .render import layers_table

    run = start("layers", device="cpu", fmt=fmt, quiet=quiet, writes=False)
    lm = load_model(model, weights=weights, weights_file=weights_file, arch=arch, trust_pickle=trust_pickle,
                    input_shape=input_shape, quiet=quiet)
    info = inspect(lm)
    emit(run, info.to_frame(), info.to_dict(), info.to_markdown(), layers_table(info))
    if info.hidden_note and not quiet:
        err.print(f"[yellow]note:[/yellow] {info.hidden_note}", highlight=False)


# ---------------------------------------------------------------------------------------
# netprobe randomness  (section owned by the randomness work; add the command below)

# <<randomness-command>>

# ---------------------------------------------------------------------------------------
# netprobe reconstruct  (section owned by the reconstruct work; add the command below)

# <<reconstruct-command>>

# ---------------------------------------------------------------------------------------
# netprobe shadow-train  (section owned by the shadow-train work; add the command below)

# <<shadow-train-command>>

# ---------------------------------------------------------------------------------------
# netprobe check  (section owned by the check work; add the command below)

# <<check-command>>


def main() -> None:
    try:
        app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        sys.exit(code)


if __name__ == "__main__":
    main()
