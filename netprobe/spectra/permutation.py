"""Exchangeable nulls: a layer's own entries, shuffled (docs/science.md §5.1).

Under the null "the entries of W are i.i.d., of any law", every permutation of W's entries is
equally likely, so W's statistic is exchangeable with the same statistic on its entries
shuffled: a Monte Carlo p-value over shuffles is exact for every entry law (no Gaussian, no
fourth-moment assumption). Each draw costs one Gram eigen-decomposition, so this module gives:

* :func:`shuffled_eigenvalues` — Gram eigenvalues of the entries reshuffled into a k' x N'
  matrix (the full shape, or a reduced one of the same aspect ratio for large layers);
* :class:`SequentialPvalue` — Besag & Clifford's (1991) sequential Monte Carlo p-value: stop
  after ``h`` exceedances (p = h / draws) or at the cap (p = (g + 1) / (draws + 1)); when no
  draw reaches the observed value, the p-value below the Monte Carlo resolution comes from a
  location–scale fit of the Gaussian null's shape to the draws (:func:`fitted_tail`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .densities import tw1_cdf
from .exact import smaller_gram
from .nulls import NULL_LEVELS, NULL_Z, sf_from_table

# mean and sd of the TW1 law (Tracy & Widom 1996; Bornemann 2010, Table 3)
TW1_MEAN = -1.2065335745820
TW1_SD = math.sqrt(1.6077810345810)


#: the block size of the block-by-block draw (populations above PERMUTE_MAX): numpy's own
#: routine is used within a block, where an index array of the block's size is cheap
ARANGE_MAX = 1 << 20
#: populations up to this many entries are drawn as the head of one int32 permutation by
#: torch (32 MB at most): 3-4x faster than numpy's int64 permutation or its choice, which
#: made the draw the largest cost of a small layer's shuffled null (11 ms of a 25 ms draw)
PERMUTE_MAX = 1 << 23


def draw_indices(size: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct indices below ``size``, uniformly at random and in random order (a
    random permutation when ``k == size``), in memory proportional to ``k`` (and at most
    32 MB, an int32 permutation, for populations up to PERMUTE_MAX).

    numpy's ``choice(replace=False)`` builds an int64 index of the whole population when
    ``k`` is over 2% of it: 524 MB for a 32000 x 2048 embedding, twice the float32 matrix,
    which set the peak memory of a streamed checkpoint. Above PERMUTE_MAX the population is
    cut into blocks of at most ARANGE_MAX; how many of the ``k`` fall in each block is one
    multivariate hypergeometric draw, each block gives that many distinct indices, and the
    whole is shuffled. Exact: a uniformly random k-subset has hypergeometric block counts
    and, given them, uniform subsets within the blocks. Populations up to PERMUTE_MAX take
    the first ``k`` of one random permutation (int32; seeded from ``rng``).

    Callers gather with ``values.index_select(0, idx)``: on a CPU, advanced indexing
    (``values[idx]``) took ten times as long (16.7 ms against 1.6 ms for 884,736 float32
    entries and an int32 index), and it ran once per shuffled draw."""
    if size <= PERMUTE_MAX:
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return torch.randperm(size, generator=g, dtype=torch.int32)[: min(k, size)].numpy()
    if k >= size:
        return rng.permutation(size)
    starts = np.arange(0, size, ARANGE_MAX, dtype=np.int64)
    sizes = np.minimum(starts + ARANGE_MAX, size) - starts
    counts = rng.multivariate_hypergeometric(sizes, k)
    out = np.empty(k, np.int64)
    at = 0
    for start, n, c in zip(starts, sizes, counts, strict=True):
        out[at : at + c] = start + rng.choice(int(n), int(c), replace=False)
        at += c
    rng.shuffle(out)
    return out


