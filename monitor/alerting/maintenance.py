"""Maintenance windows, pure: recurring times, written in a check file, when a model's alerts are held.

``maintenance: [{days: [sun], from: "02:00", to: "04:00", timezone: Europe/Berlin, reason: ...}]``
holds back the messages of the model's alerts (or of the ``checks`` listed) every Sunday from 02:00 to
04:00 Berlin time, as a silence would (monitor/alerting/silences.py): recorded, not sent, and sent at
the window's end if the alert still fires. A window whose ``to`` is before its ``from`` runs past
midnight into the next day. Times are wall-clock times in the stated zone, so a window keeps its
local hours across daylight-saving changes.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from monitor.alerting.silences import SilenceRule
from monitor.config.types import Name, StrictModel

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _clock(value: object) -> time:
    if not isinstance(value, str) or not _CLOCK.match(value.strip()):
        raise ValueError('expected a time of day as "HH:MM", such as "02:00" (quote it: unquoted, YAML reads 2:30 as a number)')
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


class MaintenanceWindow(StrictModel):
    days: list[Day] = Field(list(DAYS), min_length=1, description="the days it starts on: mon ... sun; every day by default")
    from_: str = Field(alias="from", description='when it starts, "HH:MM" in its timezone')
    to: str = Field(description='when it ends, "HH:MM"; before from: the next day')
    timezone: str = Field("UTC", description="an IANA zone, such as Europe/Berlin")
    checks: list[Name] = Field([], description="only these checks' alerts; every check of the model by default")
    reason: str = Field(min_length=1, description="why, shown where its held messages are")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _a_time(cls, value: object) -> str:
        return _clock(value).strftime("%H:%M")

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: write an IANA name, such as Europe/Berlin or UTC") from None
        return value

    def active(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence that holds ``now`` (start, end, in UTC), or None."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        start_at, end_at = _clock(self.from_), _clock(self.to)
        overnight = end_at <= start_at  # it ends the next day
        for back in (0, 1):  # it started today, or yesterday and runs past midnight
            day = local.date() - timedelta(days=back)
            if DAYS[day.weekday()] not in self.days:
                continue
            start = datetime.combine(day, start_at, tzinfo=zone)
            end = datetime.combine(day + timedelta(days=1) if overnight else day, end_at, tzinfo=zone)
            if start <= local < end:
                return start.astimezone(now.tzinfo), end.astimezone(now.tzinfo)
        return None

    def shown(self) -> str:
        days = "every day" if len(self.days) == 7 else ", ".join(self.days)
        return f"{days} {self.from_}-{self.to} {self.timezone}"


def maintenance_silences(windows: dict[str, list[MaintenanceWindow]], now: datetime) -> list[SilenceRule]:
    """The windows of each model that hold ``now``, as silences (id 0: they are the check file's)."""
    out = []
    for model, listed in windows.items():
        for window in listed:
            span = window.active(now)
            if span is None:
                continue
            reason = f"maintenance ({window.shown()}): {window.reason}"
            checks: list[str | None] = [*window.checks] or [None]  # None: every check of the model
            out += [SilenceRule(0, model, check, span[0], span[1], reason) for check in checks]
    return out
