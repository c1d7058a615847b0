"""SHADOW training (PAPER.md §2.3): train on inputs the net itself generates, next to the real ones.

For each labelled batch (x, y): h = h_ℓ(x) from the current net without gradients, x̃ from the
reverse net (:class:`~netprobe.reverse.ReverseNet`: Aᵀ layer by layer, generation dropout ρ,
max-pool unpooling), optionally smoothed, and the net trains on (x̃, y) next to (x, y) with
loss = CE(x, y) + ratio · CE(x̃, y). Generation is batched tensor work: one forward pass to
h_ℓ and one vector–Jacobian product per batch, no per-sample loop.

Layout (a package because the whole passes DESIGN.md's ~600-line mark):

* :mod:`.generate`: **generation and mixing** (:func:`synthesize`, :class:`Augmenter`,
  :func:`synthetic_error`): pure tensor code that knows nothing about the training loop.
  :class:`Augmenter` has the signature of the ``augment`` hook of :func:`netprobe.training.fit`:
  ``(model, x, y, generator) -> (x̃, y, ratio)``.
* :mod:`.experiment`: **the experiment** (:func:`run_experiment`): data splits, the starting
  model, arms (baseline / shadow, with and without dropout) x seeds, each arm of a seed starting
  from the same initialisation with the same data order; it composes ``training.fit`` through
  its public hooks only (augment, callbacks, checkpoint_dir, resume).
* :mod:`.summary`: per-arm statistics, paired SHADOW-vs-reference differences with confidence
  intervals, the synthetic/real tracking correlation (:func:`summarise` -> :class:`ShadowReport`)
  and the output files.

Scale of x̃. The paper gives no scale for x̃ in pixel space, and the reverse net's theoretical α
(PAPER.md §1) aims at h̃ ≈ h, not at x̃ looking like data: on DigitNet's first layer (1 -> 32
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
    ExperimentData,
    ModelSpec,
    RunResult,
    Setup,
    TrainSettings,
    distributed,
    load_splits,
    model_spec,
    parse_arms,
    parse_seeds,
    prepare_data,
    resolve_hidden_layer,
    run_experiment,
    set_dropout,
    setup,
)
from .generate import (
    GEN_SCALES,
    UNPOOL_MODES,
    Augmenter,
    ShadowSettings,
    classify,
    match_moments,
    mix_seed,
    synthesize,
    synthetic_error,
    synthetic_set,
)
from .summary import ShadowReport, paired_difference, pearson, sample_grid, summarise, write_outputs

__all__ = [
    "ARM_NAMES",
    "GEN_SCALES",
    "UNPOOL_MODES",
    "Arm",
    "Augmenter",
    "ExperimentData",
    "ModelSpec",
    "RunResult",
    "ShadowReport",
    "ShadowSettings",
    "TrainSettings",
    "classify",
    "distributed",
    "load_splits",
    "match_moments",
    "mix_seed",
    "model_spec",
    "paired_difference",
    "parse_arms",
    "parse_seeds",
    "pearson",
    "prepare_data",
    "resolve_hidden_layer",
    "run_experiment",
    "sample_grid",
    "set_dropout",
    "setup",
    "Setup",
    "summarise",
    "synthesize",
    "synthetic_error",
    "synthetic_set",
    "write_outputs",
]
