"""The random-like weight hypothesis, tested layer by layer (PAPER.md §2.1).

Per weight matrix W (the matrix view of :mod:`netprobe.netlayers`), four tests, each with a
null that holds for i.i.d. Gaussian entries of W's shape:

* **entries** — Lilliefors: the KS distance between the entries and a Gaussian with their
  own mean and std, with the p-value of that fitted-parameter test (a Monte Carlo null
  table of Stephens' n-modified statistic, not the plain KS p-value, which is wrong when
  the parameters are fitted); or Anderson–Darling with the D'Agostino & Stephens (1986)
  p-value. Also: moments, and which of Gaussian / Laplace / Student-t fits best (AIC).
* **independence** — rows (and columns) more correlated than independent vectors would be:
  Schott's (2005) sum of squared off-diagonal correlations, its variance taken from the
  same entries randomly permuted (same marginal, no structure), so heavy tails alone do
  not count as dependence. Mean |r| observed, expected under i.i.d. and for the permuted
  entries are reported side by side.
* **spectrum** — KS distance between the bulk's empirical spectral distribution and the
  Marchenko–Pastur law for W's aspect ratio, calibrated against same-shape Gaussian
  matrices (:mod:`netprobe.spectra`).
* **spikes** — singular values above the bulk edge, decided by the Tracy–Widom quantile.

A layer is *structured* when any test rejects at alpha / 4 (Bonferroni), so at most a
fraction alpha (default 5%) of i.i.d. Gaussian matrices is called structured.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import spectra as sp
from .errors import NothingToAnalyseError, OptionError
from .netlayers import WeightLayer, as_matrix, weight_layers

TESTS = ("entries", "independence", "spectrum", "spikes")
SPECTRUM_MODES = ("exact", "approx", "auto")
ENTRY_TESTS = ("ks", "ad")
ENTRY_SAMPLE = 1 << 16  # entries the KS / AD tests use (all of them when fewer)
FIT_SAMPLE = 1 << 14  # entries the Gaussian / Laplace / t fits use
MIN_ENTRIES = 64  # fewer entries: the layer is skipped
MIN_SPECTRUM_DIM = 8  # min(rows, cols) below this: no spectrum test
GRAM_VECTORS = 512  # smaller side: correlations of up to this many vectors, from the Gram matrix
SIDE_VECTORS = 256  # larger side: correlations of up to this many vectors
PERM_VECTORS = 128  # vectors of permuted entries for the marginal-only baseline
PERM_PAIRS = 4000  # at least this many permuted pairs (more batches when a side has few vectors)
CHUNK = 1 << 16  # entries per chunk of the moment passes (fits in L2)


@dataclass(frozen=True)
class Thresholds:
    """When a layer is called structured. ``alpha`` is the family-wise rate at which i.i.d.
    Gaussian matrices are called structured; it is split evenly over the four tests."""

    alpha: float = 0.05
    entry_test: str = "ks"  # "ks" (Lilliefors) or "ad" (Anderson–Darling)

    def check(self) -> Thresholds:
        if not (0.0 < self.alpha < 1.0):
            raise OptionError(
                f"--alpha {self.alpha}: must be between 0 and 1", hint="e.g. --alpha 0.05"
            )
        if self.entry_test not in ENTRY_TESTS:
            raise OptionError(f"--entry-test {self.entry_test}: unknown test", hint="use ks or ad")
        return self

    @property
    def per_test(self) -> float:
        return self.alpha / len(TESTS)


# ---------------------------------------------------------------------------------------
# entries


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
    """AIC of Gaussian, Laplace and Student-t maximum-likelihood fits (same data, so the
    AICs compare), and the t's degrees of freedom."""
    z = (x - x.mean()) / x.std()
    n = len(z)
    ll_g = -0.5 * n * (math.log(2 * math.pi) + 1.0)  # z has ML variance 1
    med = float(np.median(z))
    b = float(np.mean(np.abs(z - med)))
    ll_l = -n * math.log(2 * b) - n
    ll_t, dof = _t_fit(z)
    return {
        "aic_gauss": 4 - 2 * ll_g,
        "aic_laplace": 4 - 2 * ll_l,
        "aic_t": 6 - 2 * ll_t,
        "t_dof": dof,
    }


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
    best_fit: str  # gaussian | laplace | student-t (lowest AIC)
    t_dof: float
    aic_gauss: float
    aic_laplace: float
    aic_t: float


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
    best = min(
        (
            ("gaussian", fits["aic_gauss"]),
            ("laplace", fits["aic_laplace"]),
            ("student-t", fits["aic_t"]),
        ),
        key=lambda t: t[1],
    )[0]
    mean, std, skew, kurt = moments
    return EntryStats(
        n,
        mean,
        std,
        skew,
        kurt,
        len(x),
        ks,
        ks_p,
        ad,
        ad_p,
        best,
        fits["t_dof"],
        fits["aic_gauss"],
        fits["aic_laplace"],
        fits["aic_t"],
    )


