""":func:`check`, the library call behind ``netprobe check`` (``netprobe.check(...)``):
validate the options, find the rules, expand and shard the targets, run the workers,
compare with a baseline and write the files asked for (docs/design.md)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import NothingToAnalyseError, OptionError
from .config import Config, load_config
from .formats import compare_baseline, plural, read_results
from .report import CheckReport, check_destinations
from .results import ModelResult
from .targets import expand_targets, parse_shard
from .targets import shard as take_shard


def _check_options(
    targets: list[str], jobs: int, timeout: float | None, threads: int | None
) -> None:
    if not targets:
        raise OptionError(
            "no models to check", hint="pass files, folders, globs, names or @list.txt (see --help)"
        )
    if jobs < 1:
        raise OptionError(f"--jobs {jobs}: must be at least 1", hint="e.g. --jobs 2")
    if timeout is not None and timeout <= 0:
        raise OptionError(
            f"--timeout {timeout:g}: must be positive", hint="seconds, e.g. --timeout 600"
        )
    if threads is not None and threads < 1:
        raise OptionError(f"--threads {threads}: must be at least 1", hint="e.g. --threads 1")


def check(
    targets: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    config: Config | str | os.PathLike[str] | None = None,
    jobs: int = 1,
    timeout: float | None = None,
    shard: str | tuple[int, int] | None = None,
    baseline: str | os.PathLike[str] | list[ModelResult] | None = None,
    junit: str | os.PathLike[str] | None = None,
    json: str | os.PathLike[str] | None = None,
    markdown: str | os.PathLike[str] | None = None,
    weights: str = "default",
    arch: str | None = None,
    trust_pickle: bool = False,
    device: str = "cpu",
    seed: int = 0,
    threads: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> CheckReport:
    """Check every model in ``targets`` (files, globs, folders, names, ``@list.txt``)
    against the rules, each in its own worker process (``jobs`` at a time, ``threads``
    torch threads each), and return a :class:`CheckReport`; ``report.exit_code()`` is 0
    when all passed, 1 when a rule failed, 3 when a model could not be checked.

    ``config``: a :class:`Config`, a rules file, or None to look for ./netprobe.toml, then
    ``[tool.netprobe.check]`` in ./pyproject.toml, then use the built-in rules.
    ``baseline``: the ``json`` output of an earlier run (or its results): adds drift rules.
    ``junit``/``json``/``markdown``: files to write the results to (as ``--junit`` etc.).
    ``progress(done, total, label)`` is called as each model finishes; ``log(text)`` gets
    plain-text lines saying what is checked and with which rules file.
    """
    from ..runtime import resolve_device

    items = [str(targets)] if isinstance(targets, (str, os.PathLike)) else list(map(str, targets))
    # options first: nothing runs and nothing is written when one is wrong
    _check_options(items, jobs, timeout, threads)
    check_destinations(junit=junit, json=json, markdown=markdown)
    dev = resolve_device(device)
    which = parse_shard(f"{shard[0]}/{shard[1]}" if isinstance(shard, tuple) else shard)
    cfg = config if isinstance(config, Config) else load_config(config)
    prev = read_results(Path(baseline)) if isinstance(baseline, (str, os.PathLike)) else baseline
    todo = take_shard(expand_targets(items), which)
    if not todo:
        raise NothingToAnalyseError(
            "no models to check after expanding the targets"
            + (f" and taking shard {which[0]}/{which[1]}" if which else ""),
            hint="check the paths and globs",
        )
    say = log or (lambda _text: None)
    say(
        f"checking {plural(len(todo), 'model')} with {plural(min(jobs, len(todo)), 'worker')}; "
        f"rules from {cfg.source}"
    )
    if cfg.note:
        say(f"note: {cfg.note}")

    done = 0

    def on_done(res: ModelResult) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(todo), f"{res.status} {Path(res.model).name}")

    opts = {
        "weights": weights,
        "arch": arch,
        "trust_pickle": trust_pickle,
        "device": dev,
        "seed": seed,
        "threads": threads,
    }
    from .workers import run_checks

    t0 = time.time()
    if progress is not None:
        progress(0, len(todo), "check")
    results = run_checks(todo, cfg, jobs=jobs, timeout=timeout, opts=opts, on_done=on_done)
    if prev is not None:
        results = compare_baseline(results, prev, cfg)
    report = CheckReport(
        results,
        seconds=time.time() - t0,
        config_source=cfg.source,
        config_note=cfg.note,
        jobs=jobs,
        shard=f"{which[0]}/{which[1]}" if which else None,
        baseline=str(baseline) if isinstance(baseline, (str, os.PathLike)) else None,
    )
    report.write_files(junit=junit, json=json, markdown=markdown)
    return report
