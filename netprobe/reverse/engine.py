"""The reverse-net engine: :class:`ReverseNet` runs a model forward under the reverse mode so
that autograd's vector–Jacobian product is the generative net x̃ = r(α·Aᵀh) ⊙ m layer by layer,
and fits α per layer (``theory``: 2/(ρ ν_j) with ν_j by Hutchinson probes; ``calibrated``: an
unbiased generate-then-infer step). docs/science.md §1; docs/design.md, "Reverse engine"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..autodiff import vjp
from ..errors import NothingToAnalyseError, OptionError
from ..netlayers import RectifierCall, RectifierMode, eval_mode
from .control import _Control
from .mode import _ReverseMode
from .rectify import _rectifier_fn, _Rectify, _slope
from .scale import ALPHA_MODES, parse_gen_scale
from .unpool import UNPOOL_MODES


class _Stop(Exception):
    """Raised inside a forward pass once the deepest layer needed has been computed."""


@dataclass
class Forward:
    """One forward pass that generation runs backwards: the input leaf and h_1..h_upto as
    nodes of the generation graph."""

    x: torch.Tensor
    hs: dict[int, torch.Tensor]
    calls: list[RectifierCall]

    def h(self, layer: int) -> torch.Tensor:
        """h_layer's value, detached."""
        return self.hs[layer].detach()


@dataclass(frozen=True)
class LayerFit:
    """What :meth:`ReverseNet.fit` learned about one generated layer j (0 = the input)."""

    index: int
    units: int  # numel of h_j per sample
    reach: (
        int  # units of h_j the consumer reads (after max pooling: one per window), n in the theory
    )
    consumer: int | None  # the first rectifier whose pre-activation h_j feeds directly
    nu: float  # mean squared row norm of the map h_j -> pre-activation of the consumer
    alpha: float


