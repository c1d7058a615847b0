""":class:`CheckReport`, what ``netprobe.check(...)`` returns: every model's results with
the Report surface (``to_frame``, ``to_dict``, ``to_markdown``, ``write``, ``headline``),
the exit code, and :meth:`CheckReport.write_files` for the ``--junit/--json/--markdown``
files the user names (docs/design.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EXIT_CHECK_FAILED, EXIT_LOAD, EXIT_OK
from ..report import OutputDir, as_output_dir, atomic_write_text
from .formats import counts, json_lines, junit_xml, markdown, summary
from .results import ERROR, FAIL, ModelResult

#: the names write(output_dir) gives the three formats
FILE_NAMES = {"junit": "check.xml", "json": "check.jsonl", "markdown": "check.md"}


@dataclass
class CheckReport:
    """The results of checking a zoo, in target order, and how the run was set up."""

    results: list[ModelResult]
    seconds: float = 0.0
    config_source: str = "built-in defaults"
    config_note: str | None = None
    jobs: int = 1
    shard: str | None = None
    baseline: str | None = None
    files: list[str] = field(default_factory=list)  # written by write_files

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "model": r.model,
                "rule": x.rule,
                "status": x.status,
                "value": x.value,
                "threshold": x.threshold,
                "layer": x.layer,
                "message": x.message,
            }
            for r in self.results
            for x in r.rules
        ]

    def to_frame(self) -> Any:
        import pandas as pd

        cols = ["model", "rule", "status", "value", "threshold", "layer", "message"]
        return pd.DataFrame(self.rows(), columns=cols)

    def counts(self) -> dict[str, int]:
        """Models that passed, failed, and could not be checked (``error``)."""
        return counts(self.results)

    def summary(self) -> str:
        """One line: ``3 models: 1 passed, 1 failed, 1 error in 2.0 s``."""
        return f"{summary(self.results)} in {self.seconds:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.headline(),
            "config": self.config_source,
            "config_note": self.config_note,
            "jobs": self.jobs,
            "shard": self.shard,
            "baseline": self.baseline,
            "seconds": round(self.seconds, 3),
            "results": [r.to_dict() for r in self.results],
        }

    def to_markdown(self) -> str:
        return markdown(self.results)

    def to_junit(self) -> str:
        return junit_xml(self.results, self.seconds)

    def to_json_lines(self) -> str:
        return json_lines(self.results)

    def headline(self) -> dict[str, Any]:
        n = self.counts()
        return {
            "models": len(self.results),
            "passed": n["pass"],
            "failed": n["fail"],
            "errors": n["error"],
            "exit_code": self.exit_code(),
        }

    def exit_code(self) -> int:
        """3 when a model could not be checked (load failure, crash, timeout), else 1 when
        a rule failed, else 0 (the README's exit-code table)."""
        if any(r.status == ERROR for r in self.results):
            return EXIT_LOAD
        if any(r.status == FAIL for r in self.results):
            return EXIT_CHECK_FAILED
        return EXIT_OK

    def _texts(self) -> dict[str, str]:
        return {
            "junit": self.to_junit(),
            "json": self.to_json_lines(),
            "markdown": self.to_markdown(),
        }

    def write_files(
        self,
        *,
        junit: str | os.PathLike[str] | None = None,
        json: str | os.PathLike[str] | None = None,
        markdown: str | os.PathLike[str] | None = None,
    ) -> list[str]:
        """Write the formats asked for to the paths the user named (``--junit``, ``--json``,
        ``--markdown``), each atomically; returns the paths written."""
        dest = {"junit": junit, "json": json, "markdown": markdown}
        check_destinations(**dest)
        texts = self._texts()
        written = []
        for kind, path in dest.items():
            if path is not None:
                written.append(str(atomic_write_text(Path(path), texts[kind])))
        self.files += written
        return written

    def write(self, output: OutputDir | str | os.PathLike[str]) -> list[str]:
        """The same three formats into an output folder: check.xml, check.jsonl, check.md."""
        out = as_output_dir(output)
        for kind, text in self._texts().items():
            out.write_text(FILE_NAMES[kind], text)
        return list(FILE_NAMES.values())


def check_destinations(**paths: str | os.PathLike[str] | None) -> None:
    """Refuse an output path that is a folder before anything runs."""
    from ..errors import OptionError

    for kind, path in paths.items():
        if path is not None and Path(path).is_dir():
            raise OptionError(f"--{kind} {path}: is a folder", hint="give a file path")
