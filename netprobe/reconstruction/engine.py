"""The reconstruction engine: for each arm (the model and its controls), generate x̃ from
each chosen hidden layer through :class:`~netprobe.reverse.ReverseNet`, re-infer h̃ and
measure it (docs/science.md §2.2). :func:`run` works on prepared inputs and chosen layers;
:func:`netprobe.reconstruction.reconstruct` is the pipeline around it.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NothingToAnalyseError, OptionError
from ..netlayers import HiddenLayer, RectifierCall, RectifierMode, eval_mode
from ..reverse import ReverseNet, gaussian_blur, parse_gen_scale, random_like_sparsity
from ..seeds import derive_seed
from .metrics import METRICS, compare, nan, norm, pixel_metrics
from .report import ARMS, LayerInfo, ReconstructionReport

Progress = Callable[[int, int, str], None]

# coordinates for derive_seed(seed, ...): one independent random stream per use
_FRESH, _PERMUTED, _RANDOM_H = 1, 2, 3

#: the random-h control of each net that has one: the model's own (is recovery specific to
#: real h?) and the fresh-init net's (is the model's advantage larger than a random net's?)
RANDOM_H_OF = {"model": "random-h", "fresh-init": "fresh-random-h"}


# ---------------------------------------------------------------------------------------
# controls


def permuted_weights(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose every weight tensor (ndim >= 2) has its entries permuted
    at random: the same entry distribution per layer, no learned structure. Biases and
    normalisation parameters are kept.

    The permutation is drawn as int32 where it fits (the same permutation as int64 from the
    same generator, in about half the time) and applied with ``index_select`` (advanced
    indexing took three times as long: 1.6 s against 0.5 s on AlexNet's 4096 x 9216 layer)."""
    net = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim >= 2:
                small = torch.int32 if p.numel() < 2**31 else torch.int64
                perm = torch.randperm(p.numel(), generator=g, dtype=small).to(p.device)
                p.copy_(p.reshape(-1).index_select(0, perm).view_as(p))
    return net


def prepared_like(net: nn.Module, model: nn.Module) -> nn.Module:
    """A control net prepared the way the model runs: the model's device and dtype, eval
    mode, rectifiers not in place (a freshly built torchvision net has ``ReLU(inplace=True)``
    and is in train mode; every pass here wants eval-mode maths on the same device)."""
    p = next(model.parameters(), None)
    if p is not None:
        net = net.to(device=p.device, dtype=p.dtype)
    for m in net.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False  # type: ignore[assignment]
    try:
        net.eval()
    except NotImplementedError:  # torch.export modules refuse eval(); their graph is fixed
        pass
    return net


#: builds one net when its arm runs
NetFactory = Callable[[], nn.Module]


def _fresh(source: Any, model: nn.Module, seed: int) -> nn.Module:
    from ..seeds import fresh_init

    return prepared_like(fresh_init(source, seed)[0], model)


def control_nets(
    source: Any, model: nn.Module, seed: int, fresh_inits: int = 1
) -> tuple[dict[str, NetFactory], list[str]]:
    """The fresh-init and permuted control nets, each as a function that builds it when its
    arm runs (one control at a time beside the model: AlexNet's seven nets, held together,
    were 1.7 GB of a 2.9 GB run), and notes saying how they were made.
    ``source`` is the LoadedModel (or module) the model came from: the fresh
    initialisation is :func:`netprobe.seeds.fresh_init` of it, the one fresh init every
    command uses. ``fresh_inits`` independent initialisations are drawn, keyed
    ``fresh-init``, ``fresh-init#2``, ... (:func:`arm_of` splits the key); the learned-structure
    question needs several, because one init's numbers vary from the next's by more than the
    inputs can show (docs/science.md §4.7). An architecture that cannot be re-initialised
    leaves those arms out: the first fresh init is built here to find out, and handed over
    (once) when its arm runs."""
    from ..seeds import fresh_init

    nets: dict[str, NetFactory] = {}
    notes: list[str] = []
    try:
        first, how = fresh_init(source, derive_seed(seed, _FRESH))  # init 0: its old stream
    except OptionError as e:
        notes.append(f"fresh-init control left out: {e.one_line()}")
    else:
        more = f" (and {fresh_inits - 1} more, seeded alike)" if fresh_inits > 1 else ""
        notes.append(f"fresh-init control: {how}{more}")
        held = [prepared_like(first, model)]
        nets["fresh-init"] = held.pop  # the built net, released to the arm that runs it
        for k in range(1, fresh_inits):
            nets[f"fresh-init#{k + 1}"] = functools.partial(
                _fresh, source, model, derive_seed(seed, _FRESH, k)
            )
    nets["permuted"] = functools.partial(permuted_weights, model, derive_seed(seed, _PERMUTED))
    return nets, notes


