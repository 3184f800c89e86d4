"""Load content packs from disk and report every problem in them at once.

A pack is a folder: an optional ``topics.yaml`` at its root (the pack's topic vocabulary) and
any number of scenario files (``*.yaml`` / ``*.yml``, in sub-folders too). Loading never stops at
the first problem: each one is collected with its file, line and field so an editor can fix a
whole pack in one pass. A file is refused before it is built into data when it is larger than
``MAX_FILE_BYTES``, nests deeper than ``MAX_DEPTH`` or, through YAML aliases, expands to more
than ``MAX_VALUES`` values or into itself: a "billion laughs" file is a content error, not a
hang. Reads files only; imports no database and no chat platform.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from prepbot.content.catalog import nearest_topics
from prepbot.content.model import DRAFT_MARKER, Rubric, Scenario, Topic, TopicList
from prepbot.core.grading import unreadable_terms

TOPICS_FILE = "topics.yaml"
SCENARIO_SUFFIXES = (".yaml", ".yml")

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 256 * 1024
"""The largest content file read; a real scenario file is a few kilobytes."""
MAX_DEPTH = 50
"""The deepest nesting of lists and mappings; a scenario nests three levels."""
MAX_VALUES = 20_000
"""The most values (scalars, lists, mappings) a file may hold once its aliases are expanded."""
PARSED_CACHE_SIZE = 4096
"""How many cleanly parsed files are remembered by content, so loading the same bank again
(each test's app, ``doctor`` then ``run``) skips the YAML parser; a changed file misses."""
_PARSED: dict[bytes, tuple[dict[str, Any], yaml.Node]] = {}


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a content pack, located as precisely as the file allows."""

    path: Path
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass(frozen=True)
class LoadedScenario:
    """A valid scenario and where it was read from."""

    scenario: Scenario
    path: Path
    pack: Path


@dataclass
class PackReport:
    """Everything loading some packs produced: scenarios, topic vocabulary and problems."""

    packs: list[Path] = field(default_factory=list)
    scenarios: list[LoadedScenario] = field(default_factory=list)
    topics: dict[str, Topic] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    """Gaps that still load (a scenario without a rubric gets no feedback); check refuses them."""

    @property
    def ok(self) -> bool:
        """Say whether the packs loaded without a single problem."""
        return not self.problems

    @property
    def prompt_count(self) -> int:
        """Count the prompts of every valid scenario."""
        return sum(len(s.scenario.prompts) for s in self.scenarios)

    def summary(self) -> str:
        """Return the one-line count that ``prepbot content check`` prints: what loaded."""
        used = {t for s in self.scenarios for t in s.scenario.topics}
        return (
            f"{plural(len(self.scenarios), 'scenario')}, {plural(self.prompt_count, 'prompt')}, "
            f"{len(used)} {'topic' if len(used) == 1 else 'topics'} used of {len(self.topics)}, "
            f"{plural(len(self.packs), 'pack')}"
        )


def plural(count: int, word: str) -> str:
    """Return ``count`` and ``word``, with an s unless the count is one."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def builtin_pack_path() -> Path:
    """Return the folder of the built-in pack, in a wheel or in a source checkout."""
    bundled = Path(str(resources.files("prepbot"))) / "_builtin_content"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parents[3] / "content"


def load_packs(paths: Sequence[Path], *, builtin_topics: bool = True) -> PackReport:
    """Load and validate the given packs together; duplicate ids across packs are problems.

    Scenarios may use topics from any of the packs' ``topics.yaml`` files and, unless
    ``builtin_topics`` is false, from the built-in pack's vocabulary.
    """
    with _collector_paused():
        return _load_packs(paths, builtin_topics=builtin_topics)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a bank is parsed, then resume it.

    Parsing builds hundreds of thousands of YAML nodes and models, and the parse cache keeps
    the clean files' node trees: every collection the allocations trigger walks all of them
    again, which took as long as the parsing itself (1,000 files: 0.8 s of 1.7 s). Nothing
    here makes reference cycles worth collecting early; the collector catches up after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_packs(paths: Sequence[Path], *, builtin_topics: bool) -> PackReport:
    report = PackReport()
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw)
        root = _pack_root(path)
        if not path.exists():
            report.problems.append(Problem(path, None, None, "no such file or folder"))
            continue
        if root not in roots:
            roots.append(root)
    report.packs = roots

    vocabulary_files = [r / TOPICS_FILE for r in roots]
    builtin = builtin_pack_path()
    builtin_vocabulary = builtin / TOPICS_FILE
    # A pack that defines the whole built-in vocabulary is a version of the bank itself (a
    # fork, a checkout being edited): it stands in for the installed one instead of clashing.
    builtin_topics = builtin_topics and not any(
        _same(root, builtin) or _defines_vocabulary(root, builtin_vocabulary) for root in roots
    )
    if builtin_topics and builtin_vocabulary not in vocabulary_files:
        _read_topics(builtin_vocabulary, report, required=True)
    for root in roots:
        _read_topics(root / TOPICS_FILE, report, required=False)

    first_seen: dict[str, Path] = {}
    if builtin_topics:
        # A team pack checked alone must still not reuse an id of the built-in bank.
        first_seen |= {file.stem: file for file in _scenario_files(builtin)}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            continue
        root = _pack_root(path)
        for file in _scenario_files(path):
            loaded = _read_scenario(file, root, report, first_seen)
            if loaded is not None:
                report.scenarios.append(loaded)
    report.problems.sort()
    report.warnings.sort()
    return report


