"""Evidence of an alert: evidently's report of the window that breached, kept and served by the daemon."""
