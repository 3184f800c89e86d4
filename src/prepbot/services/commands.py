"""The /prep command, end to end: parse once, check who may run it, call a service, answer.

Every platform hands an Invocation here and renders the Response it gets back. Bad input
gets a usage line, never a stack trace. Imports no chat platform library.
"""

from __future__ import annotations

import logging
import re
import secrets

from sqlalchemy import select, update

from prepbot.core.commands import (
    USAGE,
    AnswerMode,
    AnswerPrivately,
    Archive,
    Ask,
    Command,
    CommandError,
    Feedback,
    FeedbackMessages,
    ForgetMe,
    Help,
    Hint,
    Leaderboard,
    Pause,
    Period,
    PostNow,
    Reschedule,
    Resume,
    RevealNow,
    Search,
    Show,
    Status,
    Streak,
    Subscribe,
    Today,
    Topics,
    Unsubscribe,
    is_admin_command,
    parse_prep,
)
from prepbot.core.events import Invocation, Place, PrivateAnswer
from prepbot.core.pauses import ADMIN_PAUSE, PauseKind, explain_pause
from prepbot.core.rotation import FEW_MATCHING
from prepbot.core.schedule import ScheduleError
from prepbot.core.text import answer_mode_words, few_matching_notice
from prepbot.core.views import ErrorView, HelpView, Notice, Response, View
from prepbot.observability import Timer
from prepbot.services.admin import AdminError, AdminService
from prepbot.services.answers import AnswerOutcome, AnswerService, AnswerStatus
from prepbot.services.base import ServiceContext, schedule_of
from prepbot.services.privacy import PrivacyService
from prepbot.services.private import PrivateAnswers
from prepbot.services.queries import QueryService
from prepbot.services.rounds import NoEligibleScenario, RoundService
from prepbot.services.status import StatusService
from prepbot.store.models import AuditEntry, Community, Round, RoundStatus, Subscription
from prepbot.web.links import archive_url, new_token, thread_url

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "help": "this help",
    "today": "this channel's open question",
    "ask": "a private practice question (not scored)",
    "search": "find scenarios",
    "show": "one scenario in full, with its insights",
    "topics": "the topics",
    "streak": "your streak, or a member's",
    "leaderboard": "who answered most, on time (then key points)",
    "hint": "a nudge on the open question, not its answer",
    "answer": "answer the open question privately (groups that answer privately)",
    "forget-me": "erase your answers and stats here (admins: a member's, with @member)",
    "feedback": "your feedback on a recent answer; `on`/`off` for the messages after reveals",
    "archive": "this group's web archive link and recent threads (admins: `rotate` for a new link)",
    "subscribe": "make this channel a study group",
    "schedule": "change this study group's schedule or topics",
    "status": "schedule, next question, pause and rotation of this study group",
    "pause": "stop posting for now",
    "resume": "start posting again",
    "unsubscribe": "end this study group",
    "post-now": "post today's question now",
    "reveal-now": "reveal the open question now",
}
PUBLIC = (
    "help",
    "today",
    "hint",
    "answer",
    "forget-me",
    "ask",
    "search",
    "show",
    "topics",
    "streak",
    "leaderboard",
    "feedback",
    "archive",
)
ADMIN = (
    "subscribe",
    "schedule",
    "status",
    "pause",
    "resume",
    "unsubscribe",
    "post-now",
    "reveal-now",
)
NO_ARCHIVE_SERVER = (
    "The web archive is served while prepbot runs for Slack or Discord (on its HTTP server, "
    "`http.port`); the terminal has none. `prepbot export DIR` writes this group's data to files."
)
SOMETHING_WRONG = "Something went wrong on my side; it has been logged. Try again soon."
MENTION = re.compile(r"<@!?[^>]+>|@\S+")  # a member named in an audited command (not kept)
MAX_AUDITED = 500  # characters of an admin command kept in the audit log
NOT_SUBSCRIBED = (
    "This channel is not a study group yet. An admin can start one with /prep subscribe."
)
ARCHIVE_ROUNDS = 5  # the recent rounds /prep archive links to
NOT_SUBSCRIBED_STATUS = (
    "This channel is not a study group, so there is no status to show. Start one here with "
    f"`{USAGE['subscribe']}`, e.g. `/prep subscribe 09:00 Europe/London mon-fri`."
)

