"""SHADOW training (docs/science.md §2.3): train on inputs the net itself generates, next to the real ones.

For each labelled batch (x, y): h = h_ℓ(x) from the current net without gradients, x̃ from the
reverse net (:class:`~netprobe.reverse.ReverseNet`: Aᵀ layer by layer, generation dropout ρ,
max-pool unpooling), optionally smoothed, and the net trains on (x̃, y) next to (x, y) with
loss = CE(x, y) + ratio · CE(x̃, y). Generation is batched tensor work: one forward pass to
h_ℓ and one vector–Jacobian product per batch, no per-sample loop.

Layout (a package because the whole passes the ~600-line mark of docs/design.md):

* :mod:`.generate`: **generation and mixing** (:func:`synthesize`, :class:`Augmenter`,
  :func:`synthetic_error`): pure tensor code that knows nothing about the training loop.
  :class:`Augmenter` has the signature of the ``augment`` hook of :func:`netprobe.training.fit`:
  ``(model, x, y, generator) -> (x̃, y, ratio)``.
* :mod:`.inputs`: **what is trained** (:func:`setup`): data splits at the model's input shape,
  the starting model of each seed, the SHADOW layer, all checked before any training.
* :mod:`.experiment`: **the experiment** (:func:`run_experiment`): arms (baseline / shadow, with
  and without dropout) x seeds, each arm of a seed starting from the same initialisation with
  the same data order; it composes ``training.fit`` through its public hooks only (augment,
  callbacks, checkpoint_dir, resume).
* :mod:`.options`: the options (:class:`ShadowOptions`, settings.json) and the one reader of a
  run folder for ``--resume``.
* :mod:`.summary`: per-arm statistics, paired SHADOW-vs-reference differences with confidence
  intervals, the cost, the synthetic/real tracking correlation (:func:`summarise`).
* :mod:`.report`: :class:`ShadowReport` and the files it writes.
* :mod:`.train`: :func:`shadow_train`, the library call behind ``netprobe shadow-train``.

Scale of x̃. The paper gives no scale for x̃ in pixel space, and the reverse net's theoretical α
(docs/science.md §1) aims at h̃ ≈ h, not at x̃ looking like data: on DigitNet's first layer (1 -> 32
channels, a 32x expansion, far outside the theorem's sparse regime) x̃ comes out ~50x the data's
scale. ``scale="match"`` (the default) therefore gives each x̃ the mean and standard deviation of
the real input it came from. The reverse net is positively homogeneous in every α (ReLU, max-pool
unpooling and Aᵀ all commute with positive scaling; biases are not used), so under ``match`` the
α values cancel exactly and are not computed. ``scale="theory"`` keeps the reverse net's output
with α = 2/(ρν) per layer as it comes.
"""

from __future__ import annotations

from .experiment import (
    ARM_NAMES,
    Arm,
    RunResult,
    TrainSettings,
    distributed,
    launch_rank,
    parse_arms,
    parse_seeds,
    run_experiment,
    set_dropout,
)
from .generate import (
    GEN_SCALES,
    UNPOOL_MODES,
    Augmenter,
    ShadowSettings,
    classify,
    match_moments,
    synthesize,
    synthetic_error,
    synthetic_set,
)
from .inputs import (
    ExperimentData,
    ModelSpec,
    Setup,
    load_splits,
    model_spec,
    prepare_data,
    resolve_hidden_layer,
    setup,
)
from .options import SETTINGS_FILE, ShadowOptions, is_complete, resumed_options
from .report import ShadowReport, sample_grid
from .summary import (
    cost_ratio,
    paired_difference,
    pearson,
    plural,
    summarise,
    tracking_correlation,
)
from .train import shadow_train

__all__ = [
    "ARM_NAMES",
    "GEN_SCALES",
    "SETTINGS_FILE",
    "UNPOOL_MODES",
    "Arm",
    "Augmenter",
    "ExperimentData",
    "ModelSpec",
    "RunResult",
    "Setup",
    "ShadowOptions",
    "ShadowReport",
    "ShadowSettings",
    "TrainSettings",
    "classify",
    "cost_ratio",
    "distributed",
    "is_complete",
    "launch_rank",
    "load_splits",
    "match_moments",
    "model_spec",
    "paired_difference",
    "tracking_correlation",
    "parse_arms",
    "parse_seeds",
    "pearson",
    "plural",
    "prepare_data",
    "resolve_hidden_layer",
    "resumed_options",
    "run_experiment",
    "sample_grid",
    "set_dropout",
    "setup",
    "shadow_train",
    "summarise",
    "synthesize",
    "synthetic_error",
    "synthetic_set",
]
