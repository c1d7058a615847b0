"""The Typer application: the ``netprobe`` group, ``--version`` and :func:`main`."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from .. import __version__
from ..errors import EXIT_USAGE
from .common import out

app = typer.Typer(
    name="netprobe",
    help="Analyse trained neural networks the way 'Why are deep nets reversible' "
    "(Arora, Liang & Ma) does: random-like weights, reverse reconstruction through Aᵀ, "
    "and SHADOW training.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"netprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """netprobe: randomness, reconstruction and SHADOW training for trained nets."""


def main() -> None:
    """The ``netprobe`` command."""
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    _exit(code)


def _exit(code: int) -> NoReturn:
    """Exit with ``code``. Once torch is loaded, without the interpreter's teardown: unloading
    torch's modules took 0.75 s of every command's wall time, after its files were written
    (docs/design.md, "Speed"). Threads still running are waited for, atexit handlers run
    and the standard streams are flushed first, as a normal exit would."""
    if "torch" not in sys.modules:
        sys.exit(code)
    import atexit
    import os
    import threading

    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (netprobe ... | head): nothing to flush
            pass
    os._exit(code)
