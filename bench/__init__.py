"""Benchmarks, each run from the repository root as a module: ``python -m bench.<name>`` (`make bench` runs them).

The package sets the log level before a benchmark imports fanout (the logger takes its level then): one log
line per write would dominate the timings. A value already in the environment wins.
"""

import os

os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "fanout-bench")
