"""Random-matrix laws and the spectra of weight matrices.

* The Marchenko–Pastur (MP) law (docs/science.md §2.1): for W (k x N, k <= N) with i.i.d. entries of
  variance sigma^2 and lam = k/N, the eigenvalues x of W W^T / (sigma^2 N) have the density
  ``sqrt((x+ - x)(x - x-)) / (2 pi lam x)`` on ``x± = (1 ± sqrt(lam))^2``; singular values of
  ``W / (sigma sqrt(N))`` are ``sqrt(x)``. lam = 1 gives the quarter-circle law
  ``p(s) = sqrt(4 - s^2) / pi`` on [0, 2]. The CDF is in closed form (:func:`mp_cdf`).
* Exact spectra: eigenvalues of the smaller Gram matrix with a symmetric eigensolver, in
  float32 (a BLAS ``syrk`` for the Gram on CPU, half the flops of a GEMM), redone in float64
  when the error estimate of the top-100 singular values exceeds 5e-5 relative.
* Approximate spectra: stochastic Lanczos quadrature (SLQ; Ubaru, Chen & Saad 2017) with a
  block of Rademacher probes and full reorthogonalisation; W and W^T are applied in one cache-
  blocked pass over W per step.
* Spikes: eigenvalues above the Tracy–Widom (TW1) quantile of the largest eigenvalue of a
  real white Wishart matrix (Johnstone 2001, with Ma's 2012 n-1/2 centring); TW1 is computed
  as a Fredholm determinant (Bornemann 2010), not from a table.
* Nulls: the eigenvalues of a k x N Gaussian matrix are drawn exactly from the bidiagonal
  Laguerre model (Dumitriu & Edelman 2002) in O(k^2), and the first steps of Lanczos on a
  Gaussian matrix have exactly that model's leading tridiagonal block, so SLQ nulls cost O(m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

# spectra with min(k, N) above this go to SLQ under --spectrum auto: the exact route's
# eigensolver alone takes ~25 s at 8192 on one core
AUTO_EXACT_MAX_DIM = 8192
# 2 probes x 12 steps: the KS error to the exact ESD is set by the steps, not the probes (on
# 16384x4096 Gaussian + 3 spikes, mean | max over 10 seeds: 8 x 10 steps 0.016 | 0.018, 2 x 10
# 0.018 | 0.023, 2 x 12 0.014 | 0.019), and on CPU a pass with 2 probes costs ~0.6x one with 8
SLQ_PROBES = 2
SLQ_STEPS = 12
# blocks this narrow are applied one GEMV per column (see _gram_apply)
GEMV_MAX_PROBES = 4
F32_EPS = float(np.finfo(np.float32).eps)
TOP_CHECK = 100  # the top singular values the float32 error bound is checked on
TOP_REL_TOL = 5e-5  # redo in float64 when the error estimate of their relative error passes this
# rel. error of s_i from float32 Gram + eigvalsh ~ C eps32 sqrt(k) sqrt(lambda_max / lambda_i): measured
# C = 0.4-1.0 on Gaussian, spiked and rank-1-dominated matrices of 2048-4096 (5e-6..3.5e-5); C = 2 keeps a margin
F32_ERR_CONST = 2.0

# ---------------------------------------------------------------------------------------
# Marchenko–Pastur and quarter-circle laws


def mp_edges(lam: float) -> tuple[float, float]:
    """Bulk edges x± = (1 ± sqrt(lam))^2 of the MP law for eigenvalues (lam = k/N <= 1)."""
    r = math.sqrt(lam)
    return (1.0 - r) ** 2, (1.0 + r) ** 2


def mp_pdf(x: Any, lam: float) -> np.ndarray:
    """MP density of the eigenvalues of W W^T / (sigma^2 N), lam = k/N in (0, 1] (docs/science.md §2.1)."""
    a, b = mp_edges(lam)
    x = np.asarray(x, dtype=np.float64)
    inside = (x > a) & (x < b) & (x > 0)
    xs = np.where(inside, x, 1.0)
    return np.where(
        inside, np.sqrt(np.maximum((b - xs) * (xs - a), 0.0)) / (2 * math.pi * lam * xs), 0.0
    )


def mp_cdf(x: Any, lam: float) -> np.ndarray:
    """Closed-form MP CDF: F(x) = (A(x) - A(x-)) / (2 pi lam) with the antiderivative
    A(x) = R + (a+b)/2 asin((2x-a-b)/(b-a)) - sqrt(ab) asin(((a+b)x - 2ab)/((b-a)x)),
    R = sqrt((b-x)(x-a)); A(b) - A(a) = 2 pi lam, so F(b) = 1."""
    a, b = mp_edges(lam)
    x0 = np.asarray(x, dtype=np.float64)
    x = np.clip(x0, a, b)
    rt = np.sqrt(np.maximum((b - x) * (x - a), 0.0))
    s1 = np.arcsin(np.clip((2 * x - a - b) / (b - a), -1.0, 1.0))
    sab = math.sqrt(a * b)
    xs = np.where(x > 0, x, 1.0)
    arg = np.where(x > 0, ((a + b) * xs - 2 * a * b) / ((b - a) * xs), 1.0)
    s2 = np.arcsin(np.clip(arg, -1.0, 1.0))
    A = rt + 0.5 * (a + b) * s1 - sab * s2
    A0 = -0.25 * (a + b) * math.pi + 0.5 * sab * math.pi
    F = np.clip((A - A0) / (2 * math.pi * lam), 0.0, 1.0)
    return np.where(x0 >= b, 1.0, np.where(x0 <= a, 0.0, F))


def sv_pdf(s: Any, lam: float) -> np.ndarray:
    """Density of the singular values of W / (sigma sqrt(N)): p(s) = 2 s f_MP(s^2)."""
    s = np.asarray(s, dtype=np.float64)
    return 2.0 * s * mp_pdf(s * s, lam)


def quarter_circle_pdf(s: Any) -> np.ndarray:
    """The quarter-circle law sqrt(4 - s^2)/pi on [0, 2]: the singular values of a square
    i.i.d. matrix (the lam = 1 case of :func:`sv_pdf`)."""
    s = np.asarray(s, dtype=np.float64)
    return np.where((s >= 0) & (s <= 2), np.sqrt(np.clip(4 - s * s, 0, None)) / math.pi, 0.0)


def ks_to_mp(x_sorted: np.ndarray, lam: float) -> float:
    """Kolmogorov–Smirnov distance between the empirical distribution of ``x_sorted``
    (ascending) and MP(lam)."""
    k = len(x_sorted)
    if k == 0:
        return float("nan")
    F = mp_cdf(x_sorted, lam)
    i = np.arange(1, k + 1)
    return float(max(np.max(i / k - F), np.max(F - (i - 1) / k)))


# ---------------------------------------------------------------------------------------
# Tracy–Widom (beta = 1)


def tw1_cdf(s: float) -> float:
    """TW1 distribution function as the Fredholm determinant det(I - K) on L^2(0, inf),
    K(x, y) = Ai((x + y)/2 + s)/2 (Bornemann 2010, eq. (7.4)), by Gauss–Legendre quadrature."""
    from numpy.polynomial.legendre import leggauss
    from scipy.special import airy

    if s > 12:
        return 1.0
    if s < -12:
        return 0.0
    L = 12.0 + max(0.0, -s)
    m = 24 + int(4 * max(0.0, -s))  # ~1e-8 absolute against 96 nodes on [-4, 6]
    x, w = leggauss(m)
    x = (x + 1) * L / 2
    w = w * L / 2
    K = airy((x[:, None] + x[None, :]) / 2 + s)[0] / 2
    sw = np.sqrt(w)
    return float(np.clip(np.linalg.det(np.eye(m) - sw[:, None] * K * sw[None, :]), 0.0, 1.0))


@lru_cache(maxsize=64)
def tw1_quantile(p: float) -> float:
    """The p-quantile of TW1 (e.g. 0.95 -> 0.979): regula falsi (Illinois) on the monotone
    CDF inside [-4, 8] (F1(-4) ~ 0.006), widened for extreme p, to 1e-9."""
    a, b = (-4.0, 8.0) if 0.01 <= p <= 1 - 1e-12 else (-8.0, 12.0)
    fa, fb = tw1_cdf(a) - p, tw1_cdf(b) - p
    side = 0
    for _ in range(100):
        c = (a * fb - b * fa) / (fb - fa)
        fc = tw1_cdf(c) - p
        if abs(fc) < 1e-12 or b - a < 1e-9:
            return c
        if fc * fb > 0:
            b, fb = c, fc
            if side == -1:
                fa /= 2
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb /= 2
            side = 1
    return c


def tw_center_scale(k: int, n: int) -> tuple[float, float]:
    """Centre and scale of the largest eigenvalue of W W^T for a k x n matrix of i.i.d.
    N(0, 1) entries: (lambda_max - mu) / s -> TW1 (Johnstone 2001), with Ma's (2012)
    half-integer corrections, which are accurate from k ~ 5 on."""
    a, b = math.sqrt(n - 0.5), math.sqrt(k - 0.5)
    mu = (a + b) ** 2
    s = (a + b) * (1 / a + 1 / b) ** (1 / 3)
    return mu, s


def tw_pvalue(lmax: float, k: int, n: int) -> float:
    """P(lambda_max >= lmax) under i.i.d. N(0, 1) entries (lmax on that scale)."""
    mu, s = tw_center_scale(k, n)
    return 1.0 - tw1_cdf((lmax - mu) / s)


@dataclass(frozen=True)
class Spikes:
    count: int  # eigenvalues above the TW threshold
    sigma2: float  # entry variance estimated from the bulk (trace without the spikes)
    threshold: float  # eigenvalue threshold on the W W^T scale
    p_max: float  # TW p-value of the largest eigenvalue (before removing any spike)


def count_spikes(ev: np.ndarray, k: int, n: int, alpha: float, max_iter: int = 20) -> Spikes:
    """Eigenvalues of W W^T (ascending, k of them, W k x n) above the TW1 (1 - alpha)
    quantile of the largest eigenvalue of a k x n Gaussian matrix with the bulk's variance.
    The variance comes from the trace without the spikes found so far,
    sigma^2 = sum(bulk) / ((k - r)(n - r)), iterated to a fixed point; with no spike that is
    ||W||_F^2 / (k n)."""
    q = tw1_quantile(1.0 - alpha)
    total = float(ev.sum())
    r = 0
    sigma2 = total / (k * n)
    p_max = tw_pvalue(float(ev[-1]) / sigma2, k, n) if sigma2 > 0 else 0.0
    thr = float("inf")
    # Weyl: s_{i+r}(W + B) <= s_i(W) when rank B <= r, so the (r+1)-th eigenvalue of a
    # noise-plus-r-spikes matrix stays below the noise's largest: the k x n TW threshold holds
    mu, s = tw_center_scale(k, n)
    for _ in range(max_iter):
        sigma2 = (total - float(ev[k - r :].sum()) if r else total) / ((k - r) * (n - r))
        if sigma2 <= 0:
            break
        thr = sigma2 * (mu + s * q)
        r_new = int(np.count_nonzero(ev > thr))
        r_new = min(r_new, k // 2)
        if r_new == r:
            break
        r = r_new
    return Spikes(r, sigma2, thr, p_max)


# ---------------------------------------------------------------------------------------
# exact spectra


def smaller_gram(W: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The smaller of W W^T and W^T W (k x k, k = min dims), only its upper triangle when
    computed by syrk on CPU (callers read ``UPLO='U'``)."""
    m, n = W.shape
    if W.device.type == "cpu":
        from scipy.linalg import blas

        A = W.detach().to(dtype).contiguous().numpy()  # (m, n) C order = (n, m) Fortran order
        syrk = blas.ssyrk if dtype == torch.float32 else blas.dsyrk
        # A.T is Fortran-contiguous, so BLAS reads it in place: trans=1 gives A A^T (m x m),
        # trans=0 gives A^T A (n x n)
        G = syrk(1.0, A.T, trans=1 if m <= n else 0)
        return torch.from_numpy(G)
    Wd = W.detach().to(dtype)
    return Wd @ Wd.T if m <= n else Wd.T @ Wd