def rademacher(like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """±1 entries shaped like ``like``."""
    return torch.randint(0, 2, like.shape, generator=gen, device=like.device).to(like.dtype) * 2 - 1


class ReverseNet:
    """A model run backwards: generation x̃ from h_ℓ through the transposed layers.

    >>> rn = ReverseNet(model, alpha="theory", keep=1.0, unpool="random", seed=0)
    >>> rn.fit(x, upto=2)                 # α per layer, from the weights (and data for switches)
    >>> fwd = rn.forward(x, upto=2)       # h1, h2 with the generative backward rules in place
    >>> x_gen = rn.generate(fwd, 2, fwd.h(2))

    The model is never changed: it runs in eval mode (restored afterwards) under a
    TorchFunctionMode; its parameters are neither copied nor modified.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        alpha: str | float = "theory",
        keep: float = 1.0,
        unpool: str = "random",
        seed: int = 0,
    ) -> None:
        if isinstance(model, torch.jit.ScriptModule):
            raise NothingToAnalyseError(
                "this TorchScript model runs outside Python, so it cannot be run backwards",
                hint="export it with torch.export (.pt2) or pass a state dict with --arch",
            )
        alpha = parse_gen_scale(alpha)
        if not 0.0 < keep <= 1.0:
            raise OptionError(
                f"--gen-keep {keep:g}: the keep-probability ρ must lie in (0, 1]",
                hint="e.g. --gen-keep 0.5; 1 = no generation dropout",
            )
        if unpool not in UNPOOL_MODES:
            raise OptionError(
                f"--unpool {unpool}: unknown unpooling",
                hint=f"use one of {', '.join(UNPOOL_MODES)}",
            )
        self.model = model
        self.alpha_mode = alpha
        self.keep = float(keep)
        self.unpool = unpool
        self.seed = int(seed)
        self.ctl = _Control(keep=self.keep, unpool=unpool, seed=self.seed)
        if not isinstance(alpha, str):
            self.ctl.alpha_default = float(alpha)
        self.fits: dict[int, LayerFit] = {}
        self.deps: dict[
            int, list[int]
        ] = {}  # rectifier k -> the layers j < k its pre-activation reads directly
        self.fitted_upto = 0

    # -- forward passes ---------------------------------------------------------------

    def _run(
        self, x: torch.Tensor, on: Any, mode_cls: type[RectifierMode] = RectifierMode
    ) -> tuple[Any, RectifierMode]:
        mode = (
            _ReverseMode(self.model, on, self.ctl)
            if mode_cls is _ReverseMode
            else mode_cls(self.model, on)
        )
        out = None
        with eval_mode(self.model):
            try:
                with mode:
                    out = self.model(x)
            except _Stop:
                pass
        return out, mode

    def _check(self, mode: RectifierMode, upto: int, seen: int) -> None:
        if seen < upto:
            raise OptionError(
                f"--layer h{upto}: only {seen} rectifier calls ran on this input",
                hint="see `netprobe layers MODEL` for the hidden layers",
            )
        blocking = [(op, where) for op, where, before in mode.others if before < upto]
        if blocking:
            op, where = blocking[0]
            lowest = min(before for o, w, before in mode.others if before < upto)
            below = (
                f"layers h1..h{lowest} can be reversed"
                if lowest >= 1
                else "no hidden layer lies below it"
            )
            raise NothingToAnalyseError(
                f"h{upto}: the forward pass to it runs through {op} (at {where or '<model>'}), which the reverse net cannot run backwards (it reverses ReLU-family layers only)",
                hint=f"{below}; see `netprobe layers MODEL`",
            )

    def reversible_upto(self, x: torch.Tensor) -> int:
        """The deepest hidden layer whose forward path holds no irreversible op."""
        _, mode = self._run(x[:1], None, _ReverseMode)
        n = len(mode.calls)
        blocking = [before for _op, _w, before in mode.others]
        return min([n, *blocking]) if blocking else n

    def forward(self, x: torch.Tensor, upto: int) -> Forward:
        """Forward ``x`` to h_upto with the generative backward rules at every rectifier."""
        xl = x.detach().requires_grad_(True)
        hs: dict[int, torch.Tensor] = {}
        ctl = self.ctl

        def on(
            call: RectifierCall, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> torch.Tensor:
            ctl.slopes[call.index] = _slope(call, args, kwargs)
            out = _Rectify.apply(args[0], ctl, call.index, _rectifier_fn(func, args, kwargs))
            hs[call.index] = out
            if call.index >= upto:
                raise _Stop
            return out

        with torch.enable_grad():
            _, mode = self._run(xl, on, _ReverseMode)
        self._check(mode, upto, len(hs))
        return Forward(xl, hs, list(mode.calls))

    def train_forward(
        self, net: nn.Module, x: torch.Tensor, upto: int
    ) -> tuple[Any, Forward, bool]:
        """One *training* forward of ``net`` (the model, or a wrapper that calls it) that is also
        the generation graph to h_upto, so SHADOW pays one forward pass instead of two.

        The model runs in whatever mode it is in. Backward follows the generative rules until
        :meth:`training_backward` is called, then the model's true derivatives (the same
        kernels autograd uses for ReLU and max pooling), so the output's loss trains the
        model exactly as a plain forward would (the input's own gradient is not computed: the
        training backward wants the parameters' only). Returns ``(output, Forward, clean)``: ``clean``
        is False when a train-mode op (dropout, batch statistics) ran below h_upto, so h_upto
        differs from the eval-mode h that generation is defined on."""
        xl = x.detach().requires_grad_(True)
        hs: dict[int, torch.Tensor] = {}
        ctl = self.ctl
        ctl.save_for_training, ctl.true_grad = True, False

        def on(
            call: RectifierCall, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> torch.Tensor:
            ctl.slopes[call.index] = _slope(call, args, kwargs)
            fn = _rectifier_fn(func, args, kwargs)
            out = _Rectify.apply(args[0], ctl, call.index, fn, call.op)
            hs[call.index] = out
            return out

        mode = _ReverseMode(self.model, on, ctl)
        with torch.enable_grad(), mode:
            out = net(xl)
        self._check(mode, upto, len(hs))
        clean = not any(before < upto for _op, before in mode.train_ops)
        return out, Forward(xl, hs, list(mode.calls)), clean

    def training_backward(self) -> None:
        """From now on, backward through a :meth:`train_forward` graph is the true gradient."""
        self.ctl.true_grad = True

    def generate(self, fwd: Forward, layer: int, h: torch.Tensor) -> torch.Tensor:
        """x̃ generated from ``h`` (shaped like h_layer) through the transposed layers below it."""
        if layer not in fwd.hs:
            raise OptionError(
                f"h{layer} was not computed by this forward pass", hint="forward to a deeper layer"
            )
        if self.fitted_upto < layer - 1 and self.alpha_mode in ALPHA_MODES:
            raise RuntimeError(
                "ReverseNet.fit() must run before generate() with alpha theory/calibrated"
            )
        top = fwd.hs[layer]
        if not top.requires_grad:
            raise NothingToAnalyseError(
                f"h{layer} does not depend on the input", hint="pick another layer"
            )
        self.ctl.top = layer
        self.ctl.alphas = self.alphas()
        (gx,) = vjp(top, fwd.x, h.to(top.dtype), retain_graph=True, allow_unused=True)
        if gx is None:
            raise NothingToAnalyseError(
                f"h{layer} does not depend on the input", hint="pick another layer"
            )
        a0 = self.ctl.alphas.get(0, self.ctl.alpha_default)
        xg = gx if a0 == 1.0 else gx * a0  # the step into pixels: no ReLU (docs/science.md §1)
        m = self.ctl.mask(xg)
        return (xg if m is None else xg * m).detach()

    def reconstruct(
        self, x: torch.Tensor, layer: int, h: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_layer, x̃): forward ``x`` to the layer and generate from ``h`` (default h_layer)."""
        if layer - 1 > self.fitted_upto or self.fitted_upto == 0:
            self.fit(x, layer)
        fwd = self.forward(x, layer)
        hl = fwd.h(layer)
        return hl, self.generate(fwd, layer, hl if h is None else h)

    # -- α ----------------------------------------------------------------------------

    def alphas(self) -> dict[int, float]:
        """α per generated layer j (0 = input)."""
        return {j: f.alpha for j, f in self.fits.items()}

    def _probe(
        self, x: torch.Tensor, upto: int
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], RectifierMode]:
        """Forward with every rectifier output detached into a leaf: pre-activations z_k and
        leaves h_j (h_0 = x), so that grad(z_k, h_j) is the single-layer Jacobian transpose."""
        leaves: dict[int, torch.Tensor] = {0: x.detach().requires_grad_(True)}
        pres: dict[int, torch.Tensor] = {}

        def on(
            call: RectifierCall, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> torch.Tensor:
            self.ctl.slopes[call.index] = _slope(call, args, kwargs)
            pres[call.index] = args[0]
            out = func(*args, **kwargs).detach().requires_grad_(True)
            leaves[call.index] = out
            if call.index >= upto:
                raise _Stop
            return out

        with torch.enable_grad():
            _, mode = self._run(leaves[0], on, _ReverseMode)
        return pres, leaves, mode

    def preactivation(
        self,
        x: torch.Tensor,
        layer: int,
        replace: int | None = None,
        value: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pre-activation of h_layer on input ``x``, with the output of rectifier ``replace``
        (0 = the input itself) swapped for ``value`` (zeros when None). No gradients."""
        got: dict[str, torch.Tensor] = {}
        if replace == 0:
            x = torch.zeros_like(x) if value is None else value

        def on(
            call: RectifierCall, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> torch.Tensor | None:
            if call.index == layer:
                got["z"] = args[0]
                raise _Stop
            if replace is not None and call.index == replace:
                out = func(*args, **kwargs)
                return torch.zeros_like(out) if value is None else value.to(out.dtype)
            return None

        with torch.no_grad():
            self._run(x, on)
        if "z" not in got:
            raise OptionError(
                f"--layer h{layer}: the model made fewer rectifier calls on this input",
                hint="see `netprobe layers MODEL`",
            )
        return got["z"]

    def fit(self, x: torch.Tensor, upto: int) -> dict[int, LayerFit]:
        """Work out which layer feeds which, ν_j and α_j for every layer below h_upto, on the
        batch ``x`` (the switches and, for ``calibrated``, the activations come from it)."""
        pres, leaves, mode = self._probe(x, upto)
        self._check(mode, upto, len(pres))
        grads = self._probe_transposes(pres, leaves, upto, self.ctl.gen(x.device))
        # layer by layer in order: calibration draws its masks from the same generator
        fits = {j: self._fit_layer(x, j, upto, pres, leaves, grads) for j in range(upto)}
        self.fits.update(fits)
        self.fitted_upto = max(self.fitted_upto, upto)
        return fits

    def _probe_transposes(
        self,
        pres: dict[int, torch.Tensor],
        leaves: dict[int, torch.Tensor],
        upto: int,
        gen: torch.Generator,
    ) -> dict[int, dict[int, torch.Tensor]]:
        """Aᵀv for one Rademacher probe v per pre-activation z_k and every layer h_j it reads
        directly (grads[k][j]); records those dependencies in ``self.deps``. Runs through the
        forward switches: ν is a property of the forward matrix."""
        grads: dict[int, dict[int, torch.Tensor]] = {}
        saved = self.ctl.unpool
        self.ctl.unpool = "switches"
        try:
            for k in range(1, upto + 1):
                z = pres[k]
                self.deps[k] = []
                grads[k] = {}
                if not z.requires_grad:
                    continue
                js = list(range(k))
                v = rademacher(z, gen)
                gs = vjp(z, [leaves[j] for j in js], v, retain_graph=True, allow_unused=True)
                for j, g in zip(js, gs, strict=True):
                    if g is not None and bool(g.detach().abs().sum() > 0):
                        self.deps[k].append(j)
                        grads[k][j] = g.detach()
        finally:
            self.ctl.unpool = saved
        return grads

    def _fit_layer(
        self,
        x: torch.Tensor,
        j: int,
        upto: int,
        pres: dict[int, torch.Tensor],
        leaves: dict[int, torch.Tensor],
        grads: dict[int, dict[int, torch.Tensor]],
    ) -> LayerFit:
        """ν_j and α_j of generated layer j from its consumer's probe (docs/science.md §1)."""
        b = x.shape[0]
        consumer = next((k for k in range(j + 1, upto + 1) if j in self.deps.get(k, [])), None)
        units = int(leaves[j][0].numel())
        reach = units
        nu = float("nan")
        alpha = 1.0
        if consumer is not None:
            m = int(pres[consumer][0].numel())
            gj = grads[consumer][j]
            nu = float((gj.double() ** 2).sum()) / (b * m)  # Hutchinson: E‖Aᵀv‖² = Σ_i ‖A_i‖²
            reach = max(1, round(float((gj != 0).sum()) / b))  # units with a nonzero column in A
            factor = 1.0 if j == 0 else 2.0  # no ReLU into pixels, so no factor 2 (science §1)
            alpha = factor / (self.keep * nu) if nu > 0 else 1.0
            if self.alpha_mode == "calibrated":
                alpha = self._calibrate(x, j, consumer, pres, leaves, alpha)
        elif j > 0 and j < upto:
            self.ctl.notes.add(f"h{j} feeds no later rectifier directly; its α is 1")
        if not isinstance(self.alpha_mode, str):
            alpha = float(self.alpha_mode)
        return LayerFit(j, units, reach, consumer, nu, alpha)

    def _calibrate(
        self,
        x: torch.Tensor,
        j: int,
        k: int,
        pres: dict[int, torch.Tensor],
        leaves: dict[int, torch.Tensor],
        fallback: float,
    ) -> float:
        """α_j making one generate-then-infer step unbiased: Σ‖h_k‖² / Σ⟨A h̃_j(α=1), h_k⟩."""
        hk = leaves[k].detach()
        (s,) = vjp(pres[k], leaves[j], hk, retain_graph=True)
        slope = self.ctl.slopes.get(j, 0.0)
        gen_j = s if j == 0 else (F.leaky_relu(s, slope) if slope else F.relu(s))
        m = self.ctl.mask(gen_j)
        gen_j = (gen_j if m is None else gen_j * m).detach()
        z_gen = self.preactivation(x, k, replace=j, value=gen_j)
        z_zero = self.preactivation(x, k, replace=j, value=None)
        num = float((hk.double() ** 2).sum())
        den = float(((z_gen - z_zero).double() * hk.double()).sum())
        if not (math.isfinite(den) and den > 0 and num > 0):
            self.ctl.notes.add(
                f"h{j}: calibration found no positive round-trip gain; used the theory α"
            )
            return fallback
        return num / den
