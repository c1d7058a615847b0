"""``netprobe check``'s result formats: JUnit XML (one testcase per model and rule), JSON
lines (one model per line), the Markdown summary, and reading an earlier run's JSON lines
back as a ``--baseline`` to flag drift (docs/design.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ..errors import OptionError
from .config import Config
from .results import ERROR, FAIL, PASS, SKIPPED, ModelResult, RuleResult, status_of


def plural(n: int, noun: str) -> str:
    """``1 model``, ``2 models``, ``0 errors``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------------------------------
# baselines


def read_results(path: Path) -> list[ModelResult]:
    """JSON lines written by --json (one model per line)."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(
            f"--baseline {path}: no such file", hint="pass the --json output of an earlier run"
        )
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(ModelResult.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise OptionError(
                f"--baseline {path}: line {n} is not a netprobe check result ({e})",
                hint="pass the --json output of an earlier `netprobe check`",
            ) from e
    return out


def _drift(new: RuleResult, old: RuleResult, tol: dict[str, float] | None) -> RuleResult | None:
    if new.value is None or old.value is None:
        return None
    tol = tol or {}
    t = float(tol.get(new.rule, tol.get(new.rule.split(":", 1)[-1], tol.get("default", 0.05))))
    delta = new.value - old.value
    return RuleResult(
        f"drift:{new.rule}",
        FAIL if abs(delta) > t else PASS,
        delta,
        t,
        new.layer,
        f"{old.value:.4g} -> {new.value:.4g} (tolerance {t:g})",
    )


def compare_baseline(
    results: list[ModelResult], baseline: list[ModelResult], config: Config
) -> list[ModelResult]:
    """Add a ``drift:RULE`` result wherever a measured value moved beyond its tolerance
    (``[drift]`` in the config; a rule's own name, its statistic, else ``default``)."""
    prev = {r.model: r for r in baseline}
    out = []
    for res in results:
        old = prev.get(res.model)
        if old is None or res.status == ERROR:
            out.append(res)
            continue
        tol = dict(config.for_model(res.model).drift)
        before = {r.rule: r for r in old.rules}
        extra = [
            d
            for r in res.rules
            if r.rule in before and (d := _drift(r, before[r.rule], tol)) is not None
        ]
        rules = res.rules + tuple(extra)
        out.append(replace(res, rules=rules, status=status_of(rules)))
    return out


# ---------------------------------------------------------------------------------------
# output formats


def _detail(r: RuleResult) -> str:
    if r.value is None:
        return r.message
    thr = f", threshold {r.threshold:g})" if r.threshold is not None else ")"
    return f"{r.message} (value {r.value:.6g}{thr}"


def junit_xml(results: list[ModelResult], seconds: float) -> str:
    """One <testcase> per model and rule: classname = model, name = rule."""
    cases = [(res, r) for res in results for r in res.rules]
    fails = sum(r.status == FAIL for _, r in cases)
    errors = sum(r.status == ERROR for _, r in cases)
    skipped = sum(r.status == SKIPPED for _, r in cases)
    counts = f'tests="{len(cases)}" failures="{fails}" errors="{errors}"'
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="netprobe check" {counts} time="{seconds:.3f}">',
        f'  <testsuite name="netprobe check" {counts} skipped="{skipped}" time="{seconds:.3f}">',
    ]
    tag = {FAIL: "failure", ERROR: "error"}
    for res, r in cases:
        t = res.seconds / max(1, len(res.rules))
        head = f"    <testcase classname={quoteattr(res.model)} name={quoteattr(r.rule)} "
        head += f'time="{t:.3f}"'
        detail = _detail(r)
        if r.status == PASS:
            lines.append(head + " />")
        elif r.status in tag:
            el = tag[r.status]
            lines += [
                head + ">",
                f"      <{el} message={quoteattr(detail)}>{escape(detail)}</{el}>",
                "    </testcase>",
            ]
        else:
            lines += [
                head + ">",
                f"      <skipped message={quoteattr(detail)} />",
                "    </testcase>",
            ]
    lines += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def json_lines(results: list[ModelResult]) -> str:
    from ..report import _jsonable

    return "".join(json.dumps(_jsonable(r.to_dict()), allow_nan=False) + "\n" for r in results)


def counts(results: list[ModelResult]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in (PASS, FAIL, ERROR)}


def summary(results: list[ModelResult]) -> str:
    """``3 models: 1 passed, 1 failed, 1 error``."""
    n = counts(results)
    return (
        f"{plural(len(results), 'model')}: {n[PASS]} passed, {n[FAIL]} failed, "
        f"{plural(n[ERROR], 'error')}"
    )


def markdown(results: list[ModelResult]) -> str:
    icon = {PASS: "✅", FAIL: "❌", ERROR: "⚠️", SKIPPED: "⏭️"}
    text = (
        f"### netprobe check: {summary(results).replace(': ', ' — ', 1)}\n\n"
        "| model | rule | status | value | threshold | detail |\n|---|---|---|---|---|---|\n"
    )
    for res in results:
        for r in res.rules:
            v = "" if r.value is None else f"{r.value:.4g}"
            t = "" if r.threshold is None else f"{r.threshold:g}"
            detail = r.message.replace("|", "\\|")
            status = f"{icon.get(r.status, r.status)} {r.status}"
            text += f"| `{res.model}` | {r.rule} | {status} | {v} | {t} | {detail} |\n"
    return text
