"""The result of ``netprobe reconstruct``: :class:`ReconstructionReport` and its files.

One row per (sample, layer, arm) is measured; :meth:`ReconstructionReport.to_frame`
summarises them per (layer, arm); :meth:`~ReconstructionReport.write` writes the report's
files (metrics.csv, summary.csv, report.json, report.md, grid.png, depth.png and, when
tensors were kept, tensors.npz). What the metrics mean: docs/science.md §2.2.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..report import OutputDir, as_output_dir
from .metrics import METRICS

ARMS = ("model", "fresh-init", "permuted", "random-h")
ARM_HELP = {
    "model": "the model's own weights and its real h",
    "fresh-init": "control: the same architecture at a fresh random initialisation (the theory's ideal case)",
    "permuted": "control: the model's weights with the entries of each weight tensor permuted",
    "random-h": "control: the model's reverse net fed a random h with the same sparsity (each sample's entries of h permuted)",
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

    # -- tables ------------------------------------------------------------------------

    def samples_frame(self) -> Any:
        """One row per (sample, layer, arm): every metric (``metrics.csv``)."""
        import pandas as pd

        return pd.DataFrame(self.samples)

    def to_frame(self) -> Any:
        """Mean ± std of every metric per (layer, arm), layers in depth order."""
        return self._summary.copy()

    @functools.cached_property
    def _summary(self) -> Any:
        import pandas as pd

        df = self.samples_frame()
        rows = []
        for info in self.layers:
            for arm in self.arms:
                part = df[(df["layer"] == info.name) & (df["arm"] == arm)]
                if part.empty:
                    continue
                row: dict[str, Any] = {"layer": info.name, "arm": arm, "n": len(part)}
                for m in METRICS:
                    vals = part[m].astype(float)
                    some = bool(vals.notna().any())
                    row[m] = float(vals.mean()) if some else float("nan")
                    row[f"{m}_std"] = float(vals.std(ddof=0)) if some else float("nan")
                rows.append(row)
        return pd.DataFrame(rows)

    # -- verdicts ----------------------------------------------------------------------

    def layer_headlines(self) -> list[dict[str, Any]]:
        """Per layer: the model's real h against the random-h control (scale-free error and
        cosine), and the fresh-init and permuted controls."""
        frame = self.to_frame()
        out = []
        for info in self.layers:
            sub = frame[frame["layer"] == info.name].set_index("arm")
            if "model" not in sub.index:
                continue
            row: dict[str, Any] = {
                "layer": info.name,
                "err_model": sub.loc["model", "rel_err_scaled"],
                "cos_model": sub.loc["model", "cosine"],
            }
            for arm, key in (
                ("random-h", "random_h"),
                ("fresh-init", "fresh"),
                ("permuted", "permuted"),
            ):
                if arm in sub.index:
                    row[f"err_{key}"] = sub.loc[arm, "rel_err_scaled"]
                    row[f"cos_{key}"] = sub.loc[arm, "cosine"]
            if "err_random_h" in row and row["err_model"] > 0:
                row["random_h_over_model"] = row["err_random_h"] / row["err_model"]
            out.append(row)
        return out

    def headline_text(self) -> list[str]:
        lines = []
        for r in self.layer_headlines():
            if "random_h_over_model" not in r:
                continue
            ratio = r["random_h_over_model"]
            lines.append(
                f"{r['layer']}: real h re-infers with scaled error {r['err_model']:.3f} "
                f"(cosine {r['cos_model']:.3f}) against {r['err_random_h']:.3f} "
                f"(cosine {r['cos_random_h']:.3f}) for the random-h control: {ratio:.2f}× "
                f"{'lower' if ratio > 1 else 'higher'} error, "
                f"{'better' if ratio > 1 else 'worse'} than random h"
            )
        return lines

    def headline(self) -> dict[str, Any]:
        """What run.json records: the inputs, each layer's scaled error of the model's own
        arm, and the one-line verdicts against the random-h control."""
        frame = self.to_frame()
        model = frame[frame["arm"] == "model"] if len(frame) else frame
        return {
            "data": self.data,
            "rel_err_scaled": {
                str(r["layer"]): r["rel_err_scaled"] for r in model.to_dict(orient="records")
            },
            "headline": self.headline_text(),
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
            "summary": self.to_frame().to_dict(orient="records"),
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
        if self.headline_text():
            text += "## Real h against the random-h control\n\n"
            text += "".join(f"- {t}\n" for t in self.headline_text()) + "\n"
        text += "## Summary (mean over samples)\n\n" + markdown_table(
            self.to_frame().to_dict(orient="records"), SUMMARY_COLUMNS
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
        out.write_csv("metrics.csv", self.samples_frame())
        out.write_csv("summary.csv", self.to_frame())
        out.write_json("report.json", self.to_dict())
        out.write_text("report.md", self.to_markdown())
        xs = self.images.get("x")
        if xs is not None and xs.ndim == 4 and len(xs):
            samples = 4 if len(self.layers) <= 6 else 2
            out.write_figure("grid.png", reconstruction_grid(self, samples=samples))
            names.append("grid.png")
        out.write_figure("depth.png", reconstruction_depth(self))
        names.append("depth.png")
        if self.tensors:
            out.write_npz("tensors.npz", self.tensors)
            names.append("tensors.npz")
        return names
