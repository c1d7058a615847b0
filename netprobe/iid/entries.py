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
from collections.abc import Callable
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


# ties: a sample with more than this share of repeated values is checked for quantisation
TIE_SHARE = 0.01
TIED_SAMPLE = 1 << 14  # entries the Gaussianity tests use on quantised layers
TIED_DRAWS = 100  # Monte Carlo draws of the quantised Lilliefors / AD null (resolution 1/101)
MIN_DISTINCT = 8  # fewer distinct values: "are the entries Gaussian?" cannot be asked


def _rounder(name: str) -> Callable[[np.ndarray], np.ndarray]:
    dt = {"float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    return lambda y: torch.from_numpy(y).to(dt).double().numpy()


def quantiser(x: np.ndarray) -> tuple[str, Callable[[np.ndarray], np.ndarray] | None]:
    """How the sample's values were quantised, and a function applying the same rounding to
    other values: ``bfloat16`` / ``float16`` (every value representable in that format),
    ``lattice`` (offset + integer x step: int8 / uint8-style per-tensor quantisation) or
    ``codebook`` (a few values, snapped to the nearest); ("", None) when the sample has fewer
    than TIE_SHARE repeated values (float32 weights tie on ~0.1% of a 65,536-entry sample)."""
    u = np.unique(x)
    if len(u) >= (1 - TIE_SHARE) * len(x):
        return "", None
    for name in ("bfloat16", "float16"):
        f = _rounder(name)
        if np.array_equal(f(u), u):
            return name, f
    step = float(np.min(np.diff(u))) if len(u) > 1 else 0.0
    if step > 0:
        # the step from the whole range (float32 storage blurs the smallest gap by ~1e-5)
        step = float(u[-1] - u[0]) / round(float(u[-1] - u[0]) / step)
        j = (u - u[0]) / step
        if np.max(np.abs(j - np.round(j))) < 0.01:
            off = float(u[0])
            return "lattice", lambda y: off + step * np.round((y - off) / step)
    mids = (u[1:] + u[:-1]) / 2
    return "codebook", lambda y: u[np.searchsorted(mids, y)]


def _gauss_stats(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (Lilliefors D, Anderson–Darling A^2) of samples z (B, n) against a Gaussian
    with each row's own mean and std."""
    from scipy.special import log_ndtr, ndtr

    n = z.shape[1]
    s = (z - z.mean(1, keepdims=True)) / z.std(1, ddof=1, keepdims=True)
    s.sort(axis=1)
    F = ndtr(s)
    i = np.arange(1, n + 1)
    D = np.maximum((i / n - F).max(1), (F - (i - 1) / n).max(1))
    A2 = -n - np.sum((2 * i - 1) * (log_ndtr(s) + log_ndtr(-s[:, ::-1])), axis=1) / n
    return D, A2


def quantised_gaussian_test(
    x: np.ndarray, rounding: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """(D, p_D, A^2, p_A): Lilliefors and Anderson–Darling on a quantised sample, each against
    the same statistic on Gaussian samples with the sample's mean and std *put through the
    same rounding* (TIED_DRAWS Monte Carlo draws, p = (1 + exceedances) / (1 + draws)): ties
    alone do not reject (docs/science.md §4.1)."""
    x = x[:TIED_SAMPLE]
    n = len(x)
    D, A2 = (float(v[0]) for v in _gauss_stats(x[None]))
    mu, sd = float(x.mean()), float(x.std(ddof=1))
    dn, an = [], []
    for i in range(0, TIED_DRAWS, 25):  # batches of 25 x n: a few MB
        y = rounding(mu + sd * rng.standard_normal((min(25, TIED_DRAWS - i), n)))
        d, a = _gauss_stats(y)
        dn.append(d)
        an.append(a)
    dd, aa = np.concatenate(dn), np.concatenate(an)
    return (
        D,
        float((1 + np.sum(dd >= D)) / (1 + len(dd))),
        A2,
        float((1 + np.sum(aa >= A2)) / (1 + len(aa))),
    )


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
    mean_z: float = math.nan  # the mean in units of its standard error, std / sqrt(n)
    mean_share: float = math.nan  # share of ||W||_F^2 the mean component n mean^2 carries
    distinct: int = -1  # distinct values among the tested sample
    quantised: str = ""  # "" | bfloat16 | float16 | lattice | codebook (see quantiser)
    gauss_reason: str = ""  # why there is no Gaussianity p-value, when there is none

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
    return flat[torch.from_numpy(sp.draw_indices(n, size, rng))].double().numpy()


def entry_stats(
    x: np.ndarray,
    n: int,
    moments: tuple[float, float, float, float],
    rng: np.random.Generator | None = None,
) -> EntryStats:
    """Tests and fits on the entry sample ``x`` of a matrix with ``n`` entries and these
    (mean, std, skewness, excess kurtosis) of all of them. Quantised (tied) samples get the
    quantised Gaussianity null (:func:`quantised_gaussian_test`, drawn with ``rng``), or no
    p-value with fewer than MIN_DISTINCT values."""
    mean, std, skew, kurt = moments
    distinct = len(np.unique(x))
    quant, rounding = quantiser(x)
    reason = ""
    if distinct < MIN_DISTINCT:
        ks = ks_p = ad = ad_p = math.nan
        reason = f"{distinct} distinct values: no Gaussianity test"
    elif rounding is not None:
        ks, ks_p, ad, ad_p = quantised_gaussian_test(
            x, rounding, rng if rng is not None else np.random.default_rng(0)
        )
    else:
        ks, ks_p = lilliefors(x)
        ad, ad_p = anderson_darling(x)
    fits = distribution_fits(x[:FIT_SAMPLE] if len(x) > FIT_SAMPLE else x)
    fro2 = n * mean * mean + (n - 1) * std * std
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
        mean_z=mean / (std / math.sqrt(n)) if std > 0 else math.nan,
        mean_share=n * mean * mean / fro2 if fro2 > 0 else math.nan,
        distinct=distinct,
        quantised=quant,
        gauss_reason=reason,
    )
