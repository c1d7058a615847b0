"""The heavy-tail exponent of a layer's eigenvalues, fitted the Clauset–Shalizi–Newman way
(docs/science.md §6.6).

This module's one job: the power-law exponent α of the upper tail of the eigenvalues of
W^T W (the peer tool's headline number), with what that tool leaves out — a bootstrap CI, a
goodness-of-fit p-value, a test against a truncated power law, the same fit on the layer's
entries shuffled (is the tail structure or only the entry law?), and "no power law" when the
fit fails its own test.

Clauset, Shalizi & Newman (2009): for each candidate x_min the continuous MLE
α = 1 + n_tail / Σ ln(x_i / x_min); x_min is the candidate whose fitted tail is closest to the
data in KS distance. Candidates are :data:`CANDIDATES` tail sizes, log-spaced from
:data:`MIN_TAIL` to half the eigenvalues (the claim is about the tail). Goodness of fit: the
semi-parametric bootstrap (data below x_min resampled, above it drawn from the fit, the whole
procedure redone), p = share of synthetic KS distances at or above the observed; CSN call the
power law ruled out below 0.1. Against the truncated power law x^(−α) e^(−λx): the
likelihood ratio of the nested fits, p = ½ P(χ²₁ ≥ 2 ΔLL) (λ = 0 is on the boundary).

Implemented with numpy/scipy rather than the ``powerlaw`` package: that package is not a core
dependency, and the method is a few array expressions; tests/test_rmt.py checks the two agree
when ``powerlaw`` is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_TAIL = 10  # fewest eigenvalues in a fitted tail
CANDIDATES = 40  # x_min candidates (log-spaced tail sizes)
BOOT = 30  # bootstrap draws, each for the CI and for the goodness of fit
GOF_LEVEL = 0.1  # CSN: a power law with gof_p below this is ruled out
TPL_LEVEL = 0.05  # the truncated power law is called better below this


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float
    alpha_lo: float  # 95% bootstrap percentile interval
    alpha_hi: float
    xmin: float
    n_tail: int
    ks: float
    gof_p: float
    vs_truncated_p: float  # small: a truncated power law fits the tail better
    verdict: str  # power law | truncated power law | no power law
    alpha_shuffled: float = math.nan  # the same fit on the layer's entries shuffled
    n: int = 0  # eigenvalues fitted


def _candidates(n: int) -> np.ndarray:
    """Start indices (into ascending data) of the candidate tails."""
    hi = max(MIN_TAIL, n // 2)
    sizes = np.unique(np.round(np.geomspace(MIN_TAIL, hi, CANDIDATES)).astype(int))
    return n - sizes[sizes <= n]


def fit_tail(x: np.ndarray) -> tuple[float, float, int, float]:
    """(α, x_min, n_tail, KS) of the CSN fit to ascending positive ``x``: every candidate
    x_min at once (a candidates x tail-length array; a loop over them took 2 ms a fit, and a
    layer makes 62 fits)."""
    n = len(x)
    logx = np.log(x)
    starts = _candidates(n)  # descending: the smallest tail first, as ties are broken
    nts = n - starts
    suffix = np.concatenate([np.cumsum(logx[::-1])[::-1], [0.0]])  # sum of logx[i:]
    s = suffix[starts] - nts * logx[starts]  # sum of ln(x / x_min) over each tail
    ok = s > 0
    a = np.where(ok, 1.0 + nts / np.where(ok, s, 1.0), np.nan)
    j = np.arange(int(nts.max()), dtype=np.float64)
    inside = j[None, :] < nts[:, None]
    at = np.minimum(starts[:, None] + np.arange(len(j))[None, :], n - 1)
    cdf = 1.0 - np.exp((1.0 - a[:, None]) * (logx[at] - logx[starts][:, None]))
    below = np.abs(j[None, :] / nts[:, None] - cdf)
    above = np.abs((j[None, :] + 1) / nts[:, None] - cdf)
    d = np.where(inside, np.maximum(below, above), 0.0).max(axis=1)
    d = np.where(ok, d, np.inf)
    if not np.isfinite(d).any():
        return (math.nan, math.nan, 0, math.inf)
    c = int(np.argmin(d))  # the first of equal distances, as the candidates are ordered
    return float(a[c]), float(x[starts[c]]), int(nts[c]), float(d[c])


_Y = np.linspace(0.0, 120.0, 2401)  # the log-grid u = e^y of the truncated law's normaliser
_W = np.full_like(_Y, _Y[1] - _Y[0])
_W[0] = _W[-1] = _W[0] / 2  # trapezoid weights


def _log_norm(a: float, lam: float) -> float:
    """ln ∫_1^∞ u^(-a) e^(-lam (u - 1)) du, by the trapezoid rule on u = e^y (y <= 120)."""
    g = (1.0 - a) * _Y - lam * np.expm1(_Y)
    top = float(g.max())
    return top + math.log(float(np.dot(_W, np.exp(g - top))))


def _truncated_lr_p(t: np.ndarray, alpha: float) -> float:
    """p of the likelihood-ratio test of a power law against x^(-a) e^(-l x) on t = x / x_min
    >= 1 (nested at l = 0)."""
    from scipy import optimize
    from scipy.special import chdtrc  # chi2.sf without importing scipy.stats (0.35 s)

    nt, slog, ssum = len(t), float(np.sum(np.log(t))), float(np.sum(t))
    ll_pl = nt * math.log(alpha - 1.0) - alpha * slog

    def nll(theta: np.ndarray) -> float:
        a, lam = float(theta[0]), math.exp(float(theta[1]))
        ln = _log_norm(a, lam)
        return 1e300 if not math.isfinite(ln) else a * slog + lam * (ssum - nt) + nt * ln

    starts = [np.array([alpha, math.log(l0)]) for l0 in (1e-3, 1e-1, 1.0)]
    best = min(
        (optimize.minimize(nll, s0, method="Nelder-Mead") for s0 in starts), key=lambda r: r.fun
    )
    lr = max(0.0, 2.0 * (-float(best.fun) - ll_pl))
    return float(0.5 * chdtrc(1, lr)) if lr > 0 else 1.0


def _synthetic(
    x: np.ndarray, alpha: float, xmin: float, nt: int, rng: np.random.Generator
) -> np.ndarray:
    """CSN's semi-parametric bootstrap sample: the body resampled, the tail from the fit."""
    n = len(x)
    k = rng.binomial(n, nt / n)
    body = x[x < xmin]
    tail = xmin * (1.0 - rng.random(k)) ** (-1.0 / (alpha - 1.0))
    low = rng.choice(body, n - k, replace=True) if len(body) else np.full(n - k, xmin)
    return np.sort(np.concatenate([low, tail]))


