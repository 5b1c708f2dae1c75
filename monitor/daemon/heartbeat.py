"""The dead man's switch: the daemon tells an outside monitor that it is alive, as Healthchecks.io expects.

Every ``heartbeat_every`` (1 minute) the scheduler asks :meth:`Heartbeat.beat`: while the daemon has
no problem (``Health``: nothing on ``/healthz``) it sends ``GET heartbeat_url``; while it has one it
sends ``POST heartbeat_url/fail`` with the problems as text, so the outside monitor alerts at once
rather than after its grace time. When the daemon dies, hangs or loses its scheduler the pings stop,
and the outside monitor alerts: the one failure the daemon cannot tell of itself.

The URL holds the check's secret (Healthchecks' UUID): it is never logged; a failed ping is logged
once, then at most once a minute, without it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from monitor.health import Health, LogThrottle

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


class Heartbeat:
    def __init__(self, url: str, health: Health, *, timeout: timedelta = timedelta(seconds=TIMEOUT_S)) -> None:
        self.url = url.rstrip("/")
        self.health = health
        self.timeout = timeout.total_seconds()
        self._failing = LogThrottle(log)

    def beat(self) -> bool:
        """One ping: success while healthy, /fail with the problems otherwise; returns whether it went out."""
        import httpx

        problems = self.health.problems()
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True, trust_env=True) as client:
                if problems:
                    body = "\n".join(f"{name}: {reason}" for name, reason in sorted(problems.items()))
                    response = client.post(f"{self.url}/fail", content=body.encode(), headers={"User-Agent": "monitor"})
                else:
                    response = client.get(self.url, headers={"User-Agent": "monitor"})
        except httpx.HTTPError as exc:
            self._failing.log("heartbeat", logging.WARNING, f"heartbeat not sent: {type(exc).__name__}; trying again next time")
            return False
        if response.status_code >= 400:
            self._failing.log(
                "heartbeat", logging.WARNING, f"heartbeat answered HTTP {response.status_code}; trying again next time"
            )
            return False
        if self._failing.clear("heartbeat") is not None:
            log.info("heartbeat sent again")
        return True
