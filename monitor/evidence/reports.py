"""An evidence report: evidently's HTML of a run's window (against the model's reference, where the
kind compares with one), under a line saying which run, model, check and window it is.

The report is evidently's own (its metrics are the kind's ``CheckKind.evidence``), self-contained (its
scripts inline, nothing fetched from a CDN), so it opens wherever the daemon's page opens.
"""

from __future__ import annotations

import re
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.checks.base import EvidenceData

_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)
# evidently writes the report's data as JSON into a <script> of its page, unescaped: a value from the
# data holding "</script>" would end that script and run what follows. JSON has no raw line break, so
# the data's script ends at the first line that starts with "</script>", and each line before is one
# ``var NAME = JSON;`` (checked, so that a page laid out otherwise is refused, never served unescaped).
_DATA = re.compile(r"<script>\s*var ")
_ASSIGNMENT = re.compile(r"var [A-Za-z_$][\w$]* = (.*);", re.DOTALL)
# "<" also takes a zero-width space after it: the charts' library (plotly) reads a few tags of its own
# in text ("<a href>", "<span style>"), and a value must not add a link or a style to the page.
# evidently's own data holds no "<": only values do, and they read the same.
_IN_SCRIPT = str.maketrans({"<": "\\u003c\\u200b", ">": "\\u003e", "&": "\\u0026"})


def heading(model: str, check: str, run_id: int, window: tuple[datetime, datetime], rows: int, *, against_reference: bool) -> str:
    """The line above the report: what it is the evidence of (every value escaped)."""
    start, end = window
    return (
        "<div style='font:14px system-ui,sans-serif;padding:8px 12px;background:#fff3cd;border-bottom:1px solid #e0c36a'>"
        f"<b>{escape(model)} / {escape(check)}</b>: evidence of run #{int(run_id)}, the window "
        f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC ({int(rows):,} rows)"
        + (" against the reference" if against_reference else "")
        + "</div>"
    )


def failed_page(model: str, check: str, run_id: int, reason: str) -> str:
    """What the link of a run whose report could not be built shows instead (escaped)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>evidence of run #{int(run_id)}</title></head>"
        f"<body><p><b>{escape(model)} / {escape(check)}</b>: the evidence report of run #{int(run_id)} could not be "
        f"built: {escape(reason)}</p><p>The alert and its values are in the daemon's tables; the daemon's log says "
        "more.</p></body></html>"
    )


def _data_escaped(html: str) -> str:
    """evidently's page with ``<``, ``>`` and ``&`` in its data written as JSON escapes (the same values,
    to the script that reads them), so no value can close the script or open another. A page not laid
    out as expected is refused rather than served unescaped."""
    found = _DATA.search(html)
    start = found.start() + len("<script>") if found else -1
    end = html.find("\n</script>", start) if found else -1
    lines = [line.strip() for line in html[start:end].splitlines() if line.strip()] if end > 0 else []
    if not lines or not all(_is_data(line) for line in lines):
        raise ValueError("evidently's report is not laid out as this version of monitor expects (its data script)")
    return html[:start] + html[start:end].translate(_IN_SCRIPT) + html[end:]


def _is_data(line: str) -> bool:
    """Whether ``line`` is ``var NAME = JSON;``: what evidently's data script holds, and nothing else."""
    import json

    found = _ASSIGNMENT.fullmatch(line)
    if found is None:
        return False
    try:
        json.loads(found[1])
    except ValueError:
        return False
    return True


def report_html(data: EvidenceData, head: str) -> str:
    """evidently's report of ``data`` (the window's rows, beside the reference's where there is one), as
    one HTML page with ``head`` at the top of its body."""
    from evidently import Report

    snapshot = Report(data.metrics).run(current_data=data.current, reference_data=data.reference)
    html = _data_escaped(snapshot.get_html_str(as_iframe=False))
    found = _BODY.search(html)
    return html[: found.end()] + head + html[found.end() :] if found else head + html
