"""A loopback fake of Slack's Web API and Socket Mode, speaking Slack's own wire format.

The real ``slack_sdk``/``slack_bolt`` clients are pointed at it (``base_url=fake.api_url``) and talk
HTTP and WebSocket to 127.0.0.1 exactly as they would to slack.com: form-encoded, query-string or
JSON request bodies, ``Authorization: Bearer`` tokens, ``{"ok": ...}`` JSON answers, HTTP 429 with
``Retry-After``, ``apps.connections.open`` handing out a WebSocket URL, a ``hello`` on connect and
envelopes acknowledged by ``envelope_id``.

Faults: ``fail_next`` queues exact failures of one method; ``slow_next`` makes the next calls of
one method answer late, as Slack does under load (the call is carried out at once, its answer
held back for a while), recorded in ``answered_late``; ``hold_answers`` holds one method's
answers until the test says; ``chaos`` answers a seeded random share of every Web API call
with a 429, a 500, a held-back answer (a client timeout) or a slow one (carried out, answered
after a random delay), and records each in ``injected``.

File uploads as ``files_upload_v2`` makes them: ``files.getUploadURLExternal`` (filename, length)
hands out a file id and an upload URL on the fake; the bytes POSTed there (raw, as slack_sdk sends
them, or as a multipart ``file`` part) are kept in ``uploaded_files`` (id → name, bytes);
``files.completeUploadExternal`` checks each file was uploaded with its announced length and
shares it in ``channel_id``: a message from the bot whose ``text`` is the ``initial_comment`` and
whose ``files`` hold the file (id, name, title, mimetype, size). Both methods need ``files:write``
in ``bot_scopes`` (else ``missing_scope``, as Slack answers an app installed without it) and a
length within ``max_upload_bytes`` (else ``file_upload_size_restricted``). ``fail_next``,
``slow_next`` and ``chaos`` reach them as any Web API method, and the upload URL as the method
``UPLOAD`` (``"upload"``), whose answers are plain text like files.slack.com's. The fake's
aiohttp server takes request lines up to 64 KiB: slack_sdk sends completeUploadExternal's
``initial_comment`` in the query string.

Modals: ``views.open`` records each opened view in ``views`` (a missing trigger_id is refused as
Slack refuses it); ``chat.update`` edits a stored message in place, its blocks and metadata
replaced. ``send_interaction`` delivers a ``block_actions`` or ``view_submission`` payload over
Socket Mode and ``post_interaction`` over HTTP; both return what the app answered (a modal's
``response_action``).

Module-level builders produce Events API payloads, slash-command form fields, interaction
payloads and request signatures shaped like the ones Slack sends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from aiohttp import BodyPartReader, ClientSession, WSCloseCode, WSMsgType, web

from tests.chaos import FAULT_KINDS, SLOW, Chaos, count_kinds

__all__ = [
    "FAULT_KINDS",
    "UPLOAD",
    "Call",
    "FakeSlack",
    "Injected",
    "Late",
    "block_actions",
    "bot_message_event",
    "event_callback",
    "message_changed_event",
    "message_deleted_event",
    "message_event",
    "next_ts",
    "post_interaction",
    "sign",
    "slash_command",
    "view_submission",
]

UPLOAD = "upload"  # the method name the upload URL goes by in calls, faults and chaos
BOT_SCOPES = frozenset(
    {
        "chat:write",
        "commands",
        "channels:history",
        "groups:history",
        "users:read",
        "reactions:write",
        "files:write",
    }
)
MAX_REQUEST_LINE = 64 * 1024  # bytes of a request line the fake's server reads (aiohttp: 8190)
_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
_TS_STEP = 100  # Slack's fractions look like .000100, .000200, ...
_ts_counter = itertools.count(1)


def next_ts() -> str:
    """Return a fresh Slack message timestamp, unique and increasing within the test run.

    The fake's own messages use the same sequence, so timestamps from both never collide and
    sort in the order they were handed out.
    """
    micros = next(_ts_counter) * _TS_STEP
    return f"{_EPOCH + micros // 1_000_000}.{micros % 1_000_000:06d}"


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int(fraction or 0)


def _event_id() -> str:
    return "Ev" + uuid.uuid4().hex[:10].upper()


@dataclass
class Call:
    """One Web API request the fake received, faults and auth failures included."""

    method: str
    params: dict[str, Any]
    token: str | None


@dataclass
class _Fault:
    status: int
    retry_after: int
    error: str | None
    times: int


@dataclass
class _Slow:
    seconds: float
    processed: bool
    times: int


@dataclass
class _PendingFile:
    """A file announced by files.getUploadURLExternal, until files.completeUploadExternal."""

    filename: str
    length: int
    alt_txt: str | None
    data: bytes | None = None


@dataclass
class Late:
    """One call ``slow_next`` answered late: what was asked, how late, whether it was done."""

    method: str
    params: dict[str, Any]
    seconds: float
    processed: bool


@dataclass
class Injected:
    """One fault ``chaos`` injected: the call it hit and what the client saw.

    ``processed`` is true for a timeout (or a slow answer) whose request the fake carried out
    (successfully) before it held the answer back, as a server does when only the response is
    lost or late; ``delay`` is how long a slow answer was held.
    """

    method: str
    params: dict[str, Any]
    kind: str
    processed: bool = False
    draw: int = 0
    delay: float = 0.0


@dataclass
class _Chaos(Chaos):
    max_retry_after: int
    methods: frozenset[str] | None


class FakeSlack:
    """Slack's Web API and Socket Mode on 127.0.0.1, with recorded calls and injectable faults.

    Use ``await fake.start()`` / ``await fake.stop()`` or ``async with FakeSlack() as fake``.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A0001",
        team_name: str = "Prepbot Test",
        team_domain: str = "prepbot-test",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.team_name = team_name
        self.team_domain = team_domain

        self.calls: list[Call] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.channel_errors: dict[str, str] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        # Messages this fake never saw exist all the same (a load generator posts members'
        # replies straight to the bot): reactions to them succeed instead of message_not_found.
        self.unseen_messages_exist = False
        self.ephemerals: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []  # modals opened with views.open, oldest first
        self.responses: list[tuple[str, dict[str, Any]]] = []
        self.socket_messages: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.socket_connections = 0
        self.bot_scopes: set[str] = set(BOT_SCOPES)  # drop "files:write" to refuse uploads
        self.max_upload_bytes: int | None = None  # a workspace's file size restriction
        self.uploaded_files: dict[str, tuple[str, bytes]] = {}  # file id → (name, bytes)
        self.files: dict[str, dict[str, Any]] = {}  # completed files, as Slack describes them
        self._pending_files: dict[str, _PendingFile] = {}

        self._faults: dict[str, list[_Fault]] = {}
        self._gates: dict[str, asyncio.Event] = {}
        self._slow: dict[str, list[_Slow]] = {}
        self.answered_late: list[Late] = []
        self._chaos: _Chaos | None = None
        self.injected: list[Injected] = []
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_ready: asyncio.Event | None = None
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._response_ids = itertools.count(1)
        self._tickets = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Start the HTTP/WebSocket server on 127.0.0.1 at ``port`` (0: one the OS picks)."""
        if self._runner is not None:
            raise RuntimeError("FakeSlack is already started")
        self._socket_ready = asyncio.Event()
        app = web.Application(handler_args={"max_line_size": MAX_REQUEST_LINE})
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_post("/respond/{rid}", self._handle_respond)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every WebSocket, then the server; safe to call twice."""
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for waiter in self._ack_waiters.values():
            waiter.cancel()
        self._ack_waiters.clear()

    async def __aenter__(self) -> FakeSlack:
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
            raise RuntimeError("FakeSlack is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL to give ``AsyncWebClient(base_url=...)``; ends with a slash."""
        return f"{self.base_url}/api/"

    # -- inspection and set-up -------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """Return the recorded calls of one Web API method, oldest first."""
        return [call for call in self.calls if call.method == method]

    def add_user(
        self, user_id: str, name: str, *, admin: bool = False, owner: bool = False
    ) -> None:
        """Make ``users.info`` know a human user."""
        self.users[user_id] = {
            "name": name,
            "real_name": name,
            "is_admin": admin,
            "is_owner": owner,
        }

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail before any other check.

        429 answers ``{"ok": false, "error": "ratelimited"}`` with a ``Retry-After`` header; any
        other status answers that status with ``{"ok": false, "error": error}`` (``error``
        defaulting to ``internal_error`` for 5xx); status 200 needs ``error``.
        """
        if status == 200 and error is None:
            raise ValueError("a 200 fault needs an error code")
        self._faults.setdefault(method, []).append(_Fault(status, retry_after, error, times))

    def slow_next(
        self, method: str, seconds: float, *, times: int = 1, processed: bool = True
    ) -> None:
        """Make the next ``times`` calls of ``method`` answer ``seconds`` late.

        With ``processed`` the call is carried out at once (a posted message is in the channel's
        history and can be replied to) and its real answer is sent ``seconds`` later, as Slack
        does under load; a client that gives up first never learns the ``ts``. Without it
        nothing is done and ``{"ok": false, "error": "request_timeout"}`` comes late. A fault
        queued by ``fail_next`` for the same call comes first.
        """
        self._slow.setdefault(method, []).append(_Slow(seconds, processed, times))

    def chaos(
        self,
        *,
        rate: float = 0.2,
        seed: int = 0,
        kinds: Collection[str] = FAULT_KINDS,
        hold: float = 2.0,
        max_retry_after: int = 1,
        methods: Collection[str] | None = None,
        max_delay: float = 0.0,
    ) -> None:
        """Answer a seeded random ``rate`` of Web API calls with a fault of one of ``kinds``.

        ``"429"``: ``ratelimited`` with ``Retry-After`` 0..``max_retry_after`` seconds; ``"500"``:
        ``internal_error``; ``"timeout"``: the answer is held ``hold`` seconds (set it longer
        than the client's timeout), and half of the time the request is carried out first;
        ``"slow"`` (not among the defaults): carried out, answered after 0..``max_delay`` s.
        Whether a call fails depends only on the seed, its method, channel and thread, and how
        many such calls came before, so concurrent channels do not change each other's faults.
        ``methods`` limits chaos to those methods; ``calm()`` ends it.
        """
        limited = frozenset(methods) if methods is not None else None
        self._chaos = _Chaos(
            rate, seed, tuple(kinds), hold, max_retry_after, limited, max_delay=max_delay
        )

    def calm(self) -> None:
        """Stop injecting random faults."""
        self._chaos = None

    def hold_answers(self, method: str) -> asyncio.Event:
        """Carry out calls of ``method`` at once but answer them only once the event is set.

        A slow platform made exact: the message is there for members to see while the bot
        still waits for its answer.
        """
        gate = self._gates[method] = asyncio.Event()
        return gate

    def injected_kinds(self) -> dict[str, int]:
        """Return how many faults of each kind ``chaos`` injected."""
        return count_kinds(self.injected)

    def add_message(
        self,
        channel: str,
        *,
        user: str,
        text: str,
        thread_ts: str | None = None,
        ts: str | None = None,
    ) -> dict[str, Any]:
        """Put a human message into the channel's history and return it (a fresh ``ts`` if none)."""
        ts = ts or next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "ts": ts,
            "user": user,
            "text": text,
            "team": self.team_id,
            "client_msg_id": str(uuid.uuid4()),
            "blocks": [_rich_text_block(text)],
        }
        self._store(channel, message, thread_ts)
        return message

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Return a thread's parent and replies, oldest first (empty if there is no such thread)."""
        found = [
            m
            for m in self.messages.get(channel, [])
            if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
        ]
        return sorted(found, key=lambda m: _ts_key(m["ts"]))

    def response_url(self) -> str:
        """Return a fresh response URL; JSON POSTed to it lands in ``responses``."""
        return f"{self.base_url}/respond/{next(self._response_ids)}"

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Poll until ``predicate()`` holds; raise ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)

    def view_opened_by(self, trigger_id: str) -> dict[str, Any] | None:
        """Return the modal that views.open opened with this trigger_id, if any."""
        for view in self.views:
            if view.get("trigger_id") == trigger_id:
                return view
        return None

    # -- socket mode -----------------------------------------------------------------------

    async def wait_for_socket(self, timeout: float = 10) -> None:
        """Wait until a Socket Mode client has connected and been sent ``hello``."""
        if self._socket_ready is None:
            raise RuntimeError("FakeSlack is not started")
        await asyncio.wait_for(self._socket_ready.wait(), timeout)

    async def send_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        accepts_response_payload: bool | None = None,
    ) -> str:
        """Send an envelope (``events_api``, ``slash_commands``, ``interactive``) to the client.

        Returns the envelope id the client must acknowledge.
        """
        ws = self._live_socket()
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "payload": payload, "type": type}
        if type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = "timeout" if retry_attempt else ""
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands"
        envelope["accepts_response_payload"] = accepts_response_payload
        self._ack_future(envelope_id)
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    async def send_interaction(
        self, payload: dict[str, Any], timeout: float = 10
    ) -> dict[str, Any] | None:
        """Deliver a button press or modal submission over Socket Mode; return the ack's payload.

        None when the app acknowledged with no payload (a modal submission that closes it).
        """
        envelope = await self.send_envelope(
            "interactive",
            payload,
            accepts_response_payload=payload.get("type") == "view_submission",
        )
        ack = await self.wait_ack(envelope, timeout)
        answered = ack.get("payload")
        return answered if isinstance(answered, dict) and answered else None

    async def wait_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        """Wait for and return the client's acknowledgement of an envelope."""
        if envelope_id in self.acks:
            return self.acks[envelope_id]
        return await asyncio.wait_for(asyncio.shield(self._ack_future(envelope_id)), timeout)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does before it recycles a connection."""
        ws = self._live_socket()
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink"}}
        await ws.send_str(json.dumps(message))

    def _live_socket(self) -> web.WebSocketResponse:
        live = [ws for ws in self._sockets if not ws.closed]
        if not live:
            raise RuntimeError("no Socket Mode client is connected")
        return live[-1]

    def _ack_future(self, envelope_id: str) -> asyncio.Future[dict[str, Any]]:
        waiter = self._ack_waiters.get(envelope_id)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._ack_waiters[envelope_id] = waiter
        return waiter

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)  # bounds stop() on a mute client
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        hello = {
            "type": "hello",
            "num_connections": len([s for s in self._sockets if not s.closed]),
            "debug_info": {
                "host": "fake-applink-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        if self._socket_ready is not None:
            self._socket_ready.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                self.socket_messages.append(data)
                envelope_id = data.get("envelope_id")
                if isinstance(envelope_id, str):
                    self.acks[envelope_id] = data
                    waiter = self._ack_future(envelope_id)
                    if not waiter.done():
                        waiter.set_result(data)
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    # -- response URLs ---------------------------------------------------------------------

    async def _handle_respond(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = {"raw": text}
        if not isinstance(body, dict):
            body = {"raw": text}
        self.responses.append((request.match_info["rid"], body))
        return web.Response(text="ok", content_type="text/html")

    # -- Web API ---------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ValueError:
            self.calls.append(Call(method=method, params={}, token=None))
            return _ok_false("invalid_json")
        token = _bearer(request.headers.get("Authorization"))
        body_token = params.pop("token", None)
        if token is None and isinstance(body_token, str):
            token = body_token
        self.calls.append(Call(method=method, params=params, token=token))

        fault = self._take_fault(method)
        if fault is not None:
            return fault
        slow = self._take_slow(method)
        if slow is not None:
            return await self._answer_late(slow, method, token, params)
        injected = self._chaos_fault(method, params)
        if injected is not None:
            return await self._inject(injected, token)
        gate = self._gates.get(method)
        if gate is not None and not gate.is_set():
            response = self._answer(method, token, params)
            await gate.wait()
            return response
        return self._answer(method, token, params)

    def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> web.Response:
        handler = self._methods().get(method)
        if handler is None:
            return _ok_false("unknown_method", req_method=method)
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token is None:
            return _ok_false("not_authed")
        if token != expected:
            known = token in (self.app_token, self.bot_token)
            return _ok_false("not_allowed_token_type" if known else "invalid_auth")
        return _json(handler(params))

    def _chaos_fault(self, method: str, params: dict[str, Any]) -> Injected | None:
        chaos = self._chaos
        if chaos is None or (chaos.methods is not None and method not in chaos.methods):
            return None
        # Timestamps depend on how channels interleave; a channel and "in a thread or not" do not.
        key = f"{method}:{params.get('channel')}:{bool(params.get('thread_ts'))}"
        drawn = chaos.draw(key)
        if drawn is None:
            return None
        detail = drawn.rng.randint(0, 1_000_000)
        injected = Injected(method, dict(params), drawn.kind, drawn.processed, detail, drawn.delay)
        self.injected.append(injected)
        return injected

    async def _inject(self, injected: Injected, token: str | None) -> web.Response:
        chaos = self._chaos
        assert chaos is not None
        if injected.kind == "429":
            retry_after = injected.draw % (chaos.max_retry_after + 1)
            return _json(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        if injected.kind == "500":
            return _json({"ok": False, "error": "internal_error"}, status=500)
        response = _ok_false("request_timeout")
        if injected.processed:
            response = self._answer(injected.method, token, injected.params)
            injected.processed = bool(json.loads(response.text or "{}").get("ok"))
        if injected.kind == SLOW:
            await asyncio.sleep(injected.delay)  # the client may have given up meanwhile
        else:
            await asyncio.sleep(chaos.hold)  # the client has given up by now
        return response

    def _take_slow(self, method: str) -> _Slow | None:
        queue = self._slow.get(method)
        if not queue:
            return None
        slow = queue[0]
        slow.times -= 1
        if slow.times <= 0:
            queue.pop(0)
        return slow

    async def _answer_late(
        self, slow: _Slow, method: str, token: str | None, params: dict[str, Any]
    ) -> web.Response:
        response = _ok_false("request_timeout")
        if slow.processed:
            response = self._answer(method, token, params)
        self.answered_late.append(Late(method, dict(params), slow.seconds, slow.processed))
        await asyncio.sleep(slow.seconds)  # a client with less patience has given up by now
        return response

    def _take_fault(self, method: str) -> web.Response | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        if fault.status == 429:
            return _json(
                {"ok": False, "error": fault.error or "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        error = fault.error or ("internal_error" if fault.status >= 500 else "fatal_error")
        return _json({"ok": False, "error": error}, status=fault.status)

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "views.open": self._views_open,
            "reactions.add": self._reactions_add,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": "prepbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = f"{next(self._tickets):08d}-fake"
        url = f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"
        return {"ok": True, "url": url}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        text, blocks = params.get("text"), params.get("blocks")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        message: dict[str, Any] = {
            "type": "message",
            "ts": next_ts(),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": text or "",
            "team": self.team_id,
        }
        if blocks:
            message["blocks"] = blocks
        metadata = params.get("metadata")
        if isinstance(metadata, str):  # a form-encoded call sends it as JSON text
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return {"ok": False, "error": "invalid_metadata_format"}
        if metadata:
            if not isinstance(metadata, dict) or not metadata.get("event_type"):
                return {"ok": False, "error": "invalid_metadata_format"}
            message["metadata"] = metadata
        thread_ts = params.get("thread_ts") or None
        if thread_ts and _truthy(params.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"
        self._store(channel, message, thread_ts)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": dict(message)}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, user = params.get("channel"), params.get("user")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        if not user:
            return {"ok": False, "error": "user_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = next_ts()
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "ts": ts,
                "text": params.get("text") or "",
                "blocks": params.get("blocks"),
                "thread_ts": params.get("thread_ts"),
            }
        )
        return {"ok": True, "message_ts": ts}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        """Add the bot's reaction to a message, as Slack's reactions.add does."""
        channel, ts, name = params.get("channel"), params.get("timestamp"), params.get("name")
        if not channel or not ts:
            return {"ok": False, "error": "no_item_specified"}
        if not name or not re.fullmatch(r"[a-z0-9_+\-']+", str(name)):
            return {"ok": False, "error": "invalid_name"}
        if channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        message = self._find(channel, ts)
        if message is None and self.unseen_messages_exist:
            return {"ok": True}
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if self.bot_user_id in reaction["users"]:
                    return {"ok": False, "error": "already_reacted"}
                reaction["users"].append(self.bot_user_id)
                reaction["count"] += 1
                return {"ok": True}
        reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        return {"ok": True}

    def reactions_on(self, channel: str, ts: str) -> list[str]:
        """Return the names of the reactions on a message."""
        message = self._find(channel, ts)
        return [r["name"] for r in (message or {}).get("reactions", [])]

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        message = self._find(channel, ts)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.get("bot_id") != self.bot_id:
            return {"ok": False, "error": "cant_update_message"}
        if "text" in params:
            message["text"] = params["text"]
        metadata = params.get("metadata")
        if isinstance(metadata, str):  # a form-encoded call sends it as JSON text
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return {"ok": False, "error": "invalid_metadata_format"}
        if metadata and (not isinstance(metadata, dict) or not metadata.get("event_type")):
            return {"ok": False, "error": "invalid_metadata_format"}
        if "blocks" in params:
            message["blocks"] = params["blocks"]
        # The update's metadata replaces the message's: an update without it drops it.
        message.pop("metadata", None)
        if metadata:
            message["metadata"] = metadata
        message["edited"] = {"user": self.bot_user_id, "ts": next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": dict(message),
        }

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """Open a modal for the member whose interaction gave the trigger_id."""
        trigger_id = params.get("trigger_id")
        if not trigger_id:
            return {"ok": False, "error": "invalid_trigger_id"}
        view = params.get("view")
        if isinstance(view, str):  # a form-encoded call sends it as JSON text
            try:
                view = json.loads(view)
            except ValueError:
                return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("title"):
            return {"ok": False, "error": "invalid_arguments"}
        opened = {
            **view,
            "id": "V" + uuid.uuid4().hex[:10].upper(),
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "hash": uuid.uuid4().hex[:16],
            "state": {"values": {}},
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "trigger_id": trigger_id,
        }
        self.views.append(opened)
        return {"ok": True, "view": {k: v for k, v in opened.items() if k != "trigger_id"}}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        anchor = self._find(channel, ts)
        if anchor is None:
            return {"ok": False, "error": "thread_not_found"}
        thread = self.thread(channel, anchor.get("thread_ts") or anchor["ts"])
        return _page(thread, params, most=1000)

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a channel, newest first, as Slack pages them."""
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        top = [m for m in self.messages.get(channel, []) if m.get("thread_ts") in (None, m["ts"])]
        top.sort(key=lambda m: _ts_key(m["ts"]), reverse=True)
        return _page(top, params, most=999, default=100)

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        error = self.channel_errors.get(channel)
        if error not in (None, "is_archived", "not_in_channel"):
            return {"ok": False, "error": error}
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "is_private": False,
                "is_archived": error == "is_archived",
                "is_member": error != "not_in_channel",
                "context_team_id": self.team_id,
            },
        }

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = params.get("user")
        if user_id == self.bot_user_id:
            user = {"name": "prepbot", "real_name": "prepbot", "is_admin": False, "is_owner": False}
            is_bot = True
        elif user_id in self.users:
            user, is_bot = self.users[user_id], False
        else:
            return {"ok": False, "error": "user_not_found"}
        return {
            "ok": True,
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": user["name"],
                "real_name": user["real_name"],
                "deleted": False,
                "is_admin": bool(user["is_admin"]),
                "is_owner": bool(user["is_owner"]),
                "is_bot": is_bot,
                "profile": {
                    "display_name": user["name"],
                    "real_name": user["real_name"],
                    "team": self.team_id,
                },
            },
        }

    # -- files -----------------------------------------------------------------------------

    def _missing_files_write(self) -> dict[str, Any] | None:
        if "files:write" in self.bot_scopes:
            return None
        return {
            "ok": False,
            "error": "missing_scope",
            "needed": "files:write",
            "provided": ",".join(sorted(self.bot_scopes)),
        }

    def _files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        """Announce a file: hand out its id and the URL its bytes go to."""
        refused = self._missing_files_write()
        if refused is not None:
            return refused
        filename = params.get("filename")
        try:
            length = int(params.get("length", ""))
        except (TypeError, ValueError):
            length = -1
        if not filename or length < 1:
            return {"ok": False, "error": "invalid_arguments"}
        if self.max_upload_bytes is not None and length > self.max_upload_bytes:
            return {"ok": False, "error": "file_upload_size_restricted"}
        file_id = "F" + uuid.uuid4().hex[:10].upper()
        alt_txt = params.get("alt_txt")
        self._pending_files[file_id] = _PendingFile(
            str(filename), length, str(alt_txt) if alt_txt else None
        )
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """Take a file's bytes at its upload URL (no token: the URL is the credential)."""
        file_id = request.match_info["file_id"]
        data = await _upload_body(request)
        params = {"file_id": file_id, "length": len(data)}
        self.calls.append(Call(method=UPLOAD, params=params, token=None))
        fault = self._take_fault(UPLOAD)
        if fault is not None:
            return _as_text(fault)
        slow = self._take_slow(UPLOAD)
        if slow is not None:
            response = self._take_bytes(file_id, data) if slow.processed else _upload_text(500)
            self.answered_late.append(Late(UPLOAD, params, slow.seconds, slow.processed))
            await asyncio.sleep(slow.seconds)
            return response
        injected = self._chaos_fault(UPLOAD, params)
        if injected is not None:
            assert self._chaos is not None
            if injected.kind == "429":
                retry_after = injected.draw % (self._chaos.max_retry_after + 1)
                return _upload_text(429, {"Retry-After": str(retry_after)})
            if injected.kind == "500":
                return _upload_text(500)
            response = _upload_text(500)
            if injected.processed:
                response = self._take_bytes(file_id, data)
            await asyncio.sleep(injected.delay if injected.kind == SLOW else self._chaos.hold)
            return response
        return self._take_bytes(file_id, data)

    def _take_bytes(self, file_id: str, data: bytes) -> web.Response:
        pending = self._pending_files.get(file_id)
        if pending is None:
            return _upload_text(404)
        pending.data = data
        self.uploaded_files[file_id] = (pending.filename, data)
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    def _files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        """Finish uploads and share the files in ``channel_id`` with the initial comment."""
        refused = self._missing_files_write()
        if refused is not None:
            return refused
        raw = params.get("files")
        try:
            described = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(described, list) or not described:
            return {"ok": False, "error": "invalid_arguments"}
        channel = params.get("channel_id") or None
        if channel is not None and channel in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[channel]}
        ready: list[tuple[str, str, _PendingFile]] = []
        for entry in described:
            file_id = str(entry.get("id", "")) if isinstance(entry, dict) else ""
            pending = self._pending_files.get(file_id)
            if pending is None or pending.data is None:
                return {"ok": False, "error": "file_not_found"}
            if len(pending.data) != pending.length:
                return {"ok": False, "error": "file_upload_length_mismatch"}
            ready.append((file_id, str(entry.get("title") or pending.filename), pending))
        shown: list[dict[str, Any]] = []
        for file_id, title, pending in ready:
            del self._pending_files[file_id]
            assert pending.data is not None
            self.files[file_id] = {
                "id": file_id,
                "name": pending.filename,
                "title": title,
                "mimetype": mimetypes.guess_type(pending.filename)[0] or "application/octet-stream",
                "size": len(pending.data),
                "user": self.bot_user_id,
                "alt_txt": pending.alt_txt,
            }
            shown.append(self.files[file_id])
        if channel is not None:
            message: dict[str, Any] = {
                "type": "message",
                "ts": next_ts(),
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "app_id": self.app_id,
                "text": str(params.get("initial_comment") or ""),
                "team": self.team_id,
                "upload": True,
                "files": [copy.deepcopy(f) for f in shown],
            }
            self._store(channel, message, params.get("thread_ts") or None)
        return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in shown]}

    # -- history ---------------------------------------------------------------------------

    def _find(self, channel: str, ts: Any) -> dict[str, Any] | None:
        for message in self.messages.get(channel, []):
            if message["ts"] == ts:
                return message
        return None

    def _store(self, channel: str, message: dict[str, Any], thread_ts: str | None) -> None:
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = self._find(channel, thread_ts)
            if parent is not None:
                if "user" in parent:
                    message["parent_user_id"] = parent["user"]
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                replier = message.get("user")
                users = parent.setdefault("reply_users", [])
                if replier and replier not in users:
                    users.append(replier)
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = message["ts"]
        self.messages.setdefault(channel, []).append(message)


