"""Where ``netprobe check`` gets its rules: the :class:`Rules` one model is held to, the
:class:`Config` with per-model overrides, finding and reading the rules file, and the
commented starter ``check --init`` writes (:data:`STARTER_CONFIG`). See docs/design.md.

The rules file is looked for in this order (:func:`load_config`):

1. ``--config FILE`` when given;
2. ``./netprobe.toml`` (what ``netprobe check --init`` writes);
3. ``[tool.netprobe.check]`` in ``./pyproject.toml``;
4. the built-in defaults (:class:`Rules`).

When both ``./netprobe.toml`` and ``./pyproject.toml`` hold rules, ``netprobe.toml`` wins
and :attr:`Config.note` says so.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import OptionError

#: the rules file ``check --init`` writes and ``check`` looks for in the working folder
CONFIG_FILE = "netprobe.toml"

STARTER_CONFIG = """\
# netprobe check configuration. `netprobe check` looks for its rules in this order:
#   1. --config FILE;  2. ./netprobe.toml (this file);
#   3. [tool.netprobe.check] in ./pyproject.toml;  4. built-in defaults.
# Keep this file next to your models' CI job, or copy its tables into pyproject.toml.
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
# gen_scale = "theory"   # the reverse net's scale: theory, calibrated or a number (--gen-scale)
# gen_keep = 1.0         # keep-probability of the generated units, in (0, 1] (--gen-keep)

# Optional propagation rule (`netprobe propagate`'s columns, per hidden layer h1..hL, the
# model's rows on one input source): at least one bound.
# [tool.netprobe.check.propagate]
# max_dead_frac = 0.5       # share of a layer's units active on none of the inputs
# max_always_on_frac = 0.5  # share active on every input (a linear unit)
# min_active_frac = 0.01    # mean share of units active per input (the theorem's k/m)
# layer = "all"             # or a comma list: "h1,h3"
# num = 32                  # inputs
# source = "real"           # real (reconstruct's default inputs, or `inputs`) or gaussian
# inputs = "path/to/images-or.npz"

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
    "propagate",
}

