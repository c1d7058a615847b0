"""Random-matrix laws and the spectra of weight matrices (docs/science.md §2.1, §4.3–§4.5, §5.1).

Split by concern:

* :mod:`.densities` — the limit laws: Marchenko–Pastur (MP), the quarter circle, Tracy–Widom
  (TW1, as a Fredholm determinant) and the KS distance to MP.
* :mod:`.exact` — exact spectra: eigenvalues of the smaller Gram matrix (float32 syrk +
  symmetric eigensolver, float64 when the top singular values need it).
* :mod:`.lanczos` — approximate spectra: stochastic Lanczos quadrature for huge layers.
* :mod:`.bulk` — spikes above the TW edge and the MP scale fitted to the bulk.
* :mod:`.nulls` — Gaussian nulls: the Laguerre tridiagonal model and the KS-to-MP tables.
* :mod:`.permutation` — exchangeable nulls: the layer's own entries shuffled, with a
  sequential (Besag–Clifford) Monte Carlo p-value.

Every name is re-exported here, so ``from netprobe.spectra import X`` works for all of them.
"""

from __future__ import annotations

from .bulk import Spikes, count_spikes, count_spikes_quadrature, fit_sigma_mp
from .densities import (
    ks_to_mp,
    mp_cdf,
    mp_edges,
    mp_pdf,
    quarter_circle_pdf,
    sv_pdf,
    tw1_cdf,
    tw1_quantile,
    tw_center_scale,
    tw_pvalue,
)
from .exact import (
    AUTO_EXACT_MAX_DIM,
    F32_EPS,
    F32_ERR_CONST,
    TOP_CHECK,
    TOP_REL_TOL,
    _rel_error_estimate,
    exact_eigenvalues,
    smaller_gram,
)
from .lanczos import (
    GEMV_MAX_PROBES,
    SLQ_PROBES,
    SLQ_STEPS,
    Quadrature,
    _cdf_rows,
    _gram_apply,
    _tridiag_quadrature,
    ks_quadrature_to_mp,
    ks_quadratures_to_mp,
    slq,
    tridiag_quadrature,
)
from .nulls import (
    APPROX_NULL_REPS,
    NULL_ASPECTS,
    NULL_LEVELS,
    NULL_MOMENTS,
    NULL_SEED,
    NULL_Z,
    _ks_normalised,
    approx_null,
    laguerre_bidiagonal,
    laguerre_counts,
    laguerre_eigenvalues,
    laguerre_lanczos,
    sf_from_table,
    simulate_spectrum_null,
    spectrum_ks_pvalue,
    spectrum_null,
)
from .permutation import (
    TW1_MEAN,
    TW1_SD,
    SequentialPvalue,
    draw_indices,
    fitted_tail,
    shuffled_eigenvalues,
    shuffled_lambda_max,
)

__all__ = [
    "APPROX_NULL_REPS",
    "AUTO_EXACT_MAX_DIM",
    "F32_EPS",
    "F32_ERR_CONST",
    "GEMV_MAX_PROBES",
    "NULL_ASPECTS",
    "NULL_LEVELS",
    "NULL_MOMENTS",
    "NULL_SEED",
    "NULL_Z",
    "SLQ_PROBES",
    "SLQ_STEPS",
    "TOP_CHECK",
    "TOP_REL_TOL",
    "TW1_MEAN",
    "TW1_SD",
    "SequentialPvalue",
    "fitted_tail",
    "draw_indices",
    "shuffled_eigenvalues",
    "shuffled_lambda_max",
    "Quadrature",
    "Spikes",
    "_cdf_rows",
    "_gram_apply",
    "_ks_normalised",
    "_rel_error_estimate",
    "_tridiag_quadrature",
    "tridiag_quadrature",
    "approx_null",
    "count_spikes",
    "count_spikes_quadrature",
    "exact_eigenvalues",
    "fit_sigma_mp",
    "ks_quadrature_to_mp",
    "ks_quadratures_to_mp",
    "ks_to_mp",
    "laguerre_bidiagonal",
    "laguerre_counts",
    "laguerre_eigenvalues",
    "laguerre_lanczos",
    "mp_cdf",
    "mp_edges",
    "mp_pdf",
    "quarter_circle_pdf",
    "slq",
    "sf_from_table",
    "simulate_spectrum_null",
    "smaller_gram",
    "spectrum_ks_pvalue",
    "spectrum_null",
    "sv_pdf",
    "tw1_cdf",
    "tw1_quantile",
    "tw_center_scale",
    "tw_pvalue",
]