def _topic_ids(path: Path) -> set[str]:
    """Return the topic ids a vocabulary file defines; none if it is missing or broken."""
    if not path.is_file():
        return set()
    parsed = _parse_yaml(path, PackReport())  # the same limits; its problems are found later
    topics = parsed[0].get("topics") if parsed is not None else None
    if not isinstance(topics, list):
        return set()
    return {t["id"] for t in topics if isinstance(t, dict) and isinstance(t.get("id"), str)}


def _defines_vocabulary(root: Path, builtin_vocabulary: Path) -> bool:
    """Say whether a pack's own topics.yaml defines every topic of the built-in vocabulary."""
    builtin_ids = _topic_ids(builtin_vocabulary)
    return bool(builtin_ids) and builtin_ids <= _topic_ids(root / TOPICS_FILE)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _pack_root(path: Path) -> Path:
    """Return the pack a path belongs to: the folder itself, or a file's nearest pack folder."""
    if path.is_dir() or not path.exists():
        return path
    for parent in path.parents:
        if (parent / TOPICS_FILE).is_file():
            return parent
    return path.parent


def _scenario_files(path: Path) -> list[Path]:
    """Return a pack's scenario files in path order: hidden names and its topics file left out.

    A walk over ``os.scandir`` (each entry's type comes with the listing), not ``rglob``: the
    loader lists the built-in bank on every load, and pathlib's per-path parsing made that
    listing most of the time of loading one small team pack.
    """
    if path.is_file():
        return [path]
    found: list[tuple[str, ...]] = []

    def walk(folder: str, parts: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in listed:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):  # as rglob: no symlinked folders
                walk(entry.path, (*parts, entry.name))
            elif (
                os.path.splitext(entry.name)[1] in SCENARIO_SUFFIXES
                and entry.is_file()
                and (parts or entry.name != TOPICS_FILE)
            ):
                found.append((*parts, entry.name))

    walk(str(path), ())
    return [path.joinpath(*parts) for parts in sorted(found)]


def _read_topics(path: Path, report: PackReport, *, required: bool) -> None:
    if not path.is_file():
        if required:
            report.problems.append(Problem(path, None, None, "the topic vocabulary is missing"))
        return
    parsed = _parse_yaml(path, report)
    if parsed is None:
        return
    data, node = parsed
    try:
        topic_list = TopicList.model_validate(data)
    except ValidationError as error:
        report.problems.extend(_validation_problems(path, node, error, TopicList))
        return
    for index, topic in enumerate(topic_list.topics):
        if topic.id in report.topics and report.topics[topic.id] != topic:
            line = _line_of(node, ("topics", index))
            report.problems.append(
                Problem(path, line, f"topics[{index}].id", f"topic '{topic.id}' defined twice")
            )
            continue
        report.topics.setdefault(topic.id, topic)


