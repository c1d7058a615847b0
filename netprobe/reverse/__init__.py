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

The package, one job per file: ``control`` (the state the backward rules read), ``rectify``
(the rule at a rectifier), ``unpool`` (max-pool transposes), ``conv`` (a faster transpose for
narrow convolutions), ``mode`` (the TorchFunctionMode that routes calls to them), ``engine``
(:class:`ReverseNet`: forward, generation, α fitting), ``scale`` (``--gen-scale`` parsing) and
``ops`` (``--smooth``'s blur and the random-h control).
"""

from __future__ import annotations

from .control import _Control
from .conv import _NarrowConv
from .engine import Forward, LayerFit, ReverseNet, rademacher
from .ops import gaussian_blur, random_like_sparsity
from .scale import ALPHA_MODES, parse_gen_scale
from .unpool import UNPOOL_MODES, _PoolGeom, unpool_copy, unpool_random, unpool_switches

__all__ = [
    "ALPHA_MODES",
    "UNPOOL_MODES",
    "Forward",
    "LayerFit",
    "ReverseNet",
    "_Control",
    "_NarrowConv",
    "_PoolGeom",
    "gaussian_blur",
    "parse_gen_scale",
    "rademacher",
    "random_like_sparsity",
    "unpool_copy",
    "unpool_random",
    "unpool_switches",
]
