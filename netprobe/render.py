"""Rich renderables built from result objects: one function per command's table. Every table
is a :class:`netprobe.tables.FitTable` (fits the console width: names and numbers are never
cut inside a word or number) and every user-derived string (model, layer and file names,
messages) is Text, never markup. render and tables are the only library modules that import
rich. See docs/design.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text

from .tables import ATOM, NAME, PROSE, Cell, Col, FitTable, Para, wrap

if TYPE_CHECKING:
    from .listing import ModelLayers

__all__ = [
    "ATOM",
    "NAME",
    "PROSE",
    "Col",
    "FitTable",
    "Para",
    "check_table",
    "fmt_num",
    "layers_table",
    "randomness_table",
    "reconstruct_table",
    "shadow_table",
    "wrap",
]


def _styled(value: str, style: str) -> Text:
    return Text(value, style=style)


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


# --- layers ------------------------------------------------------------------------------


def layers_table(info: ModelLayers) -> Any:
    shape = "x".join(map(str, info.input_shape)) if info.input_shape else "unknown"
    weight = FitTable(
        [
            Col("layer", NAME),
            Col("module", NAME, drop=3),
            Col("type", drop=2),
            Col("matrix"),
            Col("params", right=True, drop=1),
        ],
        [
            (
                wl.name,
                wl.module_path,
                wl.kind,
                "x".join(map(str, wl.matrix_shape)),
                fmt_num(wl.params),
            )
            for wl in info.weight
        ],
        title=Text.assemble("Weight layers of ", info.model),
    )
    parts: list[Any] = [weight]
    if info.hidden:
        hidden = FitTable(
            [
                Col("h"),
                Col("module", NAME),
                Col("op", drop=2),
                Col("shape"),
                Col("units", right=True, drop=1),
            ],
            [
                (hl.name, hl.where, hl.kind, "x".join(map(str, hl.shape)), fmt_num(hl.size))
                for hl in info.hidden
            ],
            title=f"Hidden layers (input {shape})",
        )
        parts += [Text(""), hidden]
    return Group(*parts)


# --- randomness --------------------------------------------------------------------------

_SHORT = {"entries": "entries", "independence": "indep", "spectrum": "MP", "spikes": "spikes"}
_VERDICT_STYLE = {"structured": "red", "random-like": "green", "skipped": "yellow"}


def _layer_value(layer: Any, key: str) -> Any:
    """A per-layer value the randomness analysis may or may not report (``entry_law``,
    ``gaussian``): an attribute, else a key of ``layer.row()``; None when absent."""
    if hasattr(layer, key):
        return getattr(layer, key)
    row = layer.row() if hasattr(layer, "row") else {}
    return row.get(key) if isinstance(row, dict) else None


def _yes_no(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return fmt_num(v, 2)
    return str(v)


def _failed(names: Iterable[str]) -> str:
    return ", ".join(_SHORT.get(f, f) for f in names)


def _headline_cell(text: str) -> Cell:
    """The random-matrix headline, short: random-like, except k (x%), structured."""
    if text.startswith("random-like except"):
        k, _, rest = text.removeprefix("random-like except ").partition(" ")
        share = rest.partition("(")[2].partition(" of")[0]
        return _styled(f"except {k} ({share})", "yellow")
    return _styled(text, _VERDICT_STYLE.get(text, "")) if text else "—"


def randomness_table(report: Any) -> Any:
    """One row per weight matrix (shape, std, kurtosis, entry law, entry KS, spectrum KS,
    spikes, verdict and the tests behind it); skipped matrices with their reason; vectors
    counted on one line; the model's verdict last. p-values and the rest are in the files."""
    matrices = [
        x
        for x in report.layers
        if x.matrix_shape is not None and (x.analysed or len(x.tensor_shape) >= 2)
    ]
    vectors = len(report.layers) - len(matrices)
    extra = [
        k
        for k in ("entry_law", "gaussian")
        if any(_layer_value(x, k) is not None for x in matrices)
    ]
    init = {x.name: x for x in report.init.layers} if report.init is not None else {}
    columns = [
        Col("layer", NAME),
        Col("shape", drop=4),
        Col("std", right=True, drop=8),
        Col("kurt", right=True, drop=7),
        *[
            Col("law" if k == "entry_law" else "gaussian", drop=6 if k == "entry_law" else 5)
            for k in extra
        ],
        Col("entry KS", right=True, drop=9),
        Col("MP KS", right=True, drop=3),
        Col("spikes", right=True, drop=2),
        Col("verdict", PROSE),
        *([Col("init", PROSE, drop=1)] if init else []),
        Col("headline", PROSE, drop=5),  # docs/science.md §6.4
    ]
    rows = []
    for layer in matrices:
        shape = "x".join(map(str, layer.matrix_shape))
        law = [_yes_no(_layer_value(layer, k)) for k in extra]
        if not layer.analysed:
            verdict = Text.assemble(("skipped", "yellow"), f": {layer.reason}")
            rows.append(
                [
                    layer.name,
                    shape,
                    "",
                    "",
                    *[""] * len(extra),
                    "",
                    "",
                    "",
                    verdict,
                    *([""] if init else []),
                    "",
                ]
            )
            continue
        e, s = layer.entries, layer.spectrum
        verdict = _styled(layer.verdict, _VERDICT_STYLE.get(layer.verdict, ""))
        if layer.failed:
            verdict.append(": " + _failed(layer.failed))
        cells: list[Cell] = [
            layer.name,
            shape,
            fmt_num(e.std, 2),
            fmt_num(e.kurtosis, 2),
            *law,
            fmt_num(e.ks, 2),
            fmt_num(s.ks, 2) if s else "—",
            str(s.spikes) if s else "—",
            verdict,
        ]
        if init:
            il = init.get(layer.name)
            cells.append("—" if il is None else _failed(il.failed) or il.verdict)
        cells.append(_headline_cell(layer.headline))
        rows.append(cells)
    parts: list[Any] = [
        FitTable(columns, rows, title=Text.assemble("Random-like weights: ", report.model))
    ]
    if vectors:
        parts.append(
            Para(
                f"{vectors} vectors and buffers (biases, norms, counters) skipped: no matrix view.",
                "dim",
            )
        )
    colour = _VERDICT_STYLE.get(report.verdict, "")
    parts.append(Para(Text.assemble((report.verdict, f"bold {colour}"), ": ", report.summary)))
    if init:
        parts.append(
            Para(
                f"init: {report.init_method}; tests that call the fresh weights structured.", "dim"
            )
        )
    return Group(*parts)


