"""The rubric grader: which key points an answer makes, which red flags it raises, and why.

Pure and deterministic: an answer's text and a scenario's rubric in, a ``Grade`` out. Owns
term matching (case, plurals, hyphenation, small typos), negation and the keyword-stuffing
rule. Imports only the content model and rapidfuzz; no database, no chat platform, no network.

How a ``look_for`` term matches
    A term is a short phrase matched as a contiguous run of the answer's words, after both are
    normalised the same way: case and accents are ignored; hyphens, underscores, slashes and
    brackets are word boundaries, and words may be written apart or together ("all-reduce" =
    "all reduce" = "allreduce", in either direction); plurals and simple suffixes are folded
    ("shards", "sharded", "sharding" = "shard"; "1,000" = "1000"); a word of five letters or
    more also matches with one typo (two from nine letters), if its first letter is right and,
    up to six letters, the typo is a missing, extra or swapped letter rather than a different
    one ("paramter" = "parameter", "tokne" = "token", but "taken" is not "token"). A term
    ``A & B`` matches when both phrases appear in the same sentence, in any order. A term never
    matches across a sentence end or a comma, colon, semicolon or other list separator (see
    pieces below). A key point is covered (a red flag raised) when any of its terms matches,
    not negated and not only in a list.

Negation
    A match does not count when a negation cue stands at most ``NEGATION_WINDOW`` (6) words before
    it (little words such as "a", "the", "to" not counted) in the same clause: not, no, never, nor,
    neither, none, without, avoid, skip, cannot, any "n't" word (don't, wouldn't, ...), "instead of"
    and "rather than". A clause ends at punctuation and at a joining word (and, but, so, because,
    which, while, instead, ...), so in "I would not use a parameter server, but ring all-reduce"
    only the parameter server is negated. "not only", "not just", "no doubt", "no matter", "don't
    forget" and "skip connection" negate nothing, two cues in a row cancel ("you can't avoid a
    parameter server"), and a cue that is itself part of the same term's match (the "no" of a term
    "no & bottleneck") does not negate it. A match is also rejected by the words just after it,
    within four words in the same piece: a dismissal ("retraining the tokenizer is overkill":
    overkill, pointless, unnecessary, irrelevant, legacy, ...) or a negated need ("LAMB isn't
    needed", "non-IID is not really a concern", "X doesn't matter"); "all-reduce doesn't need a
    central node" still makes its point. A red flag is also not raised when any verb's negation
    (not, never, cannot, "n't") follows it within three words in the same clause: "a parameter
    server would not scale" rejects it.

Keyword stuffing
    The answer is cut into *pieces*: the words between two punctuation marks (commas, colons,
    semicolons, sentence ends, line breaks, dashes, and " / ", " + ", " | " between spaces). An
    answer of four pieces or more that average at most ``LIST_WORDS`` (2.25) words each (words
    of two characters or more) is a bare list of terms, as in "ring all-reduce, NCCL, bucketing,
    ZeRO", and none of its matches counts: it covers no key point and raises no red flag. So
    does a piece piled with the terms of three or more key points or red flags and hardly
    another word (at most one free word per three matches; a free word is a word of three
    letters or more that is not part of a match, a negation cue or a filler such as "the",
    "and", "with"), as in "ring all-reduce reduce-scatter NCCL bucketing". ``stuffed`` is true
    when a key point lost its credit this way. An explained answer keeps the credit of an
    enumeration it frames ("retriever metrics: recall@k, MRR"), as an interviewer would, and a
    one-term answer ("Ring all-reduce.") still earns its point.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any

from rapidfuzz import process
from rapidfuzz.distance import OSA

from prepbot.content.model import Rubric

NEGATION_WINDOW = 6
"""How many words before a match a negation cue reaches (within the same clause)."""
MIN_FUZZY_LENGTH = 5
"""The shortest word that may match with a typo; shorter words must match exactly."""
LONG_WORD = 9
"""From this length a word may carry two typos instead of one."""
PILE = 3
"""The rubric items whose terms, piled up in one piece with hardly another word, make a list."""
LIST_PIECES = 4
"""The fewest pieces (runs of words between punctuation) an answer that is a bare list has."""
LIST_WORDS = 2.25
"""The most words (of two characters or more) a piece of a bare-list answer has on average.

