"""The shadow-train report: :class:`ShadowReport` (the Report surface: ``to_frame``,
``to_dict``, ``to_markdown``, ``headline``, ``write``) and the files it writes: history.csv,
report.json, report.md, the figures and every arm x seed's final model (models/ARM-seedS.pt)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import LoadError
from ..report import OutputDir, as_output_dir
from .generate import ShadowSettings, synthetic_set

if TYPE_CHECKING:
    from .experiment import RunResult
    from .inputs import ExperimentData, ModelSpec

FIGURES = (
    ("Learning curves", "learning_curves.png"),
    ("Synthetic vs real test error", "tracking.png"),
)
GRID_FIGURE = ("Synthetic inputs from each arm's final net", "synthetic_grid.png")


@dataclass
class Trained:
    """What :meth:`ShadowReport.write` needs beyond the numbers: the trained models, the data
    (for the grid of synthetic inputs) and how the models were built."""

    results: list[RunResult]
    data: ExperimentData
    spec: ModelSpec
    settings: ShadowSettings
    grid: int = 10


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%" if v is not None and math.isfinite(v) else "n/a"


def _pts(v: float) -> str:
    return f"{100 * v:+.2f}" if v is not None and math.isfinite(v) else "n/a"


def _num(v: Any) -> float:
    return float(v) if v is not None else math.nan


def _tracking_cell(r: dict[str, Any]) -> str:
    """An arm's tracking: ``0.40 (-0.20 to 0.80): no clear tracking`` (docs/science.md §4.8)."""
    if "tracking" not in r:  # a report.json written before tracking had an interval
        v = _num(r.get("tracking_r_mean"))
        return f"{v:.2f}" if math.isfinite(v) else "n/a"
    v, low, high = _num(r["tracking_r"]), _num(r["tracking_low"]), _num(r["tracking_high"])
    if not math.isfinite(v):
        return str(r["tracking"])
    ci = f" ({low:.2f} to {high:.2f})" if math.isfinite(low) else ""
    return f"{v:.2f}{ci}: {r['tracking']}"


