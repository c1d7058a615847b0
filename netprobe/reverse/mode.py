"""The TorchFunctionMode the reverse net runs a model under: rectifier calls (through
:class:`~netprobe.netlayers.RectifierMode`), 2-D max pooling and narrow convolutions are routed
through the reverse Functions; ops that cannot be run backwards (softmax, attention, layer
norm, ...) and ops whose train-mode output differs from eval (dropout, batch norm) are
recorded (docs/design.md, "Reverse engine")."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..netlayers import RectifierMode
from .control import _Control
from .conv import _narrow_conv, _NarrowConv
from .unpool import _MaxPool, _pool_args

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
