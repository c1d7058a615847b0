"""Rich renderables built from result objects: the only library module that imports rich.

Every table is a :class:`FitTable`, laid out for the width it is printed at (the terminal's;
``COLUMNS``, else 80, when output is piped), so that a name or a number is never cut inside a
word or a number and nothing is elided with '…':

1. names whole, every column, when that fits; else the least important columns are left out
   (the table says which) while the names stay whole;
2. else names fold onto more lines at their dots and slashes (``layer2.0.`` / ``downsample.0``)
   and columns are left out again as needed;
3. else one block per row (the row's name, then ``column: value`` lines).

Prose (verdicts, messages) always wraps between words. Every user-derived string (model,
layer and file names, messages) becomes a :class:`rich.text.Text`, never markup, so names
such as ``fc[0]`` or ``[tool.netprobe.check]`` print as they are. See docs/design.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .listing import ModelLayers

ATOM, NAME, PROSE = "atom", "name", "prose"
GAP = 2  # cells between two columns (one padding cell and the box's blank divider)

Cell = str | Text | None


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


# --- text that folds only where it may ---------------------------------------------------


def _text(cell: Cell, style: str = "") -> Text:
    """A cell as Text. Strings are never parsed as markup: names print as they are."""
    if cell is None:
        return Text("—", style=style)
    if isinstance(cell, Text):
        return cell.copy()
    return Text(str(cell), style=style)


def _breaks(s: str) -> list[int]:
    """Offsets a line may break at: after a space, '/', ',', ';' or ':', and after a '.'
    that is not a decimal point, so names fold at their dots and numbers never break."""
    out = []
    for i in range(len(s) - 1):
        ch = s[i]
        decimal = ch == "." and s[i - 1 : i].isdigit() and s[i + 1].isdigit()
        if ch in " /,;:" or (ch == "." and not decimal):
            out.append(i + 1)
    return out


def _longest_piece(s: str) -> int:
    """The widest part of ``s`` that can never be broken (its minimum column width)."""
    widest = 0
    for line in s.split("\n"):
        cuts = [0, *_breaks(line), len(line)]
        for a, b in zip(cuts, cuts[1:], strict=False):
            widest = max(widest, cell_len(line[a:b].rstrip()))
    return widest


def _widest_line(s: str) -> int:
    return max((cell_len(line) for line in s.split("\n")), default=0)


def wrap(text: Text, width: int) -> Text:
    """``text`` folded into lines of at most ``width`` cells at its break points only; a
    piece wider than ``width`` keeps a line of its own, whole."""
    lines: list[Text] = []
    for line in text.split("\n", allow_blank=True):
        s = line.plain
        cuts: list[int] = []
        start = last = 0
        for b in [*_breaks(s), len(s)]:
            if cell_len(s[start:b].rstrip()) > width and last > start:
                cuts.append(last)
                start = last
            last = b
        for part in line.divide(cuts):
            part.rstrip()
            lines.append(part)
    return Text("\n").join(lines)


class Para:
    """A paragraph wrapped at its break points for the width it is printed at."""

    def __init__(self, text: Cell, style: str = "") -> None:
        self.text = _text(text, style)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield wrap(self.text, max(options.max_width, 1))


# --- tables that fit ---------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """A table column. ``kind``: ``atom`` is never broken (numbers, shapes, statuses);
    ``name`` folds at dots and slashes only when whole names do not fit; ``prose`` wraps
    between words. ``drop``: 0 = always shown; otherwise columns are left out highest first
    when the table does not fit."""

    header: str
    kind: str = ATOM
    right: bool = False
    drop: int = 0


class FitTable:
    """Rows of cells under :class:`Col` columns, laid out when printed (module docstring)."""

    def __init__(
        self,
        columns: Sequence[Col],
        rows: Iterable[Sequence[Cell]],
        *,
        title: Cell = None,
        caption: Cell = None,
        styles: Sequence[str] | None = None,
        sections: Iterable[int] = (),
    ) -> None:
        self.columns = list(columns)
        self.rows = [[_text(c) for c in row] for row in rows]
        self.title = None if title is None else _text(title, "bold")
        self.caption = None if caption is None else _text(caption, "dim")
        self.styles = list(styles) if styles is not None else [""] * len(self.rows)
        self.sections = set(sections)  # row indices that start a new section

    def widths(self, i: int, fold: bool) -> tuple[int, int]:
        """(minimum, natural) width of column ``i``; names are unbreakable unless ``fold``."""
        col = self.columns[i]
        cells = [row[i].plain for row in self.rows]
        whole = col.kind == ATOM or (col.kind == NAME and not fold)
        least = [_widest_line(c) if whole else _longest_piece(c) for c in cells]
        header_min = max((cell_len(w) for w in col.header.split()), default=0)
        natural = max([cell_len(col.header), *(_widest_line(c) for c in cells)])
        return max([header_min, *least]), natural

    def layout(self, width: int) -> tuple[list[int], list[int]] | None:
        """(shown columns, their widths) for ``width`` cells, or None: use the row blocks."""
        n = len(self.columns)
        for fold in (False, True):
            need = [self.widths(i, fold) for i in range(n)]
            shown = list(range(n))
            while sum(need[i][0] for i in shown) + GAP * (len(shown) - 1) > width:
                droppable = [i for i in shown if self.columns[i].drop > 0]
                if not droppable:
                    break
                shown.remove(max(droppable, key=lambda i: (self.columns[i].drop, i)))
            spare = width - sum(need[i][0] for i in shown) - GAP * (len(shown) - 1)
            if spare >= 0:
                return shown, self._spread([need[i] for i in shown], spare)
        return None

    @staticmethod
    def _spread(need: list[tuple[int, int]], spare: int) -> list[int]:
        """Minimum widths, then the spare cells one at a time to the column furthest from its
        natural width."""
        w = [lo for lo, _ in need]
        while spare > 0:
            short = [(nat - w[k], k) for k, (_, nat) in enumerate(need) if nat > w[k]]
            if not short:
                break
            w[max(short)[1]] += 1
            spare -= 1
        return w

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width, 10)
        if self.title is not None:
            yield wrap(self.title, width)
        fitted = self.layout(width)
        if fitted is None:
            yield from self._blocks(width)
        else:
            shown, widths = fitted
            yield self._table(shown, widths)
            left_out = [c.header for i, c in enumerate(self.columns) if i not in shown]
            if left_out:
                note = (
                    f"left out at width {width}: {', '.join(left_out)} (all columns: --format csv)"
                )
                yield wrap(Text(note, style="dim"), width)
        if self.caption is not None:
            yield wrap(self.caption, width)

    def _table(self, shown: list[int], widths: list[int]) -> Table:
        t = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
            header_style="bold",
        )
        for i, w in zip(shown, widths, strict=True):
            col = self.columns[i]
            t.add_column(
                wrap(Text(col.header), w),
                justify="right" if col.right else "left",
                width=w,
                overflow="fold",  # never "…"; the layout leaves nothing to fold mid-word
            )
        for r, row in enumerate(self.rows):
            if r in self.sections and r:
                t.add_section()
            cells = [
                row[i] if self.columns[i].kind == ATOM else wrap(row[i], w)
                for i, w in zip(shown, widths, strict=True)
            ]
            t.add_row(*cells, style=self.styles[r] or None)
        return t

    def _blocks(self, width: int) -> Iterable[Text]:
        """One block per row: its first cell, then an indented ``column: value`` per line."""
        for r, row in enumerate(self.rows):
            head = row[0].copy()
            head.stylize(self.styles[r] or "bold")
            yield wrap(head, width)
            for col, cell in zip(self.columns[1:], row[1:], strict=False):
                if cell.plain:
                    yield _labelled(col.header, cell, width, col.kind == ATOM)


def _labelled(label: str, value: Text, width: int, atom: bool) -> Text:
    """``  label: value`` with the value's lines aligned after the label, or the value
    indented below the label when it does not fit beside it. Atoms are never wrapped."""
    head = f"  {label}: "
    room = width - cell_len(head)
    need = _widest_line(value.plain) if atom else _longest_piece(value.plain)
    if room >= 12 and need <= room:
        lines = [value] if atom else wrap(value, room).split("\n", allow_blank=True)
        out = [Text(" " * cell_len(head)).append_text(v) for v in lines]
        out[0] = Text(head, style="dim").append_text(lines[0])
        return Text("\n").join(out)
    below = [value] if atom else wrap(value, max(width - 4, 1)).split("\n", allow_blank=True)
    label_lines = wrap(Text(head.rstrip(), style="dim"), width)
    return Text("\n").join([label_lines, *(Text("    ").append_text(v) for v in below)])


def _styled(value: str, style: str) -> Text:
    return Text(value, style=style)


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


def reconstruct_table(report: Any) -> Any:
    """Summary of a ReconstructionReport: one row per (layer, arm), then the headline."""
    o = report.options
    columns = [
        Col("layer", NAME),
        Col("arm"),
        Col("err", right=True, drop=4),
        Col("scaled", right=True),
        Col("s", right=True, drop=5),
        Col("cos", right=True, drop=3),
        Col("J", right=True, drop=1),
        Col("J thr", right=True, drop=6),
        Col("PSNR", right=True, drop=8),
        Col("SSIM", right=True, drop=7),
        Col("top-1", right=True, drop=2),
    ]
    rows, styles, sections = [], [], []
    last = None
    for r in report.to_frame().to_dict(orient="records"):
        if last is not None and r["layer"] != last:
            sections.append(len(rows))
        last = r["layer"]
        rows.append(
            [
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
            ]
        )
        styles.append("bold" if r["arm"] == "model" else "dim")
    table = FitTable(
        columns,
        rows,
        title=Text.assemble(
            "Reverse reconstruction of ",
            report.model,
            f" ({report.num} inputs; α {o.get('alpha')}, ρ {o.get('keep')}, unpool {o.get('unpool')})",
        ),
        caption="err = ‖h̃−h‖/‖h‖; scaled = after the best scalar rescale s; J = Jaccard of active "
        "units (thr: with the theory's threshold b' = −δ‖h‖); PSNR/SSIM are context only; all in "
        "report.md",
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


def shadow_table(report: Any) -> Any:
    """Per-arm summary (mean ± std over seeds), the paired comparisons, and the conclusion."""
    arms = FitTable(
        [
            Col("arm"),
            Col("seeds", right=True, drop=3),
            Col("final test error", right=True),
            Col("mean error over epochs", right=True, drop=2),
            Col("synthetic test error", right=True, drop=1),
            Col("tracking r", right=True, drop=4),
            Col("s/epoch", right=True, drop=5),
        ],
        [
            [
                r["arm"],
                str(r["seeds"]),
                _pm(r, "final_test_error"),
                _pm(r, "mean_test_error"),
                _pm(r, "final_synthetic_test_error"),
                fmt_num(r["tracking_r_mean"], 2),
                fmt_num(r["train_seconds_per_epoch"], 3),
            ]
            for r in report.summary
        ],
        title=f"netprobe shadow-train: {len(report.seeds)} seed(s) per arm",
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


def check_table(results: list[Any]) -> Any:
    """One row per (model, rule); a model that could not be checked gets one row with its
    error."""
    style = {"pass": "green", "fail": "red", "error": "yellow", "skipped": "dim"}
    rows: list[list[Cell]] = []
    for res in results:
        for r in res.rules:
            rows.append(
                [
                    res.model,
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
    )
