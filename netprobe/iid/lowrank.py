"""Random plus low rank: the k directions outside the bulk, and what is left without them
(docs/science.md §6.3).

This module's one job: given W's top singular triplets, (1) the share of ‖W‖²_F the k spike
directions hold, and (2) the residual W − U_k S_k V_kᵀ written in coordinates where every
test can be re-run on it unchanged.

The residual has rank min(m, n) − k, so as an m x n matrix it is not "i.i.d. entries" even
when W − U_k S_k V_kᵀ is pure noise (its rows lie in a subspace; Schott's E r² = 1/(L − 1)
fails). Reflections fix that: with Householder reflections H_L, H_R that take U_k and V_k to the
first k coordinate vectors, H_L W H_R = diag(S_k) ⊕ Z exactly, and Z, the (m − k) x (n − k)
lower block, has the residual's singular values. For W = signal + Gaussian noise with the
signal's directions estimated from W, Z is (up to the estimation error of U_k, V_k) an i.i.d.
Gaussian matrix: rotation invariance. A reflection with a delocalised vector moves every row
by O(1/√m), so row i of Z is still, to that order, unit i of W: the independence test keeps
its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LowRank:
    """The spike directions and the residual's tests."""

    k: int  # directions outside the bulk (the TW spike count)
    energy: float  # their share of ||W - mean||_F^2
    residual_shape: tuple[int, int] | None  # Z's shape, None when no residual was tested
    residual_pvalues: dict[str, float]
    residual_failed: tuple[str, ...]
    residual_verdict: str  # random-like | structured | "" (not tested)


def energy_share(s_top: np.ndarray, fro2: float) -> float:
    """Σ s_i² / ||W||²_F over the given singular values."""
    return float(np.sum(np.asarray(s_top, dtype=np.float64) ** 2) / fro2) if fro2 > 0 else 0.0


def _reflect_rows(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """H A for the product H = H_k … H_1 of Householder reflections taking the orthonormal
    columns of Q (len x k) to the first k coordinate vectors (QR of Q, applied in place)."""
    Q = Q.copy()
    A = A.copy()
    for j in range(Q.shape[1]):
        x = Q[j:, j]
        alpha = -np.copysign(np.linalg.norm(x), x[0] if x[0] != 0 else 1.0)
        v = x.copy()
        v[0] -= alpha
        nv = np.linalg.norm(v)
        if nv == 0:
            continue
        v /= nv
        A[j:] -= 2.0 * np.outer(v, v @ A[j:])
        Q[j:, j:] -= 2.0 * np.outer(v, v @ Q[j:, j:])
    return A


def residual_matrix(W: torch.Tensor, U: np.ndarray, V: np.ndarray) -> torch.Tensor:
    """Z: the lower (m − k) x (n − k) block of H_L W H_R (module docstring), float32. Its
    singular values are W's after the top k (U, V: W's top k left and right vectors)."""
    k = U.shape[1]
    A = W.detach().cpu().double().numpy()
    A = _reflect_rows(A, U)
    A = _reflect_rows(A.T, V).T
    return torch.from_numpy(np.ascontiguousarray(A[k:, k:], dtype=np.float32))
