"""The bundled mapping, checked against its schema when the layer is built: a cold start loads it without
jsonschema, and any mapping that is not the one stamped is checked in full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.model.mapping import DEFAULT_MAPPING_FILE, MappingError, load_mappings
from fanout.model.mapping_schema import stamp_path
from tests.support.files import ROOT

LAYER = ROOT / "layers" / "common"


def stamp(path: Path) -> subprocess.CompletedProcess[str]:
    """The layer build's step (layers/common/Makefile)."""
    env = {**os.environ, "PYTHONPATH": str(LAYER)}
    command = [sys.executable, "-m", "fanout.model.mapping_stamp", str(path)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def loaded_in_a_fresh_interpreter(path: Path) -> tuple[list[str], bool]:
    """The tables a cold start loads from ``path``, and whether it imported jsonschema to do so."""
    code = (
        "import json, sys; from fanout.model.mapping import load_mappings; "
        f"tables = sorted(load_mappings({str(path)!r}).tables); "
        "print(json.dumps([tables, 'jsonschema' in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": str(LAYER)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    tables, imported = json.loads(done.stdout)
    return tables, imported


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "tables.json"
    path.write_bytes(DEFAULT_MAPPING_FILE.read_bytes())
    return path


def test_a_stamped_mapping_loads_the_same_tables_without_jsonschema(mapping_file: Path) -> None:
    # Given the bundled mapping unstamped: a cold start checks it with jsonschema
    tables, imported = loaded_in_a_fresh_interpreter(mapping_file)
    assert imported
    # When the layer's build stamps it
    assert stamp(mapping_file).returncode == 0
    # Then a cold start loads the same tables without importing jsonschema
    assert loaded_in_a_fresh_interpreter(mapping_file) == (tables, False)
    assert sorted(load_mappings(mapping_file).tables) == tables


def test_a_mapping_changed_after_its_stamp_is_checked_in_full(mapping_file: Path) -> None:
    # Given a stamped mapping, then edited with a setting the schema refuses
    assert stamp(mapping_file).returncode == 0
    document = json.loads(mapping_file.read_text(encoding="utf-8"))
    document["tables"]["tenant_settings"]["dynamodb"]["binary"] = "hex"
    mapping_file.write_text(json.dumps(document), encoding="utf-8")
    # When / Then the loader checks it against the schema and names the field
    with pytest.raises(MappingError, match="field 'dynamodb.binary': 'hex' is not one of"):
        load_mappings(mapping_file)


def test_a_mapping_the_schema_refuses_fails_the_build_in_one_line_and_gets_no_stamp(mapping_file: Path) -> None:
    document = json.loads(mapping_file.read_text(encoding="utf-8"))
    document["tables"]["tenant_settings"]["dynamodb"]["binary"] = "hex"
    mapping_file.write_text(json.dumps(document), encoding="utf-8")
    stamp_path(mapping_file).write_text("stale\n", encoding="ascii")

    done = stamp(mapping_file)

    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "dynamodb.binary" in done.stderr
    assert not stamp_path(mapping_file).exists()
