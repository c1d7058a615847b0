"""One weight matrix, step by step: :func:`analyse_matrix` runs the named steps (entries,
spectrum, independence, verdict, then the random-matrix headline: singular vectors, level
spacings, the low-rank residual, the tail fit) and returns its :class:`LayerResult`. The
statistics live in the sibling modules (docs/science.md §2.1, §4, §6); walking a model's
tensors is :mod:`.analyse`'s job.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from .entries import EntryStats, entry_moments, entry_sample, entry_stats
from .independence import IndependenceStats, independence_stats
from .lowrank import LowRank, energy_share, residual_matrix
from .powerlaw import PowerLawFit, fit_powerlaw
from .report import LayerResult
from .spacing import SpacingStats, spacing_stats
from .spectrum import (
    MIN_SPECTRUM_DIM,
    UNTESTED_HEAVY,
    MatrixSpectrum,
    matrix_spectrum,
    null_shape,
)
from .vectors import VECTORS, VectorStats, top_singular, vector_stats
from .verdict import (
    Thresholds,
    headline,
    is_gaussian,
    layer_verdict,
    rmt_failed,
    rmt_level,
)

MIN_ENTRIES = 64  # fewer entries: the layer is skipped


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _unfit_reason(W: torch.Tensor) -> str | None:
    """Why W cannot be analysed as a matrix at all (shape, dtype, size), or None."""
    if W.ndim != 2:
        return f"{W.ndim}-D tensor: no matrix view (bias, norm or scalar)"
    m, n = (int(v) for v in W.shape)
    if not W.is_floating_point():
        return f"{_dtype_name(W)} tensor, not floating point"
    if m * n < MIN_ENTRIES or min(m, n) < 2:
        return (
            f"too small for the statistics: {m}x{n} = {m * n} entries "
            f"(need >= {MIN_ENTRIES} and 2 rows and columns)"
        )
    return None


def _entries_step(
    flat: torch.Tensor, rng: np.random.Generator
) -> tuple[EntryStats, np.ndarray, tuple[float, float, float, float]] | str:
    """Moments of all entries, a random sample of them, the entry law and the Gaussianity
    tests; or why the entries cannot be analysed (NaN/Inf, constant)."""
    n = flat.numel()
    *mom, nans, infs = entry_moments(flat)
    if nans or infs or not all(map(math.isfinite, mom)):
        what = (
            ", ".join(f"{c:,} {w}" for c, w in ((nans, "NaN"), (infs, "Inf")) if c)
            or "values that overflow float32 moments"
        )
        return f"contains {what} of {n:,} entries: not analysed"
    if mom[1] == 0:
        return "constant matrix (std 0)"
    moments = (mom[0], mom[1], mom[2], mom[3])
    sample = entry_sample(flat, rng)
    return entry_stats(sample, n, moments, rng), sample, moments


def _spectrum_step(
    W: torch.Tensor,
    moments: tuple[float, float, float, float],
    *,
    spectrum: str,
    th: Thresholds,
    device: str | torch.device,
    rng: np.random.Generator,
) -> tuple[MatrixSpectrum | None, list[str]]:
    """The spectrum statistics (None when a side is shorter than MIN_SPECTRUM_DIM), and
    notes for the layer's reason column."""
    m, n = (int(v) for v in W.shape)
    k = min(m, n)
    if k < MIN_SPECTRUM_DIM:
        return None, [f"spectrum skipped: min(rows, cols) = {k} < {MIN_SPECTRUM_DIM}"]
    std = moments[1]
    fro2 = (m * n - 1) * std * std  # ||W - mean||_F^2 from the moments (W is centred here)
    Wd = W.detach().to(device) if str(device) != "cpu" else W
    ms = matrix_spectrum(Wd, mode=spectrum, fro2=fro2, level=th.per_test, rng=rng)
    notes = []
    if ms.stats.ks_how == UNTESTED_HEAVY:
        notes.append(
            "spectrum KS not tested: the largest entries are heavy enough to move the spectrum "
            "at this size, and its shuffled null would need full-size decompositions"
        )
    if ms.stats.spikes >= k // 2:
        notes.append(
            "no Marchenko-Pastur bulk: half the singular values or more lie above the fitted edge "
            "(spike count capped at k/2)"
        )
    return ms, notes