In the labelled set, its 38 bare lists average 1.0 to 2.25 words a piece; of its other 304
answers, the tersest with three pieces or more averages 2.33, and the rest more than 3.
"""
WORD_CACHE_LIMIT = 100_000
"""Distinct answer words remembered per rubric before the memory is started afresh."""


@dataclass(frozen=True)
class PointMatch:
    """One key point (or red flag) found in an answer, with the answer's words that showed it."""

    id: str
    matched: tuple[str, ...]


@dataclass(frozen=True)
class Grade:
    """What one answer covered against one rubric."""

    covered: tuple[PointMatch, ...]
    """Key points the answer made, in rubric order."""
    missed: tuple[str, ...]
    """Ids of the key points the answer did not make, in rubric order."""
    red_flags: tuple[PointMatch, ...]
    """Red flags the answer raised, in rubric order."""
    stuffed: bool = False
    """True when the answer reads as a bare list of terms, and so earned less credit."""

    @property
    def points(self) -> int:
        """Return the key points credited: the leaderboard's points for this answer."""
        return len(self.covered)

    @property
    def covered_ids(self) -> tuple[str, ...]:
        """Return the ids of the key points covered."""
        return tuple(m.id for m in self.covered)

    def to_json(self) -> dict[str, Any]:
        """Return the grade as plain JSON data (what ``prepbot content grade`` prints)."""
        return {
            "covered": [m.id for m in self.covered],
            "missed": list(self.missed),
            "red_flags": [m.id for m in self.red_flags],
            "matched": {m.id: list(m.matched) for m in (*self.covered, *self.red_flags)},
            "stuffed": self.stuffed,
        }

    @classmethod
    def from_ids(
        cls, rubric: Rubric, covered: list[str], red_flags: list[str], *, stuffed: bool = False
    ) -> Grade:
        """Build a grade from point ids (as the LLM grader or the database gives them).

        Ids the rubric does not know are dropped; order follows the rubric.
        """
        known = [p.id for p in rubric.key_points]
        flags = [f.id for f in rubric.red_flags]
        return cls(
            covered=tuple(PointMatch(i, ()) for i in known if i in covered),
            missed=tuple(i for i in known if i not in covered),
            red_flags=tuple(PointMatch(i, ()) for i in flags if i in red_flags),
            stuffed=stuffed,
        )


def grade(answer: str, rubric: Rubric) -> Grade:
    """Grade one answer against a rubric (compiled once per rubric, then reused)."""
    return compile_rubric(rubric).grade(answer)


def unreadable_terms(look_for: tuple[str, ...]) -> list[tuple[int, str]]:
    """Return the terms the grader cannot use as written: (index, why), for authors.

    A phrase with no word left once punctuation and symbols are dropped never matches; a term
    left as a single letter or digit ("√d" reads as "d", "9%" as "9") matches any answer that
    says it (in an ``A & B`` pair the other phrase anchors it, so "β & KL" is fine).
    """
    found = []
    for index, term in enumerate(look_for):
        if "&" not in term and sum(map(str.isalnum, term)) > 1:
            continue  # the common case, decided without splitting
        phrases = re.split(r"\s+&\s*|\s*&\s+", term)
        for phrase in phrases:
            if sum(map(str.isalnum, phrase)) > 1:
                continue  # two letters or digits make two words or a longer one: readable
            words = _words_of(phrase)
            if not words:
                found.append((index, f"'{phrase}' has no word the grader can read"))
                break
            if len(phrases) == 1 and len(words) == 1 and len(words[0]) == 1:  # "β & KL" is fine
                found.append(
                    (index, f"'{phrase}' reads as '{words[0]}' only: any answer saying it matches")
                )
                break
    return found


@lru_cache(maxsize=256)
def compile_rubric(rubric: Rubric) -> CompiledRubric:
    """Return the rubric ready for grading; equal rubrics share one compiled copy."""
    return CompiledRubric(rubric)


# -- words -----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"(\d[\d.,]*\d(?![\w'])|[\w']+|[.!?;\n,:])")
"""A number ("1,000", "0.5"), a word (letters, digits, apostrophes) or a punctuation mark that
ends a sentence or a clause. ``_TOKEN.split`` gives the text between tokens and the tokens, in
turn.
"""
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+")
_SAME_LENGTH = str.maketrans({"_": " ", "\u2019": "'", "\u2013": ",", "\u2014": ",", "\u2022": ","})
_SEPARATORS = ((" - ", " , "), (" / ", " , "), (" + ", " , "), (" | ", " , "))
"""What separates the items of a list like a comma does (each replaced by one as long)."""
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|vs)\.", re.IGNORECASE)


