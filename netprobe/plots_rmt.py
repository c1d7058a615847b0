"""Figures and files of the random-matrix headline (docs/science.md §6): each low-rank layer's
spectrum beside its residual's (residual.png), and a checkpoint comparison (compare.png with
compare.csv, ``--compare OTHER``). Called once from :meth:`RandomnessReport.write`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_PANELS = 8  # layers drawn in residual.png (the largest energy shares first)


def residual_figure(layers: list[Any]) -> Any:
    """Histograms of the singular values of W (top k marked) beside the residual's, per layer."""
    from .plots import new_figure, plain  # matplotlib only when drawing

    n = len(layers)
    fig = new_figure(9.0, 2.4 * n)
    for i, layer in enumerate(layers):
        sv, res = layer.arrays["sv"], layer.arrays["residual_sv"]
        k = layer.lowrank.k
        for j, (vals, title) in enumerate(
            ((sv, f"{plain(layer.name)}: W"), (res, f"residual without {k} direction(s)"))
        ):
            ax = fig.add_subplot(n, 2, 2 * i + j + 1)
            ax.hist(vals, bins=60, color="C0" if j == 0 else "C2")
            if j == 0:
                for s in sv[:k]:
                    ax.axvline(float(s), color="C3", lw=1)
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("singular values: layer and residual (red: the k directions)", fontsize=9)

    return fig


def compare_figure(rows: list[dict[str, Any]], other: str) -> Any:
    """B − A per layer with 95% intervals for the statistics that have one."""
    from .iid.compare import COMPARED
    from .plots import new_figure, plain  # matplotlib only when drawing

    cols = [c for c, how in COMPARED if how]
    fig = new_figure(9.0, 1.9 * len(cols))
    y = np.arange(len(rows))
    for i, col in enumerate(cols):
        ax = fig.add_subplot(len(cols), 1, i + 1)
        d = np.array([r[f"{col}_diff"] for r in rows], dtype=float)
        lo = np.array([r[f"{col}_lo"] for r in rows], dtype=float)
        hi = np.array([r[f"{col}_hi"] for r in rows], dtype=float)
        ok = np.isfinite(d) & np.isfinite(lo)
        ax.errorbar(y[ok], d[ok], yerr=[d[ok] - lo[ok], hi[ok] - d[ok]], fmt="o", ms=3, capsize=2)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylabel(col, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_xticks(y)
        ax.set_xticklabels([plain(r["layer"]) for r in rows] if i == len(cols) - 1 else [])
        if i == len(cols) - 1:
            for t in ax.get_xticklabels():
                t.set_rotation(60)
                t.set_horizontalalignment("right")
    fig.suptitle(f"{plain(other)} minus this model, per layer (95% intervals)", fontsize=9)

    return fig


def write_rmt_outputs(report: Any, out: Any) -> list[str]:
    """compare.csv (with ``--compare``), and when figures are on residual.png (layers with k
    spike directions) and compare.png; returns the names written."""
    names: list[str] = []
    rows = report.compare_rows() if report.compare is not None else []
    if report.compare is not None:
        import pandas as pd

        out.write_csv("compare.csv", pd.DataFrame(rows))
        names.append("compare.csv")
    if not report.figures:
        return names
    low = [
        x
        for x in report.analysed
        if "residual_sv" in x.arrays and "sv" in x.arrays and x.lowrank is not None
    ]
    low.sort(key=lambda x: -(x.lowrank.energy if math.isfinite(x.lowrank.energy) else 0.0))
    if low:
        out.write_figure("residual.png", residual_figure(low[:MAX_PANELS]), dpi=report.dpi)
        names.append("residual.png")
    if rows:
        out.write_figure("compare.png", compare_figure(rows, report.compare.model), dpi=report.dpi)
        names.append("compare.png")
    return names
