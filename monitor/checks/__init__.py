"""What is measured: one module per check kind, found through ``CHECKS`` by its YAML ``kind``.

Adding a kind is one new module defining ``KIND`` (see :mod:`monitor.checks.base`) and its entry
here: its ``KIND`` in ``CHECKS`` and its spec in ``CheckSpecs``, the union the config is parsed
into (written out, so that the type checker reads every kind).
"""

from typing import Annotated

from pydantic import Field

from monitor.alerting.rules import MetricValue, RuleSpec
from monitor.checks import (
    data_quality,
    drift,
    freshness,
    latency,
    performance,
    prediction_drift,
    probe,
    version_compare,
    volume,
)
from monitor.checks.base import CheckKind, CheckSpec, Evaluation

CheckSpecs = Annotated[
    drift.DriftSpec
    | latency.LatencySpec
    | performance.PerformanceSpec
    | volume.VolumeSpec
    | data_quality.DataQualitySpec
    | freshness.FreshnessSpec
    | prediction_drift.PredictionDriftSpec
    | probe.ProbeSpec
    | version_compare.VersionCompareSpec,
    Field(discriminator="kind"),
]
CHECKS: dict[str, CheckKind] = {
    kind.kind: kind
    for kind in (
        drift.KIND,
        latency.KIND,
        performance.KIND,
        volume.KIND,
        data_quality.KIND,
        freshness.KIND,
        prediction_drift.KIND,
        probe.KIND,
        version_compare.KIND,
    )
}


def has_report(check: CheckSpec, rule: str) -> bool:
    """Whether an alert of ``rule`` (its text) of ``check`` gets an evidence report: its kind has one
    (``CheckKind.evidence``) and the rule is on the window's values, not the check's failing rule (a
    failing check's window had nothing to show)."""
    return CHECKS[check.kind].evidence is not None and not check.is_failing_rule(rule)


__all__ = ["CHECKS", "CheckSpecs", "CheckKind", "CheckSpec", "Evaluation", "MetricValue", "RuleSpec"]
