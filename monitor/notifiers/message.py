"""What an alert says, frozen when its state changes: receiver-neutral data, and its plain text.

Each receiver renders it its own way (Slack's mrkdwn and Block Kit live in notifiers/slack.py); the
plain text here is what the console prints and what every rendering starts from.

The evaluator builds an :class:`AlertMessage` from the episode and its evidence and stores it with each
pending delivery, so a message delivered late (Slack down, a restart) still tells what was true when
the alert changed, not what is true when it finally goes out.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from monitor.alerting.conditions import BACK
from monitor.alerting.rules import SEVERITY_RANK
from monitor.text import one_line

TOP_FEATURES = 10
MORE_LISTED = 20  # of the other alerts a bundled message tells, this many subjects are listed
_OP = re.compile(r">=|<=|==|!=|>|<")


@dataclass(frozen=True)
class AlertMessage:
    alert_id: int
    event: str  # "firing", "updated" (the incident changed), "repeat" (still firing, nobody acknowledged) or "resolved"
    model: str
    check: str
    kind: str
    owner: str
    severity: str
    rule: str
    metric: str
    value: float
    threshold: float
    started: str  # ISO-8601 UTC, when the condition first held
    window: str  # the check's window, e.g. "1h"
    window_start: str
    window_end: str
    sample_size: int
    feature: str = ""
    fired: str | None = None
    resolved: str | None = None
    mentions: list[str] = field(default_factory=list)
    top_features: list[dict[str, Any]] = field(default_factory=list)
    skipped_features: list[dict[str, str]] = field(default_factory=list)  # {feature, reason}: not checked
    links: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # why a resolved episode ended other than by its condition
    # A rule on an anchor: ``threshold`` is ``factor`` x the anchor's value + ``offset``.
    anchor: str | None = None  # "reference" or "baseline"
    anchor_value: float | None = None
    band: list[float] | None = None  # on ``outside reference``: the reference's range [low, high], threshold its edge
    factor: float = 1.0
    offset: float = 0.0
    baseline: str | None = None  # the baseline's period, e.g. "7d"
    resolve_when: str | None = None  # hysteresis: the rule's own resolve condition, or
    margin: float | None = None  # how far back past the threshold the value must be
    details: list[str] = field(default_factory=list)  # what else the run saw, a line each (a probe's failed attempt)
    model_version: str = ""  # the version the episode is of (split_by: model_version, a version_compare's candidate)
    was: str | None = None  # on an update, the severity the alert was told as before
    # The incident's other episodes, worst first: {rule, feature, severity, value, threshold, state},
    # state "firing", or "resolved" by this run.
    also: list[dict[str, Any]] = field(default_factory=list)
    late: str | None = None  # set by the outbox on a message sent long after its state change
    # Set by the outbox on a message that tells others too (a route's group_by, a summary past the
    # receiver's cap per minute): each other's subject.
    more: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertMessage:
        return cls(**data)

    @property
    def subject(self) -> str:
        where = f"{self.model} / {self.check}" + (f" / {one_line(self.feature)}" if self.feature else "")
        if self.model_version:
            where += f" [model_version {one_line(self.model_version)}]"
        if self.event == "resolved":
            state = "CLOSED" if self.reason else "RESOLVED"
        else:  # an update or a repeat says so: on the console and in mail it is not edited in place
            word = {"updated": "UPDATED", "repeat": "STILL FIRING"}.get(self.event, "FIRING")
            state = f"{word} {self.severity}"
        more = sum(1 for other in self.also if other["state"] == "firing")
        return (
            f"[{state}] {where}: {self.metric} = {format_number(self.value, self.threshold)}"
            + (f" (+{more} more)" if more else "")
            + (f" and {_alerts(len(self.more))}" if self.more else "")
        )

    def lines(self) -> list[str]:
        """The body, one fact a line, the same on every receiver."""
        out = [self.late] if self.late else []
        out.append(f"rule: {self.rule} (threshold {self._threshold()}), severity {self.severity}")
        since = _when(self.started)
        if self.event == "resolved" and self.reason:
            out.append(f"closed {_when(self.resolved)}: {self.reason}; breaching since {since}")
        elif self.event == "resolved":
            out.append(f"resolved {_when(self.resolved)}; breaching since {since}")
        elif self.was:
            change = "raised" if SEVERITY_RANK.get(self.severity, -1) > SEVERITY_RANK.get(self.was, -1) else "lowered"
            out.append(f"severity {change} from {self.was}; breaching since {since}")
        else:
            out.append(f"since {since}")
        if self.window:  # not of monitor's own alerts (a receiver failing)
            out.append(
                f"window: last {self.window} ({_when(self.window_start)} to {_when(self.window_end)}), {self.sample_size:,} rows"
            )
        out.extend(self.details)
        resolves = self._resolves()
        if resolves and self.event != "resolved":
            out.append(f"resolves when {resolves}")
        for state, heading in (("firing", "also firing"), ("resolved", "resolved")):
            listed = [other for other in self.also if other["state"] == state]
            for other in listed[:TOP_FEATURES]:
                where = f" [{one_line(other['feature'])}]" if other["feature"] else ""
                value = format_number(other["value"], other["threshold"])
                out.append(f"{heading}: {other['rule']}{where}, {value} ({other['severity']})")
            if len(listed) > TOP_FEATURES:
                out.append(f"{heading}: and {len(listed) - TOP_FEATURES} more")
        owner = " ".join([f"owner: {self.owner}", *self.mentions])
        out.append(owner)
        if self.top_features:
            out.append("drifted features, worst first: " + ", ".join(_feature(f) for f in self.top_features))
        for skipped in self.skipped_features:
            out.append(f"not checked: {skipped['feature']}: {skipped['reason']}")
        for name, url in self.links.items():
            out.append(f"{name}: {url}")
        if self.more:
            out.append(f"and {_alerts(len(self.more))}:")
            out.extend(self.more[:MORE_LISTED])
            if len(self.more) > MORE_LISTED:
                out.append(f"and {len(self.more) - MORE_LISTED} more")
        return out

    def text(self) -> str:
        return "\n".join([self.subject, *self.lines()])

    def _threshold(self) -> str:
        """``0.3``; on an anchor, what it was made of: ``375 = 1.5x baseline 250, the median of the last 7d``."""
        shown = format_number(self.threshold)
        if self.band is not None:
            low, high = self.band
            edge = "top" if self.threshold == high and " < reference range" not in self.rule else "bottom"
            return f"{shown}, the {edge} of its reference range {format_number(low)} to {format_number(high)}"
        if self.anchor is None or self.anchor_value is None:
            return shown
        made = f"{self.anchor} {format_number(self.anchor_value)}"
        if self.factor != 1:
            made = f"{format_number(self.factor)}x {made}"
        if self.offset:
            made += f" {'-' if self.offset < 0 else '+'} {format_number(abs(self.offset))}"
        if self.anchor == "baseline" and self.baseline:
            made += f", the median of the last {self.baseline}"
        return f"{shown} = {made}"

    def _resolves(self) -> str | None:
        """When a firing episode of a rule with hysteresis resolves: ``drift_share < 0.2``, or with a
        margin ``p50_ms <= 200 (100 back past the threshold)``."""
        if self.resolve_when:
            return self.resolve_when
        if self.margin is None:
            return None
        op = _OP.search(self.rule)
        if op is None or op[0] not in BACK:
            return None
        back = self.threshold - self.margin if op[0].startswith(">") else self.threshold + self.margin
        return f"{self.metric} {BACK[op[0]]} {format_number(back)} ({format_number(self.margin)} back past the threshold)"


def format_number(value: float | None, against: float | None = None) -> str:
    """A value for people: four significant digits, and never fewer decimals than ``against`` (its
    threshold, to four significant digits as it is shown) has, nor so few that the two read alike when
    they differ (0.95999 against 0.9633 is 0.9600, not 0.96; 0.30004 against 0.3 is 0.30004; 199.763
    against a threshold of 1.5x a baseline of 96.1965 is 199.8)."""
    if value is None or not math.isfinite(value):
        return "n/a" if value is None else str(value)
    short = f"{value:.4g}"
    if against is None or not math.isfinite(against) or "e" in short:
        return short if abs(value) < 1e4 else f"{value:,.0f}"
    # Against the threshold as it is shown (four significant digits): one made from a baseline or a
    # reference (1.5 x 96.1965...) has no written precision to match.
    places = max(_decimals(float(short)), _decimals(float(f"{against:.4g}")))
    while places < 12 and value != against and round(value, places) == round(against, places):
        places += 1
    return f"{value:,.{places}f}" if abs(value) >= 1e4 else f"{value:.{places}f}"


def _decimals(number: float) -> int:
    """Decimals in the shortest form of ``number``: 0.9633 has 4, 250.0 has 0."""
    text = repr(float(number))
    if "e" in text:
        return 12
    whole, _, fraction = text.partition(".")
    return 0 if fraction == "0" else len(fraction)


def _alerts(count: int) -> str:
    return f"{count} more alert{'s' if count != 1 else ''}"


def _when(iso: str | None) -> str:
    if not iso:
        return "n/a"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def _feature(item: dict[str, Any]) -> str:
    op = "<" if item["score"] < item["threshold"] else ">="
    told = f"{item['method']} {format_number(item['score'], item['threshold'])} {op} {format_number(item['threshold'])}"
    calibrated = item.get("calibrated")
    if calibrated:  # threshold: auto: the limit is the feature's own, and its reference range says why
        low, high = calibrated["range"]
        told += f"; its reference range at {calibrated['rows']:,} rows is {format_number(low)}-{format_number(high)}"
    effect = item.get("effect")
    if effect:  # how big the change is, in the feature's own terms
        told += f"; {effect['text']}"
    return f"{item['feature']} ({told})"


def links_told(payload: object) -> dict[str, str]:
    """The web links a stored message (a notification's payload, of any version) carried, by name: its
    evidence report, the check file's runbook and dashboard. Only http(s) addresses: a page makes each
    one a link, and ``javascript:`` is no place to send on-call."""
    found = payload.get("links") if isinstance(payload, dict) else None
    if not isinstance(found, dict):
        return {}
    return {str(name): url for name, url in found.items() if isinstance(url, str) and url.startswith(("http://", "https://"))}
