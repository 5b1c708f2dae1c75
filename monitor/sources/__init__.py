"""Where live rows come from. One module per source kind, found through ``SOURCES`` by its YAML ``kind``."""

from monitor.sources import files, ingest, sql
from monitor.sources.base import Source, SourceContext, SourceError, SourceKind, SourceSpec, Summary

SOURCES: dict[str, SourceKind] = {kind.kind: kind for kind in (files.KIND, sql.KIND, ingest.KIND)}


def open_source(spec: SourceSpec, context: SourceContext) -> Source:
    return SOURCES[spec.kind].open(spec, context)


__all__ = ["SOURCES", "Source", "SourceContext", "SourceError", "SourceSpec", "Summary", "open_source"]
