"""Coverage-guided fuzzing of the parser input path (atheris), bounded, as part of `make test`.

The harness is tests/fuzz/fuzz_parser.py (run it longer by hand: see its docstring).
libFuzzer exits non-zero and writes the input to ``crash-*`` on the first
uncaught exception or broken invariant; its seed corpus is the events/ files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.files import EVENTS, ROOT

HARNESS = ROOT / "tests" / "fuzz" / "fuzz_parser.py"
RUNS = 40_000  # ~5 s here; -max_total_time bounds it on a slower machine


def test_coverage_guided_fuzzing_of_the_parser_finds_no_crash(tmp_path: Path) -> None:
    # Given a seed corpus made of the scenario files (libFuzzer adds what it finds to it)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for event in EVENTS.glob("*.json"):
        shutil.copy(event, corpus)

    # When the harness runs a bounded number of inputs, derived from a fixed seed
    run = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={RUNS}",
            "-max_total_time=40",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it finished every run without a crash, and left no crash input behind
    report = run.stderr
    assert run.returncode == 0, report[-4000:]
    assert "Done" in report and not list(tmp_path.glob("crash-*")), report[-4000:]
    assert len(list(corpus.iterdir())) > len(list(EVENTS.glob("*.json")))  # it explored beyond the seeds