def _prepare(text: str) -> str:
    """Return the text made easy to split, character for character as long as the original.

    Underscores become spaces, curly apostrophes straight ones, dashes commas, and the dots of
    "e.g.", "i.e." and "vs." underscores, so they end no sentence.
    """
    if not text.isascii() or "_" in text:
        text = text.translate(_SAME_LENGTH)
    for separator, comma in _SEPARATORS:
        if separator in text:
            text = text.replace(separator, comma)
    if (".g." in text or ".e." in text or "vs." in text) and _ABBREVIATION.search(text):
        text = _ABBREVIATION.sub(lambda m: m.group().replace(".", "_"), text)
    return text


# Word flags, learnt once per distinct word.
_FREE = 1  # a word that explains (counts against a list); bit 1, so "flag & _FREE" counts
_CUE = 2  # a negation cue
_JOINER = 4  # starts a new clause for negation
_SENTENCE = 8  # punctuation that ends a sentence
_CLAUSE = 16  # punctuation that ends a clause
_EXEMPT = 32  # "only", "just": "not only X" negates nothing
_INSTEAD = 64
_OF = 128
_RATHER = 256
_THAN = 512
_LITTLE = 1024  # a short or filler word: not counted in the negation window
_VERB_NOT = 2048  # not, never, n't: negates a red flag named just before it
_DISMISSAL = 4096  # "overkill", "pointless": rejects what was just named
_NEED = 8192  # "needed", "a concern": after a verb's negation, rejects what was just named
_BREAK = _SENTENCE | _CLAUSE
_CUE_LIKE = _CUE | _INSTEAD | _RATHER | _DISMISSAL  # where a negation may be

# Token kinds, one character each, so that a whole answer's kinds are one string.
_SENTENCE_KIND = "."  # punctuation that ends a sentence
_CLAUSE_KIND = ","  # punctuation that ends a clause
_CUE_KIND = "n"  # a negation cue (or the "instead" of "instead of")
_FREE_KIND = "f"  # a free word: one that explains
_WORD_KIND = "w"  # any other word
_LETTER_KIND = "s"  # a one-character word, such as the "N" and "1" of "2(N-1)/N": no word at all
_PAIRED = {"instead": _INSTEAD, "of": _OF, "rather": _RATHER, "than": _THAN}


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CUES = _wordset(
    "not no never nor neither none without avoid avoids avoided avoiding skip skips skipped "
    "skipping cannot dont doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt "
    "couldnt cant"
)
"""Words that negate what follows them (and any word ending in "n't")."""
_VERB_NOTS = _wordset(
    "not never cannot dont doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt cant"
)
"""Cues that negate a red flag named just before them: "a parameter server won't scale"."""
_DISMISSALS = _wordset(
    "overkill overthinking overengineering overengineered overrated overhyped unnecessary "
    "needless pointless useless irrelevant legacy hype unrealistic outdated obsolete gimmick "
    "distraction rabbit"
)
"""Words that reject what was just named: "retraining the tokenizer is overkill"."""
_NEEDS = _wordset(
    "needed necessary required matter matters concern issue problem worth important relevant "
    "useful helpful"
)
"""After a verb's negation, these reject what was just named: "LAMB isn't needed here"."""
_JOINERS = _wordset(
    "and but however although though whereas while because since so then yet which instead "
    "otherwise"
)
"""Words that start a new clause, so a negation before them does not reach past them."""
_EXEMPTS = _wordset("only just merely simply doubt matter forget connection connections")
_LIMITERS = frozenset({"only", "just", "merely", "simply"})
"""After a cue, these undo it: "not only", "not just", "no doubt", "no matter", "don't forget",
"skip connection" (a residual link, not a refusal)."""
_FILLERS = _wordset(
    "the and for with from are was were been being its this that these those you your our also "
    "plus etc via such like into onto has have had can will would could should may might i'd "
    "i'll i'm we'd we'll it's there their they them some any all one e_g_ i_e_ vs_"
)
"""Little words that explain nothing: neither free words nor counted in a negation's reach."""
_NOT_A_STEM = _CUES | _FILLERS | _JOINERS
_PUNCTUATION: dict[str, int] = {
    **dict.fromkeys([".", "!", "?", ";", "\n"], _SENTENCE),
    **dict.fromkeys([",", ":"], _CLAUSE),
}


