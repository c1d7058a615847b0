"""A generic train / evaluate loop: deterministic, resumable, DDP-ready, silent.

:func:`fit` trains a classifier with cross-entropy on a :class:`~netprobe.data.Dataset` and
knows nothing about SHADOW: an ``augment`` hook may add an extra ``(x, y)`` batch per step
(that is how ``shadow-train`` plugs in), a ``transform`` hook may perturb the real batch
(random shifts and rotations, :class:`RandomAffine`), and callbacks see every event (the CLI
draws a rich progress bar from them; the library prints nothing).

Determinism. Every random stream is a pure function of ``(seed, epoch, rank)``: the data
order of epoch e is ``randperm(N)`` from a generator seeded by (seed, e); the transform and
augment generators and the global torch RNG (dropout) are reseeded per epoch and rank. Same
seed -> identical results on CPU; a resumed run repeats exactly what the uninterrupted run
would have done.

Never lose a run. With ``checkpoint_dir`` the full training state (model, optimizer, RNG
states, epoch, step, history) is written atomically to ``training-state.pt`` after every
epoch. Ctrl-C sets a flag that is honoured at the next batch boundary: the mid-epoch state is
saved and KeyboardInterrupt re-raised; ``resume=True`` continues from either kind of
checkpoint and reaches the same weights as an uninterrupted run (a SIGKILLed process resumes
from its last epoch checkpoint).

DDP. When ``torch.distributed`` is initialised the model is wrapped in
DistributedDataParallel; ``batch_size`` is the global batch, each rank takes every
world-th example of it (the same permutation on every rank, as DistributedSampler would
shard it), and the loss is scaled so that DDP's gradient average equals the full-batch mean
gradient: one DDP step equals one single-process step on the full batch. Only rank 0 writes.

Layout: :mod:`.loop` (:func:`fit`, the loop as named steps), :mod:`.parts` (settings check,
optimizer, schedule, normalisation, :func:`evaluate`, :class:`RandomAffine`, events and
history), :mod:`.state` (checkpoints: write, read, check, Ctrl-C flag).
"""

from __future__ import annotations

from ..seeds import seeded
from .loop import fit
from .parts import (
    OPTIMIZERS,
    SCHEDULES,
    Augment,
    Callback,
    DivergedError,
    Event,
    History,
    RandomAffine,
    Transform,
    check_settings,
    evaluate,
    init_model,
)
from .state import STATE_FILE, STATE_KEY, load_state

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "STATE_FILE",
    "STATE_KEY",
    "Augment",
    "Callback",
    "DivergedError",
    "Event",
    "History",
    "RandomAffine",
    "Transform",
    "check_settings",
    "evaluate",
    "fit",
    "init_model",
    "load_state",
    "seeded",
]
