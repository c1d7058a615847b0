"""The result of ``netprobe propagate``: :class:`PropagationReport`, its rows and files.

One row per (hidden layer, input source, arm); the model's rows also carry its paired
difference from the fresh initialisation on the same inputs, with a 95% interval over inputs
(docs/science.md §5.5, §7.4). Files: layers.csv, report.json, report.md and one figure per
statistic against depth (active.png, cosine.png, jacobian.png).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..report import OutputDir, as_output_dir, markdown_table
from .stats import mean_ci

#: what report.md's table shows, in order
MD_COLUMNS = (
    "layer",
    "source",
    "arm",
    "active_frac",
    "dead_frac",
    "always_on_frac",
    "theory_bound",
    "cos_in",
    "cosine",
    "cosine_pred",
    "jac_top",
    "jac_median",
    "jac_log_spread",
)
NOTES = (
    "- `active_frac` = k/m, the share of h_ℓ's units that are positive, mean over inputs "
    "(`active_lo`/`active_hi`: its 95% interval over inputs); `dead_frac` / `always_on_frac`: "
    "units active on none / all of the inputs; `unit_p10`/`unit_median`/`unit_p90`: quantiles "
    "of each unit's active rate.\n"
    "- `theory_bound` = √(k/n) (ρ = 1), the theorem's relative error scale, n = units of the "
    "layer below (the previous hidden layer, or the input); above 1 the theorem is silent.\n"
    "- `cos_in`: mean cosine of the input pairs; `cosine`: mean cosine of the pairs at h_ℓ; "
    "`cosine_pred`: the arc-cosine / mean-field prediction for a random ReLU net of the same "
    "widths and weight/bias variances (plain Linear → ReLU chains only); `cos_gap` = measured − "
    "predicted, per pair, with its interval.\n"
    "- `jac_top`: the input → h_ℓ Jacobian's largest singular value (geometric mean over inputs, "
    "interval in log space); `jac_median`, `jac_log_spread`: median and standard deviation of "
    "ln σ over its non-zero singular values (Lanczos quadrature, restricted to active units).\n"
    "- model rows: `*_diff` = model − fresh init and `jac_top_ratio` = model / fresh init, "
    "paired on the same inputs, with 95% intervals over inputs.\n"
)


def _ci_cols(prefix: str, vals: Any) -> dict[str, float]:
    m, lo, hi = mean_ci(vals)
    return {prefix: m, f"{prefix}_lo": lo, f"{prefix}_hi": hi}


def _log_ci_cols(prefix: str, vals: Any) -> dict[str, float]:
    """A geometric mean and its interval: the t-interval of the logs, exponentiated."""
    a = np.asarray(vals, dtype=np.float64)
    with np.errstate(divide="ignore"):
        m, lo, hi = mean_ci(np.log(a[a > 0])) if (a > 0).any() else (math.nan,) * 3
    return {prefix: math.exp(m), f"{prefix}_lo": math.exp(lo), f"{prefix}_hi": math.exp(hi)}


def _row(h: Any, below: int, src: str, arm: str, got: dict[str, Any]) -> dict[str, Any]:
    st = got["stats"][h.index]
    act, unit = st.per_input(), st.unit_fraction()
    cos = st.per_pair()
    r: dict[str, Any] = {
        "layer": h.name,
        "where": h.where,
        "source": src,
        "arm": arm,
        "units": st.units,
        "inputs": st.seen,
        **_ci_cols("active_frac", act),
        "dead_frac": float((unit == 0).mean()),
        "always_on_frac": float((unit == 1).mean()),
        "unit_p10": float(np.quantile(unit, 0.1)),
        "unit_median": float(np.median(unit)),
        "unit_p90": float(np.quantile(unit, 0.9)),
        "theory_bound": math.sqrt(float(act.mean()) * st.units / below),
        "cos_in": float(np.nanmean(got["cos_in"])),
        **_ci_cols("cosine", cos),
    }
    pred = got["pred"]
    if pred is not None:
        p = pred[:, h.index - 1]
        r["cosine_pred"] = float(p.mean())
        r |= _ci_cols("cos_gap", cos - p)
    else:
        r |= {
            "cosine_pred": math.nan,
            "cos_gap": math.nan,
            "cos_gap_lo": math.nan,
            "cos_gap_hi": math.nan,
        }
    sp = got["spectra"].get(h.index, [])
    r["jac_inputs"] = len(sp)
    r |= _log_ci_cols("jac_top", [s.top for s in sp])
    r["jac_median"] = float(np.nanmean([s.median for s in sp])) if sp else math.nan
    r["jac_log_spread"] = float(np.nanmean([s.log_spread for s in sp])) if sp else math.nan
    r["jac_zero_frac"] = float(np.nanmean([s.zero_frac for s in sp])) if sp else math.nan
    return r


def _paired(h: Any, model: dict[str, Any], fresh: dict[str, Any] | None) -> dict[str, float]:
    """The model − fresh-init differences on the same inputs (NaN without the control)."""
    keys = ("active_diff", "cosine_diff", "jac_top_ratio")
    if fresh is None:
        return {f"{k}{s}": math.nan for k in keys for s in ("", "_lo", "_hi")}
    a, b = model["stats"][h.index], fresh["stats"][h.index]
    out = _ci_cols("active_diff", a.per_input() - b.per_input())
    out |= _ci_cols("cosine_diff", a.per_pair() - b.per_pair())
    sa, sb = model["spectra"].get(h.index, []), fresh["spectra"].get(h.index, [])
    ratios = [x.top / y.top for x, y in zip(sa, sb, strict=True) if x.top > 0 and y.top > 0]
    out |= _log_ci_cols("jac_top_ratio", ratios)
    return out


def build_rows(
    layers: list[Any],
    below: dict[int, int],
    measured: dict[tuple[str, str], dict[str, Any]],
    arms: list[str],
) -> list[dict[str, Any]]:
    """One row per (layer, source, arm), in depth order; model rows carry the paired
    comparison with the fresh initialisation."""
    rows = []
    sources = sorted({s for _, s in measured}, key=("gaussian", "real").index)
    for h in layers:
        for src in sources:
            for arm in arms:
                r = _row(h, below[h.index], src, arm, measured[(arm, src)])
                if arm == "model":
                    r |= _paired(h, measured[(arm, src)], measured.get(("fresh-init", src)))
                rows.append(r)
    return rows


def _says(lo: float, hi: float, more: str, less: str, same: str) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "cannot tell"
    return more if lo > 0 else less if hi < 0 else same


@dataclass(frozen=True)
class PropagationReport:
    """Everything one ``netprobe propagate`` run measured: one row per (layer, source, arm)."""

    model: str
    data: str
    num: int
    options: dict[str, Any]
    layers: list[dict[str, Any]]
    arms: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def model_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["arm"] == "model"]

    def headline_text(self) -> list[str]:
        """Sentences on the model's real inputs against the fresh init (interval-backed)."""
        rows = [r for r in self.model_rows() if r["source"] == "real"]
        if not rows:
            return []
        worst = max(rows, key=lambda r: r["dead_frac"])
        out = [
            f"active fraction on real inputs: {min(r['active_frac'] for r in rows):.3g}–"
            f"{max(r['active_frac'] for r in rows):.3g} across layers; most dead units: "
            f"{worst['dead_frac']:.1%} at {worst['layer']}"
        ]
        if "fresh-init" in self.arms:
            sparser = [r["layer"] for r in rows if r["active_diff_hi"] < 0]
            denser = [r["layer"] for r in rows if r["active_diff_lo"] > 0]
            out.append(
                "against the fresh init (95% intervals over inputs): sparser at "
                f"{', '.join(sparser) or 'no layer'}; denser at {', '.join(denser) or 'no layer'}"
            )
            bigger = [r["layer"] for r in rows if r["jac_top_ratio_lo"] > 1]
            smaller = [r["layer"] for r in rows if r["jac_top_ratio_hi"] < 1]
            if any(math.isfinite(r["jac_top_ratio"]) for r in rows):
                out.append(
                    f"top Jacobian singular value larger than the fresh init's at "
                    f"{', '.join(bigger) or 'no layer'}; smaller at {', '.join(smaller) or 'no layer'}"
                )
        gaps = [r for r in self.model_rows() if math.isfinite(r["cos_gap"])]
        if gaps:
            g = max(gaps, key=lambda r: abs(r["cos_gap"]))
            out.append(
                f"cosines vs the arc-cosine prediction: largest gap {g['cos_gap']:+.3f} "
                f"[{g['cos_gap_lo']:+.3f}, {g['cos_gap_hi']:+.3f}] at {g['layer']} ({g['source']})"
            )
        return out

    def headline(self) -> dict[str, Any]:
        rows = self.model_rows()
        return {
            "layers": len(self.layers),
            "max_dead_frac": max((r["dead_frac"] for r in rows), default=math.nan),
            "min_active_frac": min((r["active_frac"] for r in rows), default=math.nan),
            "max_abs_cos_gap": max(
                (abs(r["cos_gap"]) for r in rows if math.isfinite(r["cos_gap"])), default=None
            ),
            "summary": self.headline_text(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "num": self.num,
            "options": self.options,
            "layers": self.layers,
            "arms": self.arms,
            "rows": self.rows,
            "headline": self.headline(),
            "notes": self.notes,
        }

    def to_markdown(self, figures: bool = False) -> str:
        o = self.options
        lines = [
            f"# Propagation through {self.model}\n",
            f"{o.get('num')} Gaussian inputs (in pairs of set correlation) and real inputs from "
            f"{self.data}; arms: {', '.join(self.arms)}; Jacobian on {o.get('jacobian_inputs')} "
            f"inputs per source and arm, {o.get('lanczos_steps')} Lanczos steps; seed {o.get('seed')}.\n",
            *[f"- {t}" for t in self.headline_text()],
            "",
            markdown_table(self.rows, MD_COLUMNS),
            NOTES,
        ]
        if self.notes:
            lines += ["## Notes\n", *[f"- {n}" for n in self.notes], ""]
        if figures:
            lines += [
                "## Figures\n",
                "![active fraction](active.png)\n",
                "![cosine through depth](cosine.png)\n",
                "![Jacobian singular values](jacobian.png)\n",
            ]
        lines.append("What each column means and predicts: docs/science.md §7.\n")
        return "\n".join(lines)

    def write(self, output: OutputDir | str | os.PathLike[str]) -> list[str]:
        from .figures import active_figure, cosine_figure, jacobian_figure

        out = as_output_dir(output)
        before = len(out.written)
        out.write_csv("layers.csv", self.to_frame())
        out.write_json("report.json", self.to_dict())
        out.write_figure("active.png", active_figure(self))
        out.write_figure("cosine.png", cosine_figure(self))
        out.write_figure("jacobian.png", jacobian_figure(self))
        out.write_text("report.md", self.to_markdown(figures=True))
        return out.written[before:]