# --- reconstruct -------------------------------------------------------------------------


def _f(v: Any, digits: int = 2) -> str:
    """A fixed-point number for narrow columns ("—" for missing)."""
    return "—" if v is None or v != v else f"{v:.{digits}f}"


def _ratio_cells(r: dict[str, Any]) -> list[str]:
    """A control row's paired comparison: the error ratio (its subject's error over this
    arm's, geometric mean over inputs) and its 95% interval; "—" for the model's row."""
    from .reconstruction.paired import fmt_ratio

    nan = float("nan")
    ratio, low, high = (float(r.get(k) or nan) for k in ("err_ratio", "ci_low", "ci_high"))
    if ratio != ratio:
        return ["—", "—"]
    if low != low or high != high:
        return [fmt_ratio(ratio), "—"]
    return [
        fmt_ratio(ratio, low, high),
        f"{fmt_ratio(low, low, high)}–{fmt_ratio(high, low, high)}",
    ]


def layer_breaks(records: list[dict[str, Any]]) -> list[int]:
    """Row indices where a new layer starts (one table row per record): the rules that
    separate layers in the reconstruct and propagate tables."""
    return [i for i in range(1, len(records)) if records[i]["layer"] != records[i - 1]["layer"]]


def reconstruct_table(report: Any) -> Any:
    """Summary of a ReconstructionReport: one row per (layer, arm) with each control's paired
    error ratio and 95% CI (when the report has them), then the verdicts."""
    o = report.options
    records = report.summary_rows()
    paired = any("err_ratio" in r for r in records)
    columns = [
        Col("layer", NAME),
        Col("arm"),
        Col("err", right=True, drop=4),
        Col("scaled", right=True),
        *([Col("ratio", right=True, drop=1), Col("95% CI", right=True, drop=1)] if paired else []),
        Col("s", right=True, drop=5),
        Col("cos", right=True, drop=3),
        Col("J", right=True, drop=1),
        Col("J thr", right=True, drop=6),
        Col("PSNR", right=True, drop=8),
        Col("SSIM", right=True, drop=7),
        Col("top-1", right=True, drop=2),
    ]
    rows, styles, sections = [], [], layer_breaks(records)
    for r in records:
        rows.append(
            [
                r["layer"],
                r["arm"],
                fmt_num(r["rel_err"], 2),
                _f(r["rel_err_scaled"]),
                *(_ratio_cells(r) if paired else []),
                fmt_num(r["scale"], 2),
                _f(r["cosine"]),
                _f(r["jaccard"]),
                _f(r["jaccard_thr"]),
                _f(r["psnr"], 1),
                _f(r["ssim"]),
                _f(r["top1_agree"]),
            ]
        )
        styles.append("bold" if r["arm"] == "model" else "dim")
    table = FitTable(
        columns,
        rows,
        title=Text.assemble(
            "Reverse reconstruction of ",
            report.model,
            f" ({report.num} inputs; gen-scale α {o.get('gen_scale')}, gen-keep ρ "
            f"{o.get('gen_keep')}, unpool {o.get('unpool')})",
        ),
        caption="err = ‖h̃−h‖/‖h‖; scaled = after the best scalar rescale s; ratio = the model's "
        "scaled error over this control's (fresh-random-h: the fresh inits' over their random h), "
        "geometric mean over inputs, with its 95% CI (fresh-init: across the inits); J = Jaccard "
        "of active units (thr: with the theory's threshold b' = −δ‖h‖); PSNR/SSIM are context "
        "only; all in report.md",
        styles=styles,
        sections=sections,
    )
    parts: list[Any] = [table]
    parts += [Para(line) for line in report.headline_text()]
    parts += [Para(f"note: {n}", "yellow") for n in report.notes]
    return Group(*parts)


