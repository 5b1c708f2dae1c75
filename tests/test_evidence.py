"""An alert's evidence: evidently's report of the window that fired it, built after the message is owed,
kept in evidence_dir and served by the daemon at /evidence/RUN_ID; the message links it, signed for
that run when the daemon has a token (a browser opening a link from Slack sends none)."""

from __future__ import annotations

import gzip
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml
from daemons import serving
from factories import T0, live_frame, reference_frame, write_project

from monitor.checks.base import EvidenceData
from monitor.cli import main
from monitor.clock import FixedClock
from monitor.daemon.evaluator import Evaluator
from monitor.daemon.evidence import EvidenceBuilder, wanted
from monitor.daemon.project import Project
from monitor.daemon.service import Daemon
from monitor.evidence.reports import report_html
from monitor.evidence.store import EvidenceStore, signature
from monitor.storage.tables import Alert, CheckRun, Notification

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
        plain = httpx.get(url, headers={"Accept-Encoding": "identity"})  # kept gzipped; sent so only when asked
        assert "content-encoding" not in plain.headers and plain.content == page.content
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
        daemon.evidence.path(run_id + 1).mkdir(parents=True)  # a report there that cannot be read: said, no traceback
        unreadable = httpx.get(other, headers={"Authorization": f"Bearer {TOKEN}"})
        assert unreadable.status_code == 500 and "cannot be read" in unreadable.json()["error"]
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


# -- the report of each kind that has one, as the daemon's builder writes it ----------------------------


def report_of(tmp_path, engine, check: dict, live: pd.DataFrame, *, source: dict | None = None, reference=None) -> tuple:
    """The run of ``check`` over ``live`` at T0 (it must fire) and the evidence page the daemon's builder
    writes for it."""
    config = write_project(tmp_path, live=live, checks=[check])
    path = tmp_path / "checks" / "fraud-scorer.yaml"
    model_file = yaml.safe_load(path.read_text())
    model_file["source"].update(source or {})
    path.write_text(yaml.safe_dump(model_file, sort_keys=False))
    if reference is not None:
        reference.to_parquet(tmp_path / "data" / "reference.parquet")
    project = Project.load(config)
    assert not project.checks.issues, project.checks.issues
    model = project.checks.models["fraud-scorer"]
    evaluator = Evaluator(engine, project.config, FixedClock(T0))
    result = evaluator.run(model, model.check(check["name"]))
    assert [c.state for c in result.changes] == ["firing"], (result.outcome, result.evaluation.error)
    store = EvidenceStore(tmp_path / "evidence")
    builder = EvidenceBuilder(store, evaluator)
    builder.after(model, model.check(check["name"]), result)
    builder.close()  # waits for the report in hand
    [part] = result.parts
    return part, gzip.decompress(store.read(part.run_id) or b"").decode()


def said(part, rows: str, *, against_reference: bool) -> str:
    """The report's heading for a run at T0 of an hour's window: what it is the evidence of."""
    end = " against the reference</div>" if against_reference else "</div>"
    return f"evidence of run #{part.run_id}, the window 2026-11-25 11:00:00 to 2026-11-25 12:00:00 UTC ({rows}){end}"


def titles(page: str) -> set[str]:
    """The titles of the report's widgets (evidently's, in the page's data)."""
    return set(re.findall(r'"title": ?"([^"]{3,80})"', page))


def labelled(rows: int, *, skill: float, seed: int) -> pd.DataFrame:
    """Live rows whose ``score`` is the model's fraud probability and ``is_fraud`` its label, the score
    following the label with ``skill``."""
    rng = np.random.default_rng(seed)
    frame = live_frame(rows, seed=seed)
    truth = rng.integers(0, 2, rows)
    frame["is_fraud"] = truth
    frame["score"] = np.clip(skill * truth + (1 - skill) * rng.random(rows), 0, 1)
    return frame


QUALITY = {"name": "quality", "kind": "performance", "every": "1h", "window": "1h"}


def test_a_classification_alerts_report_is_of_the_rows_it_scored_beside_the_references(tmp_path, sqlite_engine):
    """evidently's classification report of the labelled rows the run scored (not those whose label is not
    in yet), beside the reference's own labelled predictions, with the score's ROC AUC on both."""
    live = labelled(800, skill=0.2, seed=4)
    live.loc[live.index[:80], "is_fraud"] = None
    reference = reference_frame()
    reference["is_fraud"] = (reference["score"] > 0.5).astype(int)
    check = QUALITY | {"task": "classification", "alert": [{"when": "accuracy < 0.9", "severity": "critical"}]}

    part, page = report_of(tmp_path, sqlite_engine, check, live, source={"label": "is_fraud"}, reference=reference)

    assert part.evaluation.sample_size == 720
    assert f"<b>fraud-scorer / quality</b>: {said(part, '720 rows', against_reference=True)}" in page
    assert {"Current: Model Quality Metrics", "Reference: Model Quality Metrics",
            "RocAuc metric (current)", "RocAuc metric (reference)"} <= titles(page)  # fmt: skip


def test_a_regression_alerts_report_is_of_the_window_alone_when_the_reference_has_no_labels(tmp_path, sqlite_engine):
    rng = np.random.default_rng(5)
    live = live_frame(600)
    live["amount_paid"] = live["amount"] * rng.uniform(0.2, 3.0, len(live))
    check = QUALITY | {"task": "regression", "alert": [{"when": "mae > 1", "severity": "warning"}]}

    part, page = report_of(tmp_path, sqlite_engine, check, live, source={"label": "amount_paid", "prediction": "amount"})

    assert said(part, "600 rows", against_reference=False) in page
    found = titles(page)
    assert {"Current: Model Quality (+/- std)", "R2 Score"} <= found
    assert not any(title.startswith("Reference") for title in found), found