# -- request/response plumbing ------------------------------------------------------------------


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        with contextlib.suppress(ValueError):
            params["blocks"] = json.loads(blocks)
    return params


async def _upload_body(request: web.Request) -> bytes:
    """Return a file's bytes: the raw body slack_sdk sends, or a multipart ``file`` part."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name in ("file", "filename"):
                return bytes(await part.read())
        return b""
    return await request.read()


def _upload_text(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """Answer an upload URL in plain text, as files.slack.com does."""
    reasons = {404: "Not Found", 429: "ratelimited", 500: "Internal Server Error"}
    text = reasons.get(status, "error")
    return web.Response(status=status, text=text, content_type="text/plain", headers=headers)


def _as_text(response: web.Response) -> web.Response:
    """Return a queued fault's answer as the upload URL gives it: plain text, same headers."""
    headers = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
    return _upload_text(response.status, headers)


def _bearer(header: str | None) -> str | None:
    if header and header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return bool(value)


def _json(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _ok_false(error: str, **extra: Any) -> web.Response:
    return _json({"ok": False, "error": error, **extra})


def _page(
    messages: list[dict[str, Any]], params: dict[str, Any], *, most: int, default: int = 0
) -> dict[str, Any]:
    """Answer a history method: ``oldest``, ``limit`` and ``cursor`` as Slack reads them."""
    oldest = _ts_or_none(params.get("oldest"))
    if oldest is not None:
        messages = [m for m in messages if _ts_key(m["ts"]) >= _ts_key(oldest)]
    try:
        limit = max(1, min(int(params.get("limit") or default or most), most))
    except (TypeError, ValueError):
        return {"ok": False, "error": "invalid_limit"}
    start = 0
    cursor = params.get("cursor")
    if cursor:
        start_ts = _decode_cursor(str(cursor))
        positions = [i for i, m in enumerate(messages) if m["ts"] == start_ts]
        if not positions:
            return {"ok": False, "error": "invalid_cursor"}
        start = positions[0]
    page = messages[start : start + limit]
    more = start + limit < len(messages)
    shown = [_shown(m, _truthy(params.get("include_all_metadata"))) for m in page]
    body: dict[str, Any] = {"ok": True, "messages": shown, "has_more": more}
    if more:
        body["response_metadata"] = {"next_cursor": _encode_cursor(messages[start + limit]["ts"])}
    return body


def _shown(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    """Return a stored message as a history method shows it (metadata only when asked for)."""
    shown = dict(message)
    if not with_metadata:
        shown.pop("metadata", None)
    return shown


def _ts_or_none(value: Any) -> str | None:
    """Return a message timestamp parameter as a ts string, or None when absent."""
    if value in (None, ""):
        return None
    try:
        return f"{float(value):.6f}"
    except (TypeError, ValueError):
        return None


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str | None:
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    kind, _, ts = decoded.partition(":")
    return ts if kind == "next_ts" else None


def _rich_text_block(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "block_id": uuid.uuid4().hex[:5],
        "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]},
        ],
    }


# -- payload builders ---------------------------------------------------------------------------


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = "T0001",
    event_id: str | None = None,
    api_app_id: str = "A0001",
    bot_user_id: str = "UBOT",
) -> dict[str, Any]:
    """Wrap an event in the Events API's outer ``event_callback`` payload."""
    event_ts = event.get("event_ts") or event.get("ts")
    event_time = int(float(event_ts)) if isinstance(event_ts, str) else int(time.time())
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or _event_id(),
        "event_time": event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
    }


