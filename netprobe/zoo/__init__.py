"""``netprobe check``: rules over whole model zoos, one isolated worker process per model.

Targets (files, globs, folders, torchvision names, ``@list.txt``) are expanded and sharded
deterministically; each model is loaded and measured in its own process (``--jobs N``,
``--timeout``), so a crash, out-of-memory kill or hang is that model's error, never the
run's. Rules come from ``--config``, ./netprobe.toml or ``[tool.netprobe.check]`` in
./pyproject.toml (see :data:`STARTER_CONFIG`). Results become JUnit XML, JSON lines and
Markdown. The layout (docs/design.md):

- :mod:`.config`: rules, finding and reading the rules file, the ``--init`` template;
- :mod:`.targets`: expanding targets, ``--shard``;
- :mod:`.rules`: measuring one model against its rules (inside a worker);
- :mod:`.workers`: the process pool, timeouts, crashed workers;
- :mod:`.formats`: JUnit XML, JSON lines, Markdown, reading and comparing a baseline;
- :mod:`.results`: one model's and one rule's result;
- :mod:`.report`: :class:`CheckReport`;
- :mod:`.api`: :func:`check`, the library call behind the command.
"""

from __future__ import annotations

from .api import check
from .config import CONFIG_FILE, STARTER_CONFIG, Config, Rules, init_config, load_config
from .formats import compare_baseline, json_lines, junit_xml, markdown, plural, read_results
from .report import CheckReport
from .results import ModelResult, RuleResult
from .rules import measure
from .targets import MODEL_EXTS, expand_targets, parse_shard, shard
from .workers import run_checks

__all__ = [
    "CONFIG_FILE",
    "MODEL_EXTS",
    "STARTER_CONFIG",
    "CheckReport",
    "Config",
    "ModelResult",
    "RuleResult",
    "Rules",
    "check",
    "compare_baseline",
    "expand_targets",
    "init_config",
    "json_lines",
    "junit_xml",
    "load_config",
    "markdown",
    "measure",
    "parse_shard",
    "plural",
    "read_results",
    "run_checks",
    "shard",
]
