"""Reading the daemon config and the check files into typed models, or into precise errors.

Three passes, each reporting every problem it finds rather than the first:
1. YAML into data that remembers positions, with ``${VAR}`` filled in (:mod:`.document`);
2. the data into pydantic models: shape and types, unknown keys with a suggestion;
3. what only a whole file can tell: unknown metrics in ``when``, unknown owners, duplicate names,
   a check kind the source cannot feed.
Relative paths in a check file (``source.path``, ``reference.path``) are taken from the directory of
the daemon config, or the current directory when there is none.
"""

from __future__ import annotations

import difflib
import itertools
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from monitor.alerting.conditions import ABOVE, BACK, BELOW, OUTSIDE, tidy
from monitor.alerting.rules import RuleSpec
from monitor.checks import CHECKS
from monitor.checks.base import CheckKind, CheckSpec
from monitor.checks.slo import SLO_METRICS, WithSlo
from monitor.config.document import MAX_BYTES, Document, read_document
from monitor.config.durations import format_duration
from monitor.config.errors import ConfigError, ConfigIssue
from monitor.config.models import DaemonConfig, ModelConfig, Route, is_loopback
from monitor.sources import SOURCES
from monitor.sources.base import VERSION, SourceError
from monitor.sources.reference import Reference, load_reference

CHECK_FILE_PATTERNS = ("*.yaml", "*.yml")
MAX_ISSUES = 100
"""A file's problems listed at most; one more line says that there are more. Finding and wording each costs
time (a hostile file of 40,000 unknown keys took over 3 s), and no one reads past the first hundred."""


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else nothing."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> DaemonConfig:
    """The daemon config at ``path``, or the defaults when ``path`` is None."""
    if path is None:
        return DaemonConfig()
    doc = _read(Path(path), environ)
    config = _validate(doc, DaemonConfig)
    if config is not None:
        host = config.server.listen.rpartition(":")[0]
        if not config.server.token.get_secret_value() and not is_loopback(host):
            doc.issues.append(
                doc.issue(
                    ("server", "listen"),
                    f"listening on {host or 'every address'} needs a bearer token: "
                    "set server.token (e.g. ${MONITOR_INGEST_TOKEN}) or listen on 127.0.0.1",
                )
            )
        doc.issues.extend(_route_issues(doc, config, config.routes, ("routes",)))
        if config.platform_owner is not None and config.platform_owner not in config.owners:
            owner = config.platform_owner
            doc.issues.append(doc.issue(("platform_owner",), f"unknown owner {owner!r}{suggest(owner, config.owners)}"))
        smtp = config.notifiers.email
        for name, owner in config.owners.items():
            if owner.email and not smtp.host:
                doc.issues.append(
                    doc.issue(
                        ("owners", name, "email"),
                        "no mail server to send through: set notifiers.email.host (and from), see docs/configuration.md",
                    )
                )
        if smtp.host and not smtp.sender:
            doc.issues.append(
                doc.issue(("notifiers", "email", "host"), "an e-mail needs a From address: set notifiers.email.from")
            )
        if smtp.host and smtp.security == "none" and smtp.username.get_secret_value() and not is_loopback(smtp.host):
            doc.issues.append(
                doc.issue(
                    ("notifiers", "email", "security"),
                    "a login without TLS would send the password in the clear: use starttls or tls (none only to 127.0.0.1)",
                )
            )
        checks_dir = Path(path).parent / config.checks_dir
        if not checks_dir.is_dir():  # "ok: 0 models" would hide that nothing is watched
            doc.issues.append(
                doc.issue(("checks_dir",), f"{checks_dir} is not a directory: create it, or point checks_dir at yours")
            )
    if doc.issues:
        raise ConfigError(_bounded(doc.issues))
    return config