def arm_of(key: str) -> tuple[str, int]:
    """A net's key -> (arm, init): ``fresh-init#3`` -> ("fresh-init", 2); others init 0."""
    arm, _, k = key.partition("#")
    return arm, int(k) - 1 if k else 0


# ---------------------------------------------------------------------------------------
# options


def check_options(
    *,
    smooth: float,
    batch_size: int,
    gen_keep: float | None = None,
    unpool: str | None = None,
    num: int | None = None,
    fresh_inits: int | None = None,
) -> None:
    """The reconstruction options' ranges, one message each, checked before anything is
    loaded or written."""
    from ..reverse import UNPOOL_MODES

    if fresh_inits is not None and fresh_inits < 1:
        raise OptionError(
            f"--fresh-inits {fresh_inits}: must be at least 1",
            hint="e.g. --fresh-inits 5 (the learned-structure question needs 3 or more)",
        )
    if num is not None and num < 1:
        raise OptionError(f"--num {num}: must be at least 1", hint="e.g. --num 32")
    if unpool is not None and unpool not in UNPOOL_MODES:
        raise OptionError(
            f"--unpool {unpool}: unknown unpooling", hint=f"use one of {', '.join(UNPOOL_MODES)}"
        )
    if gen_keep is not None and not 0.0 < gen_keep <= 1.0:
        raise OptionError(
            f"--gen-keep {gen_keep:g}: the keep-probability ρ must lie in (0, 1]",
            hint="e.g. --gen-keep 0.5; 1 = no generation dropout",
        )
    if smooth < 0 or not math.isfinite(smooth):
        raise OptionError(
            f"--smooth {smooth:g}: must be a non-negative number of pixels",
            hint="e.g. --smooth 1.0; 0 = off",
        )
    if batch_size < 1:
        raise OptionError(
            f"--batch-size {batch_size}: must be at least 1", hint="e.g. --batch-size 32"
        )


# ---------------------------------------------------------------------------------------
# the run


