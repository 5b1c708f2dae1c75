"""What changed: alert conditions, rules over metric values, and the episode state machine.

Everything here is pure: functions of (previous state, new values, now) with no I/O. ``routing``
decides who is told; how they are told, and the delivery itself, is :mod:`monitor.notifiers`.
"""
