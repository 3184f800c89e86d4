"""Weekly digests built by hand for the platform tests: a small PNG and a two-round week."""

from __future__ import annotations

from datetime import date, timedelta
from io import BytesIO
from typing import Any

from PIL import Image

from prepbot.core.views import (
    DigestCard,
    DigestMember,
    DigestPoint,
    DigestRound,
    MemberRef,
    Milestone,
)

END = date(2026, 11, 29)  # a Sunday


def png(colour: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """Return a small real PNG."""
    out = BytesIO()
    Image.new("RGB", (64, 32), colour).save(out, format="PNG")
    return out.getvalue()


def digest_card(
    end: date,
    *,
    people: tuple[MemberRef, MemberRef],
    titles: tuple[str, str],
    link: str,
    **changes: Any,
) -> DigestCard:
    """Return a week's digest of two rounds, with coverage, a milestone and two leaders.

    ``people`` and ``titles`` carry the platform's markup to escape; ``changes`` replace
    fields.
    """
    start = end - timedelta(days=6)
    first, second = people
    fields: dict[str, Any] = {
        "group": "study",
        "period_start": start,
        "period_end": end,
        "rounds": (
            DigestRound(start, "gpu-sync", titles[0], link, 5, 2),
            DigestRound(start + timedelta(days=2), "rag-evals", titles[1], None, 3, 0),
        ),
        "members": 7,
        "answers": 10,
        "most_covered": (DigestPoint("Use ring all-reduce", titles[0], 6, 7),),
        "least_covered": (DigestPoint("Check label drift", titles[1], 1, 3),),
        "milestones": (Milestone(first, 10),),
        "leaders": (
            DigestMember(first, on_time=2, late=0, points=9, streak=10),
            DigestMember(second, on_time=1, late=1, points=4, streak=2),
        ),
        "archive_link": "https://prep.example.org/archive/abc",
    }
    fields.update(changes)
    return DigestCard(**fields)
