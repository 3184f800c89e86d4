"""The scale of the reliability tests: the issue's full scale in CI, smaller on a laptop.

CI (``.ci/run`` exports CI=true) runs 10,000 cases of each property-based fuzz test and 50 of
the replica test's simulated days (200 with ``PREPBOT_REPLICA_DAYS=200``, about 13 minutes);
a plain local ``pytest`` runs fewer so it stays quick.
"""

from __future__ import annotations

import os


def in_ci() -> bool:
    """Say whether the ``CI`` variable asks for the full scale."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def fuzz_cases(local: int = 2_000) -> int:
    """Return 10,000 in CI, else ``local``."""
    return 10_000 if in_ci() else local
