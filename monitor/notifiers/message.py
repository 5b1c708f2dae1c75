"""What an alert says, frozen when its state changes, and how it reads as text and as Slack blocks.

The evaluator builds an :class:`AlertMessage` from the episode and its evidence and stores it with each
pending delivery, so a message delivered late (Slack down, a restart) still tells what was true when
the alert changed, not what is true when it finally goes out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

TOP_FEATURES = 10
_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


@dataclass(frozen=True)
class AlertMessage:
    alert_id: int
    event: str  # "firing" or "resolved"
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
    links: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertMessage:
        return cls(**data)

    @property
    def subject(self) -> str:
        where = f"{self.model} / {self.check}" + (f" / {self.feature}" if self.feature else "")
        state = "RESOLVED" if self.event == "resolved" else f"FIRING {self.severity}"
        return f"[{state}] {where}: {self.metric} = {_number(self.value)}"

    def lines(self) -> list[str]:
        """The body, one fact a line, the same on every receiver."""
        out = [f"rule: {self.rule} (threshold {_number(self.threshold)}), severity {self.severity}"]
        since = _when(self.started)
        if self.event == "resolved":
            out.append(f"resolved {_when(self.resolved)}; breaching since {since}")
        else:
            out.append(f"since {since}")
        out.append(
            f"window: last {self.window} ({_when(self.window_start)} to {_when(self.window_end)}), {self.sample_size:,} rows"
        )
        owner = " ".join([f"owner: {self.owner}", *self.mentions])
        out.append(owner)
        if self.top_features:
            out.append("drifted features, worst first: " + ", ".join(_feature(f) for f in self.top_features))
        for name, url in self.links.items():
            out.append(f"{name}: {url}")
        return out

    def text(self) -> str:
        return "\n".join([self.subject, *self.lines()])

    def slack_text(self) -> str:
        """:meth:`text` for Slack's plain-text fallback (notifications, screen readers), escaped as mrkdwn."""
        return "\n".join([_escape(self.subject), *self._slack_lines()])

    def slack_blocks(self) -> list[dict[str, Any]]:
        emoji = ":white_check_mark:" if self.event == "resolved" else _EMOJI.get(self.severity, "")
        body = "\n".join(self._slack_lines())
        return [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} *{_escape(self.subject)}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"monitor alert #{self.alert_id}"}]},
        ]

    def _slack_lines(self) -> list[str]:
        # The owner line is left as written: its mentions are Slack control sequences such as <@U0123>.
        return [_escape(line) if not line.startswith("owner:") else line for line in self.lines()]


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _when(iso: str | None) -> str:
    if not iso:
        return "n/a"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def _feature(item: dict[str, Any]) -> str:
    op = "<" if item["score"] < item["threshold"] else ">="
    return f"{item['feature']} ({item['method']} {_number(item['score'])} {op} {_number(item['threshold'])})"


def _escape(text: str) -> str:
    """Slack mrkdwn control characters in text that came from files or data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
