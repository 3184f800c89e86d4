"""Links out of prepbot: a group's archive address and secret, a round's thread on its platform.

Pure functions on strings, shared by ``/prep archive`` (services) and the archive pages. Imports
no chat platform library, no database and nothing else of prepbot.
"""

from __future__ import annotations

import secrets

TOKEN_BYTES = 24  # 32 URL-safe characters: unguessable, and short enough to paste


def new_token() -> str:
    """Return a fresh unguessable secret for a group's archive link."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def archive_url(base: str, token: str) -> str:
    """Return the address of a group's archive under the server's public base URL."""
    return f"{base.rstrip('/')}/archive/{token}"


def thread_url(
    platform: str, community_id: str, channel_id: str, message_id: str | None
) -> str | None:
    """Return a link to a round's question (and thread) on its platform, or None.

    Slack: a permalink ``https://app.slack.com/archives/<channel>/p<ts without the dot>``
    (Slack redirects it into the workspace); Discord: the message's jump URL. The console and
    other platforms have no links.
    """
    if not message_id:
        return None
    if platform == "slack":
        return f"https://app.slack.com/archives/{channel_id}/p{message_id.replace('.', '')}"
    if platform == "discord":
        return f"https://discord.com/channels/{community_id}/{channel_id}/{message_id}"
    return None
