"""Where live rows come from. One module per source kind, found through ``SOURCES`` by its YAML ``kind``.

Adding a kind is one new module defining ``KIND`` and its entry here: in ``SOURCES`` and in
``SourceSpecs``, the union the config is parsed into.
"""

from typing import Annotated

from pydantic import Field

from monitor.sources import files, ingest, sql
from monitor.sources.base import Source, SourceContext, SourceError, SourceKind, SourceSpec, Summary

SourceSpecs = Annotated[files.FilesSpec | sql.SqlSpec | ingest.IngestSpec, Field(discriminator="kind")]
SOURCES: dict[str, SourceKind] = {kind.kind: kind for kind in (files.KIND, sql.KIND, ingest.KIND)}


def open_source(spec: SourceSpec, context: SourceContext) -> Source:
    return SOURCES[spec.kind].open(spec, context)


__all__ = ["SOURCES", "SourceSpecs", "Source", "SourceContext", "SourceError", "SourceSpec", "Summary", "open_source"]