# ---------------------------------------------------------------------------------------
# independence


@dataclass(frozen=True)
class SideStats:
    """Correlations between the rows (or the columns) of W."""

    vectors: int  # vectors the statistic used (a random subset of large sides)
    length: int  # entries per vector
    mean_abs_r: float
    mean_abs_r_iid: float  # E|r| for independent Gaussian vectors of this length
    mean_abs_r_perm: float  # the same statistic on W's entries randomly permuted
    z: float  # Schott's statistic, standardised with the permuted entries' variance
    p: float


def expected_abs_r(L: int) -> float:
    """E|r| of the sample correlation of two independent Gaussian vectors of length L:
    Gamma((L-1)/2) / (sqrt(pi) Gamma(L/2))."""
    from scipy.special import gammaln

    return float(math.exp(gammaln((L - 1) / 2) - gammaln(L / 2)) / math.sqrt(math.pi))


@dataclass(frozen=True)
class _Pairs:
    """Sums over the off-diagonal pairs of a correlation matrix: count, sum |r|, sum r^2, sum r^4."""

    K: int
    abs: float
    sq: float
    quad: float

    @staticmethod
    def of(R: np.ndarray) -> _Pairs:
        """From a full symmetric correlation matrix R (p, p): (sum over all - diagonal) / 2."""
        p = R.shape[0]
        d = np.diag(R)
        R2 = R * R
        return _Pairs(
            p * (p - 1) // 2,
            float((np.abs(R).sum() - np.abs(d).sum()) / 2),
            float((R2.sum() - (d * d).sum()) / 2),
            float(((R2 * R2).sum() - (d**4).sum()) / 2),
        )

    def __add__(self, o: _Pairs) -> _Pairs:
        return _Pairs(self.K + o.K, self.abs + o.abs, self.sq + o.sq, self.quad + o.quad)


def _pairs_from_vectors(X: torch.Tensor) -> _Pairs:
    """Correlations between the rows of X (p, L); rows with zero variance are left out."""
    Xc = X.float()
    Xc = Xc - Xc.mean(dim=1, keepdim=True)
    norms = Xc.norm(dim=1)
    keep = norms > 0
    Xc = Xc[keep] / norms[keep, None]
    return _Pairs.of((Xc @ Xc.T).double().cpu().numpy())  # (p, p)


def _pairs_from_gram(G: np.ndarray, mu: np.ndarray, L: int) -> _Pairs | None:
    """The same from the Gram matrix of the vectors (only its upper triangle is read) and
    their means; None when centring would cancel too many digits."""
    U = np.triu(G)
    C = U + np.triu(U, 1).T - L * np.outer(mu, mu)  # centred Gram, symmetric (p, p)
    d = np.diag(C).copy()
    if np.any(d <= 1e-3 * np.maximum(np.diag(U), 1e-300)):
        return None
    inv = 1.0 / np.sqrt(d)
    return _Pairs.of(C * inv[:, None] * inv[None, :])


def _side(r: _Pairs, L: int, perm: _Pairs, p: int) -> SideStats:
    """Schott's test: T = sum r^2 over K pairs has mean K/(L-1) for any exchangeable i.i.d.
    entries and pairwise-uncorrelated terms; Var(r^2) depends on the marginal, so it is
    measured on permuted entries; upper tail by a moment-matched gamma."""
    from scipy.special import gammaincc

    K = r.K
    if K == 0 or L < 4:
        return SideStats(p, L, math.nan, math.nan, math.nan, math.nan, math.nan)
    T = r.sq
    mu = K / (L - 1)
    v_gauss = 2 * (L - 2) / ((L - 1) ** 2 * (L + 1))  # Schott (2005) Var(r^2), Gaussian
    v = perm.quad / perm.K - (perm.sq / perm.K) ** 2 if perm.K >= 50 else v_gauss
    v = max(v, 0.5 * v_gauss)
    var_T = K * v
    z = (T - mu) / math.sqrt(var_T)
    pval = float(
        gammaincc(mu * mu / var_T, T * mu / var_T)
    )  # gamma(shape mu^2/var, scale var/mu) upper tail
    return SideStats(
        p, L, r.abs / K, expected_abs_r(L), perm.abs / perm.K if perm.K else math.nan, z, pval
    )


@dataclass(frozen=True)
class IndependenceStats:
    rows: SideStats  # correlations between rows (output units)
    cols: SideStats  # correlations between columns (inputs)
    p: float  # Bonferroni over the two sides


