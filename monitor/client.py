"""What a model service imports to send every prediction (and, later, its label) to the daemon.

    from monitor.client import MonitorClient

    client = MonitorClient("http://127.0.0.1:8321", "fraud-scorer", token=os.environ.get("MONITOR_INGEST_TOKEN"))
    client.log_prediction(request_id, {"amount": 12.5, "country": "DE"}, score, latency_ms=31.0)
    client.log_label(request_id, 1)          # later, when the truth is known

A classifier that decides and scores gives both: ``log_prediction(id, features, decision,
probability=score)`` (the score of the positive class, 0 to 1): accuracy, precision, recall and F1
are then of its decisions, ROC AUC of its scores.

or once per process ``monitor.client.configure(url, model, token=...)``, then the module's
``log_prediction(...)`` and ``log_label(...)`` anywhere.

What it promises
----------------
**Never blocks, never raises.** ``log_prediction`` and ``log_label`` encode the row as one JSON line
(a microsecond or two with orjson), append it to an in-memory buffer under a lock that is only ever
held for microseconds, and return ``True`` (buffered) or ``False`` (dropped). They do no I/O and never
wait for the network. Bad values (an id of None or "", features that are not a mapping, a timestamp
that is not a datetime, ISO-8601 text or epoch seconds, a negative latency, a probability that is not
a number from 0 to 1, a value that is not JSON)
are not raised: the row is dropped, counted in ``dropped``, shown in ``last_error`` and logged at DEBUG.
Values are taken when logged: numbers, text, booleans and None; numpy scalars and arrays, Decimal and
Enum are converted; NaN becomes null (a missing value). A call that does not fit the signature (a
misspelt keyword) still raises ``TypeError``, like any Python call: a bug found on its first run.

**Bounded memory.** At most ``buffer_size`` rows are held, buffered and in flight together, as encoded
bytes (no Python objects per row for the garbage collector to walk). A row logged while the buffer is
full is dropped and counted; rows already held are never evicted.

**At-least-once delivery of what was buffered, while the process lives.** A background daemon thread
sends batches of up to ``batch_size`` rows as JSON lines over one keep-alive connection, as soon as a
batch is full and at least every ``flush_interval`` seconds, predictions before labels (so a label
finds its prediction). On a connection error, a timeout, a 5xx, 429 or 503 the same batch is kept in
memory and sent again, with exponential backoff capped at ``max_backoff`` seconds (with jitter; a
``Retry-After`` from the daemon is honoured), for as long as it takes: once the daemon is back, every
row held is delivered. A request that timed out after the daemon took it is sent again, so a row can
arrive twice; a row held is never lost while the process lives and ``close()`` has not given up.

**Every row ends in exactly one counter**, per kind (``predictions``, ``labels``):

- ``sent``: accepted by the daemon.
- ``rejected``: the daemon answered 400 and named the row as bad (a feature of the wrong type, a label
  that is an object...). The good rows of that batch were taken; the batch is not sent again.
- ``dropped``: the buffer was full; a bad argument; no client configured (module functions); the
  client was closed; a configuration error the daemon answered (401/403 wrong token,
  404 unknown model or URL, another 4xx): these are not retried, logged once at WARNING and shown in
  ``last_error``; a single row larger than the daemon's body limit (a 413 first splits the batch in
  halves and sends those); rows still held when ``close()`` gave up waiting.
- ``pending``: held, not yet settled.

``client.stats()`` returns them all with ``last_error``. Besides the WARNING per configuration error,
the background thread logs an unreachable daemon once per outage, the first rejected rows, and rows
dropped for a full buffer at most once a minute. The calling thread logs only at DEBUG (and once at
WARNING when the module's ``log_*`` functions are called before ``configure()``).

**Flushing.** ``flush(timeout)`` waits until everything held is settled; ``close(timeout)`` stops new
rows, flushes for up to ``timeout`` seconds, stops the thread and counts what is left as dropped. The
client is a context manager, and ``close`` is registered with ``atexit``: a process that exits
normally flushes for up to ``exit_timeout`` (5) seconds. A crash, ``SIGKILL`` or ``os._exit`` loses
what is held: this is a monitoring side channel, not a durable queue. A process forked from one with a
client starts with an empty buffer and its own sender thread (the parent sends the parent's rows).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import numbers
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import orjson

log = logging.getLogger(__name__)

PREDICTIONS, LABELS = "predictions", "labels"
KINDS = (PREDICTIONS, LABELS)
FIRST_BACKOFF = 0.1  # seconds before the first retry; doubles each attempt up to max_backoff
MAX_RETRY_AFTER = 600.0  # a Retry-After longer than this is taken as this
OVERFLOW_REPORT_EVERY = 60.0
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class Counts(NamedTuple):
    predictions: int = 0
    labels: int = 0

    @property
    def total(self) -> int:
        return self.predictions + self.labels


class _BadArgument(ValueError):
    pass


def _timestamp(ts: Any) -> Any:
    """Now when None; a datetime in UTC (naive ones are taken as UTC, as the daemon does), which the
    encoder writes as ISO-8601 with a Z; numbers (epoch seconds) and text as given."""
    if ts is None:
        return datetime.now(UTC)
    if isinstance(ts, datetime):
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        if type(ts) is datetime:
            return ts
        return ts.isoformat(timespec="microseconds")[:-6] + "Z"  # a subclass (pandas.Timestamp)
    if isinstance(ts, str):
        return ts
    if isinstance(ts, numbers.Real) and not isinstance(ts, bool):
        value = ts if isinstance(ts, (int, float)) else float(ts)
        if math.isfinite(value):
            return value
    raise _BadArgument(f"ts must be a datetime, ISO-8601 text or epoch seconds, not {ts!r}")


def _row_id(value: Any) -> str | int:
    if value is None or isinstance(value, bool) or value == "":
        raise _BadArgument(f"id must be non-empty text or a number, not {value!r}")
    return value if isinstance(value, (str, int)) else str(value)


def _encode(row: dict) -> bytes:
    return orjson.dumps(row, default=_jsonable, option=_JSON_OPTIONS)


def _jsonable(value: Any) -> Any:
    """What orjson cannot write itself; anything else makes the row dropped (counted)."""
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy and pandas scalars
        return value.item()
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


_clients: weakref.WeakSet[MonitorClient] = weakref.WeakSet()


class MonitorClient:
    """Buffers rows and sends them to the daemon's ingest API from a background thread; see the module."""

    exit_timeout = 5.0

    def __init__(
        self,
        url: str,
        model: str,
        *,
        token: str | None = None,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        timeout: float = 5.0,
        max_backoff: float = 30.0,
    ) -> None:
        if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ValueError(f"url must be the daemon's http:// or https:// address, not {url!r}")
        if not model or not isinstance(model, str):
            raise ValueError(f"model must be the model's name, not {model!r}")
        if buffer_size < 1 or batch_size < 1 or flush_interval <= 0 or timeout <= 0 or max_backoff <= 0:
            raise ValueError("buffer_size and batch_size must be >= 1; flush_interval, timeout and max_backoff > 0")
        self.url = url.rstrip("/")
        self.model = model
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.max_backoff = max_backoff
        self._endpoints = {kind: f"{self.url}/v1/models/{quote(model, safe='')}/{kind}" for kind in KINDS}
        self._headers = {"Content-Type": "application/x-ndjson", "User-Agent": "monitor-client"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._random = random.Random()
        self._closed = False
        self._http = self._connect()
        self._reset()
        _clients.add(self)
        atexit.register(self._at_exit)

    def _connect(self) -> httpx.Client:
        # Built here, in the caller's thread at set-up time, not on the sender thread: building one
        # imports httpcore and loads CA certificates (tens of milliseconds holding the GIL), and a
        # fork while a thread is importing leaves the child with a half-imported module.
        return httpx.Client(
            timeout=self.timeout, headers=self._headers, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
        )

    def _reset(self) -> None:
        """Fresh state and a fresh sender thread: at start, and in a forked child."""
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queues: dict[str, deque] = {kind: deque() for kind in KINDS}
        self._held = 0
        self._unsettled = 0  # rows of the batch in flight not yet counted (sender thread only)
        self._counts = {name: dict.fromkeys(KINDS, 0) for name in ("sent", "rejected", "dropped")}
        self._overflow = self._overflow_reported = 0
        self._overflow_reported_at = 0.0
        self._last_error: str | None = None
        self._warned: set[str] = set()
        self._outage_since: float | None = None
        self._outage_logged = False
        self._batch_limit = self.batch_size
        self._thread = threading.Thread(target=self._run, name=f"monitor-client-{self.model}", daemon=True)
        if not self._closed:
            self._thread.start()

    # -- the caller's side: append and return ----------------------------------------------------
    def log_prediction(
        self,
        id: Any,
        features: Mapping[str, Any],
        prediction: Any,
        *,
        ts: Any = None,
        latency_ms: float | None = None,
        model_version: str | None = None,
        probability: float | None = None,
    ) -> bool:
        """Buffer one prediction; ``True`` if buffered, ``False`` if dropped (and counted). Never raises.

        ``prediction`` is the model's output (its decision, for a classifier); ``probability`` its score
        for the positive class, a number from 0 to 1."""
        try:
            if not isinstance(features, Mapping):
                raise _BadArgument(f"features must be a mapping of name to value, not {type(features).__name__}")
            row = {
                "id": _row_id(id),
                "ts": _timestamp(ts),
                "features": features if type(features) is dict else dict(features),
                "prediction": prediction,
            }
            if latency_ms is not None:
                if (
                    isinstance(latency_ms, bool)
                    or not isinstance(latency_ms, numbers.Real)
                    or not math.isfinite(latency_ms)
                    or latency_ms < 0
                ):
                    raise _BadArgument(f"latency_ms must be a number >= 0, not {latency_ms!r}")
                row["latency_ms"] = float(latency_ms)
            if probability is not None:
                if isinstance(probability, bool) or not isinstance(probability, numbers.Real) or not 0 <= probability <= 1:
                    raise _BadArgument(f"probability must be a number from 0 to 1, not {probability!r}")
                row["probability"] = float(probability)
            if model_version is not None:
                row["model_version"] = model_version if isinstance(model_version, (str, int)) else str(model_version)
            line = _encode(row)
        except Exception as exc:  # noqa: BLE001 - the promise is never to raise into the caller's request
            return self._bad(PREDICTIONS, exc)
        return self._append(PREDICTIONS, line)

    def log_label(self, id: Any, label: Any) -> bool:
        """Buffer the true outcome of prediction ``id``; ``True`` if buffered, ``False`` if dropped. Never raises."""
        try:
            line = _encode({"id": _row_id(id), "label": label})
        except Exception as exc:  # noqa: BLE001
            return self._bad(LABELS, exc)
        return self._append(LABELS, line)

    def _bad(self, kind: str, exc: Exception) -> bool:
        try:
            with self._lock:
                self._counts["dropped"][kind] += 1
            self._last_error = f"a {kind} row was dropped: {exc}"
            log.debug("monitor client: %s", self._last_error)
        except Exception:  # noqa: BLE001
            pass
        return False

    def _append(self, kind: str, line: bytes) -> bool:
        try:
            with self._lock:
                if self._closed or self._held >= self.buffer_size:
                    self._counts["dropped"][kind] += 1
                    if not self._closed:
                        self._overflow += 1
                    return False
                queue = self._queues[kind]
                queue.append(line)
                self._held += 1
                full = len(queue) >= self.batch_size
            if full and not self._wake.is_set():
                self._wake.set()
            return True
        except Exception as exc:  # noqa: BLE001
            return self._bad(kind, exc)

    # -- counters ---------------------------------------------------------------------------------
    def _snapshot(self, name: str) -> Counts:
        with self._lock:
            return Counts(**self._counts[name])

    @property
    def sent(self) -> Counts:
        return self._snapshot("sent")

    @property
    def rejected(self) -> Counts:
        return self._snapshot("rejected")

    @property
    def dropped(self) -> Counts:
        return self._snapshot("dropped")

    @property
    def pending(self) -> int:
        return self._held

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {name: Counts(**counts) for name, counts in self._counts.items()}
            out["pending"] = self._held
        out["last_error"] = self._last_error
        return out

    # -- flushing and closing ---------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row held is settled (sent, rejected or dropped); ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._settled:
            while self._held:
                if not self._thread.is_alive():
                    return False
                remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Stop taking rows, flush for up to ``timeout`` seconds, stop the thread; rows still held are
        counted as dropped. ``True`` when everything was settled before the deadline."""
        with self._lock:
            if self._closed:
                return self._held == 0
            self._closed = True
        with contextlib.suppress(Exception):  # the interpreter may be shutting down
            atexit.unregister(self._at_exit)
        started = time.monotonic()
        done = self.flush(timeout)
        with self._lock:
            dropped_before = sum(self._counts["dropped"].values())
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(0.1, timeout - (time.monotonic() - started)))
        with self._lock:
            left = 0
            for kind, queue in self._queues.items():
                self._counts["dropped"][kind] += len(queue)
                left += len(queue)
                queue.clear()
            self._held -= left
            self._settled.notify_all()
            lost = sum(self._counts["dropped"].values()) - dropped_before
        if lost:
            log.warning(
                "monitor client: %d rows not delivered to %s before close (%s); counted as dropped",
                lost,
                self.url,
                self._last_error or "timed out",
            )
        return done

    def _at_exit(self) -> None:
        self.close(self.exit_timeout)

    def __enter__(self) -> MonitorClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the sender thread ------------------------------------------------------------------------
    def _run(self) -> None:
        http = self._http
        try:
            while not self._stop.is_set():
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                self._drain(http)
                self._report_overflow()
        except Exception:  # noqa: BLE001 - a bug here must not take the service down; it is logged
            log.exception("monitor client: the sender thread failed; rows are no longer sent")
        finally:
            http.close()

    def _drain(self, http: httpx.Client) -> None:
        while not self._stop.is_set():
            with self._lock:
                kind = next((k for k in KINDS if self._queues[k]), None)
                if kind is None:
                    return
                queue = self._queues[kind]
                batch = [queue.popleft() for _ in range(min(len(queue), self._batch_limit))]
                self._unsettled = len(batch)
            try:
                self._post(http, kind, batch)
            except Exception as exc:  # noqa: BLE001
                log.exception("monitor client: cannot send %d %s; dropped", self._unsettled, kind)
                self._last_error = f"{type(exc).__name__}: {exc}"
            finally:
                if self._unsettled:
                    self._settle(kind, dropped=self._unsettled)

    def _settle(self, kind: str, *, sent: int = 0, rejected: int = 0, dropped: int = 0) -> None:
        with self._lock:
            counts = self._counts
            counts["sent"][kind] += sent
            counts["rejected"][kind] += rejected
            counts["dropped"][kind] += dropped
            self._held -= sent + rejected + dropped
            self._unsettled -= sent + rejected + dropped
            self._settled.notify_all()

    def _post(self, http: httpx.Client, kind: str, lines: list[bytes]) -> None:
        """Send ``lines`` until the daemon has settled them, or the client is closed (then dropped)."""
        url = self._endpoints[kind]
        attempt = 0
        while True:
            retry_after = None
            try:
                response = http.post(url, content=b"\n".join(lines))
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.url}: {type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status < 300:
                    self._recovered()
                    self._settle(kind, sent=len(lines))
                    return
                if status == 400:
                    self._recovered()
                    self._rejected(kind, len(lines), response)
                    return
                if status == 413:
                    self._recovered()
                    self._too_large(http, kind, lines)
                    return
                if status not in (408, 429) and status < 500:
                    self._last_error = f"{status} from {url}: {_error_text(response)}"
                    self._warn_once(
                        f"status-{status}",
                        f"{self._last_error}; {len(lines)} {kind} dropped and "
                        "not retried: check the client's url, model and token (warned once)",
                    )
                    self._settle(kind, dropped=len(lines))
                    return
                problem = f"{status} from {url}: {_error_text(response)}"
                retry_after = _retry_after(response)
            attempt += 1
            delay = max(retry_after or 0.0, self._backoff(attempt))  # Retry-After: not before
            self._last_error = problem
            if self._outage_since is None:
                self._outage_since = time.monotonic()
            if attempt == 2 and not self._outage_logged:  # one failure can be a stale keep-alive connection
                self._outage_logged = True
                log.warning(
                    "monitor client: %s; holding %d rows and retrying (backoff up to %gs)", problem, self._held, self.max_backoff
                )
            self._report_overflow()
            if self._stop.wait(delay):
                self._settle(kind, dropped=len(lines))
                return

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, FIRST_BACKOFF * 2 ** min(attempt - 1, 30))
        return self._random.uniform(ceiling / 2, ceiling)

    def _recovered(self) -> None:
        if self._outage_logged and self._outage_since is not None:
            log.warning("monitor client: %s reachable again after %.1fs", self.url, time.monotonic() - self._outage_since)
        self._outage_since, self._outage_logged = None, False

    def _rejected(self, kind: str, count: int, response: httpx.Response) -> None:
        try:
            payload = response.json()
            accepted = min(max(int(payload.get("accepted", 0)), 0), count)
            errors = payload.get("errors") or [{"reason": payload.get("error", "?")}]
        except Exception:  # noqa: BLE001 - not the daemon's answer: nothing was taken
            accepted, errors = 0, [{"reason": _error_text(response)}]
        self._last_error = f"400 from {self._endpoints[kind]}: {errors[0]}"
        self._warn_once(
            f"rejected-{kind}",
            f"the daemon rejected {count - accepted} of {count} {kind}, e.g. {errors[0]} (warned once; see client.rejected)",
        )
        log.debug("monitor client: rejected %s: %s", kind, errors)
        self._settle(kind, sent=accepted, rejected=count - accepted)

    def _too_large(self, http: httpx.Client, kind: str, lines: list[bytes]) -> None:
        if len(lines) == 1:
            self._last_error = f"413 from {self._endpoints[kind]}: one row of {len(lines[0])} bytes is over the body limit"
            self._warn_once("413-row", f"{self._last_error}; dropped")
            self._settle(kind, dropped=1)
            return
        half = len(lines) // 2
        self._batch_limit = min(self._batch_limit, half)
        self._warn_once(
            "413",
            f"a batch of {len(lines)} {kind} is over the daemon's body limit: sending halves "
            f"(lower batch_size; now at most {self._batch_limit})",
        )
        self._post(http, kind, lines[:half])
        if not self._stop.is_set():  # else the second half is counted as dropped by _drain
            self._post(http, kind, lines[half:])

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("monitor client: %s", message)

    def _report_overflow(self) -> None:
        now = time.monotonic()
        if self._overflow > self._overflow_reported and now - self._overflow_reported_at >= OVERFLOW_REPORT_EVERY:
            count = self._overflow - self._overflow_reported
            self._overflow_reported, self._overflow_reported_at = self._overflow, now
            log.warning(
                "monitor client: %d rows dropped because the buffer of %d rows was full (daemon at %s "
                "unreachable or too slow); see client.dropped",
                count,
                self.buffer_size,
                self.url,
            )


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.reason_phrase)
    except Exception:  # noqa: BLE001
        return response.text[:200] or response.reason_phrase


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for client in list(_clients):
        if not client._closed:
            client._http = client._connect()  # the parent's connection stays the parent's
        client._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the default client of the process --------------------------------------------------------
_default: MonitorClient | None = None
_default_lock = threading.Lock()
_not_configured = dict.fromkeys(KINDS, 0)


def configure(url: str, model: str, **options: Any) -> MonitorClient:
    """Create the process's default client (closing a previous one) for the module's ``log_*`` functions."""
    global _default
    client = MonitorClient(url, model, **options)
    with _default_lock:
        previous, _default = _default, client
    if previous is not None:
        previous.close()
    return client


def default_client() -> MonitorClient | None:
    return _default


def close(timeout: float = 5.0) -> bool:
    """Close the default client (see :meth:`MonitorClient.close`) and forget it."""
    global _default
    with _default_lock:
        client, _default = _default, None
    return True if client is None else client.close(timeout)


def _unconfigured(kind: str) -> bool:
    with _default_lock:
        _not_configured[kind] += 1
        first = sum(_not_configured.values()) == 1
    if first:
        log.warning(
            "monitor client: log_%s called before monitor.client.configure(): rows are dropped "
            "and counted (monitor.client.stats()) (warned once)",
            kind[:-1],
        )
    return False


def log_prediction(
    id: Any,
    features: Mapping[str, Any],
    prediction: Any,
    *,
    ts: Any = None,
    latency_ms: float | None = None,
    model_version: str | None = None,
    probability: float | None = None,
) -> bool:
    """:meth:`MonitorClient.log_prediction` on the default client; dropped and counted when there is none."""
    client = _default
    if client is None:
        return _unconfigured(PREDICTIONS)
    return client.log_prediction(
        id, features, prediction, ts=ts, latency_ms=latency_ms, model_version=model_version, probability=probability
    )


def log_label(id: Any, label: Any) -> bool:
    """:meth:`MonitorClient.log_label` on the default client; dropped and counted when there is none."""
    client = _default
    if client is None:
        return _unconfigured(LABELS)
    return client.log_label(id, label)


def stats() -> dict[str, Any]:
    """The default client's :meth:`MonitorClient.stats`, plus ``not_configured``: rows logged while no
    client was configured (dropped)."""
    client = _default
    out = (
        client.stats()
        if client is not None
        else {
            "sent": Counts(),
            "rejected": Counts(),
            "dropped": Counts(),
            "pending": 0,
            "last_error": "monitor.client.configure() was not called",
        }
    )
    with _default_lock:
        out["not_configured"] = Counts(**_not_configured)
    return out
