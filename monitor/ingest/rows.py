"""Parsing and validating posted rows: a JSON object, a JSON array, or JSON lines.

Each row is checked against the model's declared features and their types; a bad row is rejected
with its position, its id when it has one, and every reason, while the good rows of the same request
are accepted. The checks are plain loops over dicts on purpose: at 100,000 rows a second there are
about ten microseconds for each row, which rules out building a pydantic model per row.

A row's size is the length of its compact JSON (one ``orjson.dumps``, about half a microsecond, and
none for a row sent in too few bytes to be past a limit): a row larger than ``ingest.max_row_bytes``,
nested deeper than orjson writes, or whose text value (a feature, the prediction, a label) is longer
than ``ingest.max_text_chars``, is rejected by name like any other bad row, so that one client cannot
fill the daemon's memory or the database with a few huge values, nor stop its writes with one row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import orjson
import sqlalchemy as sa

from monitor.ingest.limits import MAX_ROW_BYTES, MAX_TEXT_CHARS
from monitor.storage.tables import Sample, table

if TYPE_CHECKING:
    from monitor.checks.classes import ClassSet

FeatureType = Literal["number", "string", "boolean", "any"]
_ROW_KEYS = {"id", "ts", "features", "prediction", "probability", "latency_ms", "model_version"}
_FIRST_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_END_TS = datetime(9999, 12, 31, 23, 59, tzinfo=UTC).timestamp()
# How far ahead of the daemon's clock a row's ts may be (clock skew). A later minute would never leave
# memory (only minutes past are written and dropped) nor be deleted by retention (older than a cutoff).
MAX_FUTURE_SECONDS = 5 * 60
# What the samples table holds (PostgreSQL enforces both): a longer or NUL-bearing id or version would
# fail the write of every waiting bucket, again and again, so such a row is rejected here instead.
_MAX_ID: int = cast(sa.String, table(Sample).c.row_id.type).length or 0
_MAX_VERSION: int = cast(sa.String, table(Sample).c.model_version.type).length or 0


@dataclass(frozen=True)
class RowLimits:
    """How large one posted row may be: its compact JSON, in bytes, and each text value, in characters."""

    max_row_bytes: int = MAX_ROW_BYTES
    max_text_chars: int = MAX_TEXT_CHARS


def _bad_text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and (len(value) > limit or "\x00" in value)


def _show(value: Any) -> str:
    """A posted value as a reason names it: text quoted, anything else as JSON."""
    return repr(value) if isinstance(value, str) else orjson.dumps(value).decode()


class BodyError(ValueError):
    """The body as a whole cannot be read (not JSON, not rows)."""


@dataclass
class Rejected:
    index: int
    reason: str
    id: Any = None

    def to_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "reason": self.reason}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass
class Parsed:
    """The good rows (as dicts, with ``ts`` an epoch float in seconds) and the rejected ones."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


# What the body holds: its items, those rejected while reading it, and for JSON lines the bytes of each
# item's line (None for one document).
Split = tuple[list[Any], list[Rejected], list[int] | None]


def split_body(body: bytes) -> Split:
    """The items of a body: one object, an array, or one JSON value per line (blank lines skipped).

    A body orjson reads whole takes the fast path. One that starts with ``[`` or ``{`` is one document
    unless its first line is a whole JSON value (JSON lines): a pretty-printed array stays one array,
    and one holding ``NaN`` or ``Infinity`` (which orjson refuses, and which a number column cannot
    hold) is read by the stdlib parser, its rows with such a value rejected by index, the others kept.
    """
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _not_one_value(body)
    if isinstance(whole, dict):
        return [whole], [], None
    if isinstance(whole, list):
        return whole, [], None
    raise BodyError("body must be a JSON object, an array of objects, or JSON lines")


_FORMS = "send one object, an array of objects, or one object per line"
_NOT_JSON = f"body is not JSON: {_FORMS}"