def _rel_error_estimate(ev: np.ndarray, k: int, eps: float) -> float:
    """Estimated relative error of the top-100 singular values from Gram eigenvalues."""
    top = ev[-min(TOP_CHECK, k) :]
    lo = float(top[0])
    if not (ev[-1] > 0):
        return 0.0
    if lo <= 0:
        return float("inf")
    return F32_ERR_CONST * eps * math.sqrt(k) * math.sqrt(float(ev[-1]) / lo)


def exact_eigenvalues(
    W: torch.Tensor, check_top: bool = True
) -> tuple[np.ndarray, torch.Tensor | None, str]:
    """Eigenvalues of the smaller Gram matrix (ascending, float64 numpy), the float32 Gram
    matrix (upper triangle valid; None when the SVD route was taken) and the route used:
    ``gram-f32``, ``gram-f64`` or ``svd-f64``.

    float32 (a syrk and a symmetric eigensolver) is redone as a float64 Gram when the error
    estimate of the top-100 singular values passes 5e-5 relative, and as a float64 SVD when
    even float64 Gram eigenvalues could not reach it (rank-deficient matrices)."""
    k = min(W.shape)
    G = smaller_gram(W, torch.float32)
    ev = torch.linalg.eigvalsh(G, UPLO="U").double().cpu().numpy()
    route = "gram-f32"
    if check_top and k > 1 and _rel_error_estimate(ev, k, F32_EPS) > TOP_REL_TOL:
        top = ev[-min(TOP_CHECK, k) :]
        ratio = float(ev[-1]) / max(float(top[0]), 1e-300)
        # float64 Gram eigenvalues: worst case eps64 sqrt(k) lambda_max / lambda_i
        if float(np.finfo(np.float64).eps) * math.sqrt(k) * ratio * F32_ERR_CONST < TOP_REL_TOL:
            ev = torch.linalg.eigvalsh(smaller_gram(W, torch.float64), UPLO="U").cpu().numpy()
            route = "gram-f64"
        else:
            s = torch.linalg.svdvals(W.detach().to(torch.float64)).cpu().numpy()
            ev = np.sort(s * s)
            route = "svd-f64"
    return np.clip(ev, 0.0, None), G, route


