"""The optional LLM grader: grades from the endpoint, the rubric grader whenever it cannot."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from prepbot.content.model import Rubric
from prepbot.core.grading import Grade
from prepbot.llm_grader import LlmGrader, make_grader
from prepbot.services.feedback import RubricAnswerGrader
from prepbot.settings import GradingSettings, SettingsError, load_settings
from tests.llm_fake import FakeLlm, answer_of

RUBRIC = Rubric.model_validate(
    {
        "key_points": [
            {
                "id": "measure-ece",
                "point": "Measure calibration with ECE.",
                "look_for": ["expected calibration error", "reliability diagram"],
            },
            {
                "id": "temperature-scaling",
                "point": "Fix it with temperature scaling.",
                "look_for": ["platt", "logit scaling"],
            },
            {
                "id": "held-out-set",
                "point": "Fit on a held-out set.",
                "look_for": ["validation split"],
            },
        ],
        "red_flags": [
            {
                "id": "accuracy-is-calibration",
                "flag": "Accuracy shows calibration.",
                "look_for": ["high accuracy"],
            }
        ],
    }
)
PROMPT = "Your classifier is over-confident. What do you do?"
KEY = "sk-test-0123456789"


@pytest.fixture
def by_rubric(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for the rubric grader: it covers nothing and records the answers it graded."""
    graded: list[str] = []

    def rubric_grade(answer: str, rubric: Rubric) -> Grade:
        graded.append(answer)
        return Grade.from_ids(rubric, [], [])

    monkeypatch.setattr("prepbot.services.feedback.grade", rubric_grade)
    return graded


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlm]:
    async with FakeLlm() as server:
        yield server


@pytest.fixture
async def grader(fake: FakeLlm) -> AsyncIterator[LlmGrader]:
    llm = LlmGrader(base_url=fake.base_url, model="gpt-test", api_key=KEY)
    yield llm
    await llm.aclose()


async def grade(grader: Any, *answers: str, deadline: float = 4.0) -> list[Grade]:
    graded: list[Grade] = await grader.grade_answers(
        RUBRIC, PROMPT, list(answers), deadline_seconds=deadline
    )
    return graded


async def test_grades_come_from_the_endpoint(fake: FakeLlm, grader: LlmGrader, by_rubric):
    grades = await grade(
        grader,
        "measure-ece first, then temperature-scaling",
        "accuracy-is-calibration, so nothing to do",
    )
    assert grades[0].covered_ids == ("measure-ece", "temperature-scaling")
    assert grades[0].missed == ("held-out-set",)
    assert grades[1].covered_ids == ()
    assert [f.id for f in grades[1].red_flags] == ["accuracy-is-calibration"]
    assert by_rubric == []
    assert (grader.last_fallbacks, grader.last_error) == (0, None)


async def test_the_request_is_a_json_chat_completion_with_the_rubric(
    fake: FakeLlm, grader: LlmGrader, by_rubric
):
    await grade(grader, "I would measure-ece.")
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body["model"] == "gpt-test"
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system"
    assert user["role"] == "user"
    for point in RUBRIC.key_points:
        assert f"{point.id}: {point.point}" in system["content"]
    assert "accuracy-is-calibration: Accuracy shows calibration." in system["content"]
    assert PROMPT in user["content"]
    assert "I would measure-ece." in user["content"]


async def test_only_the_prompt_rubric_and_answer_leave_the_machine(
    fake: FakeLlm, grader: LlmGrader, by_rubric
):
    await grade(grader, "carol's answer text", "dave's answer text")
    sent = " ".join(r.text for r in fake.requests)
    assert "carol's answer text" in sent
    assert "dave's answer text" in sent
    for request in fake.requests:  # one answer per request, never another member's
        assert len([a for a in ("carol's", "dave's") if a in answer_of(request.body)]) == 1
    terms = [t for p in RUBRIC.key_points for t in p.look_for]
    terms += [t for f in RUBRIC.red_flags for t in f.look_for]
    for term in terms:  # the matching terms stay here
        assert term not in sent.lower()


async def test_ids_the_rubric_does_not_know_are_dropped(
    fake: FakeLlm, grader: LlmGrader, by_rubric
):
    fake.grade = lambda body: {
        "covered": ["held-out-set", "made-up-point", "accuracy-is-calibration"],
        "red_flags": ["measure-ece", "invented-flag"],
    }
    [graded] = await grade(grader, "an answer")
    assert graded.covered_ids == ("held-out-set",)
    assert graded.red_flags == ()
    assert by_rubric == []


