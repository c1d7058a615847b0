"""SHADOW sample generation and mixing (docs/science.md §2.3): x̃ from h_ℓ through the reverse net.

Pure tensor code; it knows nothing about the training loop. :class:`Augmenter` is shaped like
the ``augment`` hook of :func:`netprobe.training.fit` and returns ``(x̃, y, ratio)``: the real
labels, a batch shaped like the real one, and the weight of its loss. See the package docstring
for the scale of x̃ (``scale="match"`` by default).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError

GEN_SCALES = ("match", "theory")
UNPOOL_MODES = ("random", "switches", "copy")


@dataclass(frozen=True)
class ShadowSettings:
    """How synthetic inputs are made. ``layer`` is the hidden layer index ℓ (h_ℓ, 1-based)."""

    layer: int = 2
    ratio: float = 1.0  # weight of the loss on (x̃, y) next to the loss on (x, y)
    keep: float = 1.0  # generation keep-probability ρ (the paper's "sampling"); 1 = no masks
    smooth: float = 0.0  # Gaussian blur sigma in pixels (the paper's "smoothing"); 0 = off
    unpool: str = "random"  # max-pool reversal: random | switches | copy (docs/science.md §2.2)
    scale: str = "match"  # match | theory (see the module docstring)
    fit_examples: int = 32  # examples per batch used to estimate α under scale=theory

    def check(self) -> ShadowSettings:
        if self.layer < 1:
            raise OptionError(
                f"--layer h{self.layer}: hidden layers start at h1", hint="e.g. --layer h2"
            )
        if not (math.isfinite(self.ratio) and self.ratio >= 0):
            raise OptionError(
                f"--ratio {self.ratio}: must be a number >= 0", hint="e.g. --ratio 1 (equal weight)"
            )
        if not 0.0 < self.keep <= 1.0:
            raise OptionError(
                f"--gen-keep {self.keep}: the keep-probability must lie in (0, 1]",
                hint="e.g. --gen-keep 0.5; 1 = no generation dropout",
            )
        if not (math.isfinite(self.smooth) and self.smooth >= 0):
            raise OptionError(
                f"--smooth {self.smooth}: must be a sigma >= 0 (pixels)",
                hint="e.g. --smooth 1; 0 = off",
            )
        if self.unpool not in UNPOOL_MODES:
            raise OptionError(
                f"--unpool {self.unpool}: unknown unpooling",
                hint=f"use one of {', '.join(UNPOOL_MODES)}",
            )
        if self.scale not in GEN_SCALES:
            raise OptionError(
                f"--gen-scale {self.scale}: unknown", hint=f"use one of {', '.join(GEN_SCALES)}"
            )
        return self


def match_moments(xt: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Give each synthetic example the mean and standard deviation of its real example
    (over all its values); a constant x̃ becomes the real example's mean."""
    dims = tuple(range(1, x.ndim))
    mu, sd = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)  # (N,1,1,1)
    mu_t, sd_t = xt.mean(dims, keepdim=True), xt.std(dims, keepdim=True)
    z = (xt - mu_t) / sd_t.clamp_min(1e-12)
    z = torch.where(sd_t > 1e-12, z, torch.zeros_like(z))
    return z * sd + mu


def synthesize(
    model: nn.Module, x: torch.Tensor, settings: ShadowSettings, seed: int, reverse: Any = None
) -> torch.Tensor:
    """x̃ for a batch x (model input space, normalised): h_ℓ(x) without gradients, generated back
    down through the transposed layers (docs/science.md §1), smoothed, scaled. Same shape as x; the
    model is not changed (it runs in eval mode, restored afterwards). ``reverse`` may pass a
    ReverseNet whose α were already fitted (scale=theory) to reuse across chunks."""
    from ..reverse import ReverseNet

    rn = reverse
    if rn is None:
        alpha: str | float = "theory" if settings.scale == "theory" else 1.0
        rn = ReverseNet(model, alpha=alpha, keep=settings.keep, unpool=settings.unpool, seed=seed)
        if settings.scale == "theory":
            rn.fit(x[: settings.fit_examples].detach(), settings.layer)
    fwd = rn.forward(x.detach(), settings.layer)
    xt = rn.generate(fwd, settings.layer, fwd.h(settings.layer))  # (N, *input) like x
    return _finish(xt, x, settings)


