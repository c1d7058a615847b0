"""Paired comparisons of reconstruction arms over inputs (docs/science.md §4.7, §5.5).

Every input runs through every arm, so two arms are compared *paired by input*: per input the
log of the ratio of their errors, then a two-sided 95% Student-t interval for the mean log-ratio
over inputs, reported back on the ratio scale (a geometric mean ratio and its interval). A
comparison says "better" or "worse" only when that interval excludes a ratio of 1.

Two questions use it:

- :func:`paired_ratio`: one arm against another (the model against a control), from the
  per-input errors of both;
- :func:`ratio_across_inits` and :func:`advantage_across_inits`: against the fresh-init
  control, drawn K times. One initialisation's numbers differ from the next's by far more than
  an interval over inputs shows (on the bundled digit net the fresh init's advantage of real h
  over random h at h1 ranged 2.0–3.7× over 6 inits, each with an interval over 64 inputs about
  ±3% wide), so these ask whether the model lies outside the inits' spread: a t prediction
  interval with K − 1 degrees of freedom over the per-init means, each paired over the same
  inputs. The learned-structure question is the second: is the model's advantage over random
  h larger than a fresh initialisation's over its own?

Everything here is plain numpy on per-input arrays; the report pairs the rows by sample index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: the confidence level of every interval here
LEVEL = 0.95

#: verdicts of a paired ratio (first arm against second) and of an advantage ratio
BETTER, WORSE, LARGER, SMALLER = "better", "worse", "larger", "smaller"
NO_DIFFERENCE, CANNOT_TELL = "no clear difference", "cannot tell"


@dataclass(frozen=True)
class Interval:
    """A geometric-mean ratio over paired inputs, with its 95% interval and p-value.

    ``ratio`` = exp(mean of the per-input log-ratios); ``low``/``high`` the t interval mapped
    back through exp; ``p`` the paired t-test's two-sided p-value against ratio 1; ``n`` the
    inputs used (those where both values are finite and positive); ``verdict`` one of
    "better"/"worse" (or "larger"/"smaller"), "no clear difference", "cannot tell". With
    ``inits`` > 0 the interval comes from :func:`across_inits` instead.
    """

    ratio: float
    low: float
    high: float
    p: float
    n: int
    verdict: str
    inits: int = 0  # > 0: the interval is across this many fresh initialisations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def t_quantile(q: float, df: int) -> float:
    """Student-t quantile. scipy.special, not scipy.stats: importing scipy.stats cost
    reconstruct 1.2 s of its run for two numbers."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def t_sf(x: float, df: int) -> float:
    """Student-t upper tail probability (scipy.special, as :func:`t_quantile`)."""
    from scipy.special import stdtr

    return float(stdtr(df, -x))


