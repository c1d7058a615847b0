"""What checking one model yields: a :class:`RuleResult` per rule and the model's
:class:`ModelResult`, plain data a worker process sends back as a dict (docs/design.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: a rule's or a model's status
PASS, FAIL, ERROR, SKIPPED = "pass", "fail", "error", "skipped"


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

    @staticmethod
    def failed(model: str, rule: str, message: str, seconds: float) -> ModelResult:
        """A model that could not be measured: one ``error`` result for ``rule`` (load,
        worker) carrying ``message``."""
        return ModelResult(
            model, ERROR, (RuleResult(rule, ERROR, message=message),), message, round(seconds, 3)
        )


def status_of(rules: Iterable[RuleResult]) -> str:
    """A model's status from its rules: any error wins, then any failure."""
    st = [r.status for r in rules]
    return ERROR if ERROR in st else FAIL if FAIL in st else PASS
