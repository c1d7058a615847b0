"""The ``netprobe`` command line (Typer).

One thin command per subcommand, one module each: options -> one library call -> render ->
write (docs/design.md, "A command is …"). :mod:`.common` holds what they share (the
Consoles, the shared options, :class:`~.common.Run`, the error wrapper); heavy imports
(torch, matplotlib) happen inside the commands so ``--help`` stays quick.
"""

from __future__ import annotations

# importing a command module registers its command, in the order `--help` lists them
# isort: off
from . import layers, randomness, reconstruct, shadow_train, check
from . import propagate  # noqa: F401

# isort: on
from .app import app, main

__all__ = ["app", "main", "check", "layers", "randomness", "reconstruct", "shadow_train"]