def _infer(
    net: nn.Module, x: torch.Tensor, layer: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(h_layer, its pre-activation, logits) of ``net`` on ``x``: the ordinary forward pass."""
    got: dict[str, torch.Tensor] = {}

    def on(
        call: RectifierCall, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        out = func(*args, **kwargs)
        if call.index == layer:
            got["z"], got["h"] = args[0], out
        return out

    with eval_mode(net), torch.no_grad(), RectifierMode(net, on):
        logits = net(x)
    return got["h"], got["z"], _logits(logits, x)


def _logits(out: Any, x: torch.Tensor) -> torch.Tensor | None:
    """A classifier's (B, classes) output, or None for anything else."""
    if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == x.shape[0]:
        return out
    return None


def _display(
    t: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None, stretch: bool
) -> np.ndarray:
    """(S, C, H, W) in [0, 1] for the image grid: x as the model saw it (mean/std undone);
    x̃ contrast-stretched per image (1st–99th percentile), its scale being α's business."""
    if t.ndim != 4 or len(t) == 0:
        return np.zeros((0,), dtype=np.float32)
    if mean is not None and std is not None:
        from ..data import unnormalise

        t = unnormalise(t, mean, std, clamp=not stretch)
    if stretch or mean is None or std is None:
        flat = t.reshape(len(t), -1).float()
        lo = flat.quantile(0.01, dim=1).view(-1, 1, 1, 1)
        hi = flat.quantile(0.99, dim=1).view(-1, 1, 1, 1)
        t = ((t - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return t.detach().float().cpu().numpy()


def _layer_info(hl: HiddenLayer, rn: ReverseNet, h: torch.Tensor, keep: float) -> LayerInfo:
    """The theory's quantities of one layer: m, the layer below it, n and δ."""
    m = int(h[0].numel())
    below = max(rn.deps.get(hl.index, []), default=None)
    n = rn.fits[below].reach if below is not None else None
    delta = math.sqrt(math.log(max(m, 2)) / (keep * n)) if n else float("nan")
    return LayerInfo(hl.name, hl.index, hl.where, tuple(hl.shape), m, below, n, delta)


def run(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[HiddenLayer],
    *,
    gen_scale: str | float = "theory",
    gen_keep: float = 1.0,
    unpool: str = "random",
    smooth: float = 0.0,
    controls: bool = True,
    fresh_inits: int = 5,
    pixel_metrics: bool = True,
    seed: int = 0,
    batch_size: int = 64,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    model_name: str = "model",
    data_source: str = "",
    show: int = 4,
    save_tensors: bool = False,
    notes: Sequence[str] = (),
    source: Any = None,
    progress: Progress | None = None,
) -> ReconstructionReport:
    """Reconstruct ``layers`` of ``model`` from the inputs ``x`` (prepared for the model, on
    its device) and measure every arm. ``source`` is what the fresh-init control
    re-initialises (the LoadedModel; default the module itself), ``fresh_inits`` times with
    independent seeds. ``notes`` are carried into the report. ``progress(done, total,
    label)`` is called after each (net, batch, layer)."""
    if not layers:
        raise NothingToAnalyseError(
            "no hidden layer to reconstruct", hint="see `netprobe layers MODEL`"
        )
    if len(x) == 0:
        raise NothingToAnalyseError(
            "no inputs to reconstruct", hint="give --num 1 or more and a non-empty --inputs"
        )
    check_options(
        smooth=smooth,
        batch_size=batch_size,
        gen_keep=gen_keep,
        unpool=unpool,
        fresh_inits=fresh_inits,
    )
    gen_scale = parse_gen_scale(gen_scale)
    notes = list(notes)
    nets: dict[str, NetFactory] = {"model": lambda: model}
    if controls:
        src = source if source is not None else model
        more, how = control_nets(src, model, seed, fresh_inits=fresh_inits)
        nets.update(more)
        notes.extend(how)
    state = _RunState(
        layers=list(layers),
        keep=gen_keep,
        mean=mean,
        std=std,
        pixels=pixel_metrics,
        save_tensors=save_tensors,
        show=show,
        controls=controls,
        gens={  # one permutation stream per net with a random-h control (the model's is
            # the one it always had)
            key: torch.Generator(device=x.device).manual_seed(
                derive_seed(seed, _RANDOM_H)
                if key == "model"
                else derive_seed(seed, _RANDOM_H, 1 + k)
            )
            for key in nets
            for arm, k in [arm_of(key)]
            if arm in RANDOM_H_OF
        },
    )
    state.images["x"] = _display(x[:show], mean, std, stretch=False)
    batches = range(0, len(x), batch_size)
    total, done = len(nets) * len(batches) * len(layers), 0
    upto = max(h.index for h in layers)
    keys = list(nets)
    t0, building = time.perf_counter(), 0.0
    for arm in keys:
        tb = time.perf_counter()
        net = nets.pop(arm)()  # a control net lives while its arm runs
        building += time.perf_counter() - tb
        rn = ReverseNet(net, alpha=gen_scale, keep=gen_keep, unpool=unpool, seed=seed)
        if progress is not None:  # fitting α to a deep layer takes a while: say so
            progress(done, total, f"{arm}: fitting α")
        fits = rn.fit(x[:batch_size], upto)
        if "#" not in arm:  # α of the first fresh init stands for the others
            state.gen_scales[arm] = {j: f.alpha for j, f in fits.items()}
        if arm in RANDOM_H_OF and controls:  # a random-h control runs its net's reverse net
            state.gen_scales[RANDOM_H_OF[arm]] = state.gen_scales[arm]
        for b, start in enumerate(batches):
            for hl in state.batch(arm, net, rn, x[start : start + batch_size], start, smooth):
                done += 1
                if progress is not None:
                    progress(done, total, f"{arm} {hl.name} (batch {b + 1}/{len(batches)})")
        notes.extend(n for n in sorted(rn.ctl.notes) if n not in notes)
    seconds = {
        "passes": time.perf_counter() - t0 - building,
        "pixel_metrics": state.pixel_seconds,
        "controls_built": building,
    }
    arms = keys + ([RANDOM_H_OF[a] for a in keys if a in RANDOM_H_OF] if controls else [])
    inits = sum(arm_of(key)[0] == "fresh-init" for key in keys)
    options = {
        "gen_scale": gen_scale,
        "gen_keep": gen_keep,
        "unpool": unpool,
        "smooth": smooth,
        "controls": controls,
        "fresh_inits": inits,
        "pixel_metrics": pixel_metrics,
        "seed": seed,
        "batch_size": batch_size,
    }
    return ReconstructionReport(
        model=model_name,
        data=data_source,
        num=len(x),
        options=options,
        layers=[state.infos[h.index] for h in layers],
        arms=[a for a in ARMS if a in arms],
        samples=state.samples,
        gen_scales=state.gen_scales,
        notes=notes,
        images=state.images,
        tensors=state.tensors(x),
        seconds=seconds,
    )


@dataclass
class _RunState:
    """What :func:`run` accumulates over arms, batches and layers, and the settings every
    batch needs."""

    layers: list[HiddenLayer]
    keep: float
    mean: Sequence[float] | None
    std: Sequence[float] | None
    pixels: bool
    save_tensors: bool
    show: int
    controls: bool
    gens: dict[str, torch.Generator]  # per net with a random-h control: its permutations
    samples: list[dict[str, Any]] = field(default_factory=list)
    gen_scales: dict[str, dict[int, float]] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    infos: dict[int, LayerInfo] = field(default_factory=dict)
    saved: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    pixel_seconds: float = 0.0  # PSNR and SSIM (context only: they should stay cheap)

    def keep_tensor(self, key: str, t: torch.Tensor) -> None:
        if self.save_tensors:
            self.saved.setdefault(key, []).append(t.detach().float().cpu())

    def tensors(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        if not self.save_tensors:
            return {}
        out = {"x": x.detach().float().cpu().numpy()}
        out.update({k: torch.cat(v).numpy() for k, v in self.saved.items()})
        return out

    def batch(
        self,
        arm: str,
        net: nn.Module,
        rn: ReverseNet,
        xb: torch.Tensor,
        start: int,
        smooth: float,
    ) -> Iterator[HiddenLayer]:
        """Generate and measure every layer on the batch ``xb`` (inputs ``start``...) of one
        net (``arm`` is its key: ``fresh-init#2`` is the fresh-init arm's second init); yields
        each layer when it is done (for progress)."""
        key, (arm, init) = arm, arm_of(arm)
        fwd = rn.forward(xb, max(h.index for h in self.layers))
        with torch.no_grad(), eval_mode(net):
            logits_x = _logits(net(xb), xb)
        for hl in self.layers:
            h = fwd.h(hl.index)
            if hl.index not in self.infos:
                self.infos[hl.index] = _layer_info(hl, rn, h, self.keep)
            info = self.infos[hl.index]
            cases = [(arm, h)]
            if arm in RANDOM_H_OF and self.controls:
                cases.append((RANDOM_H_OF[arm], random_like_sparsity(h, self.gens[key])))
            for case, hh in cases:
                xt = gaussian_blur(rn.generate(fwd, hl.index, hh), smooth)
                rows, ht = self.measure(net, rn, info, hh, xt, xb, logits_x)
                self.samples.extend(
                    {
                        "sample": start + i,
                        "layer": hl.name,
                        "arm": case,
                        "init": init,
                        **{k: float(v[i]) for k, v in rows.items()},
                    }
                    for i in range(len(xb))
                )
                if start == 0 and init == 0:
                    self.images[f"{hl.name}/{case}"] = _display(
                        xt[: self.show], self.mean, self.std, stretch=True
                    )
                tag = case if init == 0 else f"{case}#{init + 1}"
                self.keep_tensor(f"{hl.name}/{tag}/x_gen", xt)
                self.keep_tensor(f"{hl.name}/{tag}/h", hh)
                self.keep_tensor(f"{hl.name}/{tag}/h_inferred", ht)
            yield hl

    def measure(
        self,
        net: nn.Module,
        rn: ReverseNet,
        info: LayerInfo,
        h: torch.Tensor,
        xt: torch.Tensor,
        x: torch.Tensor,
        logits_x: torch.Tensor | None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Every per-sample metric of one generated batch ``xt`` against its h and x, and h̃."""
        ht, z, logits = _infer(net, xt, info.index)
        out = compare(h, ht)
        out.update(_thresholded(rn, info, h, xt, z))
        k_active = (h.reshape(len(h), -1) > 0).sum(1).double()
        out["active_frac"] = k_active / info.units
        out["theory_bound"] = (
            (k_active / (self.keep * info.below_units)).sqrt()
            if info.below_units
            else nan(len(h), h.device)
        )
        t0 = time.perf_counter()
        out.update(pixel_metrics(x, xt, self.mean, self.std, pixels=self.pixels))
        self.pixel_seconds += time.perf_counter() - t0
        if logits is not None and logits_x is not None:
            out["top1_agree"] = (logits.argmax(1) == logits_x.argmax(1)).double()
        else:
            out["top1_agree"] = nan(len(h), h.device)
        return {k: out[k].detach().cpu() for k in METRICS}, ht


def _thresholded(
    rn: ReverseNet, info: LayerInfo, h: torch.Tensor, xt: torch.Tensor, z: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The ``*_thr`` metrics: the theory's inference h̃ = r(A x̃ − δ‖h‖) against h, where A x̃
    is the pre-activation on x̃ minus its bias (and any skip input)."""
    keys = ("rel_err", "cosine", "precision", "recall", "jaccard")
    if info.below is None:
        out = {f"{k}_thr": nan(len(h), h.device) for k in keys}
        return out | {"rel_err_thr_scaled": nan(len(h), h.device)}
    lin = z - rn.preactivation(xt, info.index, replace=info.below)  # A x̃
    shift = info.delta * norm(h).to(lin.dtype).view(-1, *([1] * (h.ndim - 1)))
    got = compare(h, F.relu(lin - shift))  # r(A x̃ − δ‖h‖)
    return {f"{k}_thr": got[k] for k in keys} | {"rel_err_thr_scaled": got["rel_err_scaled"]}
