"""Running the analysis over a model: a set of tensors, a loaded model, and the entry point.

This module's one job is orchestration: :func:`analyse_tensors` walks a state dict (one
tensor read ahead, each matrix through :func:`.matrix.analyse_matrix`); :func:`analyse` adds
the fresh-initialisation comparison; :func:`randomness` is the library call behind
``netprobe randomness`` (options checked first, then the model loaded, then the analysis).
The statistics live in the sibling modules (docs/science.md §2.1, §4).
"""

from __future__ import annotations

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
from .matrix import _dtype_name, analyse_matrix
from .report import LayerResult, RandomnessReport
from .spectrum import check_spectrum_mode
from .verdict import Thresholds, headline_kind, model_verdict

DPI_RANGE = (20, 600)

Progress = Callable[[int, int, str], None]

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
