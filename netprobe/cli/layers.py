"""``netprobe layers``: weight layers and hidden layers h1..hL."""

from __future__ import annotations

import typer

from .app import app
from .common import (
    ArchOpt,
    DebugOpt,
    FormatOpt,
    InputShapeOpt,
    ModelArg,
    QuietOpt,
    SeedOpt,
    TrustPickleOpt,
    WeightsFileOpt,
    WeightsOpt,
    command,
    start,
)


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
    from ..listing import layers
    from ..render import layers_table

    run = start(ctx, device="cpu", writes=False)
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
