"""Running the analysis: one matrix, a set of tensors, a loaded model, and the entry point.

This module's one job is orchestration: :func:`analyse_matrix` runs the named steps (entries,
spectrum, independence, verdict) on one matrix; :func:`analyse_tensors` walks a state dict;
:func:`analyse` adds the fresh-initialisation comparison; :func:`randomness` is the library
call behind ``netprobe randomness`` (options checked first, then the model loaded, then the
analysis). The statistics live in the sibling modules (docs/science.md §2.1, §4).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..errors import NothingToAnalyseError, OptionError
from ..netlayers import WeightLayer, as_matrix, glob_keep, weight_layers
from .entries import EntryStats, entry_moments, entry_sample, entry_stats
from .independence import IndependenceStats, independence_stats
from .lowrank import LowRank, energy_share, residual_matrix
from .powerlaw import PowerLawFit, fit_powerlaw
from .report import LayerResult, RandomnessReport
from .spacing import SpacingStats, spacing_stats
from .spectrum import (
    MIN_SPECTRUM_DIM,
    UNTESTED_HEAVY,
    MatrixSpectrum,
    check_spectrum_mode,
    matrix_spectrum,
    null_shape,
)
from .vectors import VECTORS, VectorStats, top_singular, vector_stats
from .verdict import (
    Thresholds,
    headline,
    headline_kind,
    is_gaussian,
    layer_verdict,
    model_verdict,
    rmt_failed,
    rmt_level,
)

MIN_ENTRIES = 64  # fewer entries: the layer is skipped
DPI_RANGE = (20, 600)

Progress = Callable[[int, int, str], None]

# ---------------------------------------------------------------------------------------
# one matrix, step by step


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


# ---------------------------------------------------------------------------------------
# a set of tensors


def _not_a_matrix(
    key: str, t: torch.Tensor, kinds: Mapping[str, str], why: str | None = None
) -> LayerResult:
    """The row of a selected tensor with no weight-matrix view, saying why (``t`` may be a
    ``meta`` tensor: only its shape and dtype are used)."""
    from ..loading.roles import block_index, role

    mod = key.rpartition(".")[0]
    if why is not None:
        pass
    elif not t.is_floating_point() and t.ndim < 2:
        why = f"{_dtype_name(t)} {'vector' if t.ndim == 1 else 'scalar'} (buffer)"
    elif t.ndim < 2:
        why = "vector (bias, norm or buffer): no matrix view" if t.ndim == 1 else "scalar"
    else:
        why = f"{_dtype_name(t)} tensor, not floating point"
    return LayerResult(
        key,
        mod,
        kinds.get(mod, "tensor"),
        tuple(t.shape),
        None,
        "skipped",
        why,
        dtype=_dtype_name(t),
        block=block_index(key),
        role=role(key),
    )


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    """bfloat16, float16 and float8 (e4m3, e5m2) upcast per tensor: the statistics run in
    float32 (exact for these formats), and float8 has no CPU arithmetic at all."""
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        return t.float()
    return t


def _reads_ahead(tensors: Mapping[str, torch.Tensor], keys: list[str], device: str) -> Any:
    """Yield (key, [tensor]) for ``keys`` in order, reading the next one on a worker thread
    while the caller analyses this one (streamed checkpoints: disk and CPU overlap; two
    tensors resident at most). Pinned memory when the analysis runs on CUDA. The tensor comes
    in a list the caller empties, so that once it is upcast the stored bfloat16 copy is freed
    (a generator's frame would otherwise hold it until the next read)."""
    from concurrent.futures import ThreadPoolExecutor

    pin = str(device).startswith("cuda") and torch.cuda.is_available()

    def read(k: str) -> torch.Tensor:
        t = tensors[k]
        return t.pin_memory() if pin else t

    if not hasattr(tensors, "metas") or len(keys) < 2:
        for k in keys:
            yield k, [read(k)]
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt: Any = pool.submit(read, keys[0])
        for i, k in enumerate(keys):
            box = [nxt.result()]
            nxt = pool.submit(read, keys[i + 1]) if i + 1 < len(keys) else None
            yield k, box  # the caller pops the tensor: this frame keeps no reference to it
            del box
            if nxt is None:
                break


class ProgressLabel(str):
    """The label :func:`analyse_tensors` passes to ``progress(done, total, label)``: the text
    (the matrix being analysed), carrying the bytes read so far and in all as attributes, so
    a progress bar shows bytes read without parsing text; any other callback sees a plain
    string (the ``progress`` signature stays three arguments)."""

    bytes_done: int
    bytes_total: int

    def __new__(cls, text: str, bytes_done: int, bytes_total: int) -> ProgressLabel:
        label = super().__new__(cls, text)
        label.bytes_done = int(bytes_done)
        label.bytes_total = int(bytes_total)
        return label


def _summary(results: list[LayerResult]) -> str:
    """One sentence: how many matrices are random-like, which tests call the rest
    structured, which laws the entries follow and how many are Gaussian."""
    analysed = [r for r in results if r.analysed]
    structured = [r for r in analysed if r.verdict == "structured"]
    text = f"{len(analysed) - len(structured)} of {len(analysed)} weight matrices random-like"
    if structured:
        counts: dict[str, int] = {}
        for r in structured:
            for f in r.failed:
                counts[f] = counts.get(f, 0) + 1
        text += "; structured by " + ", ".join(
            f"{t} ({c})" for t, c in sorted(counts.items(), key=lambda x: -x[1])
        )
    if analysed:
        laws: dict[str, int] = {}
        for r in analysed:
            if r.entries is not None:
                laws[r.entries.best_fit] = laws.get(r.entries.best_fit, 0) + 1
        text += "; entry law " + ", ".join(
            f"{law} ({c})" for law, c in sorted(laws.items(), key=lambda x: -x[1])
        )
        text += (
            f"; Gaussian entries in {sum(bool(r.gaussian) for r in analysed)} of {len(analysed)}"
        )
    kinds = [headline_kind(r.headline) for r in analysed if r.headline]
    if kinds:  # the random-matrix headline (docs/science.md §6.4)
        text += (
            f"; headline: {kinds.count('random-like')} random-like, "
            f"{kinds.count('low-rank')} random-like except a few directions, "
            f"{kinds.count('structured')} structured"
        )
    nskip = len(results) - len(analysed)
    if nskip:
        text += f"; {nskip} tensors skipped (see the table)"
    return text + "."


def analyse_tensors(
    tensors: Mapping[str, torch.Tensor],
    module: nn.Module | Mapping[str, str] | None = None,
    *,
    model: str = "model",
    layers: list[str] | None = None,
    exclude: list[str] | None = None,
    spectrum: str = "auto",
    thresholds: Thresholds | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
    own: bool = False,
) -> RandomnessReport:
    """Every selected tensor: weight matrices analysed, the rest given a row saying why not.
    ``own``: the tensors were loaded for this analysis alone, and each matrix is centred in
    place (their values are changed; see :func:`analyse_matrix`'s ``owned``)."""
    t0 = time.perf_counter()
    th = (thresholds or Thresholds()).check()
    check_spectrum_mode(spectrum)
    wls = weight_layers(tensors, module, layers, exclude)
    if not wls:
        sel = f" matching --layers {' '.join(layers)}" if layers else ""
        raise NothingToAnalyseError(
            f"{model}: no weight matrix (a >= 2-D floating-point tensor){sel} to analyse",
            hint="see `netprobe layers MODEL` for the names --layers and --exclude match",
        )
    from ..netlayers import module_kinds, skip_reason, tensor_metas

    kinds = module_kinds(module)
    by_key: dict[str, list[WeightLayer]] = {}
    for wl in wls:
        by_key.setdefault(wl.key, []).append(wl)
    # shapes and dtypes only: a streamed checkpoint is read below, one tensor at a time
    metas = tensor_metas(tensors)
    config = getattr(tensors, "config", None)
    keyset = set(metas)
    order = [
        k for k, v in metas.items() if isinstance(v, torch.Tensor) and glob_keep(k, layers, exclude)
    ]
    to_read = [k for k in order if k in by_key]
    total_bytes = sum(int(metas[k].numel()) * metas[k].element_size() for k in to_read)
    results_by_key: dict[str, list[LayerResult]] = {}
    done = 0
    # storages two keys share (tied weights saved together) are never centred in place: the
    # second key would be read already centred
    shared: set[int] = set()
    if own and not hasattr(tensors, "metas"):
        ptrs = Counter(
            v.untyped_storage().data_ptr()
            for v in tensors.values()
            if isinstance(v, torch.Tensor) and v.numel()
        )
        shared = {p for p, n in ptrs.items() if n > 1}
    read_bytes = 0
    if progress is not None:
        progress(0, len(wls), ProgressLabel(f"{len(to_read)} tensors to read", 0, total_bytes))
    for key, box in _reads_ahead(tensors, to_read, device):
        t = box.pop()
        read_bytes += int(t.numel()) * t.element_size()
        dtype = _dtype_name(t)
        stored = t
        t = _as_float32(t)
        # an upcast copy, or a tensor loaded for this analysis alone, is centred in place;
        # row blocks of one tensor (fused q/k/v) are disjoint, so each is centred once
        owned = t is not stored or (own and stored.untyped_storage().data_ptr() not in shared)
        del stored
        out = results_by_key.setdefault(key, [])
        for wl in by_key[key]:
            if progress is not None:
                progress(done, len(wls), ProgressLabel(wl.name, read_bytes, total_bytes))
            res = analyse_matrix(
                as_matrix(wl, {key: t}),
                name=wl.name,
                module=wl.module_path,
                kind=wl.kind,
                tensor_shape=wl.tensor_shape,
                spectrum=spectrum,
                thresholds=th,
                device=device,
                seed=np.random.SeedSequence([seed, done]),
                owned=owned,
            )
            out.append(replace(res, dtype=dtype, block=wl.block, role=wl.role))
            done += 1
        del t  # release before the next read: memory bounded by the largest tensor
        if own and isinstance(tensors, dict):
            # loaded for this analysis alone: the mapping's reference goes too (AlexNet's
            # centred 4096 x 9216 layer stayed resident through the next layer's peak)
            tensors.pop(key, None)
    results: list[LayerResult] = []
    for key in order:
        if key in results_by_key:
            results += results_by_key[key]
        else:
            why = skip_reason(key, metas, keyset, config) if metas[key].ndim >= 2 else None
            results.append(_not_a_matrix(key, metas[key], kinds, why))
    if progress is not None:
        progress(len(wls), len(wls), ProgressLabel("", total_bytes, total_bytes))
    verdict = model_verdict([r.pvalues for r in results if r.analysed], th)
    note = getattr(tensors, "note", "")
    return RandomnessReport(
        model,
        tuple(results),
        th,
        spectrum,
        str(device),
        seed,
        verdict,
        _summary(results) + (f" Note: {note}." if note else ""),
        seconds=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------
# a loaded model, and the entry point


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
    progress: Progress | None = None,
    include: list[str] | None = None,
    compare: Any = None,
    own: bool = False,
    own_compare: bool = False,
) -> RandomnessReport:
    """Test the random-like weight hypothesis on every selected weight matrix of a loaded
    model (:class:`netprobe.loading.LoadedModel`). ``layers`` (alias ``include``) and
    ``exclude`` are glob patterns on tensor names and module paths. With ``compare_init``
    the architecture's fresh initialisation (:func:`netprobe.seeds.fresh_init`, same seed)
    is analysed the same way and set beside it. ``own`` (``own_compare``): ``lm``
    (``compare``) was loaded for this call alone, so its tensors may be centred in place
    (their values change)."""
    from dataclasses import replace

    from ..seeds import fresh_init

    kw: dict[str, Any] = {
        "layers": layers if layers is not None else include,
        "exclude": exclude,
        "spectrum": spectrum,
        "thresholds": thresholds,
        "device": device,
        "seed": seed,
    }
    prov = lm.provenance() if hasattr(lm, "provenance") else None
    rep = analyse_tensors(
        lm.tensors, _module_or_kinds(lm), model=lm.display, progress=progress, own=own, **kw
    )
    rep = replace(rep, provenance=prov)
    if compare is not None:  # another loaded checkpoint, analysed the same way (§6.7)
        other = analyse_tensors(
            compare.tensors, _module_or_kinds(compare), model=compare.display, own=own_compare, **kw
        )
        rep = replace(rep, seconds=rep.seconds + other.seconds, compare=other)
    if not compare_init:
        return rep
    net, how = fresh_init(lm, seed)
    sd = dict(net.state_dict())
    del net  # the fresh initialisation exists for this analysis alone
    init = analyse_tensors(sd, None, model=f"{lm.display} (fresh init)", own=True, **kw)
    return replace(rep, seconds=rep.seconds + init.seconds, init=init, init_method=how)


def _module_or_kinds(lm: Any) -> nn.Module | Mapping[str, str] | None:
    """The module the weights' kinds come from, or the kinds themselves when the loader read
    them from the weights alone (``meta["kinds"]``: a torchvision NAME with --weights-file)."""
    if lm.module is not None:
        return cast(nn.Module, lm.module)
    kinds = (getattr(lm, "meta", None) or {}).get("kinds")
    return cast(Mapping[str, str], kinds) if kinds else None


def check_options(spectrum: str, dpi: int, thresholds: Thresholds) -> None:
    """The randomness options, checked before anything is loaded or written."""
    check_spectrum_mode(spectrum)
    if not (DPI_RANGE[0] <= dpi <= DPI_RANGE[1]):
        raise OptionError(
            f"--dpi {dpi}: out of range", hint=f"use {DPI_RANGE[0]}..{DPI_RANGE[1]}, e.g. --dpi 100"
        )
    thresholds.check()


def randomness(
    model: Any = None,
    *,
    layers: list[str] | None = None,
    exclude: list[str] | None = None,
    spectrum: str = "auto",
    alpha: float = 0.05,
    entry_test: str = "ks",
    compare_init: bool = False,
    figures: bool = True,
    dpi: int = 100,
    device: str = "cpu",
    seed: int = 0,
    threads: int | None = None,
    progress: Progress | None = None,
    compare: Any = None,
    log: Callable[[str], None] | None = None,
    **load_kwargs: Any,
) -> RandomnessReport:
    """Test the random-like weight hypothesis (docs/science.md §2.1) on MODEL: a spec
    (torchvision name, ``timm:NAME``, a file), a :class:`~netprobe.loading.LoadedModel` or
    an ``nn.Module``; ``load_kwargs`` (weights, weights_file, arch, trust_pickle, ...) go to
    :func:`netprobe.loading.load`. Each weight matrix is called structured when its rows or
    columns are dependent, its bulk spectrum is not Marchenko–Pastur, or it has spikes — the
    tests whose null is i.i.d. entries of any law, at family-wise rate ``alpha``
    (docs/science.md §4, §5). The entry law, and whether it is Gaussian (``entry_test``), are
    reported beside the verdict. ``figures`` and ``dpi`` steer :meth:`RandomnessReport.write`.
    ``compare`` (another checkpoint: a spec, or a weights file when MODEL came with
    ``weights_file``) is analysed the same way and differenced layer by layer (§6.7).
    ``log(text)`` gets one line once MODEL is loaded, before the analysis: its parameter
    count and size (:meth:`~netprobe.loading.LoadedModel.size_line`, from headers only);
    ``progress(done, total, label)`` gets matrices done of all and a :class:`ProgressLabel`.
    """
    from dataclasses import replace

    from ..loading import LoadedModel, ensure_loaded
    from ..runtime import check_threads, cpu_threads

    th = Thresholds(alpha=alpha, entry_test=entry_test)
    check_options(spectrum, dpi, th)
    check_threads(threads)
    # the weights are all it reads: a torchvision NAME with weights_file skips the network
    # (and torchvision's import) unless --compare-init needs the architecture checked
    lm = ensure_loaded(model, seed=seed, tensors_only=not compare_init, **load_kwargs)
    if log is not None:
        log(lm.size_line())
    other = None
    if compare is not None:  # loaded before any analysis: a bad OTHER fails first
        if load_kwargs.get("weights_file") is not None and not isinstance(compare, nn.Module):
            other = ensure_loaded(
                model,
                seed=seed,
                tensors_only=not compare_init,
                **{**load_kwargs, "weights_file": compare},
            )
        else:
            kw = {k: v for k, v in load_kwargs.items() if k != "weights_file"}
            other = ensure_loaded(compare, seed=seed, **kw)
    with cpu_threads(threads):
        rep = analyse(
            lm,
            layers=layers,
            exclude=exclude,
            spectrum=spectrum,
            thresholds=th,
            compare_init=compare_init,
            device=device,
            seed=seed,
            progress=progress,
            compare=other,
            # loaded here for this call alone: centred in place, no copy of each layer
            own=not isinstance(model, (LoadedModel, nn.Module)),
            own_compare=not isinstance(compare, (LoadedModel, nn.Module)),
        )
    return replace(rep, figures=figures, dpi=dpi)
