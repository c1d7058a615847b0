"""The spectrum of one weight matrix against Marchenko–Pastur, and its spikes (docs/science.md §4).

This module's one job: from the singular values of the *centred* W (the mean component is
reported apart, :mod:`netprobe.iid.entries`) — exact Gram eigenvalues, or a stochastic Lanczos
quadrature for huge layers — the KS distance of the bulk's spectral distribution from the
Marchenko–Pastur law of W's aspect ratio, the Tracy–Widom spike statistic, their p-values, and
the descriptive MP-scale fit. The random-matrix machinery itself (laws, eigen routes, nulls)
lives in :mod:`netprobe.spectra`.

The p-values (docs/science.md §5.1): both statistics are first read against their Gaussian
null (the Laguerre KS table, TW1). When that p-value is below :data:`SCREEN`, the exact null
"i.i.d. entries of any law" decides instead: the same statistics on W's own entries shuffled
(exchangeable under the null), with a sequential Monte Carlo p-value. A layer that passes the
Gaussian null at SCREEN needs no draws: measured, the shuffled null's upper quantiles are at or
above the Gaussian ones for every heavy-tailed law, and a light-tailed layer (uniform) with a
Gaussian p above SCREEN never reaches the shuffled null's per-test level (docs/science.md §5.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import spectra as sp
from ..errors import OptionError

SPECTRUM_MODES = ("exact", "approx", "auto")
MIN_SPECTRUM_DIM = 8  # min(rows, cols) below this: no spectrum test
# the shuffled null runs for a test whose Gaussian-null p-value is below this (6x the default
# per-test level 0.05 / 3): see the module docstring and docs/science.md §5.1
SCREEN = 0.1
PERM_H = 3  # Besag-Clifford: stop after this many shuffles reach the observed statistic
# shuffles at most: ceil(1 / level), the fewest that can resolve the per-test level (60 at the
# default 0.05 / 3: p = 1 / 61 when no shuffle reaches the statistic), and never above this
PERM_CAP = 200
# layers with min(rows, cols) above this draw their shuffled null at this size (same aspect
# ratio, entries drawn from the layer's own): one exact draw at 4096 costs seconds
PERM_MAX_DIM = 512
# ... except the spike test's null when W's largest entry is heavy enough to move lambda_max at
# W's own size: max_ij W_ij^2 above this share of the MP edge sigma^2 (sqrt(k) + sqrt(N))^2.
# For tails without a fourth moment (Student-t(3), t(4)) lambda_max is driven by the largest
# entries, whose size grows with the matrix (Auffinger, Ben Arous & Peche 2009), so a reduced
# null understates it (measured: t(3) 1024x2048 flagged 4%, 2048x4096 15% at 1.6%; t(4) 8% and
# 18%). Those layers draw lambda_max at full size by Lanczos instead (docs/science.md §5.1).
# Gaussian, Laplace and t(5) layers of these sizes stay below 0.03.
HEAVY_EDGE_SHARE = 0.05
# such a layer's bulk KS test is not run when its Gaussian p-value would need the shuffled null
# (it says so): a full-size null costs an eigendecomposition per shuffle
UNTESTED_HEAVY = "untested: heavy-tailed entries at this size"


def check_spectrum_mode(spectrum: str) -> str:
    if spectrum not in SPECTRUM_MODES:
        raise OptionError(f"--spectrum {spectrum}: unknown mode", hint="use exact, approx or auto")
    return spectrum


@dataclass(frozen=True)
class SpectrumStats:
    method: str  # gram-f32 | gram-f64 | svd-f64 | slq
    k: int  # min(rows, cols): number of singular values
    N: int  # max(rows, cols)
    aspect: float  # lam = k / N
    sigma: float  # entry std fitted to the bulk (trace without the spikes)
    ks: float  # KS distance of the bulk's ESD from MP
    ks_p: float  # the verdict's p-value (null below)
    spikes: int  # eigenvalues above the Gaussian TW edge at the per-test level
    spike_fraction: float
    spikes_p: float  # p-value of the largest singular value (null below)
    s_max: float  # largest singular value of W / (sigma sqrt(N))
    edge: float  # MP bulk edge of those: 1 + sqrt(lam)
    sigma_fit: float  # MP scale fitted to the bulk, eigenvalues at mean 1 (not WeightWatcher's)
    spikes_fit: int  # eigenvalues above that fitted bulk's edge + a TW margin
    ks_z: float = math.nan  # KS statistic standardised by the Gaussian null: (k D - mean) / sd
    tw_z: float = math.nan  # largest eigenvalue standardised by TW centring and scale
    ks_p_gauss: float = math.nan  # p-values against the Gaussian nulls (Laguerre table, TW1)
    spikes_p_gauss: float = math.nan
    null: str = "gaussian"  # gaussian | shuffled | shuffled KxN (reduced) | gaussian (slq)
    null_draws: int = 0  # shuffles drawn (0: the Gaussian null decided)
    ks_how: str = "gaussian"  # gaussian | sequential | monte-carlo | fitted
    spikes_how: str = "gaussian"

    @property
    def s_max_over_edge(self) -> float:
        return self.s_max / self.edge


def _fit_spikes(x_mean1: np.ndarray, lam: float, sigma_fit: float, k: int) -> int:
    """Eigenvalues (scaled to mean 1) above bulk_max + sqrt(TW), bulk_max = (sigma_fit (1 +
    sqrt(lam)))^2, TW = sqrt(lam) bulk_max^(2/3) k^(-2/3): WeightWatcher's edge formula on
    netprobe's sigma fit (docs/science.md §4.3 says why the counts differ from that tool's)."""
    if not math.isfinite(sigma_fit):
        return -1
    bulk_max = (sigma_fit * (1 + math.sqrt(lam))) ** 2
    tw = math.sqrt(lam) * bulk_max ** (2 / 3) * k ** (-2 / 3)
    return int(np.count_nonzero(x_mean1 > bulk_max + math.sqrt(tw)))


def ks_statistic(ev: np.ndarray, k: int, N: int, alpha: float) -> tuple[sp.Spikes, float, float]:
    """(spikes, D, z) from the k ascending Gram eigenvalues: the spikes at TW level ``alpha``
    removed, the bulk on the MP scale at the bulk's sigma, D its KS distance from MP and
    z = (k_b D - mean) / sd standardised by the Gaussian null of size k_b = k - spikes."""
    spk = sp.count_spikes(ev, k, N, alpha)
    r = spk.count
    x = ev[: k - r] / (spk.sigma2 * (N - r))  # the bulk on the MP scale (mean 1)
    D = sp.ks_to_mp(x, (k - r) / (N - r))
    m, s = sp.spectrum_null(k - r)
    return spk, D, ((k - r) * D - m) / s


def tw_statistic(ev: np.ndarray, k: int, N: int) -> float:
    """The largest eigenvalue over sigma^2 = trace / (k N), centred and scaled for TW1."""
    s2 = float(ev.sum()) / (k * N)
    if not s2 > 0:
        return math.nan
    mu, s = sp.tw_center_scale(k, N)
    return (float(ev[-1]) / s2 - mu) / s


def spectrum_exact(ev: np.ndarray, k: int, N: int, method: str, alpha: float) -> SpectrumStats:
    """Statistics from the k eigenvalues of the smaller Gram matrix (ascending), with their
    Gaussian-null p-values (the shuffled null is :func:`shuffled_null`'s)."""
    spk, D, ks_z = ks_statistic(ev, k, N, alpha)
    tw_z = tw_statistic(ev, k, N)
    lam = k / N
    xm = ev / max(float(ev.mean()), 1e-300)
    sfit = sp.fit_sigma_mp(xm, lam)
    ks_p = sp.sf_from_table(ks_z, sp.NULL_Z, sp.NULL_LEVELS) if math.isfinite(D) else math.nan
    tw_p = 1.0 - sp.tw1_cdf(tw_z) if math.isfinite(tw_z) else 0.0
    return SpectrumStats(
        method,
        k,
        N,
        lam,
        math.sqrt(spk.sigma2),
        D,
        ks_p,
        spk.count,
        spk.count / k,
        tw_p,
        math.sqrt(float(ev[-1]) / (spk.sigma2 * N)),
        1 + math.sqrt(lam),
        sfit,
        _fit_spikes(xm, lam, sfit, k),
        ks_z=ks_z,
        tw_z=tw_z,
        ks_p_gauss=ks_p,
        spikes_p_gauss=tw_p,
    )


def null_shape(k: int, N: int, transposed: bool) -> tuple[int, int]:
    """The shape the shuffled null is drawn at: W's own, or PERM_MAX_DIM x N' with the same
    aspect ratio for larger layers (in W's orientation)."""
    if k <= PERM_MAX_DIM:
        kk, nn = k, N
    else:
        kk, nn = PERM_MAX_DIM, max(PERM_MAX_DIM, round(N * PERM_MAX_DIM / k))
    return (nn, kk) if transposed else (kk, nn)


def null_cap(level: float) -> int:
    """Shuffles allowed: ceil(1 / level), so that p = 1 / (draws + 1) < level when no shuffle
    reaches the statistic (a Monte Carlo p-value that can reject exactly at the level), at most
    PERM_CAP; below 1 / PERM_CAP the level is resolved by the fitted tail."""
    return max(PERM_H, min(PERM_CAP, math.ceil(1.0 / level)))


def heavy_entries(W: torch.Tensor, fro2: float) -> bool:
    """Whether W's largest entry is a sizeable share of the MP edge (HEAVY_EDGE_SHARE): the
    layers whose spike null must be drawn at full size."""
    m, n = (int(v) for v in W.shape)
    edge = fro2 / (m * n) * (math.sqrt(m) + math.sqrt(n)) ** 2
    lo, hi = torch.aminmax(W)  # no |W| temporary: a full-size copy on an embedding
    return bool(edge > 0 and max(-float(lo), float(hi)) ** 2 > HEAVY_EDGE_SHARE * edge)


def shuffled_null(
    st: SpectrumStats,
    values: torch.Tensor,
    shape: tuple[int, int],
    level: float,
    rng: np.random.Generator,
    full_shape: tuple[int, int] | None = None,
) -> SpectrumStats:
    """Redo the p-values whose Gaussian-null value is below SCREEN against the exact null:
    the same standardised statistics on ``values`` (W's centred entries, flat float32)
    shuffled into ``shape`` (W's, or :func:`null_shape`'s reduced one). Sequential Monte
    Carlo (Besag–Clifford, h = PERM_H, cap :func:`null_cap`: a null layer rejects with
    probability 1 / (cap + 1) <= level); tests that pass the Gaussian null keep its p-value
    (docs/science.md §5.1). With ``full_shape`` (W's, when its entries are heavy: see
    :func:`heavy_entries`) the spike statistic's draws are W's size, lambda_max by Lanczos."""
    from dataclasses import replace

    todo = {
        name: sp.SequentialPvalue(obs, law, PERM_H, null_cap(level))
        for name, obs, p, law in (
            ("ks", st.ks_z, st.ks_p, "ks"),
            ("tw", st.tw_z, st.spikes_p, "tw"),
        )
        if math.isfinite(obs) and math.isfinite(p) and p < SCREEN
    }
    if not todo:
        return st
    m, n = shape
    k, N = min(m, n), max(m, n)
    draws = 0
    untested: dict[str, Any] = {}
    if full_shape is not None and "ks" in todo:
        # the bulk's KS null would need full-size eigendecompositions per shuffle (seconds
        # each at 4096 a side); the reduced one flags t(3) 1024x2048 layers 4 of 4 times
        todo.pop("ks")
        untested = {"ks_p": math.nan, "ks_how": UNTESTED_HEAVY}
    tw_full = full_shape is not None and "tw" in todo
    if tw_full and full_shape is not None:
        # same trace as W's (a permutation), so the statistic needs lambda_max alone
        s2 = float(values.double().square().sum()) / (st.k * st.N)
        mu, sc = sp.tw_center_scale(st.k, st.N)
        tw = todo.pop("tw")
        while not tw.done:
            tw.add((sp.shuffled_lambda_max(values, full_shape, rng) / s2 - mu) / sc)
        draws = len(tw.draws)
    while not all(s.done for s in todo.values()):
        ev = sp.shuffled_eigenvalues(values, shape, rng)
        draws += 1
        if "ks" in todo:
            todo["ks"].add(ks_statistic(ev, k, N, level)[2])
        if "tw" in todo:
            todo["tw"].add(tw_statistic(ev, k, N))
    if tw_full:
        todo["tw"] = tw
    out = {name: s.result() for name, s in todo.items()}
    if not out:
        return replace(st, **untested)
    reduced = k < st.k
    label = f"shuffled {m}x{n}" if reduced else "shuffled"
    if tw_full:
        label += " (spikes: full size)"
    kw: dict[str, Any] = {"null": label, "null_draws": draws, **untested}
    if "ks" in out:
        kw["ks_p"], kw["ks_how"] = out["ks"]
    if "tw" in out:
        kw["spikes_p"], kw["spikes_how"] = out["tw"]
    return replace(st, **kw)


def spectrum_approx(qd: sp.Quadrature, k: int, N: int, fro2: float, alpha: float) -> SpectrumStats:
    """Statistics from an SLQ quadrature; the KS p-value comes from the same estimator run
    on the Laguerre model of a same-shape Gaussian matrix (a Gaussian null: §5.6)."""
    from scipy.special import ndtr

    probes, steps = qd.nodes.shape
    spk = sp.count_spikes_quadrature(qd, k, N, fro2, alpha)
    lam = k / N
    scaled = qd.scaled(1.0 / (spk.sigma2 * N))
    D = sp.ks_quadrature_to_mp(scaled, lam)
    m, s = sp.approx_null(k, N, probes, steps)
    p = float(ndtr(-(math.log(max(D, 1e-12)) - m) / s))
    mean = fro2 / k
    sfit = sp.fit_sigma_mp(qd.nodes.ravel() / mean, lam, weights=qd.weights.ravel())
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
        sfit,
        _fit_spikes(xm, lam, sfit, k),
        ks_p_gauss=p,
        spikes_p_gauss=spk.p_max,
        null="gaussian (slq)",
    )


