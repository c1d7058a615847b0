"""A faster generation transpose for narrow conv2d calls (few input channels, e.g. a first
layer on pixels): Wᵀ·g as one matrix product folded onto the input grid. Same numbers as
autograd's own backward; training through it is unchanged."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .control import _Control
from .unpool import _pair

_aten = torch.ops.aten


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
