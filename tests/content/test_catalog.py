"""Search and lookup forgive case, plurals, number formats, prefixes and small typos."""

from __future__ import annotations

import pytest

from prepbot.content.catalog import Catalog, normalize
from prepbot.content.loader import load_packs
from tests.conftest import BUILTIN_PACK, PackFactory, scenario_data


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    report = load_packs([BUILTIN_PACK])
    return Catalog((s.scenario for s in report.scenarios), report.topics)


def top(catalog: Catalog, query: str) -> str:
    hits = catalog.search(query)
    assert hits, f"nothing found for {query!r}"
    return hits[0].scenario.id


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gradient sync 1000 GPUs", "google-gradient-sync-1000-gpus"),
        ("calibraton", "apple-calibration-equal-accuracy"),
        ("CALIBRATION", "apple-calibration-equal-accuracy"),
        ("ring all-reduce", "google-gradient-sync-1000-gpus"),
        ("PagedAttention KV cache", "paged-attention-llm-serving-bottleneck"),
        ("federated learning siri", "apple-siri-federated-learning"),
        ("Netflix", "netflix-testing-new-recommender"),
        ("tokenizers", "anthropic-general-tokenizer-legal-medical"),
        ("glioblastoma", "anthropic-general-tokenizer-legal-medical"),
        ("faithfulness retriever", "diagnose-failing-rag-system"),
        ("drift databricks", "databricks-chatbot-accuracy-drift"),
        ("Allie Miller adaptability", "adaptability-interview-questions-ai-age"),
        ("asmah2107 fine-tuning", "llm-domain-expert-fine-tune-or-prompt"),
        ("take-home exam", "model-passes-performance-take-home"),
    ],
)
def test_search_ranks_the_expected_scenario_first(catalog: Catalog, query: str, expected: str):
    assert top(catalog, query) == expected


def test_a_scenario_matching_more_words_outranks_one_matching_fewer(catalog: Catalog):
    hits = catalog.search("gradient GPUs Google")
    assert hits[0].scenario.id == "google-gradient-sync-1000-gpus"
    assert set(hits[0].matched) == {"gradient", "gpu", "google"}
    words = [len(h.matched) for h in hits]
    assert words == sorted(words, reverse=True)  # every hit with all three words comes first


def test_nonsense_finds_nothing(catalog: Catalog):
    assert catalog.search("qwxzv plorkt") == []
    assert catalog.search("   ") == []


def test_normalize_folds_case_plurals_and_thousands():
    assert normalize("1,000 GPUs and Queries") == ["1000", "gpu", "and", "query"]
    assert normalize("classes boxes status") == ["class", "box", "status"]


def test_ids_are_found_forgivingly_and_suggested_when_mistyped(catalog: Catalog):
    assert catalog.get("Google Gradient Sync 1000 GPUs") is not None
    assert catalog.get("no-such-id") is None
    assert catalog.suggest_ids("google-gradient-sync")[0] == "google-gradient-sync-1000-gpus"


def test_topics_filter_scenarios(catalog: Catalog):
    ids = [s.id for s in catalog.with_topic("calibration")]
    assert "apple-calibration-equal-accuracy" in ids
    assert all("calibration" in s.topics for s in catalog.with_topic("calibration"))
    assert len(ids) < len(catalog.scenarios)


def topic_ids(catalog: Catalog, typed: str) -> list[str]:
    return [t.id for t in catalog.match_topics(typed)]


@pytest.mark.parametrize(
    ("typed", "first"),
    [
        ("ra", "rag"),
        ("RA", "rag"),
        ("Calib", "calibration"),
        ("distributed tr", "distributed-training"),
        ("Distributed Training", "distributed-training"),
        ("language mod", "llm"),
        ("search retr", "retrieval"),
        ("fine-tuning", "fine-tuning"),
        ("agents", "agents"),
        ("calibraton", "calibration"),
        ("retreival", "retrieval"),
        ("gradient sync", "distributed-training"),
    ],
)
def test_topic_matching_finds_what_a_member_is_typing(catalog: Catalog, typed: str, first: str):
    assert topic_ids(catalog, typed)[0] == first


def test_topic_matches_by_prefix_rank_before_near_misses_and_partial_matches(catalog: Catalog):
    assert topic_ids(catalog, "ra") == ["rag"]
    # Both words start words of this one; "p" alone starts words of the others.
    found = topic_ids(catalog, "interview p")
    assert found[0] == "interview-prep"
    assert "privacy" in found[1:]
    # A topic named after the word outranks one whose name only contains it.
    assert topic_ids(catalog, "retr")[:2] == ["retrieval", "rag"]
    found = topic_ids(catalog, "llm")
    assert found[0] == "llm"
    assert set(found) == {"llm", "llm-evaluation", "llm-serving"}


def test_topic_matching_offers_at_most_the_limit_and_nothing_for_nonsense(catalog: Catalog):
    assert len(catalog.match_topics("")) == min(25, len(catalog.topics))
    assert len(catalog.match_topics("", limit=3)) == 3
    assert catalog.match_topics("qwxzv plorkt") == []


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("LLM", "llm"),
        ("llms", "llm"),
        ("Large language models", "llm"),
        ("Calibration", "calibration"),
        ("recommender-system", "recommender-systems"),
        ("LLM-Serving", "llm-serving"),
    ],
)
def test_a_topic_is_found_by_id_or_name_in_any_case(catalog: Catalog, typed: str, expected: str):
    assert catalog.find_topic(typed) == expected


def test_a_mistyped_topic_gets_the_nearest_ones_suggested(catalog: Catalog):
    assert catalog.find_topic("calibraton") is None
    assert catalog.suggest_topics("calibraton")[0] == "calibration"
    assert catalog.suggest_topics("hirng")[0] == "hiring"
    assert catalog.suggest_topics("llm-servng")[0] == "llm-serving"
    assert catalog.suggest_topics("qwxzv") == []


def test_a_question_only_scenario_is_not_found_by_words_of_its_answer(catalog: Catalog):
    apple = "apple-calibration-equal-accuracy"
    assert top(catalog, "temperature scaling isotonic") == apple  # words of its insights
    hidden = catalog.search("temperature scaling isotonic", question_only={apple})
    assert apple not in [hit.scenario.id for hit in hidden]
    # Its question's own words still find it.
    assert top(catalog, "same accuracy different confidence") == apple
    still = catalog.search("same accuracy different confidence", question_only={apple})
    assert still[0].scenario.id == apple


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("rlhf", "post-training"),  # named in the topic's description, not its id
        ("int8", "quantization"),
        ("quantisation", "quantization"),  # British spelling
        ("contrastive", "embeddings"),
        ("fraud", "trust-and-safety"),
        ("vector search", "retrieval"),
    ],
)
def test_a_topic_is_suggested_by_meaning_as_well_as_spelling(
    catalog: Catalog, typed: str, expected: str
):
    assert catalog.suggest_topics(typed)[0] == expected


def test_check_suggests_a_topic_by_meaning(make_pack: PackFactory):
    pack = make_pack({"sample-scenario.yaml": scenario_data(topics=["rlhf"])})
    (problem,) = load_packs([pack]).problems
    assert "unknown topic 'rlhf'" in problem.message
    assert "did you mean 'post-training'" in problem.message
