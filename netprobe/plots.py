"""matplotlib Figure builders (Agg backend, no pyplot global state).

Every function returns a ``matplotlib.figure.Figure``; the report stage saves it. Names that
come from the user (model, layer and class names, skip reasons) go through :func:`plain`, so
a ``$`` in them prints as a dollar sign instead of starting mathtext (which can fail the
whole figure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

# points of a normal Q–Q plot (quantiles of the sample, not every entry)
QQ_POINTS = 400


def new_figure(
    width: float = 6.4, height: float = 4.8, layout: Any = "constrained", **kw: Any
) -> Figure:
    return Figure(figsize=(width, height), layout=layout, **kw)


def plain(text: Any) -> str:
    """``text`` as matplotlib prints it literally: ``$`` escaped (no mathtext)."""
    return str(text).replace("$", r"\$")


def _p(p: float) -> str:
    """A p-value for a title: one that underflowed to 0 reads "< 1e-300", not "0"."""
    return "< 1e-300" if p == 0 else f"{p:.2g}"


# --- randomness --------------------------------------------------------------------------


def _fixed_grid(fig: Figure, rows: int, cols: int, row_inches: float, top_inches: float) -> Any:
    """A ``rows`` x ``cols`` grid with margins fixed in inches, in place of the constrained
    layout: the layout solver measured every tick label of every axes (about 80% of the
    time a 24-axes page took to draw; docs/design.md, "Speed")."""
    h = fig.get_figheight()
    fig.subplots_adjust(
        left=0.06,
        right=0.99,
        top=1 - top_inches / h,
        bottom=0.45 / h,
        wspace=0.22,
        hspace=0.75 / (row_inches - 0.75),
    )
    # titles at a fixed height: the automatic position measures every tick label of the
    # axes below the title (axes.titley set when the axes are made turns it off)
    with matplotlib.rc_context({"axes.titley": 1.0}):
        return fig.subplots(rows, cols, squeeze=False)


def _light_axes(axes: Any) -> None:
    """Few ticks and no log-axis minor ticks: each tick is a set of artists matplotlib
    builds and measures (with the title's automatic position, which :func:`_fixed_grid`
    turns off, most of a page's drawing time; docs/design.md, "Speed")."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

    for ax in axes:
        ax.tick_params(labelsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        if ax.get_yscale() == "log":
            ax.yaxis.set_major_locator(LogLocator(numticks=5))
            ax.yaxis.set_minor_locator(NullLocator())
        else:
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5))


def _qq_points(z: Any, count: int = QQ_POINTS) -> tuple[Any, Any]:
    """A normal Q–Q plot's points from ``count`` quantiles of ``z``, evenly spaced in
    Gaussian quantile from the smallest plotting position to the largest (so the tails,
    where a law shows, keep their points): the curve every entry draws, at a fixed cost."""
    from scipy.special import ndtr, ndtri

    n = len(z)
    if n <= count:
        return ndtri((np.arange(1, n + 1) - 0.5) / n), np.sort(z)
    edge = float(ndtri(0.5 / n))
    q = np.linspace(edge, -edge, count)
    # hazen: the quantile at (k - 0.5) / n is the k-th smallest entry, the full plot's point
    return q, np.quantile(z, ndtr(q), method="hazen")


