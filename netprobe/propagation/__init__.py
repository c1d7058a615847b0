"""``netprobe propagate``: does the whole network propagate inputs the way the random ReLU
net of the theorem does? Active units, cosines through depth against the arc-cosine map, and
the input → h_ℓ Jacobian's singular values, beside the fresh initialisation (docs/science.md §7).

The package, split by concern (docs/design.md, "Layers"):

- :mod:`.pipeline`: the entry point :func:`propagate` (options, model, inputs, arms);
- :mod:`.stats`: active fractions, pair cosines, the arc-cosine / mean-field prediction;
- :mod:`.jacobian`: Lanczos through autograd products (never the full Jacobian);
- :mod:`.report`: :class:`PropagationReport`, its rows and files; :mod:`.figures`: its figures.
"""

from __future__ import annotations

from .jacobian import Spectrum, jacobian_spectra
from .pipeline import propagate
from .report import PropagationReport
from .stats import arccos_map, gaussian_pairs, linear_chain, predict_cosines

__all__ = [
    "PropagationReport",
    "Spectrum",
    "arccos_map",
    "gaussian_pairs",
    "jacobian_spectra",
    "linear_chain",
    "predict_cosines",
    "propagate",
]
