"""``netprobe randomness``: options -> :func:`netprobe.iid.randomness` -> table + files."""

from __future__ import annotations

from typing import Annotated

import typer

from .app import app
from .common import (
    ArchOpt,
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    FormatOpt,
    ModelArg,
    OutputDirOpt,
    QuietOpt,
    SeedOpt,
    ThreadsOpt,
    TrustPickleOpt,
    WeightsFileOpt,
    WeightsOpt,
    command,
    start,
)


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
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            metavar="OTHER",
            help="Also analyse another checkpoint (a model spec; a weights file when MODEL "
            "comes with --weights-file) and give per-layer differences with 95% intervals "
            "(compare.csv, compare.png).",
        ),
    ] = None,
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
    from ..iid import randomness
    from ..render import randomness_table

    run = start(ctx)
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
            compare=compare,
            figures=figures,
            dpi=dpi,
            device=run.device,
            seed=seed,
            threads=threads,
            progress=progress,
            log=run.log,
            weights=weights,
            weights_file=weights_file,
            arch=arch,
            trust_pickle=trust_pickle,
        )
    if report.figure_files():
        run.log("drawing figures…")
    run.emit(report, randomness_table(report))
    run.finish(report)
