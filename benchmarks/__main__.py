"""Run every benchmark one after another and rewrite docs/benchmarks.md: `python3 -m benchmarks`.

The scripts run as separate processes, one at a time, each rewriting only its own section,
with their default (full-scale) settings; ``--only`` picks some. Run a script directly to
change its settings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = "docs/benchmarks.md"  # relative to the repository, as the sections record it
SUITE: dict[str, list[str]] = {
    "footprint": ["benchmarks/footprint.py"],
    "reveal-and-reads": ["benchmarks/reveal_and_reads.py"],
    "reads-one-group": ["benchmarks/reveal_and_reads.py", "--groups", "1"],
    "ingestion": ["benchmarks/ingestion.py"],
    "fan-out": ["benchmarks/fanout.py"],
    "grader": ["benchmarks/grader.py"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(SUITE), help="Run just these.")
    args = parser.parse_args()
    failed = []
    for name, command in SUITE.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}: python3 {' '.join(command)} --write docs/benchmarks.md", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, *command, "--write", RESULTS], cwd=REPO)
        print(f"== {name}: exit {done.returncode} after {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (their sections in {RESULTS} were not rewritten)")


if __name__ == "__main__":
    main()