def test_a_data_quality_alerts_report_is_evidentlys_summary_of_the_window_beside_the_reference(tmp_path, sqlite_engine):
    live = live_frame(600)
    live.loc[live.index[:300], "amount"] = None
    check = {"name": "nulls", "kind": "data_quality", "every": "1h", "window": "1h",
             "alert": [{"when": "missing_share > 0.15", "severity": "warning"}]}  # fmt: skip

    part, page = report_of(tmp_path, sqlite_engine, check, live)

    assert said(part, "600 rows", against_reference=True) in page
    assert '"Dataset Summary"' in page and all(f'"{feature}"' in page for feature in ("amount", "country"))


def test_a_prediction_drift_alerts_report_is_evidentlys_drift_of_the_predictions(tmp_path, sqlite_engine):
    live = live_frame(1500)
    live["score"] = np.random.default_rng(6).beta(5, 1, len(live))  # the reference's are uniform
    check = {"name": "scores", "kind": "prediction_drift", "every": "1h", "window": "1h",
             "alert": [{"when": "drifted == 1", "severity": "warning"}]}  # fmt: skip

    part, page = report_of(tmp_path, sqlite_engine, check, live)

    assert said(part, "1,500 rows", against_reference=True) in page
    assert "Drifted Columns" in page and '"score"' in page and '"amount"' not in page


def test_a_check_failing_on_empty_windows_links_no_report_it_would_have_nothing_to_show(tmp_path, sqlite_engine):
    config = write_project(tmp_path, checks=[{"name": "feature-drift", "kind": "drift", "every": "15m", "window": "1h",
                                              "alert": [{"when": "drift_share > 0.3", "severity": "critical"}]}])  # fmt: skip
    project = Project.load(config)
    model = project.checks.models["fraud-scorer"]
    check = model.check("feature-drift")
    clock = FixedClock(T0)
    evaluator = Evaluator(sqlite_engine, project.config, clock, evidence_url=lambda run_id: f"http://monitor/evidence/{run_id}")
    for _ in range(3):  # no rows at all: three failing runs in a row
        result = evaluator.run(model, check)
        clock.advance(timedelta(minutes=15))
    assert [(c.rule, c.state) for c in result.changes] == [("failing_runs >= 3", "firing")]
    assert wanted(check, result) == []
    with sqlite_engine.connect() as conn:
        [payload] = conn.scalars(sa.select(Notification.payload)).all()
    assert "evidence" not in payload["links"]


def test_a_window_without_a_fraud_label_still_has_its_classification_report(tmp_path, sqlite_engine):
    """No fraud labelled this hour: ROC AUC is undefined (one class of labels), the rest is shown."""
    live = labelled(600, skill=0.2, seed=4)
    live["is_fraud"] = 0
    reference = reference_frame()
    reference["is_fraud"] = (reference["score"] > 0.5).astype(int)
    check = QUALITY | {"task": "classification", "alert": [{"when": "accuracy < 0.9", "severity": "critical"}]}

    part, page = report_of(tmp_path, sqlite_engine, check, live, source={"label": "is_fraud"}, reference=reference)

    assert "could not be built" not in page and said(part, "600 rows", against_reference=True) in page
    found = titles(page)
    assert {"Current: Model Quality Metrics", "Reference: Model Quality Metrics"} <= found
    assert not any(title.startswith("RocAuc") for title in found), found


def test_a_value_in_a_report_is_data_never_a_tag_of_the_page_or_of_its_charts():
    """A value that would end evidently's data script, or that its charts (plotly) would read as a link or a
    style, is kept as text: "<" is a JSON escape, then a zero-width space no tag name starts with."""
    from evidently.presets import DataDriftPreset

    link = '<a href="https://evil.example/">open me</a>'
    values = ["</script><script>document.title='pwned'</script>", link, "<=50K"]
    rng = np.random.default_rng(3)
    current = pd.DataFrame({"country": rng.choice(values, 300)})
    page = report_html(
        EvidenceData([DataDriftPreset()], current, 300, pd.DataFrame({"country": rng.choice(["US", "DE"], 300)})), ""
    )
    data = page[page.index("<script>") + len("<script>") : page.index("\n</script>")]
    assert "<" not in data and "</script" not in page[: page.index("\n</script>")]
    decoded = [json.loads(line.strip().partition(" = ")[2].removesuffix(";")) for line in data.strip().splitlines()]
    shown = json.dumps(decoded, ensure_ascii=False)
    assert '<\u200ba href=\\"https://evil.example/\\">open me<\u200b/a>' in shown and "<\u200b=50K" in shown


def test_a_report_the_daemon_stopped_before_building_is_built_when_it_starts_again(tmp_path):
    """Killed after the message was owed and before its report: the alert still firing, the next start
    builds the report its link names."""
    config = write_project(tmp_path, live=live_frame(3000, end=datetime.now(UTC), drift=True))
    first = Daemon(Project.load(config), console=io.StringIO())
    first.prepare()
    model = first.project.checks.models["fraud-scorer"]
    result = first.evaluate(model, model.check("feature-drift"))  # not serving: no report built
    first.engine.dispose()
    [part] = wanted(model.check("feature-drift"), result)
    assert part.run_id is not None and not first.evidence.path(part.run_id).exists()

    with serving(config) as (daemon, _):
        deadline = time.monotonic() + 30
        while (report := daemon.evidence.read(part.run_id)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert f"evidence of run #{part.run_id}" in (page := gzip.decompress(report).decode()) and "Drifted Columns" in page
