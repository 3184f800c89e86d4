"""Terminal rendering of scenarios and search results with rich.

Used by the command line; the chat platforms render their own way. Imports no database and
no chat platform.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from prepbot.content.catalog import SearchHit
from prepbot.content.model import Scenario, Topic


def render_scenario(scenario: Scenario, topics: dict[str, Topic]) -> RenderableType:
    """Render the question card: title, context, prompts, topics and difficulty."""
    context = scenario.context
    who = " · ".join(p for p in (context.company, context.role) if p)
    body = Text()
    if who:
        body.append(who + "\n", style="bold cyan")
    body.append(context.situation + "\n\n")
    for number, prompt in enumerate(scenario.prompts, start=1):
        prefix = f"{number}. " if len(scenario.prompts) > 1 else "❓ "
        body.append(prefix + prompt + "\n", style="bold")
    names = ", ".join(topics[t].name if t in topics else t for t in scenario.topics)
    body.append(f"\n{scenario.kind.value} · {scenario.difficulty.value} · {names}", style="dim")
    body.append(f"\nid: {scenario.id}", style="dim")
    return Panel(body, title=scenario.title, title_align="left", border_style="cyan")


def render_reveal(scenario: Scenario) -> RenderableType:
    """Render the reveal: key insights, the trap, follow-ups and the source credit."""
    parts: list[RenderableType] = []
    insights = Text("Key insights\n", style="bold green")
    for insight in scenario.insights:
        insights.append(f"• {insight}\n", style="default")
    parts.append(insights)
    if scenario.trap is not None:
        trap = Text("The trap\n", style="bold yellow")
        trap.append(f"“{scenario.trap.answer}”\n", style="italic")
        trap.append(scenario.trap.why_it_falls_short + "\n", style="default")
        parts.append(trap)
    if scenario.follow_ups:
        follow = Text("Follow-ups\n", style="bold")
        for follow_up in scenario.follow_ups:
            follow.append(f"• {follow_up.question}\n", style="default")
            if follow_up.answer:
                follow.append(f"  {follow_up.answer}\n", style="dim")
        parts.append(follow)
    source = scenario.source
    handle = f" (@{source.handle})" if source.handle else ""
    credit = Text(f"Source: {source.author}{handle} — ", style="dim")
    credit.append(str(source.url), style=f"dim link {source.url}")
    parts.append(credit)
    return Panel(Group(*parts), title="Reveal", title_align="left", border_style="green")


def render_search(query: str, hits: list[SearchHit]) -> RenderableType:
    """Render ranked search results as a table."""
    table = Table(title=f"Scenarios matching '{query}'", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("title")
    table.add_column("company", style="dim")
    for rank, hit in enumerate(hits, start=1):
        scenario = hit.scenario
        table.add_row(str(rank), scenario.id, scenario.title, scenario.context.company or "")
    return table
