"""The bulk and its edge: Tracy–Widom spike counts and the MP scale fitted to the bulk.

docs/science.md §4.3–§4.4: eigenvalues above the TW1 quantile of a k x N matrix's largest
(exact spectra or SLQ Ritz values), the bulk variance re-estimated without them; and the
descriptive MP-scale fit ``sigma_fit`` (not WeightWatcher's ``sigma_mp``: §4.3 says how they
differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .densities import mp_cdf, tw1_quantile, tw_center_scale, tw_pvalue
from .lanczos import Quadrature


@dataclass(frozen=True)
class Spikes:
    count: int  # eigenvalues above the TW threshold
    sigma2: float  # entry variance estimated from the bulk (trace without the spikes)
    threshold: float  # eigenvalue threshold on the W W^T scale
    p_max: float  # TW p-value of the largest eigenvalue (before removing any spike)


def count_spikes(ev: np.ndarray, k: int, n: int, alpha: float, max_iter: int = 20) -> Spikes:
    """Eigenvalues of W W^T (ascending, k of them, W k x n) above the TW1 (1 - alpha)
    quantile of the largest eigenvalue of a k x n Gaussian matrix with the bulk's variance.
    The variance comes from the trace without the spikes found so far,
    sigma^2 = sum(bulk) / ((k - r)(n - r)), iterated to a fixed point; with no spike that is
    ||W||_F^2 / (k n)."""
    q = tw1_quantile(1.0 - alpha)
    total = float(ev.sum())
    r = 0
    sigma2 = total / (k * n)
    p_max = tw_pvalue(float(ev[-1]) / sigma2, k, n) if sigma2 > 0 else 0.0
    thr = float("inf")
    # Weyl: s_{i+r}(W + B) <= s_i(W) when rank B <= r, so the (r+1)-th eigenvalue of a
    # noise-plus-r-spikes matrix stays below the noise's largest: the k x n TW threshold holds
    mu, s = tw_center_scale(k, n)
    for _ in range(max_iter):
        sigma2 = (total - float(ev[k - r :].sum()) if r else total) / ((k - r) * (n - r))
        if sigma2 <= 0:
            break
        thr = sigma2 * (mu + s * q)
        r_new = int(np.count_nonzero(ev > thr))
        r_new = min(r_new, k // 2)
        if r_new == r:
            break
        r = r_new
    return Spikes(r, sigma2, thr, p_max)


def count_spikes_quadrature(qd: Quadrature, k: int, n: int, fro2: float, alpha: float) -> Spikes:
    """Spike count from SLQ Ritz values: Ritz values interlace the eigenvalues, so each
    probe's count above the TW threshold is a lower bound; the largest over the probes is
    used, and the bulk variance comes from ||W||_F^2 without those Ritz values."""
    q = tw1_quantile(1.0 - alpha)
    sigma2 = fro2 / (k * n)
    top = float(qd.nodes.max())
    p_max = tw_pvalue(top / sigma2, k, n) if sigma2 > 0 else 0.0
    r, thr = 0, float("inf")
    mu, s = tw_center_scale(k, n)  # as in count_spikes (Weyl)
    for _ in range(20):
        thr = sigma2 * (mu + s * q)
        counts = (qd.nodes > thr).sum(axis=1)
        r_new = min(int(counts.max()), k // 2)
        if r_new == r:
            break
        r = r_new
        best = qd.nodes[int(np.argmax(counts))]
        sigma2 = (fro2 - float(np.sort(best)[-r:].sum())) / ((k - r) * (n - r))
        if sigma2 <= 0:
            break
    return Spikes(r, sigma2, thr, p_max)


# ---------------------------------------------------------------------------------------
# WeightWatcher-style sigma fit to the bulk


def fit_sigma_mp(
    x: np.ndarray, lam: float, weights: np.ndarray | None = None, points: int = 400
) -> float:
    """The MP scale that fits the bulk, on WeightWatcher's scale: eigenvalues rescaled to
    mean 1, so sigma_mp = 1 when all the energy is in an MP bulk and < 1 when part of it
    sits in spikes or a heavy tail. WeightWatcher brute-forces sigma against a kernel density
    estimate; here sigma minimises the squared distance between the empirical CDF and
    (1 - f) F_MP(x / sigma^2), f the share of eigenvalues above that sigma's bulk edge (a
    CDF fit: no bandwidth, and steady on a few hundred eigenvalues). ``weights`` gives a
    weighted spectrum (SLQ nodes)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(x)
    x, w = x[order], w[order] / w.sum()
    mean = float(np.sum(w * x))
    if not (mean > 0) or len(x) < 4:
        return float("nan")
    x = x / mean
    cum = np.cumsum(w) - w / 2  # empirical CDF at each eigenvalue (midpoints)
    grid = (
        np.quantile(x, np.linspace(0.0, 1.0, points))
        if weights is None
        else np.linspace(0, x[-1], points)
    )
    F_emp = np.interp(grid, x, cum, left=0.0, right=1.0)
    edge = (1 + math.sqrt(lam)) ** 2

    def losses(sig: np.ndarray) -> np.ndarray:
        s2 = sig * sig  # (S,)
        bulk = np.interp(s2 * edge, x, cum, left=0.0, right=1.0)  # share at or below each edge
        model = np.minimum(
            bulk[:, None] * mp_cdf(grid[None, :] / s2[:, None], lam), 1.0
        )  # (S, points)
        out = np.mean((F_emp[None, :] - model) ** 2, axis=1)
        return np.where(bulk >= 0.5, out, np.inf)

    coarse = np.linspace(
        0.05, 1.5, 59
    )  # candidate sigmas (WW: 0.05..2 x its own scale), step 0.025
    lc = losses(coarse)
    if not np.isfinite(lc).any():
        return float("nan")
    c = float(coarse[int(np.argmin(lc))])
    fine = np.linspace(max(c - 0.025, 0.05), c + 0.025, 11)  # then to 0.005
    lf = losses(fine)
    return float(fine[int(np.argmin(lf))]) if np.isfinite(lf).any() else c