def _not_one_value(body: bytes) -> Split:
    """A body orjson cannot read whole: JSON lines, or one document it refuses (``NaN``), or neither."""
    text = body.lstrip()
    first, newline, rest = text.partition(b"\n")
    if text[:1] not in (b"[", b"{"):
        if not rest.strip():
            raise BodyError(_NOT_JSON)
        return _lines(body)
    if rest.strip():
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            pass
        else:
            return _lines(body)  # JSON lines, the client's form: its first line is a whole value
    try:
        whole = _lenient_loads(body)
    except json.JSONDecodeError as exc:
        head = exc.doc[: exc.pos]
        if exc.msg == "Extra data" and "\n" in head.lstrip() and "\n" not in head.strip():
            return _lines(body)  # JSON lines whose first line holds NaN: a whole value, then the next line
        if text[:1] == b"{" and rest.strip():
            items, bad, sent = _lines(body)
            if len(bad) * 2 < len(items):  # mostly one value per line: JSON lines with a few bad lines
                return items, bad, sent
        raise BodyError(f"body is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}): {_FORMS}") from None
    except RecursionError:
        raise BodyError("body is nested too deeply to be rows") from None
    except ValueError:  # not UTF-8, or an integer of thousands of digits
        raise BodyError(_NOT_JSON) from None
    if isinstance(whole, dict):
        items = [whole]
    elif isinstance(whole, list):
        items = whole
    else:
        raise BodyError("body must be a JSON object, an array of objects, or JSON lines")
    bad = []
    for index, item in enumerate(items):
        problem = _unrepresentable(item) if isinstance(item, dict) else None  # not an object: said later
        if problem:
            bad.append(Rejected(index, problem, _echoable_id(item)))
    return items, bad, None


def _lines(body: bytes) -> Split:
    items: list[Any] = []
    bad: list[Rejected] = []
    sent: list[int] = []
    for number, line in enumerate(body.split(b"\n")):
        if not line.strip():
            continue
        sent.append(len(line))
        try:
            items.append(orjson.loads(line))
            continue
        except orjson.JSONDecodeError as exc:
            message = exc.msg
        try:
            item = _lenient_loads(line)  # a line orjson refuses may still be JSON holding NaN or Infinity
        except (ValueError, RecursionError):
            bad.append(Rejected(len(items), f"line {number + 1} is not JSON: {message}"))
            item = None
        else:
            problem = _unrepresentable(item) if isinstance(item, dict) else None
            if problem:
                bad.append(Rejected(len(items), problem, _echoable_id(item)))
        items.append(item)  # rejected ones too: keeps indexes aligned with what was sent
    return items, bad, sent


def _big_int(text: str) -> int | float:
    """An integer as orjson reads it: beyond 64 bits, a float (infinite when past a double's range)."""
    value = int(text)
    if -(2**63) <= value < 2**64:
        return value
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


_LENIENT = json.JSONDecoder(parse_int=_big_int)


def _lenient_loads(body: bytes) -> Any:
    """The stdlib parser, which reads ``NaN``, ``Infinity`` and ``-Infinity`` (orjson refuses them)."""
    return _LENIENT.decode(body.decode())


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _echoable_id(item: Any) -> Any:
    """A rejected row's id as its answer may echo it: not one that is not Unicode, nor a huge one."""
    row_id = item.get("id") if isinstance(item, dict) else None
    if isinstance(row_id, int) or (isinstance(row_id, str) and len(row_id) <= _MAX_ID and _encodable(row_id)):
        return row_id
    return None


def _field(path: tuple[Any, ...]) -> str:
    if len(path) == 2 and path[0] == "features":
        return f"feature {path[1]!r}"
    if not path:
        return "the row"
    name = str(path[0])
    for part in path[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def _unrepresentable(item: Any) -> str | None:
    """Why a row read by the stdlib parser cannot be kept: NaN or an infinity (a number column cannot
    hold it, and orjson cannot write it back), or text with a lone surrogate (not Unicode); else None."""
    reasons: list[str] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, float):
            if not math.isfinite(value):
                shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
                reasons.append(
                    f"{_field(path)} is {shown}: JSON has no NaN or Infinity, and a row needs finite numbers"
                    " (send null for a missing value)"
                )
        elif isinstance(value, str):
            if not _encodable(value):
                reasons.append(f"{_field(path)} is not valid Unicode text (a lone surrogate)")
        elif isinstance(value, dict):
            for key, inner in value.items():
                if not _encodable(key):
                    reasons.append(f"a key of {_field(path)} is not valid Unicode text (a lone surrogate)")
                    continue
                walk(inner, (*path, key))
        elif isinstance(value, list):
            for position, inner in enumerate(value):
                walk(inner, (*path, position))

    try:
        walk(item, ())
    except RecursionError:
        return "the row is nested too deeply"
    return "; ".join(reasons) or None


