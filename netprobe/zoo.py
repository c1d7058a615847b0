"""``netprobe check``: rules over whole model zoos, one isolated worker process per model.

Targets (files, globs, folders, torchvision names, ``@list.txt``) are expanded and sharded
deterministically; each model is loaded and measured in its own process (``--jobs N``,
``--timeout``), so a crash, out-of-memory kill or hang is that model's error, never the run's.
Rules come from ``[tool.netprobe.check]`` in pyproject.toml or a ``--config`` TOML file with
the same keys (see :data:`STARTER_CONFIG`). Results become JUnit XML, JSON lines and Markdown.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .errors import NetprobeError, OptionError

MODEL_EXTS = {
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".pt2",
    ".safetensors",
    ".onnx",
    ".ts",
    ".jit",
    ".tar",
    ".pkl",
}

STARTER_CONFIG = """\
# netprobe check configuration. Put these keys under [tool.netprobe.check] in pyproject.toml,
# or keep this file and pass --config netprobe.toml.
[tool.netprobe.check]
# Weight layers to check (glob patterns on tensor names or module paths).
layers = ["*"]
exclude = []
# Structural rules: no NaN/Inf in any weight; no dead layer (all-zero or constant matrix).
no_nan = true
no_dead_layer = true
# Seconds one model may take before its worker is stopped and the model reported as an error.
timeout = 600

# Per-layer upper bounds on randomness statistics (`netprobe randomness` computes them;
# see its layers.csv for the column names). A layer above a bound fails the rule.
[tool.netprobe.check.max]
s_max_over_edge = 100      # top singular value over the Marchenko-Pastur bulk edge (the default)
# spectrum_ks = 0.25        # distance of the singular-value distribution from Marchenko-Pastur
# spike_fraction = 0.05     # fraction of singular values above the bulk edge
# excess_kurtosis = 20      # heavy-tailed entries

# Per-layer lower bounds, same column names.
[tool.netprobe.check.min]

# Optional reversibility rule: generate through A^T at this hidden layer and require the
# relative error of the re-inferred layer to stay below max_error.
# [tool.netprobe.check.reconstruct]
# layer = "h2"
# max_error = 0.9
# num = 16
# inputs = "path/to/images-or.npz"   # default: the bundled digits (for digit nets)

# Tolerances for --baseline previous.json: a rule whose measured value moved by more than
# this (absolute) fails as drift. `default` covers rules not named.
[tool.netprobe.check.drift]
default = 0.05

