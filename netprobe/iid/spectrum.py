"""The spectrum of one weight matrix against Marchenko–Pastur, and its spikes (docs/science.md §4).

This module's one job: from W's singular values (exact Gram eigenvalues, or a stochastic
Lanczos quadrature for huge layers) the KS distance of the bulk's spectral distribution from
the Marchenko–Pastur law of W's aspect ratio and its p-value, the Tracy–Widom spike count,
and WeightWatcher's sigma_mp. The random-matrix machinery itself (laws, eigen routes, nulls)
lives in :mod:`netprobe.spectra`. Both statistics hold for i.i.d. entries of any law with
finite fourth moment (universality); their nulls are calibrated on Gaussian matrices
(docs/science.md §5).
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
    ||W||_F^2 (SLQ's trace), ``level`` the Tracy–Widom level of the spike count."""
    m, n = (int(v) for v in W.shape)
    k, N = min(m, n), max(m, n)
    if mode == "auto":
        mode = "approx" if k > sp.AUTO_EXACT_MAX_DIM else "exact"
    arrays: dict[str, np.ndarray] = {}
    if mode == "exact":
        ev, Gt, route = sp.exact_eigenvalues(W)
        arrays["sv"] = np.sqrt(ev[::-1]).astype(np.float32)
        gram = Gt.cpu().numpy() if Gt is not None else None
        return MatrixSpectrum(spectrum_exact(ev, k, N, route, level), gram, arrays)
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    qd = sp.slq(W if W.dtype == torch.float32 else W.float(), generator=g)
    arrays["slq_nodes"], arrays["slq_weights"] = qd.nodes, qd.weights
    return MatrixSpectrum(spectrum_approx(qd, k, N, fro2, level), None, arrays)


def reference_singular_values(layer: Any, seed: int = 0) -> np.ndarray | None:
    """Singular values of a same-shape Gaussian matrix with the layer's sigma (exact, from
    the Laguerre model), for figures; None when the layer has no spectrum or is huge.
    ``layer`` is a :class:`~netprobe.iid.LayerResult`."""
    s = layer.spectrum
    if s is None or s.k > sp.AUTO_EXACT_MAX_DIM:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, s.k, s.N]))
    return np.sqrt(sp.laguerre_eigenvalues(s.k, s.N, rng)[::-1]) * s.sigma
