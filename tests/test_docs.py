"""Every `netprobe` command shown in README.md and sample_reports/README.md parses against
the real CLI (options exist, values convert), and the quick ones run for real. Docs that
drift from the CLI fail here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from netprobe.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "sample_reports" / "README.md"]

#: commands cheap enough to run for real in the test suite
RUN_FOR_REAL = re.compile(r"^netprobe (layers|check --init|--help|--version)\b")


def doc_commands() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        in_block, pending = False, ""
        for line in doc.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_block, pending = not in_block, ""
                continue
            if not in_block:
                continue
            text = line.strip()
            if pending:
                text = pending + " " + text
                pending = ""
            elif text.startswith("$ "):
                text = text[2:]
            elif not text.startswith("netprobe "):
                continue
            if not text.startswith("netprobe "):
                continue
            if text.endswith("\\"):
                pending = text[:-1].strip()
                continue
            out.append((doc.name, text.split(" #", 1)[0].strip()))
    return out


COMMANDS = doc_commands()


def test_docs_show_commands() -> None:
    assert len([c for d, c in COMMANDS if d == "README.md"]) >= 3


@pytest.mark.parametrize("doc,line", COMMANDS, ids=[c for _, c in COMMANDS])
def test_doc_command_parses(doc: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # commands run for real write only here
    args = shlex.split(line)[1:]
    group = typer.main.get_command(app)
    if not args or args[0].startswith("-"):
        return
    ctx = group.make_context("netprobe", list(args[:1]))
    sub = group.get_command(ctx, args[0])
    assert sub is not None, f"{doc}: unknown command in `{line}`"
    with sub.make_context(args[0], args[1:]) as _ctx:  # raises on unknown options / bad values
        pass
    if RUN_FOR_REAL.match(line):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (line, result.stderr)
