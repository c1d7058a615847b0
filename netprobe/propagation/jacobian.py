"""Singular values of the input -> h_ℓ Jacobian by Lanczos through autograd (docs/science.md §7.3).

The Jacobian J = ∂h_ℓ/∂x is never formed. Its Gram matrix on the smaller side (J Jᵀ when h_ℓ
has fewer units than x, else Jᵀ J) is applied as two autograd products: Jᵀu is one
vector–Jacobian product (a backward pass); J v is a Jacobian–vector product computed as the
derivative of that linear backward pass with respect to its cotangent (the "double-backward"
JVP, which needs no forward-mode rule for every op and reuses the recorded graph).

Why a hand-written Lanczos and not ``scipy.sparse.linalg.eigsh``: the hidden layers of a
batch of B inputs depend each on its own input only (eval mode), so J of the batch is block
diagonal and one autograd product serves all B inputs at once. ARPACK runs one vector at a
time, so it would cost B times the passes. The Lanczos here is the textbook one with full
reorthogonalisation (twice, in float64); its tridiagonals go through the same Gauss-quadrature
solve as ``randomness``'s stochastic Lanczos (:mod:`netprobe.spectra.lanczos`).

Cost: every Lanczos step is one VJP and one JVP through the prefix up to h_ℓ, so the run's
cost is (inputs x layers x steps) products; the steps are cut where the summary has settled
(:data:`CONVERGED`), and the graph is recorded once per batch with the weights frozen (no
weight-gradient bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..autodiff import vjp as _vjp
from ..netlayers import RectifierCall, RectifierMode, eval_mode
from ..spectra.lanczos import tridiag_quadrature

#: Lanczos steps per input and layer: the top singular value converges in far fewer when it
#: stands apart, and the quadrature's median and log spread are resolved to about 1/steps
LANCZOS_STEPS = 20
#: a Ritz value (σ²) below this fraction of the largest counts as a zero singular value
#: (float32 products leave a residue of ~1e-7 relative; zeros come from a rank below the
#: smaller side, e.g. a layer with more units than the active units below it)
ZERO_TOL = 1e-5
#: a row stops when one more step moved its top singular value by less than 1e-3 (relative),
#: its median by less than 1e-2 (relative) and its log spread by less than 1e-2 (absolute):
#: every reported summary has settled, not only the top
CONVERGED = (1e-3, 1e-2, 1e-2)
#: the fewest steps before the convergence test applies (a 2-node quadrature can look settled)
MIN_STEPS = 4


@dataclass(frozen=True)
class Spectrum:
    """One input's Jacobian spectrum summary at one layer."""

    top: float  # largest singular value (the largest Ritz value's square root)
    median: float  # median of the non-zero singular values (quadrature estimate)
    log_spread: float  # standard deviation of ln σ over the non-zero singular values
    zero_frac: float  # quadrature mass at zero (rank below the side the Gram is taken on)
    steps: int  # Lanczos steps taken


class _Stop(Exception):
    pass


