"""The reverse (generative) net: a ReLU network run backwards through its transposed weights.

docs/science.md §1: for a layer h = r(A x + b) the generative model is

    x̃ = r(α · Aᵀ h) ⊙ m,   m ~ Bernoulli(ρ),   α = 2 / (ρ · mean_i ‖A_i‖²),

applied layer by layer from h_ℓ down to the input, with no ReLU (and so no factor 2) at the
step into pixels, and biases unused.

How (docs/design.md, "Reverse engine"): the transpose of a net's linear part is its vector–Jacobian
product. :class:`ReverseNet` runs the model forward under a :class:`~netprobe.netlayers.RectifierMode`
that puts a custom autograd Function at every rectifier call; that Function's *backward* is the
generative rule "r(α · reverse signal) ⊙ m" instead of the ReLU derivative. Then

    x̃ = α₀ · autograd.grad(h_ℓ, x, grad_outputs=h) ⊙ m₀

is the generative net through every op autograd knows: conv (exact output sizes: AlexNet's
conv1 maps 224 -> 55 -> 224), linear, eval BatchNorm (times γ/√(σ²+ε)), average pooling,
residual additions. Max-pool backward is replaced too, by the chosen unpooling rule
(``random`` position in each window, the forward ``switches``, or ``copy`` to every position;
overlapping windows sum, as autograd does). Nothing in the model changes: calls are intercepted
by a TorchFunctionMode, in-place rectifiers run out of place, hooks and eval flags are restored.

α per generated layer j (the layer the signal arrives at; j = 0 is the input):

* ``theory``: 2/(ρ ν_j) (1/(ρ ν_0) into pixels), where ν_j = mean_i ‖A_i‖² is the mean squared
  row norm of the forward map from h_j to the pre-activation of the first rectifier it feeds
  (its "consumer"). It is estimated as E‖Aᵀv‖²/m with Rademacher probes v (Hutchinson), which
  needs only VJPs, so any op between two rectifiers (pooling, BN, a flatten) is covered.
* ``calibrated``: the α that makes one generate-then-infer step unbiased on the inputs:
  Σ‖h_k‖² / Σ⟨A h̃_j(α=1), h_k⟩ over the batch, where h_k is the consumer's real activation,
  h̃_j(1) the generated layer at α = 1 and A h̃ the consumer's pre-activation on h̃ minus its
  pre-activation with h_j set to zero (the bias and any skip input).
* a number: that α at every layer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NothingToAnalyseError, OptionError
from .netlayers import RectifierCall, RectifierMode, eval_mode

UNPOOL_MODES = ("random", "switches", "copy")
ALPHA_MODES = ("theory", "calibrated")

_aten = torch.ops.aten
#: max-pool entry points the reverse mode intercepts -> returns (out, indices)?
_MAXPOOL: dict[Any, bool] = {
    F.max_pool2d: False,  # returns a tuple when return_indices=True (handled below)
    F.max_pool2d_with_indices: True,
    torch.max_pool2d: False,
    _aten.max_pool2d.default: False,
    _aten.max_pool2d_with_indices.default: True,
}
#: nonlinear ops (beyond layers.OTHER_NONLINEARITIES) the reverse net cannot run backwards
_NOT_REVERSIBLE: dict[Any, str] = {
    F.softmax: "softmax",
    F.log_softmax: "log_softmax",
    torch.softmax: "softmax",
    torch.Tensor.softmax: "softmax",
    F.scaled_dot_product_attention: "attention",
    F.multi_head_attention_forward: "attention",
    F.layer_norm: "layer_norm",
    F.group_norm: "group_norm",
    F.local_response_norm: "local_response_norm",
    F.gelu: "gelu",
    _aten.gelu.default: "gelu",
    _aten.silu.default: "silu",
    _aten.sigmoid.default: "sigmoid",
    _aten.tanh.default: "tanh",
    _aten._softmax.default: "softmax",
    _aten.native_layer_norm.default: "layer_norm",
    _aten.layer_norm.default: "layer_norm",
}


class _Stop(Exception):
    """Raised inside a forward pass once the deepest layer needed has been computed."""


@dataclass
class _Control:
    """Mutable state the custom backward rules read when autograd calls them."""

    keep: float
    unpool: str
    seed: int
    top: int = 0  # generation starts at h_top: its rectifier passes the given h through
    alphas: dict[int, float] = field(default_factory=dict)  # generated layer j -> α
    alpha_default: float = 1.0  # α for layers not in ``alphas`` (a fixed --gen-scale NUMBER)
    slopes: dict[int, float] = field(default_factory=dict)  # rectifier j -> negative slope
    notes: set[str] = field(default_factory=set)
    # one pass for generation and training (ReverseNet.train_forward): the forward saves what
    # the true derivatives need, and once ``true_grad`` is set backward computes them instead
    save_for_training: bool = False
    true_grad: bool = False
    _gens: dict[str, torch.Generator] = field(default_factory=dict)

    def gen(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gens[key]

    def mask(self, like: torch.Tensor) -> torch.Tensor | None:
        """Bernoulli(ρ) generation-dropout mask shaped like ``like`` (None when ρ = 1)."""
        if self.keep >= 1.0:
            return None
        u = torch.rand(like.shape, generator=self.gen(like.device), device=like.device)
        return (u < self.keep).to(like.dtype)


class _Rectify(torch.autograd.Function):
    """Forward: the model's own rectifier. Backward: the generative rule r(α·g) ⊙ m
    (docs/science.md §1), or the identity at the layer generation starts from; with
    ``ctl.true_grad`` the rectifier's true derivative (a training backward)."""

    @staticmethod
    def forward(
        ctx: Any,
        pre: torch.Tensor,
        ctl: _Control,
        index: int,
        fn: Callable[[torch.Tensor], torch.Tensor],
        op: str = "",
    ) -> torch.Tensor:
        ctx.ctl, ctx.index, ctx.fn, ctx.op = ctl, index, fn, op
        out = fn(pre)
        if ctl.save_for_training:
            ctx.save_for_backward(pre, out)
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        ctl: _Control = ctx.ctl
        j = ctx.index
        if ctl.true_grad:
            pre, out = ctx.saved_tensors
            if ctx.op == "relu":  # what autograd itself computes for relu
                return _aten.threshold_backward(g, out, 0), None, None, None, None
            with torch.enable_grad():
                p = pre.detach().requires_grad_(True)
                (gi,) = torch.autograd.grad(ctx.fn(p), p, g)
            return gi, None, None, None, None
        if j >= ctl.top:  # the given h enters here unchanged
            return g, None, None, None, None
        a = ctl.alphas.get(j, ctl.alpha_default)
        s = g if a == 1.0 else g * a
        slope = ctl.slopes.get(j, 0.0)
        s = F.leaky_relu(s, slope) if slope else F.relu(s)
        m = ctl.mask(s)
        return (s if m is None else s * m), None, None, None, None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) else (0, 0)
    return int(v), int(v)


