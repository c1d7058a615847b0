"""The generative rule at a rectifier: forward is the model's own ReLU-family op, backward is
r(α·g) ⊙ m (docs/science.md §1), or the true derivative during a training backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..autodiff import vjp
from ..netlayers import RectifierCall
from .control import _Control

_aten = torch.ops.aten


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
                (gi,) = vjp(ctx.fn(p), p, g)
            return gi, None, None, None, None
        if j >= ctl.top:  # the given h enters here unchanged
            return g, None, None, None, None
        a = ctl.alphas.get(j, ctl.alpha_default)
        s = g if a == 1.0 else g * a
        slope = ctl.slopes.get(j, 0.0)
        s = F.leaky_relu(s, slope) if slope else F.relu(s)
        m = ctl.mask(s)
        return (s if m is None else s * m), None, None, None, None


def _rectifier_fn(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[torch.Tensor], torch.Tensor]:
    rest = args[1:]
    return lambda t: func(t, *rest, **kwargs)


def _slope(call: RectifierCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    if call.op != "leaky_relu":
        return 0.0
    return float(args[1]) if len(args) > 1 else float(kwargs.get("negative_slope", 0.01))
