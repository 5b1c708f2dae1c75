"""``method:`` of a drift check is checked against the model's reference when the file is loaded: a stat
test evidently would refuse for one of the check's features (``ks`` on a text column) fails
``monitor validate`` at the ``method`` key, naming the feature, its type and the methods that fit.
Which test fits which column type is evidently's stat-test registry's word, compared here with it."""

from __future__ import annotations

import numpy as np
import pytest
from evidently.legacy.calculations import stattests
from evidently.legacy.calculations.stattests.registry import StatTest
from evidently.legacy.core import ColumnType
from factories import reference_frame, write_project

from monitor.checks.drift import METHODS
from monitor.cli import main

REGISTRY = {test.name: set(test.allowed_feature_types) for test in vars(stattests).values() if isinstance(test, StatTest)}
NUMERICAL, CATEGORICAL = ColumnType.Numerical, ColumnType.Categorical


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)


def registry_fits(*types: ColumnType) -> list[str]:
    """Evidently's tests allowed for every one of ``types``, in METHODS' order."""
    return [name for name in METHODS if all(t in REGISTRY[name] for t in types)]


def test_methods_are_evidentlys_tests_for_numerical_and_categorical_columns():
    assert set(METHODS) == {name for name, types in REGISTRY.items() if types & {NUMERICAL, CATEGORICAL}}


@pytest.mark.parametrize(
    ("column_type", "evidently_type"), [("number", NUMERICAL), ("boolean", CATEGORICAL), ("string", CATEGORICAL)]
)
def test_what_fits_a_column_type_is_what_evidentlys_registry_allows(column_type, evidently_type):
    from monitor.checks.drift import fitting

    assert fitting(column_type) == registry_fits(evidently_type)


CHECK_FILE = """\
model: fraud-scorer
owner: fraud-team
source:
  kind: files
  path: data/live-*.parquet
  timestamp: created_at
  id: request_id
  features: [amount, country, account_age_days, is_new]
reference:
  path: data/reference.parquet
checks:
  - name: feature-drift
    kind: drift
    every: 15m
    window: 1h
"""  # the check's keys are at column 5; a 16th line is added by each test


def validate(tmp_path, capsys, *lines: str) -> tuple[int, list[str]]:
    """``monitor validate`` of the project whose drift check has ``lines`` added (line 16 onwards)."""
    config = write_project(tmp_path)
    reference = reference_frame()
    is_new = np.arange(len(reference)) % 3 == 0
    reference["is_new"] = [None if i % 10 == 0 else bool(v) for i, v in enumerate(is_new)]  # a boolean with nulls
    reference.to_parquet(tmp_path / "data" / "reference.parquet")
    (tmp_path / "checks" / "fraud-scorer.yaml").write_text(CHECK_FILE + "".join(f"    {line}\n" for line in lines))
    code = main(["validate", "--config", str(config)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_ks_on_a_model_with_a_text_and_a_boolean_feature_fails_validate_at_the_method(tmp_path, capsys):
    code, errors = validate(tmp_path, capsys, "method: ks")
    assert code == 1
    fits = ", ".join(registry_fits(NUMERICAL, CATEGORICAL))
    assert fits and "ks" not in fits
    where = f"{tmp_path / 'checks' / 'fraud-scorer.yaml'}:16:13: checks[0].method: "
    assert errors == [
        f"{where}method 'ks' does not fit 'country' (text): use one of {fits} "
        "or leave method unset (evidently then chooses per feature)",
        f"{where}method 'ks' does not fit 'is_new' (boolean): use one of {fits} "
        "or leave method unset (evidently then chooses per feature)",
    ]


def test_a_categorical_test_on_number_features_names_each_number_feature(tmp_path, capsys):
    code, errors = validate(tmp_path, capsys, "method: chisquare", "features: [amount, country, account_age_days]")
    assert code == 1
    assert [e.split(": checks[0].method: ")[1].split(":")[0] for e in errors] == [
        "method 'chisquare' does not fit 'amount' (number)",
        "method 'chisquare' does not fit 'account_age_days' (number)",
    ]


@pytest.mark.parametrize(
    "lines",
    [
        ["method: psi"],  # fits numbers and categories
        ["method: jensenshannon", "threshold: 0.2"],
        ["method: ks", "features: [amount, account_age_days]"],  # only the number features
        ["method: chisquare", "features: [country, is_new]"],
        [],  # evidently chooses per feature
    ],
    ids=["psi", "jensenshannon", "ks-on-numbers", "chisquare-on-categories", "unset"],
)
def test_a_method_that_fits_every_feature_of_the_check_is_valid(tmp_path, capsys, lines):
    code, errors = validate(tmp_path, capsys, *lines)
    assert (code, errors) == (0, [])
