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
from .errors import EXIT_USAGE, NetprobeError, NothingToAnalyseError, OptionError

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

@app.command("check")
@command
def check_cmd(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="Model files, globs, folders (searched recursively), torchvision names, @list.txt.",
                       show_default=False),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Rules file (default: [tool.netprobe.check] in ./pyproject.toml).")] = None,
    init: Annotated[bool, typer.Option("--init", help="Write a commented starter config (netprobe.toml, or --config PATH) and exit.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Models checked at once, each in its own process.")] = 1,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per model before it is stopped (default: config, 600).")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="JSON lines of an earlier run (--json): flag drift beyond tolerances.")] = None,
    shard_: Annotated[str | None, typer.Option("--shard", help="K/N: check only the K-th of N deterministic shards.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one testcase per model and rule).")] = None,
    json_: Annotated[Path | None, typer.Option("--json", help="Write JSON lines (one per model).")] = None,
    markdown_: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary (for a pull-request comment).")] = None,
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

    from . import check as chk
    from .report import atomic_write_text
    from .render import check_table

    if init:
        dest = config or Path("netprobe.toml")
        if dest.exists() and not force:
            raise OptionError(f"{dest}: exists", hint="pass --force to overwrite it, or --config OTHER.toml")
        atomic_write_text(dest, chk.STARTER_CONFIG)
        err.print(f"wrote {dest}; use it with --config {dest}, or copy its table into pyproject.toml", highlight=False)
        return
    if not targets:
        raise OptionError("no models to check", hint="pass files, folders, globs, names or @list.txt (see --help)")
    if jobs < 1:
        raise OptionError(f"--jobs {jobs}: must be at least 1", hint="e.g. --jobs 2")
    if timeout is not None and timeout <= 0:
        raise OptionError(f"--timeout {timeout:g}: must be positive", hint="seconds, e.g. --timeout 600")
    run = start("check", device=device, seed=seed, fmt=fmt, quiet=quiet, writes=False)
    cfg = chk.load_config(config)
    which = chk.parse_shard(shard_)
    prev = chk.read_results(baseline) if baseline else None
    for dest in (junit, json_, markdown_):
        if dest is not None and dest.is_dir():
            raise OptionError(f"{dest}: is a folder", hint="give a file path")
    todo = chk.shard(chk.expand_targets(targets), which)
    if not todo:
        raise NothingToAnalyseError("no models to check after expanding the targets" + (f" and taking shard {shard_}" if which else ""),
                                    hint="check the paths and globs")
    run.log(f"[dim]checking {len(todo)} models with {jobs} workers; rules from {cfg.source}[/dim]")
    opts = {"weights": weights, "arch": arch, "trust_pickle": trust_pickle, "device": run.device, "seed": seed,
            "threads": threads}
    t0 = time.time()
    with run.progress() as bar:
        task = bar.add_task("check", total=len(todo))
        results = chk.run_checks(todo, cfg, jobs=jobs, timeout=timeout, opts=opts,
                                 on_done=lambda r: bar.update(task, advance=1, description=f"{r.status} {Path(r.model).name}"))
    if prev is not None:
        results = chk.compare_baseline(results, prev, cfg)
    seconds = time.time() - t0
    if junit:
        atomic_write_text(junit, chk.junit_xml(results, seconds))
    if json_:
        atomic_write_text(json_, chk.json_lines(results))
    if markdown_:
        atomic_write_text(markdown_, chk.markdown(results))
    rows = [{"model": r.model, "rule": x.rule, "status": x.status, "value": x.value, "threshold": x.threshold,
             "layer": x.layer, "message": x.message} for r in results for x in r.rules]
    import pandas as pd

    emit(run, pd.DataFrame(rows), [r.to_dict() for r in results], chk.markdown(results), check_table(results))
    code = chk.exit_code(results)
    n = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "error")}
    run.log(f"{len(results)} models: {n['pass']} passed, {n['fail']} failed, {n['error']} errors in {seconds:.1f} s")
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