def fit_powerlaw(
    ev: np.ndarray, rng: np.random.Generator, shuffled_ev: np.ndarray | None = None
) -> PowerLawFit | None:
    """The CSN fit of the positive eigenvalues ``ev`` with its bootstrap CI, goodness of fit,
    truncated-power-law test and verdict; ``shuffled_ev``: the eigenvalues of the layer's
    entries shuffled, fitted for comparison. None with fewer than 2 MIN_TAIL positive values."""
    x = np.sort(np.asarray(ev, dtype=np.float64))
    x = x[x > x[-1] * 1e-12] if len(x) else x
    if len(x) < 2 * MIN_TAIL:
        return None
    a, xmin, nt, d = fit_tail(x)
    if not math.isfinite(a):
        return None
    boots = [fit_tail(np.sort(rng.choice(x, len(x), replace=True)))[0] for _ in range(BOOT)]
    lo, hi = (float(v) for v in np.nanpercentile(boots, [2.5, 97.5]))
    synth = [fit_tail(_synthetic(x, a, xmin, nt, rng))[3] for _ in range(BOOT)]
    gof = float(np.mean(np.asarray(synth) >= d))
    tp = _truncated_lr_p(x[x >= xmin] / xmin, a)
    verdict = (
        "no power law"
        if gof < GOF_LEVEL
        else ("truncated power law" if tp < TPL_LEVEL else "power law")
    )
    a_sh = math.nan
    if shuffled_ev is not None:
        xs = np.sort(np.asarray(shuffled_ev, dtype=np.float64))
        xs = xs[xs > xs[-1] * 1e-12] if len(xs) else xs
        if len(xs) >= 2 * MIN_TAIL:
            a_sh = fit_tail(xs)[0]
    return PowerLawFit(a, lo, hi, xmin, nt, d, gof, tp, verdict, a_sh, len(x))
