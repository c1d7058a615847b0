"""Tables and paragraphs that fit the width they are printed at (the terminal's; ``COLUMNS``,
else 80, when output is piped), so that a name or a number is never cut inside a word or a
number and nothing is elided with '…'. A :class:`FitTable` is laid out when printed:

1. names whole, every column, when that fits; else the least important columns are left out
   (the table says which) while the names stay whole;
2. else names fold onto more lines at their dots and slashes (``layer2.0.`` / ``downsample.0``)
   and columns are left out again as needed;
3. else one block per row (the row's name, then ``column: value`` lines).

Prose (verdicts, messages) always wraps between words. Cells given as strings become
:class:`rich.text.Text`, never markup, so names such as ``fc[0]`` or ``[tool.netprobe.check]``
print as they are. netprobe.render builds every command's tables from these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

ATOM, NAME, PROSE = "atom", "name", "prose"
GAP = 2  # cells between two columns (one padding cell and the box's blank divider)

Cell = str | Text | None


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
            if head.plain:  # a blank first cell continues the block above (check's rules)
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
