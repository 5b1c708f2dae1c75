"""Evidence reports on disk: one gzipped HTML file per run, written whole or not at all, kept
``retention.evidence``, and the signature that lets a link in a message open one.

A link in Slack is opened by a browser, which sends no bearer token; putting the token in the link
would hand it to everyone in the channel. The link carries instead an HMAC of the run id keyed by the
token: it opens that run's report and nothing else, and a daemon without a token needs none.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import os
import tempfile
from datetime import datetime
from pathlib import Path

SUFFIX = ".html.gz"


def signature(token: str, run_id: int) -> str:
    """What a link to run ``run_id``'s report carries (``?sig=``) when the daemon has a token."""
    return hmac.new(token.encode(), f"evidence:{run_id}".encode(), hashlib.sha256).hexdigest()[:32]


def signed(token: str, run_id: int, given: str | None) -> bool:
    if not given or not given.isascii():  # compare_digest takes ASCII text only; no signature is anything else
        return False
    return hmac.compare_digest(signature(token, run_id), given)


class EvidenceStore:
    """The reports in ``folder`` (made when the first is written)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, run_id: int) -> Path:
        return self.folder / f"{int(run_id)}{SUFFIX}"

    def save(self, run_id: int, html: str) -> Path:
        """Write the report of ``run_id``: to a temporary file, then renamed, so a reader never sees half."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(run_id)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".writing-", suffix=SUFFIX)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(gzip.compress(html.encode("utf-8"), compresslevel=6))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def read(self, run_id: int) -> bytes | None:
        """The gzipped report of ``run_id``, or None when there is none (not built yet, or past retention)."""
        try:
            return self.path(run_id).read_bytes()
        except FileNotFoundError:
            return None

    def prune(self, before: datetime) -> int:
        """Delete the reports written before ``before``; returns how many."""
        if not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.glob(f"*{SUFFIX}"):
            try:
                if path.stat().st_mtime < before.timestamp():
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # removed meanwhile
                continue
        return removed