# Per-model overrides: the first entry whose `match` glob fits the model wins.
# [[tool.netprobe.check.models]]
# match = "*resnet*"
# max = { spike_fraction = 0.2 }
# skip = ["no_dead_layer"]
"""

_TOP_KEYS = {
    "layers",
    "exclude",
    "no_nan",
    "no_dead_layer",
    "timeout",
    "max",
    "min",
    "reconstruct",
    "drift",
    "models",
}


@dataclass(frozen=True)
class Rules:
    """The rules for one model (after per-model overrides)."""

    layers: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    no_nan: bool = True
    no_dead_layer: bool = True
    timeout: float = 600.0
    # a layer whose top singular value is 100x the random bulk's edge is dominated by one
    # direction (rank collapse, a blown-up weight); trained nets measured here stay below 10
    max: Mapping[str, float] = field(default_factory=lambda: {"s_max_over_edge": 100.0})
    min: Mapping[str, float] = field(default_factory=dict)
    reconstruct: Mapping[str, Any] | None = None
    drift: Mapping[str, float] = field(default_factory=lambda: {"default": 0.05})
    skip: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    base: Rules
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    source: str = "built-in defaults"

    def for_model(self, name: str) -> Rules:
        for pattern, over in self.overrides:
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(Path(name).name, pattern):
                return _apply(self.base, over, f"override '{pattern}'")
        return self.base


def _apply(rules: Rules, table: Mapping[str, Any], where: str) -> Rules:
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key == "match":
            continue
        if key in ("layers", "exclude", "skip"):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise OptionError(
                    f"{where}: '{key}' must be a list of strings",
                    hint='e.g. layers = ["features.*"]',
                )
            changes[key] = tuple(value)
        elif key in ("no_nan", "no_dead_layer"):
            if not isinstance(value, bool):
                raise OptionError(f"{where}: '{key}' must be true or false", hint=f"{key} = true")
            changes[key] = value
        elif key == "timeout":
            if not isinstance(value, (int, float)) or value <= 0:
                raise OptionError(
                    f"{where}: 'timeout' must be a positive number of seconds", hint="timeout = 600"
                )
            changes[key] = float(value)
        elif key in ("max", "min", "drift"):
            if not isinstance(value, Mapping) or not all(
                isinstance(v, (int, float)) for v in value.values()
            ):
                raise OptionError(
                    f"{where}: [{key}] must map statistic names to numbers",
                    hint="e.g. spectrum_ks = 0.25",
                )
            merged = dict(getattr(rules, key))
            merged.update({str(k): float(v) for k, v in value.items()})
            changes[key] = merged
        elif key == "reconstruct":
            if not isinstance(value, Mapping) or "layer" not in value or "max_error" not in value:
                raise OptionError(
                    f"{where}: [reconstruct] needs 'layer' and 'max_error'",
                    hint='layer = "h2", max_error = 0.9',
                )
            changes[key] = dict(value)
        else:
            raise OptionError(
                f"{where}: unknown key '{key}'",
                hint="known keys: " + ", ".join(sorted(_TOP_KEYS - {"models"} | {"match", "skip"})),
            )
    return replace(rules, **changes)


def load_config(path: Path | None = None, cwd: Path | None = None) -> Config:
    """Rules from ``--config`` or from ``[tool.netprobe.check]`` in ./pyproject.toml."""
    import tomllib

    if path is None:
        pyproject = (cwd or Path.cwd()) / "pyproject.toml"
        if not pyproject.is_file():
            return Config(Rules())
        path, required = pyproject, False
    else:
        required = True
        if not path.is_file():
            raise OptionError(
                f"--config {path}: no such file", hint="create one with `netprobe check --init`"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OptionError(
            f"{path}: not valid TOML ({e})",
            hint="fix the syntax; `netprobe check --init` writes a valid starter",
        ) from e
    table = data.get("tool", {}).get("netprobe", {}).get("check")
    if table is None:
        table = data.get("check", data if required else None)
    if table is None:
        return Config(Rules())
    if not isinstance(table, Mapping):
        raise OptionError(
            f"{path}: [tool.netprobe.check] must be a table", hint="see `netprobe check --init`"
        )
    models = table.get("models", [])
    if not isinstance(models, list) or not all(
        isinstance(m, Mapping) and isinstance(m.get("match"), str) for m in models
    ):
        raise OptionError(
            f"{path}: [[tool.netprobe.check.models]] entries need a 'match' glob",
            hint='match = "*resnet*"',
        )
    base = _apply(Rules(), {k: v for k, v in table.items() if k != "models"}, str(path))
    overrides = tuple((str(m["match"]), dict(m)) for m in models)
    for pattern, over in overrides:  # validate now, not in a worker
        _apply(base, over, f"{path}: override '{pattern}'")
    return Config(base, overrides, str(path))


# ---------------------------------------------------------------------------------------
# targets


def _looks_like_model(path: Path) -> bool:
    if path.suffix.lower() in MODEL_EXTS:
        return True
    from .loading import sniff

    try:
        return not sniff(path).startswith("unknown:")
    except OSError:
        return False


def expand_targets(items: Iterable[str], base: Path | None = None, _depth: int = 0) -> list[str]:
    """Files, globs, folders (searched recursively), model names and @list.txt files ->
    an ordered, de-duplicated list of MODEL specs."""
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("@"):
            lst = Path(item[1:])
            if base is not None and not lst.is_absolute():
                lst = base / lst
            if not lst.is_file():
                raise OptionError(
                    f"{item}: no such list file", hint="give one MODEL per line in a text file"
                )
            if _depth > 8:
                raise OptionError(
                    f"{item}: list files nest too deeply", hint="flatten the @list files"
                )
            lines = lst.read_text(encoding="utf-8").splitlines()
            out += expand_targets(lines, lst.parent, _depth + 1)
            continue
        p = Path(item).expanduser()
        if base is not None and not p.is_absolute() and (base / p).exists():
            p = base / p
        if any(c in item for c in "*?["):
            hits = sorted(glob.glob(str(p), recursive=True))
            out += expand_targets([h for h in hits], None, _depth + 1) if hits else []
            if not hits:
                raise OptionError(
                    f"{item}: the pattern matches no file",
                    hint="check the glob (quote it so the shell leaves it alone)",
                )
            continue
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and _looks_like_model(f)
            )
            out += [str(f) for f in found]
            continue
        out.append(str(p) if p.exists() else item)
    return list(dict.fromkeys(out))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        k = n = 0
    if n < 1 or not 1 <= k <= n:
        raise OptionError(f"--shard {text}: expected K/N with 1 <= K <= N", hint="e.g. --shard 1/4")
    return k, n


def shard(targets: list[str], which: tuple[int, int] | None) -> list[str]:
    """Deterministic split: the K-th of N shards holds every N-th target of the sorted list."""
    if which is None:
        return targets
    k, n = which
    return [t for i, t in enumerate(sorted(targets)) if i % n == k - 1]


# ---------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class RuleResult:
    rule: str
    status: str  # pass | fail | error | skipped
    value: float | None = None
    threshold: float | None = None
    layer: str | None = None  # the worst layer, for per-layer rules
    message: str = ""


@dataclass(frozen=True)
class ModelResult:
    model: str
    status: str  # pass | fail | error
    rules: tuple[RuleResult, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rules"] = [asdict(r) for r in self.rules]
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ModelResult:
        rules = tuple(RuleResult(**r) for r in d.get("rules", []))
        return ModelResult(
            d["model"],
            d["status"],
            rules,
            d.get("error"),
            float(d.get("seconds", 0.0)),
            d.get("sha256"),
        )


def _status(rules: Iterable[RuleResult]) -> str:
    st = [r.status for r in rules]
    return "error" if "error" in st else "fail" if "fail" in st else "pass"


# ---------------------------------------------------------------------------------------
# measuring one model (runs inside the worker process)


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def measure(spec: str, rules: Rules, opts: Mapping[str, Any]) -> ModelResult:
    """Load one model and evaluate every rule. Raises NetprobeError for load failures."""
    import torch

    from .loading import load
    from .netlayers import as_matrix, weight_layers

    t0 = time.time()
    lm = load(
        spec,
        weights=opts.get("weights", "default"),
        trust_pickle=bool(opts.get("trust_pickle")),
        arch=opts.get("arch"),
    )
    out: list[RuleResult] = []
    layers = weight_layers(lm.tensors, lm.module, list(rules.layers), list(rules.exclude))

    if "no_nan" not in rules.skip and rules.no_nan:
        bad = [
            k
            for k, t in lm.tensors.items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
        n = len(bad)
        out.append(
            RuleResult(
                "no_nan",
                "fail" if n else "pass",
                float(n),
                0.0,
                bad[0] if bad else None,
                f"{n} tensors hold NaN/Inf: {', '.join(bad[:5])}" if n else "all weights finite",
            )
        )
    if "no_dead_layer" not in rules.skip and rules.no_dead_layer:
        dead = []
        for wl in layers:
            m = as_matrix(wl, lm.tensors)
            if m.numel() > 1 and bool(torch.isfinite(m).all()) and float(m.float().std()) == 0.0:
                dead.append(wl.name)
        out.append(
            RuleResult(
                "no_dead_layer",
                "fail" if dead else "pass",
                float(len(dead)),
                0.0,
                dead[0] if dead else None,
                f"constant or all-zero: {', '.join(dead[:5])}"
                if dead
                else f"{len(layers)} layers vary",
            )
        )
    bounds = {k: v for k, v in rules.max.items()}
    lows = {k: v for k, v in rules.min.items()}
    if bounds or lows:
        out += _randomness_rules(lm, rules, bounds, lows, opts)
    if rules.reconstruct and "reconstruct" not in rules.skip:
        out.append(_reconstruct_rule(lm, rules.reconstruct, opts))
    return ModelResult(spec, _status(out), tuple(out), None, round(time.time() - t0, 3), lm.sha256)


def _randomness_rules(
    lm: Any,
    rules: Rules,
    bounds: Mapping[str, float],
    lows: Mapping[str, float],
    opts: Mapping[str, Any],
) -> list[RuleResult]:
    from .iid import analyse

    report = analyse(
        lm,
        include=list(rules.layers),
        exclude=list(rules.exclude),
        device=opts.get("device", "cpu"),
        seed=int(opts.get("seed", 0)),
    )
    frame = report.to_frame()
    out: list[RuleResult] = []
    for stat, limits in (("max", bounds), ("min", lows)):
        for col, thr in limits.items():
            name = f"{stat}:{col}"
            if col not in frame.columns:
                known = ", ".join(c for c in frame.columns if frame[c].dtype.kind in "fi")
                out.append(
                    RuleResult(
                        name, "error", None, thr, None, f"no statistic '{col}'; known: {known}"
                    )
                )
                continue
            worst_val, worst_layer, failing = None, None, []
            for _, row in frame.iterrows():
                v = _finite(row[col])
                if v is None:
                    continue
                bad = v > thr if stat == "max" else v < thr
                if bad:
                    failing.append(str(row.get("layer", row.get("name", "?"))))
                if worst_val is None or (v > worst_val if stat == "max" else v < worst_val):
                    worst_val, worst_layer = v, str(row.get("layer", row.get("name", "?")))
            msg = (
                f"{len(failing)} layers {'above' if stat == 'max' else 'below'} {thr:g}: {', '.join(failing[:5])}"
                if failing
                else f"worst {worst_val if worst_val is not None else 'n/a'} at {worst_layer}"
            )
            out.append(
                RuleResult(name, "fail" if failing else "pass", worst_val, thr, worst_layer, msg)
            )
    return out


def _reconstruct_rule(lm: Any, cfg: Mapping[str, Any], opts: Mapping[str, Any]) -> RuleResult:
    from .reconstruction import check_error

    thr = float(cfg["max_error"])
    err = check_error(
        lm,
        layer=str(cfg["layer"]),
        num=int(cfg.get("num", 16)),
        inputs=cfg.get("inputs"),
        seed=int(opts.get("seed", 0)),
        device=opts.get("device", "cpu"),
    )
    return RuleResult(
        "reconstruct",
        "fail" if err > thr else "pass",
        err,
        thr,
        str(cfg["layer"]),
        f"relative error of re-inferred {cfg['layer']}: {err:.3g}",
    )


def _worker(conn: Any, spec: str, rules: Rules, opts: Mapping[str, Any], path: list[str]) -> None:
    """Child process body: measure one model and send back a plain dict."""
    sys.path[:] = path
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.get("threads", 1)))
    try:
        import torch

        torch.set_num_threads(int(opts.get("threads", 1)))
        res = measure(spec, rules, opts)
        conn.send(("ok", res.to_dict()))
    except NetprobeError as e:
        conn.send(("load" if e.exit_code == 3 else "error", e.one_line()))
    except MemoryError:
        conn.send(("error", "out of memory"))
    except BaseException as e:  # noqa: BLE001 - any failure is this model's error
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        conn.send(("error", f"{type(e).__name__}: {msg[:300]}"))
    finally:
        conn.close()


def _death(code: int | None) -> str:
    import signal

    if code is None:
        return "worker vanished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker died from {name}{hint}"
    return f"worker exited with code {code} before reporting"


def _context() -> Any:
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "netprobe.zoo", "netprobe.loading"])
        return ctx
    return mp.get_context("spawn")


def run_checks(
    targets: list[str],
    config: Config,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    opts: Mapping[str, Any] | None = None,
    on_done: Callable[[ModelResult], None] | None = None,
) -> list[ModelResult]:
    """Check every target in its own worker process, ``jobs`` at a time. Results come back
    in target order; a crash, hang or load failure is that model's ``error``."""
    opts = dict(opts or {})
    ctx = _context()
    pending = list(enumerate(targets))
    running: dict[int, tuple[Any, Any, float, float, str]] = {}
    results: dict[int, ModelResult] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                i, spec = pending.pop(0)
                rules = config.for_model(spec)
                limit = float(timeout if timeout is not None else rules.timeout)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_worker, args=(child, spec, rules, opts, list(sys.path)), daemon=True
                )
                proc.start()
                child.close()
                running[i] = (proc, parent, time.time(), limit, spec)
            finished = []
            for i, (proc, conn, t0, limit, spec) in running.items():
                res: ModelResult | None = None
                if conn.poll():
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError):
                        proc.join(5)
                        kind, payload = "error", _death(proc.exitcode)
                    if kind == "ok":
                        res = ModelResult.from_dict(payload)
                    else:
                        rule = "load" if kind == "load" else "worker"
                        res = ModelResult(
                            spec,
                            "error",
                            (RuleResult(rule, "error", message=payload),),
                            payload,
                            round(time.time() - t0, 3),
                        )
                    proc.join(10)
                elif not proc.is_alive():
                    msg = _death(proc.exitcode)
                    res = ModelResult(
                        spec,
                        "error",
                        (RuleResult("worker", "error", message=msg),),
                        msg,
                        round(time.time() - t0, 3),
                    )
                elif time.time() - t0 > limit:
                    proc.terminate()
                    proc.join(3)
                    if proc.is_alive():
                        proc.kill()
                        proc.join(3)
                    msg = f"timed out after {limit:g} s"
                    res = ModelResult(
                        spec,
                        "error",
                        (RuleResult("worker", "error", message=msg),),
                        msg,
                        round(limit, 3),
                    )
                if res is not None:
                    conn.close()
                    results[i] = res
                    finished.append(i)
                    if on_done:
                        on_done(res)
            for i in finished:
                running.pop(i)
            if running and not finished:
                time.sleep(0.02)
    finally:
        for proc, conn, *_ in running.values():
            proc.kill()
            conn.close()
    return [results[i] for i in range(len(targets))]


