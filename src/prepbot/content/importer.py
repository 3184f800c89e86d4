"""Turn link-summary files (the seed format) into draft scenario files for an editor to finish.

The format: entries separated by ``---``, each headed ``## [Author - Title]`` and carrying
``**URL:**``, ``**Summary:**``, ``**Interview Questions Mentioned:**`` and ``**Key Insights:**``.
A draft keeps what can be kept (title, quoted questions, source credit) and marks every field
an editor must still write with ``TODO``, which ``prepbot content check`` refuses until done.
A malformed entry is reported with its line and skipped; the others still import.
Reads and writes files only; imports no database and no chat platform.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from prepbot.content.catalog import normalize
from prepbot.content.model import Topic, slugify
from prepbot.content.schema import scenario_json_schema

SCHEMA_FILE = "scenario.schema.json"  # written beside the drafts, for the editor's validation

HEADING = re.compile(r"^##\s+\[(?P<inside>.+)\]\s*$")
FIELD = re.compile(r"^\*\*(?P<name>[^*:]+):\*\*\s*(?P<rest>.*)$")
BULLET = re.compile(r"^\s*[-*]\s+(?P<text>.+)$")
COMPANY = re.compile(r"\((?P<company>[A-Z][\w&.\- ]*?)\s+(?:Scenario|Interview)\)")
QUOTED = re.compile(r'^["“](?P<q>.+)["”]$')
KNOWN_FIELDS = {"url", "summary", "interview questions mentioned", "key insights"}


@dataclass
class SeedEntry:
    """One entry of a link-summary file, as written there."""

    line: int
    author: str
    title: str
    url: str
    summary: str = ""
    questions: list[str] = field(default_factory=list)
    insights: list[str] = field(default_factory=list)

    @property
    def handle(self) -> str | None:
        """Return the author's handle when the URL is a post on x.com or twitter.com."""
        parsed = urlparse(self.url)
        if parsed.hostname in {"x.com", "twitter.com", "www.x.com", "www.twitter.com"}:
            first = parsed.path.strip("/").split("/")[0]
            return first if re.fullmatch(r"[A-Za-z0-9_]{1,30}", first) else None
        return None

    @property
    def company(self) -> str | None:
        """Return the company a title attributes the scenario to, e.g. '(Netflix Scenario)'."""
        match = COMPANY.search(self.title)
        return match.group("company") if match else None


@dataclass(frozen=True)
class EntryProblem:
    """A malformed entry that was skipped."""

    line: int
    message: str


@dataclass
class ParsedFile:
    """The well-formed entries of a file and the problems of the others."""

    entries: list[SeedEntry] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)


def parse_link_summaries(text: str) -> ParsedFile:
    """Parse a link-summary file; keep every well-formed entry, report the others by line."""
    result = ParsedFile()
    blocks: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            blocks.append((number, [line]))
        elif blocks:
            blocks[-1][1].append(line)
    for start, lines in blocks:
        entry_or_problem = _parse_entry(start, lines)
        if isinstance(entry_or_problem, EntryProblem):
            result.problems.append(entry_or_problem)
        else:
            result.entries.append(entry_or_problem)
    return result


def _parse_entry(start: int, lines: list[str]) -> SeedEntry | EntryProblem:
    heading = HEADING.match(lines[0].strip())
    if heading is None or " - " not in heading.group("inside"):
        return EntryProblem(start, "heading must look like '## [Author - Title]'")
    author, title = (part.strip() for part in heading.group("inside").split(" - ", 1))
    if not author or not title:
        return EntryProblem(start, "heading must name both an author and a title")

    fields: dict[str, tuple[int, str, list[str]]] = {}
    current: str | None = None
    for offset, line in enumerate(lines[1:], start=1):
        stripped = line.strip()
        if stripped == "---":
            break
        match = FIELD.match(stripped)
        if match:
            name = match.group("name").strip().lower()
            if name not in KNOWN_FIELDS:
                return EntryProblem(start + offset, f"unknown field '**{match.group('name')}:**'")
            if name in fields:
                return EntryProblem(start + offset, f"field '**{match.group('name')}:**' twice")
            fields[name] = (start + offset, match.group("rest").strip(), [])
            current = name
            continue
        if not stripped:
            continue
        bullet = BULLET.match(line)
        if current is None:
            return EntryProblem(start + offset, "text before the first '**Field:**' line")
        if bullet:
            fields[current][2].append(bullet.group("text").strip())
        elif fields[current][2]:
            fields[current][2][-1] += " " + stripped
        else:
            line_no, rest, items = fields[current]
            fields[current] = (line_no, f"{rest} {stripped}".strip(), items)

    if "url" not in fields:
        return EntryProblem(start, "entry has no '**URL:**' line")
    url_line, url, _ = fields["url"]
    parsed_url = urlparse(url)
    if parsed_url.scheme not in {"http", "https"} or not parsed_url.netloc:
        return EntryProblem(url_line, f"not an http(s) URL: {url!r}")
    if "interview questions mentioned" not in fields and "key insights" not in fields:
        return EntryProblem(start, "entry has neither questions nor key insights")

    questions: list[str] = []
    for item in fields.get("interview questions mentioned", (0, "", []))[2]:
        quoted = QUOTED.match(item)
        if quoted:
            questions.append(quoted.group("q").strip())
    return SeedEntry(
        line=start,
        author=author,
        title=title,
        url=url,
        summary=fields.get("summary", (0, "", []))[1],
        questions=questions,
        insights=list(fields.get("key insights", (0, "", []))[2]),
    )


