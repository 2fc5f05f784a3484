"""Risk assessment from the shipped rules file and the rules file's validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from approvals.policy import current_policy, load_rules
from approvals.risk import action_hash, assess

ROOT = Path(__file__).resolve().parent.parent


def level_of(**action) -> str:
    return assess(action, current_policy().rules).risk_level


@pytest.mark.parametrize(
    ("action", "level"),
    [
        ({"action_type": "file", "operation": "read", "environment": "dev"}, "low"),
        ({"action_type": "file", "operation": "write"}, "medium"),
        ({"action_type": "file", "operation": "delete", "environment": "dev"}, "high"),
        ({"action_type": "deployment", "operation": "deploy", "environment": "dev"}, "low"),
        ({"action_type": "deployment", "operation": "deploy", "environment": "staging"}, "medium"),
        ({"action_type": "deployment", "operation": "deploy", "environment": "production"}, "high"),
        ({"action_type": "database", "operation": "select"}, "low"),
        ({"action_type": "database", "operation": "insert"}, "medium"),
        ({"action_type": "database", "operation": "update"}, "high"),
        ({"action_type": "database", "operation": "truncate"}, "critical"),
        ({"action_type": "secrets", "operation": "read"}, "critical"),
        ({"action_type": "infrastructure", "operation": "create"}, "medium"),
        ({"action_type": "infrastructure", "operation": "modify"}, "high"),
        ({"action_type": "infrastructure", "operation": "delete"}, "critical"),
    ],
)
def test_base_mappings_of_the_shipped_rules(action, level):
    assert level_of(**action) == level


def test_production_delete_is_critical():
    result = assess({"action_type": "file", "operation": "delete", "environment": "production"}, current_policy().rules)
    assert result.risk_level == "critical"
    assert "production_delete" in [factor["name"] for factor in result.risk_factors]


def test_dev_read_is_low_with_the_lowest_score():
    result = assess({"action_type": "file", "operation": "read", "environment": "dev"}, current_policy().rules)
    assert (result.risk_level, result.risk_score) == ("low", 10)
    assert result.risk_factors == [{"name": "file_operation", "why": "operation 'read' is low", "level": "low"}]


def test_security_findings_elevate_a_low_action_to_high():
    assert level_of(action_type="file", operation="read", details={"security_findings": ["CVE-2024-1"]}) == "high"
    assert level_of(action_type="file", operation="read", details={"security_findings": []}) == "low"


@pytest.mark.parametrize("details", [{"contains_pii": True}, {"data_classification": "PII"}])
def test_pii_export_is_critical(details):
    assert level_of(action_type="data", operation="export", details=details) == "critical"


def test_export_without_pii_is_not_critical():
    assert level_of(action_type="data", operation="export", details={"contains_pii": False}) == "medium"


def test_cost_above_threshold_is_at_least_high():
    assert level_of(action_type="deployment", environment="dev", details={"estimated_cost": 1000.01}) == "high"
    assert level_of(action_type="deployment", environment="dev", details={"estimated_cost": 999}) == "low"


def test_merge_to_main_is_at_least_medium():
    assert level_of(action_type="git", operation="merge", details={"target_branch": "main"}) == "medium"


@pytest.mark.parametrize(
    "action",
    [{"action_type": "teleport"}, {"action_type": ""}, {"action_type": "file", "operation": "chmod"}],
)
def test_unknown_actions_are_medium_never_low(action):
    assert level_of(**action) == "medium"


def test_more_matching_factors_raise_the_score_within_the_level():
    one = assess({"action_type": "database", "operation": "drop"}, current_policy().rules)
    two = assess({"action_type": "database", "operation": "drop", "environment": "production"}, current_policy().rules)
    assert one.risk_level == two.risk_level == "critical"
    assert 90 <= one.risk_score < two.risk_score <= 100


def test_timeouts_grow_with_risk():
    levels = current_policy().rules.levels
    timeouts = [levels[name].timeout_minutes for name in ("low", "medium", "high", "critical")]
    assert timeouts == [15, 30, 60, 120]


def test_action_hash_ignores_case_and_key_order_but_not_details():
    first = {
        "action_type": "Deployment",
        "operation": "deploy",
        "environment": "production",
        "details": {"a": 1, "b": 2},
    }
    same = {
        "environment": "production ",
        "operation": "DEPLOY",
        "action_type": "deployment",
        "details": {"b": 2, "a": 1},
    }
    other = {**first, "details": {"a": 1, "b": 3}}
    assert action_hash(first) == action_hash(same)
    assert action_hash(first) != action_hash(other)


def write_rules(tmp_path: Path, change) -> Path:
    document = yaml.safe_load(Path(settings.HOL_RISK_RULES_FILE).read_text())
    change(document)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_editing_the_rules_file_changes_the_assessment_without_code(tmp_path, settings):
    settings.HOL_RISK_RULES_FILE = write_rules(tmp_path, lambda d: d["base"][0]["levels"].update(read="medium"))
    assert level_of(action_type="file", operation="read") == "medium"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["levels"].pop("high"), "`levels` must be a mapping with exactly the levels"),
        (lambda d: d.update(unknown_level="low"), "never low"),
        (lambda d: d["base"][0]["levels"].update(read="severe"), "unknown risk levels ['severe']"),
        (lambda d: d["levels"]["critical"].update(require_role="janitor"), "requires unknown role 'janitor'"),
        (lambda d: d["triggers"][0].update(when={"details.cost": {"above": 3}}), "must be one of"),
    ],
)
def test_a_malformed_rules_file_is_refused_naming_file_and_problem(tmp_path, settings, change, problem):
    path = write_rules(tmp_path, change)
    settings.HOL_RISK_RULES_FILE = path
    with pytest.raises(ImproperlyConfigured) as error:
        apps.get_app_config("approvals").ready()
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_a_rules_file_that_is_not_yaml_is_refused(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("levels: [unclosed\n")
    with pytest.raises(ImproperlyConfigured, match=r"broken\.yaml"):
        load_rules(path)


def test_hol_does_not_start_with_a_malformed_rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("levels: {low: {score: 10}}\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "HOL_RISK_RULES_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert str(path) in result.stderr
    assert "`levels` must be a mapping" in result.stderr
