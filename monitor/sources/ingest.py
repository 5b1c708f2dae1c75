"""Source kind ``ingest``: rows the model service posts to the daemon's API (or through monitor.client).

The daemon keeps, per model and minute, the exact count, a latency sketch and a uniform sample of at
most ``ingest.sample_per_minute`` rows (see monitor/ingest/sampler.py). A window is the minutes whose
start lies in it. Its frame is a uniform sample of all its rows: minutes with more traffic kept a
smaller share of their rows, so each minute contributes ``rate x rows`` of its sample, with ``rate``
the smallest share kept by any minute of the window. Exact counts and latency quantiles come from the
per-minute summaries (:meth:`IngestSource.summary`), not from the sample.

Read with ``schema=True`` (a ``data_quality`` check), the frame's ``attrs[SCHEMA]`` names every key of
the sampled rows' features that is not a declared feature (the API keeps keys it was not told of).
:meth:`IngestSource.newest` is the newest sampled row of the newest minute with an accepted row: exact
when that minute kept all its rows (at most ``ingest.sample_per_minute``), else at most a minute older
than the newest accepted row.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal, cast

from pydantic import BeforeValidator, Field

from monitor.config.types import Identifier
from monitor.ingest.sketch import LatencySketch
from monitor.sources.base import (
    ID,
    LABEL,
    LATENCY,
    PREDICTION,
    PROBABILITY,
    SCHEMA,
    TS,
    VERSION,
    Schema,
    SourceContext,
    SourceKind,
    SourceSpec,
    Summary,
)

if TYPE_CHECKING:
    from monitor.checks.classes import ClassSet
    from monitor.ingest.rows import FeatureType
    from monitor.sources.reference import Reference

FeatureTypeName = Literal["number", "string", "boolean"]


def _text_is_string(value: object) -> object:
    """``text`` is how the docs and the evidence name ``string``: both are taken."""
    return "string" if value == "text" else value


class IngestSpec(SourceSpec):
    """Rows arrive through ``POST /v1/models/{model}/predictions``; their keys are fixed by the API."""

    kind: Literal["ingest"]
    # The API fixes these names (monitor/ingest/rows.py); they are here so that checks see the roles
    # (a latency check needs one), and a check file may repeat them but not rename them.
    timestamp: Literal["ts"] = "ts"
    id: Literal["id"] = "id"
    prediction: Literal["prediction"] = "prediction"
    probability: Literal["probability"] = "probability"
    latency: Literal["latency_ms"] = "latency_ms"
    label: Literal["label"] = "label"
    model_version: Literal["model_version"] = "model_version"
    feature_types: dict[Identifier, Annotated[FeatureTypeName, BeforeValidator(_text_is_string)]] = Field(
        {}, description="the type each posted feature must have; from the reference's column types when unset"
    )


def _tables():
    """SQLAlchemy and the tables the source reads, imported when it first reads: a check file that names
    this source is validated without them (``monitor validate`` stays quick)."""
    import sqlalchemy as sa

    from monitor.storage.tables import IngestStat, Sample, table

    return sa, (table(IngestStat), table(Sample))


class IngestSource:
    def __init__(self, spec: IngestSpec, context: SourceContext) -> None:
        self.spec = spec
        if context.engine is None:
            raise ValueError("the ingest source reads the daemon's own database: its context needs the engine")
        self.model = context.model
        self.engine = context.engine

    def _minutes(self, table, start: datetime, end: datetime):
        import sqlalchemy as sa

        return sa.and_(table.c.model == self.model, table.c.minute >= start, table.c.minute < end)

    def summary(self, start: datetime, end: datetime) -> Summary:
        sa, (stats, _) = _tables()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(stats.c.accepted, stats.c.latency_sketch).where(self._minutes(stats, start, end))).all()
        sketch = LatencySketch()
        for _, buckets in rows:
            sketch.merge(LatencySketch(buckets))
        return Summary(rows=sum(r[0] for r in rows), latency=sketch)

    def newest(self, before: datetime) -> datetime | None:
        """The newest accepted row before ``before``: the newest minute that accepted one (ingest_stats),
        then the newest sampled row of that minute (samples); the minute's start if none is before."""
        sa, (stats, samples) = _tables()
        with self.engine.connect() as conn:
            minute = conn.execute(
                sa.select(sa.func.max(stats.c.minute)).where(
                    stats.c.model == self.model, stats.c.minute < before, stats.c.accepted > 0
                )
            ).scalar()
            if minute is None:
                return None
            newest = conn.execute(
                sa.select(sa.func.max(samples.c.ts)).where(
                    samples.c.model == self.model, samples.c.minute == minute, samples.c.ts < before
                )
            ).scalar()
        stamp = newest if newest is not None else minute
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)

    def read(self, start: datetime, end: datetime, *, schema: bool = False):
        import numpy as np
        import pandas as pd

        sa, (stats, samples) = _tables()
        with self.engine.connect() as conn:
            counts = {
                (minute, writer): accepted
                for minute, writer, accepted in conn.execute(
                    sa.select(stats.c.minute, stats.c.writer, stats.c.accepted).where(self._minutes(stats, start, end))
                )
            }
            rows = conn.execute(
                sa.select(
                    samples.c.minute,
                    samples.c.writer,
                    samples.c.row_id,
                    samples.c.ts,
                    samples.c.features,
                    samples.c.prediction,
                    samples.c.probability,
                    samples.c.latency_ms,
                    samples.c.model_version,
                    samples.c.label,
                )
                .where(self._minutes(samples, start, end))
                .order_by(samples.c.minute, samples.c.writer, samples.c.slot)  # the same rows read, the same thinned
            ).all()
        # Each minute's reservoir of each writer (replica) holds len(kept) of its counts[...] rows: all are
        # thinned to the smallest such rate, so every accepted row, whichever minute and replica took it,
        # is as likely to be read (reservoirs merged). The shares are rounded together (largest
        # remainder): each reservoir's within one row of its exact share, and many small reservoirs
        # (quiet minutes, a replica that got few requests) neither vanish nor each round up.
        by_reservoir: dict[tuple[datetime, str], list] = {}
        for row in rows:
            by_reservoir.setdefault((row.minute, row.writer), []).append(row)
        rate = min((len(kept) / counts[r] for r, kept in by_reservoir.items() if counts.get(r)), default=1.0)
        rng = np.random.default_rng(zlib.crc32(f"{self.model}{start.isoformat()}".encode()))
        reservoirs = sorted(by_reservoir)
        shares = [rate * counts.get(r, len(by_reservoir[r])) for r in reservoirs]
        takes = [math.floor(share) for share in shares]
        ties = rng.random(len(reservoirs))
        by_remainder = sorted(range(len(reservoirs)), key=lambda i: (takes[i] - shares[i], ties[i]))
        for i in by_remainder[: max(0, round(sum(shares)) - sum(takes))]:
            takes[i] += 1
        chosen = []
        for reservoir, take in zip(reservoirs, takes, strict=True):
            kept = by_reservoir[reservoir]
            take = min(take, len(kept))
            chosen.extend(kept if take >= len(kept) else [kept[i] for i in rng.choice(len(kept), take, replace=False)])
        features = pd.DataFrame.from_records([r.features for r in chosen], columns=self.spec.features)
        frame = pd.DataFrame(
            {
                ID: [r.row_id for r in chosen],
                TS: pd.to_datetime([r.ts for r in chosen], utc=True),
                PREDICTION: [r.prediction for r in chosen],
                PROBABILITY: pd.to_numeric(pd.Series([r.probability for r in chosen], dtype=object), errors="coerce"),
                LATENCY: pd.to_numeric(pd.Series([r.latency_ms for r in chosen], dtype=object), errors="coerce"),
                VERSION: [r.model_version for r in chosen],
                LABEL: [r.label for r in chosen],
            }
        )
        out = pd.concat([frame, features], axis=1)
        if schema:
            keys = frozenset(key for r in rows if isinstance(r.features, dict) for key in r.features)
            absent = tuple(f for f in self.spec.features if f not in keys) if rows else ()
            out.attrs[SCHEMA] = Schema(keys - set(self.spec.features), absent)
        return out


KIND = SourceKind("ingest", IngestSpec, IngestSource, rows_since_daemon=True)


@dataclass(frozen=True)
class IngestModel:
    """What the API checks a model's posted rows against: each feature's type (see feature_types), and
    the classes a label must be one of (None: any label)."""

    features: dict[str, FeatureType]
    classes: ClassSet | None = None


def feature_types(spec: IngestSpec, reference: Reference | None) -> dict[str, FeatureType]:
    """What each posted feature must be: the spec's ``feature_types``, else the reference's column
    types (numbers, true/false, anything else text), else anything."""
    out: dict[str, FeatureType] = {}
    for feature in spec.features:
        if feature in spec.feature_types:
            out[feature] = spec.feature_types[feature]
        elif reference is not None and feature in reference.frame.columns:
            out[feature] = cast("FeatureType", reference.column_type(feature))
        else:
            out[feature] = "any"
    return out
