"""Slack posts are paced per workspace and per channel, and a 429 is waited out without doubling.

Reactions keep to their own pace per workspace, a burst allowed, and skip past a backlog.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Subscribe, parse_prep
from prepbot.core.events import Place
from prepbot.core.views import QuestionCard, RevealCard
from prepbot.platforms.pacing import Backlog, HoldKey, Pacer
from prepbot.platforms.slack.adapter import SlackPlatform, web_client
from prepbot.scheduling import RoundScheduler
from prepbot.settings import SlackSettings
from tests.slack_fake import FakeSlack

MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class VirtualTime:
    """A clock that jumps to the next sleeper's wake-up once every task waits: no real sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    async def run(self, *jobs: Awaitable[Any]) -> None:
        tasks = [asyncio.ensure_future(job) for job in jobs]
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every task run up to its next sleep
                await asyncio.sleep(0)
            if self._sleepers:
                wake, _, woken = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                woken.set_result(None)
        for task in tasks:
            task.result()


async def test_each_key_keeps_its_pace_and_keys_go_side_by_side():
    virtual = VirtualTime()
    pacer = Pacer(0.2, margin=0, clock=virtual.clock, sleep=virtual.sleep)
    sent: list[tuple[str, float]] = []

    async def send(key: str) -> None:
        await pacer.wait(key)
        sent.append((key, virtual.now))

    await virtual.run(*(send(key) for key in ["T1", "T1", "T1", "T2", "T2", "T2"]))
    times = {key: [at for k, at in sent if k == key] for key in ("T1", "T2")}
    assert times["T1"] == pytest.approx([0.0, 0.2, 0.4])
    assert times["T2"] == pytest.approx([0.0, 0.2, 0.4])  # not queued behind T1


async def test_a_hold_delays_every_waiter_of_its_key_and_no_other():
    virtual = VirtualTime()
    pacer = Pacer(0.2, margin=0, clock=virtual.clock, sleep=virtual.sleep)
    sent: list[tuple[str, float]] = []

    async def send(key: str) -> None:
        await pacer.wait(key)
        sent.append((key, virtual.now))

    async def rate_limited() -> None:
        await virtual.sleep(0.1)  # the first T1 post came back 429, Retry-After: 5
        pacer.hold("T1", 5)

    await virtual.run(send("T1"), send("T1"), send("T1"), send("T2"), rate_limited())
    assert [at for key, at in sent if key == "T1"] == pytest.approx([0.0, 5.1, 5.3])
    assert [at for key, at in sent if key == "T2"] == pytest.approx([0.0])


async def test_a_backlog_sends_a_burst_then_keeps_its_pace_and_skips_past_its_limit():
    virtual = VirtualTime()
    backlog = Backlog(60, burst=3, limit=5, margin=0, clock=virtual.clock, sleep=virtual.sleep)
    sent: list[tuple[str, int, float]] = []

    def follow_up(key: str, number: int) -> Any:
        async def send() -> None:
            sent.append((key, number, virtual.now))
            if number == 1:
                raise RuntimeError("a send that fails does not stop the ones after it")

        return send

    async def answers_come_in() -> None:
        taken = [backlog.submit("T1", follow_up("T1", n)) for n in range(10)]
        taken += [backlog.submit("T2", follow_up("T2", n)) for n in range(2)]
        assert taken == [True] * 5 + [False] * 5 + [True] * 2
        assert backlog.waiting == 7
        await virtual.sleep(30)  # the bucket fills again while nothing comes
        assert backlog.submit("T1", follow_up("T1", 10))
        assert await backlog.finish(timeout=60) == 0

    await virtual.run(answers_come_in())
    assert [(n, at) for key, n, at in sent if key == "T1"] == [
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
        (3, 1.0),
        (4, 2.0),
        (10, 30.0),
    ]
    assert [(n, at) for key, n, at in sent if key == "T2"] == [(0, 0.0), (1, 0.0)]
    assert backlog.skipped == 5


async def test_a_refused_follow_up_holds_its_key_and_goes_first_after_the_hold():
    virtual = VirtualTime()
    backlog = Backlog(60, burst=5, limit=10, margin=0, clock=virtual.clock, sleep=virtual.sleep)
    sent: list[tuple[str, int, float]] = []
    refusals = {1: 2}  # the second follow-up is refused twice (a 429, Retry-After 5 s)

    def follow_up(key: str, number: int) -> Any:
        async def send() -> None:
            if refusals.get(number) and key == "T1":
                refusals[number] -= 1
                raise HoldKey(5)
            sent.append((key, number, virtual.now))

        return send

    async def answers_come_in() -> None:
        for number in range(4):
            backlog.submit("T1", follow_up("T1", number))
        backlog.submit("T2", follow_up("T2", 0))
        assert await backlog.finish(timeout=60) == 0
        assert not backlog.submit("T1", follow_up("T1", 9)), "finished: nothing is queued"

    await virtual.run(answers_come_in())
    assert [(n, at) for key, n, at in sent if key == "T1"] == [
        (0, 0.0),
        (1, 12.0),  # refused at 0 and at 6 (5 s hold, then one interval): sent at 12
        (2, 13.0),
        (3, 14.0),
    ]
    assert [(n, at) for key, n, at in sent if key == "T2"] == [(0, 0.0)]  # not held


