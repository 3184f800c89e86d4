"""Use cases for platforms and the scheduler: rounds, answers, queries, admin, digests, commands.

Platform-neutral: nothing here imports ``slack_bolt`` or ``discord``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prepbot.services.admin import AdminService
from prepbot.services.answers import AnswerService
from prepbot.services.base import ServiceContext
from prepbot.services.commands import CommandService
from prepbot.services.digests import DigestService
from prepbot.services.privacy import PrivacyService
from prepbot.services.private import PrivateAnswers
from prepbot.services.queries import QueryService
from prepbot.services.rounds import RoundService
from prepbot.services.status import StatusService


@dataclass
class Services:
    """Every service, wired to one context."""

    ctx: ServiceContext
    rounds: RoundService
    answers: AnswerService
    queries: QueryService
    admin: AdminService
    commands: CommandService
    status: StatusService
    private: PrivateAnswers
    privacy: PrivacyService
    digests: DigestService

    @classmethod
    def build(cls, ctx: ServiceContext) -> Services:
        """Wire every service to ``ctx``."""
        rounds, queries, admin = RoundService(ctx), QueryService(ctx), AdminService(ctx)
        answers = AnswerService(ctx)

        async def adopt(subscription_id: int, thread_id: str) -> None:
            await answers.adopt(subscription_id, thread_id)

        ctx.thread_listeners.append(adopt)  # replies held while a question was being posted
        answers.on_changed = rounds.feedback.pregrade_soon  # grade answers as they are stored
        private = PrivateAnswers(ctx, rounds.question_card)
        privacy = PrivacyService(ctx)
        answers.on_counted = private.counted  # private-mode questions show a running count
        answers.on_public_reply = private.replied_in_public
        status = StatusService(ctx, rounds)
        admin.listeners.append(status.on_subscription_changed)
        return cls(
            ctx=ctx,
            rounds=rounds,
            answers=answers,
            queries=queries,
            admin=admin,
            commands=CommandService(ctx, rounds, queries, admin, status, answers, private, privacy),
            status=status,
            private=private,
            privacy=privacy,
            digests=DigestService(ctx, rounds.pause),
        )
