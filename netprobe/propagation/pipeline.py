"""``netprobe propagate``: does the whole network propagate inputs like a random ReLU net?

docs/science.md §7. For every hidden layer h_ℓ (the `layers` naming), on Gaussian inputs and
on real inputs (reconstruct's defaults), for the model and the same architecture's seeded
fresh initialisation (:func:`netprobe.seeds.fresh_init`):

- active fractions k/m per input, and per unit (dead, always-on), beside the theorem's error
  scale √(k/(ρn)) (§1, ρ = 1);
- cosines of input pairs through depth, beside the arc-cosine / mean-field prediction where
  the net is a plain Linear → ReLU chain (:mod:`.stats`);
- the input → h_ℓ Jacobian's singular values by Lanczos through autograd (:mod:`.jacobian`).

:func:`propagate` is the one entry point (CLI, API, ``netprobe check``'s propagate rule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import NothingToAnalyseError, OptionError
from ..netlayers import HiddenLayer, hidden_layers, resolve_layer, trace_hidden
from .jacobian import LANCZOS_STEPS, Spectrum, jacobian_spectra
from .report import PropagationReport, build_rows
from .stats import forward_stats, gaussian_pairs, linear_chain, predict_cosines

Log = Callable[[str], None]
Progress = Callable[[int, int, str], None]

# stream coordinates for derive_seed (distinct from reconstruct's arms)
_GAUSS, _FRESH, _LANCZOS = 101, 102, 103
SOURCES = ("gaussian", "real")


def check_options(*, num: int, jacobian_inputs: int, lanczos_steps: int, batch_size: int) -> None:
    """Option values checked before anything is loaded (one line each, exit 2)."""
    if num < 2:
        raise OptionError(f"--num {num}: need at least 2 inputs (one pair)", hint="e.g. --num 32")
    if jacobian_inputs < 0 or jacobian_inputs > num:
        raise OptionError(
            f"--jacobian-inputs {jacobian_inputs}: must lie in 0..--num ({num})",
            hint="e.g. --jacobian-inputs 4; 0 skips the Jacobian",
        )
    if lanczos_steps < 2:
        raise OptionError(
            f"--lanczos-steps {lanczos_steps}: must be at least 2", hint="e.g. --lanczos-steps 20"
        )
    if batch_size < 2:
        raise OptionError(
            f"--batch-size {batch_size}: must be at least 2 (inputs go in pairs)",
            hint="e.g. --batch-size 64",
        )


def select(hidden: list[HiddenLayer], spec: str) -> list[HiddenLayer]:
    """``all`` or a comma list of ``h2`` / module paths (:func:`netlayers.resolve_layer`)."""
    if spec.strip().lower() == "all":
        return hidden
    chosen = [resolve_layer(s, hidden) for s in spec.split(",") if s.strip()]
    if not chosen:
        raise OptionError(f"--layer {spec!r}: no layer given", hint="e.g. --layer h2, --layer all")
    return sorted(set(chosen), key=lambda h: h.index)


def no_rectifier(net: nn.Module, shape: tuple[int, ...]) -> NothingToAnalyseError:
    """The exit-4 error for a net without rectifiers, naming the nonlinearities it has."""
    p = next(net.parameters(), None)
    ex = torch.zeros((1, *shape), device=p.device if p is not None else "cpu")
    _, others, _ = trace_hidden(net, ex)
    seen = sorted({op for op, _, _ in others})
    has = f" (its nonlinearities: {', '.join(seen)})" if seen else ""
    return NothingToAnalyseError(
        f"this model has no rectifier (ReLU, LeakyReLU, ReLU6){has}, so it has no hidden "
        "layers h1..hL whose propagation the random-ReLU-net theory describes",
        hint="`netprobe propagate` needs a ReLU network; `netprobe randomness` works on any weights",
    )


def arms_of(
    lm: Any, net: nn.Module, seed: int, controls: bool
) -> tuple[dict[str, nn.Module], list[str]]:
    """The model and (with ``controls``) its seeded fresh initialisation, prepared alike."""
    from ..reconstruction.engine import prepared_like
    from ..seeds import derive_seed, fresh_init

    arms: dict[str, nn.Module] = {"model": prepared_like(net, net)}
    notes: list[str] = []
    if controls:
        try:
            fresh, how = fresh_init(lm, derive_seed(seed, _FRESH))
            arms["fresh-init"] = prepared_like(fresh, net)
            notes.append(f"fresh-init control: {how}")
        except OptionError as e:
            notes.append(f"fresh-init control left out: {e.one_line()}")
    return arms, notes


def measure_arm(
    net: nn.Module,
    x: torch.Tensor,
    layers: list[HiddenLayer],
    *,
    batch_size: int,
    tick: Callable[[str], None],
) -> dict[str, Any]:
    """One arm on one source: forward statistics and predicted cosines (the Jacobian
    spectra are added by :func:`arm_spectra`, for both sources at once)."""
    idx = [h.index for h in layers]
    stats, cos_in = forward_stats(net, x, idx, batch_size)
    tick("forward")
    chain, why = linear_chain(net, x[:2], max(idx))
    pred = predict_cosines(x, chain) if chain is not None else None
    return {"stats": stats, "cos_in": cos_in, "pred": pred, "why": why, "spectra": {}}


def arm_spectra(
    net: nn.Module,
    xs: dict[str, torch.Tensor],
    layers: list[HiddenLayer],
    *,
    jacobian_inputs: int,
    lanczos_steps: int,
    batch_size: int,
    seed: int,
) -> dict[str, dict[int, list[Spectrum]]]:
    """The Jacobian spectra of one arm, for every source: the first ``jacobian_inputs``
    (even) inputs of each source go through Lanczos together, one block-diagonal batch of
    up to ``batch_size`` inputs, so each Lanczos step is one VJP and one JVP for all of them
    (the sources share the recorded graph and the autograd calls)."""
    idx = [h.index for h in layers]
    take = {}
    for src, x in xs.items():
        n = min(jacobian_inputs, len(x))
        take[src] = n - n % 2 if n > 1 else n
    xj = torch.cat([xs[src][: take[src]] for src in xs])
    merged: dict[int, list[Spectrum]] = {}
    for i in range(0, len(xj), batch_size):
        part = jacobian_spectra(
            net, xj[i : i + batch_size], idx, steps=lanczos_steps, seed=seed + i
        )
        for k, v in part.items():
            merged.setdefault(k, []).extend(v)
    out: dict[str, dict[int, list[Spectrum]]] = {}
    start = 0
    for src in xs:
        out[src] = {k: v[start : start + take[src]] for k, v in merged.items()}
        start += take[src]
    return out


def propagate(
    model: Any = None,
    *,
    layer: str = "all",
    inputs: Any = None,
    dataset: str | None = None,
    data_dir: Any = None,
    download: bool = False,
    split: str = "test",
    num: int = 32,
    mean: str | Sequence[float] | None = None,
    std: str | Sequence[float] | None = None,
    controls: bool = True,
    jacobian_inputs: int = 4,
    lanczos_steps: int = LANCZOS_STEPS,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
    log: Log | None = None,
    **load_kwargs: Any,
) -> PropagationReport:
    """Measure how MODEL propagates Gaussian and real inputs through its hidden layers,
    beside the random-ReLU-net predictions and its fresh initialisation (docs/science.md §7).

    ``model`` is a spec, a LoadedModel or an nn.Module (``load_kwargs``: weights,
    weights_file, arch, trust_pickle, input_shape). Real inputs: ``inputs`` (a file or
    folder), ``dataset`` (a torchvision name), else the bundled photographs for a 3-channel
    model and the bundled digits otherwise; ``num`` of them (a seeded subset), and as many
    Gaussian inputs. ``layer``: ``all`` or a comma list. ``jacobian_inputs`` inputs per source
    and arm get the Jacobian's spectrum by ``lanczos_steps`` Lanczos steps (0 skips it).
    ``controls=False`` skips the fresh initialisation.
    """
    from ..data import prepare
    from ..loading import ensure_loaded
    from ..reconstruction.pipeline import choose_inputs, parse_floats
    from ..runtime import resolve_device
    from ..seeds import derive_seed

    say: Log = log or (lambda _text: None)
    # 1. options, before anything is loaded
    check_options(
        num=num, jacobian_inputs=jacobian_inputs, lanczos_steps=lanczos_steps, batch_size=batch_size
    )
    if inputs is not None and dataset is not None:
        raise OptionError("--inputs and --dataset both given", hint="pass one source of inputs")
    mean_v, std_v = parse_floats(mean, "--mean"), parse_floats(std, "--std")
    dev = resolve_device(device)
    # 2. the model, 3. the inputs (real ones as reconstruct picks them; Gaussian in pairs)
    lm = ensure_loaded(model, seed=seed, **load_kwargs)
    net = lm.require_module("propagate").to(dev)
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
        command="propagate",
    )
    # 4. the layers (a net without rectifiers is refused before its inputs are prepared)
    hidden = hidden_layers(net, tuple(shape))
    if not hidden:
        raise no_rectifier(net, tuple(shape))
    chosen = select(hidden, layer)
    mean_v = mean_v if mean_v is not None else lm.mean
    std_v = std_v if std_v is not None else lm.std
    x_real = prepare(ds, shape, mean_v, std_v, resize=lm.resize)
    if len(x_real) < 2:
        raise OptionError(
            f"{ds.source}: {len(x_real)} input; the cosine needs pairs",
            hint="give 2 or more inputs",
        )
    x_real = x_real[: len(x_real) - len(x_real) % 2].to(dev)
    x_gauss, _ = gaussian_pairs(num - num % 2, tuple(shape), derive_seed(seed, _GAUSS))
    xs = {"gaussian": x_gauss.to(dev), "real": x_real}
    # 5. the arms, each on each source
    arms, notes = arms_of(lm, net, seed, controls)
    total = len(arms) * (len(SOURCES) + 1)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, label)

    say(
        f"propagating {len(x_gauss)} Gaussian and {len(x_real)} real inputs through "
        f"{chosen[0].name}..{chosen[-1].name} on {dev}…"
    )
    measured: dict[tuple[str, str], dict[str, Any]] = {}
    for arm, arm_net in arms.items():
        for src in SOURCES:
            measured[(arm, src)] = measure_arm(
                arm_net, xs[src], chosen, batch_size=batch_size, tick=tick
            )
        if jacobian_inputs > 0:
            spectra = arm_spectra(
                arm_net,
                xs,
                chosen,
                jacobian_inputs=jacobian_inputs,
                lanczos_steps=lanczos_steps,
                batch_size=batch_size,
                seed=derive_seed(seed, _LANCZOS),
            )
            for src in SOURCES:
                measured[(arm, src)]["spectra"] = spectra[src]
        tick("jacobian")
    why = measured[("model", "gaussian")]["why"]
    if why:
        notes.append(
            f"cosine prediction: not made, {why}; the cosines are compared with the fresh "
            "initialisation only (docs/science.md §7.2)"
        )
    below = {
        h.index: (hidden[h.index - 2].size if h.index > 1 else int(np.prod(shape))) for h in chosen
    }
    rows = build_rows(chosen, below, measured, list(arms))
    options = {
        "layer": layer,
        "num": num,
        "input_shape": list(shape),
        "jacobian_inputs": jacobian_inputs,
        "lanczos_steps": lanczos_steps,
        "controls": controls,
        "seed": seed,
    }
    return PropagationReport(
        model=lm.display,
        data=ds.source,
        num=num,
        options=options,
        layers=[
            {"layer": h.name, "where": h.where, "units": h.size, "below": below[h.index]}
            for h in chosen
        ],
        arms=list(arms),
        rows=rows,
        notes=notes,
        provenance=lm.provenance(),
    )
