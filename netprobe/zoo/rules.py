"""Measuring one model against its :class:`~netprobe.zoo.config.Rules` (runs inside a
worker process): no NaN/Inf, no dead layer, per-layer bounds on the randomness statistics
(``iid.analyse``) and the reversibility rule (``reconstruction.check_error``). See
docs/design.md; the statistics are explained in docs/science.md §4."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .config import Rules
from .results import ERROR, FAIL, PASS, ModelResult, RuleResult, status_of


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _count(n: int, one: str, many: str) -> str:
    """``1 layer varies``, ``3 layers vary``: the count with its noun (and verb) agreeing."""
    return f"{n} {one if n == 1 else many}"


def measure(spec: str, rules: Rules, opts: Mapping[str, Any]) -> ModelResult:
    """Load one model and evaluate every rule. Raises NetprobeError for load failures.
    ``opts``: weights, arch, trust_pickle, device, seed (all optional)."""
    from ..loading import load
    from ..netlayers import weight_layers

    t0 = time.time()
    lm = load(
        spec,
        weights=opts.get("weights", "default"),
        trust_pickle=bool(opts.get("trust_pickle")),
        arch=opts.get("arch"),
        seed=int(opts.get("seed", 0)),
    )
    layers = weight_layers(lm.tensors, lm.module, list(rules.layers), list(rules.exclude))
    out: list[RuleResult] = []
    if "no_nan" not in rules.skip and rules.no_nan:
        out.append(_no_nan(lm.tensors))
    if "no_dead_layer" not in rules.skip and rules.no_dead_layer:
        out.append(_no_dead_layer(layers, lm.tensors))
    if rules.max or rules.min:
        out += _randomness_rules(lm, rules, opts)
    if rules.reconstruct and "reconstruct" not in rules.skip:
        out.append(_reconstruct_rule(lm, rules.reconstruct, opts))
    if rules.propagate and "propagate" not in rules.skip:
        out += _propagate_rules(lm, rules.propagate, opts)
    return ModelResult(
        spec, status_of(out), tuple(out), None, round(time.time() - t0, 3), lm.sha256
    )


def _no_nan(tensors: Mapping[str, Any]) -> RuleResult:
    import torch

    bad = [
        k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    n = len(bad)
    return RuleResult(
        "no_nan",
        FAIL if n else PASS,
        float(n),
        0.0,
        bad[0] if bad else None,
        f"{_count(n, 'tensor holds', 'tensors hold')} NaN/Inf: {', '.join(bad[:5])}"
        if n
        else "all weights finite",
    )


def _no_dead_layer(layers: list[Any], tensors: Mapping[str, Any]) -> RuleResult:
    """A weight matrix that is constant (all zero included) carries no signal. Matrices
    holding NaN/Inf are left to the no_nan rule."""
    import torch

    from ..netlayers import as_matrix

    dead = []
    for wl in layers:
        m = as_matrix(wl, tensors)
        if m.numel() > 1 and bool(torch.isfinite(m).all()) and float(m.float().std()) == 0.0:
            dead.append(wl.name)
    return RuleResult(
        "no_dead_layer",
        FAIL if dead else PASS,
        float(len(dead)),
        0.0,
        dead[0] if dead else None,
        f"constant or all-zero: {', '.join(dead[:5])}"
        if dead
        else _count(len(layers), "layer varies", "layers vary"),
    )


def _bound_rule(frame: Any, stat: str, col: str, thr: float) -> RuleResult:
    """One ``max:COL`` or ``min:COL`` rule over every layer's row: the worst layer's value,
    failing when any layer is beyond ``thr``."""
    name = f"{stat}:{col}"
    if col not in frame.columns:
        known = ", ".join(c for c in frame.columns if frame[c].dtype.kind in "fi")
        return RuleResult(name, ERROR, None, thr, None, f"no statistic '{col}'; known: {known}")
    above = stat == "max"
    worst_val: float | None = None
    worst_layer: str | None = None
    failing: list[str] = []
    for _, row in frame.iterrows():
        v = _finite(row[col])
        if v is None:
            continue
        layer = str(row.get("layer", row.get("name", "?")))
        if v > thr if above else v < thr:
            failing.append(layer)
        if worst_val is None or (v > worst_val if above else v < worst_val):
            worst_val, worst_layer = v, layer
    if failing:
        side = "above" if above else "below"
        msg = f"{_count(len(failing), 'layer', 'layers')} {side} {thr:g}: {', '.join(failing[:5])}"
    else:
        msg = f"worst {worst_val:.4g} at {worst_layer}" if worst_val is not None else "no value"
    return RuleResult(name, FAIL if failing else PASS, worst_val, thr, worst_layer, msg)


def _randomness_rules(lm: Any, rules: Rules, opts: Mapping[str, Any]) -> list[RuleResult]:
    from ..iid import analyse

    report = analyse(
        lm,
        include=list(rules.layers),
        exclude=list(rules.exclude),
        device=opts.get("device", "cpu"),
        seed=int(opts.get("seed", 0)),
    )
    frame = report.to_frame()
    out = [_bound_rule(frame, "max", col, thr) for col, thr in rules.max.items()]
    out += [_bound_rule(frame, "min", col, thr) for col, thr in rules.min.items()]
    return out


def _reconstruct_rule(lm: Any, cfg: Mapping[str, Any], opts: Mapping[str, Any]) -> RuleResult:
    from ..reconstruction import check_error

    thr = float(cfg["max_error"])
    # the reverse net's scale and keep-probability only when the config sets them, so an
    # unset key keeps reconstruct's own default (config keys gen_scale/gen_keep, read from
    # the old names alpha/keep too)
    gen: dict[str, Any] = {}
    if cfg.get("gen_scale") is not None:
        gen["alpha"] = cfg["gen_scale"]
    if cfg.get("gen_keep") is not None:
        gen["keep"] = float(cfg["gen_keep"])
    err = check_error(
        lm,
        layer=str(cfg["layer"]),
        num=int(cfg.get("num", 16)),
        inputs=cfg.get("inputs"),
        seed=int(opts.get("seed", 0)),
        device=opts.get("device", "cpu"),
        **gen,
    )
    return RuleResult(
        "reconstruct",
        FAIL if err > thr else PASS,
        err,
        thr,
        str(cfg["layer"]),
        f"relative error of re-inferred {cfg['layer']}: {err:.3g}",
    )


def _propagate_rules(lm: Any, cfg: Mapping[str, Any], opts: Mapping[str, Any]) -> list[RuleResult]:
    """``propagate:max_dead_frac`` and the other [propagate] bounds: one
    :func:`netprobe.propagation.propagate` run (forward statistics only: no fresh-init
    control, no Jacobian), then each bound over the model's rows of the chosen source, one
    row per hidden layer (docs/science.md §7.1)."""
    from ..propagation import propagate
    from .config import PROPAGATE_BOUNDS

    report = propagate(
        lm,
        layer=str(cfg.get("layer", "all")),
        num=int(cfg.get("num", 32)),
        inputs=cfg.get("inputs"),
        controls=False,
        jacobian_inputs=0,
        seed=int(opts.get("seed", 0)),
        device=opts.get("device", "cpu"),
    )
    frame = report.to_frame()
    src = str(cfg.get("source", "real"))
    frame = frame[(frame["arm"] == "model") & (frame["source"] == src)]
    out = []
    for key, (stat, col) in PROPAGATE_BOUNDS.items():
        if key in cfg:
            r = _bound_rule(frame, stat, col, float(cfg[key]))
            out.append(replace(r, rule=f"propagate:{key}", message=f"{src} inputs: {r.message}"))
    return out