# ---------------------------------------------------------------------------------------
# approximate spectra: stochastic Lanczos quadrature


@dataclass(frozen=True)
class Quadrature:
    """An approximate spectral distribution: per probe, Gauss nodes and weights (each
    probe's weights sum to 1)."""

    nodes: np.ndarray  # (probes, steps) Ritz values, ascending per probe
    weights: np.ndarray  # (probes, steps)

    def cdf(self, x: Any) -> np.ndarray:
        """The averaged quadrature CDF, linear between nodes (each node's mass split in
        half on either side: the midpoint rule between Chebyshev–Markov–Stieltjes bounds)."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.ravel()
        xs = np.broadcast_to(flat, (len(self.nodes), len(flat)))
        return _cdf_rows(self.nodes, self.weights, xs).mean(0).reshape(x.shape)

    def scaled(self, c: float) -> Quadrature:
        return Quadrature(self.nodes * c, self.weights)

    def max_node(self) -> float:
        return float(self.nodes.max())


def _cdf_rows(th: np.ndarray, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise :meth:`Quadrature.cdf` of one probe: th, w (B, s) ascending nodes and weights,
    x (B, P) points -> (B, P): 0 below the first breakpoint, 1 above the last, linear
    between. With two or more nodes the CDF ramps in from 0 half a node spacing below the
    first node and out to 1 half a spacing above the last."""
    C = np.cumsum(w, axis=1) - w / 2
    if th.shape[1] > 1:
        lo = np.maximum(th[:, :1] - 0.5 * (th[:, 1:2] - th[:, :1]), 0.0)
        hi = th[:, -1:] + 0.5 * (th[:, -1:] - th[:, -2:-1])
        th = np.concatenate([lo, th, hi], axis=1)
        C = np.concatenate([np.zeros_like(lo), C, np.ones_like(hi)], axis=1)
    out = np.empty(x.shape)
    for r in range(len(th)):  # np.interp per row: faster than any broadcast compare here
        out[r] = np.interp(x[r], th[r], C[r], left=0.0, right=1.0)
    return out