@dataclass
class ShadowReport:
    """Everything ``shadow-train`` reports: the per-epoch history of every arm x seed, per-arm
    summaries, the SHADOW-vs-reference comparisons and the synthetic/real tracking.

    ``complete`` marks a report read back from a finished run folder (``--resume`` of a run
    with nothing left to do): it has no models, and :meth:`write` writes nothing."""

    arms: list[str]
    seeds: list[int]
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    tracking: dict[str, Any]
    conclusion: str
    settings: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None  # the --from model's, else how the model was built
    options: dict[str, Any] = field(default_factory=dict)  # the run's effective options
    complete: bool = False
    run_dir: Path | None = None  # the folder the run checkpointed to
    trained: Trained | None = field(default=None, repr=False, compare=False)

    # --- the Report surface -----------------------------------------------------------

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def summary_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.summary)

    def to_dict(self) -> dict[str, Any]:
        return {
            "conclusion": self.conclusion,
            "arms": self.arms,
            "seeds": self.seeds,
            "summary": self.summary,
            "comparisons": self.comparisons,
            "tracking": self.tracking,
            "settings": self.settings,
            "data": self.data,
            "model": self.model,
            "runs": self.runs,
            "notes": self.notes,
        }

    def headline(self) -> dict[str, Any]:
        """What run.json records beside the options: the conclusion and each comparison's
        verdict and cost."""
        return {
            "conclusion": self.conclusion,
            "verdicts": {
                f"{c['arm']} vs {c['reference']}: {c['metric']}": c["verdict"]
                for c in self.comparisons
            },
            "final_test_error": {s["arm"]: s["final_test_error_mean"] for s in self.summary},
        }

    def figures(self) -> list[tuple[str, str]]:
        """(title, file) of the figures :meth:`write` draws."""
        grid = self.trained is not None and self.trained.grid > 0
        return [*FIGURES, GRID_FIGURE] if grid else list(FIGURES)

    def to_markdown(self, figures: Sequence[tuple[str, str]] = ()) -> str:
        """report.md; ``figures`` (title, file) are linked (:meth:`write` passes its own)."""
        from ..report import markdown_table

        lines = ["# netprobe shadow-train", "", f"**Result.** {self.conclusion}", ""]
        lines += [self._setting_line(), "", "## Per arm (mean ± std over seeds)", ""]
        lines += [markdown_table(self._arm_table()), ""]
        lines += ["## SHADOW against its reference arm (paired by seed)", ""]
        if self.comparisons:
            lines += [markdown_table(self._comparison_table()), ""]
            lines.append(
                "Negative differences mean the SHADOW arm has the lower error. The interval is a "
                "paired t interval over seeds: each seed gives both arms the same initialisation "
                "and data order."
            )
        else:
            lines.append("_No SHADOW arm with its reference arm in this run: nothing to compare._")
        lines += ["", "## Synthetic test error against real test error", ""]
        lines += [self.tracking.get("text", ""), ""]
        for title, name in figures:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += [
            "Files: `history.csv` (one row per arm, seed and epoch), `report.json`, `run.json`, "
            "`models/ARM-seedS.pt` (netprobe checkpoints: a MODEL for `netprobe "
            "layers/randomness/reconstruct`), `checkpoints/` (training states for `--resume`).",
            "",
        ]
        return "\n".join(lines)

    def write(self, output: OutputDir | str | os.PathLike[str]) -> list[str]:
        """history.csv, report.json, report.md, the figures and every arm x seed's final
        model; returns the file names (a path means "write here": the run's own folder, which
        already holds settings.json and checkpoints/, or any other). A ``complete`` report
        writes nothing."""
        if self.complete:
            return []
        out = as_output_dir(output)
        names: list[str] = []
        if self.trained is not None:
            names += self._write_models(out, self.trained)
        names.append("history.csv")
        out.write_csv("history.csv", self.to_frame())
        names += self._write_figures(out)
        out.write_json("report.json", self.to_dict())
        out.write_text("report.md", self.to_markdown(self.figures()))
        return [*names, "report.json", "report.md"]

    # --- reading a finished run back ------------------------------------------------------

    @classmethod
    def read(cls, run_dir: str | os.PathLike[str]) -> ShadowReport:
        """The report of a finished run folder (report.json and history.csv), marked
        ``complete``."""
        import pandas as pd

        path = Path(run_dir)
        try:
            saved = json.loads((path / "report.json").read_text(encoding="utf-8"))
            frame = pd.read_csv(path / "history.csv")
        except (OSError, ValueError) as e:
            raise LoadError(
                f"{path}: cannot read the finished run's report ({str(e).splitlines()[0][:160]})",
                hint="start a fresh run",
            ) from None
        rows = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")
        ]
        # report.json writes NaN as null: the numbers become NaN again
        for rec in [*saved["summary"], *saved["comparisons"]]:
            rec.update({k: math.nan for k, v in rec.items() if v is None and k != "cost_caveat"})
        tr = saved["tracking"]
        tr["pooled_r"] = math.nan if tr.get("pooled_r") is None else tr["pooled_r"]
        tr["per_arm_r"] = {a: math.nan if r is None else r for a, r in tr["per_arm_r"].items()}
        for t in tr.get("per_arm", {}).values():
            t.update({k: math.nan for k, v in t.items() if v is None})
        keys = ("summary", "comparisons", "tracking", "settings", "data", "model", "runs", "notes")
        return cls(
            arms=list(saved["arms"]),
            seeds=[int(s) for s in saved["seeds"]],
            rows=rows,
            conclusion=str(saved["conclusion"]),
            complete=True,
            run_dir=path,
            **{k: saved[k] for k in keys},
        )

    # --- the pieces -----------------------------------------------------------------------

    def _setting_line(self) -> str:
        s, d = self.settings, self.data
        shape = "x".join(map(str, d.get("input_shape", [])))
        epochs = s.get("epochs")
        return (
            f"Data: {d.get('source')}: {d.get('train')} training / {d.get('test')} test examples "
            f"({d.get('split')}), input {shape}. Model: {self.model.get('source')}. "
            f"Arms {', '.join(self.arms)} x seeds {', '.join(map(str, self.seeds))}; "
            f"{epochs} epoch{'' if epochs == 1 else 's'}, batch {s.get('batch_size')}, "
            f"{s.get('optimizer')} lr {s.get('lr')}. SHADOW: {s.get('layer_name')}, ratio "
            f"{s.get('ratio')}, gen-keep {s.get('gen_keep')}, smooth {s.get('smooth')}, unpool "
            f"{s.get('unpool')}, gen-scale {s.get('gen_scale')}, warmup {s.get('warmup')}."
        )

    def _arm_table(self) -> list[dict[str, Any]]:
        def pm(r: dict[str, Any], key: str) -> str:
            return f"{_pct(r[key + '_mean'])} ± {_pct(r[key + '_std'])}"

        return [
            {
                "arm": r["arm"],
                "seeds": r["seeds"],
                "final test error": pm(r, "final_test_error"),
                "mean test error over epochs": pm(r, "mean_test_error"),
                "final synthetic test error": pm(r, "final_synthetic_test_error"),
                "tracking (r, 95% CI)": _tracking_cell(r),
                "train s/epoch": f"{r['train_seconds_per_epoch']:.1f}",
            }
            for r in self.summary
        ]

    def _comparison_table(self) -> list[dict[str, Any]]:
        return [
            {
                "arm": c["arm"],
                "vs": c["reference"],
                "metric": c["metric"],
                "difference (points)": _pts(c["mean"]),
                "95% CI": f"{_pts(c['low'])} to {_pts(c['high'])}",
                "p (paired t)": f"{c['p']:.3f}"
                if c["p"] is not None and math.isfinite(c["p"])
                else "n/a",
                "verdict": c["verdict"],
            }
            for c in self.comparisons
        ]

    def _write_models(self, out: OutputDir, t: Trained) -> list[str]:
        """Every arm x seed's final model as a netprobe checkpoint (a MODEL for the other
        commands), with the dropout its +dropout arm trained with."""
        from ..loading import save_checkpoint
        from .inputs import BUNDLED_SHAPES

        names = []
        for r in t.results:
            name = f"models/{r.arm.slug}-seed{r.seed}.pt"
            kwargs = dict(t.spec.arch_kwargs)
            if t.spec.arch in BUNDLED_SHAPES:
                kwargs["dropout"] = (
                    float(self.settings.get("dropout", 0.0)) if r.arm.dropout else 0.0
                )
            save_checkpoint(
                out.file(name),
                r.model,
                arch=t.spec.arch,
                arch_kwargs=kwargs,
                input_shape=t.spec.input_shape,
                mean=t.data.mean,
                std=t.data.std,
                classes=t.data.classes,
                trained_by="netprobe shadow-train",
                arm=r.arm.name,
                seed=r.seed,
                epochs=len(r.rows),
                test_error=r.rows[-1].get("test_error") if r.rows else None,
            )
            if name not in out.written:
                out.written.append(name)
            names.append(name)
        return names

    def _write_figures(self, out: OutputDir) -> list[str]:
        from .. import plots

        out.write_figure("learning_curves.png", plots.shadow_learning_curves(self.rows, self.arms))
        out.write_figure("tracking.png", plots.shadow_tracking(self.rows, self.arms, self.tracking))
        t = self.trained
        if t is None or t.grid <= 0:
            return [name for _, name in FIGURES]
        real, labels, syn = sample_grid(t.results, t.data, t.settings, t.grid)
        out.write_figure(
            GRID_FIGURE[1], plots.shadow_sample_grid(real, labels, syn, t.data.classes)
        )
        return [name for _, name in (*FIGURES, GRID_FIGURE)]


def sample_grid(
    results: Sequence[RunResult],
    data: ExperimentData,
    settings: ShadowSettings,
    n: int = 10,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Real test inputs (one per class first, then the next ones), their labels, and the x̃ each
    arm's final net (first seed) generates from them, unnormalised for display:
    ((n,C,H,W), (n,), {arm: (n,C,H,W)})."""
    from ..data import unnormalise

    y = data.test.y
    assert y is not None
    picks: list[int] = []
    for c in torch.unique(y).tolist():
        picks.append(int(torch.nonzero(y == c)[0]))
    picks = sorted(picks)[:n]
    picks += [i for i in range(len(y)) if i not in picks][: max(0, n - len(picks))]
    x = data.test.x[picks]  # (n, C, H, W) unnormalised
    xn = data.normalised(x)
    first: dict[str, RunResult] = {}
    for r in results:
        first.setdefault(r.arm.name, r)
    out: dict[str, torch.Tensor] = {}
    for a, r in first.items():
        xt = synthetic_set(r.model, xn, settings, seed)
        out[a] = unnormalise(xt.cpu(), data.mean, data.std)
    return x, y[picks], out
