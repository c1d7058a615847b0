"""Rich renderables built from result objects: the only library module that imports rich.

Each command has its own section; the CLI prints what these functions return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from .listing import ModelLayers


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != v:  # NaN
            return "—"
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return (
                f"{v:.{digits}g}"
                if abs(v) < 1
                else f"{v:,.{digits}g}"
                if abs(v) >= 1e4
                else f"{v:.{digits}g}"
            )
        return f"{v:.{digits - 1}e}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# --- layers ----------------------------------------------------------------------------


def layers_table(info: ModelLayers) -> Any:
    from rich.console import Group

    shape = "x".join(map(str, info.input_shape)) if info.input_shape else "unknown"
    w = Table(title=f"Weight layers of {info.model}", title_justify="left")
    for col in ("layer", "module", "type", "matrix", "params"):
        w.add_column(col, justify="right" if col == "params" else "left")
    for wl in info.weight:
        w.add_row(
            wl.name,
            wl.module_path,
            wl.kind,
            "x".join(map(str, wl.matrix_shape)),
            fmt_num(wl.params),
        )
    h = Table(title=f"Hidden layers (input {shape})", title_justify="left")
    for col in ("h", "module", "op", "shape", "units"):
        h.add_column(col, justify="right" if col == "units" else "left")
    for hl in info.hidden:
        h.add_row(hl.name, hl.where, hl.kind, "x".join(map(str, hl.shape)), fmt_num(hl.size))
    parts: list[Any] = [w]
    if info.hidden:
        parts.append(h)
    return Group(*parts)


# --- randomness (section owned by the randomness work) -----------------------------------

_SHORT = {"entries": "entries", "independence": "indep", "spectrum": "MP", "spikes": "spikes"}


def randomness_table(report: Any) -> Any:
    """One row per weight matrix (shape, std, kurtosis, entry KS, spectrum KS, spikes,
    verdict and the tests behind it); skipped matrices with their reason; vectors counted
    on one line; the model's verdict last. p-values and the rest are in the files."""
    from rich.console import Group
    from rich.text import Text

    t = Table(title=f"Random-like weights: {report.model}", title_justify="left")
    t.add_column("layer", overflow="fold", ratio=3)
    t.add_column("shape", overflow="fold")
    for col in ("std", "kurt", "entry KS", "MP KS", "spikes"):
        t.add_column(col, justify="right")
    t.add_column("verdict", overflow="fold", ratio=2)
    init = {x.name: x for x in report.init.layers} if report.init is not None else {}
    if init:
        t.add_column("init", overflow="fold", ratio=1)
    vectors = 0
    for layer in report.layers:
        if layer.matrix_shape is None or (not layer.analysed and len(layer.tensor_shape) < 2):
            vectors += 1
            continue
        shape = "x".join(map(str, layer.matrix_shape))
        if not layer.analysed:
            t.add_row(
                layer.name,
                shape,
                "",
                "",
                "",
                "",
                "",
                f"[yellow]skipped[/yellow]: {layer.reason}",
                *([""] if init else []),
            )
            continue
        e, s = layer.entries, layer.spectrum
        colour = "red" if layer.verdict == "structured" else "green"
        verdict = f"[{colour}]{layer.verdict}[/{colour}]"
        if layer.failed:
            verdict += ": " + ", ".join(_SHORT.get(f, f) for f in layer.failed)
        cells = [
            layer.name,
            shape,
            fmt_num(e.std, 2),
            fmt_num(e.kurtosis, 2),
            fmt_num(e.ks, 2),
            fmt_num(s.ks, 2) if s else "—",
            str(s.spikes) if s else "—",
            verdict,
        ]
        if init:
            il = init.get(layer.name)
            cells.append(
                ", ".join(_SHORT.get(f, f) for f in il.failed) or il.verdict
                if il is not None
                else "—"
            )
        t.add_row(*cells)
    colour = "red" if report.verdict == "structured" else "green"
    parts: list[Any] = [t]
    if vectors:
        parts.append(
            Text(
                f"{vectors} vectors and buffers (biases, norms, counters) skipped: no matrix view.",
                style="dim",
            )
        )
    parts.append(
        Text.from_markup(f"[bold {colour}]{report.verdict}[/bold {colour}]: {report.summary}")
    )
    if init:
        parts.append(
            Text(
                f"init: {report.init_method}; tests that call the fresh weights structured.",
                style="dim",
            )
        )
    return Group(*parts)


# <<randomness-render>>

# --- reconstruct (section owned by the reconstruct work) ---------------------------------


def _f(v: Any, digits: int = 2) -> str:
    """A fixed-point number for narrow columns ("—" for missing)."""
    return "—" if v is None or v != v else f"{v:.{digits}f}"


