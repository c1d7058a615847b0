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
RUN_FOR_REAL = re.compile(r"^netprobe (layers|check --init)\b")


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
    if not args:
        return
    if args[0].startswith("-"):  # top-level options (--help, --version) run for real
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (line, result.stderr)
        return
    ctx = group.make_context("netprobe", list(args[:1]))
    sub = group.get_command(ctx, args[0])
    assert sub is not None, f"{doc}: unknown command in `{line}`"
    with sub.make_context(args[0], args[1:]) as _ctx:  # raises on unknown options / bad values
        pass
    if RUN_FOR_REAL.match(line):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (line, result.stderr)


def python_snippets() -> list[str]:
    """The ```python blocks of README.md's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every snippet in the README's Python section runs, in order, in one namespace (so a
    later snippet may use an earlier one's names), offline, in a scratch folder."""
    snippets = python_snippets()
    assert len(snippets) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, code in enumerate(snippets):
        exec(compile(code, f"README.md python snippet {i + 1}", "exec"), namespace)


def test_api_verbs_stay_callable_after_their_modules_are_imported() -> None:
    """Importing the library modules must not shadow the API functions of the same name."""
    import importlib

    import netprobe

    for mod in ("iid", "reconstruction", "shadow", "zoo", "listing", "netlayers", "loading"):
        importlib.import_module(f"netprobe.{mod}")
    for verb in ("randomness", "reconstruct", "shadow_train", "check", "layers"):
        assert callable(getattr(netprobe, verb)), verb
    assert netprobe.layers().weight  # twice in a row, after the imports
    assert netprobe.layers().weight
