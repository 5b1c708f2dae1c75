"""What is measured: one module per check kind, found through ``CHECKS`` by its YAML ``kind``.

Adding a kind is one new module defining ``KIND`` (see :mod:`monitor.checks.base`) and one line here.
"""

from monitor.checks import drift, latency, performance, volume
from monitor.checks.base import CheckKind, CheckSpec, Evaluation, MetricValue, RuleSpec

CHECKS: dict[str, CheckKind] = {kind.kind: kind for kind in (drift.KIND, latency.KIND, performance.KIND, volume.KIND)}

__all__ = ["CHECKS", "CheckKind", "CheckSpec", "Evaluation", "MetricValue", "RuleSpec"]
