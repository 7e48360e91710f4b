"""One parser from plain dicts (TOML sections, JSON, `--set` values) to the frozen config dataclasses
(FeatureConfig, TrainConfig, RuntimeConfig, model configs, CompressConfig), with one-line errors."""
import dataclasses

from tinyasc.errors import TinyascError


def config_from_dict(cls, d, what=None):
    """Build the frozen dataclass `cls` from dict `d`: unknown fields, a word in a number field, a
    fraction in an integer field and a non-boolean in a boolean field are one-line errors; JSON lists
    become tuples. `what` names the config in messages (default: the class name)."""
    what = what or cls.__name__
    if not isinstance(d, dict):
        raise TinyascError(f"bad {what}: expected a table of fields, got {d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise TinyascError(f"unknown {what} field(s) {unknown} (unknown fields; known: {sorted(names)})")
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value, default = d[f.name], f.default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TinyascError(f"bad {what}: {f.name} must be true or false, not {value!r}")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TinyascError(f"bad {what}: {f.name} must be a number, not {value!r}")
            if not isinstance(value, int):
                raise TinyascError(f"bad {what}: {f.name} must be a whole number (an integer), not {value!r}")
        elif isinstance(default, float) or (default is None and float in getattr(f.type, "__args__", ())):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TinyascError(f"bad {what}: {f.name} must be a number, not {value!r}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    except (TypeError, ValueError) as e:
        raise TinyascError(f"bad {what}: {e}") from None
