"""One figure per ``netprobe propagate`` statistic against depth (docs/science.md §7):
each arm and input source a line with its 95% interval over inputs as a band."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..plots import new_figure, plain

_COLOURS = {"model": "#c44e52", "fresh-init": "#4c72b0"}
_STYLES = {"gaussian": "--", "real": "-"}


def _series(report: Any, arm: str, src: str, key: str) -> tuple[np.ndarray, ...]:
    rows = [r for r in report.rows if r["arm"] == arm and r["source"] == src]
    get = lambda k: np.array([r.get(k, np.nan) for r in rows], dtype=float)  # noqa: E731
    return np.arange(1, len(rows) + 1), get(key), get(f"{key}_lo"), get(f"{key}_hi")


def _curves(ax: Any, report: Any, key: str, log: bool = False) -> None:
    for arm in report.arms:
        for src in ("gaussian", "real"):
            d, y, lo, hi = _series(report, arm, src, key)
            if not len(d):
                continue
            c = _COLOURS.get(arm, "0.4")
            ax.plot(d, y, _STYLES[src], marker="o", ms=3, color=c, label=f"{arm}, {src}")
            if np.isfinite(lo).any():
                ax.fill_between(d, lo, hi, color=c, alpha=0.15, lw=0)
    if log:
        ax.set_yscale("log")


def _depth_axis(ax: Any, report: Any) -> None:
    names = [lay["layer"] for lay in report.layers]
    ax.set_xticks(
        np.arange(1, len(names) + 1), names, fontsize=7, rotation=90 if len(names) > 12 else 0
    )
    ax.set_xlabel("hidden layer")


def active_figure(report: Any) -> Figure:
    """Active fraction k/m per layer (with dead and always-on units), and √(k/n)."""
    fig = new_figure(10.0, 3.6)
    ax, ax2 = fig.subplots(1, 2)
    _curves(ax, report, "active_frac")
    ax.axhline(0.5, color="0.5", lw=0.8, ls=":", label="random ReLU net: 0.5")
    ax.set_ylabel("active fraction k/m")
    ax.set_title(plain(f"{report.model}: active units"), fontsize=9)
    for arm in report.arms:
        for src in ("gaussian", "real"):
            d, dead, _, _ = _series(report, arm, src, "dead_frac")
            _, on, _, _ = _series(report, arm, src, "always_on_frac")
            c = _COLOURS.get(arm, "0.4")
            ax2.plot(d, dead, _STYLES[src], marker="v", ms=3, color=c, label=f"dead: {arm}, {src}")
            ax2.plot(
                d,
                on,
                _STYLES[src],
                marker="^",
                ms=3,
                color=c,
                alpha=0.5,
                label=f"always on: {arm}, {src}",
            )
    ax2.set_ylabel("share of units")
    ax2.set_title("dead (▼) and always-on (▲) units", fontsize=9)
    for a in (ax, ax2):
        _depth_axis(a, report)
        a.legend(fontsize=6)
    return fig


def cosine_figure(report: Any) -> Figure:
    """Mean pair cosine per layer, beside the arc-cosine prediction where one is made."""
    fig = new_figure(6.4, 3.8)
    ax = fig.subplots()
    _curves(ax, report, "cosine")
    for src in ("gaussian", "real"):
        d, p, _, _ = _series(report, "model", src, "cosine_pred")
        if np.isfinite(p).any():
            ax.plot(d, p, _STYLES[src], color="0.2", lw=1.2, label=f"arc-cosine prediction, {src}")
    ax.set_ylabel("mean cosine of input pairs")
    ax.set_title(plain(f"{report.model}: cosine through depth"), fontsize=9)
    _depth_axis(ax, report)
    ax.legend(fontsize=6)
    return fig


def jacobian_figure(report: Any) -> Figure:
    """The input → h_ℓ Jacobian's top singular value and its median, per layer."""
    fig = new_figure(10.0, 3.6)
    ax, ax2 = fig.subplots(1, 2)
    _curves(ax, report, "jac_top", log=True)
    ax.set_ylabel("largest singular value")
    ax.set_title(plain(f"{report.model}: input → h Jacobian"), fontsize=9)
    for arm in report.arms:
        for src in ("gaussian", "real"):
            d, med, _, _ = _series(report, arm, src, "jac_median")
            _, spread, _, _ = _series(report, arm, src, "jac_log_spread")
            c = _COLOURS.get(arm, "0.4")
            ax2.errorbar(
                d,
                med,
                yerr=[med - med * np.exp(-spread), med * np.exp(spread) - med],
                fmt=_STYLES[src] + "o",
                ms=3,
                color=c,
                capsize=2,
                label=f"{arm}, {src}",
            )
    ax2.set_yscale("log")
    ax2.set_ylabel("median singular value (bars: ±1 sd of ln σ)")
    for a in (ax, ax2):
        _depth_axis(a, report)
        a.legend(fontsize=6)
    return fig
