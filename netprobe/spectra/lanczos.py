"""Approximate spectra: stochastic Lanczos quadrature (docs/science.md §4.5).

Ubaru, Chen & Saad (2017): a block of Rademacher probes, full reorthogonalisation, W and W^T
applied in one cache-blocked pass over W per step; and the KS distance of a quadrature's CDF
from Marchenko–Pastur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .densities import mp_cdf, mp_edges

# 2 probes x 12 steps: the KS error to the exact ESD is set by the steps, not the probes (on
# 16384x4096 Gaussian + 3 spikes, mean | max over 10 seeds: 8 x 10 steps 0.016 | 0.018, 2 x 10
# 0.018 | 0.023, 2 x 12 0.014 | 0.019), and on CPU a pass with 2 probes costs ~0.6x one with 8
SLQ_PROBES = 2
SLQ_STEPS = 12
# blocks this narrow are applied one GEMV per column (see _gram_apply)
GEMV_MAX_PROBES = 4

# ---------------------------------------------------------------------------------------
# approximate spectra: stochastic Lanczos quadrature


@dataclass(frozen=True)
class Quadrature:
    """An approximate spectral distribution: per probe, Gauss nodes and weights (each
    probe's weights sum to 1)."""

    nodes: np.ndarray  # (probes, steps) Ritz values, ascending per probe
    weights: np.ndarray  # (probes, steps)

    def cdf(self, x: Any) -> np.ndarray:
        """The averaged quadrature CDF, linear between nodes (each node's mass split in
        half on either side: the midpoint rule between Chebyshev–Markov–Stieltjes bounds)."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.ravel()
        xs = np.broadcast_to(flat, (len(self.nodes), len(flat)))
        return _cdf_rows(self.nodes, self.weights, xs).mean(0).reshape(x.shape)

    def scaled(self, c: float) -> Quadrature:
        return Quadrature(self.nodes * c, self.weights)

    def max_node(self) -> float:
        return float(self.nodes.max())


def _cdf_rows(th: np.ndarray, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise :meth:`Quadrature.cdf` of one probe: th, w (B, s) ascending nodes and weights,
    x (B, P) points -> (B, P): 0 below the first breakpoint, 1 above the last, linear
    between. With two or more nodes the CDF ramps in from 0 half a node spacing below the
    first node and out to 1 half a spacing above the last."""
    C = np.cumsum(w, axis=1) - w / 2
    if th.shape[1] > 1:
        lo = np.maximum(th[:, :1] - 0.5 * (th[:, 1:2] - th[:, :1]), 0.0)
        hi = th[:, -1:] + 0.5 * (th[:, -1:] - th[:, -2:-1])
        th = np.concatenate([lo, th, hi], axis=1)
        C = np.concatenate([np.zeros_like(lo), C, np.ones_like(hi)], axis=1)
    out = np.empty(x.shape)
    for r in range(len(th)):  # np.interp per row: faster than any broadcast compare here
        out[r] = np.interp(x[r], th[r], C[r], left=0.0, right=1.0)
    return out


def tridiag_quadrature(alpha: np.ndarray, beta: np.ndarray) -> Quadrature:
    """alpha (probes, m), beta (probes, m-1) -> Gauss nodes and weights (first components^2),
    all tridiagonals in one batched symmetric eigensolve."""
    B, m = alpha.shape
    T = np.zeros((B, m, m))
    i = np.arange(m)
    T[:, i, i] = alpha
    if m > 1:
        T[:, i[:-1], i[1:]] = beta
        T[:, i[1:], i[:-1]] = beta
    th, S = np.linalg.eigh(T)
    return Quadrature(th, S[:, 0, :] ** 2)


#: the old private name, still used inside :mod:`netprobe.spectra`
_tridiag_quadrature = tridiag_quadrature


def _gram_apply(W: Any, V: Any, rows_small: bool, cache_elems: int = 1 << 20) -> Any:
    """G V for G the smaller Gram matrix, in one pass over W: W is cut into slabs of about
    4 MB along its long side and each slab is used twice while it is in cache. Works on
    numpy arrays (CPU, OpenBLAS: faster than MKL for these skinny products) and on torch
    tensors (GPU). On CPU a block of at most GEMV_MAX_PROBES columns is applied one
    matrix-vector product per column while the slab is in cache: OpenBLAS's GEMM with 2-4
    columns takes as long as with 8, while each extra GEMV on a cached slab costs ~1/4 pass."""
    m, n = W.shape
    is_np = isinstance(W, np.ndarray)
    R = V.shape[1]
    by_column = is_np and R <= GEMV_MAX_PROBES
    if rows_small:  # G = W W^T (m x m); slabs are column blocks W[:, j:j+b] (m, b)
        b = max(64, cache_elems // max(m, 1))
        if by_column:
            b *= 2  # each row of a column slab is a short strided run: longer runs, ~10% faster
            VT = np.ascontiguousarray(V.T)  # (R, m)
            acc = np.zeros((R, m), V.dtype)
            for j in range(0, n, b):
                Wb = W[:, j : j + b]
                for r in range(R):
                    acc[r] += Wb @ (VT[r] @ Wb)
            return np.ascontiguousarray(acc.T)
        out = (
            np.zeros((m, R), V.dtype)
            if is_np
            else torch.zeros((m, R), dtype=V.dtype, device=V.device)
        )
        for j in range(0, n, b):
            Wb = W[:, j : j + b]  # (m, b)
            out += Wb @ (Wb.T @ V)  # (m, R)
        return out
    b = max(64, cache_elems // max(n, 1))  # G = W^T W (n x n); slabs are row blocks (b, n)
    if by_column:
        VT = np.ascontiguousarray(V.T)  # (R, n)
        accT = np.zeros((R, n), V.dtype)
        for i in range(0, m, b):
            Wb = W[i : i + b]
            for r in range(R):
                accT[r] += (Wb @ VT[r]) @ Wb
        return np.ascontiguousarray(accT.T)
    outT = (
        np.zeros((R, n), V.dtype) if is_np else torch.zeros((R, n), dtype=V.dtype, device=V.device)
    )
    for i in range(0, m, b):
        Wb = W[i : i + b]  # (b, n)
        outT += (Wb @ V).T @ Wb  # (R, n): the W-row-major friendly orientation
    return outT.T if not is_np else np.ascontiguousarray(outT.T)


def slq(
    W: torch.Tensor,
    probes: int = SLQ_PROBES,
    steps: int = SLQ_STEPS,
    generator: torch.Generator | None = None,
) -> Quadrature:
    """Stochastic Lanczos quadrature of the smaller Gram matrix's spectral distribution:
    ``probes`` Rademacher vectors run together as one block, ``steps`` Lanczos steps each,
    fully reorthogonalised (twice) in float64; the products with W stay in W's dtype."""
    m, n = W.shape
    rows_small = m <= n
    k = min(m, n)
    steps = min(steps, k)
    dev = W.device
    g = generator or torch.Generator().manual_seed(0)
    q = (torch.randint(0, 2, (k, probes), generator=g).double() * 2 - 1) / math.sqrt(k)  # (k, R)
    q = q.to(dev)
    Q = torch.zeros((steps, k, probes), dtype=torch.float64, device=dev)
    alpha = np.zeros((probes, steps))
    beta = np.zeros((probes, steps))
    qprev = torch.zeros_like(q)
    b = torch.zeros(probes, dtype=torch.float64, device=dev)
    Wc: Any = W.detach().contiguous().numpy() if dev.type == "cpu" else W.detach()
    for j in range(steps):
        Q[j] = q
        if dev.type == "cpu":
            y = torch.from_numpy(_gram_apply(Wc, q.numpy().astype(Wc.dtype), rows_small)).double()
        else:
            y = _gram_apply(Wc, q.to(Wc.dtype), rows_small).double()  # (k, R)
        a = (q * y).sum(0)
        y = y - a * q - b * qprev
        for _ in range(2):
            c = torch.einsum("jkr,kr->jr", Q[: j + 1], y)
            y = y - torch.einsum("jkr,jr->kr", Q[: j + 1], c)
        b = y.norm(dim=0)
        alpha[:, j] = a.cpu().numpy()
        beta[:, j] = b.cpu().numpy()
        if j + 1 < steps and bool((b <= 1e-12 * a.abs().clamp_min(1e-300)).any()):
            steps = j + 1  # an invariant subspace: the quadrature is exact already
            break
        qprev, q = q, y / b
    return _tridiag_quadrature(alpha[:, :steps], beta[:, : steps - 1])


def ks_quadratures_to_mp(
    nodes: np.ndarray, weights: np.ndarray, lam: float, grid: int = 2000
) -> np.ndarray:
    """sup |F_quadrature - F_MP| for a batch of quadratures (B, probes, steps), each on a
    fine grid over the MP support plus its own nodes. Above the support F_MP = 1 and the
    quadrature CDF only rises, so the grid's last point (just past the edge) covers it."""
    B, R, s = nodes.shape
    out = np.empty(B)
    xg = np.linspace(0.0, mp_edges(lam)[1] * 1.001, grid)
    Fg = mp_cdf(xg, lam)
    step = max(1, (1 << 22) // (R * (grid + R * s)))  # quadratures per chunk: ~32 MB of points
    for i in range(0, B, step):
        th, w = nodes[i : i + step], weights[i : i + step]
        c = len(th)
        xn = th.reshape(c, R * s)
        x = np.concatenate([np.broadcast_to(xg, (c, grid)), xn], 1)
        F = _cdf_rows(th.reshape(c * R, s), w.reshape(c * R, s), np.repeat(x, R, axis=0))
        F = F.reshape(c, R, -1).mean(1)
        Fmp = np.concatenate([np.broadcast_to(Fg, (c, grid)), mp_cdf(xn, lam)], 1)
        out[i : i + step] = np.max(np.abs(F - Fmp), axis=1)
    return out


def ks_quadrature_to_mp(qd: Quadrature, lam: float, grid: int = 2000) -> float:
    """sup |F_quadrature - F_MP| (see :func:`ks_quadratures_to_mp`)."""
    return float(ks_quadratures_to_mp(qd.nodes[None], qd.weights[None], lam, grid)[0])
