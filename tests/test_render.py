"""Tables at 80 columns (piped output) and narrower: every name and number prints whole (a
name may fold only at its dots, prose only between words), nothing is elided with '…', no
line is wider than the console, and user-derived text is never read as rich markup."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from rich.cells import cell_len
from rich.console import Console
from torch import nn

from netprobe.loading import ensure_loaded
from netprobe.render import (
    check_table,
    fmt_num,
    layers_table,
    randomness_table,
    reconstruct_table,
    shadow_table,
)

MARKUP = "[bold]"  # would vanish (and embolden the rest) if read as markup


def render(renderable: object, width: int) -> list[str]:
    """What the CLI prints, as lines: the CLI's console options (soft_wrap) at ``width``."""
    console = Console(file=io.StringIO(), width=width, soft_wrap=True, color_system=None)
    console.print(renderable)
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def _allowed_break(value: str, k: int) -> bool:
    """May a line break between value[:k] and value[k:]? After a space or '/', ',', ';', ':',
    or a '.' that is not a decimal point."""
    before, after = value[k - 1], value[k]
    if after == " " or before in "/,;: ":
        return True
    return before == "." and not (value[k - 2 : k - 1].isdigit() and after.isdigit())


def _cell_at(line: str, p: int) -> str:
    """The text of the cell starting at column p (up to two spaces or the end)."""
    m = re.match(r"\S+(?: \S+)*", line[p:])
    return m.group() if m else ""


def appears_whole(value: str, lines: list[str], atom: bool) -> bool:
    """``value`` is printed on one line (atoms must be), or folded over consecutive lines at
    one column position, breaking only where :func:`_allowed_break` allows."""
    for i, line in enumerate(lines):
        for p in range(len(line)):
            if p and line[p - 1] != " ":
                continue
            got = _cell_at(line, p)
            if got == value or (
                got.startswith(value) and got[len(value) : len(value) + 1] in ("", " ")
            ):
                return True
            if atom or not got or not value.startswith(got) or not _allowed_break(value, len(got)):
                continue
            acc, j = got, i + 1
            while j < len(lines) and acc != value:
                if value[len(acc)] == " ":
                    acc += " "
                seg = (
                    _cell_at(lines[j], p)
                    if len(lines[j]) > p and lines[j][p - 1 : p] in ("", " ")
                    else ""
                )
                if not seg or not value[len(acc) :].startswith(seg):
                    break
                acc += seg
                if acc != value and not _allowed_break(value, len(acc)):
                    break
                j += 1
            if acc == value:
                return True
    return False


def left_out(lines: list[str]) -> list[str]:
    text = " ".join(line.strip() for line in lines)
    return [
        name.strip()
        for m in re.finditer(r"left out at width \d+: (.*?) \(all columns", text)
        for name in m.group(1).split(", ")
    ]


def check_table_output(
    lines: list[str], width: int, columns: dict[str, list[str]], atoms: set[str], always: set[str]
) -> None:
    assert lines, "nothing printed"
    assert not any("…" in line for line in lines), "\n".join(lines)
    assert all(cell_len(line) <= width for line in lines), "\n".join(lines)
    dropped = left_out(lines)
    assert not always & set(dropped), dropped
    for header, values in columns.items():
        if header in dropped:
            continue
        for v in values:
            if v and v != "—":
                assert appears_whole(v, lines, header in atoms), (header, v, "\n".join(lines))


# --- the models and reports ----------------------------------------------------------------


