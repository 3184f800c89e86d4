"""The rubric grader, as a content author writing look_for terms and a member answering see it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prepbot.content.model import Rubric
from prepbot.core.grading import Grade, compile_rubric, grade

SRC = Path(__file__).resolve().parents[2] / "src"

GRADIENT_SYNC = Rubric.model_validate(
    {
        "key_points": [
            {
                "id": "all-reduce",
                "point": "Frame it as an all-reduce: every worker ends with the summed gradient.",
                "look_for": ["all-reduce", "collective communication"],
            },
            {
                "id": "ring",
                "point": "Ring all-reduce passes chunks between neighbours.",
                "look_for": ["ring all-reduce", "ring & neighbour"],
            },
            {
                "id": "cost",
                "point": "Each GPU sends about 2(N-1)/N of the gradient, whatever N is.",
                "look_for": ["2(N-1)/N", "bandwidth & constant", "1,000 GPUs & same traffic"],
            },
            {
                "id": "phases",
                "point": "A reduce-scatter phase, then an all-gather phase.",
                "look_for": ["reduce-scatter", "all-gather"],
            },
            {
                "id": "practical",
                "point": "NCCL, gradient bucketing, overlap with the backward pass.",
                "look_for": ["NCCL", "gradient bucketing", "overlap & backward pass"],
            },
        ],
        "red_flags": [
            {
                "id": "parameter-server",
                "flag": "A central parameter server that every GPU talks to.",
                "look_for": ["parameter server"],
            },
        ],
    }
)

EXPLAINED = (
    "I would use ring all-reduce. Each GPU splits its gradient into chunks; in the "
    "reduce-scatter phase it passes one chunk to its neighbour and adds what it receives, then "
    "an all-gather phase spreads the finished chunks. So each GPU sends about 2(N-1)/N of the "
    "gradient. In practice NCCL does this, and we overlap it with the backward pass."
)


def covered(answer: str, rubric: Rubric = GRADIENT_SYNC) -> list[str]:
    return list(grade(answer, rubric).covered_ids)


def flags(answer: str, rubric: Rubric = GRADIENT_SYNC) -> list[str]:
    return [m.id for m in grade(answer, rubric).red_flags]


def matched(answer: str, point: str, rubric: Rubric = GRADIENT_SYNC) -> tuple[str, ...]:
    found = grade(answer, rubric)
    return next(m.matched for m in (*found.covered, *found.red_flags) if m.id == point)


def rubric_with(*look_for: str) -> Rubric:
    """Return a rubric whose first key point is found by these terms only."""
    return Rubric.model_validate(
        {
            "key_points": [
                {"id": "target", "point": "The point under test.", "look_for": list(look_for)},
                {"id": "other", "point": "Something else.", "look_for": ["zebra crossing"]},
                {"id": "third", "point": "And another.", "look_for": ["quokka habitat"]},
            ]
        }
    )


# -- what counts as the same words -----------------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["all-reduce", "All-Reduce", "all reduce", "allreduce", "ALLREDUCE", "all_reduce"]
)
def test_case_hyphens_and_writing_words_together_do_not_matter(written: str):
    answer = f"I would run an {written} after each backward pass."
    assert "all-reduce" in covered(answer)
    assert matched(answer, "all-reduce") == (written,)


def test_a_term_written_as_one_word_matches_the_words_written_apart():
    rubric = rubric_with("allreduce")
    assert covered("Use an all-reduce here.", rubric) == ["target"]
    assert covered("Use an all reduce here.", rubric) == ["target"]


@pytest.mark.parametrize(
    ("answer", "point", "words"),
    [
        ("We would keep several parameter servers.", "parameter-server", "parameter servers"),
        ("Our Parameter-Servers hold the weights.", "parameter-server", "Parameter-Servers"),
        ("The parameter server's links fill up.", "parameter-server", "parameter server's"),
        ("The GPUs all-reduced their gradients.", "all-reduce", "all-reduced"),
        ("Gradient buckets are sent as soon as they fill.", "practical", "Gradient buckets"),
        ("We rely on gradients bucketed by size.", "practical", "gradients bucketed"),
    ],
)
def test_plurals_and_simple_suffixes_match(answer: str, point: str, words: str):
    assert matched(answer, point) == (words,)


def test_a_phrase_with_an_ing_word_matches_its_other_forms():
    rubric = rubric_with("fine-tuning")
    assert covered("I would fine-tune the model on the legal corpus.", rubric) == ["target"]
    assert covered("A model finetuned on legal text.", rubric) == ["target"]


def test_apostrophes_do_not_matter():
    rubric = rubric_with("don't retrain")
    assert covered("First, dont retrain: find out why.", rubric) == ["target"]
    assert covered("First, don\u2019t retrain.", rubric) == ["target"]


def test_accents_do_not_matter():
    rubric = rubric_with("naïve Bayes")
    assert covered("A naive bayes baseline first.", rubric) == ["target"]
    assert matched("A Naïve-Bayes baseline first.", "target", rubric) == ("Naïve-Bayes",)


def test_numbers_match_with_or_without_thousands_separators():
    answer = "With 1000 GPUs each one sends the same traffic as with eight."
    assert "cost" in covered(answer)


@pytest.mark.parametrize(
    ("answer", "point"),
    [
        ("Do not centralise it in a paramter server.", None),  # negated, but see below
        ("Put a paramter server in the middle.", "parameter-server"),
        ("Put a parameter sever in the middle.", "parameter-server"),
        ("I would use an all-redcue.", "all-reduce"),
        ("Then all-gahter the chunks.", "phases"),
    ],
)
def test_one_typo_in_a_long_word_still_matches(answer: str, point: str | None):
    found = grade(answer, GRADIENT_SYNC)
    ids = [m.id for m in (*found.covered, *found.red_flags)]
    assert ids == ([point] if point else [])


def test_short_words_and_real_words_one_letter_away_do_not_match():
    assert covered("Use NCLL for it.") == []  # four letters: must be exact
    rubric = rubric_with("token budget")
    assert covered("The taken budget was too small.", rubric) == []  # another word, not a typo
    assert covered("The tokne budget was too small.", rubric) == ["target"]
    layer = rubric_with("layer norm")
    assert covered("We fix the later norm.", layer) == []


def test_a_phrase_does_not_match_across_a_sentence_end_or_a_comma():
    assert "ring" not in covered("Form a ring. All-reduce is then cheap.")
    assert "ring" not in covered("Form a ring, all-reduce the gradients.")


def test_the_matched_words_are_the_answer_s_own_words():
    answer = "Try Ring All-Reduce, done with NCCL over gradient-bucketing and a paramter server."
    found = grade(answer, GRADIENT_SYNC).to_json()
    assert found["matched"]["ring"] == ["Ring All-Reduce"]
    assert found["matched"]["all-reduce"] == ["All-Reduce"]
    assert found["matched"]["practical"] == ["NCCL", "gradient-bucketing"]
    assert found["matched"]["parameter-server"] == ["paramter server"]


def test_a_term_inside_a_longer_one_and_a_term_said_again_are_each_found():
    rubric = Rubric.model_validate(
        {
            "key_points": [
                {"id": "ring", "point": "Ring.", "look_for": ["ring"]},
                {
                    "id": "ring-all-reduce",
                    "point": "Ring all-reduce.",
                    "look_for": ["ring all-reduce"],
                },
                {"id": "other", "point": "Something else.", "look_for": ["quokka habitat"]},
            ]
        }
    )
    answer = "A ring all-reduce sums the gradients, and a second Ring then RING allreduce again."
    found = grade(answer, rubric).to_json()
    assert found["matched"] == {
        "ring": ["ring", "Ring", "RING"],
        "ring-all-reduce": ["ring all-reduce", "RING allreduce"],
    }


def test_every_run_of_whole_words_that_spells_a_phrase_is_found():
    """One pass over the answer finds what trying every run of its words would find."""
    import random
    from itertools import pairwise

    from prepbot.core.grading import _Reading

    rubric = compile_rubric.__wrapped__(GRADIENT_SYNC)
    phrases = set(rubric._phrases)
    # Phrases cut anywhere, so that words of the answer spell them in unexpected ways.
    chunks = ["the", "not", ",", ".", "ring", "rings", "all-reduce", "N", "1,000"]
    for phrase in sorted(phrases):
        cut = random.Random(phrase).sample(range(1, len(phrase)), min(2, len(phrase) - 1))
        chunks += [phrase[a:b] for a, b in pairwise(sorted({0, len(phrase), *cut}))]
    pick = random.Random(13)
    for _ in range(300):
        answer = " ".join(pick.choice(chunks) for _ in range(pick.randrange(1, 30)))
        read = _Reading(rubric, answer)
        keys = read.keys
        every: dict[str, list[tuple[int, int]]] = {}
        for first in range(len(keys)):
            for last in range(first, len(keys)):
                if "".join(keys[first : last + 1]) in phrases:
                    every.setdefault("".join(keys[first : last + 1]), []).append((first, last))
        assert read.find(rubric._phrase_set, rubric._beginnings) == every, answer


# -- A & B terms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "The bandwidth each GPU needs stays constant.",
        "It is constant: the bandwidth does not grow with the number of GPUs.",
    ],
)
def test_an_and_term_matches_both_phrases_in_one_sentence_in_any_order(answer: str):
    assert "cost" in covered(answer)


def test_an_and_term_needs_both_phrases_in_the_same_sentence():
    assert "cost" not in covered("Bandwidth matters. The number of GPUs is constant.")
    assert "cost" not in covered("The bandwidth is the bottleneck.")


def test_an_and_term_reports_the_words_of_both_phrases():
    assert matched("The bandwidth stays constant as we add GPUs.", "cost") == (
        "bandwidth",
        "constant",
    )


# -- negation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "I would not use a parameter server.",
        "I would never put a central parameter server in the middle.",
        "Don't send all the gradients to a parameter server.",
        "Don\u2019t use a parameter server.",  # a curly apostrophe
        "I wouldn't use a parameter server at this scale.",
        "Avoid a parameter server here.",
        "Use ring all-reduce instead of a parameter server.",
        "Use ring all-reduce rather than a parameter server.",
        "No parameter server: it would be the bottleneck.",
        "This works without any parameter server.",
        "Skip the parameter server entirely.",
    ],
)
def test_a_negated_mention_raises_no_red_flag(answer: str):
    assert flags(answer) == []


def test_the_same_mention_without_negation_raises_the_red_flag():
    assert flags("I would use a parameter server.") == ["parameter-server"]
    assert matched("I would use a parameter server.", "parameter-server") == ("parameter server",)


@pytest.mark.parametrize(
    "answer",
    [
        "I would not use an all-reduce here.",
        "Without all-reduce the workers drift apart.",
        "We can't rely on NCCL.",
    ],
)
def test_a_negated_mention_makes_no_key_point(answer: str):
    assert covered(answer) == []


def test_negation_stops_at_the_end_of_its_clause():
    answer = "I would not use a parameter server, but ring all-reduce."
    assert flags(answer) == []
    assert covered(answer) == ["all-reduce", "ring"]
    answer = "Instead of a parameter server, use an all-reduce."
    assert (flags(answer), covered(answer)) == ([], ["all-reduce"])
    answer = "There is no central server and ring all-reduce spreads the load."
    assert covered(answer) == ["all-reduce", "ring"]


def test_negation_reaches_only_a_few_words():
    answer = (
        "No one in my team had ever thought about how gradients travel between machines "
        "until we tried ring all-reduce."
    )
    assert covered(answer) == ["all-reduce", "ring"]
    assert covered("No one ever tried ring all-reduce.") == []


def test_a_skip_connection_is_not_a_refusal():
    rubric = rubric_with("learn the residual", "identity & residual")
    assert covered("With a skip connection the block only has to learn the residual.", rubric)
    assert covered("Skip connections carry the identity, so the layers learn a residual.", rubric)
    assert not covered("Skip learning the residual here.", rubric)


def test_not_only_is_not_a_negation():
    assert "practical" in covered("Not only NCCL matters here: so does the topology.")
    assert "practical" in covered("No doubt NCCL is what runs it.")


@pytest.mark.parametrize(
    "answer",
    [
        "A parameter server would not scale to 1,000 GPUs.",
        "Parameter servers don't scale.",
        "A central parameter server is never the answer here.",
    ],
)
def test_a_red_flag_named_and_then_rejected_is_not_raised(answer: str):
    assert flags(answer) == []


@pytest.mark.parametrize(
    "answer",
    [
        "NCCL is overkill for this.",
        "NCCL isn't needed here.",
        "NCCL is not really a concern at this size.",
        "Gradient bucketing and all that is pointless.",
    ],
)
def test_a_term_dismissed_right_after_it_is_named_makes_no_point(answer: str):
    assert covered(answer) == []


def test_two_cues_in_a_row_cancel():
    assert flags("You can't avoid a parameter server at first.") == ["parameter-server"]
    assert covered("Don't forget NCCL.") == ["practical"]


def test_a_key_point_named_and_then_negated_still_counts():
    # "doesn't" after the term says something about it; it does not reject it.
    assert covered("Ring all-reduce doesn't need a central node.") == ["all-reduce", "ring"]


def test_a_cue_inside_an_and_term_does_not_negate_it():
    rubric = rubric_with("no & bottleneck")
    assert covered("With a ring no single node becomes a bottleneck.", rubric) == ["target"]


# -- keyword stuffing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "ring all-reduce, reduce-scatter, all-gather, 2(N-1)/N, NCCL, gradient bucketing",
        "Ring all-reduce reduce-scatter all-gather NCCL gradient bucketing",
        "- ring all-reduce\n- reduce-scatter\n- all-gather\n- NCCL",
        "Key concepts: ring all-reduce, reduce-scatter, all-gather, NCCL, bandwidth.",
        "all-reduce, NCCL, tree, Horovod, LAMB, warmup, async SGD, ZeRO",  # few of them terms
    ],
)
def test_a_bare_list_of_terms_earns_no_points_and_is_stuffed(answer: str):
    found = grade(answer, GRADIENT_SYNC)
    assert found.stuffed
    assert found.points == 0
    assert found.missed == ("all-reduce", "ring", "cost", "phases", "practical")


def test_the_same_terms_explained_earn_every_point():
    found = grade(EXPLAINED, GRADIENT_SYNC)
    assert not found.stuffed
    assert found.covered_ids == ("all-reduce", "ring", "cost", "phases", "practical")


def test_an_enumeration_framed_by_an_explanation_still_counts():
    # As an interviewer reads it: the list is what the first sentence announces.
    answer = (
        "I would use ring all-reduce, because each GPU only ever talks to its neighbour and "
        "the load is spread evenly. It runs in two phases: reduce-scatter, all-gather."
    )
    found = grade(answer, GRADIENT_SYNC)
    assert found.covered_ids == ("all-reduce", "ring", "phases")
    assert not found.stuffed


def test_a_short_list_of_items_with_slashes_or_pluses_is_a_list():
    assert grade("ring all-reduce / NCCL / bucketing / ZeRO", GRADIENT_SYNC).stuffed
    assert grade("all-reduce + NCCL + overlap + FSDP", GRADIENT_SYNC).stuffed
    assert not grade("Ring all-reduce + NCCL.", GRADIENT_SYNC).stuffed


def test_a_short_answer_naming_one_or_two_terms_is_not_a_list():
    assert covered("Ring all-reduce.") == ["all-reduce", "ring"]
    found = grade("I'd use ring all-reduce with NCCL.", GRADIENT_SYNC)
    assert found.covered_ids == ("all-reduce", "ring", "practical")
    assert not found.stuffed


def test_a_terse_but_explained_answer_is_not_a_list():
    answer = (
        "Ring all-reduce: a reduce-scatter then an all-gather, so each GPU sends about "
        "2(N-1)/N of the gradient regardless of the GPU count."
    )
    found = grade(answer, GRADIENT_SYNC)
    assert found.covered_ids == ("all-reduce", "ring", "cost", "phases")
    assert not found.stuffed


def test_a_listed_red_flag_is_not_raised():
    answer = "parameter server, all-reduce, NCCL, reduce-scatter, Horovod"
    assert flags(answer) == []


# -- the grade as a whole --------------------------------------------------------------------------


def test_an_empty_answer_misses_every_point():
    found = grade("", GRADIENT_SYNC)
    assert found == Grade(
        covered=(), missed=("all-reduce", "ring", "cost", "phases", "practical"), red_flags=()
    )


def test_points_and_flags_follow_rubric_order_and_print_as_json():
    answer = "Put a parameter server first; NCCL then all-reduce the rest."
    assert grade(answer, GRADIENT_SYNC).to_json() == {
        "covered": ["all-reduce", "practical"],
        "missed": ["ring", "cost", "phases"],
        "red_flags": ["parameter-server"],
        "matched": {
            "all-reduce": ["all-reduce"],
            "practical": ["NCCL"],
            "parameter-server": ["parameter server"],
        },
        "stuffed": False,
    }


def test_grades_stay_the_same_when_the_word_memory_fills_up(monkeypatch: pytest.MonkeyPatch):
    answers = [f"{EXPLAINED} Word{n} and parameter servers{n}." for n in range(30)]
    expected = [grade(a, GRADIENT_SYNC) for a in answers]
    monkeypatch.setattr("prepbot.core.grading.WORD_CACHE_LIMIT", 20)
    fresh = compile_rubric.__wrapped__(GRADIENT_SYNC)
    assert [fresh.grade(a) for a in answers] == expected
    every_word = {w for a in answers for w in a.replace(".", " ").split()}
    assert len(fresh._memory[0]) < len(every_word)  # it started afresh instead of growing


def test_threads_may_share_a_rubric_while_its_word_memory_starts_afresh(
    monkeypatch: pytest.MonkeyPatch,
):
    from concurrent.futures import ThreadPoolExecutor

    answers = [f"{EXPLAINED} Word{n} and parameter servers{n}." for n in range(200)]
    expected = [grade(a, GRADIENT_SYNC) for a in answers]
    monkeypatch.setattr("prepbot.core.grading.WORD_CACHE_LIMIT", 30)
    shared = compile_rubric.__wrapped__(GRADIENT_SYNC)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(shared.grade, answers)) == expected


def test_a_rubric_is_compiled_once_and_equal_rubrics_share_it():
    copy = Rubric.model_validate(GRADIENT_SYNC.model_dump())
    assert compile_rubric(GRADIENT_SYNC) is compile_rubric(copy)


def test_grading_is_the_same_every_time_and_in_every_process():
    answers = [EXPLAINED, "I would not use a parameter server, but ring all-reduce.", "x"]
    here = [grade(a, GRADIENT_SYNC).to_json() for a in answers]
    assert here == [grade(a, GRADIENT_SYNC).to_json() for a in answers]
    script = (
        "import json, sys\n"
        "from prepbot.content.model import Rubric\n"
        "from prepbot.core.grading import grade\n"
        "rubric = Rubric.model_validate_json(sys.argv[1])\n"
        "print(json.dumps([grade(a, rubric).to_json() for a in json.loads(sys.argv[2])]))\n"
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, GRADIENT_SYNC.model_dump_json(), json.dumps(answers)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(SRC)},
        )
        assert json.loads(done.stdout) == here


def test_a_round_of_answers_grades_quickly():
    import time

    answers = [f"{EXPLAINED} Answer number {n}." for n in range(2_000)]
    started = time.process_time()
    for answer in answers:
        grade(answer, GRADIENT_SYNC)
    assert time.process_time() - started < 2.0  # ~0.25 s here; generous for slow CI machines


def test_a_red_flag_that_says_x_alone_is_rejected_by_not_just_while_a_key_point_is_kept():
    rubric = Rubric.model_validate(
        {
            "key_points": [
                {"id": "diagnose", "point": "Diagnose first.", "look_for": ["find out why"]},
                {"id": "inputs", "point": "Watch the inputs.", "look_for": ["monitor inputs"]},
                {"id": "golden", "point": "Keep a golden set.", "look_for": ["golden set"]},
            ],
            "red_flags": [
                {"id": "blind", "flag": "Retrains blindly.", "look_for": ["just retrain"]},
            ],
        }
    )
    assert flags("I would just retrain on last week's data.", rubric) == ["blind"]
    assert flags("I wouldn't just retrain; first find out why.", rubric) == []
    assert flags("Don't just retrain on last week's data.", rubric) == []
    # "not just X but Y" still makes the point X for a key point.
    assert "inputs" in covered("We should not just monitor inputs but also outputs.", rubric)
