"""Two checkpoints side by side: per-layer differences of the statistics, with their
uncertainty (docs/science.md §6.7).

This module's one job: given the randomness reports of a model (A) and another checkpoint (B,
``--compare OTHER``: before and after fine-tuning, epoch k against k+1), match layers by name
and give B − A for each statistic with a 95% interval where the statistic has a standard
error:

* standardised statistics (spectrum KS z, TW z, row and column independence z, spacing z):
  each has sd 1 under its null, so the difference has sd √2 (a conservative yardstick: a
  structured layer's z has its own spread, not measured);
* ⟨r⟩: sd from the spacing null of each layer (docs/science.md §6.2), combined in quadrature;
* the tail exponent α: each fit's bootstrap interval turned into an sd (width / 3.92);
* the entry std: sd std/√(2n) each (Gaussian-theory standard error);
* the counts and shares (spikes, k, energy share, localised vectors, headline): descriptive,
  no interval.

A difference is called "up" or "down" only when its interval excludes 0.
"""

from __future__ import annotations

import math
from typing import Any

# (column, how its standard error is found): "z" (sd 1 each), "spacing", "alpha", "std", None
COMPARED: tuple[tuple[str, str | None], ...] = (
    ("std", "std"),
    ("spectrum_ks_z", "z"),
    ("tw_z", "z"),
    ("rows_z", "z"),
    ("cols_z", "z"),
    ("spacing_r", "spacing"),
    ("spacing_z", "z"),
    ("plaw_alpha", "alpha"),
    ("ipr_max", None),
    ("vectors_localised", None),
    ("spikes", None),
    ("lowrank_k", None),
    ("lowrank_energy", None),
)
Z95 = 1.959963984540054


def _value(layer: Any, col: str) -> float:
    row = layer.row()
    if col == "spectrum_ks_z":
        return layer.spectrum.ks_z if layer.spectrum else math.nan
    if col == "tw_z":
        return layer.spectrum.tw_z if layer.spectrum else math.nan
    v = row.get(col, math.nan)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if f != -1 or col not in ("spikes", "lowrank_k", "vectors_localised") else math.nan


def _sd(layer: Any, how: str | None) -> float:
    if how == "z":
        return 1.0
    if how == "spacing":
        return layer.spacing.null_sd if layer.spacing else math.nan
    if how == "alpha":
        pl = layer.powerlaw
        return (pl.alpha_hi - pl.alpha_lo) / (2 * Z95) if pl else math.nan
    if how == "std":
        e = layer.entries
        return e.std / math.sqrt(2 * e.n) if e else math.nan
    return math.nan


def compare_rows(a: Any, b: Any) -> list[dict[str, Any]]:
    """One row per layer analysed in both reports (A = the model, B = the other): for each
    statistic in COMPARED, a, b, diff = b − a, the 95% interval and up / down / "" (interval
    includes 0, or no interval)."""
    by = {x.name: x for x in b.analysed}
    rows = []
    for la in a.analysed:
        lb = by.get(la.name)
        if lb is None:
            continue
        row: dict[str, Any] = {
            "layer": la.name,
            "headline_a": la.headline,
            "headline_b": lb.headline,
        }
        for col, how in COMPARED:
            va, vb = _value(la, col), _value(lb, col)
            d = vb - va
            se = math.hypot(_sd(la, how), _sd(lb, how)) if how else math.nan
            lo, hi = (d - Z95 * se, d + Z95 * se) if math.isfinite(se) else (math.nan, math.nan)
            change = ("up" if lo > 0 else "down" if hi < 0 else "") if math.isfinite(lo) else ""
            row |= {
                f"{col}_a": va,
                f"{col}_b": vb,
                f"{col}_diff": d,
                f"{col}_lo": lo,
                f"{col}_hi": hi,
                f"{col}_change": change,
            }
        rows.append(row)
    return rows


def compare_summary(rows: list[dict[str, Any]], other: str) -> str:
    """One sentence: layers compared, how many changed headline, and which statistics moved
    beyond their interval in how many layers."""
    if not rows:
        return f"no layer of {other} matches this model's by name: nothing compared."
    moved: dict[str, int] = {}
    for r in rows:
        for col, how in COMPARED:
            if how and r[f"{col}_change"]:
                moved[col] = moved.get(col, 0) + 1
    changed = sum(r["headline_a"] != r["headline_b"] for r in rows)
    text = f"{len(rows)} layers compared with {other}; headline changed in {changed}"
    if moved:
        text += "; beyond their 95% interval: " + ", ".join(
            f"{c} ({n})" for c, n in sorted(moved.items(), key=lambda x: -x[1])
        )
    return text + "."