def message_event(
    channel: str,
    user: str,
    text: str,
    ts: str,
    *,
    thread_ts: str | None = None,
    subtype: str | None = None,
    team: str = "T0001",
    parent_user_id: str | None = None,
) -> dict[str, Any]:
    """Return a human ``message`` event; ``subtype="thread_broadcast"`` is also-send-to-channel."""
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "client_msg_id": str(uuid.uuid4()),
        "blocks": [_rich_text_block(text)],
        "channel": channel,
        "event_ts": ts,
        "channel_type": "channel",
    }
    if subtype is not None:
        event["subtype"] = subtype
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        if parent_user_id is not None:
            event["parent_user_id"] = parent_user_id
    return event


def message_changed_event(
    channel: str,
    user: str,
    new_text: str,
    ts: str,
    *,
    thread_ts: str | None,
    edited_ts: str,
    previous_text: str = "",
    team: str = "T0001",
) -> dict[str, Any]:
    """Return the ``message_changed`` event for an edit of message ``ts`` made at ``edited_ts``.

    As on Slack, the event's own ``ts``/``event_ts`` are the edit's; the edited message keeps its
    ``ts`` inside ``message`` and ``previous_message``.
    """
    new: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": new_text,
        "ts": ts,
        "team": team,
        "edited": {"user": user, "ts": edited_ts},
        "blocks": [_rich_text_block(new_text)],
    }
    previous: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": previous_text,
        "ts": ts,
        "team": team,
        "blocks": [_rich_text_block(previous_text)],
    }
    if thread_ts is not None:
        new["thread_ts"] = previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": new,
        "previous_message": previous,
        "channel": channel,
        "hidden": True,
        "ts": edited_ts,
        "event_ts": edited_ts,
        "channel_type": "channel",
    }


