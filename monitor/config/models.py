"""The typed shape of the daemon config and of a model's check file.

Nothing past the loader reads raw YAML: the daemon, the CLI and the checks all take these models.
Check and source sections are the plug-ins' own specs, joined here by their ``kind``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator

from monitor.alerting.maintenance import MaintenanceWindow
from monitor.alerting.routing import RouteRule
from monitor.alerting.rules import Severity
from monitor.checks import CheckSpecs
from monitor.config.durations import format_duration
from monitor.config.types import DatabaseUrl, Duration, LabelName, Labels, Name, StrictModel
from monitor.ingest.limits import MAX_HELD_BYTES, MAX_ROW_BYTES, MAX_TEXT_CHARS, MAX_UNWRITTEN_ROWS
from monitor.sources import SourceSpecs
from monitor.sources.reference import ReferenceSpec


class DatabaseConfig(StrictModel):
    url: DatabaseUrl = Field(
        "sqlite:///monitor.db", description="SQLAlchemy URL: embedded SQLite by default, PostgreSQL in production"
    )


def is_loopback(host: str) -> bool:
    """Whether a listen host only accepts connections from this machine ("" means every address)."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerConfig(StrictModel):
    listen: str = Field("127.0.0.1:8321", pattern=r"^[^:\s]+:[0-9]{1,5}$", description="host:port, for example 127.0.0.1:8321")
    token: SecretStr = SecretStr("")
    allowed_hosts: list[str] = Field(
        [], description="more Host names the API answers to (a proxy's, a DNS name); '*' turns the Host check off"
    )
    public: list[Literal["status", "metrics", "healthz"]] = Field(
        [], description="read endpoints that need no token when listening beyond loopback (status is the page at /)"
    )
    header_timeout: Duration = Field(
        timedelta(seconds=10),
        description="a request's headers must be complete this long after the connection opens or the previous answer; else it is closed",
    )
    body_timeout: Duration = Field(
        timedelta(seconds=30), description="an ingest body must be received whole within this time of its headers; else 408"
    )
    max_connections: int = Field(
        100, ge=1, description="open connections at most; one more is closed at once (bounds the bodies received at once)"
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#*]+(/[^\s?#]*)?$",
        description="the address people open the daemon's pages at (a proxy's, a DNS name), for the evidence links"
        " in messages; default: http:// and listen",
    )
    max_connections_per_client: int = Field(
        20,
        ge=1,
        description="open connections from one client address (the TCP peer's) at most; one more is closed at once."
        " Above max_connections it is taken as max_connections",
    )

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        port = int(value.rpartition(":")[2])
        if port > 65535:
            raise ValueError(f"port {port} is out of range: use 0 to 65535 (0: any free port)")
        return value


class RetentionConfig(StrictModel):
    """How long the tables keep their rows (monitor/storage/retention.py, docs/database.md)."""

    raw: Duration = Field(timedelta(days=30), description="metrics rows older than this are folded into hourly ones")
    hourly: Duration = Field(timedelta(days=365), description="hourly metric rows older than this are deleted")
    runs: Duration = Field(timedelta(days=90), description="check_runs older than this are deleted")
    notifications: Duration = Field(
        timedelta(days=90), description="delivered or failed notifications older than this are deleted (not an open alert's)"
    )
    evidence: Duration = Field(timedelta(days=30), description="evidence reports (evidence_dir) older than this are deleted")

    @model_validator(mode="after")
    def _hourly_outlives_raw(self) -> RetentionConfig:
        if self.hourly < self.raw:
            raise ValueError("hourly is how long the folded rows are kept after raw: make it at least raw")
        return self


