"""Check kind ``probe``: an active HTTP request to the model's endpoint, one attempt per run.

Metrics of each attempt: ``up`` (1 when the endpoint answered within ``timeout`` with an expected
status and, with ``expect``, the expected JSON value; else 0), ``latency_ms`` (how long the attempt
took, a timed-out one at its cut) and ``status_code`` (when an answer came). A failed attempt is an
``ok`` run with ``up`` 0 and what went wrong as the run's error (the status page and the log show it).

Over a rule's own ``window:`` (computed by the evaluator from the attempts stored in ``metrics``):
``availability`` (the share of attempts that were up), ``p50_ms``, ``p95_ms``, ``p99_ms`` of
``latency_ms``, and with an ``slo:`` its ``burn_rate`` (the error rate over the window divided by the
error budget, ``1 - objective``). With an ``slo:`` each run also stores ``error_budget_remaining``
(1 - the failed attempts of the period so far / the failures the period allows: ``1 - objective`` of the
attempts it holds at ``every``; below 0 once overspent) and the SLO's alerts are rules of the check
(Google SRE workbook, multiwindow multi-burn-rate): ``slo-page`` is critical when the burn rate is
above 14.4 over both 1h and 5m, ``slo-ticket`` a warning above 6 over both 6h and 30m.

Header values (often ``${TOKEN}`` from the environment) are secrets: they are sent and never
written to a log line, an error, the evidence or the database; nor is the URL (it may carry a key).
A failure's text is made in one place (:func:`attempt`), which blanks each of them, and each part of a
header value (the token of ``Bearer ${TOKEN}``), wherever the answer echoes it.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import math
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    JsonValue,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from monitor.checks.base import CheckKind, Evaluation, MetricValue, Past, Window, Windowed
from monitor.checks.slo import BUDGET, BURN_RATE, MIN_WINDOW_RUNS, WithSlo, burn, kept_windows, runs_needed
from monitor.config.durations import format_duration
from monitor.config.types import Duration, StrictModel

DEFAULT_TIMEOUT = timedelta(seconds=5)
MAX_BODY_BYTES = 1024 * 1024
"""Of a response, read at most this much (``expect`` reads its JSON from it)."""

ATTEMPT_METRICS = frozenset({"up", "latency_ms", "status_code"})
WINDOW_METRICS = frozenset({"availability", "p50_ms", "p95_ms", "p99_ms"})
PERCENTILES = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0}

_PATH = re.compile(r"^(?:\$\.)?(?P<path>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*)$")
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # an RFC 9110 token


# -- the spec ------------------------------------------------------------------------------------------
def _url(url: str) -> str:
    """An absolute http(s) URL with a host; said without echoing it (it may hold a ${SECRET})."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("not a URL: write for example https://fraud-scorer.internal/healthz") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):  # what it is instead is not shown: it may hold a ${SECRET}
        raise ValueError(
            "a probe requests http:// or https:// URLs"
            + ("" if scheme else " and this one has no scheme")
            + ": write for example https://fraud-scorer.internal/healthz"
        )
    if not parts.hostname or any(c.isspace() for c in url):
        raise ValueError("not a whole URL (no host, or a space in it): write for example https://fraud-scorer.internal/healthz")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "a URL with a user or password in it would show it wherever the URL is shown: send it in headers: (Authorization: ${TOKEN})"
        )
    try:
        parts.port  # noqa: B018 - a port that is not a number, or past 65535, raises
    except ValueError:
        raise ValueError("the URL's port must be a number from 1 to 65535") from None
    return url


def _header_value(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # X-Api-Version: 2
    return value


def _one_line(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    if any(c in text for c in "\r\n\0"):
        raise ValueError("a header value cannot hold a line break or a NUL byte")
    if not text.isascii():  # httpx sends header values as ASCII; said here, not on every attempt
        raise ValueError(
            "a header value is sent as ASCII, and this one holds a character that is not (an accent, a curly "
            "quote): write it in ASCII, percent-encoded where the endpoint expects that"
        )
    return value


HeaderName = Annotated[str, Field(pattern=_HEADER_NAME, max_length=200, description="letters, digits and !#$%&'*+.^_`|~-")]
HeaderValue = Annotated[SecretStr, BeforeValidator(_header_value), AfterValidator(_one_line)]


def _json_body(value: Any) -> Any:
    """A body YAML read as JSON can send; what cannot be sent is said by where it is in the body."""
    problem = _not_json(value, "")
    if problem is not None:
        raise ValueError(f"this is sent as JSON, and {problem}")
    return value


def _not_json(value: Any, at: str) -> str | None:
    where = at or "the body"
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value}, which JSON has no number for: write a finite one"
    if isinstance(value, list):
        return next((p for i, item in enumerate(value) if (p := _not_json(item, f"{at}[{i}]")) is not None), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} {f'in {at} ' if at else ''}is not text, as a JSON key must be: quote it"
            problem = _not_json(item, f"{at}.{key}" if at else key)
            if problem is not None:
                return problem
        return None
    if isinstance(value, date):  # a datetime is a date too
        return f"{where} is a date to YAML (written unquoted), which JSON has none of: quote it"
    return f"{where} is {'binary data' if isinstance(value, bytes) else 'a ' + type(value).__name__}, which JSON has none of"


def parse_path(text: str) -> tuple[str | int, ...]:
    """``data.items[0].status`` (or ``$.data.items[0].status``) as its steps: names and list indexes."""
    match = _PATH.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            "cannot read this JSON path: write names joined by '.', and [N] for the N-th item of a list "
            "(for example status, or checks[0].state, or $.status)"
        )
    return tuple(name if name else int(index) for name, index in _STEP.findall(match["path"]))


