"""``netprobe reconstruct``: options -> :func:`netprobe.reconstruction.reconstruct` -> table + files."""

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
    fresh_inits: Annotated[
        int,
        typer.Option(
            "--fresh-inits",
            help="Independent fresh initialisations for the fresh-init control; the "
            "learned-structure question needs 3 or more.",
        ),
    ] = 5,
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
    from ..reconstruction import reconstruct
    from ..render import reconstruct_table

    run = start(ctx)
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
            fresh_inits=fresh_inits,
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
