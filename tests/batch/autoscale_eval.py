"""An evaluator for the subset of the Azure Batch autoscale formula language that
``infra/batch/autoscale.formula`` uses, so tests can check the real formula's decisions.

Azure offers "evaluate autoscale" only against a live pool; this is the offline stand-in. It
is deliberately strict: anything outside the subset below is an error rather than a guess, so
a formula that passes here uses only constructs whose meaning is documented.

Supported (Batch semantics, https://learn.microsoft.com/azure/batch/batch-automatic-scaling):
- statements ``name = expr;`` (user variables, with or without ``$``) and the settable service
  variables ``$TargetDedicatedNodes``, ``$TargetLowPriorityNodes``, ``$NodeDeallocationOption``;
  ``//`` comments; at most 100 statements and 8 KB;
- doubles, ``TimeInterval_*`` constants (a separate type: interval * double = interval),
  the deallocation keywords (``requeue``, ``terminate``, ``taskcompletion``, ``retaineddata``);
- ``?:``, ``||``, ``&&``, ``== != < <= > >=``, ``+ - * /``, unary ``-`` and ``!``;
- ``max``, ``min``, ``avg``, ``sum``, ``len`` over doubles and sample vectors (flattened);
- metrics (``$PendingTasks`` …) with ``GetSample(count)``, ``GetSample(interval)`` and
  ``GetSamplePercent(interval)``. A ``Metric`` holds the samples, newest last, one every 30 s
  (Batch's sampling period). ``GetSample(interval)`` with no sample in the interval is an error,
  as in Batch, so a formula must guard it with ``GetSamplePercent``.

Arithmetic or comparison on a raw sample vector is rejected: the formula must reduce vectors
with a function first (``max(0, $X.GetSample(1))``), which keeps its meaning unambiguous.

    from tests.batch.autoscale_eval import Metric, evaluate, render
    result = evaluate(render(text, MAX_NODES=4, ...), {"$PendingTasks": Metric([0, 3, 5])})
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMULA_PATH = Path(__file__).resolve().parents[2] / "infra" / "batch" / "autoscale.formula"
SAMPLE_PERIOD_S = 30.0
MAX_FORMULA_BYTES = 8 * 1024
MAX_STATEMENTS = 100

SETTABLE = {"$TargetDedicatedNodes", "$TargetLowPriorityNodes", "$NodeDeallocationOption"}
DEALLOCATION = {"requeue", "terminate", "taskcompletion", "retaineddata"}
INTERVALS = {"TimeInterval_Zero": 0.0, "TimeInterval_100ns": 1e-7,
             "TimeInterval_Microsecond": 1e-6, "TimeInterval_Millisecond": 1e-3,
             "TimeInterval_Second": 1.0, "TimeInterval_Minute": 60.0,
             "TimeInterval_Hour": 3600.0, "TimeInterval_Day": 86400.0,
             "TimeInterval_Week": 7 * 86400.0, "TimeInterval_Year": 365 * 86400.0}


class FormulaError(Exception):
    """The formula is malformed or uses something outside the supported subset."""


@dataclass(frozen=True)
class Interval:
    seconds: float


@dataclass(frozen=True)
class Keyword:
    name: str


@dataclass(frozen=True)
class Vec:
    values: tuple[float, ...]


@dataclass
class Metric:
    """A sampled service metric. ``samples``: oldest first, one every SAMPLE_PERIOD_S, the last
    one current. ``percent`` overrides GetSamplePercent (metrics can lag or have gaps)."""

    samples: list[float]
    percent: float | None = None

    def get_sample(self, arg: Any) -> Vec:
        if isinstance(arg, Interval):
            n = int(arg.seconds // SAMPLE_PERIOD_S)
        elif isinstance(arg, float):
            n = int(arg)
        else:
            raise FormulaError(f"GetSample takes a count or a time interval, not {arg!r}")
        picked = self.samples[-n:] if n > 0 else []
        if not picked:
            raise FormulaError("GetSample: no samples in the requested range")
        return Vec(tuple(float(v) for v in picked))

    def get_sample_percent(self, arg: Any) -> float:
        if not isinstance(arg, Interval):
            raise FormulaError("GetSamplePercent takes a time interval")
        if self.percent is not None:
            return float(self.percent)
        expected = max(1, int(arg.seconds // SAMPLE_PERIOD_S))
        return 100.0 * min(expected, len(self.samples)) / expected


@dataclass
class Result:
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def dedicated(self) -> float:
        return self.variables["$TargetDedicatedNodes"]

    @property
    def spot(self) -> float:
        return self.variables["$TargetLowPriorityNodes"]

    @property
    def deallocation(self) -> str:
        return self.variables["$NodeDeallocationOption"].name


# --------------------------------------------------------------------------------------------
# tokens

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<name>\$?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/<>!?:=(),;.])
""", re.VERBOSE)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FormulaError(f"unexpected character {text[pos]!r} at offset {pos}: "
                               f"{text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            tokens.append((kind, m.group()))  # type: ignore[arg-type]
    tokens.append(("end", ""))
    return tokens


# --------------------------------------------------------------------------------------------
# evaluation (a recursive-descent parser that evaluates as it goes: formulas have no loops)

_FUNCTIONS = {"max", "min", "avg", "sum", "len"}


class _Evaluator:
    def __init__(self, text: str, metrics: dict[str, Metric], preset: dict[str, Any]):
        self.tokens = tokenize(text)
        self.i = 0
        self.metrics = metrics
        self.vars: dict[str, Any] = dict(preset)

    # token helpers
    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.tokens[self.i]
        if (value is not None and v != value) or (kind is not None and k != kind):
            raise FormulaError(f"expected {value or kind!r}, found {v or 'end of formula'!r}")
        self.i += 1
        return v

    def accept(self, value: str) -> bool:
        if self.tokens[self.i][1] == value and self.tokens[self.i][0] == "op":
            self.i += 1
            return True
        return False

    # statements
    def run(self) -> Result:
        statements = 0
        while self.peek()[0] != "end":
            name = self.take(kind="name")
            self.take("=")
            value = self.expr()
            if name.startswith("$") and name in self.metrics:
                raise FormulaError(f"{name} is read-only")
            if name == "$NodeDeallocationOption" and not isinstance(value, Keyword):
                raise FormulaError("$NodeDeallocationOption takes a deallocation keyword")
            if name in ("$TargetDedicatedNodes", "$TargetLowPriorityNodes") and \
                    not isinstance(value, float):
                raise FormulaError(f"{name} must be a number, not {value!r}")
            self.vars[name] = value
            statements += 1
            if not self.accept(";") and self.peek()[0] != "end":
                raise FormulaError(f"expected ';' after the assignment to {name}")
        if statements > MAX_STATEMENTS:
            raise FormulaError(f"{statements} statements: Batch allows {MAX_STATEMENTS}")
        return Result({k: v for k, v in self.vars.items()})

    # expressions, lowest precedence first
    def expr(self) -> Any:
        cond = self.or_()
        if self.accept("?"):
            a = self.expr()
            self.take(":")
            b = self.expr()
            return a if self._truth(cond) else b
        return cond

    def or_(self) -> Any:
        left = self.and_()
        while self.accept("||"):
            right = self.and_()
            left = 1.0 if self._truth(left) or self._truth(right) else 0.0
        return left

    def and_(self) -> Any:
        left = self.equality()
        while self.accept("&&"):
            right = self.equality()
            left = 1.0 if self._truth(left) and self._truth(right) else 0.0
        return left

    def equality(self) -> Any:
        left = self.relational()
        while self.peek()[1] in ("==", "!="):
            op = self.take()
            right = self.relational()
            a, b = self._comparable(left, right, op)
            left = float((a == b) if op == "==" else (a != b))
        return left

    def relational(self) -> Any:
        left = self.additive()
        while self.peek()[1] in ("<", "<=", ">", ">="):
            op = self.take()
            right = self.additive()
            a, b = self._comparable(left, right, op)
            left = float({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
        return left

    def additive(self) -> Any:
        left = self.multiplicative()
        while self.peek()[1] in ("+", "-"):
            op = self.take()
            right = self.multiplicative()
            left = self._arith(left, right, op)
        return left

    def multiplicative(self) -> Any:
        left = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()
            right = self.unary()
            left = self._arith(left, right, op)
        return left

    def unary(self) -> Any:
        if self.accept("-"):
            return self._arith(0.0, self.unary(), "-")
        if self.accept("!"):
            return 0.0 if self._truth(self.unary()) else 1.0
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.accept("."):
            method = self.take(kind="name")
            args = self.arguments()
            if not isinstance(value, Metric):
                raise FormulaError(f".{method}() on something that is not a metric")
            if len(args) != 1:
                raise FormulaError(f"{method} takes one argument in this subset")
            if method == "GetSample":
                value = value.get_sample(args[0])
            elif method == "GetSamplePercent":
                value = value.get_sample_percent(args[0])
            else:
                raise FormulaError(f"unsupported metric method {method}")
        return value

    def arguments(self) -> list[Any]:
        self.take("(")
        args: list[Any] = []
        if not self.accept(")"):
            args.append(self.expr())
            while self.accept(","):
                args.append(self.expr())
            self.take(")")
        return args

    def primary(self) -> Any:
        kind, value = self.peek()
        if kind == "num":
            self.i += 1
            return float(value)
        if kind == "op" and value == "(":
            self.i += 1
            inner = self.expr()
            self.take(")")
            return inner
        if kind != "name":
            raise FormulaError(f"unexpected {value or 'end of formula'!r}")
        self.i += 1
        if self.peek()[1] == "(":
            if value not in _FUNCTIONS:
                raise FormulaError(f"unsupported function {value}()")
            return self._call(value, self.arguments())
        if value in INTERVALS:
            return Interval(INTERVALS[value])
        if value in DEALLOCATION:
            return Keyword(value)
        if value in self.vars:
            return self.vars[value]
        if value in self.metrics:
            return self.metrics[value]
        raise FormulaError(f"{value} is read before it is assigned (or is an unknown variable)")

    # semantics
    @staticmethod
    def _truth(value: Any) -> bool:
        if not isinstance(value, float):
            raise FormulaError(f"a condition must be a number, not {value!r}")
        return value != 0.0

    @staticmethod
    def _comparable(a: Any, b: Any, op: str) -> tuple[float, float]:
        if isinstance(a, Interval) and isinstance(b, Interval):
            return a.seconds, b.seconds
        if isinstance(a, float) and isinstance(b, float):
            return a, b
        raise FormulaError(f"cannot compare {a!r} {op} {b!r} (reduce sample vectors first)")

    @staticmethod
    def _arith(a: Any, b: Any, op: str) -> Any:
        if isinstance(a, float) and isinstance(b, float):
            if op == "/":
                if b == 0:
                    raise FormulaError("division by zero")
                return a / b
            return {"+": a + b, "-": a - b, "*": a * b}[op]
        if op == "*" and isinstance(a, Interval) and isinstance(b, float):
            return Interval(a.seconds * b)
        if op == "*" and isinstance(a, float) and isinstance(b, Interval):
            return Interval(a * b.seconds)
        if op in "+-" and isinstance(a, Interval) and isinstance(b, Interval):
            return Interval(a.seconds + b.seconds if op == "+" else a.seconds - b.seconds)
        if op == "/" and isinstance(a, Interval) and isinstance(b, float):
            return Interval(a.seconds / b)
        raise FormulaError(f"cannot compute {a!r} {op} {b!r} (reduce sample vectors first)")

    @staticmethod
    def _call(name: str, args: list[Any]) -> float:
        values: list[float] = []
        for a in args:
            if isinstance(a, Vec):
                values.extend(a.values)
            elif isinstance(a, float):
                values.append(a)
            else:
                raise FormulaError(f"{name}() takes numbers and sample vectors, not {a!r}")
        if name == "len":
            return float(len(values))
        if not values:
            raise FormulaError(f"{name}() of nothing")
        if name == "max":
            return max(values)
        if name == "min":
            return min(values)
        if name == "sum":
            return math.fsum(values)
        return math.fsum(values) / len(values)  # avg


def render(text: str, **params: Any) -> str:
    """Fill in ``{{NAME}}`` parameters the way infra/batch/pool.bicep does (plain replace)."""
    for name, value in params.items():
        text = text.replace("{{" + name + "}}", str(value))
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise FormulaError(f"parameters not filled in: {sorted(set(left))}")
    return text


def evaluate(text: str, metrics: dict[str, Metric], preset: dict[str, Any] | None = None
             ) -> Result:
    """Run the formula once, as one Batch autoscale evaluation, and return its variables."""
    if len(text.encode()) > MAX_FORMULA_BYTES:
        raise FormulaError(f"the formula is {len(text.encode())} bytes: Batch allows 8 KB")
    return _Evaluator(text, metrics, preset or {}).run()