def _timestamp(value: Any, received: float) -> float:
    if value is None:
        return received
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError
        epoch = float(value)
    else:
        stamp = datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        epoch = stamp.timestamp()
    if not _FIRST_TS <= epoch < _END_TS:  # its minute must be a datetime (epoch milliseconds are not)
        raise ValueError
    return epoch


# The exact types each feature type accepts. orjson only produces exact types (bool is never an int
# here), so a set lookup decides the common case; _type_error only words the failures.
_ACCEPTED_TYPES: dict[str, frozenset[type]] = {
    "number": frozenset({int, float, type(None)}),
    "string": frozenset({str, int, type(None)}),
    "boolean": frozenset({bool, type(None)}),
}


def _type_error(value: Any, expected: FeatureType) -> str | None:
    if value is None or expected == "any":
        return None
    if expected == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__}"
        return None
    if expected == "string":
        return (
            None
            if isinstance(value, (str, int)) and not isinstance(value, bool)
            else f"expected text, got {type(value).__name__}"
        )
    return None if isinstance(value, bool) else f"expected true or false, got {type(value).__name__}"


def _largest_part(item: dict) -> tuple[str, int]:
    """The field of a row that takes the most bytes of its JSON (a feature counts on its own)."""
    parts: list[tuple[int, str]] = []
    for key, value in item.items():
        if key == "features" and isinstance(value, dict):
            parts.extend((len(orjson.dumps(inner)), _field(("features", name))) for name, inner in value.items())
        else:
            parts.append((len(orjson.dumps(value)), _field((key,))))
    size, name = max(parts, default=(0, "the row"))
    return name, size


def _too_large(item: dict, size: int, limit: int) -> str:
    name, part = _largest_part(item)
    return (
        f"the row is {size:,} bytes of JSON, more than ingest.max_row_bytes ({limit:,}): {name} takes {part:,};"
        " send large values elsewhere and a reference to them here"
    )


def _long_texts(item: dict, limit: int) -> list[str]:
    """Why a row's text values are too long: each feature, the prediction or the label past ``limit``."""
    reasons = []
    values = item.get("features")
    named: list[tuple[tuple[Any, ...], Any]] = (
        [(("features", name), value) for name, value in values.items()] if isinstance(values, dict) else []
    )
    named += [((key,), item.get(key)) for key in ("prediction", "label")]
    for path, value in named:
        if isinstance(value, str) and len(value) > limit:
            reasons.append(f"{_field(path)} is {len(value):,} characters of text, more than ingest.max_text_chars ({limit:,})")
    return reasons


# A row's compact JSON is at most this many times the bytes it was sent in: only a number can grow, and
# at most 4.5 times (``1e15`` is written ``1000000000000000.0``); text never does. So a row sent in at
# most max_row_bytes / 5 bytes (its line, or the whole body) need not be measured.
_GROWTH = 5
# The deepest row orjson writes. One nested deeper (orjson reads 1,024 levels) is rejected: the JSON
# encoder that stores it gives up near 1,000, which failed the write of every waiting bucket, for good.
# A row nested deeper takes at least two bytes a level, so one sent in fewer need not be measured.
_DEEPEST = 254