def _read_scenario(
    path: Path, pack: Path, report: PackReport, first_seen: dict[str, Path]
) -> LoadedScenario | None:
    parsed = _parse_yaml(path, report)
    if parsed is None:
        return None
    data, node = parsed
    problems: list[Problem] = []
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems.extend(_validation_problems(path, node, error, Scenario))

    raw_id = data.get("id")
    if isinstance(raw_id, str) and raw_id:
        if raw_id in first_seen and first_seen[raw_id] != path:
            problems.append(
                Problem(
                    path,
                    _line_of(node, ("id",)),
                    "id",
                    f"duplicate id '{raw_id}': already used by {first_seen[raw_id]}"
                    + (
                        " in the built-in bank"
                        if _same(first_seen[raw_id].parent.parent, builtin_pack_path())
                        else ""
                    ),
                )
            )
        else:
            first_seen.setdefault(raw_id, path)
        if path.stem != raw_id:
            problems.append(
                Problem(
                    path,
                    _line_of(node, ("id",)),
                    "id",
                    f"the file must be named after its id: rename it to '{raw_id}{path.suffix}'",
                )
            )

    raw_topics = data.get("topics")
    if isinstance(raw_topics, list):
        for index, topic in enumerate(raw_topics):
            if (
                isinstance(topic, str)
                and topic
                and topic not in report.topics
                and not topic.upper().startswith(DRAFT_MARKER)
            ):
                problems.append(
                    Problem(
                        path,
                        _line_of(node, ("topics", index)),
                        f"topics[{index}]",
                        _unknown_topic_message(topic, report.topics),
                    )
                )

    report.problems.extend(problems)
    if scenario is None or problems:
        return None
    if scenario.rubric is not None:
        report.warnings.extend(_unreadable_terms(path, node, scenario.rubric))
    if scenario.rubric is None:
        report.warnings.append(
            Problem(
                path,
                None,
                "rubric",
                "no rubric: members get no feedback on their answers to this scenario; add "
                "rubric.key_points (3-7 points, each with id, point and look_for)",
            )
        )
    return LoadedScenario(scenario=scenario, path=path, pack=pack)


def _unreadable_terms(path: Path, node: yaml.Node, rubric: Rubric) -> list[Problem]:
    """Return a problem for each look_for term the grader cannot use as written."""
    found = []
    lists: list[tuple[str, list[tuple[str, ...]]]] = [
        ("key_points", [p.look_for for p in rubric.key_points]),
        ("red_flags", [f.look_for for f in rubric.red_flags]),
    ]
    for kind, look_fors in lists:
        for index, look_for in enumerate(look_fors):
            for term_index, why in unreadable_terms(look_for):
                found.append(
                    Problem(
                        path,
                        _line_of(node, ("rubric", kind, index, "look_for", term_index)),
                        f"rubric.{kind}[{index}].look_for[{term_index}]",
                        f'{why}; write it in words, or pair it with one ("β & KL")',
                    )
                )
    return found


