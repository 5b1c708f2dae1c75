"""monitor: watches machine-learning models in production and tells their owners when something breaks.

The package is laid out as the pipeline a row travels through:
``config`` (what to watch) -> ``sources`` (where rows come from) -> ``checks`` (metrics over a window)
-> ``alerting`` (rules and the episode state machine) -> ``notifiers`` (who is told, and how),
with ``storage`` beside them and ``daemon`` on top wiring them together on a schedule. Rows pushed by
a model service come in through ``server`` (the HTTP API) and ``ingest`` (validation, exact counts,
sampling), and are read back by the ``ingest`` source like any other.
"""

__version__ = "0.1.0"
