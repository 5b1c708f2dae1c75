"""Who is told, and how: one module per receiver kind behind :class:`~monitor.notifiers.base.Notifier`,
found through :mod:`monitor.notifiers.registry`; the receiver-neutral message; and the outbox that
delivers the pending notifications the evaluator writes.
"""

from monitor.notifiers.base import Delivery, Notifier, Posted, Receiver

__all__ = ["Delivery", "Notifier", "Posted", "Receiver"]
