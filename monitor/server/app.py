"""The ASGI application (Starlette), served by uvicorn inside ``monitor run``.

- ``POST /v1/models/{model}/predictions`` and ``.../labels``: a JSON object, an array, or JSON lines.
  A prediction may carry ``probability`` (the score of the positive class, 0 to 1, or null); a label
  must be one of the model's classes when it has them (its performance checks' ``classes``, or the
  reference's ``label`` column), and is kept as that class.
  202 with the counts; 400 naming every bad row (the good rows of the request are still taken);
  401 without the configured bearer token; 404 for a model without an ingest source; 413 past the
  body limit; 429 with Retry-After when too many requests are in flight or too much is waiting to
  be written or held in memory; 503 with Retry-After when the database cannot be read (labels: or
  written), or refuses writes while too many accepted rows wait unwritten. A row past
  ``ingest.max_row_bytes`` or with a text longer than ``ingest.max_text_chars`` is rejected by row.
- ``GET /healthz``: liveness and the last successful evaluation; 503 and ``"status": "degraded"``, with
  each problem's reason, while evaluations cannot be recorded, deliveries are stuck, ingested rows
  cannot be written or no check file is loaded.
- ``GET /metrics``: Prometheus text format.
- ``GET /``: the status page (the daemon's problems first; says so when the database cannot be read).

A request whose ``Host`` or ``Origin`` is not this daemon's is refused before it is routed (421, 403:
see :mod:`monitor.server.hosts`), and so is a POST whose body is declared as anything but JSON or JSON
lines (415: what an HTML form or a "simple" cross-site fetch sends). Listening beyond loopback, the
read endpoints need the token too unless listed in ``server.public``.

Slow and many clients (docs/ingest.md): an ingest body is received whole, within
``server.body_timeout`` (else 408 and the connection closed), before a permit is taken, so a permit
stands for parsing and storing only; one client address has at most
``ingest.max_requests_per_client`` requests in flight (else 429). The head's deadline and the cap on
connections are the protocol's (:mod:`monitor.server.protocol`).
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from monitor.evidence.store import signed
from monitor.health import Health, LogThrottle
from monitor.ingest.rows import BodyError, Parsed, RowLimits, validate_labels, validate_predictions
from monitor.ingest.sampler import Overloaded, Sampler, StorageUnavailable, WritesFailing
from monitor.server.hosts import HostGuard, HostPolicy
from monitor.sources.ingest import IngestModel
from monitor.telemetry import CONTENT_TYPE, Telemetry

log = logging.getLogger("monitor.server")


class BodyTooLarge(Exception):
    pass


class TooMuchReceiving(Exception):
    """The bodies being received at once would pass ``max_receiving_bytes``."""


@dataclass
class ServerState:
    models: dict[str, IngestModel]  # feature types and label classes, for models with an ingest source
    sampler: Sampler
    telemetry: Telemetry
    token: str
    max_body_bytes: int
    max_concurrent: int
    body_timeout: float  # seconds to receive a whole body in (server.body_timeout)
    max_per_client: int  # ingest requests in flight from one client address (ingest.max_requests_per_client)
    status_page: Callable[[dict[str, str]], str]  # the page, given the daemon's current problems
    health: Health = field(default_factory=Health)
    # Bytes of bodies being received at once, over every connection (ingest.max_receiving_bytes): with
    # bodies received before a permit is taken, this is what bounds their memory, not the permits. Below
    # max_body_bytes it is taken as max_body_bytes.
    max_receiving_bytes: int = 64 * 1024 * 1024
    listen_host: str = "127.0.0.1"  # the host of server.listen: which Host headers are this daemon
    allowed_hosts: list[str] = field(default_factory=list)  # server.allowed_hosts: more names ("*": any)
    # The read endpoints ("status", "metrics", "healthz") that need the token too: beyond loopback, all
    # but those listed in server.public; on loopback, none.
    guarded_reads: frozenset[str] = frozenset()
    row_limits: RowLimits = field(default_factory=RowLimits)  # ingest.max_row_bytes and ingest.max_text_chars
    evidence: Callable[[int], bytes | None] | None = None  # a run's evidence report, gzipped (monitor/evidence/)


# What a POST body may be declared as. A request without a Content-Type is taken (httpx and scripts send
# none); what a browser can send cross-site without asking first (text/plain, form encodings) is not.
ACCEPTED_TYPES = ("application/json", "application/x-ndjson", "application/jsonl")


def _json(status: int, payload: dict, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def create_app(state: ServerState) -> Starlette:
    permits = asyncio.Semaphore(state.max_concurrent)  # bodies being parsed and stored
    in_flight: dict[str, int] = {}  # ingest requests being received or processed, by client address
    throttle = LogThrottle(log)
    expected = f"Bearer {state.token}".encode() if state.token else None

    def authorised(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    receiving = [0]  # bytes reserved by the bodies being received now (one event loop: no lock needed)
    budget = max(state.max_receiving_bytes, state.max_body_bytes)  # so that a body alone is always let in

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        length = int(declared) if declared and declared.isdigit() else None
        if length is not None and length > state.max_body_bytes:
            raise BodyTooLarge()
        # A body of a declared length reserves it whole before a byte is read, so that one let in can
        # always be received whole; one without (chunked) reserves what arrives. The budget is at least
        # max_body_bytes, so a body is refused only while others are being received: 429, sent again.
        reserved = 0

        def reserve(size: int) -> None:
            nonlocal reserved
            if size > reserved:
                if receiving[0] + size - reserved > budget:
                    raise TooMuchReceiving()
                receiving[0] += size - reserved
                reserved = size

        chunks, size = [], 0
        try:
            reserve(length or 0)
            async for chunk in request.stream():
                size += len(chunk)
                if size > state.max_body_bytes:
                    raise BodyTooLarge()
                reserve(size)
                chunks.append(chunk)
        finally:
            receiving[0] -= reserved
        return b"".join(chunks)

    async def ingest(request: Request, work: Callable[[str, bytes, float], tuple[Parsed, dict]]) -> Response:
        if not authorised(request):
            return _json(401, {"error": "missing or wrong bearer token"}, {"WWW-Authenticate": "Bearer"})
        declared = request.headers.get("content-type")
        if declared is not None and declared.partition(";")[0].strip().lower() not in ACCEPTED_TYPES:
            return _json(
                415,
                {"error": f"Content-Type {declared!r} is not accepted: send {', '.join(ACCEPTED_TYPES)}"},
                {"Accept-Post": ", ".join(ACCEPTED_TYPES)},
            )
        model = request.path_params["model"]
        if model not in state.models:
            known = ", ".join(sorted(state.models)) or "none"
            return _json(404, {"error": f"unknown model {model!r}: models with an ingest source are {known}"})
        client = request.client.host if request.client else "unknown"
        if in_flight.get(client, 0) >= state.max_per_client:
            return _json(
                429,
                {"error": f"more than {state.max_per_client} requests in flight from {client}; retry shortly"},
                {"Retry-After": "1"},
            )
        in_flight[client] = in_flight.get(client, 0) + 1
        try:
            return await receive_and_take(request, client, model, work)
        finally:
            in_flight[client] -= 1
            if not in_flight[client]:  # forgotten when idle, so many addresses do not pile up
                del in_flight[client]

    async def receive_and_take(
        request: Request, client: str, model: str, work: Callable[[str, bytes, float], tuple[Parsed, dict]]
    ) -> Response:
        # The body is received before a permit is taken: a permit stands for the parsing and storing only,
        # which take milliseconds, so slow senders cannot hold them all. Receiving is bounded instead by
        # the body timeout, the per-client limit and the server's connection cap (docs/ingest.md).
        try:
            async with asyncio.timeout(state.body_timeout):
                body = await read_body(request)
        except BodyTooLarge:
            return _json(413, {"error": f"body larger than {state.max_body_bytes} bytes: send smaller batches"})
        except TooMuchReceiving:
            throttle.log(
                "too-much-receiving",
                logging.WARNING,
                f"answered 429 to {client}: more than {budget:,} bytes of bodies being received"
                " at once (ingest.max_receiving_bytes)",
            )
            # The rest of the body may still be on its way: closing is the only way not to read it.
            return _json(
                429,
                {"error": "too many bodies being received at once; retry shortly"},
                {"Retry-After": "1", "Connection": "close"},
            )
        except TimeoutError:
            throttle.log(
                "slow-body",
                logging.WARNING,
                f"answered 408 to {client}: its body was not received whole within {state.body_timeout:g}s (server.body_timeout)",
            )
            # The rest of the body may still be on its way: closing is the only way not to read it.
            return _json(408, {"error": f"body not received within {state.body_timeout:g}s"}, {"Connection": "close"})
        except ClientDisconnect as exc:
            throttle.log(
                "client-disconnect",
                logging.INFO,
                f"{client} hung up before its body was received whole; nothing of that request was taken",
                exc_info=exc,
            )
            return Response(status_code=400)  # nobody reads it: uvicorn drops what is sent after a hang-up
        if permits.locked():
            return _json(429, {"error": "too many requests in flight; retry shortly"}, {"Retry-After": "1"})
        async with permits:
            try:
                parsed, extra = await run_in_threadpool(work, model, body, time.time())
            except BodyError as exc:
                return _json(400, {"error": str(exc), "accepted": 0, "rejected": 0})
            except Overloaded as exc:
                throttle.log("overloaded", logging.WARNING, f"answered 429 to {client}: {exc}")
                return _json(429, {"error": str(exc)}, {"Retry-After": "2"})
            except WritesFailing as exc:  # accepted rows wait unwritten: taking more would risk more of them
                return _json(503, {"error": str(exc)}, {"Retry-After": "5"})  # Health ("ingest") says it in the log
            except StorageUnavailable:
                return _json(503, {"error": "the database is unavailable; retry shortly"}, {"Retry-After": "5"})
        payload = {"accepted": len(parsed.rows), "rejected": len(parsed.rejected), **extra}
        if parsed.rejected:
            payload["errors"] = [r.to_dict() for r in parsed.rejected]
            return _json(400, payload)
        return _json(202, payload)

    def known(model: str) -> IngestModel:
        """The model's ingest spec, read once: a reload may have removed it while its body was received."""
        found = state.models.get(model)
        if found is None:
            raise BodyError(f"model {model!r} no longer has an ingest source (its check file changed): nothing was taken")
        return found

    def take_predictions(model: str, body: bytes, received: float) -> tuple[Parsed, dict]:
        parsed = validate_predictions(body, known(model).features, received, state.row_limits)
        state.sampler.add(model, parsed.rows, len(parsed.rejected), received)
        state.telemetry.rows.labels(model, "accepted").inc(len(parsed.rows))
        state.telemetry.rows.labels(model, "rejected").inc(len(parsed.rejected))
        return parsed, {}

    def take_labels(model: str, body: bytes, received: float) -> tuple[Parsed, dict]:
        parsed = validate_labels(body, known(model).classes, state.row_limits)
        matched = state.sampler.add_labels(model, parsed.rows, received) if parsed.rows else 0
        state.telemetry.labels.labels(model, "matched").inc(matched)
        state.telemetry.labels.labels(model, "unmatched").inc(len(parsed.rows) - matched)
        state.telemetry.labels.labels(model, "rejected").inc(len(parsed.rejected))
        return parsed, {"matched": matched}

    async def predictions(request: Request) -> Response:
        return await ingest(request, take_predictions)

    async def labels(request: Request) -> Response:
        return await ingest(request, take_labels)

    def refused(name: str, request: Request) -> Response | None:
        if name in state.guarded_reads and not authorised(request):
            return _json(401, {"error": f"missing or wrong bearer token (or list {name} in server.public)"},
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip
        return None

    async def healthz(request: Request) -> Response:
        if (answer := refused("healthz", request)) is not None:
            return answer
        last = state.telemetry.last_success
        problems = state.health.problems()
        # 503 while anything blinds the daemon, so a load balancer or an orchestrator sees it too.
        return _json(
            503 if problems else 200,
            {
                "status": "degraded" if problems else "ok",
                "problems": problems,
                "uptime_s": round(time.time() - state.telemetry.started, 1),
                "last_success": None if last is None else round(last, 3),
                "last_success_age_s": None if last is None else round(time.time() - last, 1),
            },
        )

    async def metrics(request: Request) -> Response:
        if (answer := refused("metrics", request)) is not None:
            return answer
        state.telemetry.sample_rows.set(state.sampler.sampled_rows())
        state.telemetry.sample_bytes.set(state.sampler.held_bytes())
        state.telemetry.unwritten_rows.set(state.sampler.unwritten_rows())
        return Response(state.telemetry.render(), media_type=CONTENT_TYPE)

    async def index(request: Request) -> Response:
        if (answer := refused("status", request)) is not None:
            return answer
        return HTMLResponse(await run_in_threadpool(state.status_page, state.health.problems()))

    async def evidence(request: Request) -> Response:
        """A run's evidence report: with the token, or the link's signature of this run (a browser opening
        a link from Slack sends no token). Its scripts run sandboxed: the page cannot reach the daemon's API."""
        text = request.path_params["run_id"]
        if not (text.isascii() and text.isdigit() and len(text) <= 18):  # a run id is a positive 64-bit integer
            return _json(404, {"error": "no such evidence report: /evidence/RUN_ID takes a run's number"})
        run_id = int(text)
        if expected is not None and not (authorised(request) or signed(state.token, run_id, request.query_params.get("sig"))):
            return _json(401, {"error": "missing or wrong bearer token, or a link not signed for this run"},
                         {"WWW-Authenticate": "Bearer"})  # fmt: skip
        try:
            body = await run_in_threadpool(state.evidence, run_id) if state.evidence is not None else None
        except OSError as exc:  # a file there that cannot be read: say so, and where to look
            log.warning("evidence of run #%d cannot be read: %s", run_id, exc)
            return _json(500, {"error": f"the evidence report of run #{run_id} cannot be read ({exc.strerror or exc}): "
                                        "see the daemon's evidence_dir"})  # fmt: skip
        if body is None:
            return _json(404, {"error": f"no evidence report of run #{run_id}: it is being built (open the link again in a "
                                        "few seconds), its run fired no alert of a kind with a report, or it is older than "
                                        "retention.evidence"})  # fmt: skip
        headers = {"Content-Security-Policy": "sandbox allow-scripts", "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "private, max-age=300", "Vary": "Accept-Encoding"}  # fmt: skip
        if "gzip" in request.headers.get("accept-encoding", "").lower():
            headers["Content-Encoding"] = "gzip"  # as it is kept: every browser takes it
        else:
            body = await run_in_threadpool(gzip.decompress, body)
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    return Starlette(
        routes=[
            Route("/v1/models/{model}/predictions", predictions, methods=["POST"]),
            Route("/v1/models/{model}/labels", labels, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/", index, methods=["GET"]),
            Route("/evidence/{run_id}", evidence, methods=["GET"]),
        ],
        middleware=[Middleware(HostGuard, policy=HostPolicy(state.listen_host, state.allowed_hosts))],
    )
