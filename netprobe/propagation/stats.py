"""Forward statistics of ``netprobe propagate``: active units and cosines through depth,
with the arc-cosine (mean-field) prediction for a random ReLU net (docs/science.md §7.1–§7.2).

Everything here is computed from one no-grad forward pass per batch
(:func:`netprobe.netlayers.trace_hidden`), accumulated per hidden layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..netlayers import RectifierCall, RectifierMode, eval_mode, trace_hidden

# ---------------------------------------------------------------------------------------
# inputs


def gaussian_pairs(num: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``num`` (even) standard Gaussian inputs in the model's input space, drawn in pairs
    (x, c·x + √(1−c²)·z) with the pair's correlation c spread evenly over [−0.9, 0.9]: every
    input is N(0, I), and the pairs probe the cosine map across cosines, not only near 0
    where independent high-dimensional draws sit. Returns (inputs, target correlations)."""
    g = torch.Generator().manual_seed(seed)
    pairs = num // 2
    c = np.linspace(-0.9, 0.9, pairs) if pairs > 1 else np.zeros(1)
    a = torch.randn((pairs, *shape), generator=g)
    z = torch.randn((pairs, *shape), generator=g)
    ct = torch.tensor(c, dtype=torch.float32).view(-1, *([1] * len(shape)))
    b = ct * a + torch.sqrt(1 - ct**2) * z
    return torch.stack([a, b], dim=1).reshape(2 * pairs, *shape), c


