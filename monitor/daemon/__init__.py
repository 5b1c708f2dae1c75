"""The daemon: the evaluator, the schedule that runs it, and the wiring of config, storage and notifiers."""