def _rmt_tests(
    Wc: torch.Tensor,
    ms: MatrixSpectrum | None,
    th: Thresholds,
    rng: np.random.Generator,
    offset: int,
) -> tuple[VectorStats | None, SpacingStats | None, np.ndarray, np.ndarray]:
    """The singular-vector and level-spacing tests on the centred matrix Wc (docs/science.md
    §6.1, §6.2), skipping the top ``offset`` directions in the vector test; also returns the
    top ``offset + VECTORS`` left and right singular vectors (the low-rank step's U, V)."""
    none = np.zeros((0, 0))
    if ms is None:
        return None, None, none, none
    U, _, V = top_singular(Wc, ms.gram, offset + VECTORS, rng)
    vec = None
    if U.shape[1] > offset:
        vec = vector_stats(
            Wc,
            U,
            V,
            level=rmt_level(th),
            rng=rng,
            offset=offset,
            null_values=Wc.reshape(-1).float(),
        )
    spc = None
    if "sv" in ms.arrays:
        ev = np.sort(ms.arrays["sv"].astype(np.float64) ** 2)
        spc = spacing_stats(ev, max(ms.stats.spikes, 0), ms.stats.N)
    return vec, spc, U, V


def _headline_pvalues(
    indep: IndependenceStats,
    ms: MatrixSpectrum | None,
    vec: VectorStats | None,
    spc: SpacingStats | None,
) -> dict[str, float]:
    """The p-values of the headline's five tests (verdict.RMT_TESTS) that were run."""
    pv = {"independence": indep.p}
    if ms is not None:
        pv["spectrum"] = ms.stats.ks_p
        pv["spikes"] = ms.stats.spikes_p
    if vec is not None:
        pv["vectors"] = vec.p
    if spc is not None:
        pv["spacing"] = spc.p
    return pv


def _lowrank_step(
    Wc: torch.Tensor,
    ms: MatrixSpectrum,
    U: np.ndarray,
    V: np.ndarray,
    fro2: float,
    *,
    spectrum: str,
    th: Thresholds,
    device: str | torch.device,
    rng: np.random.Generator,
) -> LowRank:
    """The k spike directions' energy share, and every headline test re-run on the residual
    Z (lowrank.residual_matrix: W without U_k S_k V_k^T, in reflected coordinates)."""
    k = max(ms.stats.spikes, 0)
    sv = ms.arrays.get("sv")
    s_top = sv[:k] if sv is not None else np.linalg.norm(Wc.double().numpy().T @ U[:, :k], axis=0)
    share = energy_share(s_top, fro2)
    if k == 0 or k >= ms.stats.k // 2:
        return LowRank(k, share, None, {}, (), "")
    if U.shape[1] < k:  # more spikes than the vector test's top directions: Lanczos for k
        U, _, V = top_singular(Wc, ms.gram, k, rng)
    Z = residual_matrix(Wc, U[:, :k], V[:, :k])
    flat = Z.reshape(-1)
    zmean, zstd = float(flat.double().mean()), float(flat.double().std())
    Zc = Z - zmean
    zsample = entry_sample(Zc.reshape(-1), rng)
    mz, _ = _spectrum_step(
        Zc, (0.0, zstd, 0.0, 0.0), spectrum=spectrum, th=th, device=device, rng=rng
    )
    indep = independence_stats(Zc, zsample, mz.gram if mz else None, rng)
    vec, spc, _, _ = _rmt_tests(Zc, mz, th, rng, 0)
    pv = _headline_pvalues(indep, mz, vec, spc)
    failed = rmt_failed(pv, th)
    shape = (int(Z.shape[0]), int(Z.shape[1]))
    return LowRank(k, share, shape, pv, failed, "structured" if failed else "random-like")