def _base(word: str) -> str:
    """Return a lower-case word without apostrophes, accents, possessive or plural ending.

    "don't" and "dont" are one word; "GPU's" is "gpu".
    """
    word = word.strip("'")
    if not word.isascii():
        word = "".join(
            c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)
        )
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) <= 3 or not word.isalpha():
        return word.replace(",", "") if _THOUSANDS.fullmatch(word) else word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith("us"):
        # "gpus" and "cpus" are plurals; "status" and "corpus" are not.
        return word[:-1] if not re.search(r"[aeiouy]", word[:-2]) else word
    if word.endswith("s") and not word.endswith(("ss", "is", "ias")):
        return word[:-1]
    return word


def _forms(base: str) -> list[str]:
    """Return a word's base and the stems its -ing/-ed/-ied ending may hide, best first."""
    found = [base]
    if not base.isalpha():
        return found
    if base.endswith("ied") and len(base) > 4:
        found.append(base[:-3] + "y")
    for ending in ("ing", "ed"):
        stem = base[: -len(ending)]
        if base.endswith(ending) and len(stem) >= 3:
            found += [stem + "e", stem]
            if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                found.append(stem[:-1])  # "shipped" -> "ship", but "rolled" -> "roll"
    return [f for f in found if f == base or (len(f) >= 3 and f not in _NOT_A_STEM)]


def _words_of(text: str) -> list[str]:
    """Return the lower-case words of a term, without its punctuation."""
    return [t.lower() for t in _TOKEN.split(_prepare(text))[1::2] if t not in _PUNCTUATION]


# -- compiling a rubric ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    """One ``look_for`` term: the normalised keys of its phrases (two or more for ``A & B``)."""

    parts: tuple[str, ...]


_Span = tuple[int, int]
"""The first and last token of a phrase's match."""
_Match = tuple[tuple[_Span, ...], bool]
"""One place an item's term matches: its phrases' spans, and whether a negation reaches it."""


_Memory = tuple[dict[str, str], dict[str, int], dict[str, str]]
"""What a compiled rubric remembers of answer tokens: key, flags and kind of each."""


@dataclass(frozen=True)
class _Item:
    """A key point or red flag with its compiled terms."""

    id: str
    terms: tuple[_Term, ...]