async def test_a_server_error_falls_back_to_the_rubric(
    fake: FakeLlm, grader: LlmGrader, by_rubric, caplog: pytest.LogCaptureFixture
):
    fake.fail_next(500)
    with caplog.at_level(logging.WARNING, logger="prepbot.llm_grader"):
        grades = await grade(grader, "first secret-ish answer measure-ece", "second measure-ece")
    assert by_rubric == ["first secret-ish answer measure-ece"]
    assert grades[0].covered_ids == ()
    assert grades[1].covered_ids == ("measure-ece",)
    assert (grader.last_fallbacks, grader.last_error) == (1, "HTTP 500")
    [record] = caplog.records
    assert "1 of 2 answers graded by the rubric" in record.getMessage()
    assert "HTTP 500" in record.getMessage()
    assert "secret-ish" not in record.getMessage()


@pytest.mark.parametrize(
    ("content", "body", "reason"),
    [
        ("I think they covered measure-ece", None, "content is not JSON"),
        ('{"covered": ["measure-ece"]}', None, "red_flags missing"),
        ('{"covered": "measure-ece", "red_flags": []}', None, "covered missing or not a list"),
        ('["measure-ece"]', None, "not a JSON object"),
        (None, {"choices": []}, "not a chat completion"),
        (None, {"error": "nope"}, "not a chat completion"),
    ],
)
async def test_a_malformed_reply_falls_back_to_the_rubric(
    fake: FakeLlm,
    grader: LlmGrader,
    by_rubric,
    content: str | None,
    body: Any,
    reason: str,
):
    fake.content, fake.body = content, body
    [graded] = await grade(grader, "measure-ece")
    assert by_rubric == ["measure-ece"]
    assert graded.covered_ids == ()
    assert grader.last_fallbacks == 1
    assert grader.last_error is not None
    assert reason in grader.last_error


async def test_a_fenced_json_reply_is_still_read(fake: FakeLlm, grader: LlmGrader, by_rubric):
    fake.content = '```json\n{"covered": ["held-out-set"], "red_flags": []}\n```'
    [graded] = await grade(grader, "an answer")
    assert graded.covered_ids == ("held-out-set",)


async def test_a_slow_endpoint_never_holds_the_reveal_past_the_deadline(
    fake: FakeLlm, grader: LlmGrader, by_rubric
):
    fake.delay = 30
    answers = [f"answer {i} measure-ece" for i in range(6)]
    started = time.monotonic()
    grades = await grade(grader, *answers, deadline=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.5
    assert by_rubric == answers
    assert all(g.covered_ids == () for g in grades)
    assert (grader.last_fallbacks, grader.last_error) == (6, "timeout")


async def test_answers_graded_in_time_keep_their_llm_grade(
    fake: FakeLlm, grader: LlmGrader, by_rubric
):
    fake.delay_for = lambda body: 30 if "slow" in answer_of(body) else 0
    grades = await grade(grader, "fast measure-ece", "slow measure-ece", deadline=1.0)
    assert grades[0].covered_ids == ("measure-ece",)
    assert grades[1].covered_ids == ()
    assert by_rubric == ["slow measure-ece"]


async def test_no_more_requests_than_max_concurrency_at_once(fake: FakeLlm, by_rubric):
    fake.delay = 0.1
    llm = LlmGrader(base_url=fake.base_url, model="m", max_concurrency=2)
    try:
        grades = await grade(llm, *[f"a{i} measure-ece" for i in range(6)])
    finally:
        await llm.aclose()
    assert fake.max_in_flight == 2
    assert len(fake.requests) == 6
    assert all(g.covered_ids == ("measure-ece",) for g in grades)
    assert "Authorization" not in fake.requests[0].headers  # no key: a local server


async def test_a_429_is_waited_out_before_asking_again(fake: FakeLlm, grader: LlmGrader, by_rubric):
    fake.fail_next(429, retry_after=60)
    await grade(grader, "measure-ece")
    assert grader.last_error == "HTTP 429"
    asked = len(fake.requests)
    grades = await grade(grader, "measure-ece", "held-out-set")
    assert len(fake.requests) == asked  # still within Retry-After: not asked at all
    assert all(g.covered_ids == () for g in grades)
    assert grader.last_error is not None
    assert "Retry-After" in grader.last_error
    assert (grader.fallbacks_total, grader.answers_total) == (3, 3)


async def test_a_refused_connection_falls_back_to_the_rubric(by_rubric):
    async with FakeLlm() as gone:
        url = gone.base_url
    llm = LlmGrader(base_url=url, model="m", api_key=KEY)
    try:
        await grade(llm, "measure-ece")
    finally:
        await llm.aclose()
    assert by_rubric == ["measure-ece"]
    assert llm.last_error is not None
    assert llm.last_error.startswith("connection error")


async def test_an_answer_too_long_to_send_is_graded_by_the_rubric(
    fake: FakeLlm, grader: LlmGrader, by_rubric
):
    essay = "measure-ece " * 2000
    grades = await grade(grader, essay, "measure-ece")
    assert by_rubric == [essay]
    assert grades[1].covered_ids == ("measure-ece",)
    assert len(fake.requests) == 1
    assert grader.last_error == "answer too long to send"


async def test_no_answers_no_requests(fake: FakeLlm, grader: LlmGrader):
    assert await grade(grader) == []
    assert fake.requests == []


async def test_the_rubric_grader_grades_each_answer_without_io(by_rubric):
    grades = await grade(RubricAnswerGrader(), "one", "two")
    assert by_rubric == ["one", "two"]
    assert len(grades) == 2


# -- settings --------------------------------------------------------------------------------


@pytest.fixture
def env(isolated_settings: None, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return monkeypatch


def test_the_rubric_grader_is_the_default(env):
    settings = load_settings()
    assert settings.grading.mode == "rubric"
    assert isinstance(make_grader(settings.grading), RubricAnswerGrader)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"PREPBOT_GRADING__LLM_MODEL": "m"}, "grading.llm_base_url"),
        ({"PREPBOT_GRADING__LLM_BASE_URL": "https://api.openai.com/v1"}, "grading.llm_model"),
    ],
)
def test_llm_mode_without_an_endpoint_names_what_is_missing(
    env: pytest.MonkeyPatch, given: dict[str, str], missing: str
):
    env.setenv("PREPBOT_GRADING__MODE", "llm")
    for name, value in given.items():
        env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert missing in problem
    assert f"PREPBOT_{missing.upper().replace('.', '__')}" in problem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PREPBOT_GRADING__DEADLINE_SECONDS", "30"),
        ("PREPBOT_GRADING__DEADLINE_SECONDS", "0.1"),
        ("PREPBOT_GRADING__MAX_CONCURRENCY", "0"),
        ("PREPBOT_GRADING__MODE", "gpt"),
        ("PREPBOT_GRADING__LLM_BASE_URL", "not a url"),
    ],
)
def test_bad_grading_settings_are_named(env: pytest.MonkeyPatch, name: str, value: str):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert problem.startswith(f"setting grading.{name.split('__')[1].lower()} ({name})")


