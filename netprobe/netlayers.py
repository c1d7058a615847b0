"""Weight layers as matrices, and hidden layers h1..hL.

Two definitions every command shares:

* **Weight matrix** (docs/science.md §2.1): a tensor W with ``ndim >= 2`` is viewed as
  ``W.reshape(W.shape[0], -1)``: Linear (out, in), Conv (C_out, C_in/groups * k...), one row
  per output unit. Fused attention projections (``in_proj_weight``) are split into their
  Q/K/V blocks. This works on a bare state dict, so ``randomness`` needs no architecture.
* **Hidden layer** ``h_l``: the output of the l-th rectifier call in forward order (ReLU,
  LeakyReLU, ReLU6; modules, ``F.relu`` and ``Tensor.relu`` alike). Rectifier calls are
  seen through a :class:`torch.overrides.TorchFunctionMode`, so functional calls inside a
  user's ``forward()`` count too and nothing in the model is changed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import NothingToAnalyseError, OptionError

# ---------------------------------------------------------------------------------------
# weight layers


@dataclass(frozen=True)
class WeightLayer:
    """One weight matrix: where it lives and the shape it is analysed as."""

    name: str  # display name, e.g. "features.0.weight" or "attn.in_proj_weight[k]"
    key: str  # key of the tensor in the state dict
    module_path: str  # "features.0"
    kind: str  # module type ("Conv2d", "Linear", ...) or "tensor" when only weights are known
    tensor_shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    rows: tuple[int, int] | None = None  # row block of the tensor (fused Q/K/V), else None
    transpose: bool = False  # stored in x out (GPT-2 Conv1D): transposed to out x in first
    block: int | None = None  # transformer block / CNN stage index from the module path
    role: str = ""  # q_proj, k_proj, ..., c_attn[q], embed, lm_head (loading.roles)
    dtype: str = ""  # storage dtype (bfloat16, float8_e4m3fn, ...)

    @property
    def params(self) -> int:
        return self.matrix_shape[0] * self.matrix_shape[1]


def module_kinds(module: nn.Module | Mapping[str, str] | None) -> dict[str, str]:
    """Module path -> class name (``Conv2d``, ``Linear``), from the module, or as given when a
    loader read them from the weights alone."""
    if module is None:
        return {}
    if isinstance(module, Mapping):
        return dict(module)
    return {name: type(m).__name__ for name, m in module.named_modules()}


def tensor_metas(tensors: Mapping[str, Any]) -> Mapping[str, Any]:
    """Shapes and dtypes of every tensor without reading data: a streamed checkpoint
    (:class:`netprobe.loading.sharded.StreamedTensors`) answers with ``meta`` tensors, an
    in-memory state dict with itself."""
    metas = getattr(tensors, "metas", None)
    return metas() if callable(metas) else tensors


def skip_reason(
    key: str, metas: Mapping[str, Any], keys: set[str], config: Mapping[str, Any] | None
) -> str | None:
    """Why a tensor is not analysed as a matrix by name rules: part of a packed quantised
    layer, or an LM head tied to the embeddings (analysed once, there). ``metas`` is
    :func:`tensor_metas`, ``keys`` its key set, ``config`` the checkpoint's config.json."""
    from .loading.roles import quantised_reason, tied_head

    t = metas[key]
    why = quantised_reason(key, keys, floating=bool(t.is_floating_point()))
    if why:
        return why
    tied = tied_head(key, keys, config)
    return f"tied to {tied}: analysed once, there" if tied else None


