"""The one config mechanism of `gtpo train` and `gtpo eval`: dataclasses whose fields carry their help
text, bounds and choices (`option(...)`), read from YAML or `--field value` flags, checked field by
field with one-line errors, and listed by `--help`.

A nested dataclass is a section: its fields are flags with a dot (`--dataset.limit 100`). So is a
mapping annotated `Annotated[dict[str, Any], FieldsOf(Config, ...)]`: it keeps the fields of
`Config` a user set, each checked as `Config` declares it, for a config built later from them
(`gtpo train`'s `training` section of GTPOConfig fields). A flag takes the words up to the next
flag: one for most fields, any number for a list (`--k 1 8 64`; `1,8,64` and YAML's `[1, 8, 64]`
work too), and a list flag given twice adds to the list.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from gtpo.rules import bound_problem, choice_problem, did_you_mean


class ConfigError(ValueError):
    """A config file, field or flag is wrong; the message names it, in one line."""


class FieldError(ConfigError):
    """A bad value at a dotted field path ("training.max_steps"); the caller names the flag or
    the file it came from."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def option(
    default: Any = None,
    help: str = "",
    bounds: tuple[str, ...] = (),
    choices: tuple[Any, ...] | None = None,
    required: bool = False,
    factory: typing.Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with its help text; a number must satisfy each bound (">= 1", "< 1", ...),
    a value (or each item of a list) must be one of `choices`; None always passes."""
    metadata = {"help": help, "bounds": bounds, "choices": choices, "required": required}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, eq=False)
class FieldsOf:
    """Marks a mapping as the fields of dataclass `cls` that a user set, by name. Each name and
    type is checked as `cls` declares it, each value by `problem(name, value)` (a one-line problem,
    or None); the fields in `refused` are refused, each with its problem."""

    cls: type
    problem: Callable[[str, Any], str | None] = lambda name, value: None
    refused: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.refused) - {f.name for f in dataclasses.fields(self.cls)}
        if unknown:
            raise TypeError(f"FieldsOf({self.cls.__name__}) refuses fields it lacks: {sorted(unknown)}")


def _fields_of_spec(annotation: Any) -> FieldsOf | None:
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, FieldsOf)), None)
    return None


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


# ------------------------------------------------------------------------------------------------
# Values: coercion of YAML and command-line strings to a field's type, then bounds and choices
# ------------------------------------------------------------------------------------------------


def _yaml_value(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise FieldError(where, f"not valid YAML: {text!r}") from None


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check value against a type annotation, converting strings from the command line and YAML's
    unquoted scientific notation ("1e-4"). Raises FieldError naming the field path."""
    spec = _fields_of_spec(annotation)
    if spec is not None:
        if not isinstance(value, dict):
            raise FieldError(where, f"expected a mapping of {spec.cls.__name__} fields, got {value!r}")
        return _checked_fields(spec.cls, value, where, spec.problem, spec.refused)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for choice in options:
            if choice is type(None):
                continue
            try:
                return coerce(value, choice, where)
            except ConfigError as error:
                errors.append(error)
        raise errors[0] if errors else FieldError(where, f"unsupported value {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):
            value = _yaml_value(value, where) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise FieldError(where, f"expected a list, got {value!r}")
        return [coerce(v, item, where) for v in value]
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = _yaml_value(value, where)
        if not isinstance(value, dict):
            raise FieldError(where, f"expected a mapping, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise FieldError(where, f"expected a mapping of {annotation.__name__} fields, got {value!r}")
        return build(annotation, value, where)
    return _scalar(value, annotation, where)


def _scalar(value: Any, annotation: Any, where: str) -> Any:
    if isinstance(value, list) and len(value) > 1 and annotation in (bool, int, float, str):
        raise FieldError(where, f"takes one value; unexpected argument {value[1]!r}")
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise FieldError(where, f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
            return int(value)
        raise FieldError(where, f"expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
        raise FieldError(where, f"expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise FieldError(where, f"expected a string, got {value!r}")
    # Any, enums and other TRL types: the config class validates them.
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _option_problem(cls: type) -> Callable[[str, Any], str | None]:
    """The problem with a value by the bounds and choices option() gave its field of `cls`."""
    metadata = {f.name: f.metadata for f in dataclasses.fields(cls)}

    def problem(name: str, value: Any) -> str | None:
        found = bound_problem(value, metadata[name].get("bounds", ()))
        choices = metadata[name].get("choices")
        return found if found is not None or choices is None else choice_problem(value, choices)

    return problem


def _checked_fields(
    cls: type,
    values: dict[Any, Any],
    where: str,
    problem: Callable[[str, Any], str | None],
    refused: Mapping[str, str] = types.MappingProxyType({}),
) -> dict[str, Any]:
    """`values` (plain data) as fields of dataclass `cls`: each name known and not refused, each
    value coerced to its field's type and without `problem`; FieldError names the first mistake."""
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    checked = {}
    for name, value in values.items():
        path = _join(where, name if isinstance(name, str) and name.isidentifier() else repr(name))
        if name not in fields:
            raise FieldError(path, f"unknown field {name!r}{did_you_mean(str(name), fields)}")
        if name in refused:
            raise FieldError(path, refused[name])
        checked[name] = coerce(value, type_hints(cls)[name], path)
        found = problem(name, checked[name])
        if found is not None:
            raise FieldError(path, found)
    return checked


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """An instance of dataclass `cls` from plain data, every field checked (name, type, bounds,
    choices, required); its __post_init__ may raise FieldError for rules across fields."""
    kwargs = _checked_fields(cls, values, where, _option_problem(cls))
    for spec in dataclasses.fields(cls):
        if spec.init and spec.metadata.get("required") and kwargs.get(spec.name) in (None, []):
            raise FieldError(_join(where, spec.name), "required")
    try:
        return cls(**kwargs)
    except FieldError as error:
        raise FieldError(_join(where, error.path), error.problem) from None


# ------------------------------------------------------------------------------------------------
# Flags
# ------------------------------------------------------------------------------------------------

FLAG_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", re.ASCII)


def parse_flags(argv: list[str]) -> list[tuple[str, str | list[str]]]:
    """`--name value`, `--name=value` and `--name v1 v2 ...` (a list), in order."""
    pairs: list[tuple[str, str | list[str]]] = []
    index = 0
    while index < len(argv):
        flag = argv[index]
        if not flag.startswith("--") or flag == "--":
            raise ConfigError(f"unexpected argument {flag!r}: flags look like --field value")
        name = flag[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            words = [value]
            index += 1
        else:
            end = index + 1
            while end < len(argv) and not argv[end].startswith("--"):
                end += 1
            words = argv[index + 1 : end]
            index = end
        if not FLAG_NAME.fullmatch(name):
            raise ConfigError(f"unexpected argument {flag!r}: a flag names a field, as --dataset.limit")
        if not words:
            raise ConfigError(f"flag {flag} needs a value")
        pairs.append((name, words[0] if len(words) == 1 else words))
    return pairs


def set_flag(raw: dict[str, Any], name: str, value: str | list[str], extend: bool = False) -> None:
    """Put a flag's value at its dotted path in `raw`; `extend` adds it to the list already there."""
    *sections, key = name.split(".")
    target = raw
    for part in sections:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    if extend and isinstance(target.get(key), list):
        value = target[key] + (value if isinstance(value, list) else [value])
    elif extend:
        value = [target[key], *(value if isinstance(value, list) else [value])]
    target[key] = value


def field_type(cls: type, path: str) -> Any:
    """The annotation of a dotted field path of `cls` (None when there is no such field)."""
    annotation: Any = cls
    parts = path.split(".")
    for index, part in enumerate(parts):
        owner = dataclass_of(annotation)
        if owner is None:
            return None
        hints = type_hints(owner)
        if part not in hints or part not in {f.name for f in dataclasses.fields(owner)}:
            return None
        annotation = hints[part]
        if _fields_of_spec(annotation) is not None and len(parts) > index + 2:
            return None  # a FieldsOf section's fields are set whole, not field by field
    return annotation


def dataclass_of(annotation: Any) -> type | None:
    """The dataclass in `annotation` (also in `Section | None`, or the `cls` of FieldsOf), or None."""
    spec = _fields_of_spec(annotation)
    if spec is not None:
        return spec.cls
    if dataclasses.is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation)
    )


def load_flags(cls: type, argv: list[str]) -> Any:
    """An instance of `cls` from `--field value` flags, a mistake named by its flag."""
    raw: dict[str, Any] = {}
    given = set()
    for name, value in parse_flags(argv):
        annotation = field_type(cls, name)
        if annotation is None:
            names = [path for path, _ in fields_of(cls)]
            raise ConfigError(f"--{name}: unknown flag{did_you_mean(name, names)}")
        set_flag(raw, name, value, extend=name in given and is_list(annotation))
        given.add(name)
    try:
        return build(cls, raw)
    except FieldError as error:
        raise ConfigError(f"--{error.path}: {error.problem}") from None


# ------------------------------------------------------------------------------------------------
# Fields, in declaration order (for --help and did-you-mean)
# ------------------------------------------------------------------------------------------------


def fields_of(cls: type, prefix: str = "", sections: bool = True) -> list[tuple[str, dataclasses.Field]]:
    """(dotted name, field) of every field of `cls` in declaration order, a section's fields in
    its place (or the section as one field, without `sections`); a FieldsOf section lists the
    fields of its class that it does not refuse."""
    listed = []
    for spec in dataclasses.fields(cls):
        if not spec.init:
            continue
        path, annotation = _join(prefix, spec.name), type_hints(cls)[spec.name]
        given = _fields_of_spec(annotation) if sections else None
        section = dataclass_of(annotation) if sections else None
        if given is not None:
            listed += [(f"{path}.{f.name}", f) for f in dataclasses.fields(given.cls)
                       if f.init and f.name not in given.refused]  # fmt: skip
        elif section is not None:
            listed += fields_of(section, path)
        else:
            listed.append((path, spec))
    return listed