class CompiledRubric:
    """A rubric turned into normalised phrases, ready to grade many answers quickly.

    Remembers how it normalised each distinct answer word (a bounded memory), so a round's
    answers, which share most of their words, cost little more than reading them.
    """

    def __init__(self, rubric: Rubric) -> None:
        self.rubric = rubric
        look_fors = [p.look_for for p in rubric.key_points] + [f.look_for for f in rubric.red_flags]
        term_words = sorted(
            {_base(word) for terms in look_fors for term in terms for word in _words_of(term)}
        )
        self._forms = _group_forms(term_words)
        self._vocabulary: dict[str, str] = {
            word: self._forms[word] for word in term_words if _fuzzy_candidate(word)
        }
        self.points = tuple(self._item(p.id, p.look_for) for p in rubric.key_points)
        self.flags = tuple(self._item(f.id, f.look_for) for f in rubric.red_flags)
        self._phrases = sorted(
            {p for item in (*self.points, *self.flags) for t in item.terms for p in t.parts}
        )
        self._fuzzy_choices = sorted(self._vocabulary)
        self._phrase_set = frozenset(self._phrases)
        self._beginnings = frozenset(p[:n] for p in self._phrases for n in range(1, len(p) + 1))
        """Every beginning of a phrase: a run of answer tokens whose keys spell none starts none."""
        self._users: dict[str, list[int]] = {}
        """Phrase: the items (key points, then red flags, by index) with a term of it alone."""
        self._pairs_of: dict[str, list[tuple[int, _Term, frozenset[str]]]] = {}
        """Phrase: the ``A & B`` terms whose first phrase it is, each with the index of its item
        and its other phrases."""
        for number, item in enumerate((*self.points, *self.flags)):
            for term in item.terms:
                first, *others = term.parts
                if not others:
                    users = self._users.setdefault(first, [])
                    if number not in users:
                        users.append(number)
                    continue
                self._pairs_of.setdefault(first, []).append((number, term, frozenset(others)))
        self._memory: _Memory = ({}, {}, {})
        """How each answer token seen so far reads: its key, its flags and its kind."""

    def _item(self, item_id: str, look_for: tuple[str, ...]) -> _Item:
        terms = []
        for term in look_for:
            parts = []
            for phrase in re.split(r"\s+&\s*|\s*&\s+", term):
                keys = [self._forms[_base(w)] for w in _words_of(phrase)]
                if keys:
                    joined = "".join(keys)
                    parts.append(joined)
                    if len(keys) > 1:
                        # The words written together ("allreduce"), with their endings.
                        for form in _forms(joined):
                            self._forms.setdefault(form, joined)
                        if _fuzzy_candidate(joined):
                            self._vocabulary.setdefault(joined, joined)
            if parts:
                terms.append(_Term(tuple(dict.fromkeys(parts))))
        return _Item(item_id, tuple(terms))

    # -- reading an answer -------------------------------------------------------------------------

    def _learn(self, tokens: set[str]) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
        """Normalise answer tokens not seen before, remember them, and return the memory.

        The memory returned holds every one of ``tokens``, even if another thread starts the
        memory afresh meanwhile: starting afresh makes new objects rather than emptying these.
        """
        if len(self._memory[0]) + len(tokens) > WORD_CACHE_LIMIT:
            self._memory = ({}, {}, {})
        keys, flags, kinds = memory = self._memory
        for token in tokens:
            if token in keys:
                continue
            low = token.lower().strip("'")
            punctuation = _PUNCTUATION.get(low)
            if punctuation is not None:
                keys[token], flags[token] = "|", punctuation  # "|" is in no phrase: a wall
                kinds[token] = _SENTENCE_KIND if punctuation == _SENTENCE else _CLAUSE_KIND
                continue
            plain = low.replace("'", "")
            flag = 0
            if plain in _CUES or low.endswith("n't"):
                flag |= _CUE
            if plain in _VERB_NOTS or low.endswith("n't"):
                flag |= _VERB_NOT
            if low in _JOINERS:
                flag |= _JOINER
            if low in _EXEMPTS:
                flag |= _EXEMPT
            if plain in _DISMISSALS:
                flag |= _DISMISSAL
            if plain in _NEEDS:
                flag |= _NEED
            if len(plain) < 3 or low in _FILLERS:
                flag |= _LITTLE
            elif plain.isalpha():
                flag |= _FREE
            flag |= _PAIRED.get(low, 0)
            keys[token], flags[token] = (self._key(low) or "'"), flag
            kinds[token] = (
                _CUE_KIND
                if flag & _CUE_LIKE
                else _FREE_KIND
                if flag & _FREE
                else _LETTER_KIND
                if len(token) == 1
                else _WORD_KIND
            )
        return memory

    def _key(self, low: str) -> str:
        """Return the key of an answer word: a term word's key if it is one, else its base."""
        base = _base(low)
        for form in _forms(base):
            key = self._forms.get(form)
            if key is not None:
                return key
        if _fuzzy_candidate(base) and base not in _NOT_A_STEM:
            near = _nearest(base, self._fuzzy_choices)
            if near is not None:
                return self._vocabulary[near]
        return base

    def grade(self, answer: str) -> Grade:
        """Grade one answer against this rubric."""
        read = _Reading(self, answer)
        found = read.find(self._phrase_set, self._beginnings)
        if not found:
            return Grade(covered=(), missed=tuple(p.id for p in self.points), red_flags=())
        matched = self._matches(read, found)
        points, flags = matched[: len(self.points)], matched[len(self.points) :]
        listed = read.lists(matched)
        covered: list[PointMatch] = []
        missed: list[str] = []
        stuffed = False
        for item, matches in zip(self.points, points, strict=True):
            spans, only_listed = read.credit(matches, listed)
            if spans:
                covered.append(PointMatch(item.id, read.words(spans)))
            else:
                missed.append(item.id)
                stuffed = stuffed or only_listed
        raised = []
        for item, matches in zip(self.flags, flags, strict=True):
            spans, _ = read.credit(matches, listed)
            if spans:
                raised.append(PointMatch(item.id, read.words(spans)))
        return Grade(tuple(covered), tuple(missed), tuple(raised), stuffed)

    def _matches(self, read: _Reading, found: dict[str, list[_Span]]) -> list[list[_Match]]:
        """Return each key point's, then each red flag's, matches in the answer.

        Works from the phrases found (a few) to the items that use them, not from every term
        of every item (dozens).
        """
        points = len(self.points)
        matched: list[list[_Match]] = [[] for _ in range(points + len(self.flags))]
        negated, rejected = read.negated, read.rejected
        cued = _CUE_KIND in read.kinds  # else nothing in the answer negates a match
        phrases = found.keys()
        for phrase, spans in found.items():
            for number in self._users.get(phrase, ()):
                red_flag = number >= points
                matched[number] += [
                    (
                        (span,),
                        cued
                        and (
                            negated(span[0], red_flag=red_flag)
                            or rejected(span[1], red_flag=red_flag)
                        ),
                    )
                    for span in spans
                ]
            for number, term, others in self._pairs_of.get(phrase, ()):
                if phrases >= others:  # the answer has every phrase of the term
                    matched[number] += read.together(term, found, number >= points)
        return matched