def _validate_each(body: bytes, what: str, keys: set[str], check: Callable[[dict, list[str]], dict], limits: RowLimits) -> Parsed:
    """The loop both endpoints share: each item an object within the size limits, with an id, known keys,
    and ``check``'s rules.

    ``check`` appends its reasons to the list it is given and returns the row to keep. A row past
    ``limits.max_row_bytes`` or ``_DEEPEST`` is rejected for that alone (its other faults are not looked
    for). The size is measured (one ``orjson.dumps``) only when the bytes the row was sent in do not
    already bound it (``_GROWTH``, ``_DEEPEST``), and its text values only when it is larger than
    ``limits.max_text_chars``: a text takes at least a byte a character, in the body as in JSON.
    """
    items, bad, sent = split_body(body)
    out = Parsed(rejected=bad)
    skip = {r.index for r in bad}
    max_row_bytes, max_text_chars = limits.max_row_bytes, limits.max_text_chars
    unmeasured = min(max_row_bytes // _GROWTH, 2 * _DEEPEST)
    whole = len(body)
    for index, item in enumerate(items):
        if index in skip:
            continue
        if not isinstance(item, dict):
            out.rejected.append(Rejected(index, f"{what} must be a JSON object"))
            continue
        size = whole if sent is None else sent[index]  # as sent: its compact JSON is at most _GROWTH times that
        if size > unmeasured:
            try:
                size = len(orjson.dumps(item))
            except orjson.JSONEncodeError:
                out.rejected.append(Rejected(index, f"the row is nested more than {_DEEPEST} levels deep", _echoable_id(item)))
                continue
            if size > max_row_bytes:
                out.rejected.append(Rejected(index, _too_large(item, size, max_row_bytes), _echoable_id(item)))
                continue
        reasons: list[str] = _long_texts(item, max_text_chars) if size > max_text_chars else []
        row_id = item.get("id")
        if row_id is None or isinstance(row_id, (bool, dict, list)) or row_id == "":
            reasons.append("missing id")
        elif _bad_text(row_id, _MAX_ID):
            reasons.append(f"id must be at most {_MAX_ID} characters, without NUL")
        row = check(item, reasons)
        if not item.keys() <= keys:  # a subset test allocates nothing: the common case stays cheap
            reasons.append(f"unknown key(s) {', '.join(sorted(map(str, item.keys() - keys)))}")
        if reasons:
            out.rejected.append(Rejected(index, "; ".join(reasons), _echoable_id(item)))
            continue
        row["id"] = str(row_id)
        out.rows.append(row)
    if bad:
        out.rejected.sort(key=lambda rejected: rejected.index)  # those of the parse first: in body order
    return out


def validate_predictions(
    body: bytes, features: dict[str, FeatureType], received: float, limits: RowLimits = RowLimits()
) -> Parsed:
    """Rows of ``POST /v1/models/{model}/predictions``; ``received`` is the ``ts`` of rows without one."""

    def check(item: dict, reasons: list[str]) -> dict:
        try:
            item["ts"] = _timestamp(item.get("ts"), received)
        except (ValueError, TypeError):
            reasons.append(f"bad timestamp {item.get('ts')!r}: use ISO-8601 (2026-11-25T12:00:00Z) or epoch seconds")
        else:
            if item["ts"] > received + MAX_FUTURE_SECONDS:
                reasons.append("timestamp is in the future (more than 5 minutes ahead of the daemon's clock)")
        values = item.get("features")
        if not isinstance(values, dict):
            reasons.append("missing features object")
        else:
            for name, expected in features.items():
                if name not in values:
                    reasons.append(f"missing feature {name!r}")
                    continue
                accepted = _ACCEPTED_TYPES.get(expected)
                if accepted is None or type(values[name]) in accepted:
                    continue
                problem = _type_error(values[name], expected)
                if problem:
                    reasons.append(f"feature {name!r}: {problem}")
        if "prediction" not in item:
            reasons.append("missing prediction")
        latency = item.get("latency_ms")
        if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0):
            reasons.append("latency_ms must be a number >= 0")
        probability = item.get("probability")
        if probability is not None and (
            isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1
        ):
            reasons.append(f"probability must be a number from 0 to 1, or null, not {_show(probability)}")
        version = item.get("model_version")
        if version is not None and (not isinstance(version, (str, int)) or _bad_text(version, _MAX_VERSION)):
            reasons.append(f"model_version must be text of at most {_MAX_VERSION} characters, without NUL")
        return item

    return _validate_each(body, "a row", _ROW_KEYS, check, limits)


_NOT_A_CLASS = object()


def validate_labels(body: bytes, classes: ClassSet | None = None, limits: RowLimits = RowLimits()) -> Parsed:
    """Rows of ``POST /v1/models/{model}/labels``: ``{"id", "label"}``. With the model's ``classes``, a
    label must be one of them (``1.0`` and ``"1"`` are the class ``1``) and is kept as that class;
    ``null`` (no label) is always taken."""

    def check(item: dict, reasons: list[str]) -> dict:
        label = item.get("label")
        if "label" not in item:
            reasons.append("missing label (a number, text or true/false)")
        elif isinstance(label, (dict, list)):
            reasons.append(
                f"label must be a number, text or true/false, got {'a list' if isinstance(label, list) else 'an object'}"
            )
        elif classes is not None and label is not None:
            found = classes.get(label, _NOT_A_CLASS)
            if found is _NOT_A_CLASS:
                reasons.append(f"label {_show(label)} is not one of the classes {classes}")
            else:
                label = found
        return {"label": label}

    return _validate_each(body, "a label", {"id", "label"}, check, limits)
