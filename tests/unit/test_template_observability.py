"""The dashboard and alarms in template.yaml watch metrics the code really emits."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from fanout.observability import NAMESPACE, ChangeMetric, StackMetric
from tests.support.files import ROOT


def template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8")))


def dashboard_body() -> list[Any]:
    """The dashboard's ``Fn::Sub`` [body, variables], from the file the template includes with AWS::Include, read
    as that transform reads it: plain YAML (no short-form tags such as ``!Ref``)."""
    include = template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Transform"]
    assert include["Name"] == "AWS::Include"
    snippet = yaml.safe_load((ROOT / include["Parameters"]["Location"]).read_text(encoding="utf-8"))
    return list(snippet["Fn::Sub"])


def alarms() -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template()["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def test_every_alarm_the_issue_asks_for_is_there_and_notifies_the_topic_only_when_one_is_given() -> None:
    found = alarms()
    watched = {(p["Namespace"], p["MetricName"]) for p in found.values()}

    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in watched  # dead letters
    assert (NAMESPACE, ChangeMetric.LAG.value) in watched
    assert (NAMESPACE, ChangeMetric.FAILED.value) in watched  # error rate
    assert ("AWS/Lambda", "Throttles") in watched
    assert (NAMESPACE, StackMetric.SCHEMA_DRIFT.value) in watched  # fanout check, on the maintenance schedule
    for name, properties in found.items():
        actions = properties["AlarmActions"]["Fn::If"]
        assert actions[0] == "HasAlarmTopic" and actions[1] == [{"Ref": "AlarmTopicArn"}], name
        assert actions[2] == {"Ref": "AWS::NoValue"}, name
        assert "runbook" in properties["AlarmDescription"], name


def test_the_stack_level_alarms_use_the_service_dimension_the_functions_set() -> None:
    env = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    for properties in alarms().values():
        if properties["Namespace"] == NAMESPACE:
            assert properties["Dimensions"] == [{"Name": "service", "Value": {"Ref": "AWS::StackName"}}]


def test_the_dashboard_is_json_and_shows_lag_throughput_errors_dead_letters_throttles_and_event_age() -> None:
    body, variables = dashboard_body()
    rendered = re.sub(r"\$\{[^}]+\}", "X", body.replace("${LagThreshold}", "60000"))

    dashboard = json.loads(rendered)

    text = json.dumps(dashboard)
    for metric in [m.value for m in ChangeMetric] + [
        "ApproximateNumberOfMessagesVisible",
        "Throttles",
        "AsyncEventAge",
    ]:
        assert f'"{metric}"' in text or metric in text, metric
    lag = next(w for w in dashboard["widgets"] if w["properties"].get("title", "").startswith("Replication lag"))
    assert {m[-1]["stat"] for m in lag["properties"]["metrics"]} == {"p50", "p99"}
    assert set(variables) == {"LagThreshold"}