def log_ratios(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    """log(a_i / b_i) over the inputs where both are finite and positive (an error of 0 or a
    NaN, e.g. from an all-zero h, has no log-ratio and drops out of the pairing)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    return np.log(a[ok]) - np.log(b[ok])


def t_interval(d: np.ndarray, below: str, above: str) -> Interval:
    """The 95% Student-t interval for the mean of the per-input log-ratios ``d``, on the ratio
    scale. ``below`` is the verdict when the whole interval lies below ratio 1, ``above`` when
    above. Fewer than 2 inputs, or log-ratios that do not vary (a zero-width interval is not
    evidence), give "cannot tell"; every log-ratio exactly 0 (identical arms) gives ratio 1 and
    "no clear difference"."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = int(d.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, CANNOT_TELL)
    mean = float(d.mean())
    if n < 2:
        return Interval(math.exp(mean), math.nan, math.nan, math.nan, n, CANNOT_TELL)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        same = NO_DIFFERENCE if mean == 0.0 else CANNOT_TELL
        return Interval(math.exp(mean), math.exp(mean), math.exp(mean), math.nan, n, same)
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * se
    p = 2 * t_sf(abs(mean) / se, n - 1)
    low, high = math.exp(mean - half), math.exp(mean + half)
    verdict = below if high < 1.0 else above if low > 1.0 else NO_DIFFERENCE
    return Interval(math.exp(mean), low, high, p, n, verdict)


def paired_ratio(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> Interval:
    """Arm A's error against arm B's, paired by input: the geometric mean of a_i/b_i with its
    95% interval. "better" (A's error lower) when the interval lies below 1, "worse" above."""
    return t_interval(log_ratios(a, b), BETTER, WORSE)


def across_inits(
    subject: float, inits: Sequence[float] | np.ndarray, n: int, below: str, above: str
) -> Interval:
    """Is ``subject`` (the model's mean log-statistic over the inputs) outside what fresh
    initialisations give (``inits``: each init's mean over the same inputs)? Under the null
    the model is one more draw from the init distribution, exchangeable with the K inits
    given the inputs, so (subject − mean)/(sd·√(1 + 1/K)) is Student-t with K − 1 degrees of
    freedom (a prediction interval; normal per-init means assumed). Returns the interval for
    exp(subject − mean of inits) with ``inits`` = K and ``n`` = the inputs; fewer than 2
    inits, or inits that do not vary, give "cannot tell": one init's value varies from the
    next's by more than the inputs can show (docs/science.md §4.7)."""
    g = np.asarray(inits, dtype=np.float64)
    g = g[np.isfinite(g)]
    k = int(g.size)
    if k == 0 or not math.isfinite(subject):
        return Interval(math.nan, math.nan, math.nan, math.nan, n, CANNOT_TELL, k)
    diff = subject - float(g.mean())
    sd = float(g.std(ddof=1)) if k > 1 else 0.0
    if k < 2 or sd == 0.0:
        return Interval(math.exp(diff), math.nan, math.nan, math.nan, n, CANNOT_TELL, k)
    se = sd * math.sqrt(1 + 1 / k)
    half = t_quantile(0.5 + LEVEL / 2, k - 1) * se
    p = 2 * t_sf(abs(diff) / se, k - 1)
    low, high = math.exp(diff - half), math.exp(diff + half)
    verdict = below if high < 1.0 else above if low > 1.0 else NO_DIFFERENCE
    return Interval(math.exp(diff), low, high, p, n, verdict, k)


def ratio_across_inits(model: np.ndarray, fresh: np.ndarray) -> Interval:
    """The model's error against the fresh-init control's, across K inits: ``model`` (N,)
    and ``fresh`` (K, N) per-input errors; the statistic is the mean log error over the inputs
    every net measured. "better" (the model's error lower) when the interval lies below 1."""
    model, fresh = np.asarray(model, dtype=np.float64), np.asarray(fresh, dtype=np.float64)
    ok = _positive(model) & _positive(fresh).all(axis=0)
    subject = float(np.log(model[ok]).mean()) if ok.any() else math.nan
    per_init = np.log(fresh[:, ok]).mean(axis=1) if ok.any() else np.array([])
    return across_inits(subject, per_init, int(ok.sum()), BETTER, WORSE)


def advantage_across_inits(
    model: np.ndarray, model_random: np.ndarray, fresh: np.ndarray, fresh_random: np.ndarray
) -> Interval:
    """The learned-structure question across K fresh inits: the model's advantage over its
    random-h control (mean over inputs of log(random-h error / real-h error)) against each
    init's advantage over its own random h. ``model``/``model_random`` (N,), ``fresh``/
    ``fresh_random`` (K, N). "larger" when the interval lies above 1."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (model, model_random, fresh, fresh_random)]
    m, mr, f, fr = arrays
    ok = _positive(m) & _positive(mr) & _positive(f).all(axis=0) & _positive(fr).all(axis=0)
    if not ok.any():
        return across_inits(math.nan, np.array([]), 0, SMALLER, LARGER)
    subject = float((np.log(mr[ok]) - np.log(m[ok])).mean())
    per_init = (np.log(fr[:, ok]) - np.log(f[:, ok])).mean(axis=1)
    return across_inits(subject, per_init, int(ok.sum()), SMALLER, LARGER)


def _positive(a: np.ndarray) -> np.ndarray:
    return np.isfinite(a) & (a > 0)


# ---------------------------------------------------------------------------------------
# wording


def fmt_ratio(v: float, low: float = math.nan, high: float = math.nan) -> str:
    """A ratio with enough decimals that an interval excluding 1 never prints as touching
    it (0.9996 is "0.9996", not "1.00")."""
    if not math.isfinite(v):
        return "—"
    digits = 2
    for bound in (low, high):
        while math.isfinite(bound) and bound != 1.0 and round(bound, digits) == 1.0 and digits < 6:
            digits += 1
    return f"{v:.{digits}f}"


def fmt_interval(iv: Interval) -> str:
    """ "95% CI 0.69–0.73, 256 inputs" (or the number of inputs alone when there is no
    interval)."""
    inputs = f"{iv.n} input{'s' if iv.n != 1 else ''}"
    if iv.inits:
        inputs = f"{iv.inits} fresh init{'s' if iv.inits != 1 else ''} × {inputs}"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return f"no interval, {inputs}"
    lo, hi = fmt_ratio(iv.low, iv.low, iv.high), fmt_ratio(iv.high, iv.low, iv.high)
    return f"{LEVEL:.0%} CI {lo}–{hi}, {inputs}"


def ratio_phrase(iv: Interval, control: str) -> str:
    """ "error ratio 0.71 (95% CI 0.69–0.73, 256 inputs), 1.41× lower: better than random h";
    the ratio is the first arm's error over ``control``'s, and "better"/"worse" appear only
    when the interval excludes 1."""
    ratio = fmt_ratio(iv.ratio, iv.low, iv.high)
    head = f"error ratio {ratio} ({fmt_interval(iv)})"
    if iv.verdict == BETTER:
        times = fmt_ratio(1 / iv.ratio, 1 / iv.high, 1 / iv.low)
        return f"{head}, {times}× lower: better than {control}"
    if iv.verdict == WORSE:
        return f"{head}, {ratio}× higher: worse than {control}"
    if iv.verdict == CANNOT_TELL:
        why = "fewer than 2 fresh inits" if iv.inits < 2 and iv.inits else "too few inputs"
        return f"{head}: cannot tell against {control} ({why} or no spread)"
    return f"{head}: no clear difference from {control}"
