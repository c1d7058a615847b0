"""``netprobe check``: options -> :func:`netprobe.zoo.check` -> table + JUnit/JSON/Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .common import (
    ArchOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    FormatOpt,
    QuietOpt,
    SeedOpt,
    TrustPickleOpt,
    WeightsOpt,
    command,
    start,
)


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
    from ..render import check_table
    from ..zoo import check, init_config

    # --threads is per worker: the parent process computes nothing
    run = start(ctx, writes=False)
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