# ---------------------------------------------------------------------------------------
# baselines


def read_results(path: Path) -> list[ModelResult]:
    """JSON lines written by --json (one model per line)."""
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


def compare_baseline(
    results: list[ModelResult], baseline: list[ModelResult], config: Config
) -> list[ModelResult]:
    """Add a ``drift:RULE`` result wherever a measured value moved beyond its tolerance, and
    a failing ``drift:weights`` where the file changed and the value moved."""
    prev = {r.model: r for r in baseline}
    out = []
    for res in results:
        old = prev.get(res.model)
        if old is None or res.status == "error":
            out.append(res)
            continue
        tol = config.for_model(res.model).drift
        before = {r.rule: r for r in old.rules}
        extra = []
        for r in res.rules:
            o = before.get(r.rule)
            if o is None or r.value is None or o.value is None:
                continue
            t = float(tol.get(r.rule, tol.get(r.rule.split(":", 1)[-1], tol.get("default", 0.05))))
            delta = r.value - o.value
            moved = abs(delta) > t
            extra.append(
                RuleResult(
                    f"drift:{r.rule}",
                    "fail" if moved else "pass",
                    delta,
                    t,
                    r.layer,
                    f"{o.value:.4g} -> {r.value:.4g} (tolerance {t:g})",
                )
            )
        rules = res.rules + tuple(extra)
        out.append(replace(res, rules=rules, status=_status(rules)))
    return out