def independence_stats(
    W: torch.Tensor, pool: np.ndarray, G: np.ndarray | None, rng: np.random.Generator
) -> IndependenceStats:
    """Row and column correlations. The smaller side comes from the Gram matrix already
    computed for the spectrum (up to GRAM_VECTORS vectors); the larger side from a random
    subset of SIDE_VECTORS vectors; the permuted baseline from PERM_VECTORS vectors of
    entries drawn with replacement from ``pool`` (W's entries, or a uniform random sample
    of up to ENTRY_SAMPLE of them: the same marginal, no structure)."""
    m, n = W.shape
    pool_t = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32))
    out: dict[str, SideStats] = {}
    for side in ("rows", "cols"):
        p, L = (m, n) if side == "rows" else (n, m)
        small = p <= L  # this side's vectors are the smaller Gram's
        take = np.sort(
            rng.choice(p, min(p, GRAM_VECTORS if small else SIDE_VECTORS), replace=False)
        )
        t = torch.from_numpy(take.astype(np.int64))
        r = None
        if small and G is not None:
            X = W.index_select(0 if side == "rows" else 1, t)  # (p', L) or (L, p')
            mu = (X.mean(dim=1) if side == "rows" else X.mean(dim=0)).double().numpy()
            r = _pairs_from_gram(np.asarray(G[np.ix_(take, take)], dtype=np.float64), mu, L)
        if r is None:
            X = W.index_select(0, t) if side == "rows" else W.index_select(1, t).T  # (p', L)
            r = _pairs_from_vectors(X)
        pp = min(p, PERM_VECTORS)
        # enough permuted pairs (>= PERM_PAIRS) for a steady Var(r^2) even when p is small
        reps = max(1, math.ceil(PERM_PAIRS / max(pp * (pp - 1) // 2, 1)))
        perm = _Pairs(0, 0.0, 0.0, 0.0)
        for _ in range(reps):
            idx = torch.from_numpy(rng.integers(0, len(pool), size=pp * L))
            perm = perm + _pairs_from_vectors(
                pool_t[idx].reshape(pp, L)
            )  # (pp, L): W's entries, shuffled
        out[side] = _side(r, L, perm, len(take))
    ps = [s.p for s in out.values() if math.isfinite(s.p)]
    return IndependenceStats(out["rows"], out["cols"], min(1.0, 2 * min(ps)) if ps else math.nan)


# ---------------------------------------------------------------------------------------
# spectrum


@dataclass(frozen=True)
class SpectrumStats:
    method: str  # gram-f32 | gram-f64 | svd-f64 | slq
    k: int  # min(rows, cols): number of singular values
    N: int  # max(rows, cols)
    aspect: float  # lam = k / N
    sigma: float  # entry std fitted to the bulk (trace without the spikes)
    ks: float  # KS distance of the bulk's ESD from MP
    ks_p: float
    spikes: int
    spike_fraction: float
    spikes_p: float  # TW p-value of the largest singular value
    s_max: float  # largest singular value of W / (sigma sqrt(N))
    edge: float  # MP bulk edge of those: 1 + sqrt(lam)
    sigma_mp: float  # WeightWatcher-style sigma_mp (1 = all energy in an MP bulk)
    ww_spikes: int  # eigenvalues above WeightWatcher's bulk_max + TW margin for sigma_mp

    @property
    def s_max_over_edge(self) -> float:
        return self.s_max / self.edge


def _ww_spikes(x_mean1: np.ndarray, lam: float, sigma_mp: float, k: int) -> int:
    """WeightWatcher's spike count: eigenvalues (scaled to mean 1) above
    bulk_max + sqrt(TW), bulk_max = (sigma_mp (1 + sqrt(lam)))^2,
    TW = sqrt(lam) bulk_max^(2/3) k^(-2/3) (weightwatcher 0.7, ``mp_fit``)."""
    if not math.isfinite(sigma_mp):
        return -1
    bulk_max = (sigma_mp * (1 + math.sqrt(lam))) ** 2
    tw = math.sqrt(lam) * bulk_max ** (2 / 3) * k ** (-2 / 3)
    return int(np.count_nonzero(x_mean1 > bulk_max + math.sqrt(tw)))


def spectrum_exact(ev: np.ndarray, k: int, N: int, method: str, alpha: float) -> SpectrumStats:
    """Statistics from the k eigenvalues of the smaller Gram matrix (ascending)."""
    spk = sp.count_spikes(ev, k, N, alpha)
    r = spk.count
    bulk = ev[: k - r]
    lam_b = (k - r) / (N - r)
    x = bulk / (spk.sigma2 * (N - r))  # the bulk on the MP scale (mean 1)
    D = sp.ks_to_mp(x, lam_b)
    lam = k / N
    xm = ev / max(float(ev.mean()), 1e-300)
    smp = sp.fit_sigma_mp(xm, lam)
    return SpectrumStats(
        method,
        k,
        N,
        lam,
        math.sqrt(spk.sigma2),
        D,
        sp.spectrum_ks_pvalue(D, k - r),
        r,
        r / k,
        spk.p_max,
        math.sqrt(float(ev[-1]) / (spk.sigma2 * N)),
        1 + math.sqrt(lam),
        smp,
        _ww_spikes(xm, lam, smp, k),
    )


def spectrum_approx(qd: sp.Quadrature, k: int, N: int, fro2: float, alpha: float) -> SpectrumStats:
    """Statistics from an SLQ quadrature; the KS p-value comes from the same estimator run
    on the Laguerre model of a same-shape Gaussian matrix."""
    from scipy.special import ndtr

    probes, steps = qd.nodes.shape
    spk = sp.count_spikes_quadrature(qd, k, N, fro2, alpha)
    lam = k / N
    scaled = qd.scaled(1.0 / (spk.sigma2 * N))
    D = sp.ks_quadrature_to_mp(scaled, lam)
    m, s = sp.approx_null(k, N, probes, steps)
    p = float(ndtr(-(math.log(max(D, 1e-12)) - m) / s))
    mean = fro2 / k
    smp = sp.fit_sigma_mp(qd.nodes.ravel() / mean, lam, weights=qd.weights.ravel())
    xm = (
        np.sort(qd.nodes, axis=1)[:, ::-1][int(np.argmax((qd.nodes > spk.threshold).sum(1)))] / mean
    )
    return SpectrumStats(
        "slq",
        k,
        N,
        lam,
        math.sqrt(spk.sigma2),
        D,
        p,
        spk.count,
        spk.count / k,
        spk.p_max,
        math.sqrt(qd.max_node() / (spk.sigma2 * N)),
        1 + math.sqrt(lam),
        smp,
        _ww_spikes(xm, lam, smp, k),
    )


# ---------------------------------------------------------------------------------------
# one matrix


@dataclass(frozen=True)
class LayerResult:
    """Everything measured on one weight tensor (or why it was skipped)."""

    name: str
    module: str
    kind: str
    tensor_shape: tuple[int, ...]
    matrix_shape: tuple[int, int] | None
    status: str  # analysed | skipped
    reason: str = ""  # why skipped, or which parts were
    entries: EntryStats | None = None
    independence: IndependenceStats | None = None
    spectrum: SpectrumStats | None = None
    pvalues: dict[str, float] = field(default_factory=dict)
    failed: tuple[str, ...] = ()  # tests that call it structured
    verdict: str = "skipped"  # random-like | structured | skipped
    seconds: float = 0.0
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def analysed(self) -> bool:
        return self.status == "analysed"

    def row(self) -> dict[str, Any]:
        e, i, s = self.entries, self.independence, self.spectrum
        nan = math.nan
        return {
            "layer": self.name,
            "module": self.module,
            "type": self.kind,
            "tensor_shape": "x".join(map(str, self.tensor_shape)),
            "matrix": "x".join(map(str, self.matrix_shape)) if self.matrix_shape else "",
            "status": self.status,
            "verdict": self.verdict,
            "failed": ",".join(self.failed),
            "reason": self.reason,
            "n": e.n if e else (math.prod(self.tensor_shape) if self.tensor_shape else 1),
            "mean": e.mean if e else nan,
            "std": e.std if e else nan,
            "skewness": e.skewness if e else nan,
            "excess_kurtosis": e.kurtosis if e else nan,
            "entry_ks": e.ks if e else nan,
            "entry_ks_p": e.ks_p if e else nan,
            "entry_ad": e.ad if e else nan,
            "entry_ad_p": e.ad_p if e else nan,
            "best_fit": e.best_fit if e else "",
            "t_dof": e.t_dof if e else nan,
            "rows_mean_abs_r": i.rows.mean_abs_r if i else nan,
            "rows_mean_abs_r_iid": i.rows.mean_abs_r_iid if i else nan,
            "rows_mean_abs_r_perm": i.rows.mean_abs_r_perm if i else nan,
            "rows_z": i.rows.z if i else nan,
            "cols_mean_abs_r": i.cols.mean_abs_r if i else nan,
            "cols_mean_abs_r_iid": i.cols.mean_abs_r_iid if i else nan,
            "cols_mean_abs_r_perm": i.cols.mean_abs_r_perm if i else nan,
            "cols_z": i.cols.z if i else nan,
            "independence_p": i.p if i else nan,
            "spectrum_method": s.method if s else "",
            "aspect": s.aspect if s else nan,
            "sigma": s.sigma if s else nan,
            "spectrum_ks": s.ks if s else nan,
            "spectrum_ks_p": s.ks_p if s else nan,
            "spikes": s.spikes if s else -1,
            "spike_fraction": s.spike_fraction if s else nan,
            "spikes_p": s.spikes_p if s else nan,
            "s_max_over_edge": s.s_max_over_edge if s else nan,
            "sigma_mp": s.sigma_mp if s else nan,
            "ww_spikes": s.ww_spikes if s else -1,
            "seconds": self.seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        from .report import _jsonable

        d = {
            k: _jsonable(getattr(self, k))
            for k in (
                "name",
                "module",
                "kind",
                "tensor_shape",
                "matrix_shape",
                "status",
                "reason",
                "verdict",
                "failed",
                "pvalues",
                "seconds",
            )
        }
        for part in ("entries", "independence", "spectrum"):
            d[part] = _jsonable(getattr(self, part))
        if self.spectrum is not None:
            d["spectrum"]["s_max_over_edge"] = self.spectrum.s_max_over_edge
        return d


def _verdict(pvalues: dict[str, float], th: Thresholds) -> tuple[tuple[str, ...], str]:
    failed = tuple(
        t for t in TESTS if t in pvalues and math.isfinite(pvalues[t]) and pvalues[t] < th.per_test
    )
    return failed, ("structured" if failed else "random-like")


def analyse_matrix(
    W: torch.Tensor,
    *,
    name: str = "W",
    module: str = "",
    kind: str = "tensor",
    tensor_shape: tuple[int, ...] | None = None,
    spectrum: str = "auto",
    thresholds: Thresholds | None = None,
    device: str | torch.device = "cpu",
    seed: int | np.random.SeedSequence = 0,
) -> LayerResult:
    """All four tests on one 2-D matrix (rows = output units)."""
    t0 = time.perf_counter()
    th = thresholds or Thresholds()
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence([seed])
    rng = np.random.default_rng(ss)
    shape = tuple(tensor_shape) if tensor_shape is not None else tuple(W.shape)
    base: dict[str, Any] = {"name": name, "module": module, "kind": kind, "tensor_shape": shape}
    if W.ndim != 2:
        return LayerResult(
            **base,
            matrix_shape=None,
            status="skipped",
            reason=f"{W.ndim}-D tensor: no matrix view (bias, norm or scalar)",
        )
    m, n = (int(v) for v in W.shape)
    if not W.is_floating_point():
        return LayerResult(
            **base,
            matrix_shape=(m, n),
            status="skipped",
            reason=f"{str(W.dtype).replace('torch.', '')} tensor, not floating point",
        )
    N = m * n
    if N < MIN_ENTRIES or min(m, n) < 2:
        return LayerResult(
            **base,
            matrix_shape=(m, n),
            status="skipped",
            reason=f"too small for the statistics: {m}x{n} = {N} entries (need >= {MIN_ENTRIES} and 2 rows and columns)",
        )
    Wc = W.detach()
    if Wc.device.type != "cpu":
        Wc = Wc.cpu()
    flat = Wc.reshape(-1)
    *mom, nans, infs = entry_moments(flat)
    if nans or infs or not all(map(math.isfinite, mom)):
        what = (
            ", ".join(f"{c:,} {w}" for c, w in ((nans, "NaN"), (infs, "Inf")) if c)
            or "values that overflow float32 moments"
        )
        return LayerResult(
            **base,
            matrix_shape=(m, n),
            status="skipped",
            reason=f"contains {what} of {N:,} entries: not analysed",
        )
    if mom[1] == 0:
        return LayerResult(
            **base, matrix_shape=(m, n), status="skipped", reason="constant matrix (std 0)"
        )
    sample = entry_sample(flat, rng)
    entries = entry_stats(sample, N, tuple(mom))  # type: ignore[arg-type]
    arrays: dict[str, np.ndarray] = {}
    notes: list[str] = []
    k, Nmax = min(m, n), max(m, n)
    spec: SpectrumStats | None = None
    G: np.ndarray | None = None
    if k >= MIN_SPECTRUM_DIM:
        mode = (
            spectrum if spectrum != "auto" else ("approx" if k > sp.AUTO_EXACT_MAX_DIM else "exact")
        )
        Wd = W.detach().to(device) if str(device) != "cpu" else Wc
        if mode == "exact":
            ev, Gt, route = sp.exact_eigenvalues(Wd)
            G = Gt.cpu().numpy() if Gt is not None else None
            spec = spectrum_exact(ev, k, Nmax, route, th.per_test)
            arrays["sv"] = np.sqrt(ev[::-1]).astype(np.float32)
        else:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            qd = sp.slq(Wd if Wd.dtype == torch.float32 else Wd.float(), generator=g)
            mean, std = mom[0], mom[1]
            fro2 = (N - 1) * std * std + N * mean * mean  # ||W||_F^2 from the moments
            spec = spectrum_approx(qd, k, Nmax, fro2, th.per_test)
            arrays["slq_nodes"], arrays["slq_weights"] = qd.nodes, qd.weights
    else:
        notes.append(f"spectrum skipped: min(rows, cols) = {k} < {MIN_SPECTRUM_DIM}")
    if spec is not None and spec.spikes >= k // 2:
        notes.append(
            "no Marchenko-Pastur bulk: half the singular values or more lie above the fitted edge "
            "(spike count capped at k/2)"
        )
    indep = independence_stats(Wc, sample, G, rng)
    arrays["sample"] = np.sort(sample[:4096]).astype(
        np.float32
    )  # for the histogram and Q-Q figures
    pvalues = {
        "entries": entries.ks_p if th.entry_test == "ks" else entries.ad_p,
        "independence": indep.p,
    }
    if spec is not None:
        pvalues["spectrum"] = spec.ks_p
        pvalues["spikes"] = spec.spikes_p
    failed, verdict = _verdict(pvalues, th)
    return LayerResult(
        **base,
        matrix_shape=(m, n),
        status="analysed",
        reason="; ".join(notes),
        entries=entries,
        independence=indep,
        spectrum=spec,
        pvalues=pvalues,
        failed=failed,
        verdict=verdict,
        seconds=time.perf_counter() - t0,
        arrays=arrays,
    )


def reference_singular_values(layer: LayerResult, seed: int = 0) -> np.ndarray | None:
    """Singular values of a same-shape Gaussian matrix with the layer's sigma (exact, from
    the Laguerre model), for figures; None when the layer has no spectrum or is huge."""
    s = layer.spectrum
    if s is None or s.k > sp.AUTO_EXACT_MAX_DIM:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, s.k, s.N]))
    return np.sqrt(sp.laguerre_eigenvalues(s.k, s.N, rng)[::-1]) * s.sigma


# ---------------------------------------------------------------------------------------
# a whole model


@dataclass(frozen=True)
class RandomnessReport:
    """Per-layer results and the model's verdict. ``init`` holds the same analysis of the
    architecture's fresh initialisation when ``compare_init`` was asked for."""

    model: str
    layers: tuple[LayerResult, ...]
    thresholds: Thresholds
    spectrum: str
    device: str
    seed: int
    verdict: str  # random-like | structured
    summary: str
    seconds: float = 0.0
    init: RandomnessReport | None = None
    init_method: str | None = None

    @property
    def analysed(self) -> list[LayerResult]:
        return [layer for layer in self.layers if layer.analysed]

    @property
    def structured(self) -> list[LayerResult]:
        return [layer for layer in self.layers if layer.verdict == "structured"]

    def rows(self) -> list[dict[str, Any]]:
        rows = [layer.row() for layer in self.layers]
        if self.init is not None:
            by = {layer.name: layer.row() for layer in self.init.layers}
            for r in rows:
                ir = by.get(r["layer"], {})
                for c in (
                    "std",
                    "excess_kurtosis",
                    "entry_ks",
                    "spectrum_ks",
                    "spikes",
                    "s_max_over_edge",
                    "verdict",
                    "failed",
                ):
                    r[f"init_{c}"] = ir.get(c, math.nan if c not in ("verdict", "failed") else "")
        return rows

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model,
            "verdict": self.verdict,
            "summary": self.summary,
            "layers_analysed": len(self.analysed),
            "layers_structured": len(self.structured),
            "layers_skipped": len(self.layers) - len(self.analysed),
            "thresholds": {
                "alpha": self.thresholds.alpha,
                "per_test_alpha": self.thresholds.per_test,
                "entry_test": self.thresholds.entry_test,
            },
            "spectrum": self.spectrum,
            "device": self.device,
            "seed": self.seed,
            "seconds": self.seconds,
            "methods": METHODS,
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.init is not None:
            d["init"] = {
                "method": self.init_method,
                **{k: v for k, v in self.init.to_dict().items() if k != "methods"},
            }
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        """Every analysed layer's singular values (descending; SLQ nodes and weights for
        approximate spectra), keyed by layer name, for spectra.npz."""
        out: dict[str, np.ndarray] = {}
        for layer in self.analysed:
            for key, arr in layer.arrays.items():
                if key == "sv":
                    out[layer.name] = arr
                elif key.startswith("slq_"):
                    out[f"{layer.name}:{key}"] = arr.astype(np.float32)
        return out

    def to_markdown(self, figures: list[tuple[str, str]] | None = None) -> str:
        from .report import markdown_table

        cols = [
            "layer",
            "matrix",
            "std",
            "excess_kurtosis",
            "entry_ks",
            "entry_ks_p",
            "independence_p",
            "spectrum_ks",
            "spectrum_ks_p",
            "spikes",
            "s_max_over_edge",
            "sigma_mp",
            "verdict",
            "failed",
        ]
        if self.init is not None:
            cols += [
                "init_excess_kurtosis",
                "init_spectrum_ks",
                "init_spikes",
                "init_verdict",
                "init_failed",
            ]
        rows = [r for r in self.rows() if r["status"] == "analysed"]
        text = f"# Random-like weights: {self.model}\n\n**Verdict: {self.verdict}.** {self.summary}\n\n"
        text += (
            f"Thresholds: alpha = {self.thresholds.alpha:g} over 4 tests (each at "
            f"{self.thresholds.per_test:.4g}); entry test {self.thresholds.entry_test}; spectra {self.spectrum}.\n\n"
        )
        text += "## Layers\n\n" + markdown_table(rows, cols)
        skipped = [r for r in self.rows() if r["status"] != "analysed"]
        if skipped:
            text += "\n## Skipped tensors\n\n" + markdown_table(
                skipped, ["layer", "tensor_shape", "reason"]
            )
        if self.init is not None:
            text += f"\n## Fresh initialisation\n\n{self.init_method}. Verdict: {self.init.verdict}. {self.init.summary}\n"
        if figures:
            text += "\n## Figures\n\n" + "".join(f"![{alt}]({path})\n\n" for path, alt in figures)
        text += "\n## Method\n\n" + "".join(f"- **{k}**: {v}\n" for k, v in METHODS.items())
        return text


METHODS = {
    "matrix view": "Linear (out, in); Conv (C_out, C_in/groups*k...); fused in_proj_weight split into Q/K/V; "
    "other >=2-D weights (first dim, rest). Vectors and matrices with < 64 entries are skipped.",
    "entries": "moments of all entries; Lilliefors KS test (Gaussian with the layer's own mean and std; p-value from a "
    "Monte Carlo null table of Stephens' modified statistic) and Anderson-Darling (D'Agostino & Stephens p-value) on up "
    "to 65,536 entries; Gaussian / Laplace / Student-t maximum-likelihood fits compared by AIC on up to 16,384.",
    "independence": "Schott's sum of squared off-diagonal correlations between rows and between columns (random subsets "
    "of large sides), with Var(r^2) measured on W's entries shuffled (drawn at random from a 65,536-entry sample: same "
    "marginal, no structure), gamma upper tail; Bonferroni over the two sides. Mean |r| observed, i.i.d.-expected and "
    "shuffled are reported.",
    "spectrum": "exact: eigenvalues of the smaller Gram matrix (float32 syrk + symmetric eigensolver, float64 when the "
    "top-100 error estimate passes 5e-5); approx: stochastic Lanczos quadrature. KS distance of the bulk (spikes removed) "
    "from Marchenko-Pastur at sigma fitted from the bulk's trace; p-value from Monte Carlo Gaussian spectra (Laguerre "
    "model) of the same size.",
    "spikes": "eigenvalues above the Tracy-Widom (beta=1) quantile of a Gaussian matrix's largest eigenvalue (Johnstone "
    "2001, Ma 2012 centring), bulk sigma re-estimated without them until the count is stable.",
    "verdict": "structured when any test's p-value is below alpha/4 (Bonferroni), so at most alpha of i.i.d. Gaussian "
    "matrices is called structured; the model is structured when a layer is at alpha/(4 * layers).",
}


def _select_keys(
    tensors: Mapping[str, torch.Tensor], include: list[str] | None, exclude: list[str] | None
) -> list[str]:
    def hit(key: str, pats: list[str]) -> bool:
        mod = key.rpartition(".")[0]
        return any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(mod, p) for p in pats)

    keys = [k for k, v in tensors.items() if isinstance(v, torch.Tensor)]
    if include:
        keys = [k for k in keys if hit(k, include)]
    if exclude:
        keys = [k for k in keys if not hit(k, exclude)]
    return keys