def _powerlaw_step(
    Wc: torch.Tensor, ms: MatrixSpectrum | None, rng: np.random.Generator
) -> PowerLawFit | None:
    """The CSN tail fit of the Gram eigenvalues, beside the same fit on W's entries shuffled
    (at the shuffled null's size: spectrum.null_shape) (docs/science.md §6.6)."""
    from ..spectra import draw_indices, shuffled_eigenvalues

    if ms is None or "sv" not in ms.arrays:
        return None
    ev = ms.arrays["sv"].astype(np.float64) ** 2
    m, n = (int(v) for v in Wc.shape)
    shape = null_shape(min(m, n), max(m, n), m > n)
    # entries drawn at random from W's (without replacement) at the shuffled null's size
    flat = Wc.reshape(-1).float()
    take = shape[0] * shape[1]
    if take < flat.numel():
        flat = flat.index_select(0, torch.from_numpy(draw_indices(flat.numel(), take, rng)))
    shuffled = shuffled_eigenvalues(flat, shape, rng)
    return fit_powerlaw(ev, rng, shuffled)


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
    owned: bool = False,
) -> LayerResult:
    """Every statistic on one 2-D matrix (rows = output units) and its verdict: entries
    (law, Gaussianity, mean component and ties, reported), spectrum and spikes of the centred
    matrix, independence, verdict; then the random-matrix headline: singular vectors, level
    spacings, the spike directions and the tests on the residual (docs/science.md §6).
    ``owned``: W's storage is the caller's to give (a tensor loaded for this analysis
    alone): it is centred in place, not copied (AlexNet's 4096 x 9216 layer: 151 MB)."""
    t0 = time.perf_counter()
    th = thresholds or Thresholds()
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence([seed])
    rng = np.random.default_rng(ss)
    shape = tuple(tensor_shape) if tensor_shape is not None else tuple(W.shape)
    base: dict[str, Any] = {"name": name, "module": module, "kind": kind, "tensor_shape": shape}
    matrix_shape = (int(W.shape[0]), int(W.shape[1])) if W.ndim == 2 else None
    unfit = _unfit_reason(W)
    if unfit is not None:
        return LayerResult(**base, matrix_shape=matrix_shape, status="skipped", reason=unfit)
    Wc = W.detach().cpu()
    got = _entries_step(Wc.reshape(-1), rng)
    if isinstance(got, str):
        return LayerResult(**base, matrix_shape=matrix_shape, status="skipped", reason=got)
    entries, sample, moments = got
    # the spectral tests see W - mean(W): a non-zero mean is a rank-1 component (a spike of
    # size |mean| sqrt(m n)) that i.i.d. entries of any law may have; it is reported apart
    # (entries.mean_z, mean_share) and does not count as structure (docs/science.md §4.1)
    if owned and Wc.dtype in (torch.float32, torch.float64):
        Wc = Wc.sub_(moments[0])
    else:
        Wc = Wc.float() - float(moments[0]) if Wc.dtype != torch.float64 else Wc - moments[0]
    ms, notes = _spectrum_step(Wc, moments, spectrum=spectrum, th=th, device=device, rng=rng)
    indep = independence_stats(Wc, sample, ms.gram if ms else None, rng, th.per_test)
    pvalues = {"independence": indep.p}
    if ms is not None:
        pvalues["spectrum"] = ms.stats.ks_p
        pvalues["spikes"] = ms.stats.spikes_p
    failed, verdict = layer_verdict(pvalues, th)
    gp = entries.gaussian_p(th.entry_test)
    # the random-matrix headline (docs/science.md §6): its own random stream, so the
    # verdict's numbers above do not depend on whether it runs
    rng6 = np.random.default_rng(ss.spawn(1)[0])
    vec, spc, U, V = _rmt_tests(Wc, ms, th, rng6, 0)
    hp = _headline_pvalues(indep, ms, vec, spc)
    hfailed = rmt_failed(hp, th)
    low = None
    if ms is not None:
        m, n = matrix_shape or (0, 0)
        fro2 = (m * n - 1) * moments[1] ** 2
        low = (
            _lowrank_step(Wc, ms, U, V, fro2, spectrum=spectrum, th=th, device=device, rng=rng6)
            if hfailed
            else LowRank(max(ms.stats.spikes, 0), 0.0, None, {}, (), "")
        )
        if not hfailed and low.k and "sv" in ms.arrays:
            low = LowRank(low.k, energy_share(ms.arrays["sv"][: low.k], fro2), None, {}, (), "")
    k = low.k if low else 0
    residual_failed = low.residual_failed if low and low.residual_verdict else None
    head = headline(hfailed, k, low.energy if low else 0.0, residual_failed)
    plaw = _powerlaw_step(Wc, ms, rng6)
    arrays = dict(ms.arrays) if ms else {}
    if k and "sv" in arrays:
        arrays["residual_sv"] = arrays["sv"][k:]  # the residual's: W's after the top k
    arrays["sample"] = np.sort(sample[:4096]).astype(np.float32)  # histogram and Q-Q figures
    return LayerResult(
        **base,
        matrix_shape=matrix_shape,
        status="analysed",
        reason="; ".join(notes),
        entries=entries,
        independence=indep,
        spectrum=ms.stats if ms else None,
        pvalues=pvalues,
        failed=failed,
        verdict=verdict,
        seconds=time.perf_counter() - t0,
        gaussian_p=gp,
        gaussian=is_gaussian(gp, th),
        arrays=arrays,
        vectors=vec,
        spacing=spc,
        lowrank=low,
        powerlaw=plaw,
        headline=head,
        headline_failed=hfailed,
        headline_pvalues=hp,
    )