def _path(text: str) -> str:
    parse_path(text)
    return text.strip()


JsonPath = Annotated[str, AfterValidator(_path)]


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(
            "expect compares with one value: write text, a number, true/false or null "
            "(point path at one item of a list or a mapping, such as checks[0].state)"
        )
    return value


class Expect(StrictModel):
    """What the response's JSON must hold: the value at ``path`` equals ``equals``."""

    path: JsonPath
    equals: Annotated[str | int | float | bool | None, BeforeValidator(_scalar)] = Field(
        description="the value expected there: text, a number, true/false or null"
    )

    @property
    def steps(self) -> tuple[str | int, ...]:
        return parse_path(self.path)


class ProbeSpec(WithSlo):
    kind: Literal["probe"]
    # A run speaks for the time since the one before: its recorded window is its every (as freshness's;
    # ``every`` is validated first, so the factory sees it). A rule's ``window:`` is what values are over.
    window: Duration = Field(default_factory=lambda data: data.get("every"), description="not a probe's: its every")
    url: Annotated[str, AfterValidator(_url)] = Field(description="http:// or https://; never logged or stored")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[HeaderName, HeaderValue] = Field({}, description="sent with each attempt; values are secrets (${VAR})")
    body: Annotated[JsonValue, BeforeValidator(_json_body)] = Field(
        None, description="sent as JSON (Content-Type: application/json)"
    )
    expect_status: list[int] | None = Field(None, description="the status codes that count as up; any 2xx when unset")
    expect: Expect | None = None
    timeout: Duration = Field(DEFAULT_TIMEOUT, validate_default=True, description="an attempt is cut here and counted as down")
    min_rows: int = Field(1, description="not a probe's: each run makes one attempt")

    @field_validator("window", mode="before")
    @classmethod
    def _no_window(cls, value: Any) -> Any:  # a default is not validated: this is a window written on the check
        raise ValueError(
            "a probe makes one attempt per run and has no window of its own: put window: on a rule, "
            "for example {when: availability < 99%, window: 1h}"
        )

    @field_validator("min_rows")
    @classmethod
    def _no_min_rows(cls, value: int) -> int:
        raise ValueError(
            f"a probe makes one attempt per run, so min_rows does not apply: a rule's window is judged once it holds "
            f"{MIN_WINDOW_RUNS} attempts (or half of what it can hold, when fewer)"
        )

    @field_validator("expect_status", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "expected a status code such as 200, or a list of them such as [200, 204]; leave expect_status out for any 2xx"
            )
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("expect")
    @classmethod
    def _has_a_body(cls, expect: Expect | None, info: ValidationInfo) -> Expect | None:
        if expect is not None and info.data.get("method") == "HEAD":
            raise ValueError("the answer to a HEAD request has no body for expect to read: use method: GET, or remove expect")
        return expect

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value:
                raise ValueError("add at least one status code, or leave expect_status out for any 2xx")
            for code in value:
                if not 100 <= code <= 599:
                    raise ValueError(f"{code} is not an HTTP status code: write codes from 100 to 599, such as 200 or [200, 204]")
        return value

    @field_validator("timeout")
    @classmethod
    def _within_every(cls, timeout: timedelta, info: ValidationInfo) -> timedelta:
        every = info.data.get("every")
        if every is not None and timeout >= every:
            default = " (the default)" if timeout == DEFAULT_TIMEOUT else ""
            raise ValueError(
                f"timeout {format_duration(timeout)}{default} must be shorter than every ({format_duration(every)}), so an "
                f"attempt ends before the next starts: write for example timeout: {format_duration(every / 2)}"
            )
        return timeout


# -- one attempt ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    up: bool
    latency_ms: float
    status_code: int | None = None
    failure: str | None = None  # timeout, connection, status, expect
    error: str | None = None


