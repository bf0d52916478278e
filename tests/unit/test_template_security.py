"""Least privilege and secrets, read from the template as CloudFormation receives it (after the SAM transform).

The table ``EXPECTED`` is the IAM each function gets (docs/security.md says the
same in prose): a change that widens a role, adds a managed policy or a
wildcard action, or puts a secret in an environment variable fails here before
it reaches an account.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.files import ROOT, load_module

FUNCTIONS = {
    "ParserFunction": "ParserRole",
    "FetcherFunction": "FetcherRole",
    "SweeperFunction": "SweeperRole",
    "MigrationsFunction": "MigrationsRole",
    "MaintenanceFunction": "MaintenanceRole",
}
ANYWHERE = "*"
ACCOUNT_REGION_EC2 = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*/*"
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}
TRACES = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
VPC_DESCRIBE = {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}
VPC_MANAGE = {
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}
# Actions that AWS offers no resource-level permission for: the only ones allowed on "*".
NO_RESOURCE_LEVEL = TRACES | VPC_DESCRIBE


def grants(role: str, when_in_vpc: bool, with_domain: bool, with_extra_tables: bool) -> set[tuple[str, str]]:
    """(action, resource) pairs each role should have, resources written as the template refers to them."""
    log_group = {
        "ParserRole": "ParserLogGroup",
        "FetcherRole": "FetcherLogGroup",
        "SweeperRole": "SweeperLogGroup",
        "MigrationsRole": "MigrationsLogGroup",
        "MaintenanceRole": "MaintenanceLogGroup",
    }[role]
    expected = {(a, f"{log_group}.Arn") for a in LOGS} | {(a, ANYWHERE) for a in TRACES}
    secret = ("secretsmanager:GetSecretValue", "Ref DbSecretArn")
    dlq = ("sqs:SendMessage", "DeadLetterQueue.Arn")
    events = ("events:PutEvents", "EventBus.Arn")  # change events, on the stack's own bus only
    if role == "ParserRole":
        expected |= {secret, dlq}  # the secret: it drains the change log
        expected |= {("sqs:SendMessage", "FetchQueue.Arn")}  # SendMessageBatch to the fetch queue
        # a drainer out of time rings its successor: itself, by its stable name (its ARN would be a cycle)
        successor = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-parser"
        expected |= {("lambda:InvokeFunction", successor)}
    elif role == "FetcherRole":
        expected |= {secret, dlq, events, ("dynamodb:PutItem", "ReplicaTable.Arn")}
        consume = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility")
        expected |= {(a, "FetchQueue.Arn") for a in consume}
        # the rest of a large fan-out goes on as the parser hands changes on: to the fetch queue, never to itself
        expected |= {("sqs:SendMessage", "FetchQueue.Arn")}
        if with_domain:
            domain = "${OpenSearchDomainArn}/*"
            # GET: the write set's alias, and the index's tombstone lifetime (index.gc_deletes), raised when too short
            expected |= {(f"es:ESHttp{verb}", domain) for verb in ("Get", "Head", "Put", "Delete", "Post")}
        if with_extra_tables:
            expected |= {("dynamodb:PutItem", "Ref ExtraReplicaTableArns")}
    elif role == "MaintenanceRole":
        sink_io = ("dynamodb:PutItem", "dynamodb:BatchGetItem", "dynamodb:Scan", "dynamodb:DeleteItem")
        expected |= {secret, dlq, events} | {(a, "ReplicaTable.Arn") for a in sink_io}
        expected |= {
            (
                "lambda:InvokeFunction",
                "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-maintenance",
            )
        }
        if with_extra_tables:
            expected |= {(a, "Ref ExtraReplicaTableArns") for a in sink_io}
        if with_domain:
            domain = "${OpenSearchDomainArn}/*"
            expected |= {(f"es:ESHttp{verb}", domain) for verb in ("Get", "Head", "Post", "Put", "Delete")}
    elif role == "SweeperRole":
        expected |= {secret, ("lambda:InvokeFunction", "ParserFunction.Arn")}
        # with no drainer at work it drains itself, as the parser does
        expected |= {("sqs:SendMessage", "FetchQueue.Arn"), dlq}
    else:
        expected |= {secret}
    if when_in_vpc:
        expected |= {(a, ANYWHERE) for a in VPC_DESCRIBE} | {(a, ACCOUNT_REGION_EC2) for a in VPC_MANAGE}
    return expected


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    tool = load_module("tools/sam_transform.py", "fanout_sam_transform")
    from samtranslator.yaml_helper import yaml_parse

    template = tool.with_placeholder_artifacts(yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8")))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))  # SAM's ARNs need one
        return dict(tool.transform(template, {}, tool.OfflinePolicyLoader()))


def resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """Fn::If resolved for the given condition values; AWS::NoValue dropped."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, yes, no = value["Fn::If"]
        return resolve(yes if conditions[name] else no, conditions)
    if isinstance(value, dict):
        return {k: resolve(v, conditions) for k, v in value.items()}
    if isinstance(value, list):
        items = [resolve(v, conditions) for v in value]
        return [i for i in items if i != {"Ref": "AWS::NoValue"}]
    return value


