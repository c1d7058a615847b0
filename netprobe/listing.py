"""``netprobe layers``: a model's weight layers (as matrices) and its hidden layers h1..hL.

:func:`layers` is the library call behind the command (``netprobe.layers(model)``); the
layer views themselves live in :mod:`netprobe.netlayers`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import NothingToAnalyseError
from .loading import LoadedModel, ensure_loaded
from .netlayers import HiddenLayer, WeightLayer, hidden_layers, weight_layers
from .report import OutputDir, as_output_dir


@dataclass(frozen=True)
class ModelLayers:
    model: str
    input_shape: tuple[int, ...] | None
    weight: list[WeightLayer]
    hidden: list[HiddenLayer]
    hidden_note: str | None = None  # why hidden layers are not listed, when they are not
    provenance: dict[str, Any] | None = None  # LoadedModel.provenance(), for run.json

    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for w in self.weight:
            rows.append(
                {
                    "section": "weight",
                    "name": w.name,
                    "module": w.module_path,
                    "type": w.kind,
                    "shape": "x".join(map(str, w.matrix_shape)),
                    "params": w.params,
                }
            )
        for h in self.hidden:
            rows.append(
                {
                    "section": "hidden",
                    "name": h.name,
                    "module": h.where,
                    "type": h.kind,
                    "shape": "x".join(map(str, h.shape)),
                    "params": h.size,
                }
            )
        return rows

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "weight_layers": [
                {
                    "name": w.name,
                    "module": w.module_path,
                    "type": w.kind,
                    "tensor_shape": list(w.tensor_shape),
                    "matrix_shape": list(w.matrix_shape),
                    "params": w.params,
                }
                for w in self.weight
            ],
            "hidden_layers": [
                {
                    "name": h.name,
                    "module": h.module_path,
                    "where": h.where,
                    "op": h.op,
                    "shape": list(h.shape),
                    "units": h.size,
                }
                for h in self.hidden
            ],
            "hidden_note": self.hidden_note,
        }

    def to_markdown(self) -> str:
        from .report import markdown_table

        text = f"# Layers of {self.model}\n\n## Weight layers\n\n"
        text += markdown_table(r for r in self.rows() if r["section"] == "weight")
        text += "\n## Hidden layers\n\n"
        text += (
            markdown_table(r for r in self.rows() if r["section"] == "hidden")
            if self.hidden
            else f"_{self.hidden_note}_\n"
        )
        return text

    def headline(self) -> dict[str, Any]:
        return {"weight_layers": len(self.weight), "hidden_layers": len(self.hidden)}

    def write(self, output: OutputDir | str | os.PathLike[str]) -> list[str]:
        out = as_output_dir(output)
        out.write_csv("layers.csv", self.to_frame())
        out.write_json("layers.json", self.to_dict())
        out.write_text("layers.md", self.to_markdown())
        return ["layers.csv", "layers.json", "layers.md"]


def layers(model: LoadedModel | Any = None, **load_kwargs: Any) -> ModelLayers:
    """The weight layers and hidden layers of MODEL (a spec, a LoadedModel or an nn.Module).
    A model with no weight matrix at all is a :class:`NothingToAnalyseError` (exit 4)."""
    lm = ensure_loaded(model, **load_kwargs)
    weights = weight_layers(lm.tensors, lm.module)
    if not weights:
        raise NothingToAnalyseError(
            f"{lm.display}: no weight matrix (no tensor with 2 or more dimensions)",
            hint="netprobe analyses Linear and Conv weights; check that this is the model's weights file",
        )
    hidden: list[HiddenLayer] = []
    note = None
    if lm.module is None:
        note = "weights only: pass --arch NAME to list the hidden layers h1..hL"
    elif lm.input_shape is None:
        note = "input shape unknown: pass --input-shape C,H,W to list the hidden layers h1..hL"
    else:
        try:
            hidden = hidden_layers(lm.module, lm.input_shape)
        except NothingToAnalyseError as e:
            note = e.one_line()
        if not hidden and note is None:
            note = "no rectifier (ReLU, LeakyReLU, ReLU6) runs in this model, so it has no hidden layers h1..hL"
    return ModelLayers(lm.display, lm.input_shape, weights, hidden, note, lm.provenance())