class IngestConfig(StrictModel):
    sample_per_minute: int = Field(1000, ge=10, le=1_000_000, description="rows kept per model and minute for drift")
    retention: Duration = Field(timedelta(days=7), description="samples and per-minute counts older than this are deleted")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="a larger request body is refused with 413")
    max_concurrent_requests: int = Field(8, ge=1, description="more ingest bodies processed at once are refused with 429")
    max_requests_per_client: int = Field(
        4, ge=1, description="more ingest requests in flight from one client address are refused with 429"
    )
    max_receiving_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="bytes of ingest bodies being received at once, over all connections; a body that would pass"
        " it is refused with 429 (at least max_body_bytes is always let in)",
    )
    max_row_bytes: int = Field(
        MAX_ROW_BYTES, ge=256, description="a posted row (or label) whose compact JSON is larger is rejected by row"
    )
    max_text_chars: int = Field(
        MAX_TEXT_CHARS, ge=1, description="a text feature, prediction or label that is longer is rejected by row"
    )
    max_memory_bytes: int = Field(
        MAX_HELD_BYTES,
        ge=1024 * 1024,
        description="sampled rows held in memory at most (an estimate, in bytes); past it new rows are refused with 429"
        " (503 while the database refuses writes)",
    )
    max_unwritten_rows: int = Field(
        MAX_UNWRITTEN_ROWS,
        ge=1,
        description="while the database refuses writes, accepted rows not yet written at most; past it new rows are"
        " refused with 503 (what a kill -9 can lose then)",
    )


class SlackConfig(StrictModel):
    token: SecretStr = Field(SecretStr(""), description="bot token; empty sends alerts to the console instead")
    base_url: str = "https://slack.com/api/"


def _https_or_loopback(url: SecretStr) -> SecretStr:
    """A receiver's URL: https, or http to this machine only; said without echoing it (it may hold a key)."""
    try:
        parts = urlsplit(url.get_secret_value().strip())
        host = parts.hostname or ""
    except ValueError:
        raise ValueError("not a URL: write for example https://events.pagerduty.com/v2/enqueue") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("not a whole http(s) URL: write for example https://events.pagerduty.com/v2/enqueue")
    try:
        parts.port  # noqa: B018 - a port that is not a number, or past 65535, raises
        host.encode("idna")  # a label of more than 63 characters, say, raises
    except (ValueError, UnicodeError):
        raise ValueError("the URL's host or port cannot be used: a port is a number from 1 to 65535") from None
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(
            "this URL must be https:// (http:// only to this machine, 127.0.0.1 or localhost): "
            "an alert and its key would cross the network in the clear"
        )
    return url


def _https_or_loopback_or_empty(url: SecretStr) -> SecretStr:
    return _https_or_loopback(url) if url.get_secret_value() else url