# --- shadow-train ------------------------------------------------------------------------


def _pct(v: Any) -> str:
    return "—" if v is None or v != v else f"{100 * v:.2f}%"


def _pm(r: dict[str, Any], key: str) -> str:
    return f"{_pct(r[key + '_mean'])} ± {_pct(r[key + '_std'])}"


def _tracking(r: dict[str, Any]) -> str:
    """An arm's tracking r with its interval (a summary read back from an older report.json
    has only ``tracking_r_mean``)."""
    if "tracking_r" not in r:
        return fmt_num(r.get("tracking_r_mean"), 2)
    low, high = r.get("tracking_low"), r.get("tracking_high")
    ci = "" if low is None or low != low else f" ({low:+.2f} to {high:+.2f})"
    return fmt_num(r["tracking_r"], 2) + ci


def shadow_table(report: Any) -> Any:
    """Per-arm summary (mean ± std over seeds), the paired comparisons, and the conclusion."""
    from .shadow.summary import plural  # here: torch is loaded whenever a shadow report exists

    arms = FitTable(
        [
            Col("arm"),
            Col("seeds", right=True, drop=3),
            Col("final test error", right=True),
            Col("mean error over epochs", right=True, drop=2),
            Col("synthetic test error", right=True, drop=1),
            Col("tracking r (95% CI)", right=True, drop=4),
            Col("s/epoch", right=True, drop=5),
        ],
        [
            [
                r["arm"],
                str(r["seeds"]),
                _pm(r, "final_test_error"),
                _pm(r, "mean_test_error"),
                _pm(r, "final_synthetic_test_error"),
                _tracking(r),
                fmt_num(r["train_seconds_per_epoch"], 3),
            ]
            for r in report.summary
        ],
        title=f"netprobe shadow-train: {plural(len(report.seeds), 'seed')} per arm",
    )
    parts: list[Any] = [arms]
    if report.comparisons:
        style = {"helped": "green", "hurt": "red"}
        rows = []
        for x in report.comparisons:
            ci = "—" if x["low"] != x["low"] else f"{100 * x['low']:+.2f} to {100 * x['high']:+.2f}"
            rows.append(
                [
                    x["arm"],
                    x["reference"],
                    x["metric"],
                    f"{100 * x['mean']:+.2f} pts",
                    ci,
                    _styled(x["verdict"], style.get(x["verdict"], "yellow")),
                ]
            )
        parts += [
            Text(""),
            FitTable(
                [
                    Col("arm"),
                    Col("vs", drop=2),
                    Col("metric", NAME),
                    Col("difference", right=True),
                    Col("95% CI", PROSE, drop=1),
                    Col("verdict"),
                ],
                rows,
                title="SHADOW against its reference arm (paired by seed; negative = SHADOW lower)",
            ),
        ]
    parts.append(Para(Text.assemble(("result: ", "bold"), report.conclusion)))
    return Group(*parts)