def _group_forms(words: list[str]) -> dict[str, str]:
    """Map every form of the term words to one key per family ("shard", "sharding", ...)."""
    parent: dict[str, str] = {}

    def root(word: str) -> str:
        while parent[word] != word:
            parent[word] = parent[parent[word]]
            word = parent[word]
        return word

    owner: dict[str, str] = {}
    for word in words:
        parent.setdefault(word, word)
        for form in _forms(word):
            if form in owner:
                a, b = root(owner[form]), root(word)
                if a != b:
                    keep, drop = sorted((a, b), key=lambda w: (len(w), w))
                    parent[drop] = keep
            else:
                owner[form] = word
    return {form: root(word) for form, word in owner.items()} | {w: root(w) for w in words}


def _fuzzy_candidate(word: str) -> bool:
    return len(word) >= MIN_FUZZY_LENGTH and word.isalpha()


def _nearest(word: str, choices: list[str]) -> str | None:
    """Return the term word one typo from ``word`` (two for long words), or None."""
    if not choices:
        return None
    hits = process.extract(word, choices, scorer=OSA.distance, score_cutoff=2, limit=None)
    for choice, distance, _ in sorted(hits, key=lambda hit: (hit[1], hit[2])):
        shortest = min(len(choice), len(word))
        if choice[0] != word[0] or distance > (2 if shortest >= LONG_WORD else 1):
            continue
        if shortest <= 6 and len(choice) == len(word) and sorted(choice) != sorted(word):
            continue  # a different letter in a short word makes another word: taken/token
        return str(choice)
    return None