class SmtpConfig(StrictModel):
    """The mail server alerts are sent through (stdlib smtplib); no host: no e-mail receivers."""

    host: str = Field("", description="the SMTP server; empty: e-mail is off")
    port: int = Field(587, ge=1, le=65535, description="587 for STARTTLS, 465 for TLS, 25 for neither")
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (upgrade after connecting), tls (from the start) or none (loopback only)"
    )
    username: SecretStr = SecretStr("")
    password: SecretStr = SecretStr("")
    sender: str = Field("", alias="from", description="the From address, e.g. monitor@example.com")
    timeout: Duration = Field(timedelta(seconds=10), description="a connection or an answer taking longer is a failure")

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        return _email_address(value) if value else value

    @field_validator("port", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        if isinstance(value, bool):  # `port: yes` is true to YAML, and true is 1 to Python
            raise ValueError("expected a port number, such as 587")
        return value

    @field_validator("host")
    @classmethod
    def _host_alone(cls, value: str) -> str:
        if ":" in value and not value.startswith("["):
            raise ValueError("the host alone: write its port in port: (host: smtp.example.com, port: 587)")
        return value

    @field_validator("security")
    @classmethod
    def _fits_the_port(cls, security: str, info: ValidationInfo) -> str:
        port = info.data.get("port")
        if (port, security) == (465, "starttls"):
            raise ValueError("port 465 speaks TLS from the start: write security: tls (or port: 587 for STARTTLS)")
        if (port, security) == (587, "tls"):
            raise ValueError("port 587 speaks STARTTLS: write security: starttls (or port: 465 for TLS)")
        return security


class NotifiersConfig(StrictModel):
    slack: SlackConfig = SlackConfig()
    email: SmtpConfig = SmtpConfig()
    repeat: Duration = Field(
        timedelta(hours=4), description="a firing incident nobody acknowledged is told again this long after it last was"
    )
    give_up_after: Duration = Field(
        timedelta(hours=24), description="a notification still failing this long after it was owed is recorded as failed"
    )
    per_minute: int = Field(
        10,
        ge=1,
        le=1000,
        description="messages to one Slack channel or mailbox a minute at most; past it, one summary tells the rest",
    )


_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def _email_address(value: str) -> str:
    """``oncall@example.com`` or ``On-call <oncall@example.com>``: one address, no control characters."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("an e-mail address cannot hold a line break or a control character")
    if value.count("@") > 1:
        raise ValueError("one address per item: write a list, [oncall@example.com, dana@example.com]")
    _, address = parseaddr(value.strip())
    if not _ADDRESS.match(address) or ("<" in value) != value.strip().endswith(">"):
        raise ValueError("not an e-mail address: write one such as oncall@example.com (or 'On-call <oncall@example.com>')")
    return value.strip()


EmailAddress = Annotated[str, AfterValidator(_email_address)]


class Webhook(StrictModel):
    """An HTTP endpoint told of each state change in the PagerDuty Events API v2 shape."""

    url: Annotated[SecretStr, AfterValidator(_https_or_loopback)] = Field(
        description="https://events.pagerduty.com/v2/enqueue, or any endpoint taking that JSON"
    )
    routing_key: SecretStr = Field(SecretStr(""), description="PagerDuty's integration key; sent in the body")


def _url_or_webhook(schema: dict[str, Any]) -> None:
    """An owner's webhook in the JSON Schema: the URL alone is one too (``Owner._url_alone``)."""
    schema["anyOf"] = [{"type": "string"}, *schema["anyOf"]]


class Owner(StrictModel):
    slack: str | None = Field(None, description="the channel, for example '#fraud-alerts'")
    mention: list[str] = []
    webhook: Webhook | None = Field(
        None,
        description="a URL, or {url, routing_key}: a pager in the PagerDuty Events v2 shape",
        json_schema_extra=_url_or_webhook,
    )
    email: list[EmailAddress] = Field([], description="addresses told of each state change (through notifiers.email)")

    def kinds(self) -> list[str]:
        """The kinds of receiver the owner is given (whether each can be reached depends on notifiers)."""
        given = {"slack": self.slack, "webhook": self.webhook, "email": self.email}
        return [kind for kind, value in given.items() if value]

    @field_validator("webhook", mode="before")
    @classmethod
    def _url_alone(cls, value: object) -> object:
        # `webhook: ${FRAUD_PAGER_URL:-}` with the variable unset is no webhook; a URL alone is one.
        if value == "":
            return None
        return {"url": value} if isinstance(value, str) else value

    @field_validator("email", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("slack", mode="before")
    @classmethod
    def _channel_given(cls, value: object) -> object:
        # `slack: #risk` unquoted is a YAML comment, so the key holds nothing: the owner's alerts would go
        # to the console without a word while Slack is configured.
        if value is None or value == "":
            raise ValueError("no channel: a '#' starts a YAML comment, so quote the channel, e.g. slack: \"#risk\"")
        return value


Pattern = Annotated[
    str, Field(min_length=1, max_length=200, description="a value, or a pattern where * is any text and ? one character")
]


class RouteMatch(StrictModel):
    """Labels an alert must have; an unset label matches anything. Values may be patterns: ``fraud-*``."""

    severity: Severity | None = None
    model: Pattern | None = None
    check: Pattern | None = None
    owner: Pattern | None = None
    labels: dict[LabelName, Pattern] = Field({}, description="labels the alert's check file gives it, e.g. {tier: gold}")

    def labels_required(self) -> dict[str, str]:
        return {**self.model_dump(exclude_none=True, exclude={"labels"}), **self.labels}


ReceiverKindName = Literal["slack", "webhook", "email", "console"]
OwnerOrReceiver = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/(slack|webhook|email|console))?$",
        max_length=120,
        description="an owner (all its receivers), or one of its receivers: owner/slack, owner/webhook, owner/email",
    ),
]


