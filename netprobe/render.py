"""Rich renderables built from result objects: the only library module that imports rich.

Each command has its own section; the CLI prints what these functions return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from .inspect import ModelLayers


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != v:  # NaN
            return "—"
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:,.{digits}g}" if abs(v) >= 1e4 else f"{v:.{digits}g}"
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
        w.add_row(wl.name, wl.module_path, wl.kind, "x".join(map(str, wl.matrix_shape)), fmt_num(wl.params))
    h = Table(title=f"Hidden layers (input {shape})", title_justify="left")
    for col in ("h", "module", "op", "shape", "units"):
        h.add_column(col, justify="right" if col == "units" else "left")
    for hl in info.hidden:
        h.add_row(hl.name, hl.where, hl.op, "x".join(map(str, hl.shape)), fmt_num(hl.size))
    parts: list[Any] = [w]
    if info.hidden:
        parts.append(h)
    return Group(*parts)


# --- randomness (section owned by the randomness work) -----------------------------------

# <<randomness-render>>

# --- reconstruct (section owned by the reconstruct work) ---------------------------------

# <<reconstruct-render>>

# --- shadow-train (section owned by the shadow-train work) -------------------------------

# <<shadow-train-render>>

# --- check (section owned by the check work) ---------------------------------------------

def check_table(results: list[Any]) -> Any:
    style = {"pass": "green", "fail": "red", "error": "yellow", "skipped": "dim"}
    t = Table(title="netprobe check", title_justify="left")
    for col in ("model", "rule", "status", "value", "threshold", "detail"):
        t.add_column(col, justify="right" if col in ("value", "threshold") else "left",
                     overflow="fold" if col in ("model", "detail") else "ellipsis")
    for res in results:
        for r in res.rules:
            s = style.get(r.status, "")
            t.add_row(res.model, r.rule, f"[{s}]{r.status}[/{s}]", fmt_num(r.value), fmt_num(r.threshold), r.message)
    return t


# <<check-render>>
