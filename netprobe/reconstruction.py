"""``netprobe reconstruct``: forward -> reverse -> forward, and how well h_ℓ comes back.

PAPER.md §1–2.2: run real inputs x forward to hidden layer h_ℓ, generate x̃ downward through
the transposed layers (:class:`~netprobe.reverse.ReverseNet`), run x̃ forward again and
compare h̃ with h. The theory's claim is about h versus h̃ (x̃ is a sample of p(x | h), not a
copy of x): ‖h̃ − h‖² ≤ Õ(k/(ρn)) ‖h‖² for random-like weights and a sparse h, with the
inference threshold b' = −δ‖h‖, δ = √(ln m/(ρn)) (m = units of h_ℓ, n = units of the layer
below it, k = active units of h). Pixel metrics are reported as context only.

Controls in the same run: the same architecture at a fresh random initialisation (the theory's
ideal case), the same weights with entries permuted within each tensor, and a random h with the
same sparsity through the same reverse net (with ``switches`` unpooling, through the same
switches: what the switches alone leak).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import NothingToAnalyseError, OptionError
from .netlayers import (
    HiddenLayer,
    RectifierCall,
    RectifierMode,
    eval_mode,
    hidden_layers,
    resolve_layer,
)
from .reverse import ReverseNet, gaussian_blur, random_like_sparsity

ARMS = ("model", "fresh-init", "permuted", "random-h")
ARM_HELP = {
    "model": "the model's own weights and its real h",
    "fresh-init": "control: the same architecture at a fresh random initialisation (the theory's ideal case)",
    "permuted": "control: the model's weights with the entries of each weight tensor permuted",
    "random-h": "control: the model's reverse net fed a random h with the same sparsity (each sample's entries of h permuted)",
}
#: per-sample metrics, in the order tables show them
METRICS = (
    "rel_err",
    "rel_err_scaled",
    "scale",
    "cosine",
    "precision",
    "recall",
    "jaccard",
    "rel_err_thr",
    "rel_err_thr_scaled",
    "cosine_thr",
    "precision_thr",
    "recall_thr",
    "jaccard_thr",
    "active_frac",
    "theory_bound",
    "px_rel_err",
    "px_cosine",
    "psnr",
    "ssim",
    "top1_agree",
)


# ---------------------------------------------------------------------------------------
# controls


def fresh_init(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` re-initialised the way its modules initialise themselves
    (``reset_parameters()``, seeded); parameters no module resets get PyTorch's default
    Linear/Conv initialisation (weights) or zeros (vectors)."""
    net = copy.deepcopy(model)
    devices = sorted({p.device.index or 0 for p in net.parameters() if p.device.type == "cuda"})
    covered: set[int] = set()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for m in net.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
                covered |= {id(p) for p in m.parameters(recurse=False)}
        with torch.no_grad():
            for p in net.parameters():
                if id(p) in covered:
                    continue
                if p.ndim >= 2:
                    nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                else:
                    p.zero_()
    return net


