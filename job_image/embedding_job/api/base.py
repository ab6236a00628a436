"""What every part of the contract shares: the base model of its sections and its errors."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

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
    if not _COLUMN_RE.match(value):
        raise ValueError(f"{value!r} is not a valid column name (letters, digits, '_', '.', '-')")
    return value


def format_errors(exc: ValidationError) -> list[str]:
    """One "field.path: problem" line per validation error."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{loc or '<root>'}: {msg}")
    return problems