@dataclass(frozen=True)
class _PoolGeom:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool


def _pool_args(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[torch.Tensor, _PoolGeom, bool]:
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    vals: dict[str, Any] = dict(zip(names, args[1:], strict=False))
    vals.update({k: v for k, v in kwargs.items() if k in names})
    k = _pair(vals["kernel_size"])
    st = vals.get("stride")
    s = k if st is None or (isinstance(st, (list, tuple)) and len(st) == 0) else _pair(st)
    geom = _PoolGeom(
        k,
        s,
        _pair(vals.get("padding", 0)),
        _pair(vals.get("dilation", 1)),
        bool(vals.get("ceil_mode", False)),
    )
    return args[0], geom, bool(vals.get("return_indices", False))


def unpool_switches(g: torch.Tensor, indices: torch.Tensor, in_hw: tuple[int, int]) -> torch.Tensor:
    """Max-pool transpose through the forward argmax "switches" (Zeiler & Fergus); repeated
    indices from overlapping windows are summed, as autograd does (``max_unpool2d``
    overwrites them instead)."""
    b, c = g.shape[:2]
    out = g.new_zeros(b, c, in_hw[0] * in_hw[1])
    out.scatter_add_(2, indices.reshape(b, c, -1), g.reshape(b, c, -1))  # (B,C,Ho*Wo) -> (B,C,H*W)
    return out.view(b, c, *in_hw)


def _valid_taps(
    n_in: int, n_out: int, k: int, s: int, p: int, d: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window along one axis: input coordinate of its first tap inside the input and
    how many of its k taps lie inside (padding and ceil_mode windows hang over the edges)."""
    start = torch.arange(n_out, device=device) * s - p  # (n_out,) first tap, may be in padding
    lo = ((-start).clamp(min=0) + d - 1) // d  # first tap index inside the input
    hi = ((n_in - 1 - start) // d).clamp(max=k - 1)  # last tap index inside the input
    return start + lo * d, hi - lo + 1


def _window_table(
    in_hw: tuple[int, int], out_hw: tuple[int, int], geom: _PoolGeom, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ho*Wo, kh*kw) flat input positions of every valid tap of every window (row-major,
    unused slots repeat the first tap) and the (Ho*Wo,) number of valid taps."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geom.kernel, geom.stride, geom.padding, geom.dilation
    r0, nr = _valid_taps(in_hw[0], out_hw[0], kh, sh, ph, dh, device)  # (Ho,)
    c0, nc = _valid_taps(in_hw[1], out_hw[1], kw, sw, pw, dw, device)  # (Wo,)
    t = torch.arange(kh * kw, device=device)  # tap slot
    nr_, nc_ = nr.view(-1, 1, 1), nc.view(1, -1, 1)
    slot = t.view(1, 1, -1) % (nr_ * nc_)  # wrap unused slots onto valid taps
    rows = r0.view(-1, 1, 1) + (slot // nc_) * dh  # (Ho,Wo,kk)
    cols = c0.view(1, -1, 1) + (slot % nc_) * dw  # (Ho,Wo,kk)
    table = (rows * in_hw[1] + cols).reshape(-1, kh * kw)  # (Ho*Wo, kk)
    return table, (nr_ * nc_).reshape(-1)


@functools.lru_cache(maxsize=64)
def _random_unpool_plan(
    in_hw: tuple[int, int], out_hw: tuple[int, int], geom: _PoolGeom, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """What random unpooling needs per geometry, computed once: the window table, the valid
    tap counts, each window's offset into the flattened table and whether all windows are
    full (no tap in the padding)."""
    dev = torch.device(device)
    table, count = _window_table(in_hw, out_hw, geom, dev)
    kk = table.shape[1]
    first = torch.arange(out_hw[0] * out_hw[1], device=dev) * kk  # (Ho*Wo,)
    return table, count, first, bool((count == kk).all())


def unpool_random(
    g: torch.Tensor, in_hw: tuple[int, int], geom: _PoolGeom, gen: torch.Generator
) -> torch.Tensor:
    """Max-pool transpose with a uniformly random position in each window, drawn
    independently per window (docs/science.md §2.2: fits the theory's random sparse support).
    Overlapping windows sum; taps in the padding are never chosen."""
    b, c, ho, wo = g.shape
    h, w = in_hw
    table, count, first, full = _random_unpool_plan(in_hw, (ho, wo), geom, str(g.device))
    kk = table.shape[1]
    if full:  # every window lies inside the input: one draw in [0, kk)
        tap = torch.randint(0, kk, (b * c, ho * wo), generator=gen, device=g.device)
    else:  # modulo bias is below 2^-40 for counts up to kk
        tap = torch.randint(0, 2**48, (b * c, ho * wo), generator=gen, device=g.device) % count
    flat = torch.take(table, tap.add_(first))  # (BC, Ho*Wo) positions in H*W
    out = g.new_zeros(b * c, h * w)
    out.scatter_add_(1, flat, g.reshape(b * c, -1))
    return out.view(b, c, h, w)


def unpool_copy(g: torch.Tensor, in_hw: tuple[int, int], geom: _PoolGeom) -> torch.Tensor:
    """Max-pool "transpose" that copies each pooled value to every position of its window
    (the transpose of sum pooling); overlapping windows sum, padding is dropped."""
    b, c, ho, wo = g.shape
    h, w = in_hw
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geom.kernel, geom.stride, geom.padding, geom.dilation
    cols = (
        g.reshape(b, c, 1, ho * wo).expand(b, c, kh * kw, ho * wo).reshape(b, c * kh * kw, ho * wo)
    )
    hp, wp = (
        (ho - 1) * sh + dh * (kh - 1) + 1,
        (wo - 1) * sw + dw * (kw - 1) + 1,
    )  # padded extent covered
    y = F.fold(cols, (hp, wp), (kh, kw), dilation=(dh, dw), stride=(sh, sw))  # (B,C,hp,wp)
    full = g.new_zeros(b, c, max(hp, ph + h), max(wp, pw + w))
    full[:, :, :hp, :wp] = y
    return full[:, :, ph : ph + h, pw : pw + w].contiguous()  # crop the padding -> (B,C,H,W)


class _MaxPool(torch.autograd.Function):
    """Forward: max pooling. Backward: the unpooling rule the control says."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, ctl: _Control, geom: _PoolGeom
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, idx = F.max_pool2d(
            x,
            geom.kernel,
            geom.stride,
            geom.padding,
            geom.dilation,
            geom.ceil_mode,
            return_indices=True,
        )
        if ctl.save_for_training:
            ctx.save_for_backward(idx, x)
        else:
            ctx.save_for_backward(idx)
        ctx.ctl, ctx.geom, ctx.in_hw = ctl, geom, (int(x.shape[-2]), int(x.shape[-1]))
        ctx.mark_non_differentiable(idx)
        return out, idx

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor, _gi: Any) -> tuple[torch.Tensor, None, None]:
        idx = ctx.saved_tensors[0]
        if ctx.ctl.true_grad:  # the true gradient, as autograd computes it for max pooling
            geom = ctx.geom
            x = ctx.saved_tensors[1]
            gx = _aten.max_pool2d_with_indices_backward(
                g, x, geom.kernel, geom.stride, geom.padding, geom.dilation, geom.ceil_mode, idx
            )
            return gx, None, None
        mode = ctx.ctl.unpool
        if mode == "random":
            return unpool_random(g, ctx.in_hw, ctx.geom, ctx.ctl.gen(g.device)), None, None
        if mode == "copy":
            return unpool_copy(g, ctx.in_hw, ctx.geom), None, None
        return unpool_switches(g, idx, ctx.in_hw), None, None


def _narrow_conv(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """(x, weight, bias, stride, padding, dilation) of a conv2d call whose transpose is cheaper as
    a matrix product and a fold: plain (groups 1, numeric padding) and narrow (C_in·kh·kw <=
    C_out, e.g. a first layer on greyscale or RGB pixels); None for any other call."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    vals: dict[str, Any] = dict(zip(names, args, strict=False))
    vals.update({k: v for k, v in kwargs.items() if k in names})
    x, w = vals.get("input"), vals.get("weight")
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)):
        return None
    if x.ndim != 4 or w.ndim != 4 or not x.requires_grad or int(vals.get("groups", 1)) != 1:
        return None
    padding = vals.get("padding", 0)
    if isinstance(padding, str) or w.shape[1] * w.shape[2] * w.shape[3] > w.shape[0]:
        return None
    stride, dilation = _pair(vals.get("stride", 1)), _pair(vals.get("dilation", 1))
    return x, w, vals.get("bias"), stride, _pair(padding), dilation


class _NarrowConv(torch.autograd.Function):
    """conv2d whose generation backward (the input VJP only) is Wᵀ·g as one matrix product
    folded back onto the input grid: several times faster on CPU than the convolution's own
    backward-data kernel when the input has few channels. With ``ctl.true_grad`` backward is
    autograd's own ``convolution_backward``, so training through it is unchanged."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        ctl: _Control,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias, ctx.ctl = b is not None, ctl
        # a train_forward's input leaf: the training backward never wants its gradient
        ctx.skip_x = x.is_leaf and ctl.save_for_training
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, w, b, stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        x, w = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        if ctx.ctl.true_grad:
            need = ctx.needs_input_grad
            gx, gw, gb = _aten.convolution_backward(
                g,
                x,
                w,
                [w.shape[0]] if ctx.has_bias else None,
                list(stride),
                list(padding),
                list(dilation),
                False,
                [0, 0],
                1,
                [need[0] and not ctx.skip_x, need[1], need[2] and ctx.has_bias],
            )
            return gx, gw, gb, None, None, None, None
        n, c_out, ho, wo = g.shape
        wt = w.reshape(c_out, -1).t().unsqueeze(0).expand(n, -1, -1)  # (N, C_in·kh·kw, C_out)
        # a batched product keeps g in place (a plain matmul would copy g transposed)
        cols = torch.bmm(wt, g.reshape(n, c_out, ho * wo).contiguous())  # (N, C_in·kh·kw, Ho·Wo)
        gx = F.fold(cols, tuple(x.shape[-2:]), tuple(w.shape[-2:]), dilation, padding, stride)
        return gx, None, None, None, None, None, None


#: ops whose train-mode output differs from eval mode -> (position of `training`, its default)
_TRAIN_DEPENDENT: dict[Any, tuple[int, bool]] = {
    F.dropout: (2, True),
    F.dropout1d: (2, True),
    F.dropout2d: (2, True),
    F.dropout3d: (2, True),
    F.alpha_dropout: (2, False),
    F.feature_alpha_dropout: (2, False),
    F.batch_norm: (5, False),
}


def _train_dependent(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether this call of a dropout / batch-norm function behaves differently from eval."""
    pos, default = _TRAIN_DEPENDENT[func]
    training = kwargs.get("training", args[pos] if len(args) > pos else default)
    if not training:
        return False
    if func is F.batch_norm:
        return True
    p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
    return float(p) > 0.0


class _ReverseMode(RectifierMode):
    """RectifierMode that also routes max pooling through :class:`_MaxPool` and records the
    nonlinear ops the reverse net cannot invert (attention, softmax, layer norm, ...)."""

    def __init__(self, module: nn.Module | None, on_rectifier: Any, ctl: _Control) -> None:
        super().__init__(module, on_rectifier)
        self._ctl = ctl
        # (op, rectifier calls before it) for ops whose output differs between train and eval
        self.train_ops: list[tuple[str, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func in _MAXPOOL and args and isinstance(args[0], torch.Tensor):
            x, geom, want_idx = _pool_args(args, kwargs)
            if x.ndim == 4 and x.requires_grad:
                out, idx = _MaxPool.apply(x, self._ctl, geom)
                return (out, idx) if (_MAXPOOL[func] or want_idx) else out
        elif func is torch.conv2d:
            conv = _narrow_conv(args, kwargs)
            if conv is not None:
                return _NarrowConv.apply(*conv, self._ctl)
        elif func in _NOT_REVERSIBLE:
            where, _ = self._where()
            self.others.append((_NOT_REVERSIBLE[func], where, len(self.calls)))
        elif func in _TRAIN_DEPENDENT and _train_dependent(func, args, kwargs):
            self.train_ops.append((func.__name__, len(self.calls)))
        elif "max_pool" in getattr(func, "__name__", "") and self._ctl.unpool != "switches":
            self._ctl.notes.add(
                f"{func.__name__} is reversed through its switches (only 2-D max pooling has other unpooling rules)"
            )
        return super().__torch_function__(func, types, args, kwargs)


def _rectifier_fn(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[torch.Tensor], torch.Tensor]:
    rest = args[1:]
    return lambda t: func(t, *rest, **kwargs)


def _slope(call: RectifierCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    if call.op != "leaky_relu":
        return 0.0
    return float(args[1]) if len(args) > 1 else float(kwargs.get("negative_slope", 0.01))


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
        (gx,) = torch.autograd.grad(
            top, fwd.x, grad_outputs=h.to(top.dtype), retain_graph=True, allow_unused=True
        )
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
        gen = self.ctl.gen(x.device)
        saved = self.ctl.unpool
        grads: dict[int, dict[int, torch.Tensor]] = {}
        self.ctl.unpool = "switches"  # ν is a property of the forward matrix: its own switches
        try:
            for k in range(1, upto + 1):
                z = pres[k]
                self.deps[k] = []
                grads[k] = {}
                if not z.requires_grad:
                    continue
                js = list(range(k))
                v = rademacher(z, gen)
                gs = torch.autograd.grad(
                    z, [leaves[j] for j in js], grad_outputs=v, retain_graph=True, allow_unused=True
                )
                for j, g in zip(js, gs, strict=True):
                    if g is not None and bool(g.detach().abs().sum() > 0):
                        self.deps[k].append(j)
                        grads[k][j] = g.detach()
        finally:
            self.ctl.unpool = saved
        b = x.shape[0]
        fits: dict[int, LayerFit] = {}
        for j in range(upto):
            consumer = next((k for k in range(j + 1, upto + 1) if j in self.deps.get(k, [])), None)
            units = int(leaves[j][0].numel())
            reach = units
            nu = float("nan")
            alpha = 1.0
            if consumer is not None:
                m = int(pres[consumer][0].numel())
                gj = grads[consumer][j]
                nu = float((gj.double() ** 2).sum()) / (b * m)  # Hutchinson: E‖Aᵀv‖² = Σ_i ‖A_i‖²
                reach = max(
                    1, round(float((gj != 0).sum()) / b)
                )  # units with a nonzero column in A
                factor = (
                    1.0 if j == 0 else 2.0
                )  # no ReLU into pixels, so no factor 2 (docs/science.md §1)
                alpha = factor / (self.keep * nu) if nu > 0 else 1.0
                if self.alpha_mode == "calibrated":
                    alpha = self._calibrate(x, j, consumer, pres, leaves, alpha)
            elif j > 0 and j < upto:
                self.ctl.notes.add(f"h{j} feeds no later rectifier directly; its α is 1")
            if not isinstance(self.alpha_mode, str):
                alpha = float(self.alpha_mode)
            fits[j] = LayerFit(j, units, reach, consumer, nu, alpha)
        self.fits.update(fits)
        self.fitted_upto = max(self.fitted_upto, upto)
        return fits

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
        (s,) = torch.autograd.grad(pres[k], leaves[j], grad_outputs=hk, retain_graph=True)
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


def parse_gen_scale(text: str | float) -> str | float:
    """The generation scale α (``--gen-scale``): ``theory`` | ``calibrated`` | a positive
    number."""
    if isinstance(text, (int, float)):
        v = float(text)
    else:
        t = text.strip().lower()
        if t in ALPHA_MODES:
            return t
        try:
            v = float(t)
        except ValueError:
            raise OptionError(
                f"--gen-scale {text}: not theory, calibrated or a number",
                hint="e.g. --gen-scale theory or --gen-scale 0.5",
            ) from None
    if not (math.isfinite(v) and v > 0):
        raise OptionError(
            f"--gen-scale {text}: must be a positive number", hint="or theory / calibrated"
        )
    return v


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Depthwise Gaussian blur of (N, C, H, W) images (``--smooth SIGMA``, in pixels), with
    reflect padding so the borders keep their brightness."""
    if sigma <= 0 or x.ndim != 4:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, (min(x.shape[-2:]) - 1)) if min(x.shape[-2:]) > 1 else 0
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-(t**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    c = x.shape[1]
    xp = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(xp, k1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # blur rows
    return F.conv2d(
        y, k1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )  # blur columns -> (N,C,H,W)


def random_like_sparsity(h: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The random-h control: each sample's entries permuted at random, so the sparsity, the
    norm and the value distribution stay and the structure goes."""
    flat = h.reshape(h.shape[0], -1)  # (B, units)
    keys = torch.rand(flat.shape, generator=gen, device=h.device)
    perm = keys.argsort(dim=1)
    return flat.gather(1, perm).view_as(h)
