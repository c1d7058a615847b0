"""``netprobe propagate``: options -> :func:`netprobe.propagation.propagate` -> table + files."""

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
    InputShapeOpt,
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


@app.command("propagate")
@command
def propagate_cmd(
    ctx: typer.Context,
    model: ModelArg = None,
    layer: Annotated[
        str,
        typer.Option(
            "--layer", "-l", help="Hidden layers: all, or a comma list of h2 / module paths."
        ),
    ] = "all",
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            help="Real inputs: an image, a folder of images, or an .npz (x[, y]) / .npy of images "
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
            "--num", "-n", help="Real inputs (a seeded subset), and as many Gaussian ones."
        ),
    ] = 32,
    mean: Annotated[
        str | None,
        typer.Option("--mean", help="Per-channel mean to normalise with (default: the model's)."),
    ] = None,
    std: Annotated[
        str | None,
        typer.Option("--std", help="Per-channel std to normalise with (default: the model's)."),
    ] = None,
    no_controls: Annotated[
        bool, typer.Option("--no-controls", help="Skip the fresh-initialisation control.")
    ] = False,
    jacobian_inputs: Annotated[
        int,
        typer.Option(
            "--jacobian-inputs",
            help="Inputs per source and arm whose Jacobian spectrum is estimated (0 = none).",
        ),
    ] = 4,
    lanczos_steps: Annotated[
        int,
        typer.Option("--lanczos-steps", help="Lanczos steps per Jacobian (JVP+VJP products each)."),
    ] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Inputs per forward pass.")] = 64,
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
    """Ask whether the whole network propagates inputs like a random ReLU net: active units,
    cosines through depth against the arc-cosine map, and the input-to-h Jacobian's singular
    values, beside the fresh initialisation (docs/science.md §7)."""
    from ..propagation import propagate
    from ..render import propagate_table

    run = start(ctx)
    run.loading(model)
    with run.progress("propagate") as progress:
        report = propagate(
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
            controls=not no_controls,
            jacobian_inputs=jacobian_inputs,
            lanczos_steps=lanczos_steps,
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
    run.emit(report, propagate_table(report))
    run.finish(report)