def analyse_tensors(
    tensors: Mapping[str, torch.Tensor],
    module: nn.Module | None = None,
    *,
    model: str = "model",
    layers: list[str] | None = None,
    exclude: list[str] | None = None,
    spectrum: str = "auto",
    thresholds: Thresholds | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> RandomnessReport:
    """Every selected tensor: weight matrices analysed, the rest given a row saying why not."""
    t0 = time.perf_counter()
    th = (thresholds or Thresholds()).check()
    if spectrum not in SPECTRUM_MODES:
        raise OptionError(f"--spectrum {spectrum}: unknown mode", hint="use exact, approx or auto")
    wls = weight_layers(tensors, module, layers, exclude)
    if not wls:
        sel = f" matching --layers {' '.join(layers)}" if layers else ""
        raise NothingToAnalyseError(
            f"{model}: no weight matrix (a >= 2-D floating-point tensor){sel} to analyse",
            hint="see `netprobe layers MODEL` for the names --layers and --exclude match",
        )
    covered = {wl.key for wl in wls}
    kinds = (
        {name: type(m).__name__ for name, m in module.named_modules()} if module is not None else {}
    )
    results: list[LayerResult] = []
    order = _select_keys(tensors, layers, exclude)
    by_key: dict[str, list[WeightLayer]] = {}
    for wl in wls:
        by_key.setdefault(wl.key, []).append(wl)
    total = len(wls)
    done = 0
    for key in order:
        t = tensors[key]
        if key not in covered:
            mod = key.rpartition(".")[0]
            kind = kinds.get(mod, "tensor")
            if t.ndim < 2:
                why = "vector (bias, norm or buffer): no matrix view" if t.ndim == 1 else "scalar"
            else:
                why = f"{str(t.dtype).replace('torch.', '')} tensor, not floating point"
            if not t.is_floating_point() and t.ndim < 2:
                why = f"{str(t.dtype).replace('torch.', '')} {'vector' if t.ndim == 1 else 'scalar'} (buffer)"
            results.append(LayerResult(key, mod, kind, tuple(t.shape), None, "skipped", why))
            continue
        for wl in by_key[key]:
            if progress is not None:
                progress(done, total, wl.name)
            Wm = as_matrix(wl, tensors)
            res = analyse_matrix(
                Wm,
                name=wl.name,
                module=wl.module_path,
                kind=wl.kind,
                tensor_shape=wl.tensor_shape,
                spectrum=spectrum,
                thresholds=th,
                device=device,
                seed=np.random.SeedSequence([seed, done]),
            )
            results.append(res)
            done += 1
    if progress is not None:
        progress(total, total, "")
    analysed = [r for r in results if r.analysed]
    structured = [r for r in analysed if r.verdict == "structured"]
    L = max(len(analysed), 1)
    model_level = th.alpha / (len(TESTS) * L)
    strong = [
        r for r in analysed if any(math.isfinite(p) and p < model_level for p in r.pvalues.values())
    ]
    verdict = "structured" if strong else ("random-like" if analysed else "nothing analysed")
    summary = f"{len(analysed) - len(structured)} of {len(analysed)} weight matrices random-like"
    if structured:
        counts: dict[str, int] = {}
        for r in structured:
            for f in r.failed:
                counts[f] = counts.get(f, 0) + 1
        summary += "; structured by " + ", ".join(
            f"{t} ({c})" for t, c in sorted(counts.items(), key=lambda x: -x[1])
        )
    nskip = len(results) - len(analysed)
    if nskip:
        summary += f"; {nskip} tensors skipped (see the table)"
    return RandomnessReport(
        model,
        tuple(results),
        th,
        spectrum,
        str(device),
        seed,
        verdict,
        summary + ".",
        seconds=time.perf_counter() - t0,
    )


def fresh_init(lm: Any, seed: int = 0) -> tuple[dict[str, torch.Tensor], str]:
    """The architecture's fresh initialisation, as a state dict: built again by name when
    the architecture is known (its own init scheme), else a copy of the module with
    ``reset_parameters()`` called on every submodule that has one (PyTorch's default init)."""
    arch = getattr(lm, "arch", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch:
            if str(arch).startswith("timm:"):
                import timm

                mod = timm.create_model(str(arch)[5:], pretrained=False)
            else:
                from .archs import build

                mod = build(str(arch), **dict((lm.meta or {}).get("arch_kwargs") or {}))
            return dict(
                mod.state_dict()
            ), f"fresh initialisation of {arch} (its own init scheme, seed {seed})"
        if lm.module is None or isinstance(lm.module, torch.jit.ScriptModule):
            raise OptionError(
                f"--compare-init: the architecture of {lm.display} is not known",
                hint="pass it with --arch NAME (e.g. --arch resnet18), or use a netprobe checkpoint",
            )
        mod = copy.deepcopy(lm.module)
        n = 0
        for sub in mod.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
                n += 1
        if n == 0:
            raise OptionError(
                f"--compare-init: no submodule of {lm.display} can re-initialise itself (no reset_parameters)",
                hint="pass the architecture with --arch NAME",
            )
        return dict(
            mod.state_dict()
        ), f"PyTorch default initialisation (reset_parameters on {n} modules, seed {seed})"


def analyse(
    lm: Any,
    *,
    layers: list[str] | None = None,
    exclude: list[str] | None = None,
    spectrum: str = "auto",
    thresholds: Thresholds | None = None,
    compare_init: bool = False,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    include: list[str] | None = None,
) -> RandomnessReport:
    """Test the random-like weight hypothesis on every selected weight matrix of a loaded
    model (:class:`netprobe.loading.LoadedModel`). ``layers`` (alias ``include``) and
    ``exclude`` are glob patterns on tensor names and module paths."""
    layers = layers if layers is not None else include
    kw = dict(
        layers=layers,
        exclude=exclude,
        spectrum=spectrum,
        thresholds=thresholds,
        device=device,
        seed=seed,
    )
    rep = analyse_tensors(lm.tensors, lm.module, model=lm.display, progress=progress, **kw)  # type: ignore[arg-type]
    if not compare_init:
        return rep
    init_tensors, how = fresh_init(lm, seed)
    init = analyse_tensors(init_tensors, None, model=f"{lm.display} (fresh init)", **kw)  # type: ignore[arg-type]
    return RandomnessReport(
        rep.model,
        rep.layers,
        rep.thresholds,
        rep.spectrum,
        rep.device,
        rep.seed,
        rep.verdict,
        rep.summary,
        rep.seconds + init.seconds,
        init,
        how,
    )