@dataclass
class ImportResult:
    """What an import wrote, left alone and skipped."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)


def import_file(
    source: Path,
    out_dir: Path,
    topics: dict[str, Topic],
    *,
    force: bool = False,
    progress: Callable[[Iterable[SeedEntry], int], Iterable[SeedEntry]] | None = None,
) -> ImportResult:
    """Write one draft scenario per well-formed entry of ``source`` into ``out_dir``.

    An existing draft is kept unless ``force`` is set; ``progress`` may wrap the loop in a
    progress display.
    """
    parsed = parse_link_summaries(source.read_text(encoding="utf-8"))
    result = ImportResult(problems=list(parsed.problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = out_dir / SCHEMA_FILE
    if not schema.exists() or force:
        schema.write_text(
            json.dumps(scenario_json_schema(sorted(topics)), indent=2) + "\n", encoding="utf-8"
        )
    used: set[str] = set()
    entries: Iterable[SeedEntry] = parsed.entries
    if progress is not None:
        entries = progress(entries, len(parsed.entries))
    for entry in entries:
        slug = slugify(entry.title)
        candidate, n = slug, 2
        while candidate in used:
            candidate, n = f"{slug}-{n}", n + 1
        used.add(candidate)
        target = out_dir / f"{candidate}.yaml"
        if target.exists() and not force:
            result.kept.append(target)
            continue
        target.write_text(render_draft(candidate, entry, source, topics), encoding="utf-8")
        result.written.append(target)
    return result


def guess_topics(entry: SeedEntry, topics: dict[str, Topic], limit: int = 4) -> list[str]:
    """Return the topics whose every word (or id word) appears in the entry's text."""
    words = set(normalize(" ".join([entry.title, entry.summary, *entry.questions])))
    found = []
    for topic in topics.values():
        for wording in (topic.name, topic.id.replace("-", " ")):
            terms = normalize(wording)
            if terms and all(term in words for term in terms):
                found.append(topic.id)
                break
    return found[:limit]


def _q(text: str) -> str:
    """Quote text as a YAML double-quoted scalar."""
    return json.dumps(text, ensure_ascii=False)


def render_draft(scenario_id: str, entry: SeedEntry, source: Path, topics: dict[str, Topic]) -> str:
    """Return the YAML text of a draft scenario, every unfinished field marked TODO."""
    guessed = guess_topics(entry, topics)
    topic_line = (
        f"topics: [{', '.join(guessed)}]  # guessed from the text: check them"
        if guessed
        else "topics: [TODO]  # ids from topics.yaml"
    )
    prompts = [f"  - {_q(q)}" for q in entry.questions] or [
        "  - TODO write a discussion question grounded in this post"
    ]
    insights = [f"  - {_q('TODO rewrite in your own words: ' + i)}" for i in entry.insights]
    while len(insights) < 2:
        insights.append("  - TODO a key insight a reader learns from this scenario")
    company = f"  company: {_q(entry.company)}" if entry.company else "  # company: (optional)"
    summary = entry.summary or "what is going on when the question is asked"
    source_lines = [
        "source:",
        f"  author: {_q(entry.author)}",
        *([f"  handle: {entry.handle}"] if entry.handle else []),
        f"  url: {_q(entry.url)}",
        f"  title: {_q(entry.title)}",
    ]
    lines = [
        f"# yaml-language-server: $schema={SCHEMA_FILE}",
        f"# Draft imported from {source.name} (line {entry.line}) by `prepbot content import`.",
        "# Still to do: every value that starts with TODO. Keep quoted interview questions as",
        "# asked; write everything else in your own words. `prepbot content check` lists what",
        "# is left.",
        f"id: {scenario_id}",
        f"title: {_q(_clean_title(entry.title))}",
        "kind: TODO  # technical | system-design | behavioral | career",
        topic_line,
        "difficulty: TODO  # easy | medium | hard",
        "context:",
        company,
        "  # role: (optional) the role being interviewed for",
        f"  situation: {_q('TODO rewrite in your own words: ' + summary)}",
        "prompts:",
        *prompts,
        "trap:  # optional for behavioral scenarios",
        "  answer: TODO the naive answer a candidate gives",
        "  why_it_falls_short: TODO why an interviewer is not satisfied by it",
        "insights:",
        *insights,
        "rubric:  # what a full-credit answer must make: 3-7 key points",
        "  key_points:",
        *(
            line
            for n in (1, 2, 3)
            for line in (
                f"    - id: point-{n}  # a short stable slug, e.g. ring-all-reduce",
                f"      point: TODO key point {n} of a full-credit answer, in one sentence",
                "      look_for: [TODO]  # phrases, synonyms, abbreviations that show it",
            )
        ),
        "  # red_flags:  # optional: claims that cost credit",
        "  #   - id: wrong-claim",
        "  #     flag: the wrong claim, in one sentence",
        "  #     look_for: [words that show it]",
        "# hints:  # optional, 1-2 nudges before the reveal; never the answer",
        "#   - a nudge",
        "follow_ups: []  # - {question: ..., answer: a short answer key}",
        "# references:  # optional primary sources: papers, official docs, engineering blogs",
        "#   - {title: ..., url: https://..., year: 2024}",
        "# audience: hiring  # only for scenarios meant for interviewers and recruiters",
        *source_lines,
    ]
    return "\n".join(lines) + "\n"


def _clean_title(title: str) -> str:
    """Drop a trailing '(Company Scenario)' from a post title; the company has its own field."""
    return COMPANY.sub("", title).strip()[:120] or title[:120]
