"""The Aurora setup script (grants and role association) and the sweeper's settings (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.config import ConfigError, SweeperSettings
from fanout_cli.aurora_setup import SetupError, aurora_lambda_setup, role_arn_from_stack

ROLE = "arn:aws:iam::123456789012:role/fanout-prod-AuroraInvokeRole-1A2B3C"


class FakeCloudFormation:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.asked: list[str] = []

    def describe_stacks(self, *, StackName: str) -> dict[str, Any]:
        self.asked.append(StackName)
        return {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]}


def test_the_script_grants_the_role_to_the_definer_and_associates_the_cluster_role() -> None:
    # When
    script = aurora_lambda_setup("fanout", "10.0.%", "orders-cluster", ROLE, "eu-west-1")

    # Then the SQL grants and activates the role for the triggers' definer
    assert "GRANT AWS_LAMBDA_ACCESS TO 'fanout'@'10.0.%';" in script
    assert "SET DEFAULT ROLE AWS_LAMBDA_ACCESS TO 'fanout'@'10.0.%';" in script
    # And the AWS CLI associates the stack's role with the cluster for the Lambda feature
    assert (
        "aws rds add-role-to-db-cluster --region eu-west-1 --db-cluster-identifier orders-cluster \\\n"
        f"    --feature-name Lambda --role-arn {ROLE}"
    ) in script


@pytest.mark.parametrize(
    ("user", "host", "cluster", "role", "named"),
    [
        ("fan'out", "%", "c", ROLE, "database user"),
        ("fanout", "% OR 1", "c", ROLE, "database user host"),
        ("fanout", "%", "c; rm -rf /", ROLE, "cluster identifier"),
        ("fanout", "%", "c", "arn:aws:iam::123:role/x", "role ARN"),
    ],
)
def test_arguments_that_could_break_out_of_the_script_are_refused(
    user: str, host: str, cluster: str, role: str, named: str
) -> None:
    with pytest.raises(SetupError, match=f"^{named} "):
        aurora_lambda_setup(user, host, cluster, role)


def test_the_role_arn_is_read_from_the_stack_outputs() -> None:
    cloudformation = FakeCloudFormation({"AuroraInvokeRoleArn": ROLE, "ParserFunctionArn": "arn:..."})

    assert role_arn_from_stack(cloudformation, "fanout-prod") == ROLE
    assert cloudformation.asked == ["fanout-prod"]


def test_a_stack_without_the_output_is_named() -> None:
    with pytest.raises(SetupError, match="stack other has no AuroraInvokeRoleArn output"):
        role_arn_from_stack(FakeCloudFormation({}), "other")


def test_sweeper_settings_need_the_parser_to_ring() -> None:
    with pytest.raises(ConfigError, match="PARSER_FUNCTION_NAME"):
        SweeperSettings.from_env({})
    assert SweeperSettings.from_env({"PARSER_FUNCTION_NAME": "fanout-parser"}).parser_function_name == "fanout-parser"
