"""Artifacts from Maven Central for the local stack (MySQL, OpenSearch): copied once into a cache folder with
`mvn dependency:copy` and checked against a pinned SHA-256, so nothing unpinned ever runs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_artifact(
    artifact: str, directory: Path, file_name: str, pinned: str, *, error: type[SystemExit], alternative: str
) -> Path:
    """``artifact`` (``group:name:version[:type]``) as ``directory/file_name``, fetched unless the file there
    has the ``pinned`` SHA-256. Raises ``error`` with what to do (``alternative``: the way around it)."""
    target = directory / file_name
    if target.exists() and sha256(target) == pinned:
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise error(
            f"Maven (mvn) is needed to fetch {artifact} from Maven Central: apt-get install maven, or {alternative}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    print(f"[maven] fetching {artifact}", flush=True)
    command = [
        mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={directory}",
        "-Dmdep.overWriteReleases=true", "-Dmdep.stripVersion=false",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    if result.returncode != 0:
        raise error(f"Maven could not fetch {artifact}:\n{result.stdout}{result.stderr}")
    actual = sha256(target)
    if actual != pinned:
        target.unlink()
        raise error(f"{file_name} has SHA-256 {actual}, expected {pinned}")
    return target