@functools.cache
def _tls() -> ssl.SSLContext:
    """The default verification (certifi, or SSL_CERT_FILE), made once: loading it takes tens of ms."""
    import httpx

    return httpx.create_ssl_context()


def attempt(spec: ProbeSpec) -> Attempt:
    """One request, cut at ``timeout`` whatever the target does (a hard deadline, not per read)."""
    headers = {name: value.get_secret_value() for name, value in spec.headers.items()}
    timer = _Timer()
    status: int | None = None
    failure: str | None
    try:
        status, body = asyncio.run(_request(spec, headers, timer))
    except Exception as exc:  # every way a request fails is a down attempt
        failure, reason = _failure(exc, spec)
        status = exc.status if isinstance(exc, _TooLarge) else None
    else:
        failure, reason = _judged(spec, status, body)
    if failure is None:
        return Attempt(True, timer.ms, status)
    # The one place a failure's text is made: what the target said (an echo of a header, an OS error)
    # is in it, so the secrets are blanked here, before it is cut to length.
    return Attempt(False, timer.ms, status, failure, _cut(_scrub(reason, _secrets(spec, headers))))


def _judged(spec: ProbeSpec, status: int, body: bytes) -> tuple[str | None, str]:
    """Whether an answer is up: (None, "") when it is, else the failure's kind and reason."""
    expected = spec.expect_status
    if (status not in expected) if expected else not 200 <= status < 300:
        wanted = ", ".join(map(str, expected)) if expected else "2xx"
        return "status", f"HTTP {status}, expected {wanted}"
    problem = _unexpected(spec.expect, body) if spec.expect is not None else None
    return ("expect", problem) if problem else (None, "")


class _Timer:
    """The request's own time: from sending it to the whole answer (or the cut), not the client's set-up."""

    began: float | None = None
    ended: float | None = None

    @property
    def ms(self) -> float:
        if self.began is None:
            return 0.0
        return ((self.ended if self.ended is not None else time.perf_counter()) - self.began) * 1000


