"""The result of ``netprobe reconstruct``: :class:`ReconstructionReport` and its files.

One row per (sample, layer, arm) is measured; :meth:`ReconstructionReport.to_frame`
summarises them per (layer, arm); :meth:`~ReconstructionReport.write` writes the report's
files (metrics.csv, summary.csv, report.json, report.md, grid.png, depth.png and, when
tensors were kept, tensors.npz). What the metrics mean: docs/science.md §2.2.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..report import OutputDir, as_output_dir
from .metrics import METRICS
from .paired import (
    CANNOT_TELL,
    LARGER,
    NO_DIFFERENCE,
    SMALLER,
    Interval,
    advantage_across_inits,
    fmt_interval,
    fmt_ratio,
    paired_ratio,
    ratio_across_inits,
    ratio_phrase,
)

ARMS = ("model", "fresh-init", "permuted", "random-h", "fresh-random-h")
ARM_HELP = {
    "model": "the model's own weights and its real h",
    "fresh-init": "control: the same architecture at a fresh random initialisation (the theory's ideal case)",
    "permuted": "control: the model's weights with the entries of each weight tensor permuted",
    "random-h": "control: the model's reverse net fed a random h with the same sparsity (each sample's entries of h permuted)",
    "fresh-random-h": "control: the fresh-init net's reverse net fed its own h with each sample's entries permuted (the fresh net's random-h control: how much real h beats random h without training)",
}
#: the metric every paired comparison is made on: scale-free, what the theory bounds
VERDICT_METRIC = "rel_err_scaled"
#: control arm -> the arm compared with it (its error is the ratio's numerator)
SUBJECT_OF = {
    "random-h": "model",
    "fresh-init": "model",
    "permuted": "model",
    "fresh-random-h": "fresh-init",
}
CONTROL_SAYS = {
    "random-h": "random h",
    "fresh-init": "fresh initialisations",
    "permuted": "the permuted control (one permutation)",
    "fresh-random-h": "random h",
}
#: the fields of a paired.Interval, as the report's comparison dicts carry them
INTERVAL_KEYS = ("ratio", "low", "high", "p", "n", "verdict", "inits")
#: the summary frame's columns for a control row's paired comparison (frame name <- field)
FRAME_RATIO_COLUMNS = {
    "ratio_of": "subject",
    "err_ratio": "ratio",
    "ci_low": "low",
    "ci_high": "high",
    "pairs": "n",
    "p_value": "p",
    "verdict": "verdict",
}
LEARNED_SAYS = {
    LARGER: "larger than fresh initialisations give: learned structure makes real h more "
    "recoverable than random h",
    SMALLER: "smaller than fresh initialisations give: training made real h's advantage "
    "over random h smaller",
    NO_DIFFERENCE: "no clear difference from fresh initialisations, so beating random h does not "
    "show learned structure here",
    CANNOT_TELL: "cannot tell (fewer than 2 fresh inits, no spread, or no inputs; use 3 or "
    "more fresh inits)",
}
#: the summary columns report.md shows
SUMMARY_COLUMNS = (
    "layer",
    "arm",
    "rel_err",
    "rel_err_scaled",
    "scale",
    "cosine",
    "precision",
    "recall",
    "jaccard",
    "jaccard_thr",
    "rel_err_thr_scaled",
    "active_frac",
    "theory_bound",
    "px_rel_err",
    "psnr",
    "ssim",
    "top1_agree",
)
METRIC_NOTES = (
    "- `rel_err` = ‖h̃ − h‖/‖h‖ with h̃ = the model's forward pass on x̃ (its own biases); "
    "`rel_err_scaled` after the best scalar rescale `scale` = ⟨h̃, h⟩/‖h̃‖²; `cosine`.\n"
    "- `precision`/`recall`/`jaccard`: active units (> 0) of h̃ against those of h.\n"
    "- `*_thr`: the theory's inference h̃ = r(A x̃ + b') with b' = −δ‖h‖, δ = √(ln m/(ρn)) "
    "(docs/science.md §1); A x̃ is the layer's pre-activation on x̃ minus its pre-activation with "
    "the layer below set to zero (its bias and any skip input).\n"
    "- `active_frac` = k/m; `theory_bound` = √(k/(ρn)), the theorem's error scale (meaningful "
    "when h is sparse).\n"
    "- `px_rel_err`, `px_cosine` (model input space), `psnr`, `ssim` (pixels): context only; the "
    "theory claims nothing about pixels (`--no-pixel-metrics` skips PSNR and SSIM).\n"
    "- `top1_agree`: the classifier's top-1 on x̃ equals its top-1 on x.\n"
)


def _as_float(v: Any) -> float:
    """A metric value as pandas' ``astype(float)`` reads it (None: NaN)."""
    return math.nan if v is None else float(v)


