"""The config schema: each field of a frozen config dataclass declares its rule beside it (`rule(default,
"> 0")`), one checker (`check_fields`, called from each class's __post_init__) walks every field for type,
finiteness and range, and one parser turns plain dicts (TOML sections, JSON, `--set` values) into configs
(FeatureConfig, TrainConfig, RuntimeConfig, the model configs, CompressConfig), with one-line errors."""
import dataclasses
import math
import types
from dataclasses import dataclass

from tinyasc.errors import TinyascError

INT64_MAX = 2**63 - 1  # torch and numpy keep integers in int64
SEED_MAX = 2**32 - 1  # seeds are mixed into 64-bit generator seeds (seed · 1,000,003 + epoch) without overflow


class ConfigError(TinyascError, ValueError):
    """A config value outside its field's rule (also a ValueError, as dataclass checks raised before)."""


@dataclass(frozen=True)
class Rule:
    """What a field accepts beyond its annotated type: a range such as "> 0", ">= 1", "[0, 1)" (numbers,
    or each element of a tuple), a set of choices, or `path`: a file or folder name, where a number (a
    folder named 2024) is taken as its text."""
    range: str = ""
    choices: tuple = ()
    path: bool = False
    of: type | None = None  # element type of a tuple field

    def bounds(self):
        """(low, low inclusive, high, high inclusive) of `range`; None where unbounded."""
        text = self.range.replace(" ", "")
        if not text:
            return None, False, None, False
        for op, inclusive in ((">=", True), (">", False)):
            if text.startswith(op):
                return float(text[len(op):]), inclusive, None, False
        for op, inclusive in (("<=", True), ("<", False)):
            if text.startswith(op):
                return None, False, float(text[len(op):]), inclusive
        low, high = text[1:-1].split(",")
        return float(low), text[0] == "[", float(high), text[-1] == "]"

    def admits(self, value):
        low, low_in, high, high_in = self.bounds()
        return ((low is None or value > low or (low_in and value == low))
                and (high is None or value < high or (high_in and value == high)))

    def describe(self):
        r = self.range.strip()
        return r if r[:1] in "<>" else f"in {r}"


def rule(default, range="", *, choices=(), path=False, of=None):
    """A dataclass field with its rule: `lr: float = rule(0.06, "> 0")`."""
    return dataclasses.field(default=default, metadata={"rule": Rule(range, tuple(choices), path, of)})


def rule_of(f):
    return f.metadata.get("rule", Rule())


def _types(annotation):
    """The accepted types of an annotation: (int,), (float, NoneType) for `float | None`, …"""
    if isinstance(annotation, types.UnionType):
        return annotation.__args__
    return (annotation,)


def _kind_error(name, value, kind):
    words = {bool: "true or false", int: "a whole number (an integer)", float: "a number", str: "a string",
             tuple: "a list"}
    if kind is int and _is_number(value):
        return f"{name} must be a whole number (an integer), not {value!r}"
    if kind in (int, float):
        return f"{name} must be a number, not {value!r}"
    return f"{name} must be {words.get(kind, kind.__name__)}, not {value!r}"


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(name, value, kind, r):
    """The one-line problem of `value` for a field of type `kind` with rule `r`, or None."""
    if kind is bool:
        return None if isinstance(value, bool) else _kind_error(name, value, bool)
    if kind is int:
        if not (isinstance(value, int) and not isinstance(value, bool)):
            return _kind_error(name, value, int)
        if abs(value) > INT64_MAX and (not r.range or r.admits(value)):  # else the range says it
            return f"{name} must fit in 64 bits (|value| <= {INT64_MAX}), not {value}"
    elif kind is float:
        if not _is_number(value):
            return _kind_error(name, value, float)
        if not math.isfinite(value):
            return f"{name} must be a finite number{' ' + r.describe() if r.range else ''}, not {value!r}"
    elif kind is str:
        if not isinstance(value, str):
            return _kind_error(name, value, str)
    elif kind is tuple:
        if not isinstance(value, tuple):
            return _kind_error(name, value, tuple)
        if r.of is not None:
            element = Rule(r.range, r.choices, r.path)
            for i, v in enumerate(value):
                problem = _check_value(f"{name}[{i}]", v, r.of, element)
                if problem:
                    return problem
        return None
    if r.choices and value not in r.choices:
        return f"{name} must be one of {', '.join(map(repr, r.choices))}, not {value!r}"
    if r.range and _is_number(value) and not r.admits(value):
        return f"{name} must be {r.describe()}, not {value!r}"
    return None


def check_fields(obj, section, cross=()):
    """Check every field of config `obj` against its annotation and rule, then the cross-field rules
    `cross` ((ok, message) pairs, or a callable returning them, so they run only on well-typed fields).
    Raises one ConfigError line "bad config: SECTION.FIELD must be …, not …"."""
    for f in dataclasses.fields(obj):
        value, kinds = getattr(obj, f.name), _types(f.type)
        if value is None and type(None) in kinds:
            continue
        kind = next((k for k in kinds if k is not type(None)), object)
        problem = _check_value(f"{section}.{f.name}", value, kind, rule_of(f))
        if problem:
            raise ConfigError(f"bad config: {problem}")
    for ok, message in (cross() if callable(cross) else cross):
        if not ok:
            raise ConfigError(f"bad config: {section}.{message}")


def _as_field_value(f, value):
    """JSON/TOML lists become tuples (nested too); a whole number given for a path field is its name (2024)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_field_value(f, v) for v in value)
    r = rule_of(f)
    if r.path and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def config_from_dict(cls, d, what=None):
    """Build the frozen dataclass `cls` from dict `d`: unknown fields and values that break a field's rule
    are one-line errors (the class's __post_init__ runs check_fields); JSON lists become tuples.
    `what` names the config in messages (default: the class name)."""
    what = what or cls.__name__
    if not isinstance(d, dict):
        raise TinyascError(f"bad {what}: expected a table of fields, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise TinyascError(f"unknown {what} field(s) {unknown} (unknown fields; known: {sorted(fields)})")
    try:
        return cls(**{k: _as_field_value(fields[k], v) for k, v in d.items()})
    except TinyascError:
        raise
    except (TypeError, ValueError) as e:
        raise TinyascError(f"bad {what}: {e}") from None