@dataclass(frozen=True)
class MatrixSpectrum:
    """The spectrum step's output: the statistics, the Gram matrix the exact route computed
    (reused for the row or column correlations; None on the SLQ route) and the arrays kept
    for spectra.npz and the figures."""

    stats: SpectrumStats
    gram: np.ndarray | None
    arrays: dict[str, np.ndarray]


def matrix_spectrum(
    W: torch.Tensor,
    *,
    mode: str,
    fro2: float,
    level: float,
    rng: np.random.Generator,
) -> MatrixSpectrum:
    """Spectrum statistics of W (on its device) by the exact route or SLQ (``mode``:
    exact, approx or auto: SLQ above ``spectra.AUTO_EXACT_MAX_DIM`` per side). ``fro2`` is
    ||W||_F^2 (SLQ's trace), ``level`` the per-test level (the Tracy–Widom level of the spike
    count, and what the shuffled null must resolve). W is centred already (mean 0)."""
    m, n = (int(v) for v in W.shape)
    k, N = min(m, n), max(m, n)
    if mode == "auto":
        mode = "approx" if k > sp.AUTO_EXACT_MAX_DIM else "exact"
    arrays: dict[str, np.ndarray] = {}
    if mode == "exact":
        ev, Gt, route = sp.exact_eigenvalues(W)
        arrays["sv"] = np.sqrt(ev[::-1]).astype(np.float32)
        gram = Gt.cpu().numpy() if Gt is not None else None
        st = spectrum_exact(ev, k, N, route, level)
        values = W.detach().reshape(-1).float()
        shape = null_shape(k, N, m > n)
        full = (m, n) if min(shape) < k and heavy_entries(W, float(ev.sum())) else None
        st = shuffled_null(st, values, shape, level, rng, full)
        return MatrixSpectrum(st, gram, arrays)
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    qd = sp.slq(W if W.dtype == torch.float32 else W.float(), generator=g)
    arrays["slq_nodes"], arrays["slq_weights"] = qd.nodes, qd.weights
    return MatrixSpectrum(spectrum_approx(qd, k, N, fro2, level), None, arrays)


