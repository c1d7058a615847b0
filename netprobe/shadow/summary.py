"""What a SHADOW experiment shows: per-arm statistics over seeds, paired SHADOW-vs-reference
differences with t confidence intervals, the synthetic/real tracking correlation, a plain
conclusion (:func:`summarise` -> :class:`ShadowReport`), and the output files."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .experiment import BUNDLED_SHAPES, Arm, ExperimentData, ModelSpec, RunResult
from .generate import ShadowSettings, synthetic_set

if TYPE_CHECKING:
    from ..report import OutputDir


def _mean_std(vals: Sequence[float]) -> tuple[float, float]:
    v = [float(x) for x in vals if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def pearson(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Pearson correlation of two curves; NaN with fewer than 3 points or a flat curve."""
    pts = [
        (float(x), float(y)) for x, y in zip(a, b, strict=True) if x is not None and y is not None
    ]
    if len(pts) < 3:
        return float("nan")
    ma = sum(p[0] for p in pts) / len(pts)
    mb = sum(p[1] for p in pts) / len(pts)
    sab = sum((x - ma) * (y - mb) for x, y in pts)
    saa = sum((x - ma) ** 2 for x, _ in pts)
    sbb = sum((y - mb) ** 2 for _, y in pts)
    if saa <= 0 or sbb <= 0:
        return float("nan")
    return sab / math.sqrt(saa * sbb)


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> dict[str, float]:
    """Mean of a_i − b_i over paired seeds with a two-sided t confidence interval and the paired
    t-test p-value (NaN with one pair; zero spread gives a zero-width interval)."""
    # Student t CDF and quantile (scipy.stats imports slowly)
    from scipy.special import stdtr, stdtrit

    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n if n else float("nan")
    out = {
        "n": float(n),
        "mean": mean,
        "low": float("nan"),
        "high": float("nan"),
        "p": float("nan"),
        "sd": float("nan"),
    }
    if n >= 2:
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        half = float(stdtrit(n - 1, 0.5 + level / 2)) * sd / math.sqrt(n)
        out.update(sd=sd, low=mean - half, high=mean + half)
        if sd > 0:
            out["p"] = float(2 * stdtr(n - 1, -abs(mean / (sd / math.sqrt(n)))))
        else:
            out["p"] = 1.0 if mean == 0 else 0.0
    return out


def _pts(v: float) -> str:
    """An error difference in percentage points, signed."""
    return f"{100 * v:+.2f}" if math.isfinite(v) else "n/a"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%" if math.isfinite(v) else "n/a"


def _tracks(r: float) -> str:
    """Words for a tracking correlation."""
    if r >= 0.7:
        return "tracks"
    if r >= 0.3:
        return "tracks weakly"
    return "does not track"


def _verdict(d: Mapping[str, float], what: str) -> str:
    """helped / hurt / no clear difference, from where the CI lies."""
    if int(d["n"]) < 2:
        return f"cannot tell from one seed ({what} difference {_pts(d['mean'])} points)"
    if d["high"] < 0:
        return "helped"
    if d["low"] > 0:
        return "hurt"
    return "no clear difference"


