"""The view across depth: each randomness statistic against the block index, one line per
role (``q_proj``, ``down_proj``, ``c_attn[q]``, a CNN's ``Conv2d``), as a table (depth.csv)
and a figure (depth.png). docs/design.md ("Hugging Face checkpoints and streaming").

A block is a transformer layer or a CNN stage, read from the module path
(:func:`netprobe.loading.roles.block_index`); rows without one (embeddings, the LM head)
stay out of the view. Several matrices of one role in one block (mixture-of-experts
experts) are summarised by their median, with their count.
"""

from __future__ import annotations

import math
from typing import Any

#: (column, axis label) of the statistics drawn against depth
DEPTH_STATS = (
    ("spectrum_ks", "spectrum KS distance"),
    ("spike_fraction", "spike fraction"),
    ("s_max_over_edge", "s_max / MP edge"),
    ("excess_kurtosis", "excess kurtosis"),
    ("sigma_fit", "sigma_mp (fitted MP scale)"),
    ("structured", "share called structured"),
)


def depth_rows(layers: Any) -> list[dict[str, Any]]:
    """One row per (block, role) of the analysed layers that sit in a block: the count and
    the median of each statistic, ``structured`` the share of its matrices called so."""
    import numpy as np

    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for layer in layers:
        if not layer.analysed or layer.block is None:
            continue
        role = layer.role or layer.kind
        r = layer.row()
        r["structured"] = 1.0 if layer.verdict == "structured" else 0.0
        groups.setdefault((layer.block, role), []).append(r)
    out = []
    for (block, role), rs in sorted(groups.items()):
        row: dict[str, Any] = {"block": block, "role": role, "matrices": len(rs)}
        for col, _ in DEPTH_STATS:
            vals = [
                float(r[col]) for r in rs if r[col] is not None and math.isfinite(float(r[col]))
            ]
            row[col] = float(np.median(vals)) if vals else math.nan
        out.append(row)
    return out


def has_depth(rows: list[dict[str, Any]]) -> bool:
    """A view across depth needs a role seen in two blocks or more: AlexNet's
    ``features.0`` .. ``features.10`` are five blocks of one layer each, every "line" a point."""
    blocks: dict[str, set[int]] = {}
    for r in rows:
        blocks.setdefault(r["role"], set()).add(r["block"])
    return any(len(b) >= 2 for b in blocks.values())


def depth_figure(rows: list[dict[str, Any]], title: str) -> Any:
    """One panel per statistic, block index on x, one line per role."""
    from matplotlib.figure import Figure

    roles = sorted({r["role"] for r in rows})
    # margins fixed in inches (legend at the right), no layout solver and no tight bounding
    # box: each measured every tick label, together 0.7 of the figure's 1.0 s
    fig = Figure(figsize=(13, 7.5))
    fig.subplots_adjust(left=0.05, right=0.82, top=0.91, bottom=0.08, wspace=0.25, hspace=0.3)
    axes = fig.subplots(2, 3)
    for ax, (col, label) in zip(axes.flat, DEPTH_STATS, strict=True):
        for role in roles:
            pts = sorted((r["block"], r[col]) for r in rows if r["role"] == role)
            # matplotlib leaves labels that start with "_" out of legends (EfficientNet's
            # "_expand_conv"): show the role without them
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker=".", label=role.lstrip("_"), lw=1
            )
        ax.set_xlabel("block")
        ax.set_title(label, fontsize=10)
        if col == "s_max_over_edge":
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        if col == "structured":
            ax.set_ylim(-0.05, 1.05)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


def write_depth(report: Any, out: Any) -> list[str]:
    """depth.csv (and depth.png when the report draws figures) when the model has two
    blocks or more; the names written."""
    import pandas as pd

    rows = depth_rows(report.layers)
    if not has_depth(rows):
        return []
    out.write_csv("depth.csv", pd.DataFrame(rows))
    names = ["depth.csv"]
    if report.figures:
        fig = depth_figure(rows, f"{report.model}: statistics across depth")
        out.write_figure("depth.png", fig, dpi=report.dpi, tight=False)
        names.append("depth.png")
    return names
