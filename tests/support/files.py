"""The repository's files as the tests read them: its root, events/, template.yaml and the handlers' app.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def load_module(relative_path: str, name: str) -> Any:
    """Import a file that is not on a package path (a handler's app.py, a local/ script)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def template_resource(logical_id: str) -> dict[str, Any]:
    """A resource's properties as declared in template.yaml (tests build from the template)."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    return dict(template["Resources"][logical_id]["Properties"])


def template_parameter_default(name: str) -> Any:
    """A parameter's default as declared in template.yaml."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    return template["Parameters"][name]["Default"]


def sqlfluff_lint(directory: Path) -> subprocess.CompletedProcess[str]:
    """sqlfluff on ``directory`` with the project's configuration, as `make lint` runs it on db/migrations."""
    return subprocess.run(
        [sys.executable, "-m", "sqlfluff", "lint", "--config", str(ROOT / "pyproject.toml"), str(directory)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
