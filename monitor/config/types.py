"""The building blocks of every config model: strict models and the value types check files use."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from monitor.alerting.routing import BUILT_IN_LABELS
from monitor.config.durations import parse_duration


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are immutable once loaded, and a number is finite
    (``threshold: 1e999`` is infinity to Python, and would make every comparison with it one-sided)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


Duration = Annotated[timedelta, BeforeValidator(parse_duration), WithJsonSchema({"type": "string"})]
# A duration that may be none at all (``0s``), for a wait that can be switched off.
Wait = Annotated[timedelta, BeforeValidator(lambda v: parse_duration(v, allow_zero=True)), WithJsonSchema({"type": "string"})]
Name = Annotated[
    str,
    # The length apart from the pattern, so that a name too long is told so and not "use only letters...".
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100, description="letters, digits, '.', '_' and '-'"),
]
# A column or table name: checked here so that no user text is ever pasted into SQL (see sources/sql.py).
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
TableName = Annotated[str, Field(pattern=r"^(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$")]


def _database_url(url: str) -> str:
    """A SQLAlchemy URL that can work here, told before anything connects."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        raise ValueError(f"{scheme}:// needs a driver monitor does not install: write postgresql+psycopg://")
    if scheme == "sqlite" and (not rest or rest.startswith("/")):
        # A file path (or memory): nothing SQLAlchemy could refuse, and its import is a quarter of a
        # second of `monitor validate`.
        return url
    import sqlalchemy as sa

    try:
        sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError(
            "not a database URL: write for example sqlite:///monitor.db or postgresql+psycopg://user@host/db"
        ) from None
    return url


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


def _label_name(name: str) -> str:
    if name in (*BUILT_IN_LABELS, "feature"):
        raise ValueError(f"{name!r} is a label every alert has already: call yours something else")
    return name


LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63, description="letters, digits and '_'")]
Labels = Annotated[
    dict[
        Annotated[LabelName, AfterValidator(_label_name)],
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")],
    ],
    Field(max_length=50),
]
"""A check file's labels: routes match them (``match: {labels: {tier: gold}}``)."""
