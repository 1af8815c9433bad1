"""Wall time, peak memory and heavy imports of ``lungai --help`` and of a usage error.

Each measurement is a fresh process (``python -m lungai.cli ...``), as a user starts it; the
child also reports whether torch, SimpleITK or scipy got imported. Target: under 0.5 s and no
torch.

Usage::

    python benchmarks/bench_cli_help.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

#: What the child runs: the command line, then a report of the heavy modules it imported.
_CHILD = """
import json, sys
from lungai.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = [name for name in ("torch", "SimpleITK", "scipy", "numpy") if name in sys.modules]
sys.stderr.write("\\n" + json.dumps(heavy) + "\\n")
"""

CASES = {
    "lungai --help": ["--help"],
    "lungai run --help": ["run", "--help"],
    "lungai run (usage error: no SCAN)": ["run"],
    "lungai train --help (developer command)": ["train", "--help"],
}


def measure(args: list[str]) -> tuple[float, list[str]]:
    """Seconds one child process takes, and the heavy modules it imported."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    return seconds, json.loads(result.stderr.strip().splitlines()[-1])


def main() -> None:
    """Print a markdown table: median and worst wall time, and heavy imports, per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()
    print("| command | median (s) | worst (s) | heavy modules imported |")
    print("|---|---|---|---|")
    for label, args in CASES.items():
        runs = [measure(args) for _ in range(options.repeats)]
        times = [seconds for seconds, _ in runs]
        print(f"| `{label}` | {statistics.median(times):.3f} | {max(times):.3f} | {', '.join(runs[-1][1]) or 'none'} |")
    print(f"\n{options.repeats} runs each; Python {platform.python_version()}, {platform.machine()}")


if __name__ == "__main__":
    main()