@dataclass(frozen=True)
class LayerInfo:
    """One reconstructed hidden layer and the theory's quantities for it."""

    name: str  # h2
    index: int
    where: str
    shape: tuple[int, ...]
    units: int  # m
    below: int | None  # the layer directly feeding it (0 = the input), as found by the probe
    below_units: int | None  # n: units of the layer below it reads (one per max-pool window)
    delta: float  # δ = √(ln m/(ρ n))


@dataclass(frozen=True)
class ReconstructionReport:
    """Everything one ``netprobe reconstruct`` run measured. ``samples`` holds one row per
    (sample, layer, arm); :meth:`to_frame` summarises them per (layer, arm)."""

    model: str
    data: str
    num: int
    options: dict[str, Any]
    layers: list[LayerInfo]
    arms: list[str]
    samples: list[dict[str, Any]]
    gen_scales: dict[str, dict[int, float]]  # arm -> generated layer j -> α
    notes: list[str] = field(default_factory=list)
    # "x", "h2/model" -> (S, C, H, W) in [0, 1] for the image grid
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    tensors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # save_tensors
    provenance: dict[str, Any] | None = None  # LoadedModel.provenance(), for run.json
    # wall seconds of the passes over every arm (forward, α fit, generation, re-inference,
    # metrics), of the pixel metrics within them and of building the control nets (outside
    # the passes): in run.json (headline), not report.json
    seconds: dict[str, float] = field(default_factory=dict)

    # -- tables ------------------------------------------------------------------------

    def samples_frame(self) -> Any:
        """One row per (sample, layer, arm): every metric (``metrics.csv``)."""
        import pandas as pd

        return pd.DataFrame(self.samples)

    def to_frame(self) -> Any:
        """Mean ± std of every metric per (layer, arm), layers in depth order."""
        import pandas as pd

        return pd.DataFrame(self._summary)

    def summary_rows(self) -> list[dict[str, Any]]:
        """:meth:`to_frame`'s rows as dicts (summary.csv), without pandas: the CLI's table,
        files and figures read these (importing pandas was 0.3-0.45 s of a reconstruct run)."""
        return [dict(r) for r in self._summary]

    @functools.cached_property
    def _summary(self) -> list[dict[str, Any]]:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in self.samples:  # one pass: masking a frame per (layer, arm) took 0.3 s
            groups.setdefault((r["layer"], r["arm"]), []).append(r)
        rows = []
        for info in self.layers:
            for arm in self.arms:
                part = groups.get((info.name, arm))
                if not part:
                    continue
                row: dict[str, Any] = {"layer": info.name, "arm": arm, "n": len(part)}
                for m in METRICS:
                    vals = np.array([_as_float(r.get(m)) for r in part], dtype=np.float64)
                    vals = vals[~np.isnan(vals)]
                    row[m] = float(vals.mean()) if len(vals) else float("nan")
                    row[f"{m}_std"] = float(vals.std()) if len(vals) else float("nan")
                rows.append(row | self._ratio_columns(info.name, arm))
        return rows

    def _ratio_columns(self, layer: str, arm: str) -> dict[str, Any]:
        """A control row's paired comparison (``err_ratio`` = the subject's error over this
        arm's, geometric mean over inputs, with its 95% CI); empty values elsewhere."""
        c = self._comparison(layer, arm) if arm in SUBJECT_OF else None
        if c is None:
            return {
                k: ("" if k in ("ratio_of", "verdict") else math.nan) for k in FRAME_RATIO_COLUMNS
            }
        # numbers as floats: the model's rows hold NaN in these columns (a float column)
        return {
            k: float(c[f]) if isinstance(c[f], int) and not isinstance(c[f], bool) else c[f]
            for k, f in FRAME_RATIO_COLUMNS.items()
        }

    # -- verdicts: paired comparisons over inputs (docs/science.md §4.7) ----------------

    def errors(self, layer: str, arm: str) -> np.ndarray:
        """One arm's per-input ``VERDICT_METRIC`` at ``layer``, indexed by sample (NaN where
        the arm did not measure a sample); for the fresh-init arms, the geometric mean over
        the inits. The arrays the paired comparisons pair by input."""
        per_init = self.errors_by_init(layer, arm)
        if len(per_init) == 1:
            return per_init[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.exp(np.log(per_init).mean(axis=0)))

    def errors_by_init(self, layer: str, arm: str) -> np.ndarray:
        """(inits, inputs): one row per fresh initialisation (one row for other arms)."""
        got = self._verdict_errors.get((layer, arm))
        return got if got is not None else np.full((1, self.num), np.nan)

    @functools.cached_property
    def _verdict_errors(self) -> dict[tuple[str, str], np.ndarray]:
        """(layer, arm) -> (inits, inputs) ``VERDICT_METRIC``, gathered in one pass."""
        inits = max((int(r.get("init", 0)) for r in self.samples), default=0) + 1
        out: dict[tuple[str, str], np.ndarray] = {}
        for r in self.samples:
            key = (r["layer"], r["arm"])
            if key not in out:
                out[key] = np.full((inits, self.num), np.nan)
            out[key][int(r.get("init", 0)), int(r["sample"])] = float(r[VERDICT_METRIC])
        return {k: v[~np.isnan(v).all(axis=1)] for k, v in out.items()}

    @functools.cached_property
    def comparisons(self) -> list[dict[str, Any]]:
        """Every (layer, control) comparison: the subject arm's scaled error over the
        control's, paired by input (geometric mean ratio, 95% CI, p, inputs, verdict)."""
        out = []
        for info in self.layers:
            for control, subject in SUBJECT_OF.items():
                if control not in self.arms or subject not in self.arms:
                    continue
                a, b = self.errors(info.name, subject), self.errors(info.name, control)
                if control == "fresh-init":  # drawn per run, not per input: across the inits
                    iv = ratio_across_inits(a, self.errors_by_init(info.name, control))
                else:
                    iv = paired_ratio(a, b)
                out.append(
                    {
                        "layer": info.name,
                        "subject": subject,
                        "control": control,
                        f"{VERDICT_METRIC}_subject": float(np.nanmean(a)),
                        f"{VERDICT_METRIC}_control": float(np.nanmean(b)),
                        **iv.to_dict(),
                    }
                )
        return out

    def _comparison(self, layer: str, control: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.comparisons if c["layer"] == layer and c["control"] == control), None
        )

    @functools.cached_property
    def learned_structure(self) -> list[dict[str, Any]]:
        """Per layer, the learned-structure question: is the model's advantage over random h
        (per input, log of random-h error over real-h error) larger than its fresh
        initialisation's over its own random h? A ratio of advantages, paired by input, with
        its 95% CI (docs/science.md §4.7)."""
        need = {"model", "random-h", "fresh-init", "fresh-random-h"}
        if not need <= set(self.arms):
            return []
        out = []
        for info in self.layers:
            e = {a: self.errors_by_init(info.name, a) for a in need}
            iv = advantage_across_inits(
                e["model"][0], e["random-h"][0], e["fresh-init"], e["fresh-random-h"]
            )
            mine, fresh = (
                self._comparison(info.name, "random-h"),
                self._comparison(info.name, "fresh-random-h"),
            )
            out.append(
                {
                    "layer": info.name,
                    "advantage_model": 1 / mine["ratio"] if mine else math.nan,
                    "advantage_fresh": 1 / fresh["ratio"] if fresh else math.nan,
                    **iv.to_dict(),
                }
            )
        return out

    def layer_headlines(self) -> list[dict[str, Any]]:
        """Per layer: the model's scaled error and cosine, each control's, and the paired
        comparisons against random h (``random_h_*``: the model's error over random h's) and
        the learned-structure question (``learned_*``: the model's advantage over random h as
        a multiple of its fresh initialisation's)."""
        learned = {r["layer"]: r for r in self.learned_structure}
        out = []
        for info in self.layers:
            sub = {r["arm"]: r for r in self._summary if r["layer"] == info.name}
            if "model" not in sub:
                continue
            row: dict[str, Any] = {
                "layer": info.name,
                "err_model": sub["model"]["rel_err_scaled"],
                "cos_model": sub["model"]["cosine"],
            }
            for arm in self.arms[1:]:
                key = arm.replace("-", "_").replace("fresh_init", "fresh")
                row[f"err_{key}"] = sub[arm]["rel_err_scaled"]
                row[f"cos_{key}"] = sub[arm]["cosine"]
            c = self._comparison(info.name, "random-h")
            if c is not None:
                row.update({f"random_h_{k}": c[k] for k in INTERVAL_KEYS})
            if info.name in learned:
                row.update({f"learned_{k}": learned[info.name][k] for k in INTERVAL_KEYS})
            out.append(row)
        return out

    def comparison_text(self, control: str) -> list[str]:
        """One sentence per layer for the comparison against ``control``."""
        subject_says = {"model": "the model", "fresh-init": "the fresh-init net"}
        lines = []
        for c in self.comparisons:
            if c["control"] != control:
                continue
            iv = Interval(**{k: c[k] for k in INTERVAL_KEYS})
            who = "real h" if control.endswith("random-h") else subject_says[c["subject"]]
            if control == "fresh-random-h":
                who = "in the fresh-init nets, real h"
            lines.append(
                f"{c['layer']}: {who} re-infers with scaled error "
                f"{c[f'{VERDICT_METRIC}_subject']:.3f} against "
                f"{c[f'{VERDICT_METRIC}_control']:.3f} for {CONTROL_SAYS[control]}: "
                f"{ratio_phrase(iv, CONTROL_SAYS[control])}"
            )
        return lines

    def learned_text(self) -> list[str]:
        """One sentence per layer answering the learned-structure question."""
        lines = []
        for r in self.learned_structure:
            iv = Interval(**{k: r[k] for k in INTERVAL_KEYS})
            head = (
                f"{r['layer']}: learned structure? Real h beats random h by "
                f"{fmt_ratio(r['advantage_model'])}× in the model and by "
                f"{fmt_ratio(r['advantage_fresh'])}× in fresh initialisations; the model's "
                f"advantage is {fmt_ratio(iv.ratio, iv.low, iv.high)}× a fresh init's "
                f"({fmt_interval(iv)})"
            )
            lines.append(f"{head}: {LEARNED_SAYS[iv.verdict]}")
        return lines

    def headline_text(self) -> list[str]:
        """The verdicts: per layer, real h against random h, then the learned-structure
        question (both paired over inputs, with 95% intervals)."""
        return self.comparison_text("random-h") + self.learned_text()

    def headline(self) -> dict[str, Any]:
        """What run.json records: the inputs, each layer's scaled error of the model's own
        arm, the paired comparisons against random h and the learned-structure question,
        and the one-line verdicts."""
        return {
            "data": self.data,
            "rel_err_scaled": {
                str(r["layer"]): r["rel_err_scaled"] for r in self._summary if r["arm"] == "model"
            },
            "random_h": [c for c in self.comparisons if c["control"] == "random-h"],
            "learned_structure": self.learned_structure,
            "headline": self.headline_text(),
            "seconds": self.seconds,
        }

    # -- documents ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "num": self.num,
            "options": self.options,
            "layers": [vars(i) | {"shape": list(i.shape)} for i in self.layers],
            "arms": {a: ARM_HELP[a] for a in self.arms},
            "gen_scales": {
                a: {f"h{j}" if j else "input": v for j, v in al.items()}
                for a, al in self.gen_scales.items()
            },
            "summary": self.summary_rows(),
            "comparisons": self.comparisons,
            "learned_structure": self.learned_structure,
            "headline": self.layer_headlines(),
            "headline_text": self.headline_text(),
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        from ..report import markdown_table

        o = self.options
        text = f"# Reverse reconstruction of {self.model}\n\n"
        text += (
            f"Data: {self.data}, {self.num} inputs. Layers: {', '.join(i.name for i in self.layers)}. "
            f"Generation scale α = {o.get('gen_scale')}, keep ρ = {o.get('gen_keep')}, "
            f"unpooling = {o.get('unpool')}, smoothing σ = {o.get('smooth')}, seed {o.get('seed')}. "
            "Method and the theory's bound: docs/science.md §2.2.\n\n"
        )
        text += self._verdicts_markdown()
        text += "## Summary (mean over samples)\n\n" + markdown_table(
            self.summary_rows(), SUMMARY_COLUMNS
        )
        text += "\n## Layers\n\n" + markdown_table(self._layer_rows())
        text += "\n## α (generation scale) per generated layer\n\n" + markdown_table(
            [
                {"arm": a, **{("input" if j == 0 else f"h{j}"): v for j, v in sorted(al.items())}}
                for a, al in self.gen_scales.items()
            ]
        )
        text += "\n## Arms\n\n" + "".join(f"- **{a}**: {ARM_HELP[a]}\n" for a in self.arms)
        text += "\n## Metrics\n\n" + METRIC_NOTES
        if self.notes:
            text += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in self.notes)
        return text

    def _verdicts_markdown(self) -> str:
        """The paired comparisons as sentences (real h against random h, the learned-structure
        question, the other controls) and as one table."""
        if not self.comparisons:
            return ""
        from ..report import markdown_table

        how = (
            f"Paired over inputs: per input the ratio of two arms' `{VERDICT_METRIC}`, then a "
            "95% Student-t interval for the mean log-ratio (docs/science.md §4.7). A ratio "
            'below 1 means the first arm\'s error is lower; "better"/"worse" only when the '
            "interval excludes 1.\n\n"
        )
        text = "## Real h against the random-h control\n\n" + how
        text += "".join(f"- {t}\n" for t in self.comparison_text("random-h")) + "\n"
        if self.learned_structure:
            text += (
                "## Learned structure: the model's advantage over random h against its fresh "
                "initialisation's\n\n"
                "Real h beats random h even in a randomly initialised ReLU net, so that alone "
                "does not show learned structure. Advantage = the mean over inputs of "
                "log(random-h error / real-h error), in the model and in each fresh "
                "initialisation, on the same inputs. Fresh inits differ from one another by "
                "more than an interval over inputs shows, so the interval is across the inits: "
                "is the model's advantage outside what a fresh init gives (a t prediction "
                "interval, K − 1 degrees of freedom)?\n\n"
            )
            text += "".join(f"- {t}\n" for t in self.learned_text()) + "\n"
        others = [c for c in ("fresh-init", "permuted", "fresh-random-h") if c in self.arms]
        if others:
            text += "## The other controls\n\n"
            for c in others:
                text += "".join(f"- {t}\n" for t in self.comparison_text(c))
            text += "\n"
        rows = [
            {
                "layer": c["layer"],
                "arm": c["subject"],
                "control": c["control"],
                "err_arm": c[f"{VERDICT_METRIC}_subject"],
                "err_control": c[f"{VERDICT_METRIC}_control"],
                "err_ratio": c["ratio"],
                "ci_low": c["low"],
                "ci_high": c["high"],
                "inputs": c["n"],
                "inits": c["inits"] or "—",
                "p": c["p"],
                "verdict": c["verdict"],
            }
            for c in self.comparisons
        ]
        return text + "## Every paired comparison\n\n" + markdown_table(rows) + "\n"

    def _layer_rows(self) -> list[dict[str, Any]]:
        def below(i: LayerInfo) -> str:
            if i.below is None:
                return "—"
            return "input" if i.below == 0 else f"h{i.below}"

        return [
            {
                "layer": i.name,
                "where": i.where,
                "shape": "x".join(map(str, i.shape)),
                "m": i.units,
                "below": below(i),
                "n": i.below_units or "—",
                "delta": i.delta,
            }
            for i in self.layers
        ]

    # -- files -------------------------------------------------------------------------

    def write(self, output: OutputDir | str | os.PathLike[str]) -> list[str]:
        """Write metrics.csv, summary.csv, report.json, report.md, the figures (grid.png
        when the inputs are images, depth.png) and tensors.npz (when tensors were kept)
        into ``output``; returns the file names."""
        from ..plots import reconstruction_depth, reconstruction_grid

        out = as_output_dir(output)
        names = ["metrics.csv", "summary.csv", "report.json", "report.md"]
        out.write_csv("metrics.csv", self.samples)  # rows: no pandas import
        out.write_csv("summary.csv", self._summary)
        out.write_json("report.json", self.to_dict())
        out.write_text("report.md", self.to_markdown())
        xs = self.images.get("x")
        if xs is not None and xs.ndim == 4 and len(xs):
            samples = 4 if len(self.layers) <= 6 else 2
            out.write_figure("grid.png", reconstruction_grid(self, samples=samples))
            names.append("grid.png")
        out.write_figure("depth.png", reconstruction_depth(self), tight=False)
        names.append("depth.png")
        if self.tensors:
            out.write_npz("tensors.npz", self.tensors)
            names.append("tensors.npz")
        return names
