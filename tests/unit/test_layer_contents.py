"""The Lambda layer ships only what the functions run: the operator CLI and its libraries stay out of it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the CLI alone needs: its own package and the libraries it uses for its command line and progress bars.
CLI_ONLY = {"fanout_cli", "click", "typer", "tqdm", "rich"}


def layer_dir() -> Path:
    """The directory `sam build` packages as the layer (the template's ContentUri), not a path written here."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    return ROOT / template["Resources"]["CommonLayer"]["Properties"]["ContentUri"]


def imported_packages(source: str) -> set[str]:
    """Top-level packages a module imports, anywhere in it (imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_layer_holds_no_cli_package() -> None:
    layer = layer_dir()
    assert (layer / "fanout" / "__init__.py").is_file()  # the right directory
    assert not (layer / "fanout" / "cli").exists()
    assert not [path for path in layer.rglob("*") if path.name in CLI_ONLY]


def test_no_layer_module_imports_the_cli_or_a_library_only_the_cli_uses() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path.read_text(encoding="utf-8")) & CLI_ONLY)
        for path in layer_dir().rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_layer_requirements_leave_the_cli_libraries_out() -> None:
    lines = (layer_dir() / "requirements.txt").read_text(encoding="utf-8").splitlines()
    required = {line.split("==")[0].strip().lower() for line in lines if line.strip() and not line.startswith("#")}
    assert required & CLI_ONLY == set()


def test_the_detector_sees_an_import_inside_a_function() -> None:
    source = "import json\n\ndef bar():\n    from tqdm import tqdm\n    import click.testing\n"
    assert imported_packages(source) == {"json", "tqdm", "click"}


def functions_modules() -> list[Path]:
    """Every module the functions run of their own: the layer's package and each function's CodeUri."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    code_dirs = [
        ROOT / resource["Properties"]["CodeUri"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    ]
    assert len(code_dirs) == 5
    return [
        *(layer_dir() / "fanout").rglob("*.py"),
        *(path for directory in code_dirs for path in directory.glob("*.py")),
    ]


def makefile_list(name: str) -> list[str]:
    """The words of a variable of layers/common/Makefile (``NAME = ...``, continued lines joined)."""
    makefile = (layer_dir() / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    [line] = [line for line in makefile.splitlines() if line.startswith(f"{name} =")]
    return line.split("=", 1)[1].split()


def services_built(source: str) -> set[str]:
    """The AWS services a module builds a client or resource of: ``client("name", ...)``, ``resource("name")``
    (fanout.aws.client, boto3's), and ``Service("name")`` nowhere else."""
    services: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("client", "resource") and isinstance(node.args[0].value, str):
                services.add(node.args[0].value)
    return services


def test_the_layer_keeps_the_service_model_of_every_client_the_functions_build_and_no_other() -> None:
    # Given the services whose botocore models the layer's build keeps
    kept = set(makefile_list("BOTOCORE_SERVICES"))
    # When the functions' modules are read for the clients they build
    built = set().union(*(services_built(path.read_text("utf-8")) for path in functions_modules()))
    # Then every client's model is in the layer (a missing one fails only in Lambda: UnknownServiceError), and
    # none is kept that no client needs
    assert built == kept
    assert {"dynamodb", "sqs", "events", "secretsmanager", "lambda"} <= built


def test_the_service_detector_sees_clients_and_resources_however_they_are_called() -> None:
    source = 'aws.client("sqs")\nboto3.resource("dynamodb", config=c)\nclient("lambda")\nlog("events")\n'
    assert services_built(source) == {"sqs", "dynamodb", "lambda"}


def not_shipped() -> set[str]:
    """The top-level packages layers/common/Makefile deletes from the layer after installing it (NOT_SHIPPED)."""
    return {path.split("/")[0] for path in makefile_list("NOT_SHIPPED") if not path.endswith(".dist-info")}


def test_nothing_the_functions_run_imports_a_package_the_layer_leaves_out() -> None:
    import opensearchpy

    # Given the packages the layer's build deletes (opensearch-py's gRPC transport's dependencies)
    left_out = not_shipped()
    assert left_out == {"opensearch", "grpc", "google"}
    # When every module of opensearch-py (the pinned version), of the layer's package and of the functions' code
    # is read
    sources = [*Path(opensearchpy.__file__).parent.rglob("*.py"), *functions_modules()]
    # Then none imports one of them, anywhere in it (a function's import included)
    offenders = {
        str(path): names for path in sources if (names := imported_packages(path.read_text("utf-8")) & left_out)
    }
    assert offenders == {}