def randomness_layer_grid(
    layers: list[Any],
    reference: Callable[[Any, Any], Any] | None = None,
    title: str = "",
) -> Figure:
    """One row per layer: the singular values of W / (sigma sqrt(N)) against the
    Marchenko–Pastur (quarter-circle when square) density and a same-shape Gaussian matrix;
    the entries' histogram on a log axis with the fitted Gaussian; a normal Q–Q plot.
    ``layers`` are :class:`netprobe.iid.LayerResult`; ``reference(layer, bins)`` gives the
    same-shape Gaussian matrix's density over those bins of the same axis, or None."""
    import math

    from .spectra import sv_pdf

    rows = max(len(layers), 1)
    fig = new_figure(11.0, 2.3 * rows + (0.35 if title else 0.0), layout=None)
    axes = _fixed_grid(fig, rows, 3, row_inches=2.3, top_inches=0.95 if title else 0.55)
    for row, layer in zip(axes, layers, strict=False):
        ax_s, ax_h, ax_q = row
        s = layer.spectrum
        tag = f"{plain(layer.name)} ({'x'.join(map(str, layer.matrix_shape))}): {layer.verdict}"
        if s is not None:
            # histograms are counted here and drawn as one step outline each (stairs), not
            # as one rectangle artist per bin
            scale = s.sigma * math.sqrt(s.N)
            if "sv" in layer.arrays:
                sv = np.asarray(layer.arrays["sv"], dtype=np.float64) / scale
                hi = max(float(sv.max()), s.edge) * 1.05
                bins = np.linspace(0, hi, min(80, max(20, len(sv) // 8)))
                dens, _ = np.histogram(sv, bins=bins, density=True)
                label = "W"
            else:  # SLQ: the quadrature's density as a weighted histogram of its nodes
                nodes = np.sqrt(np.clip(layer.arrays["slq_nodes"].ravel(), 0, None)) / scale
                hi = max(float(nodes.max()), s.edge) * 1.05
                bins = np.linspace(0, hi, 60)
                w = layer.arrays["slq_weights"].ravel() / len(layer.arrays["slq_nodes"])
                dens, _ = np.histogram(nodes, bins=bins, weights=w, density=True)
                label = "W (SLQ)"
            ax_s.stairs(dens, bins, fill=True, color="#4c72b0", alpha=0.75, label=label)
            ref_dens = reference(layer, bins) if reference is not None else None
            if ref_dens is not None:
                ax_s.stairs(ref_dens, bins, color="0.35", label="Gaussian, same shape")
            xs = np.linspace(1e-4, hi, 400)
            ax_s.plot(
                xs,
                sv_pdf(xs, s.aspect),
                color="#c44e52",
                lw=1.4,
                label="quarter circle" if s.aspect == 1 else f"MP (λ={s.aspect:.2g})",
            )
            ax_s.axvline(s.edge, color="#c44e52", ls=":", lw=0.8)
            ax_s.set_title(f"{tag}\nKS {s.ks:.3g} (p {_p(s.ks_p)}), spikes {s.spikes}", fontsize=8)
            ax_s.set_xlabel("singular value / (σ√N)", fontsize=7)
            ax_s.legend(fontsize=6, frameon=False)
        else:
            ax_s.text(
                0.5,
                0.5,
                "no spectrum\n" + plain(layer.reason or ""),
                ha="center",
                va="center",
                fontsize=7,
                transform=ax_s.transAxes,
                wrap=True,
            )
            ax_s.set_title(tag, fontsize=8)
        x = np.asarray(layer.arrays.get("sample", []), dtype=np.float64)
        e = layer.entries
        if len(x) and e is not None:
            z = (x - e.mean) / e.std
            lim = max(float(np.abs(z).max()), 4.0)
            edges = np.linspace(-lim, lim, 60)
            zdens, _ = np.histogram(z, bins=edges, density=True)
            ax_h.stairs(zdens, edges, fill=True, color="#55a868", alpha=0.8)
            g = np.linspace(-lim, lim, 300)
            ax_h.plot(g, np.exp(-0.5 * g * g) / math.sqrt(2 * math.pi), color="#c44e52", lw=1.2)
            ax_h.set_yscale("log")
            ax_h.set_ylim(bottom=0.5 / len(z))
            ax_h.set_title(
                f"entries: kurtosis {e.kurtosis:.2g}, KS {e.ks:.3g} (p {_p(e.ks_p)}), best {e.best_fit}",
                fontsize=8,
            )
            ax_h.set_xlabel("(w - mean) / std", fontsize=7)
            qx, qy = _qq_points(z)
            ax_q.plot(qx, qy, ".", ms=1.5, color="#55a868")
            ax_q.plot([-4, 4], [-4, 4], color="#c44e52", lw=0.8)
            ax_q.set_title(f"normal Q–Q ({len(z):,} entries)", fontsize=8)
            ax_q.set_xlabel("Gaussian quantile", fontsize=7)
            ax_q.set_ylabel("entry quantile", fontsize=7, labelpad=1)
        _light_axes(row)
    if title:
        import textwrap

        fig.suptitle(textwrap.fill(plain(title), 110), fontsize=10)
    return fig


def randomness_summary(report: Any) -> Figure:
    """All layers at a glance: each test's -log10 p-value against the structured threshold;
    the entries' excess kurtosis and KS distance; s_max / bulk edge and the spike fraction
    (the fresh initialisation in grey when it was analysed)."""
    import math

    layers = report.analysed
    idx = np.arange(len(layers))
    fig = new_figure(11.0, 7.5)
    ax_p, ax_e, ax_s = fig.subplots(3, 1, sharex=True)

    def nlp(v: float) -> float:
        return -math.log10(max(v, 1e-300)) if math.isfinite(v) else math.nan

    # the verdict's tests (iid.verdict.TESTS); the Gaussian-entries test is not one of them
    # and has no p-value here (its legend entry drew nothing)
    markers = {"independence": "s", "spectrum": "^", "spikes": "D"}
    for t, mk in markers.items():
        ax_p.plot(
            idx,
            [nlp(layer.pvalues.get(t, math.nan)) for layer in layers],
            mk,
            ms=4,
            label=t,
            alpha=0.8,
        )
    ax_p.axhline(
        -math.log10(report.thresholds.per_test),
        color="#c44e52",
        ls="--",
        lw=1,
        label=f"structured (p < {report.thresholds.per_test:.3g})",
    )
    # symlog keeps p = 1e-300 and p = 0.5 on one axis; with nothing past 10 its only
    # major tick was 0 and the top was labelled like 1.86706x10^0, so a linear axis there
    heights = [nlp(p) for layer in layers for p in layer.pvalues.values()]
    top = max([h for h in heights if math.isfinite(h)] + [-math.log10(report.thresholds.per_test)])
    if top < 8:
        ax_p.set_ylim(0, 1.25 * top)
    else:
        ax_p.set_yscale("symlog", linthresh=2)
        ax_p.set_ylim(bottom=0)
    ax_p.set_ylabel("-log10 p")
    ax_p.legend(fontsize=7, ncol=5, frameon=False)
    import textwrap
    from pathlib import PurePath

    name = PurePath(report.model).name if "/" in report.model else report.model
    ax_p.set_title(textwrap.fill(plain(f"{name}: {report.summary}"), 130), fontsize=9)
    kurt = [layer.entries.kurtosis for layer in layers]
    ax_e.plot(idx, kurt, "o-", ms=3, label="excess kurtosis")
    ax_e.set_yscale("symlog", linthresh=1)
    # at least -1.5..1.5, so 0 (a Gaussian's) and its neighbours are labelled: layers that
    # all sit near one value (-1.2, uniform init) left the axis with no tick at all
    lo, hi = ax_e.get_ylim()
    ax_e.set_ylim(min(lo, -1.5), max(hi, 1.5))
    ax_e.axhline(0.0, color="0.5", lw=0.8)
    ax_e.set_ylabel("excess kurtosis")
    ax2 = ax_e.twinx()
    ax2.plot(
        idx, [layer.entries.ks for layer in layers], "s", ms=3, color="#dd8452", label="entry KS"
    )
    ax2.set_ylabel("entry KS distance", color="#dd8452")
    ax_s.plot(
        idx,
        [layer.spectrum.s_max_over_edge if layer.spectrum else math.nan for layer in layers],
        "^-",
        ms=3,
        label="s_max / bulk edge",
    )
    ax_s.axhline(1.0, color="0.5", lw=0.8)
    ax_s.set_ylabel("s_max / edge")
    ax3 = ax_s.twinx()
    ax3.plot(
        idx,
        [layer.spectrum.spike_fraction if layer.spectrum else math.nan for layer in layers],
        "D",
        ms=3,
        color="#8172b2",
    )
    ax3.set_ylabel("spike fraction", color="#8172b2")
    if report.init is not None:
        init = {layer.name: layer for layer in report.init.analysed}
        ax_e.plot(
            idx,
            [init[x.name].entries.kurtosis if x.name in init else math.nan for x in layers],
            "o",
            ms=3,
            color="0.6",
            label="fresh init",
        )
        ax_s.plot(
            idx,
            [
                init[x.name].spectrum.s_max_over_edge
                if x.name in init and init[x.name].spectrum
                else math.nan
                for x in layers
            ],
            "^",
            ms=3,
            color="0.6",
            label="fresh init",
        )
        ax_e.legend(fontsize=7, frameon=False)
        ax_s.legend(fontsize=7, frameon=False)
    ax_s.set_xticks(idx)
    ax_s.set_xticklabels(
        [plain(layer.name) for layer in layers],
        rotation=70,
        ha="right",
        fontsize=6 if len(layers) > 20 else 7,
    )
    for i, layer in enumerate(layers):
        if layer.verdict == "structured":
            ax_s.get_xticklabels()[i].set_color("#c44e52")
    return fig


# --- reconstruct -------------------------------------------------------------------------

ARM_COLOURS = {
    "model": "tab:blue",
    "fresh-init": "tab:green",
    "permuted": "tab:orange",
    "random-h": "tab:red",
    "fresh-random-h": "tab:purple",
}


def _mosaic(cells: dict[tuple[int, int], Any], rows: int, cols: int) -> tuple[Any, int, int]:
    """One image holding every (C, H, W) cell in [0, 1] at its (row, col) tile, white
    between tiles and where a cell is missing: (the image, tile height, tile width with its
    gap). Grey cells become RGB when any cell is colour."""
    shapes = [img.shape for img in cells.values()]
    H, W = max(s[1] for s in shapes), max(s[2] for s in shapes)
    gap = max(1, round(0.08 * max(H, W)))
    canvas = np.ones(((H + gap) * rows - gap, (W + gap) * cols - gap, 3), np.float32)
    for (r, c), img in cells.items():
        tile = (
            img[:3].transpose(1, 2, 0) if img.shape[0] >= 3 else np.repeat(img[0][..., None], 3, 2)
        )
        y, x = r * (H + gap), c * (W + gap)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = np.clip(tile, 0, 1)
    return canvas, H + gap, W + gap


def reconstruction_grid(report: Any, samples: int = 4) -> Figure:
    """x and x̃ per layer (columns), one row per (sample, arm): the model's own x̃ with the
    controls right below it. x̃ is contrast-stretched per image. Drawn as one image (a
    mosaic) on one axes: 80 axes with their own layout took 1.3 s of reconstruct's run."""
    layers = [i.name for i in report.layers]
    arms = list(report.arms)
    xs = report.images.get("x")
    n = min(samples, 0 if xs is None else len(xs))
    rows, cols = max(1, n * len(arms)), 1 + len(layers)
    cells: dict[tuple[int, int], Any] = {}
    for s in range(n):
        for a, arm in enumerate(arms):
            r = s * len(arms) + a
            if a == 0:
                cells[(r, 0)] = xs[s]
            for c, name in enumerate(layers, start=1):
                imgs = report.images.get(f"{name}/{arm}")
                if imgs is not None and len(imgs) > s and getattr(imgs[s], "ndim", 0) == 3:
                    cells[(r, c)] = imgs[s]
    side = 1.05 if cols <= 8 else 0.85
    fig = new_figure(side * cols + 1.2, side * rows + 0.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    if cells:
        canvas, th, tw = _mosaic(cells, rows, cols)
        ax.imshow(canvas, interpolation="antialiased", aspect="equal")
        for s in range(n):
            for a, arm in enumerate(arms):
                ax.text(
                    -0.1 * tw,
                    (s * len(arms) + a + 0.45) * th,
                    f"#{s} {plain(arm)}",
                    ha="right",
                    va="center",
                    fontsize=8,
                    color=ARM_COLOURS.get(arm, "black"),
                )
        for c, title in enumerate(["x", *[f"x̃ from {plain(n_)}" for n_ in layers]]):
            ax.text((c + 0.45) * tw, -0.08 * th, title, ha="center", va="bottom", fontsize=8)
    fig.suptitle(
        f"{plain(report.model)}: inputs and reconstructions (x̃ contrast-stretched per image)",
        fontsize=9,
    )
    return fig


def reconstruction_depth(report: Any) -> Figure:
    """Error versus depth: scale-free relative error ‖s·h̃ − h‖/‖h‖ and Jaccard of the
    active units per hidden layer, the model against its controls (mean ± std)."""
    rows = report.summary_rows()  # dicts: no pandas import for a figure
    order = {i.name: k for k, i in enumerate(report.layers)}
    rotate = len(report.layers) > 8
    longest = max((len(i.name) for i in report.layers), default=0)
    # margins fixed in inches (room for rotated layer names), drawn without the layout solver
    # or a tight bounding box: each measured every label (0.3-0.6 s of a 0.2 s figure)
    fig = new_figure(9.5, 3.8, layout=None)
    bottom = (0.55 + (0.055 * longest * 0.71 if rotate else 0.0)) / 3.8
    fig.subplots_adjust(left=0.07, right=0.98, bottom=min(bottom, 0.5), top=0.86, wspace=0.22)
    ax1, ax2 = fig.subplots(1, 2)

    def of(arm: str) -> list[dict[str, Any]]:
        return sorted((r for r in rows if r["arm"] == arm), key=lambda r: order[r["layer"]])

    for arm in report.arms:
        part = of(arm)
        xs = [order[r["layer"]] for r in part]
        kw = {"color": ARM_COLOURS.get(arm), "marker": "o", "capsize": 3, "label": arm, "lw": 1.5}
        for ax, col in ((ax1, "rel_err_scaled"), (ax2, "jaccard")):
            ys = np.array([r[col] for r in part], dtype=float)
            ax.errorbar(xs, ys, yerr=np.array([r[f"{col}_std"] for r in part], dtype=float), **kw)
    model = of("model")
    bound = np.array([r.get("theory_bound", np.nan) for r in model], dtype=float)
    if len(model) and np.isfinite(bound).any():
        ax1.plot(
            [order[r["layer"]] for r in model],
            bound,
            ls="--",
            color="gray",
            lw=1,
            label="√(k/(ρn)) (model)",
        )
    errs = np.array([r["rel_err_scaled"] for r in rows], dtype=float)
    top = float(np.nanmax(errs)) if len(errs) and np.isfinite(errs).any() else 1.0
    ax1.set_ylim(0, max(1.05, 1.15 * top))
    ax2.set_ylim(0, 1.02)
    for ax, title in ((ax1, "relative error after best rescale"), (ax2, "Jaccard of active units")):
        ax.set_xticks(
            range(len(report.layers)),
            [plain(i.name) for i in report.layers],
            rotation=45 if rotate else 0,
            ha="right" if rotate else "center",
        )
        ax.set_xlabel("hidden layer")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"{plain(report.model)}: re-inferring h from x̃, by depth", fontsize=10)
    return fig


# --- shadow-train ------------------------------------------------------------------------

_ARM_COLOURS = {
    "baseline": "tab:blue",
    "shadow": "tab:orange",
    "baseline+dropout": "tab:green",
    "shadow+dropout": "tab:red",
}


def _arm_curves(rows: list[dict[str, Any]], arm: str, key: str) -> tuple[Any, Any, Any, Any]:
    """(epochs, mean, std, mean cumulative wall seconds) over the seeds of one arm."""
    import pandas as pd

    df = pd.DataFrame([r for r in rows if r.get("arm") == arm])
    if df.empty or key not in df:
        return np.array([]), np.array([]), np.array([]), np.array([])
    g = df.groupby("epoch")
    std = g[key].std(ddof=1).fillna(0.0)
    return (
        g[key].mean().index.to_numpy(),
        g[key].mean().to_numpy(),
        std.to_numpy(),
        g["wall_seconds"].mean().to_numpy(),
    )


def shadow_learning_curves(rows: list[dict[str, Any]], arms: list[str]) -> Figure:
    """Test error per arm (mean ± std over seeds, thin lines per seed) against epoch and against
    cumulative wall-clock time (training plus real-test evaluation)."""
    fig = new_figure(11, 4.2)
    ax_e, ax_t = fig.subplots(1, 2)
    for arm in arms:
        c = _ARM_COLOURS.get(arm)
        ep, m, s, wall = _arm_curves(rows, arm, "test_error")
        if len(ep) == 0:
            continue
        ax_e.plot(ep, 100 * m, "-o", color=c, label=arm, ms=3)
        ax_e.fill_between(ep, 100 * (m - s), 100 * (m + s), color=c, alpha=0.15, lw=0)
        for seed in sorted({r["seed"] for r in rows if r.get("arm") == arm}):
            pts = [
                (r["epoch"], r["test_error"])
                for r in rows
                if r.get("arm") == arm and r["seed"] == seed
            ]
            ax_e.plot([p[0] for p in pts], [100 * p[1] for p in pts], color=c, alpha=0.3, lw=0.7)
        ax_t.plot(wall, 100 * m, "-o", color=c, label=arm, ms=3)
        ax_t.fill_between(wall, 100 * (m - s), 100 * (m + s), color=c, alpha=0.15, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax_e.set(
        xlabel="epoch", ylabel="test error (%)", title="Test error by epoch (mean ± std over seeds)"
    )
    ax_e.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_t.set(
        xlabel="wall-clock seconds (training + test evaluation, mean over seeds)",
        ylabel="test error (%)",
        title="Test error by wall-clock time",
    )
    for ax in (ax_e, ax_t):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def shadow_tracking(
    rows: list[dict[str, Any]], arms: list[str], tracking: dict[str, Any]
) -> Figure:
    """Synthetic test error (generated from the test inputs) against real test error: curves by
    epoch per arm, and every (arm, seed, epoch) as a point."""
    fig = new_figure(11, 4.2)
    ax_c, ax_s = fig.subplots(1, 2)
    for arm in arms:
        c = _ARM_COLOURS.get(arm)
        ep, m, _s, _w = _arm_curves(rows, arm, "test_error")
        ep2, m2, _s2, _w2 = _arm_curves(rows, arm, "synthetic_test_error")
        if len(ep):
            ax_c.plot(ep, 100 * m, "-o", color=c, ms=3, label=f"{arm}: real")
        if len(ep2):
            ax_c.plot(ep2, 100 * m2, "--s", color=c, ms=3, label=f"{arm}: synthetic")
        pts = [
            (r["test_error"], r["synthetic_test_error"])
            for r in rows
            if r.get("arm") == arm and r.get("synthetic_test_error") is not None
        ]
        if pts:
            ax_s.scatter(
                [100 * p[0] for p in pts],
                [100 * p[1] for p in pts],
                color=c,
                s=14,
                alpha=0.7,
                label=arm,
            )
    from matplotlib.ticker import MaxNLocator

    ax_c.set(
        xlabel="epoch",
        ylabel="test error (%)",
        title="Real (solid) and synthetic (dashed) test error",
    )
    ax_c.xaxis.set_major_locator(MaxNLocator(integer=True))
    # the tracking statistic is per arm, on epoch-to-epoch changes, with a CI over seeds
    # (docs/science.md §4.8); the raw curves' pooled r only describes the scatter
    parts = []
    for arm, t in (tracking.get("per_arm") or {}).items():
        r, lo, hi = t.get("r"), t.get("low"), t.get("high")
        if isinstance(r, float) and r == r and isinstance(lo, float) and lo == lo:
            parts.append(f"{arm}: r {r:.2f} [{lo:.2f}, {hi:.2f}]")
    rtxt = "\n".join(parts) if parts else "cannot tell"
    ax_s.set(xlabel="real test error (%)", ylabel="synthetic test error (%)")
    ax_s.set_title(
        f"Every arm, seed and epoch\ntracking on epoch-to-epoch changes (95% CI):\n{rtxt}",
        fontsize=9,
    )
    for ax in (ax_c, ax_s):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def shadow_sample_grid(
    real: Any, labels: Any, synthetic: dict[str, Any], classes: list[str] | None = None
) -> Figure:
    """Real test inputs (top row) and the synthetic input each arm's final net generates from
    them (one row per arm); images are (n, C, H, W) in [0, 1]."""
    n = int(real.shape[0])
    rows = [("real", real), *synthetic.items()]
    fig = new_figure(max(4.0, 1.1 * n), 1.2 * len(rows) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(rows), n, squeeze=False))
    for i, (name, imgs) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            img = imgs[j].detach().cpu().float().numpy()  # (C, H, W)
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(img[:3].transpose(1, 2, 0), 0, 1))  # (H, W, 3)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                lab = int(labels[j])
                ax.set_title(
                    plain(classes[lab]) if classes and lab < len(classes) else str(lab), fontsize=8
                )
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("x̃ = reverse net from h of each test input (rows: arms' final nets)", fontsize=9)
    return fig
