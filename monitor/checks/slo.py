"""Service level objectives, for the kinds that count good and bad events (a probe's attempts, the
requests a latency check sees): the ``slo:`` key, its burn-rate rules, and the numbers over a window.

An SLO says what share of events must be good over a ``period`` (``objective: 99.9%`` over 30d); its
error budget is the rest (``1 - objective``). The burn rate over a window is the share of bad events
there over the budget: 1 spends the budget exactly over the period. Its alerts are rules of the check,
by the multiwindow, multi-burn-rate method of Google's SRE workbook: ``slo-page`` is critical while the
burn rate is above 14.4 over both 1h and 5m, ``slo-ticket`` a warning above 6 over both 6h and 30m.
A kind with an SLO stores ``error_budget_remaining`` over the period on every run, and computes
``burn_rate`` over each rule's windows from what it stored (``CheckKind.over_window``).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from monitor.alerting.conditions import tidy
from monitor.alerting.rules import MetricValue, RuleSpec, Severity
from monitor.checks.base import CheckSpec
from monitor.config.durations import format_duration
from monitor.config.types import Duration, Name, StrictModel

BURN_RATE = "burn_rate"
BUDGET = "error_budget_remaining"
SLO_METRICS = frozenset({BURN_RATE, BUDGET})
MIN_WINDOW_RUNS = 10
"""A window is judged from this many runs' values, or half of those it can hold (window / every) when fewer."""


