"""``netprobe reconstruct``: forward -> reverse -> forward, and how well h_ℓ comes back.

docs/science.md §1–§2.2: run real inputs x forward to hidden layer h_ℓ, generate x̃ downward
through the transposed layers (:class:`~netprobe.reverse.ReverseNet`), run x̃ forward again
and compare h̃ with h. The theory's claim is about h versus h̃ (x̃ is a sample of p(x | h),
not a copy of x): ‖h̃ − h‖² ≤ Õ(k/(ρn)) ‖h‖² for random-like weights and a sparse h, with the
inference threshold b' = −δ‖h‖, δ = √(ln m/(ρn)) (m = units of h_ℓ, n = units of the layer
below it, k = active units of h). Pixel metrics are reported as context only.

Controls in the same run: the same architecture at a fresh random initialisation (the theory's
ideal case), the same weights with entries permuted within each tensor, and a random h with the
same sparsity through the same reverse net (with ``switches`` unpooling, through the same
switches: what the switches alone leak).

:func:`reconstruct` is the one pipeline (``netprobe reconstruct``, ``netprobe.reconstruct``
and ``netprobe check``'s reconstruct rule all call it): validate the options, load the model,
pick and prepare the inputs, select the layers, :func:`~netprobe.reconstruction.engine.run`.
This module is the entry point; the arms run in :mod:`.engine`, the per-sample metrics live in
:mod:`.metrics`, the report in :mod:`.report`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import OptionError
from ..netlayers import HiddenLayer, eval_mode, hidden_layers, resolve_layer
from ..reverse import ReverseNet, parse_gen_scale
from .engine import Progress, check_options, run
from .report import ReconstructionReport

Log = Callable[[str], None]


def parse_floats(text: str | Sequence[float] | None, what: str) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` -> a tuple of floats (``--mean`` / ``--std``); a sequence of
    numbers is taken as it is."""
    if text is not None and not isinstance(text, str):
        vals = tuple(float(v) for v in text)
        if vals and all(math.isfinite(v) for v in vals):
            return vals
        text = ",".join(map(str, vals))
    if text is None or not text.strip():
        return None
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or not all(math.isfinite(v) for v in vals):
        raise OptionError(
            f"{what} {text}: expected numbers separated by commas",
            hint=f"e.g. {what} 0.5 or {what} 0.485,0.456,0.406",
        )
    return vals


# ---------------------------------------------------------------------------------------
# inputs


def pick(ds: Any, num: int, seed: int) -> Any:
    """``num`` examples of a :class:`~netprobe.data.Dataset`: all of them, in order, when it
    holds no more; else a seeded random subset in random order (sources are often sorted by
    class: the first N, or the first images shown, would all be one class)."""
    if num >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    return ds.subset(torch.randperm(len(ds), generator=g)[:num])


def _runs_on(net: nn.Module, x: torch.Tensor) -> bool:
    try:
        with eval_mode(net), torch.no_grad():
            net(x)
    except Exception:  # noqa: BLE001 - any failure means "not this shape"
        return False
    return True