@dataclass
class ShadowReport:
    """Everything ``shadow-train`` reports: the per-epoch history of every arm x seed, per-arm
    summaries, the SHADOW-vs-reference comparisons and the synthetic/real tracking."""

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

    def to_markdown(self, figures: Sequence[tuple[str, str]] = ()) -> str:
        from ..report import markdown_table

        s = self.settings
        lines = ["# netprobe shadow-train", "", f"**Result.** {self.conclusion}", ""]
        lines += [
            f"Data: {self.data.get('source')}: {self.data.get('train')} training / {self.data.get('test')} test examples "
            f"({self.data.get('split')}), input {'x'.join(map(str, self.data.get('input_shape', [])))}. "
            f"Model: {self.model.get('source')}. Arms {', '.join(self.arms)} x seeds {', '.join(map(str, self.seeds))}; "
            f"{s.get('epochs')} epochs, batch {s.get('batch_size')}, {s.get('optimizer')} lr {s.get('lr')}. "
            f"SHADOW: {s.get('layer_name')}, ratio {s.get('ratio')}, gen-keep {s.get('gen_keep')}, smooth {s.get('smooth')}, "
            f"unpool {s.get('unpool')}, gen-scale {s.get('gen_scale')}, warmup {s.get('warmup')}.",
            "",
            "## Per arm (mean ± std over seeds)",
            "",
        ]
        cols = [
            "arm",
            "seeds",
            "final test error",
            "mean test error over epochs",
            "final synthetic test error",
            "tracking r",
            "train s/epoch",
        ]
        table = [
            {
                "arm": r["arm"],
                "seeds": r["seeds"],
                "final test error": f"{_pct(r['final_test_error_mean'])} ± {_pct(r['final_test_error_std'])}",
                "mean test error over epochs": f"{_pct(r['mean_test_error_mean'])} ± {_pct(r['mean_test_error_std'])}",
                "final synthetic test error": f"{_pct(r['final_synthetic_test_error_mean'])} ± {_pct(r['final_synthetic_test_error_std'])}",
                "tracking r": f"{r['tracking_r_mean']:.2f}"
                if math.isfinite(r["tracking_r_mean"])
                else "n/a",
                "train s/epoch": f"{r['train_seconds_per_epoch']:.1f}",
            }
            for r in self.summary
        ]
        lines += [
            markdown_table(table, cols),
            "## SHADOW against its reference arm (paired by seed)",
            "",
        ]
        if self.comparisons:
            ctab = [
                {
                    "arm": c["arm"],
                    "vs": c["reference"],
                    "metric": c["metric"],
                    "difference (points)": _pts(c["mean"]),
                    "95% CI": f"{_pts(c['low'])} to {_pts(c['high'])}",
                    "p (paired t)": f"{c['p']:.3f}" if math.isfinite(c["p"]) else "n/a",
                    "verdict": c["verdict"],
                }
                for c in self.comparisons
            ]
            lines += [markdown_table(ctab), ""]
            lines.append(
                "Negative differences mean the SHADOW arm has the lower error. The interval is a paired "
                "t interval over seeds (each seed gives both arms the same initialisation and data order)."
            )
        else:
            lines.append("_No SHADOW arm with its reference arm in this run: nothing to compare._")
        lines += [
            "",
            "## Synthetic test error against real test error",
            "",
            self.tracking.get("text", ""),
            "",
        ]
        for title, name in figures:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += [
            "Files: `history.csv` (one row per arm, seed and epoch), `report.json`, `run.json`, "
            "`models/ARM-seedS.pt` (netprobe checkpoints: a MODEL for `netprobe layers/randomness/reconstruct`), "
            "`checkpoints/` (training states for `--resume`).",
            "",
        ]
        return "\n".join(lines)


