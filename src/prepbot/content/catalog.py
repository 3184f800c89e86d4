"""The catalog: every loaded scenario by id, the topic vocabulary, and ranked search.

The same catalog answers ``prepbot content search/show`` in the terminal and ``/prep search``
and ``/prep show`` on every platform. Search is forgiving: case, plurals, number formatting
("1,000" = "1000"), word prefixes ("sync" finds "synchronize") and small typos. A search can
match some scenarios on their question only (not on what their reveal shows), so a round still
open cannot be found by words of its answer. Topics are found by id or name in any case, with
the nearest ones suggested for a typo. Pure and in memory; imports no database and no chat
platform.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from rapidfuzz import fuzz
from rapidfuzz.distance import Indel, Levenshtein
from rapidfuzz.process import extract

from prepbot.content.model import Scenario, Topic

FIELD_WEIGHTS: dict[str, float] = {
    "title": 3.0,
    "id": 2.0,
    "topics": 2.5,
    "prompts": 2.0,
    "company": 2.0,
    "author": 2.0,
    "insights": 1.0,
    "body": 0.6,
    "answer": 0.6,
}
ANSWER_FIELDS = frozenset({"insights", "answer"})  # what only the reveal shows
EXACT, PREFIX, FUZZY = 1.0, 0.6, 0.75
TOPIC_NEAR_MISS = 0.8  # normalized similarity a typed word needs to a topic's word
_STOPWORD_TEXT = (
    "a an and are as at be by can do does for from how i in into is it its of on or so that the "
    "this to we what when which who why will with would you your"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def normalize(text: str) -> list[str]:
    """Split text into search terms: lower case, numbers without separators, plurals folded."""
    text = re.sub(r"(?<=\d)[,_](?=\d{3}\b)", "", text.lower())
    return [_stem(word) for word in re.findall(r"[a-z0-9]+", text)]


def _stem(word: str) -> str:
    """Fold the common English plural forms onto the singular."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("us"):
        # "gpus" and "cpus" are plurals; "status" and "corpus" are not.
        return word[:-1] if not re.search(r"[aeiouy]", word[:-2]) else word
    if word.endswith("s") and not word.endswith(("ss", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class SearchHit:
    """One search result: the scenario and how well it matched."""

    scenario: Scenario
    score: float
    matched: tuple[str, ...]


@dataclass(frozen=True)
class _SearchIndex:
    """Each scenario's weighted terms (all of them, and its question's alone), and their idf."""

    weights: dict[str, dict[str, float]]
    question_weights: dict[str, dict[str, float]]
    postings: dict[str, set[str]]
    vocabulary: list[str]
    idf: dict[str, float]

    @classmethod
    def of(cls, scenarios: Collection[Scenario]) -> _SearchIndex:
        """Index the scenarios' searchable text."""
        all_weights: dict[str, dict[str, float]] = {}
        question_weights: dict[str, dict[str, float]] = {}
        postings: dict[str, set[str]] = defaultdict(set)
        for scenario in scenarios:
            weights: dict[str, float] = defaultdict(float)
            question: dict[str, float] = defaultdict(float)
            for field_name, texts in scenario.searchable_fields().items():
                for text in texts:
                    for term in normalize(text):
                        weights[term] += FIELD_WEIGHTS[field_name]
                        if field_name not in ANSWER_FIELDS:
                            question[term] += FIELD_WEIGHTS[field_name]
            all_weights[scenario.id] = dict(weights)
            question_weights[scenario.id] = dict(question)
            for term in weights:
                postings[term].add(scenario.id)
        total = max(len(scenarios), 1)
        idf = {
            term: math.log(1 + (total - len(ids) + 0.5) / (len(ids) + 0.5))
            for term, ids in postings.items()
        }
        return cls(all_weights, question_weights, dict(postings), sorted(postings), idf)


class Catalog:
    """All scenarios of the loaded packs, looked up by id, topic or words."""

    def __init__(self, scenarios: Iterable[Scenario], topics: dict[str, Topic]) -> None:
        self._by_id = {s.id: s for s in sorted(scenarios, key=lambda s: s.id)}
        self.topics = dict(topics)

    @cached_property
    def _index(self) -> _SearchIndex:
        """Build the search index at the first search, not at start-up.

        Indexing the bank took ~0.5 s of a process's ~1.4 s start (158 scenarios, 2026-12-03),
        paid by every replica, standby and CLI call, most of which never search.
        """
        return _SearchIndex.of(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def scenarios(self) -> list[Scenario]:
        """Return every scenario, ordered by id."""
        return list(self._by_id.values())

    def get(self, scenario_id: str) -> Scenario | None:
        """Return the scenario with this id (case and spacing forgiven), or None."""
        key = "-".join(normalize_id_words(scenario_id))
        return self._by_id.get(scenario_id) or self._by_id.get(key)

    def suggest_ids(self, scenario_id: str, limit: int = 3) -> list[str]:
        """Return the ids closest to a mistyped one, best first."""
        if not self._by_id:
            return []
        matches = extract(scenario_id.lower(), list(self._by_id), limit=limit, score_cutoff=60)
        return [match[0] for match in matches]

    def match_topics(self, typed: str, limit: int = 25) -> list[Topic]:
        """Return the topics a member may mean by what they have typed so far, best first.

        Each typed word is matched against the words of a topic's id and name, ignoring case:
        topics where every word starts one of theirs come first ("RA" finds rag, "distributed
        tr" finds distributed-training), then those where some word does, then near misses
        ("calibraton"). When no topic matches at all, the topics of the scenarios a search
        finds are offered instead ("gradient sync" finds distributed-training).
        """
        topics = sorted(self.topics.values(), key=lambda t: t.id)
        words = [w for w in normalize(typed) if w not in STOPWORDS] or normalize(typed)
        if not words:
            return topics[:limit]
        ranked: list[tuple[tuple[int, float, bool, int, str], Topic]] = []
        for topic in topics:
            own, ids = _topic_words(topic), set(topic.id.split("-"))
            starts = sum(any(w.startswith(word) for w in own) for word in words)
            if starts:
                tier, strength = (0 if starts == len(words) else 1), float(starts)
                on_id = any(w.startswith(word) for w in ids for word in words)
            else:
                strength = sum(_similarity(word, own) for word in words)
                if not strength:
                    continue
                tier, on_id = 2, any(_similarity(word, ids) for word in words)
            ranked.append(((tier, -strength, not on_id, len(topic.id), topic.id), topic))
        if not ranked:
            related = (t for hit in self.search(typed, limit) for t in hit.scenario.topics)
            return [self.topics[t] for t in dict.fromkeys(related) if t in self.topics][:limit]
        return [topic for _, topic in sorted(ranked, key=lambda pair: pair[0])[:limit]]

    def with_topic(self, topic: str) -> list[Scenario]:
        """Return the scenarios tagged with a topic, ordered by id."""
        return [s for s in self._by_id.values() if topic in s.topics]

    def find_topic(self, typed: str) -> str | None:
        """Return the id of the topic ``typed`` names: its id or name, any case, singular or plural.

        "LLM", "llms" and "Large language models" all name ``llm``.
        """
        key = _topic_key(typed)
        if not key:
            return None
        for topic in self.topics.values():
            if key in (_topic_key(topic.id), _topic_key(topic.name)):
                return topic.id
        return None

    def suggest_topics(self, typed: str, limit: int = 3) -> list[str]:
        """Return the ids of the topics nearest a mistyped one, best first."""
        return nearest_topics(typed, self.topics, limit)

    def search(
        self, query: str, limit: int = 10, *, question_only: Collection[str] = ()
    ) -> list[SearchHit]:
        """Rank scenarios by how well they match the words of ``query``, best first.

        Scenarios in ``question_only`` match only on what their question shows, never on their
        insights, trap or follow-ups (their round is open: those are still a secret).
        """
        terms = [t for t in dict.fromkeys(normalize(query)) if t not in STOPWORDS]
        if not terms:
            terms = list(dict.fromkeys(normalize(query)))
        scores: dict[str, float] = defaultdict(float)
        matched: dict[str, list[str]] = defaultdict(list)
        hidden = frozenset(question_only)
        for term in terms:
            for scenario_id, score in self._score_term(term, hidden).items():
                scores[scenario_id] += score
                matched[scenario_id].append(term)
        ranked = sorted(
            scores,
            key=lambda sid: (-len(matched[sid]), -scores[sid], sid),
        )
        return [
            SearchHit(self._by_id[sid], round(scores[sid], 3), tuple(matched[sid]))
            for sid in ranked[:limit]
        ]

    def _score_term(self, term: str, hidden: frozenset[str] = frozenset()) -> dict[str, float]:
        """Score every scenario for one query term, taking its best way of matching."""
        best: dict[str, float] = {}
        index = self._index
        for word, quality in self._expand(term):
            idf = index.idf[word]
            for scenario_id in index.postings[word]:
                weights = index.question_weights if scenario_id in hidden else index.weights
                weight = weights[scenario_id].get(word, 0.0)
                if not weight:
                    continue
                score = quality * idf * (weight * 2.2) / (weight + 1.2)
                if score > best.get(scenario_id, 0.0):
                    best[scenario_id] = score
        return best

    def _expand(self, term: str) -> Sequence[tuple[str, float]]:
        """Return the indexed words a query term stands for, with how good each match is."""
        index = self._index
        if term in index.postings:
            return [(term, EXACT)]
        found: list[tuple[str, float]] = []
        if len(term) >= 3 and not term.isdigit():
            found.extend((w, PREFIX) for w in index.vocabulary if w.startswith(term))
        allowed = 0 if len(term) < 4 or term.isdigit() else 1 if len(term) < 8 else 2
        if allowed:
            for word in index.vocabulary:
                if abs(len(word) - len(term)) <= allowed:
                    distance = Levenshtein.distance(term, word, score_cutoff=allowed)
                    if distance <= allowed:
                        found.append((word, FUZZY - 0.1 * (distance - 1)))
        return found


def _topic_words(topic: Topic) -> set[str]:
    """Return the words of a topic's id and name, as written and with plurals folded."""
    words = set(re.findall(r"[a-z0-9]+", f"{topic.id} {topic.name}".lower()))
    return {f for w in words - STOPWORDS for f in (w, _stem(w))}


def _similarity(word: str, own: set[str]) -> float:
    """Return how nearly a typed word (3+ letters) spells, or begins, one of a topic's words."""
    if len(word) < 3:
        return 0.0
    best = max(
        (
            Indel.normalized_similarity(word, candidate)
            for w in own
            for candidate in (w, w[: len(word)])
        ),
        default=0.0,
    )
    return best if best >= TOPIC_NEAR_MISS else 0.0


SPELLING_CUTOFF = 75  # rapidfuzz ratio a topic id or name must reach to be a spelling match
MEANING_WEIGHT = 40  # what one typed word found in a topic's name or description is worth


def nearest_topics(typed: str, topics: dict[str, Topic], limit: int = 3) -> list[str]:
    """Return the ids of the topics a typed word most likely means, best first.

    A topic scores by spelling (its id or name against the typed text, so "calibraton" finds
    ``calibration``) and by meaning (each typed word found among its name's and description's
    words, so "rlhf" finds the topic whose description names RLHF); a near-exact spelling
    beats a description that only mentions the word.
    """
    key = _topic_key(typed) or typed.lower()
    words = {w for w in normalize(typed) if len(w) >= 3}
    scored: list[tuple[float, str]] = []
    for topic in topics.values():
        spelling = max(
            fuzz.ratio(key, _topic_key(topic.id)), fuzz.ratio(key, _topic_key(topic.name))
        )
        vocabulary = set(normalize(f"{topic.id} {topic.name} {topic.description or ''}"))
        hits = sum(
            1
            for w in words
            if w in vocabulary or (len(w) >= 5 and any(v.startswith(w) for v in vocabulary))
        )
        score = (spelling if spelling >= SPELLING_CUTOFF else 0) + MEANING_WEIGHT * hits
        if spelling >= SPELLING_CUTOFF or hits:
            scored.append((score, topic.id))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [topic_id for _, topic_id in scored[:limit]]


def _topic_key(text: str) -> str:
    """Return a topic id or name as comparable words: lower case, plurals folded, dashed."""
    return "-".join(normalize(text))


def normalize_id_words(text: str) -> list[str]:
    """Split a typed id into its lower-case words."""
    return re.findall(r"[a-z0-9]+", text.lower())
