"""The shape of a question bank: counts by kind, difficulty, audience and topic, and its gaps.

Behind ``prepbot content stats`` and the tests that keep the built-in bank balanced. Pure:
scenarios and the topic vocabulary in, numbers and text out; imports the content model only,
no database and no chat platform.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from prepbot.content.model import Scenario, Topic

RARE_TOPIC = 3  # a topic used by fewer scenarios than this is too thin to subscribe to


@dataclass(frozen=True)
class BankStats:
    """Counts over a bank of scenarios, and the gaps an editor should close."""

    total: int
    kinds: Counter[str]
    difficulties: Counter[str]
    audiences: Counter[str]
    topics: Counter[str]
    topic_names: dict[str, str]
    unused_topics: tuple[str, ...]
    rare_topics: tuple[str, ...]
    paired_topics: tuple[tuple[str, str], ...]
    without_references: tuple[str, ...]
    without_rubric: tuple[str, ...]
    key_points: Counter[int]


def bank_stats(scenarios: Sequence[Scenario], topics: dict[str, Topic]) -> BankStats:
    """Count a bank's scenarios and find its gaps."""
    used = Counter(t for s in scenarios for t in s.topics)
    return BankStats(
        total=len(scenarios),
        kinds=Counter(s.kind.value for s in scenarios),
        difficulties=Counter(s.difficulty.value for s in scenarios),
        audiences=Counter(s.audience.value for s in scenarios),
        topics=used,
        topic_names={t.id: t.name for t in topics.values()},
        unused_topics=tuple(sorted(t for t in topics if not used[t])),
        rare_topics=tuple(sorted(t for t, n in used.items() if n < RARE_TOPIC)),
        paired_topics=always_together(s.topics for s in scenarios),
        without_references=tuple(sorted(s.id for s in scenarios if not s.references)),
        without_rubric=tuple(sorted(s.id for s in scenarios if s.rubric is None)),
        key_points=Counter(len(s.rubric.key_points) for s in scenarios if s.rubric is not None),
    )


def always_together(tag_sets: Iterable[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """Return the pairs of topics that never appear one without the other."""
    where: dict[str, set[int]] = {}
    for index, tags in enumerate(tag_sets):
        for tag in tags:
            where.setdefault(tag, set()).add(index)
    return tuple((a, b) for a, b in combinations(sorted(where), 2) if where[a] == where[b])


def render_stats(stats: BankStats) -> str:
    """Return the stats as plain text, one fact per line."""
    total = stats.total or 1

    def share(counts: Counter[str], order: Sequence[str]) -> str:
        keys = [k for k in order if counts[k]] + sorted(set(counts) - set(order))
        return ", ".join(f"{k} {counts[k]} ({100 * counts[k] / total:.0f}%)" for k in keys)

    lines = [
        f"{stats.total} scenarios",
        "kind: " + share(stats.kinds, ("technical", "system-design", "behavioral", "career")),
        "difficulty: " + share(stats.difficulties, ("easy", "medium", "hard")),
        "audience: " + share(stats.audiences, ("candidates", "hiring")),
        "key points per rubric: "
        + ", ".join(f"{n}: {stats.key_points[n]}" for n in sorted(stats.key_points)),
        f"topics ({len(stats.topics)} used):",
        *(
            f"  {topic:<24} {count:>4}  {stats.topic_names.get(topic, '')}"
            for topic, count in sorted(stats.topics.items(), key=lambda item: (-item[1], item[0]))
        ),
    ]
    gaps = [
        ("topics no scenario uses", stats.unused_topics),
        (f"topics used by fewer than {RARE_TOPIC} scenarios", stats.rare_topics),
        ("topics that always travel together", tuple(f"{a} + {b}" for a, b in stats.paired_topics)),
        ("scenarios without references", stats.without_references),
        ("scenarios without a rubric", stats.without_rubric),
    ]
    for label, items in gaps:
        lines.append(f"{label}: {', '.join(items) if items else 'none'}")
    return "\n".join(lines)
