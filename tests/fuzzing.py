"""How many cases the property-based fuzz tests run: 10,000 each in CI, fewer on a laptop."""

from __future__ import annotations

import os


def fuzz_cases(local: int = 2_000) -> int:
    """Return 10,000 when the ``CI`` variable is set (CI=true), else ``local``."""
    if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
        return local
    return 10_000