class Route(StrictModel):
    """A node of the routing tree (docs/alerting.md, Routes)."""

    match: RouteMatch = Field(
        RouteMatch(), description="labels an alert must have, e.g. {severity: critical}; {} or none: every alert"
    )
    also: list[OwnerOrReceiver] = Field([], description="owners (or owner/kind receivers) told too")
    via: list[ReceiverKindName] | None = Field(
        None, min_length=1, description="only these kinds of receiver are told, e.g. [slack]: no page"
    )
    mute: bool | None = Field(None, description="tell no one: the alert is recorded, not sent")
    continue_: bool = Field(False, alias="continue", description="after this route matched, try the next ones too")
    group_by: list[LabelName] | None = Field(
        None, description="firing messages to one receiver with these labels alike go as one, e.g. [model]"
    )
    group_wait: Duration | None = Field(None, description="how long a firing message waits for others of its group (30s)")
    repeat: Duration | None = Field(None, description="how often a firing incident nobody acknowledged is told again")
    routes: list[Route] = Field([], description="tried when this route matches; the deepest match decides")

    @field_validator("group_by")
    @classmethod
    def _group_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and "feature" in value:
            raise ValueError("a check's features are one incident, told as one message: group_by cannot split them")
        return value

    @field_validator("group_wait")
    @classmethod
    def _short_wait(cls, value: timedelta | None) -> timedelta | None:
        # A wait is for the rest of a failure to arrive, not a delay: past this, news is late.
        if value is not None and value > MAX_GROUP_WAIT:
            raise ValueError(f"a group waits at most {format_duration(MAX_GROUP_WAIT)} for the rest of its alerts")
        return value

    def rule(self) -> RouteRule:
        """The route as the routing decision takes it (monitor/alerting/routing.py)."""
        wait = self.group_wait if self.group_wait is not None else (GROUP_WAIT if self.group_by is not None else None)
        return RouteRule(
            match=self.match.labels_required(),
            also=tuple(self.also),
            via=tuple(self.via) if self.via is not None else None,
            mute=self.mute,
            continue_=self.continue_,
            group_by=tuple(self.group_by) if self.group_by is not None else None,
            group_wait=wait,
            repeat=self.repeat,
            routes=tuple(route.rule() for route in self.routes),
        )


GROUP_WAIT = timedelta(seconds=30)
"""A route's ``group_by`` without ``group_wait`` waits this long (Alertmanager's default) for the rest."""
MAX_GROUP_WAIT = timedelta(minutes=5)


class DaemonConfig(StrictModel):
    database: DatabaseConfig = DatabaseConfig()
    server: ServerConfig = ServerConfig()
    ingest: IngestConfig = IngestConfig()
    retention: RetentionConfig = RetentionConfig()
    checks_dir: str = "checks"
    evidence_dir: str = Field(
        "evidence", description="where evidence reports of alerts are kept (relative to the config file's folder)"
    )
    notifiers: NotifiersConfig = NotifiersConfig()
    owners: dict[Name, Owner] = {}
    routes: list[Route] = []
    heartbeat_url: Annotated[SecretStr, AfterValidator(_https_or_loopback_or_empty)] = Field(
        SecretStr(""), description="a dead man's switch (a Healthchecks.io ping URL) pinged every heartbeat_every while healthy"
    )
    heartbeat_every: Duration = Field(timedelta(minutes=1), description="how often the heartbeat is sent")
    processes: int = Field(
        0, ge=0, le=64,
        description="worker processes that read windows and compute checks (0: in the daemon's own process); "
        "one per core escapes Python's one-thread-at-a-time limit",
    )  # fmt: skip
    # The owner told when monitoring itself fails (a receiver failing for good); else each receiver's own.
    # (No description: a Name's own says what it may hold.)
    platform_owner: Name | None = None


class ModelConfig(StrictModel):
    model: Name
    owner: Name
    source: SourceSpecs | None = Field(None, description="where the model's rows come from; a model of probes alone has none")
    reference: ReferenceSpec | None = None
    checks: list[CheckSpecs] = Field(min_length=1)
    maintenance: list[MaintenanceWindow] = Field(
        [], description="recurring times when the model's alerts are held, as a silence holds them"
    )
    labels: Labels = Field({}, description="labels every alert of the model has, for routes to match, e.g. {tier: gold}")

    def check(self, name: str):
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)
