"""Max-pool transposes (docs/science.md §2.2): the window geometry of a pooling call, the three
unpooling rules (``random``, ``switches``, ``copy``) and the autograd Function whose backward
applies the chosen one."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .control import _Control

UNPOOL_MODES = ("random", "switches", "copy")

_aten = torch.ops.aten


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
