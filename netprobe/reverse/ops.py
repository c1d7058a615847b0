"""Two tensor operations the reconstruction pipelines apply around the reverse net:
``--smooth``'s Gaussian blur of x̃ and the random-h control (a hidden code's entries permuted)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Depthwise Gaussian blur of (N, C, H, W) images (``--smooth SIGMA``, in pixels), with
    reflect padding so the borders keep their brightness."""
    if sigma <= 0 or x.ndim != 4:
        return x
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, (min(x.shape[-2:]) - 1)) if min(x.shape[-2:]) > 1 else 0
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-(t**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    c = x.shape[1]
    xp = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(xp, k1.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # blur rows
    return F.conv2d(
        y, k1.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )  # blur columns -> (N,C,H,W)


def random_like_sparsity(h: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The random-h control: each sample's entries permuted at random, so the sparsity, the
    norm and the value distribution stay and the structure goes."""
    flat = h.reshape(h.shape[0], -1)  # (B, units)
    # one randperm per sample: sorting random keys (argsort) took 30 ms a batch
    perm = torch.stack(
        [torch.randperm(flat.shape[1], generator=gen, device=gen.device) for _ in range(len(flat))]
    ).to(h.device)
    return flat.gather(1, perm).view_as(h)
