"""What every ``netprobe`` command shares: the two rich Consoles (results to stdout, progress
and errors to stderr), the options every command takes, :class:`Run` (device, seed, output
folder, run.json) and :func:`command`, which maps every :class:`~netprobe.errors.NetprobeError`
to one red line and its exit code (docs/design.md, "Errors and exit codes").
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

from ..errors import NetprobeError, OptionError

if TYPE_CHECKING:
    from ..report import OutputDir, Report, RunInfo

out = Console(soft_wrap=True)  # results (stdout)
err = Console(stderr=True, soft_wrap=True)  # progress, logs, errors (stderr)

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

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
    int | None,
    typer.Option(
        "--threads",
        help="CPU threads for torch and BLAS (default: the free cores, at most 4; "
        "run.json records the count).",
    ),
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
    threads_line: str = ""  # said once the run has worked: an error stays one line

    @contextmanager
    def progress(self, what: str) -> Iterator[Callable[[int, int, str], None]]:
        """A progress bar on stderr (off with --quiet), as the ``progress(done, total,
        label)`` callback every long library call takes: steps done of all, the time left
        (ETA), and the bytes read when the label carries them
        (:class:`netprobe.iid.ProgressLabel`: a streamed checkpoint's tensors)."""
        from rich.filesize import decimal
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[read]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            disable=self.quiet,
            transient=True,
        )
        with bar:
            task = bar.add_task(escape(what), total=None, read="")

            def update(done: int, total: int, label: str = "") -> None:
                # structured bytes (ProgressLabel attributes), never parsed from the text
                got, of = getattr(label, "bytes_done", None), getattr(label, "bytes_total", None)
                read = f"{decimal(got)} of {decimal(of)} read" if got is not None and of else ""
                bar.update(
                    task,
                    completed=done,
                    total=total,
                    description=escape(str(label) or what),
                    read=read,
                )

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
        from ..report import frame_to_csv, to_json

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
        if self.threads_line:
            self.log(self.threads_line)
        self.log(f"wrote {len(self.output.written)} files to {self.output.path}")


def start(ctx: typer.Context, *, writes: bool = True, **overrides: Any) -> Run:
    """Check the shared options at the door and set up the run (nothing is written yet).

    The shared options (``--device``, ``--seed``, ``--format``, ``--quiet``,
    ``--output-dir``, ``--force``, ``--threads``) and the command's own options are read
    once, from the click context; ``overrides`` replace a shared option where a command
    needs to (``layers`` runs on the CPU; under torchrun only rank 0 prints)."""
    from ..report import OutputDir, RunInfo, default_output_dir
    from ..runtime import apply_threads, choose_threads, resolve_device

    p = {**ctx.params, **overrides}
    command = ctx.info_name or "netprobe"
    fmt = p.get("fmt", "table")
    if fmt not in FORMATS:
        raise OptionError(
            f"--format {fmt}: unknown format", hint=f"use one of {', '.join(FORMATS)}"
        )
    chosen = choose_threads(p.get("threads"))
    apply_threads(chosen.threads)
    dev = resolve_device(p.get("device", "auto"))
    output = None
    if writes:
        where = p.get("output_dir") or default_output_dir(command)
        output = OutputDir(Path(where), force=bool(p.get("force"))).check()
    opts = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in ctx.params.items()
        if k not in _NOT_RECORDED
    }
    seed = int(p.get("seed", 0))
    info = RunInfo(
        command=command, argv=["netprobe", *sys.argv[1:]], options=opts, device=dev, seed=seed
    )
    run = Run(command, dev, seed, fmt, bool(p.get("quiet")), output, info)
    info.extra["threads"] = chosen.to_dict()
    run.threads_line = f"CPU threads: {chosen.threads} ({chosen.how})"
    return run


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
