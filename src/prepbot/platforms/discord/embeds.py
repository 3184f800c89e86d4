"""Neutral views → Discord embeds (and the plain content that carries mentions).

Discord's limits are kept: title 256, description 4096, 25 fields of 1,024, 6,000 in all,
10 embeds per message. Member mentions go in the message content (embeds never ping). A
private-mode question says it carries the Answer button (``DiscordMessage.answer_button``:
the adapter attaches it); a reveal publishes the group's private answers, with their
authors' names (never pings), folded to fit. Builds discord.py ``Embed`` objects only; no
network, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import discord

from prepbot.core.text import (
    SHARED_TITLE,
    answer_here,
    coverage_lines,
    local_time,
    render_text,
    rotation_notice,
    shared_more,
    status_lines,
    status_title,
    withheld_text,
)
from prepbot.core.views import (
    ErrorView,
    MemberRef,
    PendingReveal,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SharedAnswer,
    StatusView,
    View,
    answer_count_line,
    credit_items,
    others,
    share_within,
)

TITLE, DESCRIPTION, FIELD_VALUE, FIELDS, TOTAL, CONTENT = 256, 4096, 1024, 25, 6000, 2000
FIELD_NAME = 256
QUESTION_COLOUR, REVEAL_COLOUR, ERROR_COLOUR = 0x3B82F6, 0x22C55E, 0xEF4444
PAUSED_COLOUR = 0xF59E0B
SHARED_COLOUR = 0x8B5CF6
ANSWER_BUTTON = "prep:answer"  # custom_id of the Answer button under a private-mode question
ANSWER_LABEL, ANSWER_EMOJI = "Answer", "✍️"
SHARED_NAME = 64  # an author's name in the reveal, at most
SHARED_EACH_AT_MOST = 1000  # characters of one shared answer, at most (before folding)
SHARED_EACH_AT_LEAST = 120  # characters of one shared answer, at least: past that, counted
SHARED_ROOM = 2500  # characters the shared answers get even when the insights are long


@dataclass
class DiscordMessage:
    """What one Discord message says: content (mentions live here) and embeds."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    answer_button: bool = False
    """The message carries the Answer button (a private-mode round's question)."""


def clip(text: str, limit: int) -> str:
    """Shorten text to ``limit`` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mention(member: MemberRef) -> str:
    """Return a Discord user mention (ids are numeric snowflakes)."""
    return f"<@{member.id}>" if member.id.isdigit() else f"@{member.name}"


def render(view: View) -> DiscordMessage:
    """Render a view as a Discord message."""
    match view:
        case QuestionCard():
            private_round = view.private and view.reveal_at is not None
            return DiscordMessage(embeds=[question_embed(view)], answer_button=private_round)
        case RevealCard():
            return reveal_message(view)
        case ScenarioDetail():
            if view.reveal is None:
                text = withheld_text(view.withheld, "this server", channel_link)
                withheld = discord.Embed(description=clip(text, DESCRIPTION))
                return DiscordMessage(embeds=[question_embed(view.question), withheld])
            reveal = reveal_message(view.reveal)
            return DiscordMessage(embeds=[question_embed(view.question), *reveal.embeds])
        case StatusView():
            return DiscordMessage(embeds=[status_embed(view)])
        case ErrorView():
            embed = discord.Embed(
                description=clip(f"⚠️ {view.text}", DESCRIPTION), colour=ERROR_COLOUR
            )
            return DiscordMessage(embeds=[embed])
        case _:
            text = render_text(view)
            embed = discord.Embed(description=clip(text, DESCRIPTION))
            return DiscordMessage(embeds=[embed])


def question_embed(card: QuestionCard) -> discord.Embed:
    """Return the question of the day as an embed."""
    who = " · ".join(p for p in (card.company, card.role) if p)
    lines = [f"*{who}*" if who else "", card.situation, ""]
    if len(card.prompts) == 1:
        lines.append(f"❓ **{card.prompts[0]}**")
    else:
        lines += [f"❓ **{n}. {p}**" for n, p in enumerate(card.prompts, start=1)]
    if card.reveal_at is not None and card.private:
        lines += ["", answer_here(card, button=ANSWER_LABEL)]
        if card.answer_count is not None:
            lines.append(answer_count_line(card.answer_count))
    elif card.reveal_at is not None:
        unix = int(card.reveal_at.timestamp())
        lines += ["", f"Reply in this thread to answer. Key insights revealed <t:{unix}:F>."]
    elif card.practice:
        lines += ["", "Practice question — only you can see this; it is not scored."]
    if card.rotation_left is not None:
        lines += ["", rotation_notice(card.rotation_left)]
    embed = discord.Embed(
        title=clip(card.title, TITLE),
        description=clip("\n".join(lines).strip(), DESCRIPTION),
        colour=QUESTION_COLOUR,
    )
    footer = f"{card.kind} · {card.difficulty} · {', '.join(card.topics)} · id {card.scenario_id}"
    if card.reveal_at is not None and card.timezone:
        footer += f" · reveal {local_time(card.reveal_at, card.timezone)}"
    embed.set_footer(text=clip(footer, 2048))
    return embed


def status_embed(view: StatusView) -> discord.Embed:
    """Return a study group's status: a field per fact, amber while the group is paused."""
    embed = discord.Embed(
        title=clip(status_title(view), TITLE),
        colour=PAUSED_COLOUR if view.paused else REVEAL_COLOUR,
    )
    lines = [(clip(label, TITLE), clip(text, FIELD_VALUE)) for label, text in status_lines(view)]
    budget = TOTAL - len(embed) - 100  # room for the line that says what was left out
    for index, (name, value) in enumerate(lines):
        last_slot = len(embed.fields) == FIELDS - 1 and index < len(lines) - 1
        if len(name) + len(value) > budget or last_slot:
            rest = len(lines) - index
            embed.add_field(name="…", value=f"and {rest} more lines than fit here", inline=False)
            break
        embed.add_field(name=name, value=value, inline=False)
        budget -= len(name) + len(value)
    return embed


