"""Scenario and topic models: what one file of a content pack may say, and nothing more.

Pydantic v2 models, frozen and strict about unknown keys, so a typo in a content file is an
error instead of silently lost text. Pure data: no file access, no database, no platform.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
DRAFT_MARKER = "TODO"


def _no_draft_placeholder(text: str) -> str:
    """Reject text an importer left for an editor to fill."""
    if text.lstrip().upper().startswith(DRAFT_MARKER):
        raise ValueError(f"still a draft placeholder: {text.strip()[:80]!r}")
    return text


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1),
    AfterValidator(_no_draft_placeholder),
]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=80)]


class Kind(StrEnum):
    """What sort of interview situation a scenario is."""

    TECHNICAL = "technical"
    SYSTEM_DESIGN = "system-design"
    BEHAVIORAL = "behavioral"
    CAREER = "career"


class Audience(StrEnum):
    """Who a scenario is for: candidates practising, or the people hiring them."""

    CANDIDATES = "candidates"
    HIRING = "hiring"


class Difficulty(StrEnum):
    """How hard a scenario is for a mid-level ML engineer."""

    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Context(_Frozen):
    """The interview situation: who asks, for what role, and what is going on."""

    company: Text | None = Field(
        default=None, description="Company the question is attributed to, if any."
    )
    role: Text | None = Field(default=None, description="Role being interviewed for, if known.")
    situation: Text = Field(description="The setting of the question, in a sentence or three.")


class Trap(_Frozen):
    """The naive answer a weak candidate gives, and why it falls short."""

    answer: Text = Field(description="The naive answer, as a candidate would say it.")
    why_it_falls_short: Text = Field(description="Why an interviewer is not satisfied by it.")


class Source(_Frozen):
    """Where the scenario comes from; shown as credit on every reveal."""

    author: Text = Field(description="The source post's author, as they name themselves.")
    handle: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,30}$")] | None = Field(
        default=None, description="The author's handle on the platform, without '@'."
    )
    url: HttpUrl = Field(description="Link to the source post.")
    title: Text | None = Field(default=None, description="Title of the source post, if any.")


Term = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=80),
    AfterValidator(_no_draft_placeholder),
]
PointId = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=40)]


class KeyPoint(_Frozen):
    """One point a full-credit answer must make, and the words that show it was made."""

    id: PointId = Field(description="Stable id of the point, unique within the scenario.")
    point: Text = Field(max_length=200, description="The point in one sentence.")
    look_for: tuple[Term, ...] = Field(
        min_length=1,
        description=(
            "Phrases, synonyms and abbreviations that show the point in a member's own words; "
            "matched ignoring case, plurals, hyphens and small typos."
        ),
    )


class RedFlag(_Frozen):
    """A claim that should cost an answer credit, and the words that show it was made."""

    id: PointId
    flag: Text = Field(max_length=200, description="The wrong claim, in one sentence.")
    look_for: tuple[Term, ...] = Field(min_length=1)


def _distinct_ids(items: tuple[KeyPoint, ...] | tuple[RedFlag, ...], what: str) -> None:
    ids = [item.id for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{what} id used twice: {', '.join(duplicates)}")


class Rubric(_Frozen):
    """What a full-credit answer contains: 3-7 key points, and claims that cost credit."""

    key_points: tuple[KeyPoint, ...] = Field(min_length=3, max_length=7)
    red_flags: tuple[RedFlag, ...] = Field(default=(), max_length=5)

    @field_validator("key_points")
    @classmethod
    def _key_point_ids_are_distinct(cls, points: tuple[KeyPoint, ...]) -> tuple[KeyPoint, ...]:
        _distinct_ids(points, "key point")
        return points

    @field_validator("red_flags")
    @classmethod
    def _red_flag_ids_are_distinct(cls, flags: tuple[RedFlag, ...]) -> tuple[RedFlag, ...]:
        _distinct_ids(flags, "red flag")
        return flags


class FollowUp(_Frozen):
    """A question an interviewer might ask next, with a short answer key."""

    question: Text
    answer: Text | None = Field(default=None, description="A short answer key.")

    @model_validator(mode="before")
    @classmethod
    def _accept_plain_question(cls, data: Any) -> Any:
        return {"question": data} if isinstance(data, str) else data


class Reference(_Frozen):
    """A primary source the scenario follows: a paper, official docs, an engineering blog."""

    title: Text
    url: HttpUrl
    year: int | None = Field(default=None, ge=1900, le=2100)


class Scenario(_Frozen):
    """One interview situation: context, prompts, the trap, key insights and its source."""

    id: Slug = Field(description="Stable slug id; the file must be named '<id>.yaml'.")
    title: Text = Field(max_length=120)
    kind: Kind
    topics: tuple[Slug, ...] = Field(
        min_length=1, description="Topic ids from the pack's topics.yaml."
    )
    difficulty: Difficulty
    context: Context
    prompts: tuple[Text, ...] = Field(
        min_length=1, description="The questions put to the group; the first is the main one."
    )
    trap: Trap | None = Field(
        default=None,
        validate_default=True,
        description="The naive answer; required unless the kind is behavioral.",
    )
    insights: tuple[Text, ...] = Field(
        min_length=2, description="Key insights revealed after the round, most important first."
    )
    follow_ups: tuple[FollowUp, ...] = Field(
        default=(),
        description=(
            "Follow-up questions an interviewer might ask next, each {question, answer}; "
            "a plain string is a question without an answer key."
        ),
    )
    rubric: Rubric | None = Field(
        default=None,
        description="What a full-credit answer contains; 'prepbot content check' requires it.",
    )
    hints: tuple[Text, ...] = Field(
        default=(),
        max_length=2,
        description="Nudges a member may ask for before the reveal; never the answer itself.",
    )
    references: tuple[Reference, ...] = Field(
        default=(), description="Primary sources the scenario follows."
    )
    audience: Audience = Field(
        default=Audience.CANDIDATES,
        description=(
            "'hiring' scenarios are for interviewers and recruiters: rotations leave them out "
            "unless a group subscribes to one of their topics by name."
        ),
    )
    source: Source

    @field_validator("topics")
    @classmethod
    def _topics_are_distinct(cls, topics: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({t for t in topics if topics.count(t) > 1})
        if duplicates:
            raise ValueError(f"topic listed twice: {', '.join(duplicates)}")
        return topics

    @field_validator("trap", mode="after")
    @classmethod
    def _trap_unless_behavioral(cls, trap: Trap | None, info: ValidationInfo) -> Trap | None:
        kind = info.data.get("kind")
        if trap is None and kind is not None and kind is not Kind.BEHAVIORAL:
            raise ValueError(
                f"a {kind.value} scenario needs a trap (the naive answer and why it falls "
                "short); only behavioral scenarios may leave it out"
            )
        return trap

    def searchable_fields(self) -> dict[str, list[str]]:
        """Return the scenario's text grouped by the field a search weighs it as.

        ``insights`` and ``answer`` (the trap and follow-ups) are what only the reveal shows.
        """
        trap = [self.trap.answer, self.trap.why_it_falls_short] if self.trap else []
        return {
            "id": [self.id.replace("-", " ")],
            "title": [self.title],
            "prompts": list(self.prompts),
            "topics": [t.replace("-", " ") for t in self.topics],
            "company": [self.context.company or ""],
            "author": [self.source.author, self.source.handle or ""],
            "insights": list(self.insights),
            "body": [self.context.situation, self.context.role or ""],
            "answer": [
                *trap,
                *(f.question for f in self.follow_ups),
                *(f.answer for f in self.follow_ups if f.answer),
            ],
        }


class Topic(_Frozen):
    """One entry of a pack's controlled topic vocabulary."""

    id: Slug
    name: Text
    description: Text | None = None


class TopicList(_Frozen):
    """The whole ``topics.yaml`` of a pack."""

    topics: tuple[Topic, ...] = Field(min_length=1)


def slugify(text: str, max_length: int = 60) -> str:
    """Turn a title into a slug id: lower case, ASCII letters and digits joined by dashes."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    return slug or "scenario"
