"""Vector–Jacobian products as the gradient of ⟨outputs, v⟩ (docs/design.md, "Speed").

``torch.autograd.grad(out, inputs, grad_outputs=v)`` validates ``v``'s shape through
``torch.fx.experimental.symbolic_shapes``, whose first use imports sympy (about half a second
to 1.4 s of a command's start-up). The gradient of the scalar ``(out * v).sum()`` is the same
product, computed by the same backward pass, without that import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def vjp(
    out: torch.Tensor,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    v: torch.Tensor,
    **kw: Any,
) -> tuple[torch.Tensor, ...]:
    """vᵀ ∂out/∂inputs for each input (``kw``: retain_graph, create_graph, allow_unused; with
    allow_unused an input the output does not depend on gets None, as in torch.autograd.grad,
    whose annotation this keeps)."""
    return torch.autograd.grad((out * v).sum(), inputs, **kw)