def summarise(
    results: Sequence[RunResult],
    *,
    settings: Mapping[str, Any],
    data: Mapping[str, Any],
    model: Mapping[str, Any],
) -> ShadowReport:
    """Per-arm means, SHADOW-vs-reference paired differences, tracking correlations, and a
    plain conclusion."""
    arms = list(dict.fromkeys(r.arm.name for r in results))
    seeds = list(dict.fromkeys(r.seed for r in results))
    by = {(r.arm.name, r.seed): r for r in results}
    rows = [row for r in results for row in r.rows]

    def final(r: RunResult, key: str) -> float:
        v = r.rows[-1].get(key) if r.rows else None
        return float(v) if v is not None else float("nan")

    def mean_over_epochs(r: RunResult, key: str) -> float:
        v = [float(x[key]) for x in r.rows if x.get(key) is not None]
        return sum(v) / len(v) if v else float("nan")

    summary: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    all_real: list[float] = []
    all_syn: list[float] = []
    for a in arms:
        rs = [by[(a, s)] for s in seeds if (a, s) in by]
        rvals = []
        for r in rs:
            real = [x.get("test_error") for x in r.rows]
            syn = [x.get("synthetic_test_error") for x in r.rows]
            rr = pearson(real, syn)
            rvals.append(rr)
            all_real += [float(v) for v in real if v is not None]
            all_syn += [float(v) for v in syn if v is not None]
            runs.append(
                {
                    "arm": a,
                    "seed": r.seed,
                    "epochs": len(r.rows),
                    "final_test_error": final(r, "test_error"),
                    "final_synthetic_test_error": final(r, "synthetic_test_error"),
                    "final_train_loss": final(r, "train_loss"),
                    "mean_test_error": mean_over_epochs(r, "test_error"),
                    "tracking_r": rr,
                    "train_seconds": sum(float(x.get("seconds", 0.0)) for x in r.rows),
                    "generation_seconds": r.generation_seconds,
                    "dropout": r.dropout,
                    "resumed_from_epoch": r.resumed_from[0] if r.resumed_from else None,
                }
            )
        fe = _mean_std([final(r, "test_error") for r in rs])
        me = _mean_std([mean_over_epochs(r, "test_error") for r in rs])
        se = _mean_std([final(r, "synthetic_test_error") for r in rs])
        tl = _mean_std([final(r, "train_loss") for r in rs])
        rm = _mean_std(rvals)
        secs = [float(x.get("seconds", 0.0)) for r in rs for x in r.rows]
        summary.append(
            {
                "arm": a,
                "seeds": len(rs),
                "final_test_error_mean": fe[0],
                "final_test_error_std": fe[1],
                "mean_test_error_mean": me[0],
                "mean_test_error_std": me[1],
                "final_synthetic_test_error_mean": se[0],
                "final_synthetic_test_error_std": se[1],
                "final_train_loss_mean": tl[0],
                "final_train_loss_std": tl[1],
                "tracking_r_mean": rm[0],
                "tracking_r_std": rm[1],
                "train_seconds_per_epoch": sum(secs) / len(secs) if secs else float("nan"),
            }
        )
    comparisons: list[dict[str, Any]] = []
    sentences: list[str] = []
    per_arm = {s["arm"]: s for s in summary}
    for a in arms:
        ref = Arm(a).reference
        if ref is None or ref not in arms:
            continue
        paired = [s for s in seeds if (a, s) in by and (ref, s) in by]
        if not paired:
            continue
        cost = (
            per_arm[a]["train_seconds_per_epoch"] / per_arm[ref]["train_seconds_per_epoch"]
            if per_arm[ref]["train_seconds_per_epoch"] > 0
            else float("nan")
        )
        for metric, fn in (
            ("final test error", lambda r: final(r, "test_error")),
            ("mean test error over epochs", lambda r: mean_over_epochs(r, "test_error")),
        ):
            d = paired_difference(
                [fn(by[(a, s)]) for s in paired], [fn(by[(ref, s)]) for s in paired]
            )
            comparisons.append(
                {
                    "arm": a,
                    "reference": ref,
                    "metric": metric,
                    **d,
                    "seeds": paired,
                    "verdict": _verdict(d, metric),
                    "cost_ratio": cost,
                }
            )
        fd, md_ = comparisons[-2], comparisons[-1]
        word = {
            "helped": "SHADOW helped",
            "hurt": "SHADOW hurt",
            "no clear difference": "no clear difference: SHADOW did not clearly help",
        }.get(fd["verdict"], fd["verdict"])
        sentences.append(
            f"{a} vs {ref}: final test error {_pct(per_arm[a]['final_test_error_mean'])} vs "
            f"{_pct(per_arm[ref]['final_test_error_mean'])}, difference {_pts(fd['mean'])} points "
            f"(95% CI {_pts(fd['low'])} to {_pts(fd['high'])}, {len(paired)} seeds): {word}. "
            f"Averaged over epochs (how fast the error falls) the difference is {_pts(md_['mean'])} points "
            f"({md_['verdict']}); SHADOW cost {cost:.2f}x the training time per epoch."
        )
    pooled = pearson(all_real, all_syn)
    r_by_arm = {s["arm"]: s["tracking_r_mean"] for s in summary}
    known = {a: r for a, r in r_by_arm.items() if math.isfinite(r)}
    if known:
        parts = [f"{a} r = {r:.2f} ({_tracks(r)})" for a, r in known.items()]
        ttext = (
            "Pearson r between each run's real test-error curve and its synthetic test-error curve (the "
            "synthetic test set is generated from the test inputs by the run's current net each epoch), "
            f"averaged per arm: {'; '.join(parts)}. Pooled over every arm, seed and epoch r = {pooled:.2f}. "
            "The paper's claim is that the synthetic error tracks the real one."
        )
        track_line = "Does synthetic test error track real test error? " + "; ".join(parts) + "."
    else:
        ttext = (
            "The tracking correlation needs at least 3 epochs with changing errors per run; this run has too "
            "few" + (f" (pooled over runs r = {pooled:.2f})." if math.isfinite(pooled) else ".")
        )
        track_line = ""
    tracking = {"pooled_r": pooled, "per_arm_r": r_by_arm, "text": ttext}
    if sentences:
        conclusion = " ".join(sentences)
    else:
        conclusion = (
            "No SHADOW arm was run next to its reference arm, so this run says nothing about whether "
            "SHADOW helps. "
            + " ".join(
                f"{s['arm']}: final test error {_pct(s['final_test_error_mean'])}." for s in summary
            )
        )
    if track_line:
        conclusion += " " + track_line
    notes = []
    if len(seeds) < 3:
        notes.append(
            f"Only {len(seeds)} seed(s): the confidence intervals are wide or missing; use --seeds 0,1,2 or more."
        )
    return ShadowReport(
        arms,
        seeds,
        rows,
        summary,
        comparisons,
        tracking,
        conclusion,
        dict(settings),
        dict(data),
        dict(model),
        runs,
        notes,
    )