def reference_singular_values(layer: Any, seed: int = 0) -> np.ndarray | None:
    """Singular values of a same-shape Gaussian matrix with the layer's sigma (exact, from
    the Laguerre model), for figures; None when the layer has no spectrum or is huge.
    ``layer`` is a :class:`~netprobe.iid.LayerResult`."""
    got = _reference_draw(layer, seed)
    if got is None:
        return None
    s, rng = got
    return np.sqrt(sp.laguerre_eigenvalues(s.k, s.N, rng)[::-1]) * s.sigma


def _reference_draw(layer: Any, seed: int) -> tuple[SpectrumStats, np.random.Generator] | None:
    """The layer's spectrum and the generator its reference Gaussian matrix is drawn from
    (seeded by the run's seed and the shape); None without a spectrum or above the exact
    route's size."""
    s = layer.spectrum
    if s is None or s.k > sp.AUTO_EXACT_MAX_DIM:
        return None
    return s, np.random.default_rng(np.random.SeedSequence([seed, s.k, s.N]))


def reference_density(layer: Any, bins: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """The density over ``bins`` of singular value / (sigma sqrt(N)) (the layer figure's
    axis) of the same-shape Gaussian matrix :func:`reference_singular_values` draws: the
    same histogram, from Sturm counts on the same Laguerre draw at the bins' edges rather
    than from its eigenvalues (ten times cheaper at 4096 a side). None as there."""
    got = _reference_draw(layer, seed)
    if got is None:
        return None
    s, rng = got
    edges = np.asarray(bins, dtype=np.float64)
    # sv / (sigma sqrt(N)) = sqrt(lambda / N), lambda an eigenvalue of the N(0, 1) model
    counts = np.diff(sp.laguerre_counts(s.k, s.N, rng, s.N * edges * edges))
    inside = counts.sum()
    return counts / (inside * np.diff(edges)) if inside else None