# --- check -------------------------------------------------------------------------------


def check_table(report: Any) -> Any:
    """One row per (model, rule), the model named on its first row only; a model that could
    not be checked gets one row with its error. ``report``: a CheckReport (or its results)."""
    results = getattr(report, "results", report)
    style = {"pass": "green", "fail": "red", "error": "yellow", "skipped": "dim"}
    rows: list[list[Cell]] = []
    for res in results:
        for k, r in enumerate(res.rules):
            rows.append(
                [
                    "" if k else res.model,
                    r.rule,
                    _styled(r.status, style.get(r.status, "")),
                    fmt_num(r.value),
                    fmt_num(r.threshold),
                    r.message,
                ]
            )
        if not res.rules:
            status = _styled(res.status, style.get(res.status, ""))
            rows.append([res.model, "—", status, "", "", getattr(res, "error", None) or ""])
    return FitTable(
        [
            Col("model", NAME),
            Col("rule"),
            Col("status"),
            Col("value", right=True, drop=2),
            Col("threshold", right=True, drop=3),
            Col("detail", PROSE),
        ],
        rows,
        title="netprobe check",
        sections=[i for i, row in enumerate(rows) if i and row[0]],
    )


# --- propagate ---------------------------------------------------------------------------


def _ci(r: dict[str, Any], key: str, digits: int = 2) -> str:
    lo, hi = r.get(f"{key}_lo"), r.get(f"{key}_hi")
    if lo is None or hi is None or lo != lo or hi != hi:
        return "—"
    return f"[{fmt_num(lo, digits)}, {fmt_num(hi, digits)}]"


def propagate_table(report: Any) -> Any:
    """Summary of a PropagationReport: one row per (layer, source, arm), then the verdicts."""
    columns = [
        Col("layer", NAME),
        Col("source"),
        Col("arm"),
        Col("active", right=True),
        Col("model−init CI", right=True, drop=2),
        Col("dead", right=True, drop=3),
        Col("on", right=True, drop=6),
        Col("√(k/n)", right=True, drop=7),
        Col("cos", right=True, drop=4),
        Col("pred", right=True, drop=5),
        Col("σ_max", right=True, drop=1),
        Col("σ_med", right=True, drop=8),
        Col("sd ln σ", right=True, drop=9),
    ]
    rows, styles, sections = [], [], layer_breaks(report.rows)
    for r in report.rows:
        rows.append(
            [
                r["layer"],
                r["source"],
                r["arm"],
                _f(r["active_frac"]),
                _ci(r, "active_diff") if r["arm"] == "model" else "",
                _pct(r["dead_frac"]),
                _pct(r["always_on_frac"]),
                fmt_num(r["theory_bound"], 2),
                _f(r["cosine"]),
                _f(r["cosine_pred"]),
                fmt_num(r["jac_top"], 3),
                fmt_num(r["jac_median"], 3),
                _f(r["jac_log_spread"]),
            ]
        )
        styles.append("bold" if r["arm"] == "model" else "dim")
    table = FitTable(
        columns,
        rows,
        title=Text.assemble(
            "Propagation through ", report.model, f" ({report.num} inputs per source)"
        ),
        caption="active = k/m (model−init CI: the model's active fraction minus the fresh init's, "
        "95% over inputs); dead / on = units never / always active; √(k/n) = the theorem's error "
        "scale; cos = mean pair cosine at h, pred = arc-cosine prediction (Linear→ReLU chains only); "
        "σ = the input→h Jacobian's singular values (Lanczos); all in report.md",
        styles=styles,
        sections=sections,
    )
    parts: list[Any] = [table]
    parts += [Para(line) for line in report.headline_text()]
    parts += [Para(f"note: {n}", "yellow") for n in report.notes]
    return Group(*parts)
