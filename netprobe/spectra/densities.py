"""The limit laws: Marchenko–Pastur (and its square case, the quarter circle) and Tracy–Widom.

For W (k x N, k <= N) with i.i.d. entries of variance sigma^2 and lam = k/N, the eigenvalues x of
W W^T / (sigma^2 N) follow MP(lam) (docs/science.md §2.1, §4.3); the largest, centred and scaled,
follows TW1 (§4.4). This module holds the densities, the closed-form MP CDF, the KS distance to
it and the TW1 distribution as a Fredholm determinant (Bornemann 2010).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------
# Marchenko–Pastur and quarter-circle laws


def mp_edges(lam: float) -> tuple[float, float]:
    """Bulk edges x± = (1 ± sqrt(lam))^2 of the MP law for eigenvalues (lam = k/N <= 1)."""
    r = math.sqrt(lam)
    return (1.0 - r) ** 2, (1.0 + r) ** 2


def mp_pdf(x: Any, lam: float) -> np.ndarray:
    """MP density of the eigenvalues of W W^T / (sigma^2 N), lam = k/N in (0, 1] (docs/science.md §2.1)."""
    a, b = mp_edges(lam)
    x = np.asarray(x, dtype=np.float64)
    inside = (x > a) & (x < b) & (x > 0)
    xs = np.where(inside, x, 1.0)
    return np.where(
        inside, np.sqrt(np.maximum((b - xs) * (xs - a), 0.0)) / (2 * math.pi * lam * xs), 0.0
    )


def mp_cdf(x: Any, lam: float) -> np.ndarray:
    """Closed-form MP CDF: F(x) = (A(x) - A(x-)) / (2 pi lam) with the antiderivative
    A(x) = R + (a+b)/2 asin((2x-a-b)/(b-a)) - sqrt(ab) asin(((a+b)x - 2ab)/((b-a)x)),
    R = sqrt((b-x)(x-a)); A(b) - A(a) = 2 pi lam, so F(b) = 1."""
    a, b = mp_edges(lam)
    x0 = np.asarray(x, dtype=np.float64)
    x = np.clip(x0, a, b)
    rt = np.sqrt(np.maximum((b - x) * (x - a), 0.0))
    s1 = np.arcsin(np.clip((2 * x - a - b) / (b - a), -1.0, 1.0))
    sab = math.sqrt(a * b)
    xs = np.where(x > 0, x, 1.0)
    arg = np.where(x > 0, ((a + b) * xs - 2 * a * b) / ((b - a) * xs), 1.0)
    s2 = np.arcsin(np.clip(arg, -1.0, 1.0))
    A = rt + 0.5 * (a + b) * s1 - sab * s2
    A0 = -0.25 * (a + b) * math.pi + 0.5 * sab * math.pi
    F = np.clip((A - A0) / (2 * math.pi * lam), 0.0, 1.0)
    return np.where(x0 >= b, 1.0, np.where(x0 <= a, 0.0, F))


def sv_pdf(s: Any, lam: float) -> np.ndarray:
    """Density of the singular values of W / (sigma sqrt(N)): p(s) = 2 s f_MP(s^2)."""
    s = np.asarray(s, dtype=np.float64)
    return 2.0 * s * mp_pdf(s * s, lam)


def quarter_circle_pdf(s: Any) -> np.ndarray:
    """The quarter-circle law sqrt(4 - s^2)/pi on [0, 2]: the singular values of a square
    i.i.d. matrix (the lam = 1 case of :func:`sv_pdf`)."""
    s = np.asarray(s, dtype=np.float64)
    return np.where((s >= 0) & (s <= 2), np.sqrt(np.clip(4 - s * s, 0, None)) / math.pi, 0.0)


def ks_to_mp(x_sorted: np.ndarray, lam: float) -> float:
    """Kolmogorov–Smirnov distance between the empirical distribution of ``x_sorted``
    (ascending) and MP(lam)."""
    k = len(x_sorted)
    if k == 0:
        return float("nan")
    F = mp_cdf(x_sorted, lam)
    i = np.arange(1, k + 1)
    return float(max(np.max(i / k - F), np.max(F - (i - 1) / k)))


# ---------------------------------------------------------------------------------------
# Tracy–Widom (beta = 1)


def tw1_cdf(s: float) -> float:
    """TW1 distribution function as the Fredholm determinant det(I - K) on L^2(0, inf),
    K(x, y) = Ai((x + y)/2 + s)/2 (Bornemann 2010, eq. (7.4)), by Gauss–Legendre quadrature."""
    from numpy.polynomial.legendre import leggauss
    from scipy.special import airy

    if s > 12:
        return 1.0
    if s < -12:
        return 0.0
    L = 12.0 + max(0.0, -s)
    m = 24 + int(4 * max(0.0, -s))  # ~1e-8 absolute against 96 nodes on [-4, 6]
    x, w = leggauss(m)
    x = (x + 1) * L / 2
    w = w * L / 2
    K = airy((x[:, None] + x[None, :]) / 2 + s)[0] / 2
    sw = np.sqrt(w)
    return float(np.clip(np.linalg.det(np.eye(m) - sw[:, None] * K * sw[None, :]), 0.0, 1.0))


@lru_cache(maxsize=64)
def tw1_quantile(p: float) -> float:
    """The p-quantile of TW1 (e.g. 0.95 -> 0.979): regula falsi (Illinois) on the monotone
    CDF inside [-4, 8] (F1(-4) ~ 0.006), widened for extreme p, to 1e-9."""
    a, b = (-4.0, 8.0) if 0.01 <= p <= 1 - 1e-12 else (-8.0, 12.0)
    fa, fb = tw1_cdf(a) - p, tw1_cdf(b) - p
    side = 0
    for _ in range(100):
        c = (a * fb - b * fa) / (fb - fa)
        fc = tw1_cdf(c) - p
        if abs(fc) < 1e-12 or b - a < 1e-9:
            return c
        if fc * fb > 0:
            b, fb = c, fc
            if side == -1:
                fa /= 2
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb /= 2
            side = 1
    return c


def tw_center_scale(k: int, n: int) -> tuple[float, float]:
    """Centre and scale of the largest eigenvalue of W W^T for a k x n matrix of i.i.d.
    N(0, 1) entries: (lambda_max - mu) / s -> TW1 (Johnstone 2001), with Ma's (2012)
    half-integer corrections, which are accurate from k ~ 5 on."""
    a, b = math.sqrt(n - 0.5), math.sqrt(k - 0.5)
    mu = (a + b) ** 2
    s = (a + b) * (1 / a + 1 / b) ** (1 / 3)
    return mu, s


def tw_pvalue(lmax: float, k: int, n: int) -> float:
    """P(lambda_max >= lmax) under i.i.d. N(0, 1) entries (lmax on that scale)."""
    mu, s = tw_center_scale(k, n)
    return 1.0 - tw1_cdf((lmax - mu) / s)