def resource_name(resource: Any) -> str:
    if resource == "*":
        return ANYWHERE
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return ".".join(resource["Fn::GetAtt"])
    if isinstance(resource, dict) and "Ref" in resource:
        return f"Ref {resource['Ref']}"
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        return str(resource["Fn::Sub"])
    return json.dumps(resource)


def statements(
    role: dict[str, Any], conditions: dict[str, bool], resources: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The role's inline policies, then the stack's own managed policies it attaches."""
    for policy in resolve(role["Properties"].get("Policies", []), conditions):
        yield from policy["PolicyDocument"]["Statement"]
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        yield from resolve(resources[arn["Ref"]]["Properties"]["PolicyDocument"], conditions)["Statement"]


def is_the_stacks_own_policy(arn: Any, resources: dict[str, Any]) -> bool:
    """A managed policy this template declares (a Ref to it), not an AWS managed policy's ARN."""
    return (
        isinstance(arn, dict)
        and set(arn) == {"Ref"}
        and resources.get(arn["Ref"], {}).get("Type") == "AWS::IAM::ManagedPolicy"
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


CASES = [
    {
        "InVpc": vpc,
        "HasOpenSearchDomain": domain,
        "HasExtraReplicaTables": extra,
        "RestrictInvokers": True,
        "HasInvokeOperators": ops,
    }
    for vpc in (False, True)
    for domain in (False, True)
    for extra in (False, True)
    for ops in (False, True)
]


@pytest.mark.parametrize("conditions", CASES, ids=lambda c: "-".join(k for k, v in c.items() if v) or "none")
@pytest.mark.parametrize(("function", "role"), sorted(FUNCTIONS.items()))
def test_each_function_has_its_own_role_granting_exactly_what_it_uses(
    transformed: dict[str, Any], function: str, role: str, conditions: dict[str, bool]
) -> None:
    resources = transformed["Resources"]
    # Given the function's role as CloudFormation receives it
    assert resources[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    properties = resources[role]["Properties"]

    # Then it has no AWS managed policy (AWSLambdaBasicExecutionRole allows logs on "*"), only the stack's own,
    # and exactly these grants
    assert all(is_the_stacks_own_policy(arn, resources) for arn in properties.get("ManagedPolicyArns", []))
    assert "PermissionsBoundary" not in properties
    found = set()
    for statement in statements(resources[role], conditions, resources):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                found.add((action, resource_name(resource)))
    assert found == grants(
        role,
        conditions["InVpc"],
        conditions["HasOpenSearchDomain"],
        conditions["HasExtraReplicaTables"],
    )


def test_no_role_or_policy_in_the_stack_has_a_wildcard_action_or_an_unneeded_wildcard_resource(
    transformed: dict[str, Any],
) -> None:
    every = {
        k: True
        for k in (
            "InVpc",
            "HasOpenSearchDomain",
            "HasExtraReplicaTables",
            "RestrictInvokers",
            "HasInvokeOperators",
        )
    } | {"IsProd": True}
    resources = transformed["Resources"]
    roles = {k: r for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == set(FUNCTIONS.values()) | {"AuroraInvokeRole"}  # SAM generated no role of its own
    for name, role in roles.items():
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"] in (
            "lambda.amazonaws.com",
            "rds.amazonaws.com",
        )
        for statement in statements(role, every, resources):
            actions = as_list(statement["Action"])
            assert not any("*" in a for a in actions), (name, actions)
            if ANYWHERE in as_list(statement["Resource"]):
                assert set(actions) <= NO_RESOURCE_LEVEL, (name, actions)


def test_aurora_may_invoke_only_the_parser(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    [statement] = list(statements(resources["AuroraInvokeRole"], {}, resources))

    assert (statement["Action"], statement["Resource"]) == (
        "lambda:InvokeFunction",
        {"Fn::GetAtt": ["ParserFunction", "Arn"]},
    )


@pytest.mark.parametrize(
    ("policy", "function", "allowed"),
    [
        ("ParserInvokers", "ParserFunction", ["AuroraInvokeRole.Arn", "SweeperRole.Arn", "ParserRole.Arn"]),
        # nothing in the stack invokes the fetcher: its queue's event source mapping acts with its own role
        ("FetcherInvokers", "FetcherFunction", ["FetcherRole.Arn"]),
    ],
)
def test_only_the_pipeline_and_named_operators_may_invoke_the_parser_and_the_fetcher(
    transformed: dict[str, Any], policy: str, function: str, allowed: list[str]
) -> None:
    resource = transformed["Resources"][policy]
    assert resource["Type"] == "AWS::Lambda::ResourcePolicy" and resource["Condition"] == "RestrictInvokers"
    assert resource["Properties"]["ResourceArn"] == {"Fn::GetAtt": [function, "Arn"]}

    for operators in (False, True):
        [deny] = resolve(resource["Properties"]["PolicyDocument"], {"HasInvokeOperators": operators})["Statement"]
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "lambda:InvokeFunction")
        principals = deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
        if operators:  # the pipeline's roles, then the operators' ARNs, as one comma-joined list
            joined = principals["Fn::Split"][1]["Fn::Join"][1]
            assert [resource_name(p) for p in joined[:-1]] == allowed
            assert joined[-1] == {"Fn::Join": [",", {"Ref": "InvokeOperatorArns"}]}
        else:
            assert [resource_name(p) for p in principals] == allowed


SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET(?!_ARN$)|TOKEN|PRIVATE|(?<!_)KEY$", re.IGNORECASE)


def test_no_secret_in_an_environment_variable_or_an_output(transformed: dict[str, Any]) -> None:
    text = json.dumps(transformed)
    assert "resolve:secretsmanager" not in text and "resolve:ssm-secure" not in text
    for name, resource in transformed["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert not [v for v in variables if SECRET_NAME.search(v)], name
    for name, output in transformed.get("Outputs", {}).items():
        assert "DbSecretArn" not in json.dumps(output) and not SECRET_NAME.search(name), name


@pytest.mark.parametrize("function", ["ParserFunction", "FetcherFunction", "SweeperFunction", "MigrationsFunction"])
def test_every_function_that_reaches_the_database_uses_tls_and_the_vpc_it_is_given(
    transformed: dict[str, Any], function: str
) -> None:
    properties = transformed["Resources"][function]["Properties"]
    variables = properties["Environment"]["Variables"]

    assert variables["DB_TLS"] == {"Ref": "DbTls"} and variables["DB_CA_BUNDLE"] == {"Ref": "DbCaBundle"}
    assert transformed["Parameters"]["DbTls"]["Default"] == "verify-identity"
    vpc = properties["VpcConfig"]["Fn::If"]
    assert vpc[0] == "InVpc" and vpc[1] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