def shape_from_data(net: nn.Module, ds: Any) -> tuple[int, ...]:
    """The input shape of a model that does not record one, from its inputs (issue 14):
    one example's shape (C, H, W) if the model runs on it, else the example flattened (an
    MLP). An OptionError when neither runs."""
    p = next(net.parameters(), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    one = ds.x[:1].to(device=device, dtype=dtype)  # (1, C, H, W)
    for shape in (tuple(ds.shape), (int(np.prod(ds.shape)),)):
        if _runs_on(net, one.reshape(1, *shape)):
            return tuple(int(v) for v in shape)
    raise OptionError(
        f"the model records no input shape and does not run on the inputs' shape "
        f"{'x'.join(map(str, ds.shape))}",
        hint="pass the shape it expects with --input-shape, e.g. --input-shape 3,224,224",
    )


def choose_inputs(
    lm: Any,
    net: nn.Module,
    *,
    inputs: Any,
    dataset: str | None,
    split: str,
    data_dir: Any,
    download: bool,
    num: int,
    seed: int,
    log: Log,
    command: str = "reconstruct",
) -> tuple[Any, tuple[int, ...]]:
    """(the picked Dataset, the model's input shape). Given ``inputs``/``dataset`` are
    used as they are, and give the input shape when the model does not record one. By
    default a 3-channel (ImageNet-shaped) model gets the bundled photographs, any other the
    bundled MNIST digits; ``log`` says which inputs were used and why. ``command`` names the
    calling command in the missing-shape message (reconstruct and propagate share this)."""
    from ..data import bundled_digits, bundled_photos, load_dataset

    shape = lm.input_shape
    given = inputs if inputs is not None else dataset
    if given is not None:
        ds = load_dataset(given, split=split, data_dir=data_dir, download=download)
        if shape is None:
            shape = shape_from_data(net, ds)
            log(
                f"input shape {'x'.join(map(str, shape))}: taken from the inputs "
                "(the model does not record one)"
            )
        ds = pick(ds, num, seed)
        log(f"inputs: {len(ds)} from {ds.source}")
        return ds, tuple(shape)
    if shape is None:
        raise OptionError(
            f"{lm.display}: `netprobe {command}` needs the model's input shape",
            hint="pass it with --input-shape, e.g. --input-shape 3,224,224, or give --inputs "
            "(their shape is used)",
        )
    if len(shape) == 3 and shape[0] == 3:
        ds = pick(bundled_photos(), num, seed)
        log(
            f"inputs: {len(ds)} bundled photographs (3-channel model; pass --inputs or "
            "--dataset for your own)"
        )
    else:
        ds = pick(bundled_digits(split), num, seed)
        log(
            f"inputs: {len(ds)} bundled MNIST digits ({split} split; pass --inputs or "
            "--dataset for your own)"
        )
    return ds, tuple(shape)


def static_batch(net: nn.Module) -> int | None:
    """The batch size a torch.export program was exported with when it is static (the
    first input's leading dimension is a plain number, not a symbol); None otherwise."""
    graph = getattr(net, "graph", None)
    if graph is None:
        return None
    for node in graph.nodes:
        if node.op == "placeholder":
            shape = getattr(node.meta.get("val"), "shape", None)
            if shape is not None and len(shape) and isinstance(shape[0], int):
                return int(shape[0])
            return None
    return None


# ---------------------------------------------------------------------------------------
# layers


def select_layers(
    model: nn.Module, input_shape: Sequence[int], spec: str
) -> tuple[list[HiddenLayer], list[str]]:
    """``h2``, a module path, a comma list of those, or ``all`` (every hidden layer the
    reverse net can reach: those below the first irreversible op). Returns (layers, notes)."""
    hidden = hidden_layers(model, tuple(input_shape))
    notes: list[str] = []
    if spec.strip().lower() == "all":
        if not hidden:
            resolve_layer("h1", hidden)  # raises the no-rectifier error
        p = next(iter(model.parameters()), None)
        ex = torch.zeros((1, *input_shape), device=p.device if p is not None else "cpu")
        reach = ReverseNet(model).reversible_upto(ex)
        if reach < 1:
            ReverseNet(model).forward(ex, 1)  # raises, naming the op
        if reach < len(hidden):
            notes.append(
                f"layers h{reach + 1}..h{len(hidden)} lie above an op the reverse net cannot run backwards; they are left out"
            )
        return hidden[:reach], notes
    chosen = [resolve_layer(s, hidden) for s in spec.split(",") if s.strip()]
    if not chosen:
        raise OptionError(f"--layer {spec!r}: no layer given", hint="e.g. --layer h2, --layer all")
    return sorted(set(chosen), key=lambda h: h.index), notes


# ---------------------------------------------------------------------------------------
# the pipeline


def reconstruct(
    model: Any = None,
    *,
    layer: str = "h2",
    inputs: Any = None,
    dataset: str | None = None,
    data_dir: Any = None,
    download: bool = False,
    split: str = "test",
    num: int = 32,
    mean: str | Sequence[float] | None = None,
    std: str | Sequence[float] | None = None,
    gen_scale: str | float = "theory",
    gen_keep: float = 1.0,
    unpool: str = "random",
    smooth: float = 0.0,
    controls: bool = True,
    fresh_inits: int = 5,
    pixel_metrics: bool = True,
    save_tensors: bool = False,
    show: int = 4,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
    log: Log | None = None,
    **load_kwargs: Any,
) -> ReconstructionReport:
    """Generate x̃ from hidden ``layer`` of MODEL through the transposed layers and measure
    how well the forward pass re-infers h from it, next to controls (docs/science.md §2.2).

    ``model`` is a spec, a LoadedModel or an nn.Module (``load_kwargs``: weights,
    weights_file, arch, trust_pickle, input_shape). Inputs: ``inputs`` (a file or folder),
    ``dataset`` (a torchvision name), else the bundled photographs for a 3-channel model and
    the bundled digits otherwise; ``num`` of them, a seeded subset. ``gen_scale`` is α
    (``theory``, ``calibrated`` or a number), ``gen_keep`` the generation keep-probability ρ.
    ``controls=False`` skips the controls; ``fresh_inits`` is how many independent fresh
    initialisations the fresh-init control draws (the learned-structure question's interval
    comes from their spread: 3 or more; docs/science.md §4.7). ``pixel_metrics=False`` skips
    PSNR and SSIM. ``log(text)`` receives what was chosen and
    why (inputs, input shape, batch size); ``progress(done, total, label)`` the work done.
    """
    from ..data import prepare
    from ..loading import ensure_loaded
    from ..runtime import resolve_device

    say: Log = log or (lambda _text: None)
    # 1. options, before anything is loaded
    check_options(
        smooth=smooth,
        batch_size=batch_size,
        gen_keep=gen_keep,
        unpool=unpool,
        num=num,
        fresh_inits=fresh_inits,
    )
    if inputs is not None and dataset is not None:
        raise OptionError("--inputs and --dataset both given", hint="pass one source of inputs")
    scale = parse_gen_scale(gen_scale)
    mean_v, std_v = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    dev = resolve_device(device)
    # 2. the model, 3. the inputs
    lm = ensure_loaded(model, seed=seed, **load_kwargs)
    net = lm.require_module("reconstruct").to(dev)  # netprobe's own loaded copy
    ds, shape = choose_inputs(
        lm,
        net,
        inputs=inputs,
        dataset=dataset,
        split=split,
        data_dir=data_dir,
        download=download,
        num=num,
        seed=seed,
        log=say,
    )
    mean_v = mean_v if mean_v is not None else lm.mean
    std_v = std_v if std_v is not None else lm.std
    x = prepare(ds, shape, mean_v, std_v, resize=lm.resize).to(dev)  # (N, *input_shape)
    # 4. the batch size the model accepts, 5. the layers
    fixed = static_batch(net)
    if fixed is not None and fixed != 1:  # the layer probe runs one input at a time
        raise OptionError(
            f"this torch.export program only runs on batches of exactly {fixed}",
            hint="re-export it with one example, or with a dynamic batch dimension: "
            "dynamic_shapes=({0: torch.export.Dim('batch')},)",
        )
    hidden, notes = select_layers(net, shape, layer)
    if fixed == 1 and batch_size > 1:
        say("batch size 1: this torch.export program was exported with a static batch of 1")
        notes.append("the exported program accepts one input at a time; run at batch size 1")
        batch_size = 1
    say(f"reconstructing {', '.join(h.name for h in hidden)} from {len(x)} inputs on {dev}…")
    rep = run(
        net,
        x,
        hidden,
        gen_scale=scale,
        gen_keep=gen_keep,
        unpool=unpool,
        smooth=smooth,
        controls=controls,
        fresh_inits=fresh_inits,
        pixel_metrics=pixel_metrics,
        seed=seed,
        batch_size=batch_size,
        mean=mean_v,
        std=std_v,
        model_name=lm.display,
        data_source=ds.source,
        show=show,
        save_tensors=save_tensors,
        notes=notes,
        source=lm,
        progress=progress,
    )
    rep.options.update({"layer": layer, "num": num, "input_shape": list(shape)})
    return dataclasses.replace(rep, provenance=lm.provenance())


def check_error(
    lm: Any,
    *,
    layer: str = "h2",
    num: int = 16,
    inputs: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    alpha: str | float = "theory",
    keep: float = 1.0,
    unpool: str = "random",
) -> float:
    """One number for ``netprobe check``: the mean relative error of the re-inferred layer
    after the best scalar rescale (``rel_err_scaled``), no controls; with several layers
    (``all`` or a comma list) the worst layer's. ``lm`` is a
    :class:`~netprobe.loading.LoadedModel`; ``alpha``/``keep`` are the generation scale and
    keep-probability (check's rule keys). Runs :func:`reconstruct`."""
    rep = reconstruct(
        lm,
        layer=layer,
        num=num,
        inputs=inputs,
        seed=seed,
        device=device,
        gen_scale=alpha,
        gen_keep=keep,
        unpool=unpool,
        controls=False,
        pixel_metrics=False,
        show=0,
    )
    errs = [r["rel_err_scaled"] for r in rep.summary_rows() if r["arm"] == "model"]
    errs = [e for e in errs if e == e]  # NaN left out, as pandas' max does
    return float(max(errs)) if errs else math.nan
