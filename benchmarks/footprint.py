"""Footprint benchmark: start-up time of the CLI and the cost of checking a large pack.

Run: python3 benchmarks/footprint.py [--runs N] [--write docs/benchmarks.md]
Each figure is compared with a baseline measured in the same run (a bare `python3 -c pass`
for start-up; the same pack's file count for checks), so a noisy shared machine shifts both.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "content" / "scenarios"


def timed(command: list[str], runs: int) -> float:
    """Return the median wall time of a command over ``runs`` runs, in seconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def make_pack(folder: Path, count: int) -> None:
    """Write ``count`` valid scenario files, copies of the built-in ones under new ids."""
    files = sorted(SCENARIOS.glob("*.yaml"))
    shutil.copy(REPO / "content" / "topics.yaml", folder / "topics.yaml")
    for index in range(count):
        source = files[index % len(files)]
        new_id = f"{source.stem}-{index}"
        text = re.sub(r"^id: .*$", f"id: {new_id}", source.read_text(), flags=re.M)
        (folder / f"{new_id}.yaml").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", type=Path, help="Write the results table to this file.")
    args = parser.parse_args()
    prepbot = shutil.which("prepbot") or sys.exit("install prepbot first: pip install -e .")

    baseline = timed([sys.executable, "-c", "pass"], args.runs)
    rows = [("`python3 -c pass` (baseline)", baseline, "—", "—")]
    help_time = timed([prepbot, "--help"], args.runs)
    rows.append(("`prepbot --help`", help_time, f"{help_time / baseline:.1f}x baseline", "< 0.5 s"))
    with tempfile.TemporaryDirectory() as tmp:
        pack = Path(tmp)
        make_pack(pack, 1000)
        check = timed([prepbot, "content", "check", str(pack)], args.runs)
        rows.append(
            (
                "`prepbot content check` of 1,000 files",
                check,
                f"{check / 1000 * 1e3:.2f} ms/file",
                "< 2 s",
            )
        )

    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    lines = [
        "## Footprint",
        "",
        f"Command: `python3 benchmarks/footprint.py --runs {args.runs}` on {machine}, "
        f"median of {args.runs} runs.",
        "",
        "| what | median | relative | target |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name} | {seconds:.3f} s | {rel} | {target} |"
            for name, seconds, rel, target in rows
        ),
        "",
    ]
    print("\n".join(lines))
    if args.write:
        args.write.write_text("# Benchmarks\n\n" + "\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