def _tridiag_quadrature(alpha: np.ndarray, beta: np.ndarray) -> Quadrature:
    """alpha (probes, m), beta (probes, m-1) -> Gauss nodes and weights (first components^2),
    all tridiagonals in one batched symmetric eigensolve."""
    B, m = alpha.shape
    T = np.zeros((B, m, m))
    i = np.arange(m)
    T[:, i, i] = alpha
    if m > 1:
        T[:, i[:-1], i[1:]] = beta
        T[:, i[1:], i[:-1]] = beta
    th, S = np.linalg.eigh(T)
    return Quadrature(th, S[:, 0, :] ** 2)


def _gram_apply(W: Any, V: Any, rows_small: bool, cache_elems: int = 1 << 20) -> Any:
    """G V for G the smaller Gram matrix, in one pass over W: W is cut into slabs of about
    4 MB along its long side and each slab is used twice while it is in cache. Works on
    numpy arrays (CPU, OpenBLAS: faster than MKL for these skinny products) and on torch
    tensors (GPU). On CPU a block of at most GEMV_MAX_PROBES columns is applied one
    matrix-vector product per column while the slab is in cache: OpenBLAS's GEMM with 2-4
    columns takes as long as with 8, while each extra GEMV on a cached slab costs ~1/4 pass."""
    m, n = W.shape
    is_np = isinstance(W, np.ndarray)
    R = V.shape[1]
    by_column = is_np and R <= GEMV_MAX_PROBES
    if rows_small:  # G = W W^T (m x m); slabs are column blocks W[:, j:j+b] (m, b)
        b = max(64, cache_elems // max(m, 1))
        if by_column:
            b *= 2  # each row of a column slab is a short strided run: longer runs, ~10% faster
            VT = np.ascontiguousarray(V.T)  # (R, m)
            acc = np.zeros((R, m), V.dtype)
            for j in range(0, n, b):
                Wb = W[:, j : j + b]
                for r in range(R):
                    acc[r] += Wb @ (VT[r] @ Wb)
            return np.ascontiguousarray(acc.T)
        out = (
            np.zeros((m, R), V.dtype)
            if is_np
            else torch.zeros((m, R), dtype=V.dtype, device=V.device)
        )
        for j in range(0, n, b):
            Wb = W[:, j : j + b]  # (m, b)
            out += Wb @ (Wb.T @ V)  # (m, R)
        return out
    b = max(64, cache_elems // max(n, 1))  # G = W^T W (n x n); slabs are row blocks (b, n)
    if by_column:
        VT = np.ascontiguousarray(V.T)  # (R, n)
        accT = np.zeros((R, n), V.dtype)
        for i in range(0, m, b):
            Wb = W[i : i + b]
            for r in range(R):
                accT[r] += (Wb @ VT[r]) @ Wb
        return np.ascontiguousarray(accT.T)
    outT = (
        np.zeros((R, n), V.dtype) if is_np else torch.zeros((R, n), dtype=V.dtype, device=V.device)
    )
    for i in range(0, m, b):
        Wb = W[i : i + b]  # (b, n)
        outT += (Wb @ V).T @ Wb  # (R, n): the W-row-major friendly orientation
    return outT.T if not is_np else np.ascontiguousarray(outT.T)


def slq(
    W: torch.Tensor,
    probes: int = SLQ_PROBES,
    steps: int = SLQ_STEPS,
    generator: torch.Generator | None = None,
) -> Quadrature:
    """Stochastic Lanczos quadrature of the smaller Gram matrix's spectral distribution:
    ``probes`` Rademacher vectors run together as one block, ``steps`` Lanczos steps each,
    fully reorthogonalised (twice) in float64; the products with W stay in W's dtype."""
    m, n = W.shape
    rows_small = m <= n
    k = min(m, n)
    steps = min(steps, k)
    dev = W.device
    g = generator or torch.Generator().manual_seed(0)
    q = (torch.randint(0, 2, (k, probes), generator=g).double() * 2 - 1) / math.sqrt(k)  # (k, R)
    q = q.to(dev)
    Q = torch.zeros((steps, k, probes), dtype=torch.float64, device=dev)
    alpha = np.zeros((probes, steps))
    beta = np.zeros((probes, steps))
    qprev = torch.zeros_like(q)
    b = torch.zeros(probes, dtype=torch.float64, device=dev)
    Wc: Any = W.detach().contiguous().numpy() if dev.type == "cpu" else W.detach()
    for j in range(steps):
        Q[j] = q
        if dev.type == "cpu":
            y = torch.from_numpy(_gram_apply(Wc, q.numpy().astype(Wc.dtype), rows_small)).double()
        else:
            y = _gram_apply(Wc, q.to(Wc.dtype), rows_small).double()  # (k, R)
        a = (q * y).sum(0)
        y = y - a * q - b * qprev
        for _ in range(2):
            c = torch.einsum("jkr,kr->jr", Q[: j + 1], y)
            y = y - torch.einsum("jkr,jr->kr", Q[: j + 1], c)
        b = y.norm(dim=0)
        alpha[:, j] = a.cpu().numpy()
        beta[:, j] = b.cpu().numpy()
        if j + 1 < steps and bool((b <= 1e-12 * a.abs().clamp_min(1e-300)).any()):
            steps = j + 1  # an invariant subspace: the quadrature is exact already
            break
        qprev, q = q, y / b
    return _tridiag_quadrature(alpha[:, :steps], beta[:, : steps - 1])


def count_spikes_quadrature(qd: Quadrature, k: int, n: int, fro2: float, alpha: float) -> Spikes:
    """Spike count from SLQ Ritz values: Ritz values interlace the eigenvalues, so each
    probe's count above the TW threshold is a lower bound; the largest over the probes is
    used, and the bulk variance comes from ||W||_F^2 without those Ritz values."""
    q = tw1_quantile(1.0 - alpha)
    sigma2 = fro2 / (k * n)
    top = float(qd.nodes.max())
    p_max = tw_pvalue(top / sigma2, k, n) if sigma2 > 0 else 0.0
    r, thr = 0, float("inf")
    mu, s = tw_center_scale(k, n)  # as in count_spikes (Weyl)
    for _ in range(20):
        thr = sigma2 * (mu + s * q)
        counts = (qd.nodes > thr).sum(axis=1)
        r_new = min(int(counts.max()), k // 2)
        if r_new == r:
            break
        r = r_new
        best = qd.nodes[int(np.argmax(counts))]
        sigma2 = (fro2 - float(np.sort(best)[-r:].sum())) / ((k - r) * (n - r))
        if sigma2 <= 0:
            break
    return Spikes(r, sigma2, thr, p_max)


# ---------------------------------------------------------------------------------------
# Gaussian nulls: the Laguerre (Wishart) tridiagonal model


def laguerre_bidiagonal(
    k: int, n: int, rng: np.random.Generator, m: int | None = None, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Squared diagonal and squared off-diagonal of the bidiagonal B with B B^T distributed
    as W W^T for W k x n with i.i.d. N(0, 1) entries (Dumitriu & Edelman 2002, beta = 1):
    diag chi_{n}, chi_{n-1}, ..., off-diagonal chi_{k-1}, chi_{k-2}, ... (first m only);
    ``rows`` independent draws as (rows, m) and (rows, m-1) arrays."""
    m = k if m is None else min(m, k)
    lead = () if rows is None else (rows,)
    d2 = rng.chisquare(n - np.arange(m), size=(*lead, m))
    o2 = (
        rng.chisquare(k - 1 - np.arange(m - 1), size=(*lead, m - 1))
        if m > 1
        else np.zeros((*lead, 0))
    )
    return d2, o2


def laguerre_eigenvalues(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Eigenvalues of W W^T for a k x n Gaussian N(0, 1) matrix (k <= n), ascending, drawn
    exactly in O(k^2) from the tridiagonal model."""
    from scipy.linalg import lapack

    d2, o2 = laguerre_bidiagonal(k, n, rng)
    diag = d2.copy()
    diag[1:] += o2  # T = B^T B-like tridiagonal: same eigenvalues as B B^T
    off = np.sqrt(d2[:-1] * o2)
    ev, info = lapack.dsterf(diag, off)[:2]
    if info != 0:  # pragma: no cover - LAPACK failure
        raise RuntimeError(f"dsterf failed (info={info})")
    return np.sort(ev)


def laguerre_lanczos(
    k: int, n: int, probes: int, steps: int, rng: np.random.Generator
) -> Quadrature:
    """The SLQ quadrature that Lanczos on a k x n Gaussian matrix would give: Lanczos on a
    Wishart matrix from any unit start vector produces exactly the leading block of the
    Laguerre tridiagonal model, so each probe is an independent O(steps) draw."""
    steps = min(steps, k)
    d2, o2 = laguerre_bidiagonal(k, n, rng, steps + 1, rows=probes)
    # B^T B for lower-bidiagonal B, starting from e_1: alpha_1 = d_1^2, beta_1 = d_1 o_1,
    # alpha_2 = o_1^2 + d_2^2, ...
    alpha = d2[:, :steps].copy()
    alpha[:, 1:] += o2[:, : steps - 1]
    beta = np.sqrt(d2[:, : steps - 1] * o2[:, : steps - 1])
    return _tridiag_quadrature(alpha, beta)


# ---------------------------------------------------------------------------------------
# the KS-to-MP null: k * D grows like log k and does not depend on the aspect ratio


NULL_ASPECTS = (1.0, 0.5, 0.25, 0.1, 0.05)
NULL_SEED = 20151117

# Null of k * D (D = KS distance of a Gaussian matrix's ESD from MP, sigma from the trace) per
# size class k: (k, mean, sd, draws), from ``simulate_spectrum_null(k, draws)`` (seeded; exact
# Laguerre spectra; aspect ratios cycled over NULL_ASPECTS: k D does not depend on them).
NULL_MOMENTS = (
    (8, 1.2366, 0.2450, 4000),
    (12, 1.3939, 0.2558, 4000),
    (16, 1.5026, 0.2689, 4000),
    (24, 1.6582, 0.2707, 4000),
    (32, 1.7647, 0.2862, 4000),
    (48, 1.9330, 0.2981, 4000),
    (64, 2.0392, 0.2948, 4000),
    (96, 2.2152, 0.3108, 4000),
    (128, 2.3135, 0.3122, 4000),
    (192, 2.4799, 0.3121, 4000),
    (256, 2.5997, 0.3281, 4000),
    (384, 2.7632, 0.3290, 2000),
    (512, 2.8826, 0.3341, 2000),
    (768, 3.0274, 0.3267, 2000),
    (1024, 3.1655, 0.3379, 2000),
    (1536, 3.3265, 0.3377, 600),
    (2048, 3.4584, 0.3384, 600),
    (3072, 3.5993, 0.3415, 600),
    (4096, 3.7430, 0.3418, 600),
)
# The standardised statistic (k D - mean) / sd has the same shape in every class (checked class
# by class); its quantiles, all 54,400 draws pooled, at the upper-tail probabilities NULL_LEVELS.
NULL_LEVELS = (
    0.99,
    0.9,
    0.8,
    0.7,
    0.6,
    0.5,
    0.4,
    0.3,
    0.2,
    0.15,
    0.1,
    0.075,
    0.05,
    0.04,
    0.03,
    0.025,
    0.02,
    0.015,
    0.0125,
    0.01,
    0.0075,
    0.005,
    0.0025,
    0.001,
)
NULL_Z = (
    -1.8317,
    -1.1879,
    -0.8559,
    -0.5925,
    -0.3513,
    -0.1119,
    0.1362,
    0.4335,
    0.7955,
    1.0331,
    1.3421,
    1.5425,
    1.8232,
    1.9697,
    2.1502,
    2.2616,
    2.3857,
    2.5570,
    2.6558,
    2.7816,
    2.9360,
    3.1481,
    3.5384,
    3.9899,
)


def _ks_normalised(ev: np.ndarray, k: int, n: int) -> float:
    """KS distance to MP(k/n) of eigenvalues normalised by their own trace (sigma^2 = tr/(kn))."""
    s2 = float(ev.sum()) / (k * n)
    return ks_to_mp(np.sort(ev) / (s2 * n), k / n)


def simulate_spectrum_null(k: int, draws: int, seed: int = NULL_SEED) -> np.ndarray:
    """Draws of k * D for Gaussian k x N matrices, N = k / lam, lam cycled over NULL_ASPECTS
    (the source of NULL_MOMENTS and NULL_Z)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
    out = np.empty(draws)
    for i in range(draws):
        lam = NULL_ASPECTS[i % len(NULL_ASPECTS)]
        n = max(k, int(round(k / lam)))
        out[i] = k * _ks_normalised(laguerre_eigenvalues(k, n, rng), k, n)
    return out


def sf_from_table(x: float, qs: Any, levels: Any, square: bool = False) -> float:
    """Upper-tail probability at x from quantiles ``qs`` at upper-tail ``levels``: log p
    interpolated linearly in x (or x^2 for Gaussian-type tails), extrapolated linearly past
    the last quantile; 1 - small below the first."""
    q = np.asarray(qs, dtype=np.float64)
    lp = np.log(np.asarray(levels, dtype=np.float64))
    t, xt = (q * q, x * x) if square else (q, x)
    if x <= q[0]:
        return float(levels[0])
    if x >= q[-1]:
        slope = (lp[-1] - lp[-2]) / (t[-1] - t[-2])
        return float(math.exp(lp[-1] + slope * (xt - t[-1])))
    return float(math.exp(np.interp(xt, t, lp)))


def spectrum_null(k: int) -> tuple[float, float]:
    """(mean, sd) of k D under i.i.d. Gaussian entries at size k: interpolated in log k
    between the size classes; beyond 4096 the mean follows the line in log k through the
    last four classes (k D grows like log k: eigenvalue rigidity, ~0.40 per unit of log k)
    and the sd their average."""
    tab = np.array([(math.log(r[0]), r[1], r[2]) for r in NULL_MOMENTS])
    lk, mu, sd = tab[:, 0], tab[:, 1], tab[:, 2]
    x = math.log(max(k, 2))
    if x <= lk[-1]:
        return float(np.interp(x, lk, mu)), float(np.interp(x, lk, sd))
    slope, icpt = np.polyfit(lk[-4:], mu[-4:], 1)
    return float(slope * x + icpt), float(sd[-4:].mean())


def spectrum_ks_pvalue(D: float, k: int) -> float:
    """Upper-tail p-value of the KS-to-MP distance D of the k eigenvalues of a k x N matrix
    (sigma from the trace) under i.i.d. Gaussian entries."""
    if not math.isfinite(D):
        return float("nan")
    m, s = spectrum_null(k)
    return sf_from_table((k * D - m) / s, NULL_Z, NULL_LEVELS)


# 32 draws gave a log D sd ~30% low: 4-13% of Gaussian matrices fell under p = 1.25%
APPROX_NULL_REPS = 2000


@lru_cache(maxsize=128)
def approx_null(
    k: int, n: int, probes: int, steps: int, reps: int = APPROX_NULL_REPS, seed: int = NULL_SEED
) -> tuple[float, float]:
    """(mean, sd) of log D for the SLQ estimate of a k x n Gaussian matrix's spectrum
    against MP (the estimator's own error included), from the Laguerre Lanczos model."""
    rng = np.random.default_rng(seed)
    qd = laguerre_lanczos(k, n, probes * reps, steps, rng)
    s = qd.nodes.shape[1]
    D = ks_quadratures_to_mp(
        qd.nodes.reshape(reps, probes, s) / n, qd.weights.reshape(reps, probes, s), k / n
    )
    L = np.log(np.maximum(D, 1e-12))
    return float(np.mean(L)), float(np.std(L, ddof=1))


def ks_quadratures_to_mp(
    nodes: np.ndarray, weights: np.ndarray, lam: float, grid: int = 2000
) -> np.ndarray:
    """sup |F_quadrature - F_MP| for a batch of quadratures (B, probes, steps), each on a
    fine grid over the MP support plus its own nodes. Above the support F_MP = 1 and the
    quadrature CDF only rises, so the grid's last point (just past the edge) covers it."""
    B, R, s = nodes.shape
    out = np.empty(B)
    xg = np.linspace(0.0, mp_edges(lam)[1] * 1.001, grid)
    Fg = mp_cdf(xg, lam)
    step = max(1, (1 << 22) // (R * (grid + R * s)))  # quadratures per chunk: ~32 MB of points
    for i in range(0, B, step):
        th, w = nodes[i : i + step], weights[i : i + step]
        c = len(th)
        xn = th.reshape(c, R * s)
        x = np.concatenate([np.broadcast_to(xg, (c, grid)), xn], 1)
        F = _cdf_rows(th.reshape(c * R, s), w.reshape(c * R, s), np.repeat(x, R, axis=0))
        F = F.reshape(c, R, -1).mean(1)
        Fmp = np.concatenate([np.broadcast_to(Fg, (c, grid)), mp_cdf(xn, lam)], 1)
        out[i : i + step] = np.max(np.abs(F - Fmp), axis=1)
    return out


def ks_quadrature_to_mp(qd: Quadrature, lam: float, grid: int = 2000) -> float:
    """sup |F_quadrature - F_MP| (see :func:`ks_quadratures_to_mp`)."""
    return float(ks_quadratures_to_mp(qd.nodes[None], qd.weights[None], lam, grid)[0])


# ---------------------------------------------------------------------------------------
# WeightWatcher-style sigma fit to the bulk


def fit_sigma_mp(
    x: np.ndarray, lam: float, weights: np.ndarray | None = None, points: int = 400
) -> float:
    """The MP scale that fits the bulk, on WeightWatcher's scale: eigenvalues rescaled to
    mean 1, so sigma_mp = 1 when all the energy is in an MP bulk and < 1 when part of it
    sits in spikes or a heavy tail. WeightWatcher brute-forces sigma against a kernel density
    estimate; here sigma minimises the squared distance between the empirical CDF and
    (1 - f) F_MP(x / sigma^2), f the share of eigenvalues above that sigma's bulk edge (a
    CDF fit: no bandwidth, and steady on a few hundred eigenvalues). ``weights`` gives a
    weighted spectrum (SLQ nodes)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(x)
    x, w = x[order], w[order] / w.sum()
    mean = float(np.sum(w * x))
    if not (mean > 0) or len(x) < 4:
        return float("nan")
    x = x / mean
    cum = np.cumsum(w) - w / 2  # empirical CDF at each eigenvalue (midpoints)
    grid = (
        np.quantile(x, np.linspace(0.0, 1.0, points))
        if weights is None
        else np.linspace(0, x[-1], points)
    )
    F_emp = np.interp(grid, x, cum, left=0.0, right=1.0)
    edge = (1 + math.sqrt(lam)) ** 2

    def losses(sig: np.ndarray) -> np.ndarray:
        s2 = sig * sig  # (S,)
        bulk = np.interp(s2 * edge, x, cum, left=0.0, right=1.0)  # share at or below each edge
        model = np.minimum(
            bulk[:, None] * mp_cdf(grid[None, :] / s2[:, None], lam), 1.0
        )  # (S, points)
        out = np.mean((F_emp[None, :] - model) ** 2, axis=1)
        return np.where(bulk >= 0.5, out, np.inf)

    coarse = np.linspace(
        0.05, 1.5, 59
    )  # candidate sigmas (WW: 0.05..2 x its own scale), step 0.025
    lc = losses(coarse)
    if not np.isfinite(lc).any():
        return float("nan")
    c = float(coarse[int(np.argmin(lc))])
    fine = np.linspace(max(c - 0.025, 0.05), c + 0.025, 11)  # then to 0.005
    lf = losses(fine)
    return float(fine[int(np.argmin(lf))]) if np.isfinite(lf).any() else c
