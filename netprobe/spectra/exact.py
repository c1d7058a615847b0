"""Exact spectra: eigenvalues of the smaller Gram matrix (docs/science.md §4.3).

float32 (a BLAS ``syrk`` for the Gram on CPU, half the flops of a GEMM, and a symmetric
eigensolver), redone in float64 when the error estimate of the top-100 singular values exceeds
5e-5 relative, and as a float64 SVD for rank-deficient matrices.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# spectra with min(k, N) above this go to SLQ under --spectrum auto: the exact route's
# eigensolver alone takes ~25 s at 8192 on one core
AUTO_EXACT_MAX_DIM = 8192
F32_EPS = float(np.finfo(np.float32).eps)
TOP_CHECK = 100  # the top singular values the float32 error bound is checked on
TOP_REL_TOL = 5e-5  # redo in float64 when the error estimate of their relative error passes this
# rel. error of s_i from float32 Gram + eigvalsh ~ C eps32 sqrt(k) sqrt(lambda_max / lambda_i): measured
# C = 0.4-1.0 on Gaussian, spiked and rank-1-dominated matrices of 2048-4096 (5e-6..3.5e-5); C = 2 keeps a margin
F32_ERR_CONST = 2.0


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