def _objective(value: Any) -> Any:
    """``99.9%`` is 0.999; a fraction stays one; ``99.9`` is neither."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return round(float(value.strip()[:-1]) / 100.0, 12)
        except ValueError:
            raise ValueError("expected an objective such as 99.9% (or 0.999)") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 < value <= 100:
        raise ValueError(f"an objective of {value:g} would be {value * 100:g}%: write {value:g}%")
    return value


def _in_range(value: float) -> float:
    if not 0 < value < 1:
        raise ValueError(
            f"an objective is more than 0% and less than 100%, got {value * 100:g}%"
            + (": 100% leaves no error budget to burn" if value >= 1 else "")
        )
    return value


Objective = Annotated[float, BeforeValidator(_objective), AfterValidator(_in_range)]
_SLO_IDS = {"critical": "slo-page", "warning": "slo-ticket", "info": "slo-info"}


class SloAlert(StrictModel):
    """One alert of an SLO: the burn rate above ``burn_rate`` over both ``long`` and ``short``."""

    id: Name | None = Field(None, description="what its episodes are known by; slo-page, slo-ticket, slo-info by severity")
    severity: Severity
    burn_rate: float = Field(gt=0, description="how many times faster than the objective allows the budget burns")
    long: Duration
    short: Duration

    @field_validator("short")
    @classmethod
    def _shorter(cls, short: timedelta, info: ValidationInfo) -> timedelta:
        long = info.data.get("long")
        if long is not None and short >= long:
            raise ValueError(
                f"short ({format_duration(short)}) must be shorter than long ({format_duration(long)}): the short window "
                "makes the alert end soon after the burning stops (the SRE workbook pairs 1h with 5m)"
            )
        return short

    @property
    def key(self) -> str:
        return self.id or _SLO_IDS[self.severity]


DEFAULT_SLO_ALERTS = (
    SloAlert(severity="critical", burn_rate=14.4, long=timedelta(hours=1), short=timedelta(minutes=5)),
    SloAlert(severity="warning", burn_rate=6.0, long=timedelta(hours=6), short=timedelta(minutes=30)),
)


class Slo(StrictModel):
    """A service level objective: the share of events (a probe's attempts) that must be good."""

    objective: Objective
    period: Duration = timedelta(days=30)
    alerts: list[SloAlert] = Field(list(DEFAULT_SLO_ALERTS), min_length=1)

    @property
    def budget(self) -> float:
        """The share of events that may be bad over the period."""
        return 1.0 - self.objective


class BurnRateRule(RuleSpec):
    """An SLO alert as a rule of the check: it holds when ``burn_rate`` is past its limit over each of
    its windows (``window``, the long one, and ``short_window``)."""

    short_window: Duration

    @property
    def windows(self) -> tuple[timedelta, ...]:
        return (self.window, self.short_window) if self.window is not None else (self.short_window,)


class WithSlo(CheckSpec):
    """The keys of a check that may have an SLO: ``slo`` (a subclass may narrow its type, as latency's
    adds its threshold), validated against the check's ``every`` and rules, and its burn-rate rules."""

    slo: Slo | None = None

    @field_validator("slo")
    @classmethod
    def _slo_fits(cls, slo: Slo | None, info: ValidationInfo) -> Slo | None:
        if slo is None:
            return slo
        every, rules = info.data.get("every"), info.data.get("alert") or []
        ids = {rule.id: j for j, rule in enumerate(rules) if rule.id}
        seen: dict[str, int] = {}
        written = "alerts" in slo.model_fields_set
        for j, alert in enumerate(slo.alerts):
            name = f"alerts[{j}] ({alert.key})" if written else f"the default alert {alert.key} ({_number(alert.burn_rate)}x)"
            highest = 1.0 / slo.budget  # every event bad
            if alert.burn_rate >= highest:
                objective = f"{tidy(slo.objective * 100):g}%"
                raise ValueError(
                    f"{name} fires above a burn rate of {_number(alert.burn_rate)}, and under an objective of {objective} "
                    f"the burn rate is at most {highest:.4g} (every event bad): it could never fire; "
                    + ("write a lower burn_rate" if written else "raise the objective, or write alerts: with lower burn rates")
                )
            if alert.key in seen:
                raise ValueError(f"{name} has the id of alerts[{seen[alert.key]}]: give each alert its own id")
            seen[alert.key] = j
            if alert.key in ids:
                raise ValueError(f"{name} has the id of the check's alert[{ids[alert.key]}]: give one of them another id")
            if alert.long > slo.period:
                raise ValueError(
                    f"{name} looks at {format_duration(alert.long)}, more than the period {format_duration(slo.period)}"
                )
            if every is not None and alert.short < every:
                raise ValueError(
                    f"{name} looks at {format_duration(alert.short)}, which holds no run of a check every "
                    f"{format_duration(every)}: run it more often, or write alerts: with longer windows"
                )
        return slo

    @property
    def kind_rules(self) -> list[RuleSpec]:
        rules: list[RuleSpec] = []
        for alert in self.slo.alerts if self.slo else ():
            rules.append(
                BurnRateRule(
                    id=alert.key,
                    when=f"{BURN_RATE} > {_number(alert.burn_rate)}",
                    severity=alert.severity,
                    for_=timedelta(0),
                    window=alert.long,
                    short_window=alert.short,
                )
            )
        return rules


def _number(value: float) -> str:
    """A burn rate as a condition writes it: 6, not 6.0; 14.4 as itself."""
    return str(int(value)) if value.is_integer() else repr(value)


def runs_needed(spec: CheckSpec, window: timedelta) -> int:
    """How many runs' values a window must hold to be judged: 10, or half of what it can hold when fewer."""
    holds = window // spec.every
    return max(1, min(MIN_WINDOW_RUNS, math.ceil(holds / 2)))


def kept_windows(spec: WithSlo) -> frozenset[tuple[str, timedelta]]:
    """An SLO's error budget over its period, stored on every run though no rule names it."""
    return frozenset({(BUDGET, spec.slo.period)}) if spec.slo else frozenset()


def burn(slo: Slo, bad: float, events: float, wanted: frozenset[str], allowed: float | None = None) -> list[MetricValue]:
    """``burn_rate`` over a window with ``bad`` of its ``events`` bad (0 with no events: nothing burnt),
    and when wanted the ``error_budget_remaining`` of a period: 1 - the bad events / the bad events it
    allows (``allowed``; by default the budget's share of the events seen)."""
    share = bad / events if events else 0.0
    values = [MetricValue(BURN_RATE, share / slo.budget)]
    if BUDGET in wanted:
        allowed = slo.budget * events if allowed is None else allowed
        values.append(MetricValue(BUDGET, 1.0 - bad / allowed if allowed else 1.0))
    return values