def _unknown_topic_message(topic: str, known: dict[str, Topic]) -> str:
    close = nearest_topics(topic, known)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown topic '{topic}' (add it to the pack's {TOPICS_FILE}){hint}"


def _parse_yaml(path: Path, report: PackReport) -> tuple[dict[str, Any], yaml.Node] | None:
    """Parse one YAML file into data and its node tree, or record why it cannot be read."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            report.problems.append(
                Problem(
                    path,
                    None,
                    None,
                    f"too large: content files may be at most {MAX_FILE_BYTES // 1024} KiB",
                )
            )
            return None
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if (known := _PARSED.get(digest)) is not None:
            return known
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        report.problems.append(Problem(path, None, None, f"not UTF-8 text ({error.reason})"))
        return None
    except OSError as error:
        report.problems.append(Problem(path, None, None, f"cannot read: {error.strerror}"))
        return None
    loader = _Loader(text)
    try:
        refused = _refuse_explosive(text) if _maybe_explosive(text) else None
        if refused is not None:
            at, message = refused
            report.problems.append(Problem(path, at, None, f"invalid YAML: {message}"))
            return None
        node = loader.get_single_node()
        if node is None:
            report.problems.append(Problem(path, None, None, "the file is empty"))
            return None
        duplicates = list(_duplicate_keys(node, ()))
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = error.problem or error.context or "cannot parse"
        if error.context and error.problem and error.context_mark is not None:
            detail += f" ({error.context} started on line {error.context_mark.line + 1})"
        report.problems.append(Problem(path, line, None, f"invalid YAML: {detail}"))
        return None
    except yaml.YAMLError as error:
        report.problems.append(Problem(path, None, None, f"invalid YAML: {error}"))
        return None
    finally:
        loader.dispose()
    for key_path, key_node in duplicates:
        report.problems.append(
            Problem(
                path,
                key_node.start_mark.line + 1,
                _format_loc(key_path),
                "key given twice; only the last one would count",
            )
        )
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        report.problems.append(
            Problem(
                path, node.start_mark.line + 1, None, f"expected a mapping of fields, got {kind}"
            )
        )
        return None
    if duplicates:
        return None
    if len(_PARSED) >= PARSED_CACHE_SIZE:
        _PARSED.clear()
    _PARSED[digest] = (data, node)
    return data, node


BEFORE_ANCHOR = frozenset(" \t\r\n[{,:-")  # what may precede a YAML anchor (&) or alias (*)
NOT_A_NAME = frozenset(" \t\r\n]},")  # what cannot follow one: it would have no name


def _maybe_explosive(text: str) -> bool:
    """Say whether a text might nest deeper than MAX_DEPTH or hold more than MAX_VALUES values.

    A cheap, conservative bound that spares ordinary files the event pass of
    ``_refuse_explosive``, which reads the whole text a second time: with no anchor or alias,
    values are bounded by lines, commas and flow brackets, and nesting by the deepest line's
    block prefix (indentation, ``- `` and ``? ``) plus every flow bracket. Any doubt (an ``&``
    or ``*`` that could start a name) goes to the real check.
    """
    for mark in "&*":
        at = text.find(mark)
        while at != -1:
            before = text[at - 1] if at else "\n"
            after = text[at + 1 : at + 2]
            if before in BEFORE_ANCHOR and after and after not in NOT_A_NAME:
                return True
            at = text.find(mark, at + 1)
    brackets = text.count("[") + text.count("{")
    lines = text.split("\n")
    if 2 * (len(lines) + text.count(",") + brackets) + 2 >= MAX_VALUES:
        return True
    deepest = max(len(line) - len(line.lstrip(" -?")) for line in lines)
    return deepest + 2 + brackets >= MAX_DEPTH


def _refuse_explosive(text: str) -> tuple[int, str] | None:
    """Say where and why a YAML text would nest too deep or expand too far, reading its events.

    Works on the parser's event stream, before any node is built, in one pass: each anchor's
    expanded size is known when its node ends, so an alias adds that size; an alias to a node
    that is still open is recursive.
    """
    sizes: dict[str, int] = {}
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, expanded size so far)
    values = 0
    aliased = False
    for event in yaml.parse(text, Loader=_Loader):
        line = int(event.start_mark.line) + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.DocumentStartEvent):
            sizes.clear()
            values = 0
            aliased = False
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = size
            if open_nodes:
                parent, so_far = open_nodes[-1]
                open_nodes[-1] = (parent, so_far + size)
            continue
        if isinstance(event, yaml.AliasEvent):
            anchor = event.anchor or ""
            if any(name == anchor for name, _ in open_nodes):
                return line, f"the alias *{anchor} refers to a node that contains it"
            size = sizes.get(anchor, 0)  # an undefined alias is the composer's error
            aliased = True
        elif isinstance(event, yaml.NodeEvent):
            size = 1
        else:
            continue
        values += size
        if values > MAX_VALUES:
            if not aliased:
                return line, f"more than {MAX_VALUES} values in one file"
            return line, (
                f"its aliases expand to more than {MAX_VALUES} values; "
                "write the values out instead of repeating aliases"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                return line, f"nested more than {MAX_DEPTH} levels deep"
            open_nodes.append((event.anchor, 1))
        else:
            if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                sizes[event.anchor] = 1
            if open_nodes:
                parent, so_far = open_nodes[-1]
                open_nodes[-1] = (parent, so_far + size)
    return None


def _duplicate_keys(
    node: yaml.Node, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                yield (*loc, key), key_node
            seen.add(key)
            yield from _duplicate_keys(value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


def _line_of(node: yaml.Node, loc: Iterable[str | int]) -> int:
    """Return the 1-based line of the deepest node along ``loc`` that exists in the file."""
    current = node
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            child = next((v for k, v in current.value if str(k.value) == part), None)
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            child = current.value[part] if 0 <= part < len(current.value) else None
        if child is None:
            break
        current = child
    return int(current.start_mark.line) + 1


def _format_loc(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _validation_problems(
    path: Path, node: yaml.Node, error: ValidationError, model: type[BaseModel]
) -> list[Problem]:
    problems = []
    details = error.errors()
    nested = {_clean_loc(d["loc"])[:n] for d in details for n in range(len(_clean_loc(d["loc"])))}
    for detail in details:
        loc = _clean_loc(detail["loc"])
        if detail["type"] == "too_short" and loc in nested:
            continue  # pydantic counts only valid items; the items' own errors say more
        problems.append(
            Problem(path, _line_of(node, loc), _format_loc(loc) or None, _plain(detail, model))
        )
    return problems


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union-branch names pydantic puts in error locations (e.g. 'function-after')."""
    return tuple(p for p in loc if isinstance(p, int) or not _is_internal_loc(p))


def _is_internal_loc(part: str) -> bool:
    return part.startswith(("function-", "constrained-"))


def _plain(detail: ErrorDetails, model: type[BaseModel]) -> str:
    """Turn one pydantic error into a sentence an editor understands."""
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    value = detail.get("input")
    if isinstance(value, str) and value.lstrip().upper().startswith(DRAFT_MARKER):
        return f"still a draft placeholder: {value.strip()[:80]!r}"
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        name = str(detail["loc"][-1])
        allowed = _allowed_fields(model, detail["loc"][:-1])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown field '{name}' (allowed here: {', '.join(allowed)}){hint}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        want, got = ctx.get("min_length"), ctx.get("actual_length")
        return f"needs at least {want} {'item' if want == 1 else 'items'}, found {got}"
    if kind == "string_too_long":
        return f"too long: at most {ctx.get('max_length')} characters"
    if kind == "enum":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"must be one of: {expected}"
    if kind == "string_pattern_mismatch":
        return "must be a slug: lower-case letters and digits joined by single dashes"
    if kind.startswith("url"):
        return f"not a valid http(s) URL: {value!r}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of fields, got {_type_name(value)}"
    if kind in {"tuple_type", "list_type"}:
        return f"must be a list, got {_type_name(value)}"
    if kind == "string_type":
        return f"must be text, got {_type_name(value)}"
    if kind == "value_error":
        return str(ctx.get("error", detail["msg"]))
    return str(detail["msg"])


def _type_name(value: object) -> str:
    names = {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list"}
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    return names.get(type(value), type(value).__name__)


def _allowed_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Return the field names allowed at ``loc`` inside ``model``."""
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        nested = _model_in(info.annotation) if info is not None else None
        if nested is None:
            return []
        current = nested
    return list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