class _Reading:
    """One answer as the grader reads it: its tokens' keys and kinds, and where phrases match.

    Punctuation tokens are kept (with the key "|", which no phrase contains), so a token's
    index is its place in the answer and no match runs across a sentence or clause end.
    ``kinds`` has one character per token (the ``_..._KIND`` constants), so counting free
    words, finding a token's sentence or clause and looking for a negation cue are string
    operations.
    """

    def __init__(self, rubric: CompiledRubric, text: str) -> None:
        self.text = text
        prepared = _prepare(text)
        self._same = prepared == text
        self._parts = _TOKEN.split(prepared)
        tokens = self.tokens = self._parts[1::2]
        key_of, flag_of, kind_of = rubric._memory
        try:
            self.keys = list(map(key_of.__getitem__, tokens))
        except KeyError:  # a word not seen before
            key_of, flag_of, kind_of = rubric._learn(set(tokens))
            self.keys = list(map(key_of.__getitem__, tokens))
        self._flag_of = flag_of
        self.kinds = "".join(map(kind_of.__getitem__, tokens))
        self._offsets: list[int] | None = None
        self._breaks: str | None = None

    def find(self, phrases: frozenset[str], beginnings: frozenset[str]) -> dict[str, list[_Span]]:
        """Return the (first, last) token indexes of every place each phrase matches whole tokens.

        One pass over the answer: from each token whose key begins a phrase, the keys of the
        tokens after it are added on while they still spell the beginning of one.
        """
        found: dict[str, list[_Span]] = {}
        keys = self.keys
        end = len(keys)
        for first, spelt in enumerate(keys):
            last = first
            while spelt in beginnings:
                if spelt in phrases:
                    found.setdefault(spelt, []).append((first, last))
                last += 1
                if last == end:
                    break
                spelt += keys[last]
        return found

    def _flag(self, index: int) -> int:
        return self._flag_of[self.tokens[index]]

    def negated(
        self, first: int, excluded: frozenset[int] = frozenset(), *, red_flag: bool = False
    ) -> bool:
        """Say whether a negation cue reaches the match starting at token ``first``.

        Looks back over at most ``NEGATION_WINDOW`` words (short and filler words not
        counted) to the start of the clause: punctuation, or a joining word such as "but".
        For a red flag, "don't just retrain" rejects the claim ("not just X" still asserts X
        for a key point, but a red flag is the claim that X alone is enough).
        """
        cue = self.kinds.rfind(_CUE_KIND, 0, first)
        if cue == -1 or self.kinds.rfind(_SENTENCE_KIND, cue, first) != -1:
            return False  # no cue before the match in its sentence: the usual case
        flag = self._flag
        if flag(first) & _JOINER:
            return False
        index = first - 1
        reach = NEGATION_WINDOW
        while index >= cue and reach > 0:
            this = flag(index)
            if this & _BREAK:
                return False
            if index not in excluded:
                if this & _CUE and not (
                    flag(index + 1) & _EXEMPT
                    and not (red_flag and self.tokens[index + 1] in _LIMITERS)
                ):
                    # Two cues in a row cancel: "don't forget", "not without", "can't avoid".
                    return not (index and flag(index - 1) & _CUE)
                if (this & _INSTEAD and flag(index + 1) & _OF) or (
                    this & _RATHER and flag(index + 1) & _THAN
                ):
                    return index + 1 < first  # "instead of" before the match, not inside it
            if this & _JOINER:
                return False
            if not this & _LITTLE:
                reach -= 1
            index -= 1
        return False

    def rejected(
        self, last: int, excluded: frozenset[int] = frozenset(), *, red_flag: bool = False
    ) -> bool:
        """Say whether the words just after the match ending at token ``last`` reject it.

        Within four words (little words not counted) in the same piece: a dismissal
        ("retraining the tokenizer is overkill") or a negated need ("LAMB isn't needed", "not
        really a concern"). A red flag is also rejected by any verb's negation within three
        words in the same clause ("a parameter server would not scale").
        """
        if self.kinds.find(_CUE_KIND, last + 1) == -1:
            return False  # nothing that negates after the match: the usual case
        flag = self._flag
        end = len(self.tokens)
        index = last + 1
        reach = 4
        clause = True  # no joining word passed yet
        while index < end and reach > 0:
            this = flag(index)
            if this & _BREAK:
                return False
            if this & _JOINER:
                clause = False
            elif index not in excluded:
                if this & _DISMISSAL:
                    return True
                if this & _VERB_NOT and not (index + 1 < end and flag(index + 1) & _EXEMPT):
                    if red_flag and clause and reach > 1:
                        return True
                    if self._needs_after(index):
                        return True
            if not this & _LITTLE:
                reach -= 1
            index += 1
        return False

    def _needs_after(self, index: int) -> bool:
        """Say whether a need word ("needed", "a concern") follows within two words."""
        flag = self._flag
        reach = 2
        index += 1
        while index < len(self.tokens) and reach > 0:
            this = flag(index)
            if this & _BREAK:
                return False
            if this & _NEED:
                return True
            if not this & _LITTLE:
                reach -= 1
            index += 1
        return False

    @property
    def breaks(self) -> str:
        """Return the token kinds with every punctuation mark as "."."""
        if self._breaks is None:
            self._breaks = self.kinds.replace(_CLAUSE_KIND, _SENTENCE_KIND)
        return self._breaks

    def together(self, term: _Term, found: dict[str, list[_Span]], red_flag: bool) -> list[_Match]:
        """Return each sentence's match of an ``A & B`` term, as the spans of its phrases.

        Every phrase of the term is in ``found``. A sentence is known by where the sentence
        before it ends (-1 for the first).
        """
        places = [found[part] for part in term.parts]
        kinds = self.kinds
        rfind = kinds.rfind
        groups: list[dict[int, list[_Span]]] = []
        shared: set[int] | None = None
        for spans in places:
            group: dict[int, list[_Span]] = {}
            for span in spans:
                sentence = rfind(_SENTENCE_KIND, 0, span[0])
                if shared is None or sentence in shared:
                    group.setdefault(sentence, []).append(span)
            if not group:
                return []
            shared = set(group)
            groups.append(group)
        assert shared is not None
        matches: list[_Match] = []
        for sentence in sorted(shared):
            by_part = [group[sentence] for group in groups]
            spans = [span for part in by_part for span in part]
            stop = len(kinds) if red_flag else max(last for _, last in spans)
            if kinds.find(_CUE_KIND, sentence + 1, stop) == -1:  # no cue in reach: usual
                matches.append((tuple(spans), False))
                continue
            inside = frozenset(i for first, last in spans for i in range(first, last + 1))
            kept = [
                [
                    span
                    for span in part
                    if not self.negated(span[0], inside, red_flag=red_flag)
                    and not self.rejected(span[1], inside, red_flag=red_flag)
                ]
                for part in by_part
            ]
            if all(kept):
                matches.append((tuple(span for part in kept for span in part), False))
            else:
                matches.append((tuple(spans), True))
        return matches

    def lists(self, matched: list[list[_Match]]) -> set[int]:
        """Return the pieces (numbered from 0) that are bare lists of terms.

        Either every piece, when the whole answer is a list (``LIST_PIECES`` pieces or more
        averaging ``LIST_WORDS`` words or fewer), or the pieces made only of the matches of
        three or more rubric items, with at most one free word per three matches.
        """
        spans = sorted({span for matches in matched for match in matches for span in match[0]})
        if not spans:
            return set()
        breaks = self.breaks
        pieces = breaks.split(_SENTENCE_KIND)
        words = len(breaks) - len(pieces) + 1 - breaks.count(_LETTER_KIND)
        used = len(pieces) - pieces.count("")
        if used >= LIST_PIECES and words <= LIST_WORDS * used:
            return set(range(len(pieces)))  # the whole answer is a list of terms
        if len(spans) < PILE:
            return set()
        # One byte a token: "." punctuation, "f" a free word, "m" where a match starts, "x" the
        # rest of a match (its free words are the term's, not explanation), other letters else.
        marked = bytearray(self.breaks, "ascii")
        end = -1
        for first, last in spans:
            if first > end:
                marked[first] = 109  # "m": a new match, not one overlapping the last
                end = first
            if last > end:
                marked[end + 1 : last + 1] = b"x" * (last - end)
                end = last
        crowded = set()  # pieces of two matches or more and hardly a free word
        for number, letters in enumerate(marked.split(b".")):
            count = letters.count(b"m")
            if count >= 2 and letters.count(b"f") <= count // PILE:
                crowded.add(number)
        if not crowded:
            return set()
        count_breaks = self.breaks.count
        number_of = {first: count_breaks(".", 0, first) for first, _ in spans}
        items = dict.fromkeys(crowded, 0)
        for matches in matched:
            for number in {number_of[first] for m in matches for first, _ in m[0]} & crowded:
                items[number] += 1
        return {number for number, many in items.items() if many >= PILE}

    def credit(self, matches: list[_Match], listed: set[int]) -> tuple[list[tuple[int, int]], bool]:
        """Return the spans that credit an item, and whether it matched only inside lists."""
        credited: list[tuple[int, int]] = []
        in_lists = False
        count_breaks = self.breaks.count
        for spans, negated in matches:
            if negated:
                continue
            if listed and all(count_breaks(".", 0, first) in listed for first, _ in spans):
                in_lists = True
            else:
                credited.extend(spans)
        return credited, in_lists and not credited

    def words(self, spans: list[_Span]) -> tuple[str, ...]:
        """Return the answer's own text of the matched spans, in answer order, each once."""
        if len(spans) > 1:
            widest: list[_Span] = []
            for first, last in sorted(set(spans)):
                if widest and first == widest[-1][0]:
                    widest[-1] = (first, last)  # the longer of two matches that start together
                elif not widest or last > widest[-1][1]:
                    widest.append((first, last))  # else it is inside a longer match
            spans = widest
        parts = self._parts
        if self._same:  # the prepared text is the answer's own: join its tokens and gaps
            return tuple(dict.fromkeys("".join(parts[2 * a + 1 : 2 * b + 2]) for a, b in spans))
        if self._offsets is None:
            # Token i starts where parts 0..2i end: the text before it alternates gap, token.
            self._offsets = [0, *accumulate(map(len, parts))]
        offsets, text = self._offsets, self.text
        return tuple(dict.fromkeys(text[offsets[2 * a + 1] : offsets[2 * b + 2]] for a, b in spans))
