"""Live traffic in: rows posted to the API are validated, counted exactly, summarised and sampled.

``rows`` parses and validates a request body; ``sketch`` is the mergeable latency summary;
``sampler`` keeps, per model and minute, the exact count, the latency sketch and a bounded uniform
sample, and writes them to the database. Memory and stored rows stay flat whatever the traffic.
"""
