"""The /prep command, end to end: parse once, check who may run it, call a service, answer.

Every platform hands an Invocation here and renders the Response it gets back. Bad input
gets a usage line, never a stack trace. Imports no chat platform library.
"""

from __future__ import annotations

import logging

from prepbot.core.commands import (
    USAGE,
    Ask,
    Command,
    CommandError,
    Help,
    Leaderboard,
    Pause,
    Period,
    PostNow,
    Reschedule,
    Resume,
    RevealNow,
    Search,
    Show,
    Streak,
    Subscribe,
    Today,
    Topics,
    Unsubscribe,
    is_admin_command,
    parse_prep,
)
from prepbot.core.events import Invocation
from prepbot.core.views import ErrorView, HelpView, Notice, Response, View
from prepbot.observability import Timer
from prepbot.services.admin import AdminError, AdminService
from prepbot.services.base import ServiceContext, schedule_of
from prepbot.services.queries import QueryService
from prepbot.services.rounds import NoEligibleScenario, RoundService
from prepbot.store.models import RoundStatus, Subscription

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "help": "this help",
    "today": "this channel's open question",
    "ask": "a private practice question (not scored)",
    "search": "find scenarios",
    "show": "one scenario in full, with its insights",
    "topics": "the topics",
    "streak": "your streak, or a member's",
    "leaderboard": "who answered most, on time",
    "subscribe": "make this channel a study group",
    "schedule": "change this study group's schedule or topics",
    "pause": "stop posting for now",
    "resume": "start posting again",
    "unsubscribe": "end this study group",
    "post-now": "post today's question now",
    "reveal-now": "reveal the open question now",
}
PUBLIC = ("help", "today", "ask", "search", "show", "topics", "streak", "leaderboard")
ADMIN = ("subscribe", "schedule", "pause", "resume", "unsubscribe", "post-now", "reveal-now")
NOT_SUBSCRIBED = (
    "This channel is not a study group yet. An admin can start one with /prep subscribe."
)


