"""Where live rows come from. One module per source kind, found through ``SOURCES`` by its YAML ``kind``."""

from monitor.sources import files, sql
from monitor.sources.base import Source, SourceError, SourceKind, SourceSpec

SOURCES: dict[str, SourceKind] = {kind.kind: kind for kind in (files.KIND, sql.KIND)}


def open_source(spec: SourceSpec) -> Source:
    return SOURCES[spec.kind].open(spec)


__all__ = ["SOURCES", "Source", "SourceError", "SourceSpec", "open_source"]
