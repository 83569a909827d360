"""`--help` text: one entry per config field, with its type, help text, choices and default, from
the same dataclasses (and `option()` metadata) that gtpo.app.options reads flags into."""

from __future__ import annotations

import dataclasses
import textwrap
import types
from collections.abc import Iterable, Mapping
from typing import Any

from gtpo.app.options import dataclass_of, fields_of, type_hints


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None


def help_lines(
    cls: type,
    names: Iterable[str] | None = None,
    sections: bool = True,
    choices: Mapping[str, tuple[Any, ...]] = types.MappingProxyType({}),
    width: int = 100,
) -> list[str]:
    """One entry per field (`--name TYPE`, then its help and default, indented): all of `cls`'s
    fields, or those whose top-level name is in `names` (a section's fields with it). A field's
    choices (its option()'s or, by field name, those in `choices`) are listed unless its help
    quotes each."""
    lines = []
    wanted = set(names) if names is not None else None
    for name, spec in fields_of(cls, sections=sections):
        if wanted is not None and name.split(".")[0] not in wanted:
            continue
        hints = type_hints(_owner(cls, name))
        metadata = spec.metadata
        text = " ".join(str(metadata.get("help") or "").split())
        allowed = metadata.get("choices") or choices.get(spec.name)
        if allowed and not all(f"'{choice}'" in text for choice in allowed):
            text += f" One of {', '.join(map(str, allowed))}."
        if metadata.get("required"):
            text += " (required)"
        elif _default(spec) is not None or "default" not in text:  # else the help tells the default
            text += f" (default: {_default(spec)!r})"
        lines.append(f"  --{name} {_type_name(hints[spec.name])}")
        lines += textwrap.wrap(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines


def _owner(cls: type, path: str) -> type:
    """The dataclass that declares the last part of a dotted path."""
    owner: Any = cls
    for part in path.split(".")[:-1]:
        owner = dataclass_of(type_hints(owner)[part])
    return owner
