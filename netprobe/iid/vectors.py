"""Singular vectors: are the top ones delocalised, as an i.i.d. matrix's are? (docs/science.md §6.1)

This module's one job: the top-m left and right singular vectors of W, by Lanczos (ARPACK's
``eigsh`` on the Gram matrix the spectrum step already holds, or ``svds`` on W: never a full
SVD), and a test of each for localisation. The statistic is the inverse participation ratio
scaled by the length, n·IPR = n Σ u_i⁴: 1 for a flat vector, n for one concentrated on a
single entry, 3n/(n+2) on average for a vector uniform on the sphere — the law of every
singular vector of a Gaussian matrix (Porter–Thomas for real vectors).

p-values, in two stages like the spectrum's (docs/science.md §5.1, §6.1):

1. **Haar null.** P(n·IPR ≥ observed) for a uniform unit vector, from a Pearson type III law
   with the statistic's exact first three moments on the sphere. Exact-in-law for Gaussian W;
   for other entry laws with four moments the top vectors are asymptotically Haar too
   (delocalisation is universal), so this is the screen.
2. **Shuffled null.** When the family's Bonferroni p is below :data:`SCREEN`, the statistic
   min_i p_i over the 2m vectors is recomputed on W's own entries shuffled (exchangeable under
   "i.i.d. entries of any law", so exact for every law), as a sequential Monte Carlo p-value
   (Besag–Clifford, the spectrum's h and cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .spectrum import PERM_H, SCREEN, null_cap, null_shape

VECTORS = 5  # top singular vectors tested per side
DENSE_MAX = 64  # Gram matrices up to this side: dense eigh (ARPACK needs count < side - 1)
# the shuffled stage runs when the Haar-null family p is below this multiple of the test's
# level (and below spectrum.SCREEN): the Haar law is exact for Gaussian W and, measured, close
# for uniform and t(5) entries (docs/science.md §6.5), so only layers near the level pay draws
SCREEN_FACTOR = 2.0


@dataclass(frozen=True)
class VectorStats:
    """Delocalisation of the top singular vectors. ``ipr_*`` are n·IPR per vector (Haar
    mean ~3, a flat vector 1, one entry n); ``p_*`` their Haar-null p-values. ``offset`` is
    how many leading directions were skipped (the residual's: its k spikes)."""

    m: int  # vectors tested per side
    rows: int  # length of the left vectors (output units)
    cols: int  # length of the right vectors (inputs)
    ipr_left: tuple[float, ...]
    ipr_right: tuple[float, ...]
    p_left: tuple[float, ...]
    p_right: tuple[float, ...]
    localised: int  # vectors whose p is below level / (2m)
    p: float  # the family's p-value (Bonferroni over the 2m, or the shuffled null's)
    p_haar: float  # the Bonferroni p against the Haar null
    null: str = "haar"  # haar | shuffled | shuffled KxN
    null_draws: int = 0

    @property
    def ipr_max(self) -> float:
        return max((*self.ipr_left, *self.ipr_right), default=math.nan)


# ---------------------------------------------------------------------------------------
# the Haar null of n·IPR


@lru_cache(maxsize=4096)
def _haar_law(n: int) -> tuple[float, float, float]:
    """(shape, scale, location) of the Pearson III law with the first three moments of
    Σ u_i⁴ for u uniform on the unit sphere in R^n. Moments from E ∏ u_i^(2a_i) =
    ∏ (2a_i − 1)!! / (n (n+2) … (n + 2A − 2)), A = Σ a_i."""
    d4 = n * (n + 2.0) * (n + 4.0) * (n + 6.0)
    d6 = d4 * (n + 8.0) * (n + 10.0)
    m1 = 3.0 / (n + 2.0)
    m2 = (105.0 * n + 9.0 * n * (n - 1)) / d4
    m3 = (10395.0 * n + 3 * 315.0 * n * (n - 1) + 27.0 * n * (n - 1) * (n - 2)) / d6
    var = m2 - m1 * m1
    mu3 = m3 - 3 * m1 * m2 + 2 * m1**3
    skew = mu3 / var**1.5
    shape = 4.0 / (skew * skew)
    scale = math.sqrt(var) * skew / 2.0
    return shape, scale, m1 - shape * scale


def haar_ipr_pvalue(ipr: float, n: int) -> float:
    """P(Σ u_i⁴ ≥ ipr) for u uniform on the sphere in R^n (Pearson III approximation)."""
    from scipy.special import gammaincc

    a, scale, loc = _haar_law(n)
    x = (ipr - loc) / scale
    return 1.0 if x <= 0 else float(gammaincc(a, x))


# ---------------------------------------------------------------------------------------
# the top singular vectors, by Lanczos


def _full_gram(G: np.ndarray) -> np.ndarray:
    """The symmetric matrix from an upper-triangle-valid Gram (spectra.smaller_gram)."""
    G = np.asarray(G, dtype=np.float32)  # float32: the matvecs are memory-bound
    full = np.triu(G)
    full += np.triu(G, 1).T
    return full


def _gram_operator(G: np.ndarray) -> Any:
    """The Gram matrix as a LinearOperator reading only its upper triangle (BLAS symv), so
    the k x k matrix is never copied (a 4096-side copy costs more than the Lanczos run)."""
    from scipy.linalg import blas
    from scipy.sparse.linalg import LinearOperator

    A = np.asarray(G)
    if A.dtype != np.float32:
        A = A.astype(np.float32)
    # BLAS reads a C-ordered array as its transpose: its upper triangle is our lower one
    lower = 0 if A.flags.f_contiguous else 1
    At = A if A.flags.f_contiguous else A.T  # Fortran view, no copy
    k = A.shape[0]
    return LinearOperator(
        (k, k),
        matvec=lambda x: blas.ssymv(1.0, At, np.asarray(x, np.float32).ravel(), lower=lower),
        dtype=np.float32,
    )


def top_singular(
    W: torch.Tensor, G: np.ndarray | None, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U (rows x c), s (c,), V (cols x c)): the top ``count`` singular triplets of W,
    descending, from the Gram matrix of the smaller side (``G``, as the spectrum step left it)
    by ``eigsh``, or from W by ``svds`` when there is no Gram; the other side's vectors are
    W^T u / s. ARPACK's start vector comes from ``rng`` (same seed, same vectors)."""
    from scipy.sparse.linalg import eigsh, svds

    A = W.detach().cpu().float().numpy()
    m, n = A.shape
    k = min(m, n)
    count = min(count, k - 1)
    if G is None and k > DENSE_MAX:
        v0 = rng.standard_normal(k)
        U, s, Vt = svds(A, k=count, v0=v0, which="LM")
        order = np.argsort(s)[::-1]
        return U[:, order], s[order], Vt[order].T
    dense = k <= DENSE_MAX or count >= k - 1
    if G is None:
        Gf: Any = A @ A.T if m <= n else A.T @ A
    else:
        Gf = _full_gram(G) if dense else _gram_operator(G)
    if dense:
        ev, vec = np.linalg.eigh(np.asarray(Gf, dtype=np.float64))
        ev, vec = ev[::-1][:count], vec[:, ::-1][:, :count]
    else:
        # the top eigenvalues of a random bulk are not separated, so vectors converge slowly;
        # a wider Krylov space and tol 1e-4 (the IPR needs no more) keep it to a few restarts
        ev, vec = eigsh(
            Gf,
            k=count,
            which="LA",
            v0=rng.standard_normal(k).astype(np.float32),
            ncv=min(k - 1, max(4 * count, 40)),
            tol=1e-4,
        )
        order = np.argsort(ev)[::-1]
        ev, vec = ev[order], vec[:, order]
    s = np.sqrt(np.clip(ev, 1e-300, None))
    vec32 = vec.astype(np.float32)
    if m <= n:  # the Gram is W W^T: vec are the left vectors
        return vec, s, (A.T @ vec32).astype(np.float64) / s
    return (A @ vec32).astype(np.float64) / s, s, vec


def _iprs(X: np.ndarray) -> np.ndarray:
    """n·IPR of each column of X (normalised first)."""
    X = X / np.linalg.norm(X, axis=0, keepdims=True)
    return X.shape[0] * (X**4).sum(axis=0)


def _min_p(U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    iu, iv = _iprs(U), _iprs(V)
    pu = np.array([haar_ipr_pvalue(x / U.shape[0], U.shape[0]) for x in iu])
    pv = np.array([haar_ipr_pvalue(x / V.shape[0], V.shape[0]) for x in iv])
    return iu, iv, pu, pv


def _shuffled_min_p(
    values: torch.Tensor, shape: tuple[int, int], m: int, offset: int, rng: np.random.Generator
) -> float:
    """min p over the 2m vectors (after ``offset``) of W's entries shuffled into ``shape``."""
    from ..spectra import draw_indices, smaller_gram

    r, c = shape
    idx = torch.from_numpy(draw_indices(len(values), r * c, rng))
    Ws = values.index_select(0, idx).reshape(r, c)
    U, _, V = top_singular(Ws, smaller_gram(Ws).numpy(), m + offset, rng)
    _, _, pu, pv = _min_p(U[:, offset:], V[:, offset:])
    return float(min(pu.min(), pv.min()))


def vector_stats(
    W: torch.Tensor,
    U: np.ndarray,
    V: np.ndarray,
    *,
    level: float,
    rng: np.random.Generator,
    offset: int = 0,
    null_values: torch.Tensor | None = None,
) -> VectorStats:
    """The delocalisation test on the singular vectors U[:, offset:], V[:, offset:] of W
    (from :func:`top_singular`), at family-wise ``level`` over the 2m vectors. With
    ``null_values`` (W's centred entries, flat float32) a Haar p below SCREEN is redone
    against them shuffled."""
    U, V = U[:, offset:], V[:, offset:]
    mm = U.shape[1]
    iu, iv, pu, pv = _min_p(U, V)
    pmin = float(min(pu.min(), pv.min())) if mm else 1.0
    p_haar = min(1.0, 2 * mm * pmin)
    p, null, draws = p_haar, "haar", 0
    if null_values is not None and mm and p_haar < min(SCREEN, SCREEN_FACTOR * level):
        rows, cols = (int(v) for v in W.shape)
        k, N = min(rows, cols), max(rows, cols)
        shape = null_shape(k, N, rows > cols)
        cap = null_cap(level)
        exceed = 0
        while exceed < PERM_H and draws < cap:
            exceed += _shuffled_min_p(null_values, shape, mm, offset, rng) <= pmin
            draws += 1
        if exceed >= PERM_H:
            p = exceed / draws
        elif exceed:
            p = (exceed + 1) / (draws + 1)
        else:  # no shuffle reached it: the Haar p, capped at the Monte Carlo resolution
            p = min(p_haar, 1.0 / (draws + 1))
        null = (
            "shuffled" if shape[0] * shape[1] == rows * cols else f"shuffled {shape[0]}x{shape[1]}"
        )
    cut = level / max(1, 2 * mm)
    localised = int((pu < cut).sum() + (pv < cut).sum())
    if p >= level:  # the family does not reject: no vector is called localised
        localised = 0
    return VectorStats(
        mm,
        U.shape[0],
        V.shape[0],
        tuple(float(x) for x in iu),
        tuple(float(x) for x in iv),
        tuple(float(x) for x in pu),
        tuple(float(x) for x in pv),
        localised,
        float(p),
        float(p_haar),
        null,
        draws,
    )
