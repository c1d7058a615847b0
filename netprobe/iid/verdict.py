"""When a weight matrix (and a model) is called structured (docs/science.md §2.1, §5).

This module's one job is the verdict. The hypothesis under test is the paper's random-like
weights: W's entries are i.i.d., of *any* law (PyTorch's default initialisation is uniform,
and it is as random as weights get). So the headline verdict uses only the tests whose null
is "i.i.d. entries of any law": independence of rows and columns, the bulk spectrum against
Marchenko–Pastur, and Tracy–Widom spikes. Whether the entries are *Gaussian* is a separate,
stricter question (:mod:`netprobe.iid.entries`), reported beside the verdict but never part
of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import OptionError

TESTS = ("independence", "spectrum", "spikes")  # the headline tests: null = i.i.d., any law
ENTRY_TESTS = ("ks", "ad")  # the Gaussianity tests: Lilliefors KS or Anderson–Darling


@dataclass(frozen=True)
class Thresholds:
    """When a layer is called structured. ``alpha`` is the family-wise rate at which
    matrices with i.i.d. entries are called structured; it is split evenly (Bonferroni) over
    the headline tests. ``entry_test`` picks the Gaussianity test, whose answer ("Gaussian
    entries?" at level ``alpha``) is reported separately."""

    alpha: float = 0.05
    entry_test: str = "ks"  # "ks" (Lilliefors) or "ad" (Anderson–Darling)

    def check(self) -> Thresholds:
        if not (0.0 < self.alpha < 1.0):
            raise OptionError(
                f"--alpha {self.alpha}: must be between 0 and 1", hint="e.g. --alpha 0.05"
            )
        if self.entry_test not in ENTRY_TESTS:
            raise OptionError(f"--entry-test {self.entry_test}: unknown test", hint="use ks or ad")
        return self

    @property
    def per_test(self) -> float:
        return self.alpha / len(TESTS)


def layer_verdict(pvalues: Mapping[str, float], th: Thresholds) -> tuple[tuple[str, ...], str]:
    """(the headline tests that reject at alpha / #tests, random-like | structured)."""
    failed = tuple(
        t for t in TESTS if t in pvalues and math.isfinite(pvalues[t]) and pvalues[t] < th.per_test
    )
    return failed, ("structured" if failed else "random-like")


def is_gaussian(p: float, th: Thresholds) -> bool | None:
    """ "Are the entries Gaussian?" at level alpha (None when there is no p-value)."""
    return None if not math.isfinite(p) else bool(p >= th.alpha)


def model_verdict(layer_pvalues: Sequence[Mapping[str, float]], th: Thresholds) -> str:
    """The model is structured when some layer rejects at alpha / (#tests x #layers): the
    family-wise rate over all layers stays at alpha for a model of i.i.d. weight matrices."""
    if not layer_pvalues:
        return "nothing analysed"
    level = th.alpha / (len(TESTS) * len(layer_pvalues))
    strong = any(
        math.isfinite(pv[t]) and pv[t] < level for pv in layer_pvalues for t in TESTS if t in pv
    )
    return "structured" if strong else "random-like"


# ---------------------------------------------------------------------------------------
# the random-matrix headline: random-like, random-like except k directions, structured
# (docs/science.md §6.4)

# the headline's family: the verdict's tests plus the singular-vector and level-spacing
# tests, each at alpha / 5 (Bonferroni), on W and again on its residual without the spikes
RMT_TESTS = (*TESTS, "vectors", "spacing")


def rmt_level(th: Thresholds) -> float:
    """Each headline test's level: alpha / #RMT_TESTS."""
    return th.alpha / len(RMT_TESTS)


def rmt_failed(pvalues: Mapping[str, float], th: Thresholds) -> tuple[str, ...]:
    """The headline tests that reject at alpha / #RMT_TESTS."""
    lv = rmt_level(th)
    return tuple(
        t for t in RMT_TESTS if t in pvalues and math.isfinite(pvalues[t]) and pvalues[t] < lv
    )


def headline(
    failed: Sequence[str], k: int, energy: float, residual_failed: Sequence[str] | None
) -> str:
    """ "random-like" when no headline test rejects on W; "random-like except k directions
    (x% of the energy)" when some do, W has k >= 1 spikes and none rejects on the residual
    (``residual_failed`` is None when no residual was tested); else "structured"."""
    if not failed:
        return "random-like"
    if k >= 1 and residual_failed is not None and not residual_failed:
        word = "direction" if k == 1 else "directions"
        return f"random-like except {k} {word} ({100 * energy:.3g}% of the energy)"
    return "structured"


def headline_kind(text: str) -> str:
    """random-like | low-rank | structured | "" from a headline."""
    if text.startswith("random-like except"):
        return "low-rank"
    return text
