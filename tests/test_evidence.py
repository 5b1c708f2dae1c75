"""An alert's evidence: evidently's report of the window that fired it, built after the message is owed,
kept in evidence_dir and served by the daemon at /evidence/RUN_ID; the message links it, signed for
that run when the daemon has a token (a browser opening a link from Slack sends none)."""

from __future__ import annotations

import gzip
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
import yaml
from daemons import serving
from factories import live_frame, write_project

from monitor.cli import main
from monitor.evidence.store import EvidenceStore, signature
from monitor.storage.tables import Alert, CheckRun

TOKEN = "evidence-token"
LINK = re.compile(r"evidence: (http://\S+/evidence/(\d+)\?sig=([0-9a-f]+))")


def test_a_drift_alerts_message_links_evidentlys_report_of_that_window_served_by_the_daemon(tmp_path, slack, capsys):
    config = write_project(tmp_path, live=live_frame(3000, end=datetime.now(UTC), drift=True),
                           slack={"token": "xoxb-test", "base_url": slack.url})  # fmt: skip
    settings = yaml.safe_load(config.read_text())
    settings["server"]["token"] = TOKEN
    config.write_text(yaml.safe_dump(settings))
    with serving(config) as (daemon, client):
        deadline = time.monotonic() + 30
        while not any(c.method == "chat.postMessage" and "feature-drift" in c.body["text"] for c in slack.requests):
            assert time.monotonic() < deadline, [c.body for c in slack.requests]
            time.sleep(0.05)
        [posted] = [c for c in slack.requests if c.method == "chat.postMessage" and "feature-drift" in c.body["text"]]
        found = LINK.search(posted.body["text"])
        assert found, posted.body["text"]
        url, run_id = found[1], int(found[2])
        page = wait_for_page(url)  # as a browser opens it: no token, the link's signature
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == "sandbox allow-scripts"
        with daemon.engine.connect() as conn:
            run = conn.execute(sa.select(CheckRun).where(CheckRun.id == run_id)).one()
        assert run.check == "feature-drift" and run.outcome == "breach"
        # The report is of that run's window, against the reference, and it is evidently's.
        assert (f"evidence of run #{run_id}, the window {run.window_start:%Y-%m-%d %H:%M:%S} to "
                f"{run.window_end:%Y-%m-%d %H:%M:%S} UTC ({run.sample_size:,} rows)") in page.text  # fmt: skip
        assert "Drifted Columns" in page.text and all(f'"{feature}"' in page.text for feature in ("amount", "country"))

        # Without the token or the signature of this very run, nothing is shown.
        base = url.partition("?")[0]
        assert client.get(base.replace(daemon.http.url, "")).status_code == 401
        other = base.replace(f"/evidence/{run_id}", f"/evidence/{run_id + 1}")
        assert httpx.get(f"{other}?sig={found[3]}").status_code == 401
        assert httpx.get(base, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        missing = httpx.get(other, headers={"Authorization": f"Bearer {TOKEN}"})
        assert missing.status_code == 404 and "being built" in missing.json()["error"]
        for odd in (f"{base}?sig=%C3%A9", base.replace(f"/evidence/{run_id}", "/evidence/" + "9" * 5000)):
            assert httpx.get(odd).status_code in (401, 404)  # a signature not ASCII, a run id past any: no 500
        assert httpx.get(base.replace(f"/evidence/{run_id}", "/evidence/" + "9" * 300),
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404  # fmt: skip
        with daemon.engine.connect() as conn:
            alert_id = conn.scalar(sa.select(Alert.id).where(Alert.check == "feature-drift"))

    # `monitor alerts show` links the same report.
    capsys.readouterr()
    assert main(["alerts", "--config", str(config), "show", str(alert_id)]) == 0
    assert f"  evidence: {url}" in capsys.readouterr().out


def wait_for_page(url: str, timeout: float = 30) -> httpx.Response:
    """The report is built after the message is owed: the link answers 404 until it is written."""
    deadline = time.monotonic() + timeout
    while (page := httpx.get(url, timeout=30)).status_code == 404:
        assert time.monotonic() < deadline, page.text
        time.sleep(0.2)
    assert page.status_code == 200, page.text
    return page


def test_a_report_is_written_whole_kept_by_age_and_signed_for_its_run_only(tmp_path):
    store = EvidenceStore(tmp_path / "evidence")
    assert store.read(7) is None and store.prune(datetime.now(UTC)) == 0  # nothing yet, not even the folder
    store.save(7, "<html><body>seven</body></html>")
    assert gzip.decompress(store.read(7) or b"") == b"<html><body>seven</body></html>"
    assert [p.name for p in (tmp_path / "evidence").iterdir()] == ["7.html.gz"]  # no temporary file left
    assert store.prune(datetime.now(UTC) - timedelta(days=1)) == 0
    assert store.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1 and store.read(7) is None
    assert signature("t", 7) != signature("t", 8) and signature("t", 7) != signature("u", 7)