def message_deleted_event(
    channel: str,
    ts: str,
    *,
    thread_ts: str | None,
    user: str,
    previous_text: str = "",
    deleted_at: str | None = None,
) -> dict[str, Any]:
    """Return the ``message_deleted`` event for message ``ts`` (``deleted_ts``)."""
    event_ts = deleted_at or next_ts()
    previous: dict[str, Any] = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    if thread_ts is not None:
        previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_deleted",
        "previous_message": previous,
        "channel": channel,
        "hidden": True,
        "deleted_ts": ts,
        "event_ts": event_ts,
        "ts": event_ts,
        "channel_type": "channel",
    }


def bot_message_event(
    channel: str,
    text: str,
    ts: str,
    *,
    thread_ts: str | None,
    bot_id: str = "BOTHER",
    user: str | None = None,
    subtype: str | None = None,
) -> dict[str, Any]:
    """Return a ``message`` event posted by an app (modern shape: ``bot_id``, no subtype).

    Pass ``subtype="bot_message"`` for the legacy integration/webhook shape.
    """
    event: dict[str, Any] = {
        "type": "message",
        "bot_id": bot_id,
        "app_id": "A" + bot_id.removeprefix("B"),
        "text": text,
        "ts": ts,
        "bot_profile": {"id": bot_id, "name": "other bot", "deleted": False},
        "channel": channel,
        "event_ts": ts,
        "channel_type": "channel",
    }
    if user is not None:
        event["user"] = user
    if subtype is not None:
        event["subtype"] = subtype
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def slash_command(
    text: str,
    *,
    user_id: str,
    user_name: str,
    channel_id: str,
    team_id: str = "T0001",
    response_url: str,
    trigger_id: str = "t1",
    command: str = "/prep",
    channel_name: str = "prep",
    api_app_id: str = "A0001",
) -> dict[str, str]:
    """Return the form fields Slack POSTs for a slash command (also the Socket Mode payload)."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": "prepbot-test",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def block_actions(
    message: dict[str, Any],
    *,
    channel_id: str,
    user_id: str,
    action_id: str,
    trigger_id: str,
    response_url: str,
    block_id: str | None = None,
    value: str = "",
    team_id: str = "T0001",
    api_app_id: str = "A0001",
) -> dict[str, Any]:
    """Return the ``block_actions`` payload Slack sends when a member presses a message's button."""
    action_ts = next_ts()
    return {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": team_id,
        },
        "api_app_id": api_app_id,
        "token": "fake-verification-token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": "prepbot-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "study"},
        "message": dict(message),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id or action_id,
                "text": {"type": "plain_text", "text": "Answer", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }


def view_submission(
    view: dict[str, Any],
    *,
    user_id: str,
    values: dict[str, dict[str, str | None]],
    team_id: str = "T0001",
    api_app_id: str = "A0001",
) -> dict[str, Any]:
    """Return the ``view_submission`` payload Slack sends when a member submits an opened modal.

    ``values`` maps block id → action id → the text typed (None for an input left empty).
    """
    state = {
        block: {
            action: {"type": "plain_text_input", "value": text} for action, text in inputs.items()
        }
        for block, inputs in values.items()
    }
    submitted = {k: v for k, v in view.items() if k != "trigger_id"}
    submitted["state"] = {"values": state}
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "prepbot-test"},
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": team_id,
        },
        "api_app_id": api_app_id,
        "token": "fake-verification-token",
        "trigger_id": f"{next(_ts_counter)}.{uuid.uuid4().hex[:8]}",
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


async def post_interaction(
    session: ClientSession, url: str, payload: dict[str, Any], secret: str
) -> tuple[int, dict[str, Any] | None]:
    """POST an interaction the way Slack does (signed form body ``payload=<json>``).

    Returns the HTTP status and the JSON body the app answered (None when it was empty).
    """
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, secret)}
    async with session.post(url, data=body, headers=headers) as response:
        text = await response.text()
        status = response.status
    if not text.strip():
        return status, None
    try:
        answered = json.loads(text)
    except ValueError:
        return status, {"raw": text}
    return status, answered if isinstance(answered, dict) else {"raw": text}


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Return the ``X-Slack-Request-Timestamp``/``X-Slack-Signature`` headers for a body."""
    ts = int(time.time()) if timestamp is None else timestamp
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}
