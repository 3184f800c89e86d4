"""Write one benchmark's section of docs/benchmarks.md and describe the machine it ran on.

Every benchmark script owns one ``## Heading`` section; writing it replaces only that section
and keeps the others, so the scripts can run in any order or alone. Imports nothing of prepbot.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

TITLE = "# Benchmarks"
PREAMBLE = (
    "Run on demand, never in CI: `python3 -m benchmarks` runs them all and rewrites this file;\n"
    "each script below also runs alone. Each figure sits beside a baseline measured in the same\n"
    "run, so a busy shared machine moves both."
)


def machine() -> str:
    """Describe this machine in one phrase: architecture, cores, Python."""
    return f"{platform.machine()}, {os.cpu_count()} cores, CPython {platform.python_version()}"


def write_section(path: Path, heading: str, lines: list[str]) -> None:
    """Replace (or append) the section ``## heading`` of the results file with ``lines``."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"{TITLE}\n\n{PREAMBLE}\n"
    body = "\n".join(lines).rstrip() + "\n"
    if not body.startswith("## "):
        body = f"## {heading}\n\n{body}"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + body
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