def permuted_weights(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose every weight tensor (ndim >= 2) has its entries permuted
    at random: the same entry distribution per layer, no learned structure. Biases and
    normalisation parameters are kept."""
    net = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim >= 2:
                perm = torch.randperm(p.numel(), generator=g).to(p.device)
                p.copy_(p.reshape(-1)[perm].view_as(p))
    return net


# ---------------------------------------------------------------------------------------
# metrics


def _norm(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).float().norm(dim=1).double()  # (B,)


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp(min=1e-30), torch.full_like(a, float("nan")))


def compare(h: torch.Tensor, ht: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample agreement of ``ht`` with ``h`` (both (B, ...)): relative L2 error raw and
    after the best scalar rescale s = ⟨h̃, h⟩/‖h̃‖², cosine, and precision / recall / Jaccard
    of the active (> 0) units."""
    a, b = h.reshape(h.shape[0], -1).float(), ht.reshape(ht.shape[0], -1).float()  # (B, units)
    nh, nt = a.norm(dim=1).double(), b.norm(dim=1).double()
    dot = (a * b).sum(1).double()
    scale = _div(dot, nt**2)
    on_h, on_t = (a > 0).float(), (b > 0).float()  # float sums are much faster than bool ones
    k_h, k_t, both = on_h.sum(1).double(), on_t.sum(1).double(), (on_h * on_t).sum(1).double()
    err = (b - a).norm(dim=1).double()
    err_s = (scale.nan_to_num(0.0).float()[:, None] * b - a).norm(dim=1).double()
    return {
        "rel_err": _div(err, nh),
        "rel_err_scaled": _div(err_s, nh),
        "scale": scale,
        "cosine": _div(dot, nh * nt),
        "precision": _div(both, k_t),
        "recall": _div(both, k_h),
        "jaccard": _div(both, k_h + k_t - both),
    }


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: torch.Tensor | float = 1.0,
    win: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-sample SSIM (Wang et al. 2004: Gaussian 11×11 window, σ = 1.5, K1 = 0.01,
    K2 = 0.03, valid region, mean over channels) of (B, C, H, W) images. The window shrinks
    to the largest odd size that fits smaller images."""
    if x.ndim != 4:
        return torch.full((x.shape[0],), float("nan"), device=x.device)
    win = min(win, x.shape[-2], x.shape[-1])
    win = win if win % 2 == 1 else win - 1
    x, y = x.double(), y.double()
    c = x.shape[1]
    g = _gaussian_window(win, sigma, x.device)
    k = (g[:, None] * g[None, :]).expand(c, 1, win, win)  # (C,1,win,win)
    L = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=c)  # (B,C,H-win+1,W-win+1)

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))


def pixel_metrics(
    x: torch.Tensor, xt: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> dict[str, torch.Tensor]:
    """Context only (the theory claims nothing about pixels): relative error and cosine in
    the model's input space, PSNR and SSIM in pixel space ([0, 1] after undoing mean/std and
    clamping when they are known; otherwise the raw values with each sample's range)."""
    out = {
        "px_rel_err": _div(_norm(xt - x), _norm(x)),
        "px_cosine": _div(
            (x.reshape(len(x), -1) * xt.reshape(len(x), -1)).sum(1).double(), _norm(x) * _norm(xt)
        ),
    }
    if x.ndim == 4 and mean is not None and std is not None:
        from .data import unnormalise

        px, pt = unnormalise(x, mean, std), unnormalise(xt, mean, std)  # clamped to [0, 1]
        rng: torch.Tensor = torch.ones(len(x), device=x.device, dtype=torch.float64)
    else:
        px, pt = x, xt
        flat = x.reshape(len(x), -1)
        rng = (flat.max(1).values - flat.min(1).values).double()
    mse = ((pt - px).double() ** 2).reshape(len(x), -1).mean(1)
    out["psnr"] = 10 * torch.log10(rng**2 / mse.clamp(min=1e-20))
    out["ssim"] = (
        ssim(px, pt, rng) if x.ndim == 4 else torch.full((len(x),), float("nan"), device=x.device)
    )
    return out


# ---------------------------------------------------------------------------------------
# the run


@dataclass(frozen=True)
class LayerInfo:
    """One reconstructed hidden layer and the theory's quantities for it."""

    name: str  # h2
    index: int
    where: str
    shape: tuple[int, ...]
    units: int  # m
    below: int | None  # the layer directly feeding it (0 = the input), as found by the probe
    below_units: (
        int | None
    )  # n: units of the layer below that this layer reads (one per max-pool window)
    delta: float  # δ = √(ln m/(ρ n))


@dataclass(frozen=True)
class ReconstructionReport:
    """Everything one ``netprobe reconstruct`` run measured. ``samples`` holds one row per
    (sample, layer, arm); :meth:`to_frame` summarises them per (layer, arm)."""

    model: str
    data: str
    num: int
    options: dict[str, Any]
    layers: list[LayerInfo]
    arms: list[str]
    samples: list[dict[str, Any]]
    alphas: dict[str, dict[int, float]]  # arm -> generated layer j -> α
    notes: list[str] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(
        default_factory=dict, repr=False
    )  # "x", "h2/model" -> (S,C,H,W) in [0,1]
    tensors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # --save-tensors

    def samples_frame(self) -> Any:
        """One row per (sample, layer, arm): every metric (``metrics.csv``)."""
        import pandas as pd

        return pd.DataFrame(self.samples)

    def to_frame(self) -> Any:
        """Mean ± std of every metric per (layer, arm), layers in depth order."""
        return self._summary.copy()

    @functools.cached_property
    def _summary(self) -> Any:
        import pandas as pd

        df = self.samples_frame()
        rows = []
        for info in self.layers:
            for arm in self.arms:
                part = df[(df["layer"] == info.name) & (df["arm"] == arm)]
                if part.empty:
                    continue
                row: dict[str, Any] = {"layer": info.name, "arm": arm, "n": len(part)}
                for m in METRICS:
                    vals = part[m].astype(float)
                    row[m] = float(vals.mean()) if vals.notna().any() else float("nan")
                    row[f"{m}_std"] = (
                        float(vals.std(ddof=0)) if vals.notna().any() else float("nan")
                    )
                rows.append(row)
        return pd.DataFrame(rows)

    def headline(self) -> list[dict[str, Any]]:
        """Per layer: the model's real h against the random-h control (scale-free error and
        cosine), and the fresh-init control."""
        frame = self.to_frame()
        out = []
        for info in self.layers:
            sub = frame[frame["layer"] == info.name].set_index("arm")
            if "model" not in sub.index:
                continue
            row: dict[str, Any] = {
                "layer": info.name,
                "err_model": sub.loc["model", "rel_err_scaled"],
                "cos_model": sub.loc["model", "cosine"],
            }
            for arm, key in (
                ("random-h", "random_h"),
                ("fresh-init", "fresh"),
                ("permuted", "permuted"),
            ):
                if arm in sub.index:
                    row[f"err_{key}"] = sub.loc[arm, "rel_err_scaled"]
                    row[f"cos_{key}"] = sub.loc[arm, "cosine"]
            if "err_random_h" in row and row["err_model"] > 0:
                row["random_h_over_model"] = row["err_random_h"] / row["err_model"]
            out.append(row)
        return out

    def headline_text(self) -> list[str]:
        lines = []
        for r in self.headline():
            if "random_h_over_model" not in r:
                continue
            ratio = r["random_h_over_model"]
            verdict = "better" if ratio > 1 else "worse"
            lines.append(
                f"{r['layer']}: real h re-infers with scaled error {r['err_model']:.3f} (cosine {r['cos_model']:.3f}) "
                f"against {r['err_random_h']:.3f} (cosine {r['cos_random_h']:.3f}) for the random-h control: "
                f"{ratio:.2f}× {'lower' if ratio > 1 else 'higher'} error, {verdict} than random h"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "num": self.num,
            "options": self.options,
            "layers": [vars(i) | {"shape": list(i.shape)} for i in self.layers],
            "arms": {a: ARM_HELP[a] for a in self.arms},
            "alphas": {
                a: {f"h{j}" if j else "input": v for j, v in al.items()}
                for a, al in self.alphas.items()
            },
            "summary": self.to_frame().to_dict(orient="records"),
            "headline": self.headline(),
            "headline_text": self.headline_text(),
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        from .report import markdown_table

        o = self.options
        text = f"# Reverse reconstruction of {self.model}\n\n"
        text += (
            f"Data: {self.data}, {self.num} inputs. Layers: {', '.join(i.name for i in self.layers)}. "
            f"α = {o.get('alpha')}, keep ρ = {o.get('keep')}, unpooling = {o.get('unpool')}, "
            f"smoothing σ = {o.get('smooth')}, seed {o.get('seed')}.\n\n"
        )
        if self.headline_text():
            text += (
                "## Real h against the random-h control\n\n"
                + "".join(f"- {t}\n" for t in self.headline_text())
                + "\n"
            )
        cols = [
            "layer",
            "arm",
            "rel_err",
            "rel_err_scaled",
            "scale",
            "cosine",
            "precision",
            "recall",
            "jaccard",
            "jaccard_thr",
            "rel_err_thr_scaled",
            "active_frac",
            "theory_bound",
            "px_rel_err",
            "psnr",
            "ssim",
            "top1_agree",
        ]
        text += "## Summary (mean over samples)\n\n" + markdown_table(
            self.to_frame().to_dict(orient="records"), cols
        )
        text += "\n## Layers\n\n" + markdown_table(
            [
                {
                    "layer": i.name,
                    "where": i.where,
                    "shape": "x".join(map(str, i.shape)),
                    "m": i.units,
                    "below": ("input" if i.below == 0 else f"h{i.below}")
                    if i.below is not None
                    else "—",
                    "n": i.below_units or "—",
                    "delta": i.delta,
                }
                for i in self.layers
            ]
        )
        text += "\n## α per generated layer\n\n" + markdown_table(
            [
                {"arm": a, **{("input" if j == 0 else f"h{j}"): v for j, v in sorted(al.items())}}
                for a, al in self.alphas.items()
            ]
        )
        text += "\n## Arms\n\n" + "".join(f"- **{a}**: {ARM_HELP[a]}\n" for a in self.arms)
        text += (
            "\n## Metrics\n\n"
            "- `rel_err` = ‖h̃ − h‖/‖h‖ with h̃ = the model's forward pass on x̃ (its own biases); "
            "`rel_err_scaled` after the best scalar rescale `scale` = ⟨h̃, h⟩/‖h̃‖²; `cosine`.\n"
            "- `precision`/`recall`/`jaccard`: active units (> 0) of h̃ against those of h.\n"
            "- `*_thr`: the theory's inference h̃ = r(A x̃ + b') with b' = −δ‖h‖, δ = √(ln m/(ρn)) "
            "(PAPER.md §1); A x̃ is the layer's pre-activation on x̃ minus its pre-activation with the layer "
            "below set to zero (its bias and any skip input).\n"
            "- `active_frac` = k/m; `theory_bound` = √(k/(ρn)), the theorem's error scale (meaningful when h is sparse).\n"
            "- `px_rel_err`, `px_cosine` (model input space), `psnr`, `ssim` (pixels): context only; the theory "
            "claims nothing about pixels.\n"
            "- `top1_agree`: the classifier's top-1 on x̃ equals its top-1 on x.\n"
        )
        if self.notes:
            text += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in self.notes)
        return text


def check_options(
    *, smooth: float, batch_size: int, keep: float | None = None, unpool: str | None = None
) -> None:
    """The reconstruction options' ranges, one message each: the CLI calls this before it
    creates the output folder or loads the model, :func:`run` for API callers."""
    from .reverse import UNPOOL_MODES

    if unpool is not None and unpool not in UNPOOL_MODES:
        raise OptionError(
            f"--unpool {unpool}: unknown unpooling", hint=f"use one of {', '.join(UNPOOL_MODES)}"
        )
    if keep is not None and not 0.0 < keep <= 1.0:
        raise OptionError(
            f"--keep {keep:g}: the keep-probability ρ must lie in (0, 1]",
            hint="e.g. --keep 0.5; 1 = no generation dropout",
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


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` -> a tuple of floats (``--mean`` / ``--std``)."""
    if text is None or not text.strip():
        return None
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or not all(math.isfinite(v) for v in vals):
        raise OptionError(
            f"{what} {text}: expected numbers separated by commas",
            hint=f"e.g. {what} 0.5 or {what} 0.485,0.456,0.406",
        )
    return vals


def select_layers(
    model: nn.Module, input_shape: Sequence[int], spec: str
) -> tuple[list[HiddenLayer], list[str]]:
    """``h2``, a module path, a comma list of those, or ``all`` (every hidden layer the
    reverse net can reach: those below the first irreversible op). Returns (layers, notes)."""
    hidden = hidden_layers(model, tuple(input_shape))
    notes: list[str] = []
    if spec.strip().lower() == "all":
        if not hidden:
            resolve_layer("h1", hidden)  # raises the no-rectifier error
        p = next(iter(model.parameters()), None)
        ex = torch.zeros((1, *input_shape), device=p.device if p is not None else "cpu")
        reach = ReverseNet(model).reversible_upto(ex)
        if reach < 1:
            ReverseNet(model).forward(ex, 1)  # raises, naming the op
        if reach < len(hidden):
            notes.append(
                f"layers h{reach + 1}..h{len(hidden)} lie above an op the reverse net cannot run backwards; they are left out"
            )
        return hidden[:reach], notes
    chosen = [resolve_layer(s, hidden) for s in spec.split(",") if s.strip()]
    if not chosen:
        raise OptionError(f"--layer {spec!r}: no layer given", hint="e.g. --layer h2, --layer all")
    return sorted(set(chosen), key=lambda h: h.index), notes


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
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        logits = None
    return got["h"], got["z"], logits


def _display(
    t: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None, stretch: bool
) -> np.ndarray:
    """(S, C, H, W) in [0, 1] for the image grid: x as the model saw it (mean/std undone);
    x̃ contrast-stretched per image (1st–99th percentile), its scale being α's business."""
    if t.ndim != 4 or len(t) == 0:
        return np.zeros((0,), dtype=np.float32)
    if mean is not None and std is not None:
        from .data import unnormalise

        t = unnormalise(t, mean, std, clamp=not stretch)
    if stretch or mean is None or std is None:
        flat = t.reshape(len(t), -1).float()
        lo = flat.quantile(0.01, dim=1).view(-1, 1, 1, 1)
        hi = flat.quantile(0.99, dim=1).view(-1, 1, 1, 1)
        t = ((t - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return t.detach().float().cpu().numpy()


def run(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[HiddenLayer],
    *,
    alpha: str | float = "theory",
    keep: float = 1.0,
    unpool: str = "random",
    smooth: float = 0.0,
    controls: bool = True,
    seed: int = 0,
    batch_size: int = 64,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    model_name: str = "model",
    data_source: str = "",
    show: int = 4,
    save_tensors: bool = False,
    notes: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> ReconstructionReport:
    """Reconstruct ``layers`` of ``model`` from the inputs ``x`` (prepared for the model, on
    its device) and measure every arm. ``notes`` are carried into the report (e.g. from
    :func:`select_layers`). ``progress(n)`` is called after each unit of work
    (one batch of one arm); there are :func:`work_units` of them."""
    if not layers:
        raise NothingToAnalyseError(
            "no hidden layer to reconstruct", hint="see `netprobe layers MODEL`"
        )
    if len(x) == 0:
        raise NothingToAnalyseError(
            "no inputs to reconstruct", hint="give --num 1 or more and a non-empty --inputs"
        )
    check_options(smooth=smooth, batch_size=batch_size)
    upto = max(h.index for h in layers)
    nets: dict[str, nn.Module] = {"model": model}
    if controls:
        nets["fresh-init"] = fresh_init(model, seed + 1)
        nets["permuted"] = permuted_weights(model, seed + 2)
    arms = list(nets) + (["random-h"] if controls else [])
    samples: list[dict[str, Any]] = []
    alphas: dict[str, dict[int, float]] = {}
    notes = list(notes)
    images: dict[str, np.ndarray] = {"x": _display(x[:show], mean, std, stretch=False)}
    saved: dict[str, list[torch.Tensor]] = {}
    infos: dict[int, LayerInfo] = {}
    gen = torch.Generator(device=x.device).manual_seed(seed + 3)

    def keep_tensor(key: str, t: torch.Tensor) -> None:
        if save_tensors:
            saved.setdefault(key, []).append(t.detach().float().cpu())

    for arm, net in nets.items():
        rn = ReverseNet(net, alpha=alpha, keep=keep, unpool=unpool, seed=seed)
        fits = rn.fit(x[:batch_size], upto)
        alphas[arm] = {j: f.alpha for j, f in fits.items()}
        if arm == "model" and controls:
            alphas["random-h"] = alphas[
                "model"
            ]  # the random-h control runs the model's own reverse net
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            fwd = rn.forward(xb, upto)
            with torch.no_grad(), eval_mode(net):
                logits_x = net(xb)
            if not isinstance(logits_x, torch.Tensor) or logits_x.ndim != 2:
                logits_x = None
            for hl in layers:
                lay = hl.index
                h = fwd.h(lay)
                below = max(rn.deps.get(lay, []), default=None)
                if lay not in infos:
                    m = int(h[0].numel())
                    n = rn.fits[below].reach if below is not None else None
                    delta = math.sqrt(math.log(max(m, 2)) / (keep * n)) if n else float("nan")
                    infos[lay] = LayerInfo(
                        hl.name, lay, hl.where, tuple(hl.shape), m, below, n, delta
                    )
                info = infos[lay]
                cases = [(arm, h)]
                if arm == "model" and controls:
                    cases.append(("random-h", random_like_sparsity(h, gen)))
                for case, hh in cases:
                    xt = gaussian_blur(rn.generate(fwd, lay, hh), smooth)
                    rows, ht = _measure(net, rn, info, hh, xt, xb, logits_x, keep, mean, std)
                    for i in range(len(xb)):
                        samples.append(
                            {
                                "sample": start + i,
                                "layer": hl.name,
                                "arm": case,
                                **{k: float(v[i]) for k, v in rows.items()},
                            }
                        )
                    if start == 0:
                        images[f"{hl.name}/{case}"] = _display(xt[:show], mean, std, stretch=True)
                    keep_tensor(f"{hl.name}/{case}/x_gen", xt)
                    keep_tensor(f"{hl.name}/{case}/h", hh)
                    keep_tensor(f"{hl.name}/{case}/h_inferred", ht)
            if progress is not None:
                progress(1)
        notes.extend(n for n in sorted(rn.ctl.notes) if n not in notes)
    tensors = {}
    if save_tensors:
        tensors["x"] = x.detach().float().cpu().numpy()
        tensors.update({k: torch.cat(v).numpy() for k, v in saved.items()})
    options = {
        "alpha": alpha,
        "keep": keep,
        "unpool": unpool,
        "smooth": smooth,
        "controls": controls,
        "seed": seed,
        "batch_size": batch_size,
    }
    return ReconstructionReport(
        model=model_name,
        data=data_source,
        num=len(x),
        options=options,
        layers=[infos[h.index] for h in layers],
        arms=[a for a in ARMS if a in arms],
        samples=samples,
        alphas=alphas,
        notes=notes,
        images=images,
        tensors=tensors,
    )


def pick(ds: Any, num: int, seed: int) -> Any:
    """``num`` examples of a :class:`~netprobe.data.Dataset`: all of them, in order, when it
    holds no more; else a seeded random subset in random order (sources are often sorted by
    class: the first N, or the first images shown, would all be one class)."""
    if num >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    return ds.subset(torch.randperm(len(ds), generator=g)[:num])


def check_error(
    lm: Any,
    *,
    layer: str = "h2",
    num: int = 16,
    inputs: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    alpha: str | float = "theory",
    keep: float = 1.0,
    unpool: str = "random",
) -> float:
    """One number for ``netprobe check``: the mean relative error of the re-inferred layer
    after the best scalar rescale (``rel_err_scaled``), no controls; with several layers
    (``all`` or a comma list) the worst layer's. ``lm`` is a :class:`~netprobe.loading.LoadedModel`."""
    from .data import load_dataset, prepare

    net = lm.require_module("check").to(device)
    shape = lm.require_input_shape("check")
    ds = pick(load_dataset(inputs), num, seed)
    x = prepare(ds, shape, lm.mean, lm.std, resize=lm.resize).to(device)  # (N, *input_shape)
    hidden, _ = select_layers(net, shape, layer)
    rep = run(
        net, x, hidden, alpha=alpha, keep=keep, unpool=unpool, controls=False, seed=seed, show=0
    )
    frame = rep.to_frame()
    return float(frame.loc[frame["arm"] == "model", "rel_err_scaled"].max())


def work_units(num: int, batch_size: int, controls: bool) -> int:
    return math.ceil(num / batch_size) * (3 if controls else 1)


def _measure(
    net: nn.Module,
    rn: ReverseNet,
    info: LayerInfo,
    h: torch.Tensor,
    xt: torch.Tensor,
    x: torch.Tensor,
    logits_x: torch.Tensor | None,
    keep: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every per-sample metric of one generated batch ``xt`` against its h and x, and h̃."""
    ht, z, logits = _infer(net, xt, info.index)
    out = compare(h, ht)
    if info.below is not None:
        lin = z - rn.preactivation(
            xt, info.index, replace=info.below
        )  # A x̃: bias (and skip input) removed
        thr = F.relu(
            lin - info.delta * _norm(h).to(lin.dtype).view(-1, *([1] * (h.ndim - 1)))
        )  # r(A x̃ − δ‖h‖)
        out.update({f"{k}_thr": v for k, v in compare(h, thr).items() if k != "scale"})
        out["rel_err_thr_scaled"] = out.pop("rel_err_scaled_thr")
    else:
        for k in (
            "rel_err_thr",
            "rel_err_thr_scaled",
            "cosine_thr",
            "precision_thr",
            "recall_thr",
            "jaccard_thr",
        ):
            out[k] = torch.full((len(h),), float("nan"), dtype=torch.float64, device=h.device)
    k_active = (h.reshape(len(h), -1) > 0).sum(1).double()
    out["active_frac"] = k_active / info.units
    out["theory_bound"] = (
        (k_active / (keep * info.below_units)).sqrt()
        if info.below_units
        else torch.full_like(k_active, float("nan"))
    )
    out.update(pixel_metrics(x, xt, mean, std))
    if logits is not None and logits_x is not None:
        out["top1_agree"] = (logits.argmax(1) == logits_x.argmax(1)).double()
    else:
        out["top1_agree"] = torch.full(
            (len(h),), float("nan"), dtype=torch.float64, device=h.device
        )
    return {k: out[k].detach().cpu() for k in METRICS}, ht
