"""Level spacings: do the bulk eigenvalues of W^T W repel, as a random matrix's do? (docs/science.md §6.2)

This module's one job: ⟨r⟩, the mean ratio of consecutive level spacings (Oganesyan & Huse
2007; Atas et al. 2013), r_i = min(s_i, s_{i+1}) / max(s_i, s_{i+1}), s_i = λ_{i+1} − λ_i,
over the bulk eigenvalues of the smaller Gram matrix: the spikes removed, then the lowest and
highest :data:`TRIM` of the rest (the edges follow Airy / Bessel statistics, not the bulk's).
It needs no unfolding and no fitted density. ⟨r⟩ ≈ 0.5307 for Wishart (GOE) levels and
2 ln 2 − 1 ≈ 0.386 for uncorrelated (Poisson) ones: a layer made of independent blocks, or
whose levels are a superposition of unrelated spectra, moves towards 0.386; a too-regular
(crystal-like) spectrum moves above 0.53. The test is two-sided.

Null: the same ⟨r⟩ on a Gaussian matrix of the bulk's shape (k − r) x (N − r). Local
eigenvalue statistics are universal for i.i.d. entries of any law with a few moments (Erdős,
Yau and co-workers), so this null covers uniform and Student-t entries too (measured:
docs/science.md §6.5). Up to :data:`EXACT_MAX` bulk levels its mean and sd come from the
Laguerre model at that shape (:data:`NULL_DRAWS` seeded draws, cached); above it from the
large-k values :data:`R_MEAN` and :data:`R_SD1` / sqrt(ratios) (measured on the Laguerre model,
k = 32 … 512, aspect 1 … 0.1: sd · sqrt(ratios) = 0.26 … 0.33, mean 0.529 … 0.532).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TRIM = 0.1  # share of the bulk levels dropped at each end
MIN_RATIOS = 8  # fewer ratios: no test
EXACT_MAX = 128  # bulk levels up to this: null moments from the Laguerre model at the shape
NULL_DRAWS = 400
NULL_SEED = 20220329  # Thamm, Staats & Rosenow's arXiv date: any fixed seed
R_MEAN = 0.5307  # ⟨r⟩ for GOE levels, large k (Atas et al. 2013)
R_SD1 = 0.31  # sd of ⟨r⟩ times sqrt(number of ratios), large k (upper end of the measured range)
R_POISSON = 2 * math.log(2) - 1


@dataclass(frozen=True)
class SpacingStats:
    """⟨r⟩ over the bulk, its null mean and sd, z and the two-sided p-value."""

    r_mean: float
    ratios: int  # consecutive-spacing ratios averaged
    null_mean: float
    null_sd: float
    z: float
    p: float
    null: str  # laguerre KxN | asymptotic


def spacing_ratios(ev: np.ndarray) -> np.ndarray:
    """r_i for ascending levels ``ev`` after trimming TRIM at each end (a pair of zero
    spacings, degenerate levels, gives r = 0: no repulsion at all)."""
    k = len(ev)
    cut = int(math.floor(TRIM * k))
    x = np.sort(np.asarray(ev, dtype=np.float64))[cut : k - cut]
    s = np.diff(x)
    a, b = s[:-1], s[1:]
    hi = np.maximum(a, b)
    return np.divide(np.minimum(a, b), hi, out=np.zeros_like(hi), where=hi > 0)


@lru_cache(maxsize=256)
def laguerre_r_null(k: int, n: int, draws: int = NULL_DRAWS) -> tuple[float, float]:
    """(mean, sd) of ⟨r⟩ on the k levels of a k x n Gaussian matrix (Laguerre model)."""
    from ..spectra import laguerre_eigenvalues

    rng = np.random.default_rng(np.random.SeedSequence([NULL_SEED, k, n]))
    vals = [float(spacing_ratios(laguerre_eigenvalues(k, n, rng)).mean()) for _ in range(draws)]
    return float(np.mean(vals)), float(np.std(vals, ddof=1))


def spacing_stats(ev: np.ndarray, spikes: int, N: int) -> SpacingStats | None:
    """⟨r⟩ of the bulk of the k ascending Gram eigenvalues ``ev`` of a k x N matrix (the top
    ``spikes`` removed) and its two-sided p-value; None when fewer than MIN_RATIOS ratios."""
    from scipy.special import ndtr

    k = len(ev)
    kb, nb = k - max(spikes, 0), N - max(spikes, 0)
    r = spacing_ratios(np.sort(ev)[:kb])
    if len(r) < MIN_RATIOS:
        return None
    if kb <= EXACT_MAX:
        mu, sd = laguerre_r_null(kb, nb)
        null = f"laguerre {kb}x{nb}"
    else:
        mu, sd = R_MEAN, R_SD1 / math.sqrt(len(r))
        null = "asymptotic"
    z = (float(r.mean()) - mu) / sd
    return SpacingStats(float(r.mean()), len(r), mu, sd, z, float(2 * ndtr(-abs(z))), null)