def hidden_with_grad(model: nn.Module, x: torch.Tensor, upto: int) -> list[torch.Tensor]:
    """h1..h{upto} of ``model`` on ``x`` with the autograd graph kept (eval mode)."""
    acts: list[torch.Tensor] = []

    def record(
        call: RectifierCall, func: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> torch.Tensor:
        out = func(*args, **kw)
        acts.append(out)
        if call.index >= upto:
            raise _Stop
        return out

    with eval_mode(model), torch.enable_grad():
        try:
            with RectifierMode(model, record):
                model(x)
        except _Stop:
            pass
    return acts


def gram_operator(
    h: torch.Tensor, x: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, torch.Tensor | None]:
    """(G, side, mask) for the batch's block-diagonal Jacobian ∂h/∂x: ``G`` maps (B, side)
    float32 vectors to (B, side), the Gram matrix on the smaller side (h's active units
    against x's coordinates). On the h side the
    operator is restricted to each input's active units (``mask``, (B, side) or None): the
    row of J of an inactive unit is exactly zero, and those known zeros would otherwise fill
    the spectrum (their share is the active fraction's complement, reported already)."""
    B = h.shape[0]
    m, d = h[0].numel(), x[0].numel()
    w = torch.zeros_like(h, requires_grad=True)  # the cotangent the JVP differentiates by
    (g,) = _vjp(h, x, w, create_graph=True)

    def vjp(u: torch.Tensor) -> torch.Tensor:  # Jᵀ u
        (out,) = _vjp(h, x, u.view_as(h), retain_graph=True)
        return out.reshape(B, d)

    def jvp(v: torch.Tensor) -> torch.Tensor:  # J v = ∂(Jᵀ w · v)/∂w
        (out,) = _vjp(g, w, v.view_as(x), retain_graph=True)
        return out.reshape(B, m)

    mask = (h.detach() > 0).reshape(B, m)
    # the h side restricted to active units is the smaller side whenever at most d units are
    # on (a wide first layer is, on its own, larger than the input): a smaller operator, and
    # the rank deficiency of a wide layer no longer shows as a cluster of zeros to resolve
    if int(mask.sum(1).max()) <= d:
        mask[~mask.any(1)] = True  # no active unit: J is zero, the spectrum all zeros
        mf = mask.to(h.dtype)
        return (lambda u: jvp(vjp(u * mf)) * mf), m, mask
    return (lambda v: vjp(jvp(v))), d, None


def lanczos(
    G: Callable[[torch.Tensor], torch.Tensor],
    B: int,
    n: int,
    steps: int,
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    mask: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched Lanczos on B independent symmetric operators (one per row): the tridiagonals'
    (alpha (B, s), beta (B, s-1)). Stops early when every row's Krylov space is exhausted
    or its summary has settled (:data:`CONVERGED`, after :data:`MIN_STEPS`). With ``mask``
    (B, n) the start vectors live on each row's masked coordinates."""
    steps = max(1, min(steps, n))
    q = torch.randn(B, n, generator=generator, dtype=torch.float64).to(device)
    if mask is not None:
        q = q * mask.to(q.dtype)
    q = q / q.norm(dim=1, keepdim=True)
    Q = [q]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    frozen = torch.zeros(B, dtype=torch.bool, device=q.device)
    settled = _Settled(B)
    for j in range(steps):
        w = G(Q[-1].to(dtype)).to(torch.float64)
        w[frozen] = 0.0  # a finished row adds only zero-weight zero nodes from here on
        a = (w * Q[-1]).sum(1)
        alphas.append(a)
        if j == steps - 1:
            break
        basis = torch.stack(Q, dim=1)  # (B, j+1, n)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w = w - torch.einsum("bk,bkn->bn", torch.einsum("bkn,bn->bk", basis, w), basis)
        b = w.norm(dim=1)
        scale = torch.stack(alphas).abs().amax(0).clamp_min(1e-300)
        frozen = frozen | (b <= 1e-10 * scale)  # this row's Krylov space is exhausted
        if bool(frozen.all()):
            break  # every row's Ritz values are exact
        if j + 1 >= MIN_STEPS and settled.all(alphas, betas, frozen):
            break  # one more step would leave every row's summary where it is
        betas.append(torch.where(frozen, torch.zeros_like(b), b))
        q = w / b.clamp_min(1e-300).unsqueeze(1)
        q[frozen] = 0.0
        Q.append(q)
    alpha = torch.stack(alphas, 1).cpu().numpy()
    beta = (
        torch.stack(betas, 1).cpu().numpy() if betas else np.zeros((B, 0))
    )  # (B, len(alphas) - 1)
    return alpha, beta[:, : alpha.shape[1] - 1]


class _Settled:
    """The convergence test of :func:`lanczos`: each row's summary (top, median, log spread)
    after this step against the previous step's."""

    def __init__(self, rows: int) -> None:
        self.last: np.ndarray | None = None
        self.rows = rows

    def all(self, alphas: list[torch.Tensor], betas: list[torch.Tensor], frozen: Any) -> bool:
        a = torch.stack(alphas, 1).cpu().numpy()
        b = torch.stack(betas, 1).cpu().numpy() if betas else np.zeros((self.rows, 0))
        now = np.array([(s.top, s.median, s.log_spread) for s in summarise(a, b)])
        last, self.last = self.last, now
        if last is None:
            return False
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(now[:, :2] - last[:, :2]) / np.maximum(np.abs(now[:, :2]), 1e-300)
        tol_top, tol_med, tol_spread = CONVERGED
        ok = (
            (rel[:, 0] < tol_top)
            & (rel[:, 1] < tol_med)
            & (np.abs(now[:, 2] - last[:, 2]) < tol_spread)
        )
        ok |= frozen.cpu().numpy() | (now[:, 0] == 0)
        return bool(ok.all())


def summarise(alpha: np.ndarray, beta: np.ndarray) -> list[Spectrum]:
    """Per row: the Gauss quadrature of the Gram spectrum -> top, median, log spread, zeros.
    The quadrature's nodes are eigenvalues σ² of the Gram matrix, its weights their mass."""
    qd = tridiag_quadrature(alpha, beta)
    out = []
    for th, wt in zip(qd.nodes, qd.weights, strict=True):
        th = np.clip(th, 0.0, None)
        top = float(th.max())
        nz = th > ZERO_TOL * top
        zero = float(wt[~nz].sum())
        if not nz.any():
            out.append(Spectrum(0.0, 0.0, float("nan"), 1.0, len(th)))
            continue
        s, w = np.sqrt(th[nz]), wt[nz] / wt[nz].sum()
        order = np.argsort(s)
        s, w = s[order], w[order]
        cdf = np.cumsum(w) - w / 2  # midpoint rule, as the quadrature CDF
        med = float(np.interp(0.5, cdf, s)) if len(s) > 1 else float(s[0])
        ln = np.log(s)
        mu = float((w * ln).sum())
        spread = float(np.sqrt((w * (ln - mu) ** 2).sum()))
        out.append(Spectrum(float(np.sqrt(top)), med, spread, zero, len(th)))
    return out


def jacobian_spectra(
    model: nn.Module,
    x: torch.Tensor,
    layers: list[int],
    *,
    steps: int = LANCZOS_STEPS,
    seed: int = 0,
    on_layer: Callable[[int], None] | None = None,
) -> dict[int, list[Spectrum]]:
    """For each hidden layer index in ``layers``: one :class:`Spectrum` per input of ``x``
    (B, *input_shape). One forward pass records every layer; each layer then runs its own
    Lanczos on the batch's block-diagonal Gram operator."""
    from ..seeds import derive_seed

    if not layers:
        return {}
    xg = x.detach().clone().requires_grad_(True)
    out: dict[int, list[Spectrum]] = {}
    with frozen_weights(model):
        acts = hidden_with_grad(model, xg, max(layers))
        for idx in layers:
            h = acts[idx - 1]
            G, side, mask = gram_operator(h, xg)
            g = torch.Generator().manual_seed(derive_seed(seed, idx))
            alpha, beta = lanczos(G, x.shape[0], side, steps, g, x.device, x.dtype, mask)
            out[idx] = summarise(alpha, beta)
            del G  # the layer's double-backward graph
            if on_layer is not None:
                on_layer(idx)
    return out


@contextmanager
def frozen_weights(model: nn.Module) -> Iterator[None]:
    """The model's parameters without ``requires_grad`` for the duration: the recorded graph
    then reaches x only, and no product computes or stores anything for the weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