def _route_issues(
    doc: Document, config: DaemonConfig, routes: list[Route], at: tuple,
    via: list[str] | None = None, muted: bool = False, grouped: bool = False,
) -> list[ConfigIssue]:  # fmt: skip
    """What is wrong in a routing tree: an owner or receiver that does not exist, or that the route's
    ``via`` (its own or inherited) never lets through; a route that does nothing, or whose ``also``
    a muted route above silences; a ``group_wait`` with no ``group_by``. ``via``, ``muted`` and
    ``grouped`` are what the routes above hand down."""
    issues = []
    for i, route in enumerate(routes):
        here = (*at, i)
        its_via: list[str] | None = list(route.via) if route.via is not None else via
        owner_match = route.match.owner
        if owner_match is not None and not any(c in owner_match for c in "*?[") and owner_match not in config.owners:
            why = f"no owner {owner_match!r}{suggest(owner_match, config.owners)}: this route would match no alert"
            issues.append(doc.issue((*here, "match", "owner"), why))
        if muted and route.mute is None and route.also:
            why = "a route above mutes this one, so its also is never told: give it mute: false, or drop the also"
            issues.append(doc.issue((*here, "also"), why))
        if route.group_wait is not None and route.group_by is None and not grouped:
            issues.append(doc.issue((*here, "group_wait"), "group_wait is how long a group waits: give the route group_by"))
        for j, also in enumerate(route.also):
            owner, _, kind = also.partition("/")
            has = config.owners[owner].kinds() if owner in config.owners else []
            # The console is never kept out by a via: it stands in for an owner with nothing else.
            kinds = [kind] if kind and kind in has else [] if kind else has
            if its_via is not None and kinds and not set(kinds) & set(its_via):
                issues.append(
                    doc.issue(
                        (*here, "also", j),
                        f"{also} has no receiver this route's via ({', '.join(its_via)}) lets through: it would never be told here",
                    )
                )
            if owner not in config.owners:
                issues.append(doc.issue((*here, "also", j), f"unknown owner {owner!r}{suggest(owner, config.owners)}"))
            elif kind and kind != "console" and kind not in has:
                issues.append(
                    doc.issue(
                        (*here, "also", j),
                        f"{owner} has no {kind} receiver"
                        + (f"; it has: {', '.join(has)}" if has else f"; give it one under owners.{owner}"),
                    )
                )
        if route.mute and route.also:
            issues.append(doc.issue((*here, "mute"), "a muted route tells no one: drop its also, or mute: true"))
        does = route.also or route.via is not None or route.mute is not None or route.group_by is not None
        if not (does or route.repeat is not None or route.routes or route.group_wait is not None):
            issues.append(doc.issue(here, "this route changes nothing: give it also, via, mute, group_by, repeat or routes"))
        its_mute = route.mute if route.mute is not None else muted
        its_group = grouped or route.group_by is not None
        issues.extend(_route_issues(doc, config, route.routes, (*here, "routes"), its_via, its_mute, its_group))
    return issues


def load_model_file(
    path: str | Path,
    config: DaemonConfig | None = None,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    warnings: list[ConfigIssue] | None = None,
) -> ModelConfig:
    """One check file, validated against the daemon config's owners when one is given; what works but
    is likely not meant is added to ``warnings`` when given."""
    doc = _read(Path(path), environ)
    model = _validate(doc, ModelConfig)
    if model is not None:
        model = _resolve_paths(model, base_dir or Path.cwd())
        found = itertools.chain(_semantic_issues(doc, model, config), _maintenance_issues(doc, model))
        doc.issues.extend(itertools.islice(found, MAX_ISSUES + 1))
    if doc.issues:
        raise ConfigError(_bounded(doc.issues))
    if warnings is not None:
        warnings.extend(sorted(doc.warnings, key=lambda w: (w.line, w.col)))
    return model


def _bounded(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """The first MAX_ISSUES issues in file order, and a line at the next saying there are more."""
    ordered = sorted(issues, key=lambda i: (i.line, i.col))
    if len(ordered) <= MAX_ISSUES:
        return ordered
    first_unlisted = ordered[MAX_ISSUES]
    more = f"more problems from here on, not listed: only the first {MAX_ISSUES} of a file are"
    return [*ordered[:MAX_ISSUES], ConfigIssue(first_unlisted.file, first_unlisted.line, first_unlisted.col, "", more)]


@dataclass
class CheckFiles:
    """Every model of a checks directory that loaded, and the problems of those that did not."""

    models: dict[str, ModelConfig] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)  # of the files that loaded


def check_file_paths(directory: Path) -> list[Path]:
    return sorted({p for pattern in CHECK_FILE_PATTERNS for p in directory.glob(pattern)})


