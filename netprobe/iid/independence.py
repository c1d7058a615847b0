"""Independence of a weight matrix's rows and columns (docs/science.md §4).

This module's one job: are the rows (output units) or the columns (inputs) of W more
correlated than independent vectors would be? Schott's (2005) sum of squared off-diagonal
correlations; its mean K/(L-1) holds for i.i.d. entries of any law, and its variance is
measured on W's own entries randomly permuted (same marginal, no structure), so heavy or
light tails alone do not count as dependence.

That moment-matched gamma p-value is a screen. Its shape is right for light and moderate tails,
but under infinite-fourth-moment laws (Student-t(3)) the sum's upper tail is heavier than a
gamma's, and the variance estimate from a few thousand permuted pairs runs low; it flagged t(3)
layers at 2.7% for a level of 1.67%. A side whose screen p-value is below :data:`SCREEN` is
decided by the exact null instead: the same statistic on the same vectors' entries shuffled
(exchangeable when W's entries are i.i.d.), a Besag–Clifford sequential p-value, as for the
spectrum (docs/science.md §4.2, §5.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..spectra.permutation import SequentialPvalue

GRAM_VECTORS = 512  # the Gram matrix's side: correlations of up to this many vectors from it
SIDE_VECTORS = 256  # the other side: correlations of up to this many vectors
PERM_VECTORS = 128  # vectors of permuted entries for the marginal-only baseline
PERM_PAIRS = 4000  # at least this many permuted pairs (more batches when a side has few vectors)
# a side whose gamma p-value is below this is decided by its shuffled null (the spectrum's
# screen, iid.spectrum.SCREEN: 6x the default per-test level 0.05 / 3)
SCREEN = 0.1
PERM_H = 3  # Besag-Clifford: stop after this many shuffles reach the observed statistic
PERM_CAP = 200  # shuffles at most (ceil(1 / level) below this)
DEFAULT_LEVEL = 0.05 / 3


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
    null: str = "gamma"  # gamma (moment-matched screen) | shuffled (the exact null decided)
    null_draws: int = 0  # shuffles drawn for the exact null


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
        """From a correlation matrix R (p, p) of which only the strict upper triangle is
        read (each pair once): a syrk product fills no more."""
        p = R.shape[0]
        U = np.triu(np.asarray(R, dtype=np.float64), 1)
        U2 = U * U
        return _Pairs(
            p * (p - 1) // 2, float(np.abs(U).sum()), float(U2.sum()), float((U2 * U2).sum())
        )

    def __add__(self, o: _Pairs) -> _Pairs:
        return _Pairs(self.K + o.K, self.abs + o.abs, self.sq + o.sq, self.quad + o.quad)


def _pairs_from_vectors(X: torch.Tensor) -> _Pairs:
    """Correlations between the rows of X (p, L); rows with zero variance are left out.
    On a CPU with p <= L they come from X's Gram matrix and row means (_pairs_from_gram:
    no centred copy of X, a fifth of a shuffled draw's time) unless centring there would
    cancel too many digits."""
    from ..spectra import smaller_gram  # syrk: the upper triangle, half the flops

    if X.device.type == "cpu" and X.shape[0] <= X.shape[1]:
        Xf = X.float()
        G = smaller_gram(Xf).double().numpy()
        r = _pairs_from_gram(G, Xf.mean(dim=1, dtype=torch.float64).numpy(), int(X.shape[1]))
        if r is not None:
            return r
    Xc = X.float()
    Xc = Xc - Xc.mean(dim=1, keepdim=True)
    norms = Xc.norm(dim=1)
    keep = norms > 0
    Xc = Xc[keep] / norms[keep, None]
    if Xc.device.type == "cpu" and Xc.shape[0] <= Xc.shape[1]:
        return _Pairs.of(smaller_gram(Xc).numpy())
    return _Pairs.of((Xc @ Xc.T).cpu().numpy())  # (p, p)


def _shuffled_p(
    X: torch.Tensor, observed: float, level: float, rng: np.random.Generator
) -> tuple[float, int]:
    """Sequential Monte Carlo p-value of Schott's T = sum of squared off-diagonal correlations
    of the rows of X (p', L) against X's own entries shuffled into the same shape: exact for
    i.i.d. entries of any law (every permutation is equally likely under the null)."""
    flat = X.reshape(-1).float()
    cap = max(PERM_H, min(PERM_CAP, math.ceil(1.0 / level)))
    seq = SequentialPvalue(observed, "z", PERM_H, cap)
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    small = torch.int32 if flat.numel() < 2**31 else torch.int64  # int32: twice as fast
    while not seq.done:
        perm = torch.randperm(flat.numel(), generator=g, dtype=small)
        seq.add(_pairs_from_vectors(flat.index_select(0, perm).reshape(X.shape)).sq)
    return seq.result()[0], len(seq.draws)


def _pairs_from_gram(G: np.ndarray, mu: np.ndarray, L: int) -> _Pairs | None:
    """The same from the Gram matrix of the vectors (only its upper triangle is read) and
    their means; None when centring would cancel too many digits."""
    U = np.triu(G)
    C = U - L * np.outer(mu, mu)  # centred Gram; only its upper triangle is read (_Pairs.of)
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

    @property
    def null(self) -> str:
        """ "shuffled" when either side's p-value came from its shuffled null, else "gamma"."""
        return "shuffled" if "shuffled" in (self.rows.null, self.cols.null) else "gamma"


def independence_stats(
    W: torch.Tensor,
    pool: np.ndarray,
    G: np.ndarray | None,
    rng: np.random.Generator,
    level: float = DEFAULT_LEVEL,
) -> IndependenceStats:
    """Row and column correlations. The smaller side comes from the Gram matrix already
    computed for the spectrum (up to GRAM_VECTORS vectors); the larger side from a random
    subset of SIDE_VECTORS vectors; the permuted baseline from PERM_VECTORS vectors of
    entries drawn with replacement from ``pool`` (W's entries, or a uniform random sample
    of up to ``entries.ENTRY_SAMPLE`` of them: the same marginal, no structure). A side whose
    gamma p-value is below SCREEN is decided by its vectors' entries shuffled (``level``, the
    per-test level, sets how many shuffles can resolve it)."""
    m, n = W.shape
    pool_t = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32))
    out: dict[str, SideStats] = {}
    for side in ("rows", "cols"):
        p, L = (m, n) if side == "rows" else (n, m)
        # this side's vectors are the Gram's: spectra.smaller_gram is W W^T (rows) when
        # m <= n, else W^T W (columns); a square W's Gram is the rows' only
        small = (side == "rows") == (m <= n)
        take = np.sort(
            rng.choice(p, min(p, GRAM_VECTORS if small else SIDE_VECTORS), replace=False)
        )
        t = torch.from_numpy(take.astype(np.int64))
        r = None

        def vectors(t: torch.Tensor = t, side: str = side) -> torch.Tensor:
            # (p', L): a copy, made only when needed (the Gram route needs none: a copy of
            # every column of a 32000 x 2048 embedding set a streamed model's peak memory)
            return W.index_select(0, t) if side == "rows" else W.index_select(1, t).T

        if small and G is not None:
            mu = W.mean(dim=1 if side == "rows" else 0).index_select(0, t).double().numpy()
            r = _pairs_from_gram(np.asarray(G[np.ix_(take, take)], dtype=np.float64), mu, L)
        X: torch.Tensor | None = None
        if r is None:
            X = vectors()
            r = _pairs_from_vectors(X)
        pp = min(p, PERM_VECTORS)
        # enough permuted pairs (>= PERM_PAIRS) for a steady Var(r^2) even when p is small
        reps = max(1, math.ceil(PERM_PAIRS / max(pp * (pp - 1) // 2, 1)))
        perm = _Pairs(0, 0.0, 0.0, 0.0)
        for _ in range(reps):
            idx = torch.from_numpy(rng.integers(0, len(pool), size=pp * L))
            perm = perm + _pairs_from_vectors(
                pool_t.index_select(0, idx).reshape(pp, L)
            )  # (pp, L): W's entries, shuffled
        st = _side(r, L, perm, len(take))
        if math.isfinite(st.p) and st.p < SCREEN:
            # each side is tested at level / 2 (the two are combined by Bonferroni): the shuffles
            # must resolve that, or a rejection would rest on the fitted tail alone
            p_exact, draws = _shuffled_p(vectors() if X is None else X, r.sq, level / 2, rng)
            st = replace(st, p=p_exact, null="shuffled", null_draws=draws)
        out[side] = st
    ps = [s.p for s in out.values() if math.isfinite(s.p)]
    return IndependenceStats(out["rows"], out["cols"], min(1.0, 2 * min(ps)) if ps else math.nan)
