"""A loopback fake of Discord's REST API v10 and Gateway v10, speaking Discord's own wire format.

The real discord.py client is pointed at it (``with fake.patch_discord():`` sets
``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY``) and talks HTTP and
WebSocket to 127.0.0.1 exactly as it would to discord.com:

* REST under ``/api/v10``: ``Authorization: Bot <token>``, JSON (or multipart ``payload_json``)
  bodies, answers with exactly ``Content-Type: application/json`` (discord.py compares the
  header verbatim), ``X-RateLimit-*`` headers, 429s with ``Via`` and a JSON ``retry_after``,
  Discord's error bodies (``{"message": ..., "code": ...}``, ``50035`` with ``errors``).
* The Gateway under ``/gateway``: HELLO, heartbeats and ACKs, IDENTIFY (token, intents,
  privileged intents), READY with unavailable guilds then one complete GUILD_CREATE per guild,
  sequence numbers, RESUME with a replay of missed events, INVALID_SESSION, RECONNECT,
  REQUEST_GUILD_MEMBERS chunks, intent filtering and message-content stripping. discord.py
  always asks for ``compress=zlib-stream``; the fake then sends binary zlib-stream frames
  (``Z_SYNC_FLUSH``-terminated), and plain text frames otherwise (``zstd-stream``, asked for
  when ``zstandard`` is installed, included: discord.py reads text frames either way).

The world (guilds, roles, members, channels, threads, messages, commands, interactions) lives
in plain dicts shaped like Discord's payloads so that tests can inspect it. ``fail_next`` queues
exact REST failures; ``slow_next`` makes the next matching calls answer late (carried out at
once, the answer held back), recorded in ``answered_late``; ``chaos`` answers a seeded random
share of REST calls with a 429, a 500, a held-back answer (a client timeout) or a slow one
(carried out, answered after a random delay), recorded in ``injected``. A message sent with
``enforce_nonce`` and a nonce seen from the same author in the last few minutes returns that
message instead of a new one, as on Discord. One client (one
gateway session) at a time. Direct messages: the bot can open a DM channel with a user and
send in it, unless ``closed_dms`` names the user (403, code 50007, as Discord answers when a
member's DMs are closed). The bot's own reactions are stored on the message. Files come as
discord.py sends them, ``multipart/form-data`` with ``payload_json`` and ``files[n]`` parts, on
messages, forum posts, interaction responses, follow-ups and edits: each becomes an attachment
(id, filename, size, url served by the fake, content_type guessed from the name when sent as
``application/octet-stream``, as Discord sniffs it), its bytes kept in ``attachments``; an
embed's ``attachment://<name>`` image or thumbnail becomes that attachment's URL, and an edit's
``attachments`` list keeps the ones it names. Files over ``upload_limit`` bytes are answered
413 (code 40005); ``deny_bot(channel_id, ATTACH_FILES)`` takes a permission from the bot in a
channel (and its threads), so a message with files there is answered 403 (code 50013). Messages keep
their components (rows of buttons, checked against Discord's limits) through sends and edits;
``press_button`` and ``submit_modal`` dispatch component (type 3) and modal-submit (type 5)
interactions, ``redeliver`` sends one again with the same id, and a modal response (type 9)
is checked and recorded like any other interaction response. No voice,
presences, audit logs, or the system messages Discord adds around threads
(THREAD_CREATED, THREAD_STARTER_MESSAGE).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import math
import mimetypes
import re
import secrets
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web

from tests.chaos import FAULT_KINDS, SLOW, Chaos, count_kinds

__all__ = [
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "BOT_PERMISSIONS",
    "EVERYONE_PERMISSIONS",
    "FAULT_KINDS",
    "INTENT_GUILDS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "MANAGE_GUILD",
    "PRIVILEGED_INTENTS",
    "FakeDiscord",
    "Injected",
    "Late",
    "RestCall",
    "dated_by",
    "snowflake",
]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000

# Gateway intents (https://discord.com/developers/docs/topics/gateway#gateway-intents).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Application flags Discord reports for an unverified bot with privileged intents switched on.
_APP_FLAG_PRESENCE_LIMITED = 1 << 13
_APP_FLAG_GUILD_MEMBERS_LIMITED = 1 << 15
_APP_FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19

# Permission bits.
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_THREADS | MANAGE_MESSAGES

# Message flags.
_FLAG_HAS_THREAD = 1 << 5
_FLAG_EPHEMERAL = 1 << 6
_FLAG_LOADING = 1 << 7
_SETTABLE_MESSAGE_FLAGS = (1 << 2) | (1 << 12) | (1 << 15)  # suppress embeds/notifs, v2

_TEXT, _NEWS, _PUBLIC_THREAD, _PRIVATE_THREAD, _FORUM = 0, 5, 11, 12, 15
_THREAD_TYPES = (10, _PUBLIC_THREAD, _PRIVATE_THREAD)
_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)

_MENTION = re.compile(r"<@!?(\d+)>")
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")

_STATUS_MESSAGES = {
    400: "400: Bad Request",
    401: "401: Unauthorized",
    403: "403: Forbidden",
    404: "404: Not Found",
    405: "405: Method Not Allowed",
    500: "500: Internal Server Error",
    502: "502: Bad Gateway",
    503: "503: Service Unavailable",
}

_last_snowflake = 0
_clock: Callable[[], float] = time.time  # what the fake Discord's clock says, in epoch seconds


@contextlib.contextmanager
def dated_by(clock: Callable[[], float]) -> Iterator[None]:
    """Date new snowflakes and timestamps by ``clock`` (a simulated one), not the machine's.

    In production Discord's clock and the bot host's agree; a test that simulates days keeps
    them agreeing this way. The snowflake sequence is restored afterwards.
    """
    global _clock, _last_snowflake
    saved = _clock, _last_snowflake
    _clock = clock
    try:
        yield
    finally:
        _clock, _last_snowflake = saved


def snowflake() -> int:
    """Return a fresh Discord snowflake: unique, increasing, with the current time in it."""
    global _last_snowflake
    candidate = (int(_clock() * 1000) - DISCORD_EPOCH_MS) << 22
    _last_snowflake = max(candidate, _last_snowflake + 1)
    return _last_snowflake


def _iso(snowflake_id: int | None = None) -> str:
    if snowflake_id is None:
        return datetime.fromtimestamp(_clock(), UTC).isoformat()
    ms = (snowflake_id >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass
class RestCall:
    """One REST request the fake received (faults and errors included), oldest first.

    ``path`` has no ``/api/v10`` prefix and no query string; ``json`` is the decoded JSON body
    (or a multipart request's ``payload_json``), ``None`` without a body.
    """

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    times: int
    code: int
    message: str | None
    is_global: bool


@dataclass
class _Slow:
    method: str
    pattern: re.Pattern[str]
    seconds: float
    processed: bool
    times: int


@dataclass
class Late:
    """One call ``slow_next`` answered late: what was asked, how late, whether it was done."""

    method: str
    path: str
    json: Any
    seconds: float
    processed: bool


NONCE_WINDOW = 300.0  # seconds Discord remembers an enforced nonce ("the past few minutes")


@dataclass
class Injected:
    """One fault ``chaos`` injected: the call it hit and what the client saw.

    ``processed`` is true for a timeout (or a slow answer) whose request the fake carried out
    (successfully) before it held the answer back, as a server does when only the response is
    lost or late; ``delay`` is how long a slow answer was held.
    """

    method: str
    path: str
    json: Any
    kind: str
    processed: bool = False
    draw: float = 0.0
    delay: float = 0.0


@dataclass
class _Chaos(Chaos):
    max_retry_after: float
    pattern: re.Pattern[str] | None


class _Fail(Exception):
    """A Discord error answer raised from deep inside a handler."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors


def _invalid_form(errors: dict[str, Any]) -> _Fail:
    return _Fail(400, 50035, "Invalid Form Body", errors)


def _form_error(path: list[str], code: str, message: str) -> dict[str, Any]:
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        node = {key: node}
    return node


@dataclass
class _Upload:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class _Request:
    method: str
    path: str
    json: Any
    query: dict[str, str]
    uploads: list[_Upload]


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    compressor: Any  # zlib.compressobj() when the client asked for zlib-stream, else None
    query: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    session: _Session | None = None


@dataclass
class _Session:
    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    conn: _Connection | None = None
    resumable: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Guild:
    id: int
    name: str
    owner_id: int
    admin_role_id: int
    bot_role_id: int
    joined_at: str
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # without "user"
    channel_ids: list[int] = field(default_factory=list)


@dataclass
class _Interaction:
    id: str
    token: str
    type: int
    payload: dict[str, Any]
    acknowledged: bool = False
    original: dict[str, Any] | None = None
    followups: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)


Handler = Callable[[_Request, "re.Match[str]"], Awaitable[tuple[int, Any]]]