def reveal_message(card: RevealCard) -> DiscordMessage:
    """Return the reveal: an embed with insights, trap, follow-ups and credit; mentions outside."""
    insights = "\n".join(f"• {i}" for i in card.insights)
    embed = discord.Embed(
        title=clip(f"💡 Key insights — {card.title}", TITLE),
        description=clip(insights, DESCRIPTION),
        colour=REVEAL_COLOUR,
    )
    if card.trap_answer:
        trap = f"“{card.trap_answer}”\n{card.trap_why or ''}"
        embed.add_field(name="The trap", value=clip(trap, FIELD_VALUE), inline=False)
    if card.follow_ups:
        follow = "\n".join(f"• {q}" for q in card.follow_ups)
        embed.add_field(name="Follow-ups", value=clip(follow, FIELD_VALUE), inline=False)
    handle = f" (@{card.source_handle})" if card.source_handle else ""
    credit = (
        f"[{card.source_author}]({card.source_url}){handle}"
        if card.source_url
        else card.source_author
    )
    embed.add_field(name="Source", value=clip(credit, FIELD_VALUE), inline=False)
    if card.is_round and (coverage := coverage_lines(card)):
        embed.add_field(
            name=clip(coverage[0], FIELD_NAME),
            value=clip("\n".join(coverage[1:]), FIELD_VALUE),
            inline=False,
        )
    _fit(embed)
    embeds = [embed]
    if card.shared:
        fixed = len(embed) - len(embed.description or "")
        room = max(TOTAL - len(embed), min(SHARED_ROOM, TOTAL - fixed - 500))
        shared = shared_embed(card.shared, min(room, DESCRIPTION))
        _fit(embed, TOTAL - len(shared))
        embeds = [shared, embed]
    content, ids = "", []
    if card.is_round:
        credits = card.credits()  # at most MAX_MENTIONS members: the rest are counted
        if card.on_time:
            named = credit_items([mention(m) for m in credits.on_time], credits.on_time_more)
            content = f"Answered on time: {', '.join(named)} — thank you!"
        else:
            content = "Nobody answered this one on time."
        if card.late:
            named = credit_items([mention(m) for m in credits.late], credits.late_more)
            content += f"\nLate answers: {', '.join(named)}"
        for milestone in credits.milestones:
            content += (
                f"\n🔥 {mention(milestone.member)} reached a {milestone.streak}-round streak!"
            )
        if rest := others(len(credits.milestones), credits.milestones_more):
            content += f"\n🔥 …{rest} reached a streak milestone!"
        mentioned = (*credits.on_time, *credits.late, *(m.member for m in credits.milestones))
        ids = list(dict.fromkeys(int(m.id) for m in mentioned if m.id.isdigit()))
    return DiscordMessage(content=clip(content, CONTENT), embeds=embeds, mentions=ids)


def shared_embed(answers: tuple[SharedAnswer, ...], room: int) -> discord.Embed:
    """Return the private answers made public, with their authors' names, within ``room``.

    Long answers are folded so that every author gets a share; answers past the room are
    counted in a last line. Names are plain (bold), never mentions: nobody is pinged.
    """
    title = clip(SHARED_TITLE, TITLE)
    room = max(room - len(title), 200)
    names = [
        f"**{clip(discord.utils.escape_markdown(a.member.name), SHARED_NAME)}**: " for a in answers
    ]
    each = max(len(n) for n in names) + 2  # a name and the blank line between answers
    last = len(shared_more(len(answers))) + 2
    fits = max(min(len(answers), (room - last) // (SHARED_EACH_AT_LEAST + each)), 1)
    budget = room - last - each * fits
    while True:
        shown, more = share_within(
            answers,
            budget=max(budget, SHARED_EACH_AT_LEAST),
            each_at_most=SHARED_EACH_AT_MOST,
            each_at_least=SHARED_EACH_AT_LEAST,
        )
        lines = [f"{names[i]}{a.text}" for i, a in enumerate(shown)]
        if more:
            lines.append(shared_more(more))
        text = "\n\n".join(lines)
        if len(text) <= room or budget <= SHARED_EACH_AT_LEAST:
            break
        budget -= len(text) - room + 50
    return discord.Embed(title=title, description=clip(text, room), colour=SHARED_COLOUR)


def channel_link(pending: PendingReveal) -> str:
    """Return an open round's channel as a Discord channel mention, shown as #name."""
    return (
        f"<#{pending.channel_id}>" if pending.channel_id.isdigit() else f"#{pending.channel_name}"
    )


def _fit(embed: discord.Embed, limit: int = TOTAL) -> None:
    """Trim the description until the whole embed is within ``limit`` (Discord's 6,000)."""
    while len(embed) > limit and embed.description:
        embed.description = clip(embed.description, max(len(embed.description) - 200, 1))
