"""``netprobe reconstruct``: run real inputs forward to a hidden layer h, generate x̃ downward
through the transposed layers, run x̃ forward again and measure how well h comes back, next to
controls, with paired confidence intervals (docs/science.md §2.2, §4.7).

The package, split by concern (docs/design.md, "Layers"):

- :mod:`.pipeline`: the entry point :func:`reconstruct` (options, model, inputs, layers) and
  :func:`check_error`, the one number ``netprobe check``'s reconstruct rule uses;
- :mod:`.engine`: the arms (the model and its controls) and the generate-then-infer loop;
- :mod:`.metrics`: per-sample metrics (h̃ against h; pixels as context);
- :mod:`.paired`: paired comparisons over inputs (95% intervals, verdicts, sentences);
- :mod:`.report`: :class:`ReconstructionReport`, its tables and files.
"""

from __future__ import annotations

from .engine import check_options, control_nets, permuted_weights, run
from .metrics import METRICS, compare, pixel_metrics, ssim
from .pipeline import check_error, parse_floats, pick, reconstruct, select_layers
from .report import ARM_HELP, ARMS, LayerInfo, ReconstructionReport

__all__ = [
    "ARMS",
    "ARM_HELP",
    "METRICS",
    "LayerInfo",
    "ReconstructionReport",
    "check_error",
    "check_options",
    "compare",
    "control_nets",
    "parse_floats",
    "permuted_weights",
    "pick",
    "pixel_metrics",
    "reconstruct",
    "run",
    "select_layers",
    "ssim",
]