def load_check_files(
    paths: list[Path], config: DaemonConfig | None, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> CheckFiles:
    out = CheckFiles()
    for path in paths:
        try:
            model = load_model_file(path, config, base_dir=base_dir, environ=environ, warnings=out.warnings)
        except ConfigError as exc:
            out.issues.extend(exc.issues)
            continue
        if model.model in out.models:
            out.issues.append(
                ConfigIssue(
                    str(path),
                    1,
                    1,
                    "model",
                    f"model {model.model!r} is already defined in {out.files[model.model]}: one file per model",
                )
            )
            continue
        out.models[model.model] = model
        out.files[model.model] = path
    return out


def _read(path: Path, environ: Mapping[str, str] | None) -> Document:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), 1, 1, "", f"cannot read file: {exc.strerror}")]) from exc
    if len(data) > MAX_BYTES:
        too_large = f"file is larger than {MAX_BYTES // 1024} KiB: see Limits in docs/configuration.md"
        raise ConfigError([ConfigIssue(str(path), 1, 1, "", too_large)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[start : exc.start].decode("utf-8", errors="replace")) + 1
        issue = ConfigIssue(
            str(path), line, col, "", f"file is not UTF-8 text (byte 0x{data[exc.start]:02x} here): save it as UTF-8"
        )
        raise ConfigError([issue]) from exc
    return read_document(str(path), text.replace("\r\n", "\n").replace("\r", "\n"), environ)  # newlines as read_text gives them


def _validate(doc: Document, model_cls: type[BaseModel]) -> Any:
    if doc.data is None:  # a YAML syntax error, already reported
        return None
    if not isinstance(doc.data, dict):
        doc.issues.append(doc.issue((), "expected a mapping of keys at the top of the file"))
        return None
    try:
        return model_cls.model_validate(doc.data)
    except ValidationError as exc:
        # A value already reported (an unset ${VAR}) is not reported again for what it became.
        reported = {(i.line, i.col) for i in doc.issues}
        for error in _one_per_scalar_union(exc.errors(include_input=False, include_url=False), model_cls, doc.data)[
            : MAX_ISSUES + 1
        ]:
            if error["type"] == "default_factory_not_called":  # a default made of a key that was itself a mistake
                continue
            issue = _issue_from_pydantic(doc, model_cls, error)
            if (issue.line, issue.col) not in reported:
                doc.issues.append(issue)
        return None


def _scalar_member(part: Any) -> bool:
    """Whether a step of pydantic's ``loc`` names a member of a union of plain values (``threshold: 0.1``
    or ``auto``: ``constrained-float``, ``literal['auto']``) rather than a key."""
    return isinstance(part, str) and (part.startswith(("literal[", "constrained-", "function-")) or part in _SCALARS)


_SCALARS = frozenset({"float", "int", "str", "bool"})


def _one_per_scalar_union(errors: list[Any], model_cls: type[BaseModel], data: Any) -> list[Any]:
    """A value that fits no member of a union of plain values is one mistake, not one per member: the
    member of the written value's kind speaks (text: the words allowed; a number: the number's bounds)."""
    out: list[Any] = []
    seen: dict[tuple, int] = {}
    for error in errors:
        loc = tuple(error["loc"])
        if not any(_scalar_member(part) for part in loc):
            out.append(error)
            continue
        stripped = tuple(part for part in loc if not _scalar_member(part))
        error = {**error, "loc": stripped}
        text = _is_word(_get(data, _data_path(model_cls, stripped, data)[0]))
        if stripped not in seen:
            seen[stripped] = len(out)
            out.append(error)
        elif (error["type"] == "literal_error") == text:
            # The words allowed, and that a number is too: "expected one of 'auto', or a number".
            ctx = {**error.get("ctx", {}), "expected": f"{error.get('ctx', {}).get('expected', '')}, or a number"}
            out[seen[stripped]] = {**error, "ctx": ctx}
    return out


def _is_word(value: Any) -> bool:
    """Text that is not a number written as text (YAML reads ``1e999`` as text, pydantic as a number; ``5%``
    is a number in the wrong form)."""
    if not isinstance(value, str):
        return False
    try:
        float(value.strip().removesuffix("%"))
    except ValueError:
        return True
    return False


def _issue_from_pydantic(doc: Document, model_cls: type[BaseModel], error: Mapping[str, Any]) -> ConfigIssue:
    path, annotation, at_key = _data_path(model_cls, tuple(error["loc"]), doc.data)
    kind, message = error["type"], error["msg"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        parent = _annotation_at(model_cls, path[:-1], doc.data)
        known = _field_names(parent)
        return doc.issue(
            path, f"unknown key {path[-1]!r}{suggest(path[-1], known)}; allowed: {', '.join(sorted(known))}", key=True
        )
    if kind == "missing":
        return doc.issue(path, "required key is missing")
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        found = _get(doc.data, path + ("kind",))
        return doc.issue(path + ("kind",), f"unknown kind {found!r}{suggest(found, tags)}; expected one of {', '.join(tags)}")
    if kind == "union_tag_not_found":
        return doc.issue(path, "required key 'kind' is missing")
    got = path[-1] if at_key else _get(doc.data, path)
    if not at_key and "SecretStr" in repr(annotation) and isinstance(got, (int, float, str)):
        got = _MISSING  # a token written as a bare number is a secret still: its kind may be said, not it
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        return doc.issue(path, f"{got!r} is not allowed{suggest(got, choices)}; expected one of {expected}")
    if kind == "too_short":  # an empty list: what it got goes without saying
        return doc.issue(path, "add at least one item")
    if kind in _BOUNDS:
        word, bound = _BOUNDS[kind]
        limit = ctx[bound]
        shown = int(limit) if float(limit).is_integer() else limit  # lt=1 on a float field: "less than 1"
        return doc.issue(path, f"must be {word} {shown}, got {_describe(got)}")
    if kind == "finite_number":  # 1e999 (text to YAML, infinity to Python), .inf, .nan: shown, being no secret
        return doc.issue(path, f"expected a finite number, got {got}")
    if kind == "string_too_long":
        return doc.issue(path, f"at most {ctx['max_length']} characters, got {len(got)}", key=at_key)
    if kind in ("float_parsing", "float_type") and isinstance(got, str) and got.strip().endswith("%"):
        written = got.strip()
        try:
            fraction = f"{written} is {float(written[:-1]) / 100:g}"
        except ValueError:
            fraction = "50% is 0.5"
        return doc.issue(path, f"expected a number, got a percentage: write it as a fraction ({fraction})")
    if kind in _PLAIN_MESSAGES:
        message = _PLAIN_MESSAGES[kind] + (f", got {_describe(got)}" if got is not _MISSING else "")
        if kind == "string_type" and isinstance(got, bool):
            message += " (unquoted, yes, no, on and off are true/false to YAML: quote the text)"
        return doc.issue(path, message, key=at_key)
    if kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    elif kind == "string_pattern_mismatch":
        message = _pattern_hint(annotation) or message
    elif got is not _MISSING:
        message = f"{message}, got {_describe(got)}"
    return doc.issue(path, message, key=at_key)


def _pattern_hint(annotation: Any) -> str | None:
    """What a pattern allows, from the description of the type (``Name``'s), also inside ``X | None``."""
    for candidate in (annotation, *_union_members(_unwrap(annotation))):
        for meta in getattr(candidate, "__metadata__", ()):
            description = getattr(meta, "description", None)
            if description:
                return f"use only {description}"
    return "use only letters, digits and '_' (a name that must be safe to quote in SQL)"


_MISSING = object()
_PLAIN_MESSAGES = {
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "string_type": "expected text",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "url_parsing": "expected a whole URL, such as https://wiki.example.com/runbooks/fraud",
    "url_scheme": "expected an http or https URL, such as https://wiki.example.com/runbooks/fraud",
}
# pydantic's bound on a number (``ge=1``): how to say it, and its key in the error's context.
_BOUNDS = {
    "greater_than": ("more than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _describe(value: Any) -> str:
    """What a value is, in a person's words; a number is itself (text is never shown: it may hold a ${SECRET})."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and len(str(value)) <= 20:
        return str(value)
    names = {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "nothing",
    }
    return names.get(type(value), type(value).__name__)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> tuple:
    """The members of a union, nested unions flattened (an optional section is ``Annotated[A | B] | None``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(m for arg in typing.get_args(annotation) for m in (_union_members(_unwrap(arg)) or (arg,)))
    return ()


def _field_names(annotation: Any) -> set[str]:
    annotation = _unwrap(annotation)
    models = [m for m in map(_unwrap, _union_members(annotation)) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) == 1:  # an optional section, ``ReferenceSpec | None``
        annotation = models[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {f.alias or name for name, f in annotation.model_fields.items()}
    return set()


def _step(annotation: Any, part: Any, data: Any) -> tuple[Any, bool]:
    """The annotation one step down ``part``; the flag says ``part`` was a union tag, not a key."""
    annotation = _unwrap(annotation)
    members = _union_members(annotation)
    if members:
        for member in members:
            member = _unwrap(member)
            if isinstance(member, type) and issubclass(member, BaseModel):
                kind_field = member.model_fields.get("kind")
                if kind_field is not None and part in typing.get_args(kind_field.annotation):
                    return member, True
        models = [m for m in members if isinstance(_unwrap(m), type) and issubclass(_unwrap(m), BaseModel)]
        return (_step(models[0], part, data)[0] if models else None), False
    origin = typing.get_origin(annotation)
    if origin is list:
        return typing.get_args(annotation)[0], False
    if origin is dict:
        return typing.get_args(annotation)[1], False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, f in annotation.model_fields.items():
            if part in (name, f.alias):
                # The field's own description (e.g. Name's) travels with it: _pattern_hint reads it.
                extra = (*f.metadata, f) if f.description else tuple(f.metadata)
                return (typing.Annotated[(f.annotation, *extra)] if extra else f.annotation), False
    return None, False


def _data_path(model_cls: type[BaseModel], loc: tuple, data: Any) -> tuple[tuple, Any, bool]:
    """pydantic's ``loc`` as a path into the YAML data (union tags dropped), the annotation there, and
    whether the error is the key at the end of the path rather than its value (an owner named ``fraud team``)."""
    path: tuple = ()
    annotation: Any = model_cls
    holder: Any = None
    for part in loc:
        if part == "[key]":  # pydantic's step to a mapping's key, always last: the key's type is the dict's first
            return path, typing.get_args(_unwrap(holder))[0], True
        holder = annotation
        annotation, was_tag = _step(annotation, part, _get(data, path))
        if not was_tag:
            path += (part,)
    return path, annotation, False


def _annotation_at(model_cls: type[BaseModel], path: tuple, data: Any) -> Any:
    """The model that holds the value at ``path``: a union is resolved by the ``kind`` written there."""
    annotation: Any = model_cls
    for depth, part in enumerate(path):
        annotation, _ = _step(annotation, part, data)
        if _union_members(_unwrap(annotation)):
            tagged, was_tag = _step(annotation, _get(data, path[: depth + 1] + ("kind",)), data)
            if was_tag:
                annotation = tagged
    return annotation


def _maintenance_issues(doc: Document, model: ModelConfig) -> Iterator[ConfigIssue]:
    """A maintenance window's ``checks`` must be the model's."""
    names = [check.name for check in model.checks]
    for i, window in enumerate(model.maintenance):
        for j, name in enumerate(window.checks):
            if name not in names:
                yield doc.issue(
                    ("maintenance", i, "checks", j), f"{name!r} is not a check of {model.model}{suggest(name, names)}"
                )


def _semantic_issues(doc: Document, model: ModelConfig, config: DaemonConfig | None) -> Iterator[ConfigIssue]:
    """What only the whole file tells, in file order; a generator, so that a caller may stop after enough."""
    if config is not None and model.owner not in config.owners:
        known = ", ".join(sorted(config.owners)) or "none are configured"
        yield doc.issue(
            ("owner",), f"unknown owner {model.owner!r}{suggest(model.owner, config.owners)}; owners in the config: {known}"
        )
    features = model.source.features if model.source else []
    roles = model.source.roles() if model.source else {}
    for name in getattr(model.source, "feature_types", None) or {}:  # an ingest source's; a typo would type nothing
        if name not in features:
            yield doc.issue(
                ("source", "feature_types", name),
                f"{name!r} is not one of the source's features{suggest(name, features)}",
                key=True,
            )
    problems: list[ConfigIssue] = []
    reference = _reference(doc, model, problems)
    yield from problems
    seen: dict[str, int] = {}
    for i, check in enumerate(model.checks):
        kind = CHECKS[check.kind]
        if check.name in seen:
            yield doc.issue(("checks", i, "name"), f"duplicate check name {check.name!r} (also checks[{seen[check.name]}])")
        seen.setdefault(check.name, i)
        if kind.reads_rows and model.source is None:
            yield doc.issue(("checks", i, "kind"), f"a {check.kind} check reads the model's rows: add a source")
            continue
        if kind.needs_reference and model.reference is None:
            yield doc.issue(("checks", i, "kind"), f"a {check.kind} check needs a reference data set: add reference.path")
        for role in kind.required_roles:
            if role not in roles:
                key = role.lstrip("@").removesuffix("_ms")
                yield doc.issue(("checks", i, "kind"), f"a {check.kind} check needs the source's {key} column: add source.{key}")
        yield from _version_issues(doc, ("checks", i), check, kind, roles)
        yield from _earlier_issues(doc, ("checks", i), check, kind, model, config)
        if reference is not None and kind.check_reference is not None:
            for where, message in kind.check_reference(check, reference.for_source(model.source), features):
                yield doc.issue(("checks", i, *where), message)
        if reference is not None and kind.reference_warnings is not None:
            for where, message in kind.reference_warnings(check, reference.for_source(model.source), features):
                doc.warnings.append(doc.issue(("checks", i, *where), message))
        for j, feature in enumerate(getattr(check, "features", None) or []):
            if feature not in features:
                yield doc.issue(
                    ("checks", i, "features", j),
                    f"{feature!r} is not a feature of the source{suggest(feature, features)}",
                )
        keys: dict[str, int] = {}
        for j, rule in enumerate(check.alert):
            if rule.key in keys:
                where, what = (("id",), "id") if rule.id else (("when",), "condition")
                yield doc.issue(
                    ("checks", i, "alert", j, *where),
                    f"the same {what} as alert[{keys[rule.key]}]: a rule is known by its id, or by its condition "
                    "when it has none, so give each rule of a check its own (e.g. a higher threshold for critical)",
                )
            keys.setdefault(rule.key, j)
            metric = rule.when.metric
            metrics = kind.metrics_of(check)
            wants_slo = metric in SLO_METRICS and isinstance(check, WithSlo) and check.slo is None
            if wants_slo:
                yield doc.issue(
                    ("checks", i, "alert", j, "when"),
                    f"{metric} is an SLO's: add slo: to the check (docs/checks.md, {check.kind}), which also alerts "
                    "on its burn rate by itself",
                )
            elif metric not in metrics:
                yield doc.issue(
                    ("checks", i, "alert", j, "when"),
                    f"unknown metric {metric!r}{suggest(metric, metrics)}; a {check.kind} check has {', '.join(sorted(metrics))}",
                )
            yield from _rule_issues(doc, ("checks", i, "alert", j), rule, check, kind)
            yield from _share_issues(doc, ("checks", i, "alert", j), rule, kind)
            if not wants_slo:  # the rule's window is right once the check has its slo
                yield from _window_issues(doc, ("checks", i, "alert", j), rule, check, kind)


def _version_issues(
    doc: Document, at: tuple, check: CheckSpec, kind: CheckKind, roles: Mapping[str, str]
) -> Iterator[ConfigIssue]:
    """``split_by: model_version``: on a kind that reads rows, over a source that says which column holds the version."""
    if check.split_by is None:
        return
    if kind.compares_versions:
        yield doc.issue((*at, "split_by"), f"a {check.kind} check compares model versions already: remove split_by", key=True)
    elif not kind.reads_rows or kind.reads_newest:
        yield doc.issue(
            (*at, "split_by"), f"a {check.kind} check reads no rows of the model to split by version: remove split_by", key=True
        )
    elif VERSION not in roles:
        yield doc.issue(
            (*at, "split_by"),
            "the source has no model_version column to split by: add source.model_version (the column that holds "
            "each row's model version)",
        )


def _earlier_issues(
    doc: Document, at: tuple, check: CheckSpec, kind: CheckKind, model: ModelConfig, config: DaemonConfig | None
) -> Iterator[ConfigIssue]:
    """A kind that reads the same window further back (volume's rows_ratio) over an ingest source can
    only read what ingest.retention keeps."""
    shift = kind.earlier(check) if kind.earlier is not None else None
    if shift is None or config is None or model.source is None or not SOURCES[model.source.kind].rows_since_daemon:
        return
    reach, kept = shift + check.window, config.ingest.retention
    if reach <= kept:
        return
    where: tuple = (*at, "baseline") if getattr(check, "baseline", None) is not None else (*at, "kind")
    for j, rule in enumerate(check.alert):
        if where[-1] == "kind" and any(c.metric == "rows_ratio" for c in rule.conditions):
            where = (*at, "alert", j, "when")
            break
    yield doc.issue(
        where,
        f"rows_ratio compares with the window {format_duration(shift)} earlier, which reaches back "
        f"{format_duration(reach)}, and the ingest source keeps its counts for {format_duration(kept)} "
        f"(ingest.retention in the daemon config): raise ingest.retention to {format_duration(reach)} or more, "
        "or write a shorter baseline (baseline: 1d)",
    )


def _rule_issues(doc: Document, at: tuple, rule: RuleSpec, check: CheckSpec, kind: CheckKind) -> Iterator[ConfigIssue]:
    """What cannot work in one rule's conditions, hysteresis and baseline (see docs/alerting.md)."""
    when, resolve = rule.when, rule.resolve_when
    metrics = kind.metrics_of(check)
    for key, condition in (("when", when), ("resolve_when", resolve)):
        if condition is None or condition.anchor not in ("reference", "range") or condition.metric not in metrics:
            continue
        if condition.anchor == "range":
            if not kind.range_metrics:
                yield doc.issue(
                    (*at, key),
                    f"the reference range runs the check on its reference's own rows, and a {check.kind} check cannot "
                    f"be (it is for {', '.join(sorted(k.kind for k in _calibrating_kinds()))} checks): compare "
                    f"{condition.metric} with a number, or with its own past ('{condition.metric} "
                    f"{condition.op if condition.op in ABOVE + BELOW else '>'} 1.5x baseline')",
                )
            elif condition.metric not in kind.range_metrics:
                yield doc.issue(
                    (*at, key),
                    f"a {check.kind} check works out no reference range of {condition.metric!r} (it has one of "
                    f"{', '.join(sorted(kind.range_metrics))}): compare it with a number",
                )
            continue
        if condition.metric not in kind.reference_metrics:
            has = f" (it has one of {', '.join(sorted(kind.reference_metrics))})" if kind.reference_metrics else ""
            yield doc.issue(
                (*at, key),
                f"a {check.kind} check computes no reference value of {condition.metric!r}{has}: compare it with a "
                f"number, or with its own past ('{condition.metric} {condition.op} 1.5x baseline')",
            )
    if (resolve is not None or rule.margin is not None) and when.anchor == "range":
        yield doc.issue(
            (*at, "resolve_when" if resolve is not None else "margin"),
            f"'{when.text}' resolves once the value is back inside the reference's range, which is worked out "
            f"at each window's size: remove {'resolve_when' if resolve is not None else 'margin'}",
        )
    elif resolve is not None and resolve.anchor == "range":
        yield doc.issue(
            (*at, "resolve_when"),
            f"'{resolve.text}' cannot say when '{when.text}' is back: a rule on the reference range is its own "
            f"('{when.metric} outside reference' resolves once back inside it); remove resolve_when, or write one on a number",
        )
    elif (resolve is not None or rule.margin is not None) and when.op not in ABOVE + BELOW:
        yield doc.issue(
            (*at, "resolve_when" if resolve is not None else "margin"),
            f"a condition with {when.op!r} has no threshold to come back past: resolve_when and margin go with > >= < <=",
        )
    elif resolve is not None:
        other = BELOW if when.op in ABOVE else ABOVE
        if resolve.metric != when.metric:
            yield doc.issue(
                (*at, "resolve_when"),
                f"resolve_when must be on the rule's metric {when.metric!r}, got {resolve.metric!r}: "
                "it says when the same value is back",
            )
        elif resolve.op not in other:
            yield doc.issue(
                (*at, "resolve_when"),
                f"resolve_when says when the value is back, so it compares the other way from when's {when.op!r}: "
                f"write {' or '.join(other)}",
            )
        elif (resolve.anchor, resolve.factor) == (when.anchor, when.factor) and (
            resolve.threshold > when.threshold if when.op in ABOVE else resolve.threshold < when.threshold
        ):
            side = "at or below" if when.op in ABOVE else "at or above"
            yield doc.issue(
                (*at, "resolve_when"),
                f"'{resolve.text}' would hold while '{when.text}' still holds: resolve_when's threshold must be {side} when's",
            )
        if rule.margin is not None:
            yield doc.issue(
                (*at, "margin"), "margin and resolve_when both say when an episode resolves: keep one of them", key=True
            )
    elif rule.margin is not None and rule.margin.percent and not when.percent:
        yield doc.issue(
            (*at, "margin"),
            f"a margin is in the units of {when.metric}: write {rule.margin.value:g}; a percentage margin goes "
            "with a condition written with one, such as 'availability < 99%'",
        )
    for key in ("baseline", "baseline_min_points"):
        if getattr(rule, key) is not None and not rule.uses("baseline"):
            yield doc.issue(
                (*at, key),
                f"{key} is for a condition on the baseline, such as '{when.metric} {when.op if when.op != OUTSIDE else '>'} "
                "1.5x baseline', "
                "and this rule has none: remove it",
                key=True,
            )
    if rule.uses("baseline"):
        runs, period = rule.baseline_period // check.every, rule.baseline_period
        if runs < rule.min_points:
            where = "baseline" if rule.baseline is not None else "baseline_min_points" if rule.baseline_min_points else "when"
            default = "" if rule.baseline is not None else " (the default)"
            yield doc.issue(
                (*at, where),
                f"a baseline of {format_duration(period)}{default} holds at most {runs} value(s) of a check that runs "
                f"every {format_duration(check.every)}, fewer than the {rule.min_points} it needs: write a longer "
                f"baseline (baseline: {format_duration(check.every * rule.min_points)}) or a lower baseline_min_points",
            )


def _calibrating_kinds() -> list[CheckKind]:
    return [kind for kind in CHECKS.values() if kind.range_metrics]


def _share_issues(doc: Document, at: tuple, rule: RuleSpec, kind: CheckKind) -> Iterator[ConfigIssue]:
    """A rule on a share (a value from 0 to 1 whatever the data) that could never fire, or never resolve."""
    when, resolve = rule.when, rule.resolve_when
    if when.metric not in kind.shares or when.anchor in ("baseline", "range"):
        return
    if when.anchor == "reference":  # factor x a share + offset: from the offset to factor + offset
        if when.op in ABOVE:
            limit, bound = when.threshold, "or more"  # the least it can be: a reference share of 0
        else:
            limit, bound = tidy(when.factor + when.threshold), "or less"  # the most: a reference share of 1
        if when.op in ABOVE + BELOW and not _holds_for_a_share(when.op, limit):
            yield doc.issue(
                (*at, "when"),
                f"{when.metric} is a share, from 0 to 1, and the limit of '{when.text}' is {limit:g} {bound} whatever the "
                "reference's share, so it never holds: write a smaller offset (reference + 0.05)",
            )
        return

    def shown(number: float, percent: bool) -> str:
        return f"{tidy(number * 100):g}%" if percent else f"{number:g}"

    share = f"{when.metric} is a share, from 0 to {shown(1, when.percent)}"
    if not _holds_for_a_share(when.op, when.threshold):
        yield doc.issue(
            (*at, "when"),
            f"{share}, so '{when.text}' never holds: write a threshold from 0 to 1"
            + (f", or a percentage ('{when.metric} {when.op} {when.threshold:g}%')" if 1 < when.threshold <= 100 else ""),
        )
    elif resolve is not None and resolve.anchor is None and resolve.metric == when.metric:
        if not _holds_for_a_share(resolve.op, resolve.threshold):
            yield doc.issue(
                (*at, "resolve_when"),
                f"{share}, so '{resolve.text}' never holds and an episode would never resolve: write a threshold from 0 to 1",
            )
    elif rule.margin is not None and when.op in BACK:
        margin = rule.margin.value
        back = tidy(when.threshold - margin if when.op in ABOVE else when.threshold + margin)
        if not _holds_for_a_share(BACK[when.op], back):
            room = when.threshold if when.op in ABOVE else tidy(1 - when.threshold)
            most = "at most" if when.op in (">", "<") else "less than"
            yield doc.issue(
                (*at, "margin"),
                f"with this margin, '{when.text}' resolves only once {when.metric} {BACK[when.op]} "
                f"{shown(back, when.percent)}, and {share}: an episode would never resolve; write a margin of "
                f"{most} {shown(room, when.percent)}",
            )


def _holds_for_a_share(op: str, threshold: float) -> bool:
    """Whether ``value OP threshold`` holds for some value from 0 to 1."""
    return {
        ">": threshold < 1,
        ">=": threshold <= 1,
        "<": threshold > 0,
        "<=": threshold >= 0,
        "==": 0 <= threshold <= 1,
        "!=": True,
    }[op]


def _window_issues(doc: Document, at: tuple, rule: RuleSpec, check: CheckSpec, kind: CheckKind) -> Iterator[ConfigIssue]:
    """A rule's own ``window:``: only on a metric the kind computes over one, and long enough to hold a value."""
    metric, windowed = rule.when.metric, kind.window_metrics_of(check)
    if rule.window is None:
        if metric in windowed:
            yield doc.issue((*at, "when"), f"{metric} is over a rule's own window: add one to the rule, for example window: 1h")
        return
    if not windowed:
        yield doc.issue(
            (*at, "window"),
            f"a {check.kind} check has no values over a rule's own window (its values are over the check's window): "
            "remove window: from the rule",
            key=True,
        )
        return
    if metric in kind.metrics_of(check) and metric not in windowed:
        yield doc.issue(
            (*at, "window"),
            f"{metric} is a value of each run, not one over a window: remove window:, or judge one of "
            f"{', '.join(sorted(windowed))} over it",
            key=True,
        )
    elif rule.uses("baseline"):
        yield doc.issue(
            (*at, "window"),
            "a rule over its own window compares with a number, not with a baseline: remove one of them",
            key=True,
        )
    if rule.window < check.every:
        yield doc.issue(
            (*at, "window"),
            f"a window of {format_duration(rule.window)} holds no value of a check that runs every "
            f"{format_duration(check.every)}: write window: {format_duration(check.every)} or longer",
        )


def _reference(doc: Document, model: ModelConfig, issues: list[ConfigIssue]) -> Reference | None:
    """The model's reference, read as the checks will read it; what cannot work is an issue here."""
    if model.reference is None:
        return None
    try:
        reference = load_reference(model.reference.path, [])
    except SourceError as exc:
        issues.append(doc.issue(("reference", "path"), f"cannot read {exc}"))
        return None
    columns = [str(c) for c in reference.frame.columns]
    for j, feature in enumerate(model.source.features if model.source else []):
        if feature not in columns:
            issues.append(
                doc.issue(
                    ("source", "features", j),
                    f"{feature!r} is not a column of the reference {model.reference.path}{suggest(feature, columns)}",
                )
            )
    return reference


def _resolve_paths(model: ModelConfig, base_dir: Path) -> ModelConfig:
    update: dict[str, Any] = {}
    source_path = getattr(model.source, "path", None)
    if model.source is not None and source_path and not Path(source_path).is_absolute():
        update["source"] = model.source.model_copy(update={"path": str(base_dir / source_path)})
    if model.reference and not Path(model.reference.path).is_absolute():
        update["reference"] = model.reference.model_copy(update={"path": str(base_dir / model.reference.path)})
    return model.model_copy(update=update) if update else model
