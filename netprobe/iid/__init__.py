"""The random-like weight hypothesis, tested layer by layer (docs/science.md §2.1).

Per weight matrix W (the matrix view of :mod:`netprobe.netlayers`):

* **verdict** (:mod:`.verdict`) — W is *structured* when a test whose null is "i.i.d.
  entries of any law" rejects at alpha / 3 (Bonferroni): **independence** of rows and
  columns (:mod:`.independence`), the bulk **spectrum** against Marchenko–Pastur and
  Tracy–Widom **spikes** (:mod:`.spectrum`). A fresh uniform initialisation is random-like.
* **entry law** (:mod:`.entries`) — reported beside the verdict, not in it: which of
  Gaussian / uniform / Laplace / Student-t fits best, and the stricter question "are the
  entries Gaussian?" (Lilliefors or Anderson–Darling).

:func:`randomness` is the library call behind ``netprobe randomness``; :func:`analyse`
runs on a loaded model (``netprobe check`` uses it). docs/science.md §4 says what each
statistic tests, §5 how the verdicts are calibrated.
"""

from __future__ import annotations

from .analyse import ProgressLabel, analyse, analyse_tensors, check_options, randomness
from .entries import (
    ENTRY_SAMPLE,
    FIT_SAMPLE,
    LAWS,
    LF_LEVELS,
    LF_SIZES,
    LF_TABLE,
    EntryStats,
    anderson_darling,
    distribution_fits,
    entry_moments,
    entry_sample,
    entry_stats,
    lilliefors,
    simulate_lilliefors_null,
)
from .independence import IndependenceStats, SideStats, expected_abs_r, independence_stats
from .matrix import MIN_ENTRIES, analyse_matrix
from .report import METHODS, LayerResult, RandomnessReport
from .spectrum import (
    MIN_SPECTRUM_DIM,
    SPECTRUM_MODES,
    SpectrumStats,
    reference_density,
    reference_singular_values,
    spectrum_approx,
    spectrum_exact,
)
from .verdict import ENTRY_TESTS, TESTS, Thresholds

__all__ = [
    "ENTRY_SAMPLE",
    "ENTRY_TESTS",
    "FIT_SAMPLE",
    "LAWS",
    "LF_LEVELS",
    "LF_SIZES",
    "LF_TABLE",
    "METHODS",
    "MIN_ENTRIES",
    "MIN_SPECTRUM_DIM",
    "SPECTRUM_MODES",
    "TESTS",
    "ProgressLabel",
    "EntryStats",
    "IndependenceStats",
    "LayerResult",
    "RandomnessReport",
    "SideStats",
    "SpectrumStats",
    "Thresholds",
    "analyse",
    "analyse_matrix",
    "analyse_tensors",
    "anderson_darling",
    "check_options",
    "distribution_fits",
    "entry_moments",
    "entry_sample",
    "entry_stats",
    "expected_abs_r",
    "independence_stats",
    "lilliefors",
    "randomness",
    "reference_density",
    "reference_singular_values",
    "simulate_lilliefors_null",
    "spectrum_approx",
    "spectrum_exact",
]
