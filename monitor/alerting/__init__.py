"""What changed: alert conditions, rules over metric values, and the episode state machine.

Everything here is pure: functions of (previous state, new values, now) with no I/O. Who is told
about a change is the business of :mod:`monitor.notifiers`.
"""