def _finish(xt: torch.Tensor, x: torch.Tensor, settings: ShadowSettings) -> torch.Tensor:
    """Smoothing and scale of a generated batch ``xt`` for the real batch ``x``."""
    from ..reverse import gaussian_blur

    if settings.smooth > 0 and xt.ndim == 4:
        xt = gaussian_blur(xt, settings.smooth)
    if settings.scale == "match":
        xt = match_moments(xt, x.detach())
    return xt.detach()


def _seed_from(generator: torch.Generator) -> int:
    """A 62-bit seed drawn from ``generator`` (so the draw is part of its saved state)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))


class Augmenter:
    """The SHADOW batch, as ``training.fit``'s augment hook: ``(model, x, y, generator) ->
    (x̃, y, ratio)``. Every random choice (masks, unpooling positions, α probes) comes from a
    seed drawn from ``generator``, so a resumed run regenerates exactly the same x̃."""

    def __init__(self, settings: ShadowSettings) -> None:
        self.settings = settings.check()
        self.calls = 0
        self.seconds = 0.0

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        t0 = time.perf_counter()
        xt = synthesize(model, x, self.settings, _seed_from(generator))  # (B, ...) like x
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return xt, y, float(self.settings.ratio)

    def shared_forward(
        self,
        net: nn.Module,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, float]] | None:
        """``fit``'s one-pass variant of the hook: the training forward of the real batch is also
        the generation graph (:meth:`ReverseNet.train_forward`), so h_ℓ costs no second forward
        pass. Returns ``(output of net on x, (x̃, y, ratio))``, the same x̃ as :meth:`__call__`
        with the same generator, or None where the one-pass route does not apply (``--ratio 0``;
        ``scale="theory"``, whose α are fitted on an eval-mode pass per batch; batch norm in
        training mode, whose running statistics the training forward updates before x̃ would
        be generated from them)."""
        from ..reverse import ReverseNet

        s = self.settings
        if s.ratio == 0.0 or s.scale != "match":
            return None
        if any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()
        ):
            return None
        seed = _seed_from(generator)
        rn = ReverseNet(model, alpha=1.0, keep=s.keep, unpool=s.unpool, seed=seed)
        out, fwd, clean = rn.train_forward(net, x, s.layer)
        t0 = time.perf_counter()
        try:
            if clean:
                xt = _finish(rn.generate(fwd, s.layer, fwd.h(s.layer)), x, s)
            else:  # dropout or batch statistics below h_ℓ: generate from the eval-mode h
                xt = synthesize(model, x, s, seed)
        finally:
            rn.training_backward()
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return out, (xt, y, float(s.ratio))


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def synthetic_set(
    model: nn.Module, x: torch.Tensor, settings: ShadowSettings, seed: int, batch_size: int = 256
) -> torch.Tensor:
    """x̃ for every example of x (normalised, any device), in chunks; returned on x's device.
    Under scale=theory the α are fitted once, on the first chunk."""
    from ..reverse import ReverseNet

    dev = _model_device(model)
    rn = None
    if settings.scale == "theory":
        rn = ReverseNet(
            model, alpha="theory", keep=settings.keep, unpool=settings.unpool, seed=seed
        )
        rn.fit(x[: settings.fit_examples].to(dev), settings.layer)
    else:
        rn = ReverseNet(model, alpha=1.0, keep=settings.keep, unpool=settings.unpool, seed=seed)
    parts = [
        synthesize(model, x[i : i + batch_size].to(dev), settings, seed, reverse=rn).to(x.device)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(parts) if parts else x.clone()


def classify(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """(error, mean cross-entropy) of ``model`` on normalised x, in eval mode, without gradients."""
    from ..netlayers import eval_mode

    dev = _model_device(model)
    wrong, loss = 0, 0.0
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i : i + batch_size].to(dev))  # (n, classes)
            yb = y[i : i + batch_size].to(dev)
            wrong += int((out.argmax(1) != yb).sum())
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
    n = max(len(x), 1)
    return wrong / n, loss / n


def synthetic_error(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: ShadowSettings,
    seed: int,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(error, loss) on the synthetic test set generated from the (normalised) test inputs x with
    the real labels: the quantity the paper finds tracks the real test error."""
    xt = synthetic_set(model, x, settings, seed, batch_size)
    return classify(model, xt, y, batch_size)