# ---------------------------------------------------------------------------------------
# files


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


def write_outputs(
    out: OutputDir,
    report: ShadowReport,
    results: Sequence[RunResult],
    data: ExperimentData,
    spec: ModelSpec,
    settings: ShadowSettings,
    grid: int = 10,
) -> None:
    """history.csv, report.json, report.md, the figures and every arm x seed's final checkpoint."""
    from .. import plots
    from ..loading import save_checkpoint

    for r in results:
        name = f"models/{r.arm.slug}-seed{r.seed}.pt"
        kwargs = dict(spec.arch_kwargs)
        if spec.arch in BUNDLED_SHAPES:
            kwargs["dropout"] = float(report.settings.get("dropout", 0.0)) if r.arm.dropout else 0.0
        save_checkpoint(
            out.file(name),
            r.model,
            arch=spec.arch,
            arch_kwargs=kwargs,
            input_shape=spec.input_shape,
            mean=data.mean,
            std=data.std,
            classes=data.classes,
            trained_by="netprobe shadow-train",
            arm=r.arm.name,
            seed=r.seed,
            epochs=len(r.rows),
            test_error=r.rows[-1].get("test_error") if r.rows else None,
        )
        if name not in out.written:
            out.written.append(name)
    out.write_csv("history.csv", report.to_frame())
    figures = [
        ("Learning curves", "learning_curves.png"),
        ("Synthetic vs real test error", "tracking.png"),
    ]
    out.write_figure("learning_curves.png", plots.shadow_learning_curves(report.rows, report.arms))
    out.write_figure(
        "tracking.png", plots.shadow_tracking(report.rows, report.arms, report.tracking)
    )
    if grid > 0:
        real, labels, syn = sample_grid(results, data, settings, grid)
        out.write_figure(
            "synthetic_grid.png", plots.shadow_sample_grid(real, labels, syn, data.classes)
        )
        figures.append(("Synthetic inputs from each arm's final net", "synthetic_grid.png"))
    out.write_json("report.json", report.to_dict())
    out.write_text("report.md", report.to_markdown(figures))