def weight_layers(
    tensors: Mapping[str, torch.Tensor],
    module: nn.Module | Mapping[str, str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> list[WeightLayer]:
    """Every >=2-D weight as a matrix, in the mapping's order (state-dict order; natural
    numeric order for streamed checkpoints), read from shapes only.

    GPT-2 ``Conv1D`` weights (in x out) are transposed; fused q/k/v (``in_proj_weight``,
    ``qkv_proj``, ``Wqkv``, ``c_attn``) and ``gate_up_proj`` are split into row blocks
    (heads and key/value heads from ``config.json``); packed quantised tensors and a tied
    LM head are left out (:func:`skip_reason`). ``include`` / ``exclude`` are glob
    patterns matched against the tensor name and its module path.
    """
    from .loading.roles import CONV1D_NAMES, block_index, fused_split, gpt2_layout, is_conv1d
    from .loading.roles import role as role_of

    kinds = module_kinds(module)
    metas = tensor_metas(tensors)
    config = getattr(tensors, "config", None) or {}
    shapes = {k: tuple(v.shape) for k, v in metas.items() if isinstance(v, torch.Tensor)}
    gpt2 = not config and gpt2_layout(shapes, shapes)
    keys = set(metas)
    out: list[WeightLayer] = []
    for key, t in metas.items():
        if not isinstance(t, torch.Tensor) or t.ndim < 2 or not t.is_floating_point():
            continue
        if skip_reason(key, metas, keys, config):
            continue
        module_path, _, pname = key.rpartition(".")
        kind = kinds.get(module_path, "tensor")
        shape = tuple(int(v) for v in t.shape)
        transpose = is_conv1d(key, shape, config, kind) or (
            gpt2 and module_path.rpartition(".")[2] in CONV1D_NAMES and len(shape) == 2
        )
        if transpose and kind == "tensor":
            kind = "Conv1D"
        rows_n = shape[1] if transpose else shape[0]
        cols_n = shape[0] if transpose else int(t[0].numel())
        common: dict[str, Any] = {
            "key": key,
            "module_path": module_path,
            "kind": kind,
            "tensor_shape": shape,
            "transpose": transpose,
            "block": block_index(key),
            "dtype": str(t.dtype).replace("torch.", ""),
        }
        base_role = role_of(key)
        if pname == "in_proj_weight" and shape[0] % 3 == 0:
            d = shape[0] // 3
            split: list[tuple[str, tuple[int, int]]] | None = [
                (part, (i * d, (i + 1) * d)) for i, part in enumerate("qkv")
            ]
        else:
            split = fused_split(key, rows_n, config) if len(shape) == 2 else None
        if split:
            for part, (r0, r1) in split:
                out.append(
                    WeightLayer(
                        name=f"{key}[{part}]",
                        matrix_shape=(r1 - r0, cols_n),
                        rows=(r0, r1),
                        role=f"{base_role}[{part}]",
                        **common,
                    )
                )
            continue
        out.append(WeightLayer(name=key, matrix_shape=(rows_n, cols_n), role=base_role, **common))
    return select(out, include, exclude)


def glob_keep(name: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    """Whether a tensor name (``features.0.weight``) passes ``--layers``/``--exclude``:
    a glob matches the name itself or its module path (``features.0``). The one layer-glob
    rule for every command."""
    module = name.rpartition(".")[0]

    def hit(pats: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(module, p) for p in pats)

    return (not include or hit(include)) and not (exclude and hit(exclude))


def select(
    layers: list[WeightLayer], include: list[str] | None, exclude: list[str] | None
) -> list[WeightLayer]:
    return [wl for wl in layers if glob_keep(wl.name, include, exclude)]


def as_matrix(layer: WeightLayer, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The layer's 2-D matrix (a view where possible; no copy, no dtype change)."""
    t = tensors[layer.key]
    if layer.transpose:
        t = t.t()
    if layer.rows is not None:
        t = t[layer.rows[0] : layer.rows[1]]
    return t.reshape(t.shape[0], -1)  # (out, in * k...)


# ---------------------------------------------------------------------------------------
# rectifier calls and hidden layers

RECTIFIER_MODULES = (nn.ReLU, nn.LeakyReLU, nn.ReLU6)


def _is_rectifier(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Name of the rectifier ``func`` computes, or None."""
    if func in (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_):
        return "relu"
    if func in (F.leaky_relu, F.leaky_relu_):
        return "leaky_relu"
    if func is F.relu6:
        return "relu6"
    if func in (F.hardtanh, F.hardtanh_):
        lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        if lo == 0:
            return "relu6"
    return None


#: rectifier function -> (out-of-place equivalent, positional args to keep: no `inplace`)
_OUT_OF_PLACE: dict[Any, tuple[Any, int]] = {
    F.relu: (F.relu, 1),
    F.relu_: (torch.relu, 1),
    torch.relu: (torch.relu, 1),
    torch.relu_: (torch.relu, 1),
    torch.Tensor.relu: (torch.relu, 1),
    torch.Tensor.relu_: (torch.relu, 1),
    F.leaky_relu: (F.leaky_relu, 2),
    F.leaky_relu_: (F.leaky_relu, 2),
    F.relu6: (F.relu6, 1),
    F.hardtanh: (F.hardtanh, 3),
    F.hardtanh_: (F.hardtanh, 3),
}

#: Nonlinearities the reverse net cannot run backwards; recorded so commands can refuse.
OTHER_NONLINEARITIES: dict[Any, str] = {
    F.gelu: "gelu",
    F.silu: "silu",
    F.elu: "elu",
    F.selu: "selu",
    F.hardswish: "hardswish",
    F.mish: "mish",
    torch.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    torch.Tensor.sigmoid: "sigmoid",
    torch.Tensor.tanh: "tanh",
    F.softplus: "softplus",
}


@dataclass(frozen=True)
class RectifierCall:
    """One rectifier call seen during a forward pass."""

    index: int  # 1-based: this is h{index}
    op: str  # relu | leaky_relu | relu6
    module_path: str  # the rectifier module, or the module whose forward() called F.relu
    functional: bool  # True when called as a function inside another module's forward()
    call: int  # how many times this module_path has produced a rectifier call so far (1-based)


class RectifierMode(TorchFunctionMode):
    """Sees every rectifier call of a forward pass, in order, with the module it ran in.

    ``on_rectifier(call, func, args, kwargs)`` may return a tensor to use instead of the
    rectifier's own output (the reverse net does this), or None to run it unchanged.
    In-place rectifiers are run out of place so the caller's tensors are never modified.
    """

    def __init__(
        self,
        module: nn.Module | None,
        on_rectifier: Callable[
            [RectifierCall, Callable[..., Any], tuple[Any, ...], dict[str, Any]],
            torch.Tensor | None,
        ]
        | None = None,
    ) -> None:
        super().__init__()
        self.calls: list[RectifierCall] = []
        self.others: list[tuple[str, str, int]] = []  # (op, module_path, rectifiers before it)
        self._on = on_rectifier
        self._module = module
        self._stack: list[tuple[str, nn.Module]] = []
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> RectifierMode:
        if self._module is not None:
            for name, m in self._module.named_modules():
                self._handles.append(m.register_forward_pre_hook(self._push(name, m)))
                self._handles.append(m.register_forward_hook(self._pop, always_call=True))
        return super().__enter__()  # type: ignore[return-value]

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            for h in self._handles:
                h.remove()
            self._handles.clear()

    def _push(self, name: str, m: nn.Module) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: Any) -> None:
            self._stack.append((name, m))

        return hook

    def _pop(self, _m: nn.Module, _args: Any, _out: Any) -> None:
        if self._stack:
            self._stack.pop()

    def _where(self) -> tuple[str, bool]:
        if not self._stack:
            return "", True
        name, m = self._stack[-1]
        return name, not isinstance(m, RECTIFIER_MODULES)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        op = _is_rectifier(func, args, kwargs)
        if op is None:
            other = OTHER_NONLINEARITIES.get(func)
            if other is not None:
                where, _ = self._where()
                self.others.append((other, where, len(self.calls)))
            return func(*args, **kwargs)
        path, functional = self._where()
        key = path + (":fn" if functional else "")
        self._counts[key] = self._counts.get(key, 0) + 1
        call = RectifierCall(len(self.calls) + 1, op, path, functional, self._counts[key])
        self.calls.append(call)
        # never modify the caller's tensors: run in-place variants out of place
        func, nargs = _OUT_OF_PLACE.get(func, (func, len(args)))
        args = tuple(args[:nargs])
        kwargs.pop("inplace", None)
        if self._on is not None:
            replaced = self._on(call, func, args, kwargs)
            if replaced is not None:
                return replaced
        return func(*args, **kwargs)


@dataclass(frozen=True)
class HiddenLayer:
    """Hidden layer h{index}: the output of the index-th rectifier call."""

    index: int
    op: str
    module_path: str
    functional: bool
    call: int
    shape: tuple[int, ...]  # activation shape without the batch dimension

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def where(self) -> str:
        """The location in the form ``--layer`` accepts: ``features.1``, or
        ``layer1.0.relu#2`` for the module's second rectifier call."""
        base = self.module_path or "<model>"
        return base if self.call == 1 else f"{base}#{self.call}"

    @property
    def kind(self) -> str:
        """``ReLU`` for a module, ``F.relu()`` for a functional call in a forward()."""
        return f"F.{self.op}()" if self.functional else self.op

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class _StopForward(Exception):
    pass


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore each submodule's flag afterwards."""
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
    except NotImplementedError:  # torch.export modules refuse eval(); their graph is fixed
        for m in flags:
            m.training = False
    try:
        yield model
    finally:
        for m, f in flags.items():
            m.training = f


def _check_traceable(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise NothingToAnalyseError(
            "this TorchScript model runs outside Python, so its hidden layers cannot be traced",
            hint="export it with torch.export (.pt2) or pass a state dict with --arch; "
            "`netprobe randomness` works on it as it is",
        )


def trace_hidden(
    model: nn.Module, example: torch.Tensor, upto: int | None = None
) -> tuple[list[HiddenLayer], list[tuple[str, str, int]], list[torch.Tensor]]:
    """Run ``model`` on ``example`` in eval mode, without gradients, and record every
    rectifier call. Returns the hidden layers, the other nonlinearities seen
    ``(op, module_path, rectifiers before it)`` and the activations themselves.
    Stops after h{upto} when given.
    """
    _check_traceable(model)
    acts: list[torch.Tensor] = []

    def record(
        call: RectifierCall, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        out = func(*args, **kwargs)
        acts.append(out)
        if upto is not None and call.index >= upto:
            raise _StopForward
        return out

    mode = RectifierMode(model, record)
    with eval_mode(model), torch.no_grad():
        try:
            with mode:
                model(example)
        except _StopForward:
            pass
    hidden = [
        HiddenLayer(c.index, c.op, c.module_path, c.functional, c.call, tuple(a.shape[1:]))
        for c, a in zip(mode.calls, acts, strict=False)
    ]
    return hidden, mode.others, acts


def hidden_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[HiddenLayer]:
    """h1..hL for one input of ``input_shape`` (C, H, W or features), traced on CPU/device
    of the model with a fixed random input."""
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1, *input_shape), generator=g).to(device=device, dtype=dtype)
    try:
        hidden, _, _ = trace_hidden(model, x)
    except (
        RuntimeError,
        ValueError,
        IndexError,
        TypeError,
        AssertionError,
    ) as e:  # export guards assert
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Guard failed" in msg and "size()[0]" in msg:
            raise OptionError(
                f"this torch.export program only runs at the batch size it was exported with ({msg})",
                hint="re-export it with a dynamic batch dimension: "
                "dynamic_shapes=({0: torch.export.Dim('batch')},)",
            ) from e
        raise OptionError(
            f"the model does not run on an input of shape {'x'.join(map(str, input_shape))} ({msg})",
            hint="pass the shape it expects with --input-shape, e.g. --input-shape 3,224,224",
        ) from e
    return hidden


_LABEL_CALL = re.compile(r"^(.*?)\s*\(call (\d+)\)$")


def resolve_layer(spec: str, hidden: list[HiddenLayer]) -> HiddenLayer:
    """``h2``, a module path (``features.4``; ``layer1.0.relu#2`` for a later call), or a
    1-based index. Raises an OptionError naming the valid range."""
    if not hidden:
        raise NothingToAnalyseError(
            "this model has no rectifier (ReLU, LeakyReLU, ReLU6), so it has no hidden layers h1..hL",
            hint="netprobe's reverse net needs a ReLU network",
        )
    s = _LABEL_CALL.sub(r"\1#\2", spec.strip())  # "layer1.0.relu (call 2)" -> "...#2"
    rng = f"h1..h{len(hidden)}"
    if s.lower().startswith("h") and s[1:].isdigit():
        i = int(s[1:])
        if 1 <= i <= len(hidden):
            return hidden[i - 1]
        raise OptionError(
            f"--layer {s}: this model has hidden layers {rng}",
            hint="see `netprobe layers MODEL`",
        )
    path, _, call = s.partition("#")
    want_call = int(call) if call.isdigit() else 1
    for h in hidden:
        if h.module_path == path and h.call == want_call:
            return h
    raise OptionError(
        f"--layer {s}: no hidden layer at that module path (this model has {rng})",
        hint="see `netprobe layers MODEL` for names and module paths",
    )