class _TooLarge(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _request(spec: ProbeSpec, headers: dict[str, str], timer: _Timer) -> tuple[int, bytes]:
    import httpx

    seconds = spec.timeout.total_seconds()
    headers = {"User-Agent": "monitor-probe", **headers}
    content: dict[str, Any] = {} if spec.body is None else {"json": spec.body}
    async with httpx.AsyncClient(timeout=seconds, verify=_tls(), follow_redirects=False, trust_env=True) as client:

        async def exchange() -> tuple[int, bytes]:
            async with client.stream(spec.method, spec.url, headers=headers, **content) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        if spec.expect is not None:
                            raise _TooLarge(response.status_code)
                        break  # the status is all an attempt without expect needs
                return response.status_code, bytes(body)

        timer.began = time.perf_counter()
        try:
            return await asyncio.wait_for(exchange(), seconds)
        finally:
            timer.ended = time.perf_counter()


def warm_up() -> None:
    """httpx imported and the TLS context loaded before the first attempt, which is timed."""
    import httpx  # noqa: F401

    _tls()


def _failure(exc: Exception, spec: ProbeSpec) -> tuple[str, str]:
    import httpx

    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return "timeout", f"no answer within the timeout of {format_duration(spec.timeout)}"
    if isinstance(exc, _TooLarge):
        return "expect", f"the response is larger than {MAX_BODY_BYTES // 1024} KiB: too large to read for expect"
    if isinstance(exc, httpx.HTTPError):
        return (
            "connection",
            f"could not {'connect' if isinstance(exc, httpx.ConnectError) else 'complete the request'}: {_cause(exc)}",
        )
    return "connection", f"the request failed: {type(exc).__name__}"


def _cause(exc: BaseException) -> str:
    """What the network said, from the innermost OS error (httpx's async error says "All connection
    attempts failed"; the refused connection under it says why)."""
    inner: BaseException | None = exc
    found: OSError | None = None
    while inner is not None:
        if isinstance(inner, OSError):
            found = inner
        inner = inner.__cause__ or inner.__context__
    if isinstance(found, ssl.SSLError):
        return f"TLS: {getattr(found, 'verify_message', None) or found.reason or 'handshake failed'}"
    if isinstance(found, socket.gaierror):
        return f"cannot resolve the host ({found.strerror})"
    if found is not None and found.errno:
        return f"{errno.errorcode.get(found.errno, 'error')} ({os.strerror(found.errno)})"
    return str(exc) or type(exc).__name__


_SECRET_PARTS = re.compile(r"[\s,;=]+")
_SHORT = 4
"""A secret shorter than this is blanked only where it stands alone (not the 2 of 2xx, not the s of 2s)."""
MAX_ERROR_CHARS = 240
"""A failure's text is cut to this (a long JSON value the answer holds, say), keeping its end."""


def _secrets(spec: ProbeSpec, headers: dict[str, str]) -> list[str]:
    """What a failure's text must not hold, longest first: each header value whole, each of its parts
    (``Bearer ${TOKEN}`` is ``Bearer`` and the token: an endpoint may echo the token alone), the URL,
    and each of those as JSON and as Python escape them (``_shown`` and an exception's text do)."""
    found: set[str] = {spec.url}
    for value in headers.values():
        found.add(value)
        found.update(_SECRET_PARTS.split(value))
    for text in list(found):
        found.update((json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]))
    found.discard("")
    return sorted(found, key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    """The text with every secret in it blanked as ``***``: a secret never reaches an error, a log line,
    the database or a message, even when the target echoes part of it back."""
    for secret in secrets:
        if len(secret) >= _SHORT:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_CHARS:
        return text
    keep = MAX_ERROR_CHARS - 5
    return f"{text[: keep - 80]} ... {text[-80:]}"


def _unexpected(expect: Expect, body: bytes) -> str | None:
    """Why the response does not hold what ``expect`` says, or None when it does."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "the response is not JSON, so expect cannot be read"
    for depth, step in enumerate(expect.steps):
        where = _shown_path(expect.steps[: depth + 1])
        if isinstance(step, int):
            if not isinstance(data, list) or step >= len(data):
                return f"no {where} in the response"
        elif not isinstance(data, dict) or step not in data:
            return f"no {where} in the response"
        data = data[step]
    if not _same(data, expect.equals):
        return f"{expect.path} is {_shown(data)}, expected {_shown(expect.equals)}"
    return None


def _same(found: Any, expected: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, "200" is not 200."""
    if isinstance(found, bool) or isinstance(expected, bool):
        return isinstance(found, bool) and isinstance(expected, bool) and found == expected
    if found is None or expected is None:
        return found is None and expected is None
    if isinstance(found, (int, float)) and isinstance(expected, (int, float)):
        return found == expected
    return type(found) is type(expected) and found == expected


def _shown_path(steps: tuple[str | int, ...]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def _shown(value: Any) -> str:
    """A value as JSON writes it (a list or an object by its type); ``attempt`` cuts the text it is in."""
    return json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__


def evaluate(spec: ProbeSpec, window: Window, reference: Any, features: list[str]) -> Evaluation:
    result = attempt(spec)
    values = [MetricValue("up", 1.0 if result.up else 0.0), MetricValue("latency_ms", result.latency_ms)]
    if result.status_code is not None:
        values.append(MetricValue("status_code", float(result.status_code)))
    evidence: dict[str, Any] = {"failure": result.failure} if result.failure else {}
    return Evaluation("ok", 1, values, evidence=evidence, error=f"attempt failed: {result.error}" if result.error else None)


# -- over a rule's window --------------------------------------------------------------------------------
def window_metrics(spec: ProbeSpec) -> frozenset[str]:
    return WINDOW_METRICS | ({BURN_RATE} if spec.slo else set())


def metrics(spec: ProbeSpec) -> frozenset[str]:
    return ATTEMPT_METRICS | window_metrics(spec) | ({BUDGET} if spec.slo else set())


def over_window(spec: ProbeSpec, past: Past, window: timedelta, wanted: frozenset[str]) -> Windowed:
    """Availability (and with an SLO, its burn rate) over the attempts in ``window``, this one included;
    the latency percentiles too when a rule names one; the error budget when asked for."""
    attempts, up = past.count_and_sum("up")
    needed = runs_needed(spec, window)
    if attempts < needed:
        return Windowed([], attempts, needed)
    values = [MetricValue("availability", up / attempts)]
    if spec.slo is not None:  # the budget of a period: the failures it allows at this check's rate
        values += burn(spec.slo, attempts - up, attempts, wanted, allowed=spec.slo.budget * (window / spec.every))
    if wanted & PERCENTILES.keys():
        import numpy as np

        latencies = past.values("latency_ms")
        if latencies:
            found = np.percentile(latencies, list(PERCENTILES.values()))
            values += [MetricValue(name, float(v)) for name, v in zip(PERCENTILES, found, strict=True)]
    return Windowed(values, attempts, needed)


KIND = CheckKind(
    kind="probe",
    spec=ProbeSpec,
    dataset_metrics=ATTEMPT_METRICS | WINDOW_METRICS | {BURN_RATE, BUDGET},
    feature_metrics=frozenset(),
    evaluate=evaluate,
    reads_rows=False,
    metrics_for=metrics,
    shares=frozenset({"up", "availability"}),
    window_metrics=window_metrics,
    over_window=over_window,
    kept_windows=kept_windows,
    own_workers=True,
    warm_up=warm_up,
)