FEEDBACK_ON = (
    "Feedback messages are on: after each reveal you get the key points your answer made "
    "and missed, privately."
)
FEEDBACK_OFF = (
    "Feedback messages are off. Your answers are still graded: `/prep feedback` shows your "
    "latest, and `/prep feedback on` brings the messages back."
)

BEING_POSTED = (
    "Today's question is being posted right now; the platform is slow to answer. "
    "It will appear once — prepbot never posts a round twice."
)
IN_FLIGHT_FAILED = (
    "The platform did not confirm the post in time. prepbot keeps today's round and finishes "
    "it shortly: it looks for its own message before posting again, so the question appears "
    "once. See /prep status."
)
REVEAL_IN_FLIGHT_FAILED = (
    "Revealed: answers are closed and streaks updated, but the platform did not confirm the "
    "reveal in time. prepbot finishes it shortly: it looks for its own message before posting "
    "again, so the reveal appears once in the question's thread. See /prep status."
)


class CommandService:
    """Run /prep commands."""

    def __init__(
        self,
        ctx: ServiceContext,
        rounds: RoundService,
        queries: QueryService,
        admin: AdminService,
        status: StatusService,
        answers: AnswerService,
        private: PrivateAnswers,
        privacy: PrivacyService,
    ) -> None:
        self.ctx, self.rounds, self.queries, self.admin = ctx, rounds, queries, admin
        self.status = status
        self.answers, self.private, self.privacy = answers, private, privacy

    async def handle(self, invocation: Invocation) -> Response:
        """Answer one /prep invocation; errors become friendly messages."""
        verb = (invocation.text.split() or ["help"])[0].lower()
        label = verb if verb in DESCRIPTIONS else "invalid"
        with Timer() as timer:
            response = await self._handle(invocation)
        self.ctx.metrics.command_seconds.labels(label).observe(timer.seconds)
        if (
            verb in ADMIN
            or (verb == "forget-me" and MENTION.search(invocation.text))
            or (verb == "archive" and "rotate" in invocation.text.lower())
        ):
            await self._audit(invocation, response)
        return response

    async def _audit(self, invocation: Invocation, response: Response) -> None:
        """Write an admin command to the audit log: who, what, where, when, and its outcome.

        The command has already happened: a failure to write it is logged, never raised.
        """
        errors = [v.text for v in response.views if isinstance(v, ErrorView)]
        outcome = "done" if not errors else "failed" if SOMETHING_WRONG in errors else "refused"
        place, member = invocation.place, invocation.member
        try:
            async with self.ctx.db.transaction() as session:
                session.add(
                    AuditEntry(
                        at=self.ctx.clock.now(),
                        platform=place.platform,
                        community_id=place.community_id,
                        channel_id=place.channel_id,
                        member_id=member.id,
                        member_name=member.name,
                        command=MENTION.sub("@…", invocation.text.strip())[:MAX_AUDITED],
                        outcome=outcome,
                    )
                )
        except Exception as error:
            log.warning("could not write /prep %s to the audit log: %r", invocation.text, error)

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
                ErrorView(SOMETHING_WRONG),
                private=True,
            )

    async def answer_privately(self, answer: PrivateAnswer) -> Response:
        """Store a private answer (modal, command or console) and say, privately, what happened.

        The answer is committed before this returns, so a platform acknowledges it after.
        """
        try:
            outcome = await self.answers.answer_privately(answer)
        except Exception:
            log.exception("storing a private answer failed")
            return Response.one(ErrorView(PRIVATE_NOT_STORED), private=True)
        return Response.one(_private_outcome(outcome, bool(answer.text.strip())), private=True)

    async def _forget(
        self, invocation: Invocation, member: str | None, confirmed: bool
    ) -> Notice | ErrorView:
        """Erase the caller (or, for an admin, a named member) after a confirming second step."""
        if member is not None and not invocation.is_admin:
            return ErrorView(
                "Only admins can erase another member's data. To erase yours: /prep forget-me."
            )
        whose = member or invocation.member.id
        you = "you" if member is None else f"that member ({whose})"
        again = "/prep forget-me" + (f" <@{whose}>" if member else "") + " confirm"
        if not confirmed:
            held = await self.privacy.what_we_hold(invocation.place, whose)
            if not held.found:
                return Notice(f"prepbot holds nothing about {you} here: nothing to erase.")
            return Notice(
                f"This erases {held.answers:,} answer{'s' if held.answers != 1 else ''} by "
                f"{you} in {held.groups:,} study group{'s' if held.groups != 1 else ''} of this "
                "community, with their feedback and streaks, and the name in the audit log; "
                f"leaderboards are recomputed without them. It cannot be undone. To go ahead: "
                f"`{again}`"
            )
        done = await self.privacy.forget(invocation.place, whose)
        if not done.found:
            return Notice(f"prepbot holds nothing about {you} here: nothing to erase.")
        return Notice(
            f"Erased: {done.answers:,} answer{'s' if done.answers != 1 else ''} by {you}, with "
            "feedback and streaks. prepbot will know them again only if they answer again."
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
            case Hint():
                if active is None:
                    return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
                return Response.one(await self.queries.hint(active), private=True)
            case ForgetMe(member=member, confirmed=confirmed):
                return Response.one(await self._forget(invocation, member, confirmed), private=True)
            case AnswerPrivately(text=text):
                if active is None:
                    return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
                if active.answer_mode != AnswerMode.PRIVATE:
                    return Response.one(ErrorView(ANSWER_IN_THREAD), private=True)
                return await self.answer_privately(
                    PrivateAnswer(
                        place,
                        None,
                        invocation.request_id or secrets.token_hex(8),
                        invocation.member,
                        text,
                        self.ctx.clock.now(),
                    )
                )
            case Archive(rotate=rotate):
                if active is None:
                    return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
                if rotate and not invocation.is_admin:
                    return Response.one(
                        ErrorView("Only admins can rotate the archive link. Ask an admin."),
                        private=True,
                    )
                return Response.one(await self._archive(active, place, rotate), private=True)
            case Feedback(scenario_id=scenario_id):
                if active is None:
                    return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
                shown = await self.rounds.feedback.show(active, invocation.member.id, scenario_id)
                return Response.one(shown, private=True)
            case FeedbackMessages(wanted=wanted):
                await self.rounds.feedback.set_messages(place, invocation.member, wanted)
                return Response.one(Notice(FEEDBACK_ON if wanted else FEEDBACK_OFF), private=True)
            case Leaderboard(period=period, community=community):
                return Response.one(await self._leaderboard(subscription, period, community))
            case Subscribe(change=change):
                created = await self.admin.subscribe(place, change)
                return Response.one(
                    Notice(
                        "This channel is now a study group: "
                        f"{schedule_of(created).describe()}{_filters(created)}. "
                        + answer_mode_words(created.answer_mode)
                        + self._few_matching(created)
                    )
                )
            case Status():
                if active is None:
                    return Response.one(Notice(NOT_SUBSCRIBED_STATUS), private=True)
                return Response.one(await self.status.status(active), private=True)
        if active is None:
            return Response.one(ErrorView(NOT_SUBSCRIBED), private=True)
        return Response.one(await self._admin(command, active))

    async def _admin(self, command: Command, subscription: Subscription) -> View:
        match command:
            case Reschedule(change=change):
                changed = await self.admin.reschedule(subscription, change)
                if change.answer_mode is not None:  # the open question gains or loses its button
                    await self.private.mode_changed(changed.id)
                return Notice(
                    f"Schedule updated: {schedule_of(changed).describe()}{_filters(changed)}."
                    + (
                        f" {answer_mode_words(changed.answer_mode)}"
                        if change.answer_mode is not None
                        else ""
                    )
                    + self._few_matching(changed)
                )
            case Pause():
                await self.admin.set_paused(subscription, True, ADMIN_PAUSE)
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
                    why = explain_pause(subscription.paused_reason)
                    return ErrorView(f"This study group is paused: {why.cause}. {why.next_step()}.")
                today = self.queries.today_of(subscription)
                try:
                    outcome = await self.rounds.post_round(subscription.id, today)
                except Exception as error:  # slow, rate-limited or failing: the round is kept
                    log.warning("post-now in subscription %s failed: %r", subscription.id, error)
                    return Notice(IN_FLIGHT_FAILED)
                if outcome is None:
                    return await self._not_posted(subscription, "post today's question")
                if not outcome.posted_now:
                    if outcome.round.status == RoundStatus.CLAIMED:
                        return Notice(BEING_POSTED)
                    if outcome.round.status == RoundStatus.POSTED:
                        return Notice("Today's question is already posted. See /prep today.")
                    return Notice(self.queries.no_open_question(subscription, outcome.round))
                return Notice("Posted today's question.")
            case RevealNow():
                unsent = await self.status.unsent_reveals(subscription.id)
                try:
                    cards = await self.rounds.reveal_open(subscription.id)
                except Exception as error:  # slow or failing after the reveal was decided?
                    if await self.status.unsent_reveals(subscription.id) <= unsent:
                        raise  # nothing was revealed: a plain failure
                    log.warning("reveal-now in subscription %s failed: %r", subscription.id, error)
                    return Notice(REVEAL_IN_FLIGHT_FAILED)
                if not cards:
                    return Notice("There is no open question to reveal.")
                revealed = f"Revealed {len(cards)} question{'s' if len(cards) > 1 else ''}"
                if await self.status.unsent_reveals(subscription.id) > unsent:
                    return await self._not_posted(
                        subscription,
                        "post the reveal",
                        f"{revealed} (answers are closed and streaks updated), but ",
                    )
                return Notice(f"{revealed}.")
        raise AssertionError(f"unhandled command {command!r}")

    async def archive_token(self, subscription_id: int, *, rotate: bool = False) -> str:
        """Return a group's archive secret, made on first use; ``rotate`` replaces it.

        Two replicas asked at once for a first link agree: only one secret is ever written.
        """
        async with self.ctx.db.transaction() as session:
            change = update(Subscription).where(Subscription.id == subscription_id)
            if not rotate:
                change = change.where(Subscription.archive_token.is_(None))
            await session.execute(change.values(archive_token=new_token()))
        async with self.ctx.db.transaction() as session:
            token = await session.scalar(
                select(Subscription.archive_token).where(Subscription.id == subscription_id)
            )
        assert token is not None
        return token

    async def _archive(self, subscription: Subscription, place: Place, rotate: bool) -> Notice:
        """Return the group's archive link (new on ``rotate``) and its last rounds' threads."""
        token = await self.archive_token(subscription.id, rotate=rotate)
        async with self.ctx.db.transaction() as session:
            rounds = (
                await session.scalars(
                    select(Round)
                    .where(
                        Round.subscription_id == subscription.id,
                        Round.status != RoundStatus.CLAIMED,
                    )
                    .order_by(Round.local_date.desc())
                    .limit(ARCHIVE_ROUNDS)
                )
            ).all()
            community = await session.get(Community, subscription.community_id)
        community_id = community.external_id if community is not None else place.community_id
        if self.ctx.public_url is None:
            lines = [NO_ARCHIVE_SERVER]
        else:
            lines = [
                ("New archive link (the old one no longer works): " if rotate else "Archive: ")
                + archive_url(self.ctx.public_url, token),
                "Keep it within the group: anyone with the link can read the archive.",
            ]
        if rounds:
            lines.append("Recent rounds:")
        for round_ in rounds:
            scenario = self.ctx.catalog.get(round_.scenario_id)
            title = scenario.title if scenario is not None else round_.scenario_id
            link = thread_url(
                place.platform, community_id, subscription.channel_id, round_.question_message_id
            )
            state = "" if round_.status == RoundStatus.REVEALED else " (open)"
            lines.append(
                f"• {round_.local_date:%a %d %b}: {title}{state}" + (f" — {link}" if link else "")
            )
        return Notice("\n".join(lines))

    async def _not_posted(
        self, subscription: Subscription, what: str, before: str = ""
    ) -> ErrorView:
        """Say why a post did not reach the channel, that the group is paused, how to resume."""
        now = await self.admin.get(subscription.id)
        await self.status.refresh()
        start = f"{before}could not {what}" if before else f"Could not {what}"
        if now is None or not now.paused:
            return ErrorView(
                f"{start}: nothing reached the channel. Try again, or see /prep status."
            )
        why = explain_pause(now.paused_reason)
        if why.kind is PauseKind.ADMIN:
            return ErrorView(f"{start}: this study group is paused. {why.next_step()}.")
        detail = f" ({why.detail})" if why.detail else ""
        return ErrorView(
            f"{start}: {why.cause}{detail}. This study group is now paused: no questions are "
            f"posted until it is resumed. {why.next_step()}."
        )

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

    def _few_matching(self, subscription: Subscription) -> str:
        """Return a warning when the group's filters match too few scenarios, else nothing."""
        count = len(self.rounds.eligible(subscription))
        return f"\n⚠ {few_matching_notice(count)}" if count < FEW_MATCHING else ""

    def help(self, subscription: Subscription | None, is_admin: bool) -> HelpView:
        """Return the help for this channel and caller."""
        state = None
        if subscription is not None:
            paused = _paused_state(subscription) if subscription.paused else ""
            try:
                state = f"study group, {schedule_of(subscription).describe()}{paused}"
            except ScheduleError as error:
                state = f"study group whose schedule cannot be used ({error}); see /prep status"
        return HelpView(
            commands=tuple((f"`{USAGE[v]}`", DESCRIPTIONS[v]) for v in PUBLIC),
            admin_commands=tuple((f"`{USAGE[v]}`", DESCRIPTIONS[v]) for v in ADMIN)
            if is_admin
            else (),
            subscription=state,
        )


def _paused_state(subscription: Subscription) -> str:
    """Return ' — paused …' for the help: who paused it, or what the platform said."""
    why = explain_pause(subscription.paused_reason)
    if why.kind is PauseKind.ADMIN:
        return " — paused by an admin"
    detail = f" ({why.detail})" if why.detail else ""
    return f" — paused: {why.cause}{detail}"


ANSWER_IN_THREAD = (
    "This study group answers in the question's thread: reply there. (An admin can make "
    "answers private until the reveal with `/prep schedule answers=private`.)"
)
PRIVATE_NOT_STORED = (
    "Your answer could not be stored just now, so nothing was saved. Please send it again "
    "in a moment (copy it first)."
)
PRIVATE_OUTCOMES = {
    AnswerStatus.RECORDED: (
        "🔒 Your answer is stored, hidden from everyone until the reveal, which publishes it "
        "with your name. Press Answer again (or `/prep answer <text>`) to change it, or "
        "`/prep answer --withdraw` to take it back."
    ),
    AnswerStatus.EDITED: "🔒 Your answer is updated; it stays hidden until the reveal.",
    AnswerStatus.WITHDRAWN: "Your answer is withdrawn; nothing of it will be shown.",
    AnswerStatus.REMOVED: "Your late answer is withdrawn.",
    AnswerStatus.LATE: (
        "The reveal is out, so your answer is stored as late: it counts towards your totals "
        "as late, and is not posted in the thread."
    ),
    AnswerStatus.DUPLICATE: "That answer was already received; nothing changed.",
}
NOTHING_TO_WITHDRAW = "You have no answer to this question to withdraw."
NO_OPEN_QUESTION = (
    "There is no open question here to answer. The next one comes with the group's schedule "
    "(`/prep today` shows it)."
)


def _private_outcome(outcome: AnswerOutcome, with_text: bool) -> Notice | ErrorView:
    """Return what a member is told after a private answer or withdrawal."""
    if outcome.status == AnswerStatus.IGNORED:
        if outcome.round_id is None:
            return ErrorView(NO_OPEN_QUESTION)
        return Notice(NOTHING_TO_WITHDRAW if not with_text else NO_OPEN_QUESTION)
    return Notice(PRIVATE_OUTCOMES.get(outcome.status, outcome.status.value))


def _filters(subscription: Subscription) -> str:
    parts = []
    if subscription.topics:
        parts.append("topics " + ", ".join(subscription.topics))
    if subscription.difficulties:
        parts.append("difficulty " + "/".join(subscription.difficulties))
    return f"; {'; '.join(parts)}" if parts else ""
