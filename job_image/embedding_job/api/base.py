"""What every part of the contract shares: the base model of its sections and its errors."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Annotated, Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class ConfigError(ValueError):
    """A job configuration that cannot run; ``str()`` names every offending field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid job config:\n" + "\n".join(f"  - {p}" for p in problems))


class Spec(BaseModel):
    """Base of every section: camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
        validate_default=True,
    )


ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


def check_column(value: str) -> str:
    """The name, if it is a valid column name; ValueError otherwise."""
    if not _COLUMN_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid column name (letters, digits, '_', '.', '-')")
    return value


def format_errors(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One "field.path: problem" line per validation error; an unknown field of ``model``
    (or of one of its sections) is told the nearest known one."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + _did_you_mean(model, err["loc"])
        problems.append(f"{loc or '<root>'}: {msg}")
    return problems


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for name, f in model.model_fields.items() if _wire_name(name, f) == part), None
        )
        model = _section(field.annotation) if field is not None else None
    if model is None or not loc:
        return ""
    known = [_wire_name(name, f) for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"


def _wire_name(name: str, field: FieldInfo) -> str:
    return field.alias or to_camel(name)


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, through Optional and list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section(arg)
        if found is not None:
            return found
    return None
