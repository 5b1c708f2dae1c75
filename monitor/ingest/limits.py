"""The ingest API's default limits: the defaults of the ``ingest:`` keys (``monitor.config.models``)
and of the classes that enforce them, in a module of their own so that loading the config imports
neither the database layer nor numpy (``monitor validate`` stays quick)."""

# A row of 8 features is about 180 bytes of JSON, one of 300 numbers some 6 KiB.
MAX_ROW_BYTES = 64 * 1024  # ingest.max_row_bytes (monitor/ingest/rows.py)
MAX_TEXT_CHARS = 1000  # ingest.max_text_chars
MAX_HELD_BYTES = 256 * 1024 * 1024  # ingest.max_memory_bytes (monitor/ingest/sampler.py)
MAX_UNWRITTEN_ROWS = 10_000  # ingest.max_unwritten_rows