def pair_cosines(v: torch.Tensor) -> np.ndarray:
    """Cosine of each consecutive pair (0, 1), (2, 3), ... of the rows of ``v`` (flattened).
    A pair with a zero vector has cosine NaN (undefined)."""
    f = v.reshape(v.shape[0] // 2, 2, -1).to(torch.float64)
    num = (f[:, 0] * f[:, 1]).sum(1)
    den = f[:, 0].norm(dim=1) * f[:, 1].norm(dim=1)
    out = (num / den).cpu().numpy()
    out[den.cpu().numpy() == 0] = np.nan
    return np.asarray(out)


# ---------------------------------------------------------------------------------------
# the arc-cosine kernel map and its mean-field recursion


def arccos_map(c: Any) -> np.ndarray:
    """Cho & Saul's degree-1 arc-cosine kernel, normalised: the cosine of (relu(u), relu(v))
    for jointly Gaussian (u, v) of correlation c: (√(1−c²) + (π − arccos c)·c)/π."""
    c = np.clip(np.asarray(c, dtype=np.float64), -1.0, 1.0)
    return np.asarray((np.sqrt(1 - c**2) + (math.pi - np.arccos(c)) * c) / math.pi)


@dataclass(frozen=True)
class ChainLayer:
    """The Linear map feeding one rectifier of a plain Linear → ReLU chain."""

    w_var: float  # mean of the squared weight entries (σ_w²)
    b_var: float  # mean of the squared biases (σ_b²; 0 without bias)
    units: int  # m


def predict_cosines(x: torch.Tensor, chain: list[ChainLayer]) -> np.ndarray:
    """(pairs, L) predicted cosines at h1..hL for the consecutive pairs of ``x``: the
    mean-field recursion of a random ReLU net with the chain's widths and per-layer weight
    and bias variances (Poole et al. 2016; Cho & Saul 2009), started from each pair's own
    input lengths and inner product. Without biases it is the arc-cosine map iterated ℓ
    times from the input cosine."""
    f = x.reshape(x.shape[0] // 2, 2, -1).to(torch.float64)
    sx = (f[:, 0] ** 2).sum(1).cpu().numpy()  # ‖x‖²
    sy = (f[:, 1] ** 2).sum(1).cpu().numpy()
    sxy = (f[:, 0] * f[:, 1]).sum(1).cpu().numpy()  # ⟨x, y⟩
    out = np.empty((len(sx), len(chain)))
    for ell, layer in enumerate(chain):
        qx = layer.w_var * sx + layer.b_var  # pre-activation variance per unit
        qy = layer.w_var * sy + layer.b_var
        cxy = layer.w_var * sxy + layer.b_var
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.clip(cxy / np.sqrt(qx * qy), -1.0, 1.0)
        k = arccos_map(rho)  # E[relu(u)relu(v)] / (√(qx qy)/2)
        out[:, ell] = k
        sx, sy = layer.units * qx / 2, layer.units * qy / 2
        sxy = layer.units * np.sqrt(qx * qy) / 2 * k
    return out


def linear_chain(
    model: nn.Module, x: torch.Tensor, upto: int
) -> tuple[list[ChainLayer] | None, str]:
    """The chain x → Linear → ReLU → Linear → ReLU ... up to h{upto} when the model is one,
    checked on ``x`` itself (not guessed from module types): each rectifier's input must be
    the output of exactly one Linear called since the previous rectifier, and that Linear's
    input must be the previous hidden layer (or x) flattened. Returns (chain, "") or
    (None, the reason the arc-cosine prediction does not apply)."""
    events: list[tuple[str, Any]] = []

    def on_linear(m: nn.Module, args: Any, out: torch.Tensor) -> None:
        events.append(("linear", (m, args[0], out)))

    def on_rect(
        call: RectifierCall, func: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> torch.Tensor:
        out = func(*args, **kw)
        events.append(("rect", (call, args[0], out)))
        return out

    handles = [
        m.register_forward_hook(on_linear) for m in model.modules() if isinstance(m, nn.Linear)
    ]
    try:
        with eval_mode(model), torch.no_grad(), RectifierMode(model, on_rect):
            model(x)
    finally:
        for h in handles:
            h.remove()
    chain: list[ChainLayer] = []
    prev = x
    pending: list[Any] = []
    for kind, ev in events:
        if kind == "linear":
            pending.append(ev)
            continue
        call, pre, out = ev
        if call.op != "relu":
            return None, f"h{call.index} is {call.op}, and the arc-cosine map is ReLU's"
        if len(pending) != 1:
            return None, (
                f"h{call.index} is not fed by one Linear layer (convolutions, pooling, "
                "normalisation or skip connections change the map)"
            )
        m, lin_in, lin_out = pending[0]
        same_out = lin_out.shape == pre.shape and torch.equal(lin_out, pre)
        same_in = lin_in.numel() == prev.numel() and torch.equal(
            lin_in.reshape(lin_in.shape[0], -1), prev.reshape(prev.shape[0], -1)
        )
        if not (same_out and same_in):
            return None, (
                f"h{call.index} is not a Linear layer applied to h{call.index - 1} "
                "(something else acts between them)"
            )
        w = m.weight.detach().to(torch.float64)
        b = m.bias.detach().to(torch.float64) if m.bias is not None else None
        chain.append(
            ChainLayer(
                float((w**2).mean()), float((b**2).mean()) if b is not None else 0.0, w.shape[0]
            )
        )
        prev, pending = out, []
        if call.index >= upto:
            break
    return chain, ""


# ---------------------------------------------------------------------------------------
# accumulating one arm's forward statistics


@dataclass
class LayerStats:
    """Per-input and per-unit statistics of one hidden layer over one set of inputs."""

    units: int
    active: list[np.ndarray] = field(default_factory=list)  # per input: k/m
    unit_counts: np.ndarray | None = None  # per unit: how many inputs it was active on
    cosines: list[np.ndarray] = field(default_factory=list)  # per pair
    seen: int = 0

    def add(self, h: torch.Tensor) -> None:
        on = (h.reshape(h.shape[0], -1) > 0).to(torch.float64)
        self.active.append(on.mean(1).cpu().numpy())
        c = on.sum(0).cpu().numpy()
        self.unit_counts = c if self.unit_counts is None else self.unit_counts + c
        self.seen += h.shape[0]
        self.cosines.append(pair_cosines(h))

    def per_input(self) -> np.ndarray:
        return np.concatenate(self.active)

    def per_pair(self) -> np.ndarray:
        return np.concatenate(self.cosines)

    def unit_fraction(self) -> np.ndarray:
        assert self.unit_counts is not None
        return np.asarray(self.unit_counts / max(self.seen, 1))


def forward_stats(
    model: nn.Module, x: torch.Tensor, layers: list[int], batch_size: int
) -> tuple[dict[int, LayerStats], np.ndarray]:
    """One no-grad pass over ``x`` in batches (even-sized, so pairs stay together): the
    :class:`LayerStats` of each hidden layer in ``layers`` and the inputs' pair cosines."""
    top = max(layers)
    bs = max(2, batch_size - batch_size % 2)
    stats: dict[int, LayerStats] = {}
    cos_in = []
    for i in range(0, len(x), bs):
        xb = x[i : i + bs]
        hidden, _, acts = trace_hidden(model, xb, upto=top)
        cos_in.append(pair_cosines(xb))
        for idx in layers:
            h = acts[idx - 1]
            if idx not in stats:
                stats[idx] = LayerStats(units=hidden[idx - 1].size)
            stats[idx].add(h)
    return stats, np.concatenate(cos_in)


# ---------------------------------------------------------------------------------------
# intervals over inputs


def mean_ci(v: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``v`` (NaNs dropped) with its Student-t interval over the values; with fewer
    than two values the interval is (NaN, NaN)."""
    from scipy import stats

    a = np.asarray(v, dtype=np.float64)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    m = float(a.mean())
    if len(a) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))
    return m, m - half, m + half