async def test_finishing_a_backlog_drops_what_the_pace_leaves_waiting():
    backlog = Backlog(1, burst=1, limit=10)  # one a minute: the rest wait past the finish
    sent: list[int] = []

    def follow_up(number: int) -> Any:
        async def send() -> None:
            sent.append(number)

        return send

    for number in range(4):
        assert backlog.submit("T1", follow_up(number))
    started = time.monotonic()
    assert await backlog.finish(timeout=0.2) == 3
    assert time.monotonic() - started < 5
    assert sent == [0]
    assert backlog.waiting == 0


class StrictLimiter:
    """A per-channel limit of one message a second, counted when each request arrives.

    Requests take ``latencies`` seconds in turn to arrive, as on a real network: one that
    travels faster than the one before arrives less than its send spacing after it.
    """

    def __init__(self, virtual: VirtualTime, latencies: list[float]) -> None:
        self.virtual, self.latencies = virtual, itertools.cycle(latencies)
        self.last: dict[str, float] = {}
        self.answers: list[int] = []

    def receive(self, channel: str) -> None:
        arrived = self.virtual.now + next(self.latencies)
        previous = self.last.get(channel)
        if previous is not None and arrived - previous < 1.0:
            self.answers.append(429)
            return
        self.last[channel] = arrived
        self.answers.append(200)


@pytest.mark.parametrize(("margin", "limited"), [(None, False), (0.0, True)])
async def test_a_strict_one_a_second_limiter_never_answers_429(margin: float | None, limited):
    virtual = VirtualTime()
    extra = {} if margin is None else {"margin": margin}
    pacer = Pacer(1.0, clock=virtual.clock, sleep=virtual.sleep, **extra)
    limiter = StrictLimiter(virtual, latencies=[0.06, 0.01])  # 50 ms of jitter

    async def send() -> None:
        await pacer.wait("C1")
        limiter.receive("C1")

    await virtual.run(*(send() for _ in range(6)))
    assert (429 in limiter.answers) is limited  # without the margin, exactly 1 s apart is too close
    assert len(limiter.answers) == 6


class StrictSlack(FakeSlack):
    """The fake Slack with Slack's one-message-a-second limit per channel, applied strictly."""

    def __init__(self) -> None:
        super().__init__()
        self.last_post: dict[str, float] = {}
        self.limited: list[str] = []

    def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> web.Response:
        if method == "chat.postMessage":
            arrived, channel = time.monotonic(), str(params.get("channel"))
            if arrived - self.last_post.get(channel, -60.0) < 1.0:
                self.limited.append(channel)
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
                )
            self.last_post[channel] = arrived
        return super()._answer(method, token, params)


async def test_posts_to_one_channel_get_no_429_from_a_strict_slack():
    strict = StrictSlack()
    async with strict:
        platform = slack_platform(strict, per_minute=6000)
        thread = await platform.post_question("C1", card(), community_id="T1")
        await platform.post_reveal("C1", thread, reveal(), community_id="T1")
        second = await platform.post_question("C1", card(), community_id="T1")
        await platform.post_reveal("C1", second, reveal(), community_id="T1")
    assert strict.limited == []
    assert len(strict.calls_to("chat.postMessage")) == 4
    assert len(strict.messages["C1"]) == 4  # each posted once


# SlackPlatform against the fake Slack Web API (real time; only lower bounds on durations).


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def slack_platform(fake: FakeSlack, per_minute: int) -> SlackPlatform:
    settings = SlackSettings.model_validate(
        {"bot_token": fake.bot_token, "app_token": fake.app_token, "api_url": fake.api_url}
    )
    return SlackPlatform(web_client(settings), messages_per_minute_per_workspace=per_minute)


def card(day: date | None = None) -> QuestionCard:
    return QuestionCard(
        scenario_id="s",
        title="A question",
        kind="technical",
        difficulty="medium",
        topics=("llm",),
        company=None,
        role=None,
        situation="An interviewer asks.",
        prompts=("Why?",),
        round_date=day or MORNING.date(),
    )


def ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ts.split("."))


