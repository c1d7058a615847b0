"""Errors users can cause, each with the exit code the README documents.

Every message is one line that names the problem and the fix. The CLI prints it in red
and exits with ``exit_code``; ``--debug`` shows the traceback as well.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_LOAD = 3
EXIT_NOTHING = 4


class NetprobeError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` follows the README table."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message.strip()
        self.hint = hint.strip() if hint else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.split())


class OptionError(NetprobeError):
    """A bad option value or combination (exit 2)."""

    exit_code = EXIT_USAGE


class LoadError(NetprobeError):
    """A model or file could not be loaded (exit 3)."""

    exit_code = EXIT_LOAD


class UnsafeFileError(LoadError):
    """A file was refused because loading it would run code (exit 3)."""


class DatasetError(LoadError):
    """Input data or a dataset could not be loaded (exit 3)."""


class NothingToAnalyseError(NetprobeError):
    """The model or selection holds nothing the command can analyse (exit 4)."""

    exit_code = EXIT_NOTHING


class OutputExistsError(OptionError):
    """The output folder exists and is not empty (exit 2)."""
