"""The status page as on-call sees it, in headless Chromium (Debian's ``chromium``): a running daemon
with firing alerts, a failing model and a silence; what the browser renders is checked, at a phone's
width, and a screenshot is made. Text from the data (a category value, an error naming a path, a
silence's reason) holds HTML, which must be shown as text, never run or rendered. Model, check and
feature names cannot hold it: they are identifiers, refused otherwise at load."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from daemons import serving
from factories import live_frame, write_project

from monitor.storage import db
from monitor.storage.tables import CheckRun, Metric, Silence

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = "<img src=x onerror=alert(1) id=pwned>"
# A value that would end the evidence report's data script (evidently writes its data there as JSON).
SCRIPT_BREAK = "</script><script>document.body.insertAdjacentHTML('afterbegin', '<b id=pwned>x</b>')</script>"
# What Chromium needs here: no sandbox as root, no GPU, and none of its calls home (this network refuses them).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--hide-scrollbars"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: `apt-get install chromium` (Debian's package; .ci/run installs it)"
)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],  # type: ignore[list-item]
                          capture_output=True, text=True, timeout=90, check=True)  # fmt: skip


class Rendered(HTMLParser):
    """The DOM Chromium printed: its elements, and its text (what a reader sees)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_the_status_page_in_chromium_shows_what_on_call_needs_and_injected_html_as_text(tmp_path):
    live = live_frame(3000, end=datetime.now(UTC), drift=True)
    live.loc[live.index[:2000], "country"] = HOSTILE  # a category value the reference never had
    live.loc[live.index[2000:2300], "country"] = SCRIPT_BREAK
    checks = [
        {"name": "feature-drift", "kind": "drift", "every": "1h", "window": "1h",
         "alert": [{"when": "drift_score > 0.1", "severity": "critical"}], "links": {"runbook": "https://runbooks.example/drift"}},
        {"name": "latency", "kind": "latency", "every": "1h", "window": "1h",
         "alert": [{"when": "p99_ms > 1", "severity": "warning"}]},
    ]  # fmt: skip
    config = write_project(tmp_path, live=live, checks=checks)
    batch = {"model": "batch-job", "owner": "fraud-team", "source": {"kind": "files", "path": f"data/{HOSTILE}/*.csv",
             "timestamp": "ts", "id": "id", "features": ["x"]},
             "checks": [{"name": "volume", "kind": "volume", "every": "1h", "window": "1h"}]}  # fmt: skip
    (tmp_path / "checks" / "batch-job.yaml").write_text(yaml.safe_dump(batch))
    (tmp_path / "data" / HOSTILE).mkdir()
    (tmp_path / "data" / HOSTILE / "rows.csv").write_text(f"ts,id,y\n{datetime.now(UTC).isoformat()},1,2\n")  # no column x
    engine = db.create_engine(yaml.safe_load(config.read_text())["database"]["url"])
    db.upgrade(engine)
    with engine.begin() as conn:  # a day of the latency check's p99, as the daemon would have recorded it
        now = datetime.now(UTC)
        conn.execute(sa.insert(Metric), [
            {"time": now - timedelta(hours=h), "model": "fraud-scorer", "check": "latency", "metric": "p99_ms",
             "feature": "", "value": 100.0 + 10 * (h % 5), "window_start": now - timedelta(hours=h + 1),
             "window_end": now - timedelta(hours=h), "sample_size": 500, "model_version": ""}
            for h in range(1, 24)
        ])  # fmt: skip
    engine.dispose()
    with serving(config) as (daemon, client):
        with daemon.engine.begin() as conn:
            now = datetime.now(UTC)
            conn.execute(sa.insert(Silence).values(model="fraud-scorer", check="latency", matchers={}, starts=now,
                                                   ends=now + timedelta(hours=2), reason=f"deploy {HOSTILE}", created=now))  # fmt: skip
        deadline = time.monotonic() + 30
        while daemon.outbox.pending_count():  # the messages are told (or held by the silence)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with daemon.engine.connect() as conn:
            error = conn.scalar(sa.select(CheckRun.error).where(CheckRun.model == "batch-job"))
        url = daemon.http.url + "/"
        dom = chromium("--dump-dom", url, profile=tmp_path / "profile").stdout
        shot = tmp_path / "status-375.png"
        chromium(f"--screenshot={shot}", "--window-size=375,1400", url, profile=tmp_path / "profile")
        [evidence] = {href for tag, attrs in Rendered(dom).tags if "/evidence/" in (href := attrs.get("href", ""))}
        while httpx.get(evidence, timeout=30).status_code == 404:  # built after the message: "being built" until then
            assert time.monotonic() < deadline + 60
            time.sleep(0.2)
        report = Rendered(chromium("--virtual-time-budget=5000", "--dump-dom", evidence, profile=tmp_path / "profile").stdout)

    page = Rendered(dom)
    text = "".join(page.text)
    # The injected HTML is text: no element it would have made, its characters shown as they are.
    assert not any(tag == "img" or attrs.get("id") == "pwned" for tag, attrs in page.tags)
    assert f"country: '{HOSTILE}' from 0% to" in text  # the category, in what the drift alert says moved
    assert HOSTILE in error and error in text  # the failing model's error, naming the path
    assert f"deploy {HOSTILE}" in text  # the silence's reason
    # What on-call needs: the open alerts worst first with owner, age, delivery and links; silences; per
    # model each check's last run, with a chart of its headline metric.
    rows = [t for t, _ in page.tags if t == "tr"]
    assert rows and "Open alerts (" in text and "Silences in force" in text
    severities = [line for line in text.split() if line in ("critical", "warning")]
    assert severities[: severities.count("critical")] == ["critical"] * severities.count("critical")  # worst first
    assert "fraud-team" in text and "sent" in text
    hrefs = [attrs.get("href", "") for tag, attrs in page.tags if tag == "a"]
    assert "https://runbooks.example/drift" in hrefs
    assert any(tag == "svg" for tag, _ in page.tags) and any(tag == "polyline" for tag, _ in page.tags)
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags
    assert {"fraud-scorer", "batch-job"} <= {t.strip() for t in page.text}  # a heading per model
    # The drift alert's evidence report drew, with the values from the data as data, never as its page.
    assert "Drifted Columns" in "".join(report.text)
    assert not any(attrs.get("id") == "pwned" or tag == "img" and attrs.get("src") == "x" for tag, attrs in report.tags)
    # The screenshot is a PNG as wide as a phone.
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", header[16:20])[0] == 375
