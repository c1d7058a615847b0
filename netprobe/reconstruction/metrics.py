"""Per-sample metrics of one reconstruction: h̃ against h (what the theory is about,
docs/science.md §2.2) and, as context only, x̃ against x in pixels (PSNR, SSIM).

Every function takes a batch (B, ...) and returns (B,) float64 tensors; undefined values
(a zero norm, no active unit, SSIM of vectors) are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

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
#: the metrics in pixel space (``pixel_metrics=False`` leaves them NaN)
PIXEL_METRICS = ("psnr", "ssim")


def norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, (B, ...) -> (B,) float64."""
    return t.reshape(t.shape[0], -1).float().norm(dim=1).double()


def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b where b > 0, NaN elsewhere."""
    return torch.where(b > 0, a / b.clamp(min=1e-30), torch.full_like(a, float("nan")))


def nan(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.full((n,), float("nan"), dtype=torch.float64, device=device)


def compare(h: torch.Tensor, ht: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample agreement of ``ht`` with ``h`` (both (B, ...)): relative L2 error raw and
    after the best scalar rescale s = ⟨h̃, h⟩/‖h̃‖², cosine, and precision / recall / Jaccard
    of the active (> 0) units."""
    a, b = h.reshape(h.shape[0], -1).float(), ht.reshape(ht.shape[0], -1).float()  # (B, units)
    nh, nt = a.norm(dim=1).double(), b.norm(dim=1).double()
    dot = (a * b).sum(1).double()
    scale = div(dot, nt**2)
    on_h, on_t = (a > 0).float(), (b > 0).float()  # float sums are much faster than bool ones
    k_h, k_t, both = on_h.sum(1).double(), on_t.sum(1).double(), (on_h * on_t).sum(1).double()
    err = (b - a).norm(dim=1).double()
    err_s = (scale.nan_to_num(0.0).float()[:, None] * b - a).norm(dim=1).double()
    return {
        "rel_err": div(err, nh),
        "rel_err_scaled": div(err_s, nh),
        "scale": scale,
        "cosine": div(dot, nh * nt),
        "precision": div(both, k_t),
        "recall": div(both, k_h),
        "jaccard": div(both, k_h + k_t - both),
    }


def gaussian_window(size: int, sigma: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps (float64)."""
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


#: the largest moment stack (bytes) :func:`ssim` filters at once on a CPU: one 3×224×224 image
SSIM_CHUNK_BYTES = 4 << 20


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: torch.Tensor | float = 1.0,
    win: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Per-sample SSIM (Wang et al. 2004: Gaussian 11×11 window, σ = 1.5, K1 = 0.01,
    K2 = 0.03, valid region, mean over channels) of (B, C, H, W) images; NaN for anything
    that is not a batch of images. The window shrinks to the largest odd size that fits
    smaller images.

    Fast: the 2-D Gaussian window is separable, so the five local moments (x, y, x², y², xy)
    of the channel-centred images are filtered together, as one (B, 5C, H, W) stack, by two
    1-D convolutions in float32 (the combination is in float64). Agrees with the direct
    11×11 float64 window to ~1e-6 and is ~30× faster on CPU (3.8-5.2 s -> 0.11-0.19 s for
    4×3×224×224 on one thread; benchmarks/reconstruct.py --ssim).

    On a CPU the batch goes through in chunks whose moment stack fits in SSIM_CHUNK_BYTES:
    a whole batch's temporaries (32×3×224×224: 96 MB each) came fresh from the kernel on
    every call, and the page faults cost more than the arithmetic (1.39 s a batch of 32, of
    it 1.07 s system time, against 0.18 s one image at a time).
    """
    if x.ndim != 4:
        return nan(x.shape[0], x.device)
    per = 5 * x.shape[1] * x.shape[2] * x.shape[3] * 4  # bytes of one image's float32 stack
    step = max(1, SSIM_CHUNK_BYTES // per)
    if x.device.type == "cpu" and len(x) > step:
        L = torch.as_tensor(data_range, dtype=torch.float64).reshape(-1)
        L = L.expand(len(x)) if L.numel() == 1 else L
        return torch.cat(
            [
                _ssim(x[i : i + step], y[i : i + step], L[i : i + step], win, sigma)
                for i in range(0, len(x), step)
            ]
        )
    return _ssim(x, y, data_range, win, sigma)


def _ssim(
    x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, win: int, sigma: float
) -> torch.Tensor:
    """:func:`ssim` of one chunk."""
    win = min(win, x.shape[-2], x.shape[-1])
    win = win if win % 2 == 1 else win - 1
    # centre each image channel first: variances are shift-free, and E[x²] − E[x]² of
    # centred values loses far less to float32 rounding (flat images give exactly 0)
    ox = x.double().mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    oy = y.double().mean(dim=(2, 3), keepdim=True)
    xc, yc = (x.double() - ox).float(), (y.double() - oy).float()
    c = x.shape[1]
    g = gaussian_window(win, sigma, x.device).float()
    stack = torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1)  # (B, 5C, H, W)
    n = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, win), groups=n)  # along W
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(n, 1, win, 1), groups=n)  # along H
    mx, my, exx, eyy, exy = (t.double() for t in stack.split(c, dim=1))  # (B,C,H',W') each
    L = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    sxx, syy, sxy = exx - mx**2, eyy - my**2, exy - mx * my
    mx, my = mx + ox, my + oy  # the local means, uncentred, for the luminance term
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))


def pixel_metrics(
    x: torch.Tensor,
    xt: torch.Tensor,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    pixels: bool = True,
) -> dict[str, torch.Tensor]:
    """Context only (the theory claims nothing about pixels): relative error and cosine in
    the model's input space, PSNR and SSIM in pixel space ([0, 1] after undoing mean/std and
    clamping when they are known; otherwise the raw values with each sample's range).
    SSIM is NaN for inputs that are not images (an MLP's vectors); with ``pixels=False``
    PSNR and SSIM are not computed (NaN)."""
    n = len(x)
    out = {
        "px_rel_err": div(norm(xt - x), norm(x)),
        "px_cosine": div(
            (x.reshape(n, -1) * xt.reshape(n, -1)).sum(1).double(), norm(x) * norm(xt)
        ),
    }
    if not pixels:
        return out | {k: nan(n, x.device) for k in PIXEL_METRICS}
    if x.ndim == 4 and mean is not None and std is not None:
        from ..data import unnormalise

        px, pt = unnormalise(x, mean, std), unnormalise(xt, mean, std)  # clamped to [0, 1]
        rng: torch.Tensor = torch.ones(n, device=x.device, dtype=torch.float64)
    else:
        px, pt = x, xt
        flat = x.reshape(n, -1)
        rng = (flat.max(1).values - flat.min(1).values).double()
    mse = ((pt - px).double() ** 2).reshape(n, -1).mean(1)
    out["psnr"] = 10 * torch.log10(rng**2 / mse.clamp(min=1e-20))
    out["ssim"] = ssim(px, pt, rng)
    return out


def ssim_direct(x: torch.Tensor, y: torch.Tensor, win: int = 11) -> torch.Tensor:
    """SSIM by its definition (Wang et al. 2004): one 2-D 11x11 Gaussian window (σ 1.5) in
    float64, per channel. Slow; kept as the reference that :func:`ssim` (separable, float32)
    is tested and benchmarked against."""
    t = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-(t**2) / (2 * 1.5**2))
    g = g / g.sum()
    c = x.shape[1]
    k = (g[:, None] * g[None, :]).expand(c, 1, win, win).to(x.device)
    x, y = x.double(), y.double()

    def filt(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, k, groups=c)

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))
