"""``netprobe shadow-train``: options -> :func:`netprobe.shadow.shadow_train` -> table + files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .common import (
    DebugOpt,
    DeviceOpt,
    ForceOpt,
    FormatOpt,
    InputShapeOpt,
    OutputDirOpt,
    QuietOpt,
    ThreadsOpt,
    TrustPickleOpt,
    WeightsOpt,
    command,
    start,
)


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
    from ..render import shadow_table
    from ..shadow import ShadowOptions, launch_rank, shadow_train

    rank = launch_rank()  # under torchrun only rank 0 writes and prints
    run = start(
        ctx,
        quiet=quiet or rank > 0,
        output_dir=output_dir or resume,
        force=force or resume is not None,
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