# ---------------------------------------------------------------------------------------
# output formats


def junit_xml(results: list[ModelResult], seconds: float) -> str:
    """One <testcase> per model and rule: classname = model, name = rule."""
    cases = [(res, r) for res in results for r in res.rules]
    fails = sum(r.status == "fail" for _, r in cases)
    errors = sum(r.status == "error" for _, r in cases)
    skipped = sum(r.status == "skipped" for _, r in cases)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="netprobe check" tests="{len(cases)}" failures="{fails}" errors="{errors}" time="{seconds:.3f}">',
        f'  <testsuite name="netprobe check" tests="{len(cases)}" failures="{fails}" errors="{errors}" '
        f'skipped="{skipped}" time="{seconds:.3f}">',
    ]
    for res, r in cases:
        t = res.seconds / max(1, len(res.rules))
        head = f'    <testcase classname={quoteattr(res.model)} name={quoteattr(r.rule)} time="{t:.3f}"'
        detail = r.message
        if r.value is not None:
            detail = f"{r.message} (value {r.value:.6g}" + (
                f", threshold {r.threshold:g})" if r.threshold is not None else ")"
            )
        if r.status == "pass":
            lines.append(head + " />")
        elif r.status == "fail":
            lines += [
                head + ">",
                f"      <failure message={quoteattr(detail)}>{escape(detail)}</failure>",
                "    </testcase>",
            ]
        elif r.status == "error":
            lines += [
                head + ">",
                f"      <error message={quoteattr(detail)}>{escape(detail)}</error>",
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
    from .report import _jsonable

    return "".join(json.dumps(_jsonable(r.to_dict()), allow_nan=False) + "\n" for r in results)


def markdown(results: list[ModelResult]) -> str:
    icon = {"pass": "✅", "fail": "❌", "error": "⚠️", "skipped": "⏭️"}
    n = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "error")}
    text = (
        f"### netprobe check: {len(results)} models — {n['pass']} passed, {n['fail']} failed, "
        f"{n['error']} errors\n\n| model | rule | status | value | threshold | detail |\n|---|---|---|---|---|---|\n"
    )
    for res in results:
        for r in res.rules:
            v = "" if r.value is None else f"{r.value:.4g}"
            t = "" if r.threshold is None else f"{r.threshold:g}"
            detail = r.message.replace("|", "\\|")
            text += f"| `{res.model}` | {r.rule} | {icon.get(r.status, r.status)} {r.status} | {v} | {t} | {detail} |\n"
    return text


def exit_code(results: list[ModelResult]) -> int:
    from .errors import EXIT_CHECK_FAILED, EXIT_LOAD, EXIT_OK

    if any(r.status == "error" for r in results):
        return EXIT_LOAD
    if any(r.status == "fail" for r in results):
        return EXIT_CHECK_FAILED
    return EXIT_OK