async def test_the_key_from_a_file_secret_is_sent_as_a_bearer_token(
    env: pytest.MonkeyPatch, tmp_path: Path, fake: FakeLlm, by_rubric
):
    secret = tmp_path / "llm_api_key"
    secret.write_text(f"{KEY}\n", encoding="utf-8")
    env.setenv("PREPBOT_GRADING__MODE", "llm")
    env.setenv("PREPBOT_GRADING__LLM_BASE_URL", fake.base_url)
    env.setenv("PREPBOT_GRADING__LLM_MODEL", "gpt-test")
    env.setenv("PREPBOT_GRADING__LLM_API_KEY_FILE", str(secret))
    # load_settings writes the file's value to PREPBOT_GRADING__LLM_API_KEY; setting it here
    # first makes monkeypatch remove it again after the test
    env.setenv("PREPBOT_GRADING__LLM_API_KEY", "replaced-by-the-file")
    settings = load_settings()
    assert settings.grading.llm_api_key is not None
    assert settings.grading.llm_api_key.get_secret_value() == KEY
    assert KEY not in repr(settings.grading)
    llm = make_grader(settings.grading)
    assert isinstance(llm, LlmGrader)
    try:
        [graded] = await grade(llm, "measure-ece", deadline=settings.grading.deadline_seconds)
    finally:
        await llm.aclose()
    assert graded.covered_ids == ("measure-ece",)
    assert fake.requests[0].headers["Authorization"] == f"Bearer {KEY}"


def test_grading_settings_read_from_the_config_file(env: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "prepbot.toml").write_text(
        '[grading]\nmode = "llm"\nllm_base_url = "http://127.0.0.1:8000/v1"\n'
        'llm_model = "llama3"\ndeadline_seconds = 2.5\nmax_concurrency = 8\n'
    )
    grading = load_settings().grading
    assert grading == GradingSettings.model_validate(
        {
            "mode": "llm",
            "llm_base_url": "http://127.0.0.1:8000/v1",
            "llm_model": "llama3",
            "deadline_seconds": 2.5,
            "max_concurrency": 8,
        }
    )
    assert isinstance(make_grader(grading), LlmGrader)