def accepted_order(fake: FakeSlack) -> list[str]:
    """Return the channel of every message the fake accepted, in the order it accepted them."""
    messages = [(m["ts"], channel) for channel, ms in fake.messages.items() for m in ms]
    return [channel for _, channel in sorted(messages, key=lambda pair: ts_key(pair[0]))]


async def test_two_workspaces_are_posted_side_by_side_each_at_its_own_pace(fake: FakeSlack):
    platform = slack_platform(fake, per_minute=300)  # one post every 0.2 s per workspace
    posts = [(f"CT{team}{n}", f"T{team}") for team in (1, 2) for n in range(5)]  # all T1 first
    started = time.monotonic()
    await asyncio.gather(
        *(platform.post_question(channel, card(), community_id=team) for channel, team in posts)
    )
    elapsed = time.monotonic() - started

    order = accepted_order(fake)
    assert sorted(order) == sorted(channel for channel, _ in posts)  # each posted once
    first_t2 = next(i for i, channel in enumerate(order) if channel.startswith("CT2"))
    last_t1 = max(i for i, channel in enumerate(order) if channel.startswith("CT1"))
    assert first_t2 < last_t1  # T2 did not wait for T1 to finish
    assert {channel[:3] for channel in order[:4]} == {"CT1", "CT2"}  # neither starves
    assert elapsed >= 4 * 0.2 - 0.05  # five posts in one workspace take four intervals


async def test_a_channel_gets_at_most_one_message_a_second(fake: FakeSlack):
    platform = slack_platform(fake, per_minute=6000)
    started = time.monotonic()
    thread = await platform.post_question("C1", card(), community_id="T1")
    await platform.post_reveal("C1", thread, reveal(), community_id="T1")
    assert time.monotonic() - started >= 0.95
    question, answer = fake.messages["C1"]
    assert (question["ts"], answer["thread_ts"]) == (thread, thread)


def reveal() -> RevealCard:
    return RevealCard(
        scenario_id="s",
        title="A question",
        insights=("Because.",),
        trap_answer=None,
        trap_why=None,
        follow_ups=(),
        source_author="someone",
        source_handle=None,
        source_url="https://example.com",
        on_time=(),
        late=(),
        milestones=(),
        is_round=True,
    )


async def test_a_429_holds_its_workspace_for_retry_after_and_posts_once(fake: FakeSlack):
    platform = slack_platform(fake, per_minute=6000)
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    done: dict[str, float] = {}

    async def post(channel: str, team: str) -> None:
        await platform.post_question(channel, card(), community_id=team)
        done[channel] = time.monotonic() - started

    limited = asyncio.ensure_future(post("C1", "T1"))
    await fake.wait_for(lambda: len(fake.calls_to("chat.postMessage")) == 1)  # the 429
    await asyncio.gather(limited, post("C2", "T1"), post("C3", "T2"))

    assert len(fake.messages["C1"]) == 1  # sent again once the wait was over, not doubled
    assert [c.params["channel"] for c in fake.calls_to("chat.postMessage")].count("C1") == 2
    assert done["C1"] >= 0.95  # its workspace waited out Retry-After
    assert done["C2"] >= 0.95
    order = accepted_order(fake)
    assert order.index("C3") < order.index("C1")  # another workspace is not held
    assert order.index("C3") < order.index("C2")


async def test_an_unknown_workspace_is_still_paced(fake: FakeSlack):
    platform = slack_platform(fake, per_minute=300)
    started = time.monotonic()
    await asyncio.gather(*(platform.post_question(f"C{n}", card()) for n in range(3)))
    assert time.monotonic() - started >= 2 * 0.2 - 0.05
    assert sorted(accepted_order(fake)) == ["C0", "C1", "C2"]


# The scheduler and SlackPlatform together: the morning post to two workspaces.


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MORNING - timedelta(days=1))


async def test_the_morning_post_to_two_workspaces_starves_neither(
    app: App, clock: ManualClock, fake: FakeSlack
):
    for team in ("T1", "T2"):  # the first workspace's groups all come first in the database
        for n in range(4):
            command = parse_prep("subscribe 09:00 UTC daily")
            assert isinstance(command, Subscribe)
            place = Place("slack", team, f"C{team}{n}")
            await app.services.admin.subscribe(place, command.change)
    app.services.ctx.platforms["slack"] = slack_platform(fake, per_minute=300)
    clock.set(MORNING)
    report = await RoundScheduler(app.services, concurrency=2).tick()

    assert len(report.posted) == 8
    order = accepted_order(fake)
    assert sorted(order) == sorted(f"C{t}{n}" for t in ("T1", "T2") for n in range(4))
    first_t2 = next(i for i, channel in enumerate(order) if channel.startswith("CT2"))
    last_t1 = max(i for i, channel in enumerate(order) if channel.startswith("CT1"))
    assert first_t2 < last_t1
