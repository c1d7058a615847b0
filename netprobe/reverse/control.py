"""The mutable state the reverse net's custom backward rules read while autograd runs them.

One :class:`_Control` per :class:`~netprobe.reverse.ReverseNet`: α per layer, the keep
probability ρ of generation dropout and its seeded generator, the unpooling rule, the layer
generation starts at, and the switch between generative and true (training) derivatives
(docs/science.md §1; docs/design.md, "Reverse engine").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


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