class CommandService:
    """Run /prep commands."""

    def __init__(
        self,
        ctx: ServiceContext,
        rounds: RoundService,
        queries: QueryService,
        admin: AdminService,
    ) -> None:
        self.ctx, self.rounds, self.queries, self.admin = ctx, rounds, queries, admin

    async def handle(self, invocation: Invocation) -> Response:
        """Answer one /prep invocation; errors become friendly messages."""
        verb = (invocation.text.split() or ["help"])[0].lower()
        label = verb if verb in DESCRIPTIONS else "invalid"
        with Timer() as timer:
            response = await self._handle(invocation)
        self.ctx.metrics.command_seconds.labels(label).observe(timer.seconds)
        return response

    async def _handle(self, invocation: Invocation) -> Response:
        try:
            command = parse_prep(invocation.text)
        except CommandError as error:
            return Response.one(ErrorView(str(error)), private=True)
        if is_admin_command(command) and not invocation.is_admin:
            return Response.one(
                ErrorView("Only admins can do that. Ask a workspace or server admin."),
                private=True,
            )
        try:
            return await self._run(command, invocation)
        except AdminError as error:
            return Response.one(ErrorView(str(error)), private=True)
        except NoEligibleScenario as error:
            return Response.one(ErrorView(str(error)), private=True)
        except Exception:
            log.exception("/prep %s failed", invocation.text)
            return Response.one(
                ErrorView("Something went wrong on my side; it has been logged. Try again soon."),
                private=True,
            )

    async def _run(self, command: Command, invocation: Invocation) -> Response:
        place = invocation.place
        subscription = await self.admin.subscription(place)
        active = subscription if subscription is not None and subscription.active else None
        match command:
            case Help():
                return Response.one(self.help(active, invocation.is_admin), private=True)
            case Today():
                return Response.one(await self.queries.today(active), private=True)
            case Ask(topic=topic):
                return Response.one(await self.queries.ask(topic, place), private=True)
            case Search(words=words):
                return Response.one(await self.queries.search(words, place), private=True)
            case Show(scenario_id=scenario_id):
                return Response.one(await self.queries.show(scenario_id, place), private=True)
            case Topics():
                return Response.one(self.queries.topics(), private=True)
            case Streak(member=member):
                if active is None:
                    return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
                who = member if member is not None else invocation.member
                return Response.one(await self.queries.streak(active, who), private=member is None)
            case Leaderboard(period=period, community=community):
                return Response.one(await self._leaderboard(subscription, period, community))
            case Subscribe(change=change):
                created = await self.admin.subscribe(place, change)
                return Response.one(
                    Notice(
                        "This channel is now a study group: "
                        f"{schedule_of(created).describe()}{_filters(created)}. "
                        "Answer each question in its thread."
                    )
                )
        if active is None:
            return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
        return Response.one(await self._admin(command, active))

    async def _admin(self, command: Command, subscription: Subscription) -> View:
        match command:
            case Reschedule(change=change):
                changed = await self.admin.reschedule(subscription, change)
                return Notice(
                    f"Schedule updated: {schedule_of(changed).describe()}{_filters(changed)}."
                )
            case Pause():
                await self.admin.set_paused(subscription, True, "paused by an admin")
                return Notice("Paused. No new questions until /prep resume.")
            case Resume():
                await self.admin.set_paused(subscription, False, None)
                return Notice(f"Resumed: {schedule_of(subscription).describe()}.")
            case Unsubscribe():
                await self.rounds.reveal_open(subscription.id)
                await self.admin.unsubscribe(subscription)
                return Notice("This channel is no longer a study group. Its history is kept.")
            case PostNow():
                if subscription.paused:
                    return ErrorView("This study group is paused. /prep resume first.")
                today = self.queries.today_of(subscription)
                outcome = await self.rounds.post_round(subscription.id, today)
                if outcome is None:
                    return ErrorView("Could not post: the channel is unavailable.")
                if not outcome.posted_now:
                    if outcome.round.status == RoundStatus.POSTED:
                        return Notice("Today's question is already posted. See /prep today.")
                    return Notice(self.queries.no_open_question(subscription, outcome.round))
                return Notice("Posted today's question.")
            case RevealNow():
                cards = await self.rounds.reveal_open(subscription.id)
                if not cards:
                    return Notice("There is no open question to reveal.")
                return Notice(f"Revealed {len(cards)} question{'s' if len(cards) > 1 else ''}.")
        raise AssertionError(f"unhandled command {command!r}")

    async def _leaderboard(
        self, subscription: Subscription | None, period: Period, community: bool
    ) -> View:
        if subscription is None:
            return ErrorView(NOT_SUBSCRIBED)
        today = self.queries.today_of(subscription)
        if community:
            groups = await self.queries.community_subscriptions(subscription)
            scope = "the whole community"
        else:
            groups = [subscription]
            scope = f"#{subscription.channel_name or subscription.channel_id}"
        return await self.queries.leaderboard(groups, scope, period, today)

    def help(self, subscription: Subscription | None, is_admin: bool) -> HelpView:
        """Return the help for this channel and caller."""
        state = None
        if subscription is not None:
            paused = f" — paused ({subscription.paused_reason})" if subscription.paused else ""
            state = f"study group, {schedule_of(subscription).describe()}{paused}"
        return HelpView(
            commands=tuple((f"`{USAGE[v]}`", DESCRIPTIONS[v]) for v in PUBLIC),
            admin_commands=tuple((f"`{USAGE[v]}`", DESCRIPTIONS[v]) for v in ADMIN)
            if is_admin
            else (),
            subscription=state,
        )


def _filters(subscription: Subscription) -> str:
    parts = []
    if subscription.topics:
        parts.append("topics " + ", ".join(subscription.topics))
    if subscription.difficulties:
        parts.append("difficulty " + "/".join(subscription.difficulties))
    return f"; {'; '.join(parts)}" if parts else ""