class FakeDiscord:
    """Discord's REST API and Gateway on 127.0.0.1, with a world to set up and inspect.

    Use ``await fake.start()`` / ``await fake.stop()`` or ``async with FakeDiscord() as fake``;
    then ``with fake.patch_discord():`` (or ``async with fake.connected(client):``, which
    patches, logs in, connects and waits until the client is ready).
    """

    def __init__(
        self,
        *,
        token: str = "bot-token",
        application_id: int = 1000,
        bot_user_id: int = 1001,
        bot_name: str = "prepbot",
        heartbeat_interval: int = 41250,
        privileged_intents: int = PRIVILEGED_INTENTS,
        echo_bot_messages: bool = True,
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.heartbeat_interval = heartbeat_interval
        self.privileged_intents = privileged_intents
        self.echo_bot_messages = echo_bot_messages
        self.owner_user_id = snowflake()

        self.calls: list[RestCall] = []
        self.channel_errors: dict[int, tuple[int, int, str]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, _Guild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.threads: dict[int, dict[str, Any]] = {}
        self.dm_channels: dict[int, dict[str, Any]] = {}
        self.closed_dms: set[int] = set()  # users whose DMs refuse the bot (50007)
        self.messages: dict[int, list[dict[str, Any]]] = {}
        self.attachments: dict[int, bytes] = {}
        self.upload_limit = 10 * 1024 * 1024  # bytes of files in one request (a guild's default)
        self.bot_denied: dict[int, int] = {}  # channel id → permission bits the bot lacks there
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.interactions: dict[str, _Interaction] = {}
        self.gateway_received: list[dict[str, Any]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.presence_updates: list[dict[str, Any]] = []
        self.errors: list[Exception] = []
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0

        self.users[bot_user_id] = {
            "id": str(bot_user_id),
            "username": bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "public_flags": 0,
        }

        self._runner: web.AppRunner | None = None
        self._port = 0
        self._faults: list[_Fault] = []
        self._slow: list[_Slow] = []
        self.answered_late: list[Late] = []
        self._chaos: _Chaos | None = None
        self.injected: list[Injected] = []
        self._nonces: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._connections: list[_Connection] = []
        self._ready = asyncio.Event()
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._message_channel: dict[int, int] = {}
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self._routes = self._route_table()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the HTTP/WebSocket server on 127.0.0.1 at a port the OS picks."""
        if self._runner is not None:
            raise RuntimeError("FakeDiscord is already started")
        app = web.Application()
        app.router.add_get("/gateway", self._handle_gateway)
        app.router.add_get("/attachments/{channel}/{id}/{filename}", self._handle_attachment)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_rest)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every gateway connection (1001), then the server; safe to call twice.

        Raises if the fake itself failed while serving (recorded in ``errors``).
        """
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self._connections):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._connections.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.errors:
            errors, self.errors = self.errors, []
            raise RuntimeError(f"FakeDiscord failed while serving: {errors!r}") from errors[0]

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """The server's root, ``http://127.0.0.1:<port>``."""
        if self._runner is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """The REST base URL discord.py's ``Route.BASE`` must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """The gateway URL (``DEFAULT_GATEWAY``, ``/gateway/bot`` and ``resume_gateway_url``)."""
        return f"ws://127.0.0.1:{self._port}/gateway"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST and gateway URLs at the fake; restore them on exit.

        Keep it active for as long as the client runs: discord.py reads ``Route.BASE`` on every
        request and falls back to ``DEFAULT_GATEWAY`` after an INVALID_SESSION.
        """
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    @contextlib.asynccontextmanager
    async def connected(
        self, client: Any, *, token: str | None = None, timeout: float = 10
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Patch discord.py, log ``client`` in, run ``connect()`` in a task, wait until ready.

        Yields the connect task. On exit the client is closed, the task awaited, and an
        exception the task ended with is raised (a dead connect task otherwise goes unnoticed).
        Pass ``guild_ready_timeout=0.05`` to the client, or every READY waits two seconds.
        """
        with self.patch_discord():
            await client.login(token if token is not None else self.token)
            task: asyncio.Task[None] = asyncio.create_task(client.connect(reconnect=True))
            try:
                ready = asyncio.create_task(client.wait_until_ready())
                done, _ = await asyncio.wait(
                    {ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if ready not in done:
                    ready.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ready
                    if task.done() and task.exception() is not None:
                        raise RuntimeError("the client's connect() failed") from task.exception()
                    raise TimeoutError("the client did not become ready")
                yield task
            finally:
                await client.close()
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if not done:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    raise TimeoutError("the client's connect() did not end after close()")
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the client's connect() failed") from task.exception()

    # -- inspection and set-up -------------------------------------------------------------

    def calls_to(self, method: str, path_regex: str) -> list[RestCall]:
        """Return the recorded calls whose method matches and path fully matches the regex."""
        pattern = re.compile(path_regex)
        return [
            call
            for call in self.calls
            if call.method == method.upper() and pattern.fullmatch(call.path)
        ]

    def fail_next(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 429,
        retry_after: float = 0.5,
        times: int = 1,
        code: int = 0,
        message: str | None = None,
        is_global: bool = False,
    ) -> None:
        """Make the next ``times`` matching authenticated REST calls fail (after the auth check).

        429 answers like Discord's rate limiter (``Via`` header, ``retry_after`` in the body,
        ``X-RateLimit-*``), which discord.py waits out and retries. Other statuses answer
        ``{"message": message, "code": code}``; discord.py retries 500/502/504 itself after
        sleeping 1 + 2*try seconds.
        """
        self._faults.append(
            _Fault(
                method.upper(),
                re.compile(path_regex),
                status,
                retry_after,
                times,
                code,
                message,
                is_global,
            )
        )

    def slow_next(
        self,
        method: str,
        path_regex: str,
        seconds: float,
        *,
        times: int = 1,
        processed: bool = True,
    ) -> None:
        """Make the next ``times`` matching authenticated REST calls answer ``seconds`` late.

        With ``processed`` the call is carried out at once (a message is in the channel, a
        thread is open and its THREAD_CREATE dispatched) and its real answer is sent
        ``seconds`` later, as Discord does under load; a client that gives up first never
        learns the ids. Without it nothing is done and a 500 comes late. A fault queued by
        ``fail_next`` for the same call comes first.
        """
        self._slow.append(_Slow(method.upper(), re.compile(path_regex), seconds, processed, times))

    def chaos(
        self,
        *,
        rate: float = 0.2,
        seed: int = 0,
        kinds: Collection[str] = FAULT_KINDS,
        hold: float = 2.0,
        max_retry_after: float = 1.0,
        path_regex: str | None = None,
        max_delay: float = 0.0,
    ) -> None:
        """Answer a seeded random ``rate`` of authenticated REST calls with one of ``kinds``.

        ``"429"``: Discord's rate-limit answer with ``retry_after`` 0..``max_retry_after``
        seconds; ``"500"``: an internal server error (discord.py retries those itself);
        ``"timeout"``: the answer is held ``hold`` seconds (set it longer than the client's
        timeout), and half of the time the request is carried out first; ``"slow"`` (not among
        the defaults): carried out, answered after 0..``max_delay`` seconds. Whether a call fails
        depends only on the seed, its method and path and how many such calls came before.
        ``path_regex`` limits chaos to matching paths; ``calm()`` ends it.
        """
        pattern = re.compile(path_regex) if path_regex is not None else None
        self._chaos = _Chaos(
            rate, seed, tuple(kinds), hold, max_retry_after, pattern, max_delay=max_delay
        )

    def calm(self) -> None:
        """Stop injecting random faults."""
        self._chaos = None

    def injected_kinds(self) -> dict[str, int]:
        """Return how many faults of each kind ``chaos`` injected."""
        return count_kinds(self.injected)

    def add_guild(self, guild_id: int, name: str, *, owner_id: int) -> None:
        """Add a guild with its owner and the bot: @everyone, a Manage Server role, a bot role.

        The owner has every permission, as on Discord.
        """
        if guild_id in self.guilds:
            raise ValueError(f"guild {guild_id} exists already")
        guild = _Guild(guild_id, name, owner_id, snowflake(), snowflake(), _iso())
        guild.roles[guild_id] = _role(guild_id, "@everyone", 0, EVERYONE_PERMISSIONS)
        guild.roles[guild.admin_role_id] = _role(
            guild.admin_role_id, "Server Managers", 1, EVERYONE_PERMISSIONS | MANAGE_GUILD
        )
        bot_role = _role(guild.bot_role_id, self.users[self.bot_user_id]["username"], 2, 0)
        bot_role.update(
            permissions=str(BOT_PERMISSIONS),
            managed=True,
            tags={"bot_id": str(self.bot_user_id)},
        )
        guild.roles[guild.bot_role_id] = bot_role
        guild.members[self.bot_user_id] = _member_record([guild.bot_role_id], guild.joined_at)
        if owner_id not in self.users:  # the owner is always a member; add_member() renames
            self.users[owner_id] = _user(owner_id, f"owner{owner_id}")
        guild.members[owner_id] = _member_record([], guild.joined_at)
        self.guilds[guild_id] = guild
        self._schedule("GUILD_CREATE", guild_id)

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        name: str,
        *,
        manage_guild: bool = False,
        nick: str | None = None,
        bot: bool = False,
    ) -> None:
        """Add a member; ``manage_guild`` gives them the role with Manage Server."""
        guild = self._guild(guild_id)
        self.users[user_id] = _user(user_id, name, bot=bot)
        roles = [guild.admin_role_id] if manage_guild else []
        guild.members[user_id] = _member_record(roles, _iso(), nick=nick)
        self._schedule("GUILD_MEMBER_ADD", {"guild_id": guild_id, "user_id": user_id})

    def add_text_channel(self, guild_id: int, channel_id: int, name: str) -> None:
        """Add a text channel (type 0) to a guild."""
        self._add_channel(guild_id, channel_id, name, _TEXT)

    def add_forum_channel(self, guild_id: int, channel_id: int, name: str) -> None:
        """Add a forum channel (type 15) to a guild."""
        self._add_channel(guild_id, channel_id, name, _FORUM)

    def deny_bot(self, channel_id: int, permissions: int) -> None:
        """Take permissions from the bot in a channel (and its threads), as an overwrite does."""
        self.bot_denied[channel_id] = self.bot_denied.get(channel_id, 0) | permissions

    def _check_bot_may(self, channel_id: int, permission: int) -> None:
        """Raise Discord's Missing Permissions when the bot lacks one in a channel."""
        channel = self._any_channel(channel_id)
        denied = self.bot_denied.get(channel_id, 0)
        if channel.get("parent_id"):
            denied |= self.bot_denied.get(int(channel["parent_id"]), 0)
        if denied & permission:
            raise _Fail(403, 50013, "Missing Permissions")

    def member_permissions(self, guild_id: int, user_id: int) -> int:
        """Return a member's guild permissions as Discord computes them (owner/admin = all)."""
        guild = self._guild(guild_id)
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        value = int(guild.roles[guild_id]["permissions"])
        for role_id in member["roles"] if member else []:
            value |= int(guild.roles[int(role_id)]["permissions"])
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def interaction_responses(self, interaction_id: str) -> list[dict[str, Any]]:
        """Return what the bot answered to an interaction, in order.

        Each entry is ``{"kind": ..., "json": body, "message_id": ...}`` with ``kind`` one of
        ``callback`` (``json["type"]`` 4 message, 5 deferred, 8 autocomplete result, ...),
        ``edit_original``, ``delete_original``, ``followup``, ``edit_followup``,
        ``delete_followup``.
        """
        return list(self.interactions[str(interaction_id)].responses)

    def message(self, message_id: int | str) -> dict[str, Any]:
        """Return a stored message by id (``KeyError`` if it does not exist)."""
        channel_id = self._message_channel[int(message_id)]
        for stored in self.messages.get(channel_id, []):
            if stored["id"] == str(message_id):
                return stored
        raise KeyError(message_id)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Poll until ``predicate()`` holds; raise ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    # -- gateway: driving the client -------------------------------------------------------

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a client identified and was sent READY and every GUILD_CREATE."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send ``{"op": 0, "t": event, "s": seq, "d": data}`` as given (no intent filtering).

        With the connection dropped the event is kept for the RESUME replay.
        """
        await self._flush_pending()
        await self._emit(self._require_session(), event, data, filtered=False)

    async def member_message(
        self,
        channel_id: int,
        user_id: int,
        content: str,
        *,
        guild_id: int,
        embeds: list[dict[str, Any]] | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """Post a member's message in a channel or thread: store it, dispatch MESSAGE_CREATE.

        Returns the stored message payload (without the gateway-only ``guild_id``/``member``).
        """
        guild = self._guild(guild_id)
        if user_id not in guild.members:
            raise ValueError(f"user {user_id} is not a member of guild {guild_id}")
        channel = self._channel_in(guild_id, channel_id)
        if channel["type"] == _FORUM:
            raise ValueError("members post in a forum by creating a thread")
        body: dict[str, Any] = {"content": content, "embeds": embeds or []}
        if reply_to is not None:
            body["message_reference"] = {"message_id": str(reply_to)}
        await self._unarchive_if_needed(channel_id)
        message = self._create_message(channel_id, user_id, body)
        await self._broadcast("MESSAGE_CREATE", self._gateway_message(message))
        return message

    async def member_edit(
        self, channel_id: int, message_id: int, content: str, *, guild_id: int
    ) -> None:
        """Edit a stored message's content and dispatch MESSAGE_UPDATE (the full message)."""
        self._channel_in(guild_id, channel_id)
        message = self._stored_message(channel_id, message_id)
        message["content"] = content
        message["edited_timestamp"] = _iso()
        message["mentions"] = self._mentions(content, guild_id)
        await self._broadcast("MESSAGE_UPDATE", self._gateway_message(message))

    async def member_delete(self, channel_id: int, message_id: int, *, guild_id: int) -> None:
        """Delete a stored message and dispatch MESSAGE_DELETE."""
        self._channel_in(guild_id, channel_id)
        self._remove_message(channel_id, message_id)
        await self._broadcast(
            "MESSAGE_DELETE",
            {"id": str(message_id), "channel_id": str(channel_id), "guild_id": str(guild_id)},
        )

    async def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """Archive a thread (as Discord does after its auto-archive duration): THREAD_UPDATE."""
        thread = self.threads[thread_id]
        metadata = thread["thread_metadata"]
        metadata.update(archived=True, archive_timestamp=_iso(), locked=locked)
        await self._broadcast("THREAD_UPDATE", self._thread_event(thread))

    async def slash_command(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        locale: str = "en-US",
    ) -> str:
        """Dispatch INTERACTION_CREATE (type 2) for a synced chat-input command; return its id.

        ``name`` is the full command path (``"prep today"``); ``options`` are the leaf
        options (``{"name": ..., "value": ...}``, ``type`` filled in from the synced
        definition), nested for Discord as subcommand (group) options. Options already nested
        (with a type 1/2 entry) are sent as given. User, member, role and channel options get
        their ``resolved`` data.
        """
        self._require_session()
        payload = self._command_interaction(
            2, guild_id, channel_id, user_id, name, options or [], None, locale
        )
        await self._broadcast("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def answered_command(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        options: list[dict[str, Any]] | None = None,
    ) -> str:
        """Run a slash command, wait for the bot's follow-up, return every answer as JSON text."""
        interaction = await self.slash_command(guild_id, channel_id, user_id, name, options)
        await self.wait_for(
            lambda: any(r["kind"] == "followup" for r in self.interaction_responses(interaction)),
            timeout=15,
        )
        return json.dumps(self.interaction_responses(interaction), ensure_ascii=False)

    async def autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        options: list[dict[str, Any]],
        *,
        focused: str | None = None,
        locale: str = "en-US",
    ) -> str:
        """Dispatch INTERACTION_CREATE (type 4, autocomplete); ``focused`` names the option.

        The focused option's value is sent as a string, as Discord does.
        """
        self._require_session()
        payload = self._command_interaction(
            4, guild_id, channel_id, user_id, name, options, focused, locale
        )
        await self._broadcast("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def press_button(
        self,
        guild_id: int,
        channel_id: int,
        message_id: int,
        user_id: int,
        custom_id: str,
        *,
        message: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> str:
        """Dispatch INTERACTION_CREATE (type 3): a member presses a button on a stored message.

        ``channel_id`` is where the message is (a forum post's starter message is in its
        thread); the button must be among the message's components. An ephemeral message
        (never stored) is given as ``message``. Returns the interaction id.
        """
        self._require_session()
        if message is None:
            message = self._stored_message(channel_id, message_id)
        buttons = [
            c
            for row in message.get("components") or []
            for c in row.get("components") or []
            if c.get("type") == 2
        ]
        (button,) = [b for b in buttons if b.get("custom_id") == custom_id] or [None]
        if button is None:
            raise ValueError(f"message {message_id} has no button {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction_payload(
            3, self._guild(guild_id), channel_id, user_id, data, locale
        )
        payload["message"] = copy.deepcopy(message)
        await self._broadcast("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def submit_modal(
        self,
        guild_id: int,
        channel_id: int,
        user_id: int,
        custom_id: str,
        values: dict[str, str],
        *,
        message_id: int | None = None,
        locale: str = "en-US",
    ) -> str:
        """Dispatch INTERACTION_CREATE (type 5): a member submits a modal.

        ``values`` maps each text input's custom_id to what was typed (sent in action rows, as
        Discord does); ``message_id`` is the message whose button opened the modal, if any.
        Returns the interaction id.
        """
        self._require_session()
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
        data = {"custom_id": custom_id, "components": rows}
        payload = self._interaction_payload(
            5, self._guild(guild_id), channel_id, user_id, data, locale
        )
        if message_id is not None:
            payload["message"] = copy.deepcopy(self._stored_message(channel_id, message_id))
        await self._broadcast("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def redeliver(self, interaction_id: str) -> None:
        """Dispatch an interaction again, exactly as first sent (same id and token)."""
        self._require_session()
        payload = copy.deepcopy(self.interactions[str(interaction_id)].payload)
        await self._broadcast("INTERACTION_CREATE", payload)

    def edits_of(self, message_id: int | str) -> list[RestCall]:
        """Return the bot's PATCH calls that edited a message, in order."""
        return self.calls_to("PATCH", rf"/channels/\d+/messages/{message_id}$")

    async def drop_connection(self, *, code: int = 4000, resumable: bool = True) -> None:
        """Close the live gateway connection abnormally (default 4000) so the client reconnects.

        The session stays resumable: events dispatched meanwhile are replayed on RESUME. With
        ``resumable=False`` the RESUME is answered with INVALID_SESSION(false) and the client
        identifies again (discord.py sleeps 5 s in ``before_identify_hook`` first).
        """
        session = self._require_session()
        async with session.lock:
            conn = session.conn
            session.conn = None
            session.resumable = resumable
        if conn is None:
            raise RuntimeError("the gateway connection is already down")
        conn.session = None
        await conn.ws.close(code=code, message=b"fake connection drop")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        conn = self._live_connection()
        await self._send(conn, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; ``resumable=False`` forgets the session."""
        session = self._require_session()
        conn = self._live_connection()
        if not resumable:
            session.resumable = False
        await self._send(conn, {"op": 9, "d": resumable, "s": None, "t": None})

    # -- gateway: server side --------------------------------------------------------------

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        query = dict(request.query)
        self.gateway_queries.append(query)
        compress = query.get("compress") == "zlib-stream"
        conn = _Connection(ws, zlib.compressobj() if compress else None, query)
        self._connections.append(conn)
        try:
            if query.get("encoding", "json") != "json":
                await ws.close(code=4002, message=b"Error while decoding payload.")
                return ws
            if query.get("v", "10") != "10":
                await ws.close(code=4012, message=b"Invalid API version.")
                return ws
            hello = {"heartbeat_interval": self.heartbeat_interval, "_trace": ["fake-gateway"]}
            await self._send(conn, {"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                if not isinstance(payload, dict):
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                self.gateway_received.append(payload)
                try:
                    await self._on_gateway_payload(conn, payload)
                except Exception as error:  # a bug in the fake: fail the test in stop()
                    self.errors.append(error)
                    await ws.close(code=4000, message=b"fake gateway error")
                    break
        finally:
            session = conn.session
            if session is not None and session.conn is conn:
                async with session.lock:
                    session.conn = None
                if ws.close_code in (1000, 1001):
                    session.resumable = False  # a clean close ends the session, as on Discord
            if conn in self._connections:
                self._connections.remove(conn)
        return ws

    async def _on_gateway_payload(self, conn: _Connection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:
            self.heartbeats += 1
            await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data if isinstance(data, dict) else {})
        elif op == 6:
            await self._resume(conn, data if isinstance(data, dict) else {})
        elif conn.session is None:
            await conn.ws.close(code=4003, message=b"Not authenticated.")
        elif op == 3:
            self.presence_updates.append(data if isinstance(data, dict) else {})
        elif op == 8:
            await self._request_members(conn.session, data if isinstance(data, dict) else {})
        elif op == 4:
            pass  # voice state updates: nothing to do without voice
        else:
            await conn.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await conn.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard") or [0, 1]
        if not isinstance(shard, list) or len(shard) != 2 or not 0 <= int(shard[0]) < int(shard[1]):
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        self._ready.clear()
        session = _Session(secrets.token_hex(16), intents, [int(shard[0]), int(shard[1])])
        session.conn = conn
        conn.session = session
        self._sessions[session.id] = session
        self._session = session
        self._pending.clear()
        guilds = [g for g in self.guilds.values() if self._in_shard(g.id, session.shard)]
        ready = {
            "v": 10,
            "user": {
                **self.users[self.bot_user_id],
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "flags": 0,
                "locale": "en-US",
                "banner": None,
                "accent_color": None,
            },
            "user_settings": {},
            "session_type": "normal",
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "auth": {},
            "shard": session.shard,
            "_trace": ["fake-gateway"],
        }
        await self._emit(session, "READY", ready, filtered=False)
        for guild in guilds:
            await self._emit(session, "GUILD_CREATE", self._guild_create(guild, intents))
        self.identifies += 1
        self._ready.set()

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if (
            session is None
            or not session.resumable
            or not isinstance(seq, int)
            or seq > session.seq
        ):
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        async with session.lock:
            old = session.conn
            session.conn = conn
            conn.session = session
            self._session = session
            for frame in session.log:
                if frame["s"] > seq:
                    await self._send(conn, frame)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {"_trace": ["fake"]}}
            session.log.append(resumed)
            await self._send(conn, resumed)
        if old is not None and old is not conn:
            old.session = None
            await old.ws.close(code=4000, message=b"session resumed elsewhere")
        self.resumes += 1

    async def _request_members(self, session: _Session, data: dict[str, Any]) -> None:
        if not session.intents & INTENT_GUILD_MEMBERS:
            conn = session.conn
            if conn is not None:
                await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        guild_ids = data.get("guild_id")
        for raw_id in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self.guilds.get(int(raw_id)) if raw_id is not None else None
            if guild is None:
                continue
            user_ids = data.get("user_ids")
            if user_ids is None:
                wanted = []
            else:
                wanted = [int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])]
            query = str(data.get("query") or "").lower()
            limit = int(data.get("limit") or 0)
            if user_ids is not None:
                found = [u for u in wanted if u in guild.members]
                not_found = [str(u) for u in wanted if u not in guild.members]
            else:
                found = [
                    u for u in guild.members if self.users[u]["username"].lower().startswith(query)
                ]
                not_found = []
            if limit:
                found = found[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [self._member_payload(guild, u) for u in found],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": not_found,
            }
            if data.get("presences"):
                chunk["presences"] = []
            if data.get("nonce"):
                chunk["nonce"] = data["nonce"]
            await self._emit(session, "GUILD_MEMBERS_CHUNK", chunk, filtered=False)

    async def _send(self, conn: _Connection, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        async with conn.lock:
            if conn.ws.closed:
                return
            try:
                if conn.compressor is not None:
                    data = conn.compressor.compress(text.encode("utf-8"))
                    data += conn.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await conn.ws.send_bytes(data)
                else:
                    await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                pass  # the socket went away meanwhile; a RESUME replays the event

    async def _emit(
        self, session: _Session, event: str, data: dict[str, Any], *, filtered: bool = True
    ) -> None:
        if filtered:
            deliverable = self._deliverable(event, data, session.intents)
            if deliverable is None:
                return
            data = deliverable
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.log.append(frame)
            conn = session.conn
            if conn is not None:
                await self._send(conn, frame)

    async def _broadcast(self, event: str, data: dict[str, Any]) -> None:
        """Send a world event to the current session, if any (kept for replay while down)."""
        await self._flush_pending()
        session = self._session
        if session is None or not session.resumable:
            return
        await self._emit(session, event, copy.deepcopy(data))

    def _schedule(self, event: str, key: Any) -> None:
        """Queue the gateway event for a world change made while a client is connected."""
        if self._session is None:
            return
        self._pending.append((event, {"key": key}))
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to deliver to
            task = asyncio.get_running_loop().create_task(self._flush_pending())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush_pending(self) -> None:
        while self._pending:
            event, holder = self._pending.pop(0)
            session = self._session
            if session is None or not session.resumable:
                continue
            key = holder["key"]
            if event == "GUILD_CREATE":
                guild = self.guilds[key]
                if self._in_shard(guild.id, session.shard):
                    await self._emit(session, event, self._guild_create(guild, session.intents))
            elif event == "GUILD_MEMBER_ADD":
                guild = self.guilds[key["guild_id"]]
                member = self._member_payload(guild, key["user_id"])
                await self._emit(session, event, {**member, "guild_id": str(guild.id)})
            elif event == "CHANNEL_CREATE":
                await self._emit(session, event, copy.deepcopy(self.channels[key]))

    def _deliverable(self, event: str, data: dict[str, Any], intents: int) -> dict[str, Any] | None:
        """Apply intents: drop what the session did not ask for, strip message content."""
        if event.startswith("MESSAGE_") and "guild_id" in data:
            if not intents & INTENT_GUILD_MESSAGES:
                return None
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not intents & (
                INTENT_MESSAGE_CONTENT
            ):
                author = str((data.get("author") or {}).get("id"))
                mentioned = any(m.get("id") == str(self.bot_user_id) for m in data["mentions"])
                if author != str(self.bot_user_id) and not mentioned:
                    data = {**data, "content": "", "embeds": [], "attachments": []}
                    data["components"] = []
                    data.pop("poll", None)
        elif event.startswith(("GUILD_MEMBER_", "GUILD_MEMBERS_")):
            if event != "GUILD_MEMBERS_CHUNK" and not intents & INTENT_GUILD_MEMBERS:
                return None
        elif event.startswith(("GUILD_", "CHANNEL_", "THREAD_")) and not intents & INTENT_GUILDS:
            return None
        return data

    def _require_session(self) -> _Session:
        if self._session is None:
            raise RuntimeError("no client has identified with the fake gateway")
        return self._session

    def _live_connection(self) -> _Connection:
        session = self._require_session()
        if session.conn is None or session.conn.ws.closed:
            raise RuntimeError("the gateway connection is down")
        return session.conn

    @staticmethod
    def _in_shard(guild_id: int, shard: list[int]) -> bool:
        return (guild_id >> 22) % shard[1] == shard[0]

    def _application_flags(self) -> int:
        flags = 0
        if self.privileged_intents & INTENT_GUILD_PRESENCES:
            flags |= _APP_FLAG_PRESENCE_LIMITED
        if self.privileged_intents & INTENT_GUILD_MEMBERS:
            flags |= _APP_FLAG_GUILD_MEMBERS_LIMITED
        if self.privileged_intents & INTENT_MESSAGE_CONTENT:
            flags |= _APP_FLAG_MESSAGE_CONTENT_LIMITED
        return flags

    # -- payload builders ------------------------------------------------------------------

    def _guild(self, guild_id: int) -> _Guild:
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise ValueError(f"unknown guild {guild_id}; call add_guild() first") from None

    def _add_channel(self, guild_id: int, channel_id: int, name: str, kind: int) -> None:
        guild = self._guild(guild_id)
        if channel_id in self.channels or channel_id in self.threads:
            raise ValueError(f"channel {channel_id} exists already")
        channel: dict[str, Any] = {
            "id": str(channel_id),
            "type": kind,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(guild.channel_ids),
            "permission_overwrites": [],
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if kind == _FORUM:
            channel.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
                default_thread_rate_limit_per_user=0,
                template="",
            )
        self.channels[channel_id] = channel
        guild.channel_ids.append(channel_id)
        self.messages.setdefault(channel_id, [])
        self._schedule("CHANNEL_CREATE", channel_id)

    def _member_payload(
        self, guild: _Guild, user_id: int, *, with_user: bool = True
    ) -> dict[str, Any]:
        member = copy.deepcopy(guild.members[user_id])
        if with_user:
            member["user"] = copy.deepcopy(self.users[user_id])
        return member

    def _guild_create(self, guild: _Guild, intents: int) -> dict[str, Any]:
        # Without the presences intent Discord sends only the bot itself (and voice members).
        presences = bool(intents & INTENT_GUILD_PRESENCES)
        member_ids = list(guild.members) if presences else [self.bot_user_id]
        channels = []
        for channel_id in guild.channel_ids:
            channel = copy.deepcopy(self.channels[channel_id])
            channel.pop("guild_id", None)
            channels.append(channel)
        threads = [
            copy.deepcopy(t)
            for t in self.threads.values()
            if t["guild_id"] == str(guild.id) and not t["thread_metadata"]["archived"]
        ]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "application_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": [copy.deepcopy(r) for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "nsfw": False,
            "nsfw_level": 0,
            "hub_type": None,
            "incidents_data": None,
            "latest_onboarding_question_id": None,
            "version": 0,
            "lazy": True,
            "joined_at": guild.joined_at,
            "large": len(guild.members) >= 250,
            "unavailable": False,
            "member_count": len(guild.members),
            "members": [self._member_payload(guild, u) for u in member_ids],
            "presences": [],
            "voice_states": [],
            "channels": channels,
            "threads": threads,
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "application_command_counts": {},
        }

    def _channel_in(self, guild_id: int, channel_id: int) -> dict[str, Any]:
        channel = self.channels.get(channel_id) or self.threads.get(channel_id)
        if channel is None or channel["guild_id"] != str(guild_id):
            raise ValueError(f"no channel or thread {channel_id} in guild {guild_id}")
        return channel

    def _any_channel(self, channel_id: int) -> dict[str, Any]:
        channel = (
            self.channels.get(channel_id)
            or self.threads.get(channel_id)
            or self.dm_channels.get(channel_id)
        )
        if channel is None:
            raise _Fail(404, 10003, "Unknown Channel")
        return channel

    def _mentions(self, content: str, guild_id: int | None) -> list[dict[str, Any]]:
        guild = self.guilds.get(guild_id) if guild_id is not None else None
        found: list[dict[str, Any]] = []
        seen: set[int] = set()
        for raw in _MENTION.findall(content or ""):
            user_id = int(raw)
            if user_id in seen or user_id not in self.users:
                continue
            seen.add(user_id)
            user = copy.deepcopy(self.users[user_id])
            if guild is not None and user_id in guild.members:
                user["member"] = self._member_payload(guild, user_id, with_user=False)
            found.append(user)
        return found

    def _create_message(
        self,
        channel_id: int,
        author_id: int,
        body: dict[str, Any],
        *,
        uploads: list[_Upload] | None = None,
        message_id: int | None = None,
        extra: dict[str, Any] | None = None,
        store: bool = True,
    ) -> dict[str, Any]:
        """Build (and store) a message object the way Discord returns it over REST."""
        channel = self._any_channel(channel_id)
        guild_id = int(channel["guild_id"]) if channel.get("guild_id") else None
        mid = message_id if message_id is not None else snowflake()
        content = body.get("content") or ""
        message: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": copy.deepcopy(self.users[author_id]),
            "content": content,
            "timestamp": _iso(mid),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "mention_everyone": False,
            "mentions": self._mentions(content, guild_id),
            "mention_roles": [],
            "attachments": self._attachments(channel_id, body, uploads or []),
            "embeds": [{"type": "rich", **e} for e in body.get("embeds") or []],
            "reactions": [],
            "pinned": False,
            "type": 0,
            "flags": int(body.get("flags") or 0) & _SETTABLE_MESSAGE_FLAGS,
            "components": body.get("components") or [],
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        reference = body.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id"):
            ref_channel = int(reference.get("channel_id") or channel_id)
            ref_id = int(reference["message_id"])
            try:
                referenced: dict[str, Any] | None = copy.deepcopy(
                    self._stored_message(ref_channel, ref_id)
                )
            except _Fail:
                if reference.get("fail_if_not_exists", True):
                    raise _invalid_form(
                        _form_error(
                            ["message_reference", "message_id"],
                            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                            "Unknown message",
                        )
                    ) from None
                referenced = None
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": str(ref_id),
                "channel_id": str(ref_channel),
                "guild_id": str(guild_id),
            }
            message["referenced_message"] = referenced
        _show_attached_images(message)
        if channel["type"] in _THREAD_TYPES:
            message["position"] = channel["total_message_sent"]
        if extra:
            message.update(extra)
        if not store:
            return message
        self.messages.setdefault(channel_id, []).append(message)
        self._message_channel[mid] = channel_id
        channel["last_message_id"] = str(mid)
        if channel["type"] in _THREAD_TYPES and message["id"] != channel["id"]:
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        return message

    def _attachments(
        self, channel_id: int, body: dict[str, Any], uploads: list[_Upload]
    ) -> list[dict[str, Any]]:
        described = {
            str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)
        }
        created = []
        for upload in uploads:
            match = re.fullmatch(r"files\[(\d+)\]", upload.field)
            if match is None:
                continue
            info = described.get(match.group(1), {})
            attachment_id = snowflake()
            filename = str(info.get("filename") or upload.filename)
            url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
            self.attachments[attachment_id] = upload.data
            content_type = upload.content_type
            if content_type == "application/octet-stream":  # discord.py's; Discord sniffs
                content_type = mimetypes.guess_type(filename)[0] or content_type
            attachment = {
                "id": str(attachment_id),
                "filename": filename,
                "size": len(upload.data),
                "url": url,
                "proxy_url": url,
                "content_type": content_type,
            }
            if info.get("description"):
                attachment["description"] = info["description"]
            created.append(attachment)
        return created

    def _gateway_message(self, message: dict[str, Any]) -> dict[str, Any]:
        """Return a stored message as MESSAGE_CREATE/UPDATE carries it (guild_id, member)."""
        data = copy.deepcopy(message)
        channel = self._any_channel(int(message["channel_id"]))
        if not channel.get("guild_id"):  # a DM: no guild, no member
            return data
        guild = self.guilds[int(channel["guild_id"])]
        data["guild_id"] = str(guild.id)
        author_id = int(message["author"]["id"])
        if author_id in guild.members and "webhook_id" not in message:
            data["member"] = self._member_payload(guild, author_id, with_user=False)
        return data

    def _stored_message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        for message in self.messages.get(channel_id, []):
            if message["id"] == str(message_id):
                return message
        raise _Fail(404, 10008, "Unknown Message")

    def _remove_message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        message = self._stored_message(channel_id, message_id)
        self.messages[channel_id].remove(message)
        self._message_channel.pop(message_id, None)
        thread = self.threads.get(channel_id)
        if thread is not None and message["id"] != thread["id"]:
            thread["message_count"] = max(0, thread["message_count"] - 1)
        return message

    def _new_thread(
        self,
        parent: dict[str, Any],
        thread_id: int,
        name: str,
        *,
        kind: int,
        auto_archive_duration: int,
        rate_limit_per_user: int,
        applied_tags: list[str],
        invitable: bool,
    ) -> dict[str, Any]:
        now = _iso()
        metadata: dict[str, Any] = {
            "archived": False,
            "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": now,
            "locked": False,
            "create_timestamp": now,
        }
        if kind == _PRIVATE_THREAD:
            metadata["invitable"] = invitable
        thread: dict[str, Any] = {
            "id": str(thread_id),
            "type": kind,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": str(self.bot_user_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": rate_limit_per_user,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "applied_tags": applied_tags,
            "thread_metadata": metadata,
            "member": {
                "id": str(thread_id),
                "user_id": str(self.bot_user_id),
                "join_timestamp": now,
                "flags": 1,
            },
        }
        self.threads[thread_id] = thread
        self.messages.setdefault(thread_id, [])
        return thread

    def _thread_event(self, thread: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {**copy.deepcopy(thread), **extra}

    async def _unarchive_if_needed(self, channel_id: int) -> None:
        thread = self.threads.get(channel_id)
        if thread is None or not thread["thread_metadata"]["archived"]:
            return
        if thread["thread_metadata"]["locked"]:
            raise _Fail(400, 50083, "Thread is archived")
        thread["thread_metadata"].update(archived=False, archive_timestamp=_iso())
        await self._broadcast("THREAD_UPDATE", self._thread_event(thread))

    def _permissions_payload(self, guild: _Guild, user_id: int) -> str:
        return str(self.member_permissions(guild.id, user_id))

    # -- interactions ----------------------------------------------------------------------

    def _find_command(self, guild_id: int, name: str) -> tuple[dict[str, Any], list[str], bool]:
        top, *path = name.split()
        for scope, is_guild in ((guild_id, True), (None, False)):
            for command in self.commands.get(scope, []):
                if command["name"] == top and int(command.get("type", 1)) == 1:
                    return command, path, is_guild
        raise ValueError(f"/{top} is not synced (globally or to guild {guild_id})")

    def _nest_options(
        self,
        definitions: list[dict[str, Any]],
        path: list[str],
        leaf: list[dict[str, Any]],
        command: str,
    ) -> list[dict[str, Any]]:
        if path:
            for definition in definitions:
                if definition["name"] == path[0] and definition["type"] in (1, 2):
                    inner = definition.get("options") or []
                    nested = self._nest_options(inner, path[1:], leaf, command)
                    return [{"type": definition["type"], "name": path[0], "options": nested}]
            raise ValueError(f"/{command} has no subcommand {path[0]!r}")
        by_name = {d["name"]: d for d in definitions}
        options = []
        for option in leaf:
            option = dict(option)
            if "type" not in option:
                if option["name"] not in by_name:
                    raise ValueError(f"/{command} has no option {option['name']!r}")
                option["type"] = by_name[option["name"]]["type"]
            options.append(option)
        return options

    def _resolved(self, guild: _Guild, options: list[dict[str, Any]]) -> dict[str, Any]:
        resolved: dict[str, dict[str, Any]] = {}
        stack = list(options)
        while stack:
            option = stack.pop()
            stack.extend(option.get("options") or [])
            kind = option.get("type")
            value = option.get("value")
            if value is None or option.get("focused") or kind not in (6, 7, 8, 9):
                continue
            key = int(value)
            if kind in (6, 9) and key in self.users:
                resolved.setdefault("users", {})[str(key)] = copy.deepcopy(self.users[key])
                if key in guild.members:
                    member = self._member_payload(guild, key, with_user=False)
                    member["permissions"] = self._permissions_payload(guild, key)
                    resolved.setdefault("members", {})[str(key)] = member
            if kind in (8, 9) and key in guild.roles:
                resolved.setdefault("roles", {})[str(key)] = copy.deepcopy(guild.roles[key])
            if kind == 7 and (key in self.channels or key in self.threads):
                channel = copy.deepcopy(self.channels.get(key) or self.threads[key])
                channel.pop("member", None)
                channel["permissions"] = str(ALL_PERMISSIONS)
                resolved.setdefault("channels", {})[str(key)] = channel
        return resolved

    def _command_interaction(
        self,
        kind: int,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        options: list[dict[str, Any]],
        focused: str | None,
        locale: str,
    ) -> dict[str, Any]:
        guild = self._guild(guild_id)
        if user_id not in guild.members:
            raise ValueError(f"user {user_id} is not a member of guild {guild_id}")
        command, path, is_guild = self._find_command(guild_id, name)
        if any(o.get("type") in (1, 2) for o in options):
            nested = copy.deepcopy(options)
        else:
            leaf = copy.deepcopy(options)
            if focused is not None:
                for option in leaf:
                    if option["name"] == focused:
                        option["focused"] = True
                        option["value"] = str(option.get("value", ""))
                        break
                else:
                    leaf.append({"name": focused, "value": "", "focused": True})
            nested = self._nest_options(command.get("options") or [], path, leaf, name)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": command["name"],
            "type": 1,
            "options": nested,
        }
        if is_guild:
            data["guild_id"] = str(guild_id)
        resolved = self._resolved(guild, nested)
        if resolved:
            data["resolved"] = resolved
        return self._interaction_payload(kind, guild, channel_id, user_id, data, locale)

    def _interaction_payload(
        self,
        kind: int,
        guild: _Guild,
        channel_id: int,
        user_id: int,
        data: dict[str, Any],
        locale: str,
    ) -> dict[str, Any]:
        channel = copy.deepcopy(self._channel_in(guild.id, channel_id))
        channel.pop("member", None)
        permissions = self._permissions_payload(guild, user_id)
        channel["permissions"] = permissions
        member = self._member_payload(guild, user_id)
        member["permissions"] = permissions
        interaction_id = str(snowflake())
        token = "fake-interaction-" + secrets.token_urlsafe(24)
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "guild_id": str(guild.id),
            "channel": channel,
            "channel_id": str(channel_id),
            "member": member,
            "token": token,
            "version": 1,
            "app_permissions": str(BOT_PERMISSIONS),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        self.interactions[interaction_id] = _Interaction(interaction_id, token, kind, payload)
        return payload

    def _interaction_by_token(self, application_id: str, token: str) -> _Interaction:
        if application_id != str(self.application_id):
            raise _Fail(404, 10015, "Unknown Webhook")
        for interaction in self.interactions.values():
            if interaction.token == token:
                return interaction
        raise _Fail(404, 10015, "Unknown Webhook")

    def _interaction_message(
        self,
        interaction: _Interaction,
        body: dict[str, Any],
        uploads: list[_Upload],
        *,
        loading: bool = False,
    ) -> dict[str, Any]:
        payload = interaction.payload
        channel_id = int(payload["channel_id"])
        flags = int(body.get("flags") or 0)
        ephemeral = bool(flags & _FLAG_EPHEMERAL)
        extra = {
            "type": 20,
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": {
                "id": interaction.id,
                "type": interaction.type,
                "user": copy.deepcopy(payload["member"]["user"]),
                "authorizing_integration_owners": payload["authorizing_integration_owners"],
                "name": payload["data"].get("name"),
            },
        }
        message = self._create_message(
            channel_id,
            self.bot_user_id,
            body,
            uploads=uploads,
            extra=extra,
            store=not ephemeral,
        )
        message["flags"] = (message["flags"] | (_FLAG_EPHEMERAL if ephemeral else 0)) | (
            _FLAG_LOADING if loading else 0
        )
        return message

    # -- REST ------------------------------------------------------------------------------

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Handler, bool]]:
        c = r"(?P<channel>\d+)"
        m = r"(?P<message>\d+)"
        a = r"(?P<app>\d+)"
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", r"/gateway", self._get_gateway, False),
            ("GET", r"/gateway/bot", self._get_gateway_bot, True),
            ("GET", r"/users/@me", self._get_me, True),
            ("GET", r"/users/(?P<user>\d+)", self._get_user, True),
            ("GET", r"/applications/@me", self._get_application, True),
            ("GET", r"/oauth2/applications/@me", self._get_application, True),
            ("GET", rf"/channels/{c}", self._get_channel, True),
            ("PATCH", rf"/channels/{c}", self._patch_channel, True),
            ("GET", rf"/channels/{c}/messages", self._get_messages, True),
            ("POST", rf"/channels/{c}/messages", self._post_message, True),
            ("GET", rf"/channels/{c}/messages/{m}", self._get_message, True),
            ("PATCH", rf"/channels/{c}/messages/{m}", self._patch_message, True),
            ("DELETE", rf"/channels/{c}/messages/{m}", self._delete_message, True),
            ("POST", rf"/channels/{c}/messages/{m}/threads", self._start_thread_from, True),
            ("POST", rf"/channels/{c}/threads", self._start_thread, True),
            ("PUT", rf"/channels/{c}/thread-members/@me", self._no_content, True),
            ("DELETE", rf"/channels/{c}/thread-members/@me", self._no_content, True),
            ("POST", rf"/channels/{c}/typing", self._no_content, True),
            (
                "PUT",
                rf"/channels/{c}/messages/{m}/reactions/(?P<emoji>[^/]+)/@me",
                self._react,
                True,
            ),
            ("POST", r"/users/@me/channels", self._open_dm, True),
            ("GET", rf"/applications/{a}/commands", self._get_commands, True),
            ("PUT", rf"/applications/{a}/commands", self._put_commands, True),
            ("GET", rf"/applications/{a}/guilds/(?P<guild>\d+)/commands", self._get_commands, True),
            ("PUT", rf"/applications/{a}/guilds/(?P<guild>\d+)/commands", self._put_commands, True),
            ("POST", r"/interactions/(?P<id>\d+)/(?P<token>[^/]+)/callback", self._callback, False),
            ("POST", hook, self._post_followup, False),
            ("GET", rf"{hook}/messages/(?P<mid>@original|\d+)", self._get_hook_message, False),
            ("PATCH", rf"{hook}/messages/(?P<mid>@original|\d+)", self._edit_hook_message, False),
            (
                "DELETE",
                rf"{hook}/messages/(?P<mid>@original|\d+)",
                self._delete_hook_message,
                False,
            ),
        ]
        return [
            (method, re.compile(pattern), handler, auth) for method, pattern, handler, auth in table
        ]

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method.upper()
        query = dict(request.query)
        headers = dict(request.headers.items())
        try:
            body, uploads = await _read_body(request)
        except ValueError:
            self.calls.append(RestCall(method, path, None, headers, query))
            return _error_response(400, 50109, "The request body contains invalid JSON.", "bad")
        self.calls.append(RestCall(method, path, body, headers, query))

        route = None
        path_known = False
        for route_method, pattern, handler, auth in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            path_known = True
            if route_method == method:
                route = (pattern, handler, auth, match)
                break
        if route is None:
            status = 405 if path_known else 404
            return _error_response(status, 0, _STATUS_MESSAGES[status], "none")
        pattern, handler, auth, match = route
        bucket = hashlib.sha1(f"{method} {pattern.pattern}".encode()).hexdigest()[:32]

        if auth and headers.get("Authorization") != f"Bot {self.token}":
            return _error_response(401, 0, "401: Unauthorized", bucket)
        fault = self._take_fault(method, path)
        if fault is not None:
            return _fault_response(fault, bucket)
        slow = self._take_slow(method, path)
        if slow is not None:
            response = _error_response(500, 0, "held back", bucket)
            if slow.processed:
                response = await self._answer(
                    method, path, body, query, uploads, handler, match, bucket
                )
            self.answered_late.append(
                Late(method, path, copy.deepcopy(body), slow.seconds, slow.processed)
            )
            await asyncio.sleep(slow.seconds)  # a client with less patience has given up
            return response
        injected = self._chaos_fault(method, path, body)
        if injected is not None:
            return await self._inject(injected, bucket, handler, match, query, uploads)
        return await self._answer(method, path, body, query, uploads, handler, match, bucket)

    async def _answer(
        self,
        method: str,
        path: str,
        body: Any,
        query: dict[str, str],
        uploads: list[_Upload],
        handler: Handler,
        match: re.Match[str],
        bucket: str,
    ) -> web.Response:
        channel_match = re.match(r"/channels/(\d+)", path)
        if channel_match and int(channel_match.group(1)) in self.channel_errors:
            status, code, message = self.channel_errors[int(channel_match.group(1))]
            return _error_response(status, code, message, bucket)
        if sum(len(upload.data) for upload in uploads) > self.upload_limit:
            return _error_response(413, 40005, "Request entity too large", bucket)
        try:
            status, data = await handler(_Request(method, path, body, query, uploads), match)
        except _Fail as fail:
            return _error_response(fail.status, fail.code, fail.message, bucket, fail.errors)
        except Exception as error:  # a bug in the fake (or a body it cannot read): 500
            self.errors.append(error)
            return _error_response(500, 0, "500: Internal Server Error", bucket)
        return _json_response(status, data, bucket)

    def _chaos_fault(self, method: str, path: str, body: Any) -> Injected | None:
        chaos = self._chaos
        if chaos is None or (chaos.pattern is not None and not chaos.pattern.fullmatch(path)):
            return None
        key = f"{method} {re.sub(r'[0-9]+', self._chaos_name, path)}"
        drawn = chaos.draw(key)
        if drawn is None:
            return None
        body = copy.deepcopy(body)
        injected = Injected(
            method, path, body, drawn.kind, drawn.processed, drawn.rng.random(), drawn.delay
        )
        self.injected.append(injected)
        return injected

    def _chaos_name(self, match: re.Match[str]) -> str:
        """Name an id in a path by what stays the same from run to run (snowflakes do not)."""
        thread = self.threads.get(int(match.group(0)))
        if thread is not None:
            return f"thread-in-{thread['parent_id']}"
        return match.group(0) if len(match.group(0)) < 12 else "*"

    async def _inject(
        self,
        injected: Injected,
        bucket: str,
        handler: Handler,
        match: re.Match[str],
        query: dict[str, str],
        uploads: list[_Upload],
    ) -> web.Response:
        chaos = self._chaos
        assert chaos is not None
        if injected.kind not in ("timeout", SLOW):
            status = int(injected.kind)
            retry_after = injected.draw
            fault = _Fault(
                injected.method,
                re.compile(".*"),
                status,
                round(retry_after * chaos.max_retry_after, 3),
                1,
                0,
                None,
                False,
            )
            return _fault_response(fault, bucket)
        response = _error_response(500, 0, "held back", bucket)
        if injected.processed:
            response = await self._answer(
                injected.method,
                injected.path,
                copy.deepcopy(injected.json),
                query,
                uploads,
                handler,
                match,
                bucket,
            )
            injected.processed = 200 <= response.status < 300
        if injected.kind == SLOW:
            await asyncio.sleep(injected.delay)  # the client may have given up meanwhile
        else:
            await asyncio.sleep(chaos.hold)  # the client has given up by now
        return response

    def _take_slow(self, method: str, path: str) -> _Slow | None:
        for slow in self._slow:
            if slow.method == method and slow.pattern.fullmatch(path):
                slow.times -= 1
                if slow.times <= 0:
                    self._slow.remove(slow)
                return slow
        return None

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.pattern.fullmatch(path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _handle_attachment(self, request: web.Request) -> web.StreamResponse:
        data = self.attachments.get(int(request.match_info["id"]))
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _no_content(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        self._any_channel(int(match["channel"]))
        return 204, None

    async def _react(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        message = self._stored_message(int(match["channel"]), int(match["message"]))
        emoji = urllib.parse.unquote(match["emoji"])
        for reaction in message["reactions"]:
            if reaction["emoji"]["name"] == emoji:
                if not reaction["me"]:
                    reaction["me"], reaction["count"] = True, reaction["count"] + 1
                return 204, None
        message["reactions"].append({"count": 1, "me": True, "emoji": {"id": None, "name": emoji}})
        return 204, None

    def reactions_on(self, channel_id: int | str, message_id: int | str) -> list[str]:
        """Return the emoji the bot reacted with on a message."""
        message = self._stored_message(int(channel_id), int(message_id))
        return [r["emoji"]["name"] for r in message["reactions"] if r["me"]]

    def dms_to(self, user_id: int) -> list[dict[str, Any]]:
        """Return the messages the bot sent a user in their DM channel."""
        return [
            m
            for channel_id, channel in self.dm_channels.items()
            if channel["recipients"][0]["id"] == str(user_id)
            for m in self.messages.get(channel_id, [])
        ]

    async def _open_dm(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        body = req.json if isinstance(req.json, dict) else {}
        user = self.users.get(int(body.get("recipient_id") or 0))
        if user is None:
            raise _invalid_form(
                _form_error(["recipient_id"], "NUMBER_TYPE_COERCE", "Value is not a snowflake.")
            )
        for channel in self.dm_channels.values():
            if channel["recipients"][0]["id"] == user["id"]:
                return 200, channel
        channel = {
            "id": str(snowflake()),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [copy.deepcopy(user)],
        }
        self.dm_channels[int(channel["id"])] = channel
        return 200, channel

    async def _get_gateway(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _get_me(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        user = {
            **self.users[self.bot_user_id],
            "verified": True,
            "mfa_enabled": False,
            "email": None,
            "flags": 0,
            "locale": "en-US",
            "banner": None,
            "accent_color": None,
            "bio": "",
        }
        return 200, user

    async def _get_user(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        user = self.users.get(int(match["user"]))
        if user is None:
            raise _Fail(404, 10013, "Unknown User")
        return 200, user

    async def _get_application(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        bot = self.users[self.bot_user_id]
        owner = _user(self.owner_user_id, "owner")
        return 200, {
            "id": str(self.application_id),
            "name": bot["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": bot,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(self.token.encode()).hexdigest(),
            "flags": self._application_flags(),
            "owner": owner,
            "team": None,
            "rpc_origins": [],
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
            "hook": True,
            "is_monetized": False,
        }

    async def _get_channel(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        return 200, self._any_channel(int(match["channel"]))

    async def _patch_channel(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        channel = self._any_channel(channel_id)
        body = req.json if isinstance(req.json, dict) else {}
        if channel_id in self.threads:
            metadata = channel["thread_metadata"]
            if "name" in body:
                channel["name"] = str(body["name"])
            for key in ("archived", "locked", "auto_archive_duration", "invitable"):
                if key in body and body[key] is not None:
                    metadata[key] = body[key]
            if "archived" in body:
                metadata["archive_timestamp"] = _iso()
            for key in ("rate_limit_per_user", "flags", "applied_tags"):
                if key in body and body[key] is not None:
                    channel[key] = body[key]
            await self._broadcast("THREAD_UPDATE", self._thread_event(channel))
        else:
            for key in ("name", "topic", "nsfw", "rate_limit_per_user", "position"):
                if key in body:
                    channel[key] = body[key]
            await self._broadcast("CHANNEL_UPDATE", copy.deepcopy(channel))
        return 200, channel

    async def _get_messages(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        self._any_channel(channel_id)
        try:
            limit = int(req.query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise _invalid_form(
                _form_error(["limit"], "NUMBER_TYPE_MAX", "Int value should be between 1 and 100.")
            )
        stored = sorted(self.messages.get(channel_id, []), key=lambda m: int(m["id"]))
        if "after" in req.query:
            after = int(req.query["after"])
            picked = [m for m in stored if int(m["id"]) > after][:limit]
        elif "before" in req.query:
            before = int(req.query["before"])
            picked = [m for m in stored if int(m["id"]) < before][-limit:]
        elif "around" in req.query:
            around = int(req.query["around"])
            older = (
                [m for m in stored if int(m["id"]) < around][-(limit // 2) :] if limit > 1 else []
            )
            newer = [m for m in stored if int(m["id"]) >= around][: limit - len(older)]
            picked = older + newer
        else:
            picked = stored[-limit:]
        return 200, list(reversed(picked))  # newest first, as Discord answers

    async def _get_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        return 200, self._stored_message(int(match["channel"]), int(match["message"]))

    async def _post_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        channel = self._any_channel(channel_id)
        if channel["type"] == _FORUM:
            raise _Fail(400, 50008, "Cannot send messages in a non-text channel")
        if channel["type"] == 1 and int(channel["recipients"][0]["id"]) in self.closed_dms:
            raise _Fail(403, 50007, "Cannot send messages to this user")
        body = req.json if isinstance(req.json, dict) else {}
        _check_message_body(body, req.uploads)
        if req.uploads:
            self._check_bot_may(channel_id, ATTACH_FILES)
        nonce = body.get("nonce")
        if body.get("enforce_nonce") and nonce is not None:
            seen = self._nonces.get((str(self.bot_user_id), str(nonce)))
            if seen is not None and time.monotonic() - seen[0] < NONCE_WINDOW:
                with contextlib.suppress(_Fail):
                    return 200, self._stored_message(seen[1], seen[2])
        await self._unarchive_if_needed(channel_id)
        message = self._create_message(channel_id, self.bot_user_id, body, uploads=req.uploads)
        if body.get("enforce_nonce") and nonce is not None:
            self._nonces[(str(self.bot_user_id), str(nonce))] = (
                time.monotonic(),
                channel_id,
                int(message["id"]),
            )
        if self.echo_bot_messages:
            await self._broadcast("MESSAGE_CREATE", self._gateway_message(message))
        return 200, message

    async def _patch_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        message = self._stored_message(channel_id, int(match["message"]))
        if message["author"]["id"] != str(self.bot_user_id):
            raise _Fail(403, 50005, "Cannot edit a message authored by another user")
        body = req.json if isinstance(req.json, dict) else {}
        _check_message_body(body, req.uploads, partial=True)
        if req.uploads:
            self._check_bot_may(channel_id, ATTACH_FILES)
        self._apply_edit(message, body, uploads=req.uploads)
        await self._broadcast("MESSAGE_UPDATE", self._gateway_message(message))
        return 200, message

    def _apply_edit(
        self,
        message: dict[str, Any],
        body: dict[str, Any],
        *,
        edited: bool = True,
        uploads: list[_Upload] | None = None,
    ) -> None:
        if uploads or "attachments" in body:
            # The attachments list names the ones to keep (by id) and describes new files.
            if "attachments" in body:
                named = body["attachments"] or []
                listed = {str(a.get("id")) for a in named if isinstance(a, dict)}
                kept = [a for a in message["attachments"] if a["id"] in listed]
            else:
                kept = list(message["attachments"])
            added = self._attachments(int(message["channel_id"]), body, uploads or [])
            message["attachments"] = kept + added
        if "content" in body:
            message["content"] = body["content"] or ""
            channel = self._any_channel(int(message["channel_id"]))
            message["mentions"] = self._mentions(message["content"], int(channel["guild_id"]))
        if "embeds" in body:
            message["embeds"] = [{"type": "rich", **e} for e in body["embeds"] or []]
        if "components" in body:
            message["components"] = body["components"] or []
        if body.get("flags") is not None:
            kept = message["flags"] & ~_SETTABLE_MESSAGE_FLAGS
            message["flags"] = kept | (int(body["flags"]) & _SETTABLE_MESSAGE_FLAGS)
        message["flags"] &= ~_FLAG_LOADING
        _show_attached_images(message)
        if edited:  # completing a deferred ("thinking") message does not mark it edited
            message["edited_timestamp"] = _iso()

    async def _delete_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        channel = self._any_channel(channel_id)
        message_id = int(match["message"])
        self._remove_message(channel_id, message_id)
        await self._broadcast(
            "MESSAGE_DELETE",
            {"id": str(message_id), "channel_id": str(channel_id), "guild_id": channel["guild_id"]},
        )
        return 204, None

    async def _start_thread_from(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        parent = self._any_channel(channel_id)
        message = self._stored_message(channel_id, int(match["message"]))
        if parent["type"] not in (_TEXT, _NEWS):
            raise _Fail(400, 50024, "Cannot execute action on this channel type")
        if int(message["id"]) in self.threads:
            raise _Fail(400, 160004, "A thread has already been created for this message")
        body = req.json if isinstance(req.json, dict) else {}
        name = _thread_name(body)
        thread = self._new_thread(
            parent,
            int(message["id"]),  # a thread started from a message has the message's id
            name,
            kind=10 if parent["type"] == _NEWS else _PUBLIC_THREAD,
            auto_archive_duration=_archive_duration(body),
            rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
            applied_tags=[],
            invitable=True,
        )
        message["flags"] |= _FLAG_HAS_THREAD
        message["thread"] = copy.deepcopy(thread)
        await self._broadcast("THREAD_CREATE", self._thread_event(thread, newly_created=True))
        return 201, thread

    async def _start_thread(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        channel_id = int(match["channel"])
        parent = self._any_channel(channel_id)
        body = req.json if isinstance(req.json, dict) else {}
        name = _thread_name(body)
        if parent["type"] == _FORUM:
            first = body.get("message")
            if not isinstance(first, dict):
                raise _invalid_form(
                    _form_error(["message"], "BASE_TYPE_REQUIRED", "This field is required")
                )
            _check_message_body(first, req.uploads, path=["message"])
            if req.uploads:
                self._check_bot_may(channel_id, ATTACH_FILES)
            thread_id = snowflake()  # the starter message has the thread's id
            tags = [str(t) for t in body.get("applied_tags") or []]
            known_tags = {t["id"] for t in parent["available_tags"]}
            if any(t not in known_tags for t in tags):
                raise _invalid_form(
                    _form_error(["applied_tags"], "BASE_TYPE_CHOICES", "Unknown tag")
                )
            thread = self._new_thread(
                parent,
                thread_id,
                name,
                kind=_PUBLIC_THREAD,
                auto_archive_duration=_archive_duration(body),
                rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
                applied_tags=tags,
                invitable=True,
            )
            message = self._create_message(
                thread_id, self.bot_user_id, first, uploads=req.uploads, message_id=thread_id
            )
            parent["last_message_id"] = str(thread_id)
            await self._broadcast("THREAD_CREATE", self._thread_event(thread, newly_created=True))
            if self.echo_bot_messages:
                await self._broadcast("MESSAGE_CREATE", self._gateway_message(message))
            return 201, {**copy.deepcopy(thread), "message": message}
        if parent["type"] not in (_TEXT, _NEWS):
            raise _Fail(400, 50024, "Cannot execute action on this channel type")
        kind = int(body.get("type") or _PRIVATE_THREAD)  # Discord's default is private
        if kind not in _THREAD_TYPES:
            raise _invalid_form(_form_error(["type"], "BASE_TYPE_CHOICES", "Invalid thread type"))
        thread = self._new_thread(
            parent,
            snowflake(),
            name,
            kind=kind,
            auto_archive_duration=_archive_duration(body),
            rate_limit_per_user=int(body.get("rate_limit_per_user") or 0),
            applied_tags=[],
            invitable=bool(body.get("invitable", True)),
        )
        await self._broadcast("THREAD_CREATE", self._thread_event(thread, newly_created=True))
        return 201, thread

    async def _get_commands(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        self._check_app(match["app"])
        scope = int(match["guild"]) if "guild" in match.groupdict() else None
        return 200, self.commands.get(scope, [])

    async def _put_commands(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        self._check_app(match["app"])
        guild = match.groupdict().get("guild")
        scope = int(guild) if guild is not None else None
        if scope is not None and scope not in self.guilds:
            raise _Fail(403, 50001, "Missing Access")
        body = req.json
        if not isinstance(body, list):
            raise _invalid_form(_form_error([], "ARRAY_TYPE_CONVERT", "Must be an array"))
        _check_commands(body)
        stored = []
        for command in body:
            kind = int(command.get("type") or 1)
            key = (scope, kind, command["name"])
            command_id = self._command_ids.setdefault(key, snowflake())
            entry = {
                "id": str(command_id),
                "application_id": str(self.application_id),
                "version": str(snowflake()),
                "default_member_permissions": command.get("default_member_permissions"),
                "type": kind,
                "name": command["name"],
                "name_localizations": command.get("name_localizations") or None,
                "description": command.get("description") or "",
                "description_localizations": command.get("description_localizations") or None,
                "options": _drop_nones(command.get("options") or []),
                "nsfw": bool(command.get("nsfw", False)),
                "integration_types": command.get("integration_types") or [0],
                "contexts": command.get("contexts"),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            else:
                entry["dm_permission"] = command.get("dm_permission", True)
            stored.append(entry)
        self.commands[scope] = stored
        return 200, stored

    def _check_app(self, application_id: str) -> None:
        if application_id != str(self.application_id):
            message = "You are not authorized to perform this action on this application"
            raise _Fail(403, 20012, message)

    async def _callback(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        interaction = self.interactions.get(match["id"])
        if interaction is None or interaction.token != match["token"]:
            raise _Fail(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            raise _Fail(400, 40060, "Interaction has already been acknowledged.")
        body = req.json if isinstance(req.json, dict) else {}
        kind = body.get("type")
        data = body["data"] if isinstance(body.get("data"), dict) else {}
        message: dict[str, Any] | None = None
        if interaction.type == 4:
            if kind != 8:
                raise _Fail(400, 50035, "Invalid interaction response type for autocomplete")
            choices = data.get("choices")
            if not isinstance(choices, list) or len(choices) > 25:
                raise _invalid_form(
                    _form_error(["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer")
                )
        elif kind == 4:
            _check_message_body(data, req.uploads, path=["data"])
            message = self._interaction_message(interaction, data, req.uploads)
        elif kind == 5:
            message = self._interaction_message(
                interaction, {**data, "content": ""}, [], loading=True
            )
        elif kind in (6, 7) and interaction.type != 3:
            raise _Fail(400, 40043, "Interaction response type is not valid for this interaction")
        elif kind == 9:
            if interaction.type not in (2, 3):
                raise _Fail(
                    400, 40043, "Interaction response type is not valid for this interaction"
                )
            _check_modal(data)
        elif kind not in (6, 7, 9, 10, 12):
            raise _invalid_form(_form_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of"))
        interaction.acknowledged = True
        interaction.original = message
        interaction.responses.append(
            {"kind": "callback", "json": body, "message_id": message["id"] if message else None}
        )
        if (
            message is not None
            and not message["flags"] & _FLAG_EPHEMERAL
            and self.echo_bot_messages
        ):
            await self._broadcast("MESSAGE_CREATE", self._gateway_message(message))
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        callback: dict[str, Any] = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & _FLAG_EPHEMERAL),
            }
        }
        if message is not None:
            callback["resource"] = {"type": kind, "message": message}
        return 200, callback

    async def _post_followup(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        interaction = self._interaction_by_token(match["app"], match["token"])
        if not interaction.acknowledged:
            raise _Fail(404, 10015, "Unknown Webhook")
        body = req.json if isinstance(req.json, dict) else {}
        _check_message_body(body, req.uploads)
        original = interaction.original
        if original is not None and original["flags"] & _FLAG_LOADING:
            # The first followup after a deferred response replaces the "thinking" message
            # and keeps the deferral's visibility: its own ephemeral flag is ignored.
            message = original
            self._apply_edit(message, body, edited=False, uploads=req.uploads)
            event = "MESSAGE_UPDATE"
        else:
            message = self._interaction_message(interaction, body, req.uploads)
            event = "MESSAGE_CREATE"
        interaction.followups[message["id"]] = message
        interaction.responses.append(
            {"kind": "followup", "json": body, "message_id": message["id"]}
        )
        if not message["flags"] & _FLAG_EPHEMERAL and self.echo_bot_messages:
            await self._broadcast(event, self._gateway_message(message))
        if req.query.get("wait", "").lower() in ("1", "true"):
            return 200, message
        return 204, None

    def _hook_message(self, interaction: _Interaction, mid: str) -> dict[str, Any]:
        message = interaction.original if mid == "@original" else interaction.followups.get(mid)
        if message is None:
            raise _Fail(404, 10008, "Unknown Message")
        return message

    async def _get_hook_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        interaction = self._interaction_by_token(match["app"], match["token"])
        return 200, self._hook_message(interaction, match["mid"])

    async def _edit_hook_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        interaction = self._interaction_by_token(match["app"], match["token"])
        message = self._hook_message(interaction, match["mid"])
        body = req.json if isinstance(req.json, dict) else {}
        _check_message_body(body, req.uploads, partial=True)
        self._apply_edit(
            message, body, edited=not message["flags"] & _FLAG_LOADING, uploads=req.uploads
        )
        kind = "edit_original" if match["mid"] == "@original" else "edit_followup"
        interaction.responses.append({"kind": kind, "json": body, "message_id": message["id"]})
        if not message["flags"] & _FLAG_EPHEMERAL and self.echo_bot_messages:
            await self._broadcast("MESSAGE_UPDATE", self._gateway_message(message))
        return 200, message

    async def _delete_hook_message(self, req: _Request, match: re.Match[str]) -> tuple[int, Any]:
        interaction = self._interaction_by_token(match["app"], match["token"])
        message = self._hook_message(interaction, match["mid"])
        original = match["mid"] == "@original"
        if original:
            interaction.original = None
        else:
            interaction.followups.pop(match["mid"], None)
        kind = "delete_original" if original else "delete_followup"
        interaction.responses.append({"kind": kind, "json": None, "message_id": message["id"]})
        if not message["flags"] & _FLAG_EPHEMERAL:
            channel_id = int(message["channel_id"])
            with contextlib.suppress(_Fail):
                self._remove_message(channel_id, int(message["id"]))
            channel = self._any_channel(channel_id)
            await self._broadcast(
                "MESSAGE_DELETE",
                {
                    "id": message["id"],
                    "channel_id": str(channel_id),
                    "guild_id": channel["guild_id"],
                },
            )
        return 204, None


# -- module helpers ------------------------------------------------------------------------


def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    user: dict[str, Any] = {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "avatar_decoration_data": None,
        "public_flags": 0,
    }
    if bot:
        user["bot"] = True
    return user


def _role(role_id: int, name: str, position: int, permissions: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _member_record(roles: list[int], joined_at: str, *, nick: str | None = None) -> dict[str, Any]:
    return {
        "roles": [str(r) for r in roles],
        "nick": nick,
        "avatar": None,
        "banner": None,
        "joined_at": joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
        "unusual_dm_activity_until": None,
        "avatar_decoration_data": None,
    }


def _thread_name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise _invalid_form(
            _form_error(["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        )
    return name


def _archive_duration(body: dict[str, Any]) -> int:
    duration = body.get("auto_archive_duration")
    if duration is None:
        return 4320
    if duration not in _ARCHIVE_DURATIONS:
        raise _invalid_form(
            _form_error(["auto_archive_duration"], "BASE_TYPE_CHOICES", "Value must be one of")
        )
    return int(duration)


def _check_message_body(
    body: dict[str, Any],
    uploads: list[_Upload],
    *,
    partial: bool = False,
    path: list[str] | None = None,
) -> None:
    """Raise Discord's errors for an empty message or one beyond Discord's limits."""
    prefix = path or []
    content = body.get("content")
    embeds = body.get("embeds") or []
    if not partial and not (
        content
        or embeds
        or uploads
        or body.get("components")
        or body.get("sticker_ids")
        or body.get("poll")
    ):
        raise _Fail(400, 50006, "Cannot send an empty message")
    if body.get("components"):
        _check_components(body["components"], prefix)
    if isinstance(content, str) and len(content) > 2000:
        raise _invalid_form(
            _form_error(
                [*prefix, "content"],
                "BASE_TYPE_MAX_LENGTH",
                "Must be 2000 or fewer in length.",
            )
        )
    if len(embeds) > 10:
        raise _invalid_form(
            _form_error(
                [*prefix, "embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."
            )
        )
    total = 0
    limits = {"title": 256, "description": 4096}
    for index, embed in enumerate(embeds):
        where = [*prefix, "embeds", str(index)]
        for key, limit in limits.items():
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > limit:
                raise _invalid_form(
                    _form_error(
                        [*where, key],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
                )
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise _invalid_form(
                _form_error(
                    [*where, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            )
        for number, item in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                text = item.get(key) or ""
                total += len(text)
                if not text or len(text) > limit:
                    code = "BASE_TYPE_REQUIRED" if not text else "BASE_TYPE_MAX_LENGTH"
                    raise _invalid_form(
                        _form_error(
                            [*where, "fields", str(number), key],
                            code,
                            f"Must be between 1 and {limit} in length.",
                        )
                    )
        for key, sub, limit in (("footer", "text", 2048), ("author", "name", 256)):
            text = (embed.get(key) or {}).get(sub) or ""
            total += len(text)
            if len(text) > limit:
                raise _invalid_form(
                    _form_error(
                        [*where, key, sub],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {limit} or fewer in length.",
                    )
                )
    if total > 6000:
        raise _invalid_form(
            _form_error(
                [*prefix, "embeds"],
                "MAX_EMBED_SIZE_EXCEEDED",
                "Embed size exceeds maximum size of 6000",
            )
        )


def _check_modal(data: dict[str, Any]) -> None:
    """Raise Discord's errors for a modal beyond its limits (title, ids, rows, text inputs)."""
    title, custom_id = data.get("title") or "", data.get("custom_id") or ""
    for key, text, limit in (("title", title, 45), ("custom_id", custom_id, 100)):
        if not text or len(text) > limit:
            raise _invalid_form(
                _form_error(
                    ["data", key], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {limit}."
                )
            )
    rows = data.get("components") or []
    if not 1 <= len(rows) <= 5:
        raise _invalid_form(
            _form_error(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be 1 to 5 rows.")
        )
    for number, row in enumerate(rows):
        where = ["data", "components", str(number)]
        inner = [row["component"]] if row.get("type") == 18 else row.get("components") or []
        if row.get("type") not in (1, 18) or len(inner) != 1:
            raise _invalid_form(_form_error(where, "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Bad row"))
        (field_,) = inner
        label = row.get("label") if row.get("type") == 18 else field_.get("label")
        value = field_.get("value")
        if (
            field_.get("type") != 4
            or field_.get("style") not in (1, 2)
            or not field_.get("custom_id")
            or not label
            or len(label) > 45
            or int(field_.get("max_length") or 4000) > 4000
            or (isinstance(value, str) and len(value) > int(field_.get("max_length") or 4000))
        ):
            raise _invalid_form(_form_error(where, "COMPONENT_INVALID", "Invalid text input"))


def _check_components(rows: list[Any], path: list[str]) -> None:
    """Raise Discord's errors for message components beyond its limits (rows of buttons)."""
    if len(rows) > 5:
        raise _invalid_form(
            _form_error([*path, "components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer.")
        )
    for number, row in enumerate(rows):
        where = [*path, "components", str(number)]
        buttons = row.get("components") or [] if isinstance(row, dict) else []
        if not isinstance(row, dict) or row.get("type") != 1 or not 1 <= len(buttons) <= 5:
            raise _invalid_form(_form_error(where, "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Bad row"))
        for button in buttons:
            custom_id, label = button.get("custom_id") or "", button.get("label") or ""
            if (
                button.get("type") != 2
                or button.get("style") not in (1, 2, 3, 4)
                or not 1 <= len(custom_id) <= 100
                or len(label) > 80
            ):
                raise _invalid_form(_form_error(where, "COMPONENT_INVALID", "Invalid button"))


def _check_options(options: list[dict[str, Any]], where: list[str]) -> None:
    if len(options) > 25:
        raise _invalid_form(
            _form_error(
                [*where, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        )
    seen: set[str] = set()
    required_done = False
    for index, option in enumerate(options):
        at = [*where, "options", str(index)]
        name = option.get("name")
        if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
            raise _invalid_form(
                _form_error([*at, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
            )
        if name in seen:
            raise _invalid_form(
                _form_error(
                    [*at, "name"],
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option names must be unique",
                )
            )
        seen.add(name)
        description = option.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 100:
            raise _invalid_form(
                _form_error(
                    [*at, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            )
        if len(option.get("choices") or []) > 25:
            raise _invalid_form(
                _form_error(
                    [*at, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            )
        if option.get("type") in (1, 2):
            _check_options(option.get("options") or [], at)
            continue
        if option.get("required"):
            if required_done:
                raise _invalid_form(
                    _form_error(
                        [*at, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
                )
        else:
            required_done = True


def _check_commands(commands: list[Any]) -> None:
    """Raise Discord's 50035 errors for command definitions Discord would refuse."""
    if len(commands) > 100:
        raise _invalid_form(
            _form_error([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        )
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        at = [str(index)]
        if not isinstance(command, dict):
            raise _invalid_form(
                _form_error(at, "DICT_TYPE_CONVERT", "Only dictionaries may be used")
            )
        kind = int(command.get("type") or 1)
        name = command.get("name")
        if not isinstance(name, str) or not _COMMAND_NAME.match(name):
            raise _invalid_form(
                _form_error([*at, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
            )
        if kind == 1 and name != name.lower():
            raise _invalid_form(
                _form_error([*at, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
            )
        if (kind, name) in seen:
            raise _invalid_form(
                _form_error(
                    [*at, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            )
        seen.add((kind, name))
        if kind == 1:
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                raise _invalid_form(
                    _form_error(
                        [*at, "description"],
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
                )
            _check_options(command.get("options") or [], at)


def _show_attached_images(message: dict[str, Any]) -> None:
    """Point an embed's ``attachment://<name>`` image or thumbnail at that attachment's URL."""
    by_name = {a["filename"]: a for a in message.get("attachments") or []}
    for embed in message.get("embeds") or []:
        for key in ("image", "thumbnail"):
            shown = embed.get(key)
            url = shown.get("url") if isinstance(shown, dict) else None
            if not isinstance(url, str) or not url.startswith("attachment://"):
                continue
            attachment = by_name.get(url.removeprefix("attachment://"))
            if attachment is not None:
                embed[key] = {"url": attachment["url"], "proxy_url": attachment["proxy_url"]}


def _drop_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nones(v) for v in value]
    return value


async def _read_body(request: web.Request) -> tuple[Any, list[_Upload]]:
    """Decode a JSON body, or a multipart body's ``payload_json`` and files; ValueError if bad."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        payload: Any = None
        uploads: list[_Upload] = []
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            if part.name == "payload_json":
                payload = json.loads(data.decode("utf-8"))
            else:
                uploads.append(
                    _Upload(
                        part.name or "",
                        part.filename or "file",
                        part.headers.get("Content-Type", "application/octet-stream"),
                        bytes(data),
                    )
                )
        return payload, uploads
    raw = await request.read()
    if not raw:
        return None, []
    return json.loads(raw.decode("utf-8")), []


def _ratelimit_headers(
    bucket: str, *, remaining: int = 49, reset_after: float = 1.0
) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _json_response(status: int, data: Any, bucket: str) -> web.Response:
    headers = _ratelimit_headers(bucket)
    if status == 204:
        return web.Response(status=204, headers=headers)
    # Exactly "application/json": discord.py compares the header verbatim (no charset).
    headers["Content-Type"] = "application/json"
    return web.Response(status=status, body=json.dumps(data).encode("utf-8"), headers=headers)


def _error_response(
    status: int, code: int, message: str, bucket: str, errors: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return _json_response(status, body, bucket)


def _fault_response(fault: _Fault, bucket: str) -> web.Response:
    if fault.status != 429:
        message = fault.message or _STATUS_MESSAGES.get(fault.status, f"{fault.status}: Error")
        return _error_response(fault.status, fault.code, message, bucket)
    body = {
        "message": fault.message or "You are being rate limited.",
        "retry_after": fault.retry_after,
        "global": fault.is_global,
    }
    headers = _ratelimit_headers(bucket, remaining=0, reset_after=fault.retry_after)
    headers.update(
        {
            "Content-Type": "application/json",
            "Via": "1.1 google",
            "Retry-After": str(max(1, math.ceil(fault.retry_after))),
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
        }
    )
    if fault.is_global:
        headers["X-RateLimit-Global"] = "true"
    return web.Response(status=429, body=json.dumps(body).encode("utf-8"), headers=headers)