#: [reconstruct] keys; the old names alpha/keep still read as gen_scale/gen_keep
_RECONSTRUCT_KEYS = {"layer", "max_error", "num", "inputs", "gen_scale", "gen_keep"}
_RECONSTRUCT_OLD = {"alpha": "gen_scale", "keep": "gen_keep"}


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
    propagate: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Config:
    """The base rules, the per-model overrides, where they came from (``source``) and a
    note when a second rules file was ignored."""

    base: Rules
    overrides: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    source: str = "built-in defaults"
    note: str | None = None

    def for_model(self, name: str) -> Rules:
        for pattern, over in self.overrides:
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(Path(name).name, pattern):
                return _apply(self.base, over, f"override '{pattern}'")
        return self.base


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OptionError(
            f"{where}: '{key}' must be a list of strings", hint='e.g. layers = ["features.*"]'
        )
    return tuple(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reconstruct(where: str, value: Any) -> dict[str, Any]:
    """The [reconstruct] table, checked now (not in a worker) and with the old key names
    (alpha, keep) read as gen_scale and gen_keep."""
    if not isinstance(value, Mapping) or "layer" not in value or "max_error" not in value:
        raise OptionError(
            f"{where}: [reconstruct] needs 'layer' and 'max_error'",
            hint='layer = "h2", max_error = 0.9',
        )
    out: dict[str, Any] = {}
    for key, v in value.items():
        new = _RECONSTRUCT_OLD.get(key, key)
        if new not in _RECONSTRUCT_KEYS:
            raise OptionError(
                f"{where}: [reconstruct] unknown key '{key}'",
                hint="known keys: " + ", ".join(sorted(_RECONSTRUCT_KEYS)),
            )
        if new in out:
            raise OptionError(
                f"{where}: [reconstruct] gives both '{new}' and its old name '{key}'",
                hint=f"keep only {new}",
            )
        out[new] = v
    if not _number(out["max_error"]) or out["max_error"] <= 0:
        raise OptionError(
            f"{where}: [reconstruct] max_error must be a positive number", hint="max_error = 0.9"
        )
    if "num" in out and (not isinstance(out["num"], int) or out["num"] < 1):
        raise OptionError(f"{where}: [reconstruct] num must be a positive integer", hint="num = 16")
    scale = out.get("gen_scale")
    if scale is not None and not (
        scale in ("theory", "calibrated") or (_number(scale) and scale > 0)
    ):
        raise OptionError(
            f"{where}: [reconstruct] gen_scale = {scale!r}: not theory, calibrated or a positive number",
            hint='gen_scale = "theory"',
        )
    keep = out.get("gen_keep")
    if keep is not None and not (_number(keep) and 0 < keep <= 1):
        raise OptionError(
            f"{where}: [reconstruct] gen_keep = {keep!r}: must lie in (0, 1]",
            hint="gen_keep = 1.0",
        )
    return out


#: [propagate] bounds (each a PropagationReport column, per hidden layer) and run options
PROPAGATE_BOUNDS = {
    "max_dead_frac": ("max", "dead_frac"),
    "max_always_on_frac": ("max", "always_on_frac"),
    "min_active_frac": ("min", "active_frac"),
}
_PROPAGATE_OPTIONS = {"layer", "num", "inputs", "source"}


def _propagate(where: str, value: Any) -> dict[str, Any]:
    """The [propagate] table, checked now (not in a worker): known keys, at least one
    bound, every bound a share in [0, 1]."""
    known = sorted(set(PROPAGATE_BOUNDS) | _PROPAGATE_OPTIONS)
    if not isinstance(value, Mapping):
        raise OptionError(f"{where}: [propagate] must be a table", hint="max_dead_frac = 0.5")
    for key in value:
        if key not in known:
            raise OptionError(
                f"{where}: [propagate] unknown key '{key}'", hint="known keys: " + ", ".join(known)
            )
    bounds = [k for k in value if k in PROPAGATE_BOUNDS]
    if not bounds:
        raise OptionError(
            f"{where}: [propagate] needs a bound",
            hint="one of " + ", ".join(PROPAGATE_BOUNDS) + ", e.g. max_dead_frac = 0.5",
        )
    for key in bounds:
        if not (_number(value[key]) and 0 <= value[key] <= 1):
            raise OptionError(
                f"{where}: [propagate] {key} = {value[key]!r}: must be a share in [0, 1]",
                hint=f"{key} = 0.5",
            )
    num = value.get("num", 32)
    if not isinstance(num, int) or isinstance(num, bool) or num < 2:
        raise OptionError(f"{where}: [propagate] num must be an integer >= 2", hint="num = 32")
    if value.get("source", "real") not in ("real", "gaussian"):
        raise OptionError(
            f"{where}: [propagate] source = {value['source']!r}: not real or gaussian",
            hint='source = "real"',
        )
    for key in ("layer", "inputs"):
        if key in value and not isinstance(value[key], str):
            raise OptionError(f"{where}: [propagate] {key} must be a string", hint='layer = "all"')
    return dict(value)


def _apply(rules: Rules, table: Mapping[str, Any], where: str) -> Rules:
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key == "match":
            continue
        if key in ("layers", "exclude", "skip"):
            changes[key] = _strings(where, key, value)
        elif key in ("no_nan", "no_dead_layer"):
            if not isinstance(value, bool):
                raise OptionError(f"{where}: '{key}' must be true or false", hint=f"{key} = true")
            changes[key] = value
        elif key == "timeout":
            if not _number(value) or value <= 0:
                raise OptionError(
                    f"{where}: 'timeout' must be a positive number of seconds", hint="timeout = 600"
                )
            changes[key] = float(value)
        elif key in ("max", "min", "drift"):
            if not isinstance(value, Mapping) or not all(_number(v) for v in value.values()):
                raise OptionError(
                    f"{where}: [{key}] must map statistic names to numbers",
                    hint="e.g. spectrum_ks = 0.25",
                )
            merged = dict(getattr(rules, key))
            merged.update({str(k): float(v) for k, v in value.items()})
            changes[key] = merged
        elif key == "reconstruct":
            changes[key] = _reconstruct(where, value)
        elif key == "propagate":
            changes[key] = _propagate(where, value)
        else:
            raise OptionError(
                f"{where}: unknown key '{key}'",
                hint="known keys: " + ", ".join(sorted(_TOP_KEYS - {"models"} | {"match", "skip"})),
            )
    return replace(rules, **changes)


def _read_table(path: Path, whole_file: bool) -> Mapping[str, Any] | None:
    """The check table of a TOML file: ``[tool.netprobe.check]``, else (for netprobe's own
    files, ``whole_file``) ``[check]`` or the whole file. None when a pyproject.toml has none."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OptionError(
            f"{path}: not valid TOML ({e})",
            hint="fix the syntax; `netprobe check --init` writes a valid starter",
        ) from e
    table = data.get("tool", {}).get("netprobe", {}).get("check")
    if table is None and whole_file:
        table = data.get("check", data)
    if table is not None and not isinstance(table, Mapping):
        raise OptionError(
            f"{path}: [tool.netprobe.check] must be a table", hint="see `netprobe check --init`"
        )
    return table


def _config(table: Mapping[str, Any], path: Path) -> Config:
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


def _pyproject_has_rules(path: Path) -> bool:
    """Whether a pyproject.toml holds [tool.netprobe.check]; an unreadable one does not
    matter when netprobe.toml is used anyway."""
    try:
        return path.is_file() and _read_table(path, whole_file=False) is not None
    except OptionError:
        return False


def load_config(path: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Config:
    """The rules, from the first of: ``path`` (``--config``), ``./netprobe.toml``,
    ``[tool.netprobe.check]`` in ``./pyproject.toml``, the built-in defaults. ``cwd``
    stands for the working folder ``./``."""
    if path is not None:
        given = Path(path)
        if not given.is_file():
            raise OptionError(
                f"--config {given}: no such file", hint="create one with `netprobe check --init`"
            )
        return _config(_read_table(given, whole_file=True) or {}, given)
    here = cwd or Path.cwd()
    own, pyproject = here / CONFIG_FILE, here / "pyproject.toml"
    if own.is_file():
        cfg = _config(_read_table(own, whole_file=True) or {}, own)
        if _pyproject_has_rules(pyproject):
            note = (
                f"{own} and {pyproject} both hold rules: using {CONFIG_FILE}; "
                f"[tool.netprobe.check] in {pyproject.name} is ignored"
            )
            cfg = replace(cfg, note=note)
        return cfg
    if pyproject.is_file():
        table = _read_table(pyproject, whole_file=False)
        if table is not None:
            return _config(table, pyproject)
    return Config(Rules())


def init_config(dest: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Write the commented starter config (:data:`STARTER_CONFIG`) to ``dest`` (default
    ``./netprobe.toml``, where ``check`` finds it) and return its path; an existing file
    is kept unless ``force``."""
    from ..report import atomic_write_text

    path = Path(dest) if dest is not None else Path(CONFIG_FILE)
    if path.is_dir():
        raise OptionError(f"{path}: is a folder", hint="give a file path, e.g. netprobe.toml")
    if path.exists() and not force:
        raise OptionError(
            f"{path}: exists", hint="pass --force to overwrite it, or --config OTHER.toml"
        )
    atomic_write_text(path, STARTER_CONFIG)
    return path