def shuffled_eigenvalues(
    values: torch.Tensor, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Ascending eigenvalues (float64) of the smaller Gram matrix of a ``shape`` matrix filled
    with entries drawn without replacement from ``values`` (a flat float32 tensor with at least
    as many entries): a uniformly random permutation of them when the sizes match."""
    m, n = shape
    # a reduced shape draws its m*n entries directly: permuting all of a 4096 x 14336
    # layer's 59M entries to keep the first million took 4 s a draw, the draw itself 0.1 s
    idx = torch.from_numpy(draw_indices(len(values), m * n, rng))
    G = smaller_gram(values.index_select(0, idx).reshape(m, n), torch.float32)
    return np.clip(torch.linalg.eigvalsh(G, UPLO="U").double().cpu().numpy(), 0.0, None)


def shuffled_lambda_max(
    values: torch.Tensor, shape: tuple[int, int], rng: np.random.Generator
) -> float:
    """The largest eigenvalue of the smaller Gram matrix of a ``shape`` matrix filled with
    ``values`` in a uniformly random order (a permutation of them when the sizes match), by
    Lanczos on W^T W as an operator (two matrix-vector products a step, no Gram matrix): the
    spike statistic's full-size shuffled null for layers too large to decompose per draw."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    m, n = shape
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    vals = values.detach().cpu()
    small = torch.int32 if len(vals) < 2**31 else torch.int64  # half the index's memory
    perm = torch.randperm(len(vals), generator=g, dtype=small)[: m * n]
    A = vals.index_select(0, perm).reshape(m, n).numpy()
    k = min(m, n)

    def gram(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.float32, copy=False).ravel()
        return (A @ (A.T @ v)) if m <= n else (A.T @ (A @ v))

    op = LinearOperator((k, k), matvec=gram, dtype=np.float32)
    v0 = np.random.default_rng(int(rng.integers(2**62))).standard_normal(k).astype(np.float32)
    return float(eigsh(op, k=1, which="LA", tol=1e-6, v0=v0, return_eigenvectors=False)[0])


def fitted_tail(x: float, draws: np.ndarray, shape: str) -> float:
    """Upper-tail probability of ``x`` under the law ``shape`` ("ks": the Gaussian KS-to-MP
    null's standardised shape, NULL_Z; "tw": TW1; "z": the normal, for sums of many terms) moved and scaled to the draws' mean and sd:
    the p-value below the Monte Carlo resolution, when no draw reaches ``x``."""
    if len(draws) < 2:
        return math.nan
    mu, sd = float(np.mean(draws)), float(np.std(draws, ddof=1))
    if not sd > 0:
        return 0.0 if x > mu else 1.0
    z = (x - mu) / sd
    if shape == "ks":
        return sf_from_table(z, NULL_Z, NULL_LEVELS)
    if shape == "z":
        from scipy.special import ndtr

        return float(ndtr(-z))
    return 1.0 - tw1_cdf(TW1_MEAN + TW1_SD * z)


@dataclass
class SequentialPvalue:
    """Besag–Clifford sequential Monte Carlo p-value of one observed statistic (upper tail).

    Feed draws with :meth:`add` until :attr:`done`. The p-value (:meth:`result`) is valid at
    every stopping point the rule allows: h / draws when the h-th exceedance stopped it;
    (g + 1) / (draws + 1) at the cap with g < h exceedances; and, when no draw reached the
    observed value (g = 0), the fitted tail (:func:`fitted_tail`) instead, since (g + 1) /
    (draws + 1) cannot go below the Monte Carlo resolution (the fitted value is capped there, so
    a decision at a level >= 1 / (cap + 1) is the exact Monte Carlo one)."""

    observed: float
    shape: str  # "ks", "tw" or "z": the law used for the fitted tail
    h: int
    cap: int
    draws: list[float] = field(default_factory=list)
    exceed: int = 0
    stopped: str = ""  # "", "exceedances" or "cap"

    def add(self, value: float) -> None:
        if self.stopped:
            return
        self.draws.append(value)
        self.exceed += value >= self.observed
        n = len(self.draws)
        if self.exceed >= self.h:
            self.stopped = "exceedances"
        elif n >= self.cap:
            self.stopped = "cap"

    @property
    def done(self) -> bool:
        return bool(self.stopped)

    def fit(self) -> float:
        return fitted_tail(self.observed, np.asarray(self.draws), self.shape)

    def result(self) -> tuple[float, str]:
        """(p, how): how is "sequential" (h exceedances), "monte-carlo" (the cap) or
        "fitted" (no draw reached the statistic: the location–scale fit's tail)."""
        n = len(self.draws)
        if self.stopped == "exceedances":
            return self.h / n, "sequential"
        if self.exceed == 0 and n >= 2:
            return min(self.fit(), 1.0 / (n + 1)), "fitted"
        return (self.exceed + 1) / (n + 1), "monte-carlo"