def reconstruct_table(report: Any) -> Any:
    """Summary of a ReconstructionReport: one row per (layer, arm), then the headline."""
    from rich import box
    from rich.console import Group
    from rich.text import Text

    o = report.options
    t = Table(
        title=f"Reverse reconstruction of {report.model} ({report.num} inputs; "
        f"gen-scale α {o.get('gen_scale')}, gen-keep ρ {o.get('gen_keep')}, unpool {o.get('unpool')})",
        title_justify="left",
        caption="err = ‖h̃−h‖/‖h‖; scaled = after the best scalar rescale s; J = Jaccard of active units "
        "(thr: with the theory's threshold b' = −δ‖h‖); PSNR/SSIM are context only; all in report.md",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        show_edge=False,
    )
    for col in ("layer", "arm", "err", "scaled", "s", "cos", "J", "J thr", "PSNR", "SSIM", "top-1"):
        t.add_column(col, justify="left" if col in ("layer", "arm") else "right", no_wrap=True)
    frame = report.to_frame()
    last = None
    for r in frame.to_dict(orient="records"):
        if last is not None and r["layer"] != last:
            t.add_section()
        last = r["layer"]
        t.add_row(
            r["layer"],
            r["arm"],
            fmt_num(r["rel_err"], 2),
            _f(r["rel_err_scaled"]),
            fmt_num(r["scale"], 2),
            _f(r["cosine"]),
            _f(r["jaccard"]),
            _f(r["jaccard_thr"]),
            _f(r["psnr"], 1),
            _f(r["ssim"]),
            _f(r["top1_agree"]),
            style="bold" if r["arm"] == "model" else "dim",
        )
    parts: list[Any] = [t]
    parts += [Text(line) for line in report.headline_text()]
    parts += [Text(f"note: {n}", style="yellow") for n in report.notes]
    return Group(*parts)


# <<reconstruct-render>>

# --- shadow-train (section owned by the shadow-train work) -------------------------------


def _pct(v: Any) -> str:
    return "—" if v is None or v != v else f"{100 * v:.2f}%"


def shadow_table(report: Any) -> Any:
    """Per-arm summary (mean ± std over seeds), the paired comparisons, and the conclusion."""
    from rich.console import Group
    from rich.text import Text

    t = Table(
        title=f"netprobe shadow-train: {len(report.seeds)} seed(s) per arm", title_justify="left"
    )
    for col in (
        "arm",
        "seeds",
        "final test error",
        "mean error over epochs",
        "synthetic test error",
        "tracking r",
        "s/epoch",
    ):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for r in report.summary:
        t.add_row(
            r["arm"],
            str(r["seeds"]),
            f"{_pct(r['final_test_error_mean'])} ± {_pct(r['final_test_error_std'])}",
            f"{_pct(r['mean_test_error_mean'])} ± {_pct(r['mean_test_error_std'])}",
            f"{_pct(r['final_synthetic_test_error_mean'])} ± {_pct(r['final_synthetic_test_error_std'])}",
            fmt_num(r["tracking_r_mean"], 2),
            fmt_num(r["train_seconds_per_epoch"], 3),
        )
    parts: list[Any] = [t]
    if report.comparisons:
        c = Table(
            title="SHADOW against its reference arm (paired by seed; negative = SHADOW lower)",
            title_justify="left",
        )
        for col in ("arm", "vs", "metric", "difference", "95% CI", "verdict"):
            c.add_column(col, justify="right" if col in ("difference", "95% CI") else "left")
        style = {"helped": "green", "hurt": "red"}
        for x in report.comparisons:
            s = style.get(x["verdict"], "yellow")
            ci = "—" if x["low"] != x["low"] else f"{100 * x['low']:+.2f} to {100 * x['high']:+.2f}"
            c.add_row(
                x["arm"],
                x["reference"],
                x["metric"],
                f"{100 * x['mean']:+.2f} pts",
                ci,
                f"[{s}]{x['verdict']}[/{s}]",
            )
        parts.append(c)
    parts.append(Text.assemble(("result: ", "bold"), report.conclusion))
    return Group(*parts)


# <<shadow-train-render>>

# --- check (section owned by the check work) ---------------------------------------------


def check_table(results: list[Any]) -> Any:
    style = {"pass": "green", "fail": "red", "error": "yellow", "skipped": "dim"}
    t = Table(title="netprobe check", title_justify="left")
    for col in ("model", "rule", "status", "value", "threshold", "detail"):
        t.add_column(
            col,
            justify="right" if col in ("value", "threshold") else "left",
            overflow="fold" if col in ("model", "detail") else "ellipsis",
        )
    for res in results:
        for r in res.rules:
            s = style.get(r.status, "")
            t.add_row(
                res.model,
                r.rule,
                f"[{s}]{r.status}[/{s}]",
                fmt_num(r.value),
                fmt_num(r.threshold),
                r.message,
            )
    return t


# <<check-render>>