class Deep(nn.Module):
    """Long dotted names, a module called [bold], and a ReLU so there are hidden layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(24, 48), nn.ReLU())
        self.layer2 = nn.ModuleList(
            [nn.ModuleDict({"downsample": nn.Sequential(nn.Linear(48, 40))})]
        )
        self.add_module(MARKUP, nn.Linear(40, 36))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(36, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2[0]["downsample"](self.features(x))
        return self.classifier(getattr(self, MARKUP)(x))


def _model() -> object:
    torch.manual_seed(0)
    lm = ensure_loaded(Deep(), input_shape=(24,))
    lm.spec = f"runs/{MARKUP}model[0].pt"
    return lm


WIDTHS = [80, 60, 40, 24]


@pytest.mark.parametrize("width", WIDTHS)
def test_layers_table_fits(width: int) -> None:
    from netprobe.listing import layers

    info = layers(_model())
    lines = render(layers_table(info), width)
    names = [w.name for w in info.weight]
    assert f"{MARKUP}.weight" in names
    check_table_output(
        lines,
        width,
        {
            "layer": names,
            "module": [w.module_path for w in info.weight],
            "matrix": ["x".join(map(str, w.matrix_shape)) for w in info.weight],
            "params": [fmt_num(w.params) for w in info.weight],
            "units": [fmt_num(h.size) for h in info.hidden],
        },
        atoms={"matrix", "params", "units"},
        always={"layer", "matrix"},
    )
    assert appears_whole(f"Weight layers of runs/{MARKUP}model[0].pt", lines, atom=False)


@pytest.mark.parametrize("width", WIDTHS)
def test_randomness_table_fits(width: int) -> None:
    from netprobe.iid import analyse

    report = analyse(_model(), seed=0)
    analysed = [x for x in report.layers if x.analysed]
    assert analysed
    lines = render(randomness_table(report), width)
    check_table_output(
        lines,
        width,
        {
            "layer": [x.name for x in analysed],
            "shape": ["x".join(map(str, x.matrix_shape)) for x in analysed],
            "std": [fmt_num(x.entries.std, 2) for x in analysed],
            "kurt": [fmt_num(x.entries.kurtosis, 2) for x in analysed],
            "entry KS": [fmt_num(x.entries.ks, 2) for x in analysed],
            "MP KS": [fmt_num(x.spectrum.ks, 2) for x in analysed if x.spectrum],
            "verdict": [x.verdict for x in analysed],
        },
        atoms={"shape", "std", "kurt", "entry KS", "MP KS"},
        always={"layer", "verdict"},
    )
    assert appears_whole(f"Random-like weights: runs/{MARKUP}model[0].pt", lines, atom=False)
    assert appears_whole(report.summary, [" ".join(line.strip() for line in lines)], atom=False)


def _reconstruction() -> SimpleNamespace:
    """The fields reconstruct_table reads from a ReconstructionReport."""
    rows = []
    for layer in ("h1", f"h2{MARKUP}"):
        for arm, err in (("model", 0.0123456), ("fresh-init", 5.1e-05), ("random-h", -0.00123)):
            rows.append(
                {
                    "layer": layer,
                    "arm": arm,
                    "rel_err": err,
                    "rel_err_scaled": 0.4567,
                    "scale": 12345.6,
                    "cosine": 0.9876,
                    "jaccard": 0.5,
                    "jaccard_thr": float("nan"),
                    "psnr": 23.45,
                    "ssim": 0.812,
                    "top1_agree": 1.0,
                }
            )
    return SimpleNamespace(
        model=f"classifier.{MARKUP}.pt",
        num=64,
        options={"alpha": 0.5, "keep": 0.3, "unpool": "argmax"},
        to_frame=lambda: pd.DataFrame(rows),
        summary_rows=lambda: [dict(r) for r in rows],
        headline_text=lambda: [f"h1: {MARKUP} better than random h"],
        notes=["[red]no[/red] data"],
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_reconstruct_table_fits(width: int) -> None:
    report = _reconstruction()
    lines = render(reconstruct_table(report), width)
    frame = report.to_frame()
    check_table_output(
        lines,
        width,
        {
            "layer": list(frame["layer"]),
            "arm": list(frame["arm"]),
            "err": [fmt_num(v, 2) for v in frame["rel_err"]],
            "s": [fmt_num(v, 2) for v in frame["scale"]],
            "PSNR": ["23.4"],
        },
        atoms={"arm", "err", "s", "PSNR"},
        always={"layer", "arm"},
    )
    flat = [" ".join(line.strip() for line in lines)]
    assert appears_whole(f"h1: {MARKUP} better than random h", flat, atom=False)
    assert "note: [red]no[/red] data" in flat[0]


def _shadow() -> SimpleNamespace:
    """The fields shadow_table reads from a ShadowReport."""
    summary = [
        {
            "arm": arm,
            "seeds": 3,
            "final_test_error_mean": 0.0123,
            "final_test_error_std": 0.0011,
            "mean_test_error_mean": 0.0234,
            "mean_test_error_std": 0.002,
            "final_synthetic_test_error_mean": 0.0345,
            "final_synthetic_test_error_std": 0.003,
            "tracking_r_mean": 0.91,
            "train_seconds_per_epoch": 1.234,
        }
        for arm in ("baseline", "shadow+dropout")
    ]
    comparisons = [
        {
            "arm": "shadow+dropout",
            "reference": "baseline",
            "metric": "final_test_error",
            "mean": -0.0012,
            "low": -0.003,
            "high": 0.0004,
            "verdict": "no difference",
        }
    ]
    return SimpleNamespace(
        seeds=[0, 1, 2],
        summary=summary,
        comparisons=comparisons,
        conclusion=f"{MARKUP}SHADOW did not help",
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_shadow_table_fits(width: int) -> None:
    lines = render(shadow_table(_shadow()), width)
    check_table_output(
        lines,
        width,
        {
            "arm": ["baseline", "shadow+dropout"],
            "final test error": ["1.23% ± 0.11%"],
            "mean error over epochs": ["2.34% ± 0.20%"],
            "difference": ["-0.12 pts"],
            "95% CI": ["-0.30 to +0.04"],
            "verdict": ["no difference"],
        },
        atoms={"arm", "final test error", "mean error over epochs", "difference"},
        always={"arm", "final test error"},
    )
    assert f"result: {MARKUP}SHADOW did not help" in " ".join(line.strip() for line in lines)


def _check() -> list[SimpleNamespace]:
    """The fields check_table reads from zoo's ModelResult / RuleResult."""
    rule = SimpleNamespace
    return [
        SimpleNamespace(
            model="models/[tool.netprobe.check]/resnet18-finetuned.pt",
            status="fail",
            error=None,
            rules=(
                rule(
                    rule="random_like_fraction",
                    status="fail",
                    value=0.125,
                    threshold=0.5,
                    message="1 of 8 weight matrices random-like (layer4.1.conv2.weight worst)",
                ),
                rule(
                    rule="max_kurtosis",
                    status="pass",
                    value=12345.678,
                    threshold=5.1e-05,
                    message="",
                ),
            ),
        ),
        SimpleNamespace(
            model="models/broken.pt",
            status="error",
            rules=(),
            error="models/broken.pt: not a model file: it looks like a PNG image",
        ),
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_check_table_fits(width: int) -> None:
    lines = render(check_table(_check()), width)
    check_table_output(
        lines,
        width,
        {
            "model": ["models/[tool.netprobe.check]/resnet18-finetuned.pt", "models/broken.pt"],
            "rule": ["random_like_fraction", "max_kurtosis"],
            "status": ["fail", "pass", "error"],
            "value": ["0.125", "1.23e+04"],
            "threshold": ["0.5", "5.10e-05"],
            "detail": [
                "1 of 8 weight matrices random-like (layer4.1.conv2.weight worst)",
                "models/broken.pt: not a model file: it looks like a PNG image",
            ],
        },
        atoms={"rule", "status", "value", "threshold"},
        always={"model", "rule", "status", "detail"},
    )


def test_wide_enough_keeps_every_column_and_whole_names() -> None:
    lines = render(check_table(_check()), 200)
    assert not left_out(lines)
    assert any("models/[tool.netprobe.check]/resnet18-finetuned.pt" in line for line in lines)


def test_narrow_falls_back_to_one_block_per_row() -> None:
    lines = render(check_table(_check()), 24)
    assert any(line.startswith("  rule: ") or line.strip() == "rule:" for line in lines), "\n".join(
        lines
    )


def test_figures_print_dollar_names_literally() -> None:
    """A '$' in a model or layer name used to start matplotlib mathtext: "$x_{1" failed the
    whole figure with a ParseSyntaxException. Names are escaped and print as they are."""
    from netprobe.iid import analyse
    from netprobe.plots import randomness_layer_grid, randomness_summary

    net = nn.Sequential()
    net.add_module("w$x_{1", nn.Linear(32, 24))
    net.add_module("relu", nn.ReLU())
    net.add_module("out", nn.Linear(24, 8))
    lm = ensure_loaded(net, input_shape=(32,))
    lm.spec = "runs/$x_{1.pt"
    report = analyse(lm, seed=0)
    figs = [
        randomness_summary(report),
        randomness_layer_grid(report.analysed, None, title=f"{report.model}: $\\frac"),
    ]
    for fig in figs:
        fig.savefig(io.BytesIO(), format="png", dpi=30)  # mathtext errors surface here
    for fig in figs:
        texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
        assert any("w\\$x_{1" in t for t in texts)


def test_summary_figure_axes_label_what_they_show() -> None:
    """The summary's -log10 p axis is linear while every value is small (symlog left it
    with one tick, 0, and a top label like 1.86706x10^0), its kurtosis axis always shows
    0 (layers all near -1.2 had no tick), its p-value legend names the verdict's tests
    only, and a p-value that underflowed reads "< 1e-300" in a layer page's title."""
    import dataclasses
    import math

    from netprobe.iid import TESTS, analyse
    from netprobe.plots import randomness_layer_grid, randomness_summary

    g = torch.Generator().manual_seed(5)
    net = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 40))
    with torch.no_grad():
        for m in (net[0], net[2]):  # uniform entries: excess kurtosis -1.2
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) - 0.5)
    report = analyse(ensure_loaded(net, input_shape=(64,)), seed=0)
    fig = randomness_summary(report)
    fig.savefig(io.BytesIO(), format="png", dpi=30)
    ax_p, ax_e = fig.axes[0], fig.axes[1]
    top = max(-math.log10(max(p, 1e-300)) for x in report.analysed for p in x.pvalues.values())
    if top < 6:
        assert ax_p.get_yscale() == "linear"
    assert set(ax_p.get_legend_handles_labels()[1][:-1]) == set(TESTS)
    lo, hi = ax_e.get_ylim()
    assert lo <= -1.5 and hi >= 1.5
    layer = report.analysed[0]
    assert layer.entries is not None
    zero = dataclasses.replace(layer, entries=dataclasses.replace(layer.entries, ks_p=0.0))
    page = randomness_layer_grid([zero], None)
    titles = [ax.get_title() for ax in page.axes]
    assert any("(p < 1e-300)" in t for t in titles)
