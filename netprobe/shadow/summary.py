"""What a SHADOW experiment shows: per-arm statistics over seeds, paired SHADOW-vs-reference
differences with t confidence intervals (none, and no verdict, from zero spread), what SHADOW
costs, whether synthetic test error tracks real test error (epoch-to-epoch changes across seeds,
with a jackknife interval: :func:`tracking_correlation`) and a plain conclusion (:func:`summarise`
-> :class:`~.report.ShadowReport`). Statistics: docs/science.md §4.8.

:func:`summarise` runs as named steps (:func:`_run_records`, :func:`_arm_summary`,
:func:`_compare`, :func:`_tracking`, :func:`_conclusion`), each a function of the results.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .experiment import Arm, RunResult
from .report import ShadowReport

#: a cost figure is called rough when per-example times within an arm spread more than this
#: (max / min), or when wall-clock and CPU-time ratios disagree by more than this factor
NOISY_SPREAD = 1.5


def plural(n: int, noun: str) -> str:
    """``1 seed``, ``2 seeds``: a count with its noun."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _mean_std(vals: Sequence[float]) -> tuple[float, float]:
    v = [float(x) for x in vals if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def pearson(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Pearson correlation of two curves; NaN with fewer than 3 points or a flat curve."""
    pts = [
        (float(x), float(y)) for x, y in zip(a, b, strict=True) if x is not None and y is not None
    ]
    if len(pts) < 3:
        return float("nan")
    ma = sum(p[0] for p in pts) / len(pts)
    mb = sum(p[1] for p in pts) / len(pts)
    sab = sum((x - ma) * (y - mb) for x, y in pts)
    saa = sum((x - ma) ** 2 for x, _ in pts)
    sbb = sum((y - mb) ** 2 for _, y in pts)
    if saa <= 0 or sbb <= 0:
        return float("nan")
    return sab / math.sqrt(saa * sbb)


def _centred_changes(curves: Sequence[Sequence[float]]) -> list[list[float]]:
    """Each seed's epoch-to-epoch changes minus the mean change over seeds at that epoch: what
    is left once the fall every run shares is taken out (docs/science.md §4.8)."""
    changes = [[b - a for a, b in zip(c, c[1:], strict=False)] for c in curves]
    mean = [sum(col) / len(col) for col in zip(*changes, strict=True)]
    return [[x - m for x, m in zip(c, mean, strict=True)] for c in changes]


def _change_r(real: Sequence[Sequence[float]], syn: Sequence[Sequence[float]]) -> float:
    """Correlation of the centred changes pooled over seeds and epochs; NaN when either side
    does not vary."""
    u = [x for c in _centred_changes(real) for x in c]
    w = [x for c in _centred_changes(syn) for x in c]
    suw = sum(x * y for x, y in zip(u, w, strict=True))
    suu, sww = sum(x * x for x in u), sum(y * y for y in w)
    if suu <= ZERO_SPREAD**2 or sww <= ZERO_SPREAD**2:
        return float("nan")
    return suw / math.sqrt(suu * sww)


def _fisher_z(r: float) -> float:
    # |r| = 1 (perfectly matched changes) is clipped so the leave-one-out spread stays finite
    return math.atanh(max(-1 + 1e-12, min(1 - 1e-12, r)))


def tracking_correlation(
    real: Sequence[Sequence[float]], synthetic: Sequence[Sequence[float]], level: float = 0.95
) -> dict[str, Any]:
    """Does synthetic test error track real test error? One arm's curves, one per seed
    (``real[s][e]``, ``synthetic[s][e]``), cut to their common length.

    r is the correlation of epoch-to-epoch changes, each relative to the mean change over seeds
    at that epoch: when a seed's real error falls more than the other seeds' do, does its
    synthetic error fall more too? The raw curves would correlate because both fall with
    training (unrelated falling curves: r ≈ 0.97). The interval is a jackknife over seeds on
    Fisher's z with a t(S − 1) quantile: seeds are the independent units, while changes within a
    run are not independent. Verdict "tracks" when the interval lies above 0
    (docs/science.md §4.8). Needs 3 seeds and 2 epochs; otherwise, or with no leave-one-out
    spread, no interval and "cannot tell"."""
    from scipy.special import stdtrit

    k = min([len(c) for c in [*real, *synthetic]], default=0)
    real, synthetic = [list(c[:k]) for c in real], [list(c[:k]) for c in synthetic]
    n = len(real)
    out: dict[str, Any] = {
        "r": float("nan"),
        "low": float("nan"),
        "high": float("nan"),
        "seeds": n,
        "changes": max(k - 1, 0),
    }
    if n < 3 or k < 2:
        why = f"{plural(n, 'seed')}, 3 needed" if n < 3 else "fewer than 2 epochs"
        return {**out, "verdict": f"cannot tell: {why}"}
    r = _change_r(real, synthetic)
    loo = [
        _change_r(real[:i] + real[i + 1 :], synthetic[:i] + synthetic[i + 1 :]) for i in range(n)
    ]
    out["r"] = r
    if not math.isfinite(r) or not all(math.isfinite(x) for x in loo):
        return {**out, "verdict": "cannot tell: an error curve does not change"}
    z = [_fisher_z(x) for x in loo]
    zbar = sum(z) / n
    se = math.sqrt((n - 1) / n * sum((x - zbar) ** 2 for x in z))
    if se <= 0:
        return {**out, "verdict": "cannot tell: no spread between seeds"}
    half = float(stdtrit(n - 1, 0.5 + level / 2)) * se
    low, high = math.tanh(_fisher_z(r) - half), math.tanh(_fisher_z(r) + half)
    verdict = "tracks" if low > 0 else "moves against it" if high < 0 else "no clear tracking"
    return {**out, "low": low, "high": high, "verdict": verdict}


#: differences whose standard deviation is below this (relative to the largest error) count as
#: identical: test errors are counts over a test set, so two seeds that differ by the same count
#: give differences equal up to float rounding (36/1000 − 34/1000 ≠ 97/1000 − 95/1000 by 7e-18)
ZERO_SPREAD = 1e-9


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> dict[str, float]:
    """Mean of a_i − b_i over paired seeds with a two-sided t confidence interval and the paired
    t-test p-value (docs/science.md §4.8).

    The interval and p are NaN with fewer than 2 pairs, and also when every pair gives the same
    difference (zero spread, up to float rounding: :data:`ZERO_SPREAD`): the t interval then has
    zero width and p = 0 from as few as 2 seeds, which a discrete test error makes common and which
    says nothing about the next seed. :func:`_verdict` reads NaN as "cannot tell"."""
    # Student t CDF and quantile (scipy.stats imports slowly)
    from scipy.special import stdtr, stdtrit

    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n if n else float("nan")
    out = {
        "n": float(n),
        "mean": mean,
        "low": float("nan"),
        "high": float("nan"),
        "p": float("nan"),
        "sd": float("nan"),
    }
    if n >= 2:
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        scale = max(1.0, *(abs(float(x)) for x in [*a, *b]))
        if sd <= ZERO_SPREAD * scale:
            out["sd"] = 0.0  # identical differences: no interval, no test
            return out
        half = float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
        out.update(sd=sd, low=mean - half, high=mean + half)
        out["p"] = float(2 * stdtr(n - 1, -abs(mean / (sd / math.sqrt(n)))))
    return out


def _per_example(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """Seconds per real training example of each epoch (per epoch where a row has no count)."""
    out = []
    for r in rows:
        v = r.get(key)
        if v is None or not math.isfinite(float(v)) or float(v) <= 0:
            continue
        n = r.get("examples")
        out.append(float(v) / float(n) if n else float(v))
    return out


def _spread(vals: Sequence[float]) -> float:
    return max(vals) / min(vals) if vals and min(vals) > 0 else float("nan")


def cost_ratio(
    arm_rows: Sequence[Mapping[str, Any]],
    ref_rows: Sequence[Mapping[str, Any]],
    basis: str = "cpu",
) -> dict[str, Any]:
    """What an arm costs per training example next to its reference arm, from every epoch of
    every seed: the ratio of the medians of per-example time.

    ``basis="cpu"`` measures process CPU time (``cpu_seconds``): a busy machine stretches the
    wall clock of whichever arm it happens to overlap, which can flip a wall-clock ratio, but
    hardly the CPU time the process itself spends. ``basis="wall"`` (GPUs, where CPU time says
    little) and rows without CPU times use the wall clock; the median keeps one slow epoch from
    deciding. ``rough`` is True, with ``caveat`` in words, when per-example times within an arm
    spread by more than :data:`NOISY_SPREAD` (max / min) or the wall-clock ratio and the chosen
    ratio disagree by more than that factor."""
    key = "seconds"
    if basis == "cpu" and all(r.get("cpu_seconds") for r in [*arm_rows, *ref_rows]):
        key = "cpu_seconds"
    a, b = _per_example(arm_rows, key), _per_example(ref_rows, key)
    if not a or not b:
        return {"ratio": float("nan"), "basis": key, "wall_ratio": float("nan"), "rough": False}
    ratio = statistics.median(a) / statistics.median(b)
    wa, wb = _per_example(arm_rows, "seconds"), _per_example(ref_rows, "seconds")
    wall = statistics.median(wa) / statistics.median(wb) if wa and wb else float("nan")
    spread = max(_spread(v) for v in (a, b, wa, wb) if v)
    disagree = max(wall / ratio, ratio / wall) if wall > 0 and ratio > 0 else 1.0
    reasons = []
    if spread > NOISY_SPREAD:
        reasons.append(f"per-example times within an arm varied up to {spread:.1f}x")
    if disagree > NOISY_SPREAD:
        reasons.append(f"the wall-clock ratio was {wall:.2f}x")
    out: dict[str, Any] = {
        "ratio": ratio,
        "basis": key,
        "wall_ratio": wall,
        "spread": spread,
        "rough": bool(reasons),
    }
    if reasons:
        out["caveat"] = (
            f"The cost figure ({ratio:.2f}x, from {'CPU time' if key == 'cpu_seconds' else 'wall-clock time'}) "
            f"is rough: {' and '.join(reasons)}, so the machine was probably busy; "
            "rerun with --threads 1 on a quiet machine, or `python benchmarks/shadow_train.py`, to measure it."
        )
    return out


def _pts(v: float) -> str:
    """An error difference in percentage points, signed."""
    return f"{100 * v:+.2f}" if math.isfinite(v) else "n/a"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%" if math.isfinite(v) else "n/a"


NO_SPREAD = "cannot tell: every seed gave the same difference"


def _verdict(d: Mapping[str, float]) -> str:
    """helped / hurt / no clear difference, from where the CI lies; "cannot tell" without an
    interval (one seed, or every seed gave the same difference)."""
    if int(d["n"]) < 2:
        return "cannot tell from one seed"
    if not (math.isfinite(d["low"]) and math.isfinite(d["high"])):
        return NO_SPREAD
    if d["high"] < 0:
        return "helped"
    if d["low"] > 0:
        return "hurt"
    return "no clear difference"


def _final(r: RunResult, key: str) -> float:
    v = r.rows[-1].get(key) if r.rows else None
    return float(v) if v is not None else float("nan")


def _over_epochs(r: RunResult, key: str) -> float:
    v = [float(x[key]) for x in r.rows if x.get(key) is not None]
    return sum(v) / len(v) if v else float("nan")


# ---------------------------------------------------------------------------------------
# summarise, as named steps


def _run_records(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One record per arm x seed (report.json's ``runs``)."""
    return [
        {
            "arm": r.arm.name,
            "seed": r.seed,
            "epochs": len(r.rows),
            "final_test_error": _final(r, "test_error"),
            "final_synthetic_test_error": _final(r, "synthetic_test_error"),
            "final_train_loss": _final(r, "train_loss"),
            "mean_test_error": _over_epochs(r, "test_error"),
            "train_seconds": sum(float(x.get("seconds", 0.0)) for x in r.rows),
            "train_cpu_seconds": sum(float(x.get("cpu_seconds") or 0.0) for x in r.rows),
            "generation_seconds": r.generation_seconds,
            "dropout": r.dropout,
            "resumed_from_epoch": r.resumed_from[0] if r.resumed_from else None,
        }
        for r in results
    ]


def _arm_summary(arm: str, runs: Sequence[RunResult], tracking: Mapping[str, Any]) -> dict:
    """Mean ± std over the arm's seeds, and the arm's tracking (:func:`tracking_correlation`)."""
    fe = _mean_std([_final(r, "test_error") for r in runs])
    me = _mean_std([_over_epochs(r, "test_error") for r in runs])
    se = _mean_std([_final(r, "synthetic_test_error") for r in runs])
    tl = _mean_std([_final(r, "train_loss") for r in runs])
    secs = [float(x.get("seconds", 0.0)) for r in runs for x in r.rows]
    return {
        "arm": arm,
        "seeds": len(runs),
        "final_test_error_mean": fe[0],
        "final_test_error_std": fe[1],
        "mean_test_error_mean": me[0],
        "mean_test_error_std": me[1],
        "final_synthetic_test_error_mean": se[0],
        "final_synthetic_test_error_std": se[1],
        "final_train_loss_mean": tl[0],
        "final_train_loss_std": tl[1],
        "tracking_r": tracking["r"],
        "tracking_low": tracking["low"],
        "tracking_high": tracking["high"],
        "tracking": tracking["verdict"],
        "train_seconds_per_epoch": sum(secs) / len(secs) if secs else float("nan"),
    }


METRICS = (
    ("final test error", _final),
    ("mean test error over epochs", _over_epochs),
)


def _compare(
    arm: str, ref: str, by: Mapping[tuple[str, int], RunResult], seeds: Sequence[int], basis: str
) -> list[dict[str, Any]]:
    """The SHADOW arm against its reference, paired by seed: one record per metric, each with
    the paired difference, its verdict and the cost of the SHADOW arm."""
    paired = [s for s in seeds if (arm, s) in by and (ref, s) in by]
    if not paired:
        return []
    cost = cost_ratio(
        [row for s in paired for row in by[(arm, s)].rows],
        [row for s in paired for row in by[(ref, s)].rows],
        basis,
    )
    out = []
    for metric, fn in METRICS:
        d = paired_difference(
            [fn(by[(arm, s)], "test_error") for s in paired],
            [fn(by[(ref, s)], "test_error") for s in paired],
        )
        out.append(
            {
                "arm": arm,
                "reference": ref,
                "metric": metric,
                **d,
                "seeds": paired,
                "verdict": _verdict(d),
                "cost_ratio": cost["ratio"],
                "cost_basis": cost["basis"],
                "cost_rough": cost["rough"],
                "cost_caveat": cost.get("caveat"),
            }
        )
    return out


_WORDS = {
    "helped": "SHADOW helped",
    "hurt": "SHADOW hurt",
    "no clear difference": "no clear difference: SHADOW did not clearly help",
    NO_SPREAD: f"{NO_SPREAD}, so whether SHADOW helps needs more seeds",
}


def _sentence(final: Mapping[str, Any], over: Mapping[str, Any], per_arm: Mapping) -> str:
    """One comparison in words (no nested parentheses)."""
    a, ref, n = final["arm"], final["reference"], len(final["seeds"])
    text = (
        f"{a} vs {ref}: final test error {_pct(per_arm[a]['final_test_error_mean'])} vs "
        f"{_pct(per_arm[ref]['final_test_error_mean'])}, difference {_pts(final['mean'])} points"
    )
    if n >= 2:
        ci = (
            f"95% CI {_pts(final['low'])} to {_pts(final['high'])}"
            if math.isfinite(final["low"])
            else "the same in every seed, so no interval"
        )
        text += (
            f" ({ci}, {plural(n, 'seed')}): {_WORDS.get(final['verdict'], final['verdict'])}. "
            "Averaged over epochs (how fast the error falls) the difference is "
            f"{_pts(over['mean'])} points: {over['verdict']}."
        )
    else:
        text += (
            ": cannot tell from one seed whether SHADOW helps; run more seeds, e.g. --seeds 0,1,2. "
            f"Averaged over epochs (how fast the error falls) the difference is {_pts(over['mean'])} points."
        )
    what = "CPU time" if final["cost_basis"] == "cpu_seconds" else "training time"
    rough = ", a rough figure: timings were noisy, see the notes" if final["cost_rough"] else ""
    ratio = final["cost_ratio"]
    if math.isfinite(ratio):
        text += f" SHADOW cost {ratio:.2f}x the {what} per training example{rough}."
    return text


def _curve(r: RunResult) -> tuple[list[float], list[float]]:
    """A run's real and synthetic test-error curves over the epochs that have both."""
    both = [x for x in r.rows if x.get("test_error") is not None and x.get("synthetic_test_error") is not None]  # fmt: skip
    return [float(x["test_error"]) for x in both], [float(x["synthetic_test_error"]) for x in both]


def _ci_words(t: Mapping[str, Any]) -> str:
    """``r = 0.40, 95% CI -0.20 to 0.80, 4 seeds x 3 changes: no clear tracking``."""
    if not math.isfinite(t["r"]):
        return t["verdict"]
    text = f"r = {t['r']:.2f}"
    if math.isfinite(t["low"]):
        text += f", 95% CI {t['low']:.2f} to {t['high']:.2f}"
    size = f"{plural(t['seeds'], 'seed')} x {plural(t['changes'], 'change')}"
    return f"{text}, {size}: {t['verdict']}"


def _tracking(arms: Sequence[str], by_arm: Mapping[str, Sequence[RunResult]]) -> dict:
    """Per-arm tracking of real by synthetic test error (:func:`tracking_correlation`), in
    words too, and the descriptive correlation of the raw curves pooled over every run
    (``pooled_r``, what the tracking figure's scatter shows)."""
    per_arm = {}
    for a in arms:
        curves = [_curve(r) for r in by_arm[a]]
        per_arm[a] = tracking_correlation([c[0] for c in curves], [c[1] for c in curves])
    pooled = pearson(
        [x for r in by_arm.values() for run in r for x in _curve(run)[0]],
        [y for r in by_arm.values() for run in r for y in _curve(run)[1]],
    )
    parts = [f"{a}: {_ci_words(t)}" for a, t in per_arm.items()]
    text = (
        "Tracking is measured on epoch-to-epoch changes, each taken relative to the arm's mean "
        "change at that epoch over seeds, so the fall that every run shares does not count: when "
        "a seed's real test error falls more than the other seeds' do, does its synthetic test "
        "error (generated from the test inputs by the run's current net each epoch) fall more "
        'too? The 95% CI is a jackknife over seeds; "tracks" means the interval lies above 0. '
        f"{'; '.join(parts)}."
    )
    if math.isfinite(pooled):
        text += (
            f" The raw curves pooled over every arm, seed and epoch correlate with r = {pooled:.2f}; "
            "that is not evidence of tracking, since two curves that both fall with training "
            "correlate whether or not they are related."
        )
    line = "Does synthetic test error track real test error? " + "; ".join(parts) + "."
    return {
        "per_arm": per_arm,
        "per_arm_r": {a: t["r"] for a, t in per_arm.items()},
        "pooled_r": pooled,
        "text": text,
        "line": line,
    }


def _conclusion(
    comparisons: Sequence[Mapping[str, Any]],
    summary: Sequence[Mapping[str, Any]],
    tracking: Mapping[str, Any],
) -> str:
    per_arm = {s["arm"]: s for s in summary}
    finals = [c for c in comparisons if c["metric"] == METRICS[0][0]]
    overs = [c for c in comparisons if c["metric"] == METRICS[1][0]]
    if finals:
        text = " ".join(_sentence(f, o, per_arm) for f, o in zip(finals, overs, strict=True))
    else:
        text = (
            "No SHADOW arm was run next to its reference arm, so this run says nothing about "
            "whether SHADOW helps. "
            + " ".join(
                f"{s['arm']}: final test error {_pct(s['final_test_error_mean'])}." for s in summary
            )
        )
    return text + (" " + tracking["line"] if tracking["line"] else "")


def _notes(seeds: Sequence[int], comparisons: Sequence[Mapping[str, Any]]) -> list[str]:
    notes = []
    if len(seeds) < 3:
        notes.append(
            f"Only {plural(len(seeds), 'seed')}: the confidence intervals are wide or missing; "
            "use --seeds 0,1,2 or more."
        )
    for c in comparisons:
        if c["metric"] == METRICS[0][0] and c.get("cost_caveat"):
            notes.append(f"{c['arm']} vs {c['reference']}: {c['cost_caveat']}")
    return notes


def summarise(
    results: Sequence[RunResult],
    *,
    settings: Mapping[str, Any],
    data: Mapping[str, Any],
    model: Mapping[str, Any],
    timing: str = "cpu",
) -> ShadowReport:
    """Per-arm means, SHADOW-vs-reference paired differences and costs, tracking correlations,
    and a plain conclusion. ``timing``: ``cpu`` (process CPU time: the cost measure for CPU
    runs) or ``wall`` (GPU runs); see :func:`cost_ratio`."""
    arms = list(dict.fromkeys(r.arm.name for r in results))
    seeds = list(dict.fromkeys(r.seed for r in results))
    by = {(r.arm.name, r.seed): r for r in results}
    by_arm = {a: [by[(a, s)] for s in seeds if (a, s) in by] for a in arms}
    tracking = _tracking(arms, by_arm)
    summary = [_arm_summary(a, by_arm[a], tracking["per_arm"][a]) for a in arms]
    comparisons: list[dict[str, Any]] = []
    for a in arms:
        ref = Arm(a).reference
        if ref is not None and ref in arms:
            comparisons += _compare(a, ref, by, seeds, timing)
    return ShadowReport(
        arms=arms,
        seeds=seeds,
        rows=[row for r in results for row in r.rows],
        summary=summary,
        comparisons=comparisons,
        tracking={k: v for k, v in tracking.items() if k != "line"},
        conclusion=_conclusion(comparisons, summary, tracking),
        settings=dict(settings),
        data=dict(data),
        model=dict(model),
        runs=_run_records(results),
        notes=_notes(seeds, comparisons),
    )
