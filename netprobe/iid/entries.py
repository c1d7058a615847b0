"""Entries of a weight matrix: their moments, which law fits them, and whether it is Gaussian.

This module's one job is the *entry law* (docs/science.md §4): moments of all entries, the
best-fitting law among Gaussian / uniform / Laplace / Student-t (AIC of maximum-likelihood
fits), and the separate, stricter question "are the entries Gaussian?" — Lilliefors (KS
with fitted mean and std, p-value from a Monte Carlo null table) or Anderson–Darling. The
law is reported, not judged: i.i.d. entries of *any* law are random-like (§2.1), so none
of this enters the per-layer verdict (:mod:`netprobe.iid.verdict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import spectra as sp

ENTRY_SAMPLE = 1 << 16  # entries the KS / AD tests use (all of them when fewer)
FIT_SAMPLE = 1 << 14  # entries the law fits use
CHUNK = 1 << 16  # entries per chunk of the moment passes (fits in L2)
LAWS = ("gaussian", "uniform", "laplace", "student-t")  # the entry-law candidates


# Survival function of Stephens' modified Lilliefors statistic D* = D (sqrt(n) - 0.01 +
# 0.85/sqrt(n)) for Gaussian samples with fitted mean and std: D* at upper-tail levels
# LF_LEVELS, per sample size in LF_SIZES (Monte Carlo, 100k / 100k / 10k draws, seeded:
# rebuild with ``simulate_lilliefors_null``). Stephens (1974) gives 0.895 at 5% and 1.035 at 1%.
LF_LEVELS = sp.NULL_LEVELS  # the same grid of upper-tail probabilities as the spectrum null
LF_SIZES = (64, 1024, 16384)
LF_TABLE = (
    (
        0.3624,
        0.4501,
        0.4963,
        0.5335,
        0.5694,
        0.6050,
        0.6437,
        0.6872,
        0.7412,
        0.7760,
        0.8231,
        0.8547,
        0.8957,
        0.9171,
        0.9445,
        0.9617,
        0.9802,
        1.0065,
        1.0247,
        1.0425,
        1.0682,
        1.1026,
        1.1615,
        1.2363,
    ),
    (
        0.3712,
        0.4586,
        0.5049,
        0.5426,
        0.5771,
        0.6122,
        0.6500,
        0.6930,
        0.7470,
        0.7825,
        0.8285,
        0.8606,
        0.9028,
        0.9252,
        0.9536,
        0.9718,
        0.9930,
        1.0202,
        1.0360,
        1.0551,
        1.0821,
        1.1147,
        1.1674,
        1.2541,
    ),
    (
        0.3749,
        0.4626,
        0.5080,
        0.5451,
        0.5783,
        0.6149,
        0.6523,
        0.6948,
        0.7485,
        0.7862,
        0.8339,
        0.8673,
        0.9091,
        0.9301,
        0.9522,
        0.9690,
        0.9853,
        1.0090,
        1.0238,
        1.0398,
        1.0713,
        1.0999,
        1.1456,
        1.2011,
    ),
)


def simulate_lilliefors_null(n: int, reps: int, seed: int = 20151117) -> np.ndarray:
    """Draws of D* for Gaussian samples of size n (the table's source)."""
    from scipy.special import ndtr

    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    out = []
    batch = max(1, 2_000_000 // n)
    for s in range(0, reps, batch):
        x = rng.standard_normal((min(batch, reps - s), n))
        z = (x - x.mean(1, keepdims=True)) / x.std(1, ddof=1, keepdims=True)
        z.sort(axis=1)
        F = ndtr(z)
        i = np.arange(1, n + 1)
        D = np.maximum((i / n - F).max(1), (F - (i - 1) / n).max(1))
        out.append(D * (math.sqrt(n) - 0.01 + 0.85 / math.sqrt(n)))
    return np.concatenate(out)


def lilliefors(x: np.ndarray) -> tuple[float, float]:
    """(D, p): KS distance from a Gaussian with the sample's mean and std, and the
    Lilliefors p-value (fitted parameters accounted for)."""
    from scipy.special import ndtr

    n = len(x)
    z = np.sort((x - x.mean()) / x.std(ddof=1))
    F = ndtr(z)
    i = np.arange(1, n + 1)
    D = float(max(np.max(i / n - F), np.max(F - (i - 1) / n)))
    dstar = D * (math.sqrt(n) - 0.01 + 0.85 / math.sqrt(n))
    levels = np.array(LF_LEVELS)
    # interpolate the table between sample sizes in log n (the modification leaves ~1%)
    ln = math.log(min(max(n, LF_SIZES[0]), LF_SIZES[-1]))
    sizes = np.log(np.array(LF_SIZES, dtype=float))
    j = int(np.clip(np.searchsorted(sizes, ln) - 1, 0, len(sizes) - 2))
    t = (ln - sizes[j]) / (sizes[j + 1] - sizes[j])
    qs = (1 - t) * np.array(LF_TABLE[j]) + t * np.array(LF_TABLE[j + 1])
    return D, sp.sf_from_table(dstar, qs, levels, square=True)


def anderson_darling(x: np.ndarray) -> tuple[float, float]:
    """(A^2, p) for normality with estimated mean and variance: p from the modified
    A*^2 = A^2 (1 + 0.75/n + 2.25/n^2) (D'Agostino & Stephens 1986, Table 4.9)."""
    from scipy.special import log_ndtr

    n = len(x)
    z = np.sort((x - x.mean()) / x.std(ddof=1))
    i = np.arange(1, n + 1)
    A2 = float(-n - np.sum((2 * i - 1) * (log_ndtr(z) + log_ndtr(-z[::-1]))) / n)
    a = min(A2 * (1 + 0.75 / n + 2.25 / n**2), 13.0)  # p < 1e-24 there; the fit turns up past ~150
    if a >= 0.6:
        p = math.exp(1.2937 - 5.709 * a + 0.0186 * a * a)
    elif a >= 0.34:
        p = math.exp(0.9177 - 4.279 * a - 1.38 * a * a)
    elif a >= 0.2:
        p = 1 - math.exp(-8.318 + 42.796 * a - 59.938 * a * a)
    else:
        p = 1 - math.exp(-13.436 + 101.14 * a - 223.73 * a * a)
    return A2, float(min(max(p, 0.0), 1.0))


def _t_loglik(z: np.ndarray, mu: float, s: float, nu: float) -> float:
    from scipy.special import gammaln

    u = (z - mu) / s
    return float(
        len(z)
        * (gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * math.log(nu * math.pi) - math.log(s))
        - (nu + 1) / 2 * np.sum(np.log1p(u * u / nu))
    )


def _t_fit(z: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood Student-t (location, scale, dof) on standardised data:
    (log-likelihood, dof). Golden-section search over log dof, each dof's location and scale
    by EM (iteratively reweighted: w = (nu + 1) / (nu + u^2); Liu & Rubin 1995), warm-started."""
    state = {"mu": float(np.median(z)), "s": 1.0}

    def profile(lnu: float) -> float:
        nu = math.exp(lnu)
        mu, s = state["mu"], state["s"]
        for _ in range(12):
            u = (z - mu) / s
            w = (nu + 1) / (nu + u * u)
            mu_new = float(np.sum(w * z) / np.sum(w))
            s_new = math.sqrt(float(np.sum(w * (z - mu_new) ** 2)) / len(z))
            done = abs(mu_new - mu) < 1e-6 and abs(s_new - s) < 1e-6 * s
            mu, s = mu_new, s_new
            if done:
                break
        state["mu"], state["s"] = mu, s
        return _t_loglik(z, mu, s, nu)

    lo, hi = math.log(0.3), math.log(1e4)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = profile(a), profile(b)
    for _ in range(22):  # interval shrinks to ~3e-4 of log dof
        if fa > fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = profile(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = profile(b)
    return (fa, math.exp(a)) if fa > fb else (fb, math.exp(b))


def distribution_fits(x: np.ndarray) -> dict[str, float]:
    """AIC of Gaussian, uniform, Laplace and Student-t maximum-likelihood fits (same data, so
    the AICs compare), and the t's degrees of freedom. The uniform's ML support is the
    sample's range (PyTorch's default Linear/Conv initialisation is uniform)."""
    z = (x - x.mean()) / x.std()
    n = len(z)
    ll_g = -0.5 * n * (math.log(2 * math.pi) + 1.0)  # z has ML variance 1
    ll_u = -n * math.log(max(float(z.max() - z.min()), 1e-300))
    med = float(np.median(z))
    b = float(np.mean(np.abs(z - med)))
    ll_l = -n * math.log(2 * b) - n
    ll_t, dof = _t_fit(z)
    return {
        "aic_gauss": 4 - 2 * ll_g,
        "aic_uniform": 4 - 2 * ll_u,
        "aic_laplace": 4 - 2 * ll_l,
        "aic_t": 6 - 2 * ll_t,
        "t_dof": dof,
    }


def best_law(fits: dict[str, float]) -> str:
    """The entry law with the lowest AIC (one of :data:`LAWS`)."""
    aic = dict(
        zip(
            LAWS,
            (fits["aic_gauss"], fits["aic_uniform"], fits["aic_laplace"], fits["aic_t"]),
            strict=True,
        )
    )
    return min(LAWS, key=aic.__getitem__)


@dataclass(frozen=True)
class EntryStats:
    n: int
    mean: float
    std: float
    skewness: float
    kurtosis: float  # excess
    tested: int  # entries in the KS / AD sample
    ks: float
    ks_p: float
    ad: float
    ad_p: float
    best_fit: str  # the entry law: gaussian | uniform | laplace | student-t (lowest AIC)
    t_dof: float
    aic_gauss: float
    aic_laplace: float
    aic_t: float
    aic_uniform: float = math.nan

    def gaussian_p(self, entry_test: str) -> float:
        """p-value of "the entries are Gaussian" by the chosen test (ks: Lilliefors, ad)."""
        return self.ks_p if entry_test == "ks" else self.ad_p


def entry_moments(flat: torch.Tensor) -> tuple[float, float, float, float, int, int]:
    """(mean, std, skewness, excess kurtosis, #NaN, #Inf) of all entries: two passes over
    cache-sized chunks (float32 sums per chunk, float64 across chunks), no full-size
    temporary."""
    n = flat.numel()
    s1 = 0.0
    for i in range(0, n, CHUNK):
        s1 += float(flat[i : i + CHUNK].sum(dtype=torch.float32))
    if not math.isfinite(s1):
        nans, infs = int(torch.isnan(flat).sum()), int(torch.isinf(flat).sum())
        if nans or infs:
            return math.nan, math.nan, math.nan, math.nan, nans, infs
        s1 = float(flat.double().sum())  # finite entries whose float32 sum overflowed
    mean = s1 / n
    s2 = s3 = s4 = 0.0
    for i in range(0, n, CHUNK):
        c = (
            flat[i : i + CHUNK].double()
            if flat.dtype == torch.float64
            else flat[i : i + CHUNK].float()
        )
        c = c - mean
        c2 = c * c
        s2 += float(c2.sum())
        s3 += float((c2 * c).sum())
        s4 += float((c2 * c2).sum())
    m2, m3, m4 = s2 / n, s3 / n, s4 / n
    if not all(map(math.isfinite, (m2, m3, m4))):  # c^4 overflowed float32
        return math.nan, math.nan, math.nan, math.nan, 0, 0
    std = math.sqrt(m2 * n / max(n - 1, 1))
    skew = m3 / m2**1.5 if m2 > 0 else math.nan
    kurt = m4 / m2**2 - 3 if m2 > 0 else math.nan
    return mean, std, skew, kurt, 0, 0


def entry_sample(
    flat: torch.Tensor, rng: np.random.Generator, size: int = ENTRY_SAMPLE
) -> np.ndarray:
    """A uniform random sample (without replacement, in random order) of ``size`` entries;
    all of them, shuffled, when fewer (so any prefix is a uniform sample too)."""
    n = flat.numel()
    if n <= size:
        return rng.permutation(flat.double().numpy())
    return (
        flat[torch.from_numpy(rng.choice(n, size, replace=False).astype(np.int64))].double().numpy()
    )


def entry_stats(x: np.ndarray, n: int, moments: tuple[float, float, float, float]) -> EntryStats:
    """Tests and fits on the entry sample ``x`` of a matrix with ``n`` entries and these
    (mean, std, skewness, excess kurtosis) of all of them."""
    ks, ks_p = lilliefors(x)
    ad, ad_p = anderson_darling(x)
    fits = distribution_fits(x[:FIT_SAMPLE] if len(x) > FIT_SAMPLE else x)
    mean, std, skew, kurt = moments
    return EntryStats(
        n=n,
        mean=mean,
        std=std,
        skewness=skew,
        kurtosis=kurt,
        tested=len(x),
        ks=ks,
        ks_p=ks_p,
        ad=ad,
        ad_p=ad_p,
        best_fit=best_law(fits),
        t_dof=fits["t_dof"],
        aic_gauss=fits["aic_gauss"],
        aic_laplace=fits["aic_laplace"],
        aic_t=fits["aic_t"],
        aic_uniform=fits["aic_uniform"],
    )
