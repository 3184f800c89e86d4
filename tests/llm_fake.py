"""A loopback fake of an OpenAI-compatible chat-completions API, speaking its wire format.

``POST /v1/chat/completions`` answers ``{"id", "object": "chat.completion", "created", "model",
"choices": [{"index", "message": {"role", "content"}, "finish_reason"}], "usage"}`` and errors
as ``{"error": {"message", "type", "code"}}``, as https://platform.openai.com/docs/api-reference/chat
describes. By default it grades like a very literal model: every slug-shaped word of the user
message is reported as both covered and a red flag (the grader keeps the ids its rubric has).

Per test: ``grade`` replaces that scripted grader (return a dict or raw content text);
``delay`` (or ``delay_for``) holds answers back; ``fail_next`` answers the next calls with a
status (429 with ``Retry-After``, 500); ``content`` overrides the message content (malformed
JSON); ``body`` overrides the whole response. Every request is recorded in ``requests``, with
its headers, and the most requests ever in flight at once in ``max_in_flight``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["FakeLlm", "Recorded", "answer_of", "literal_grader"]

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")


@dataclass
class Recorded:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def text(self) -> str:
        """Return everything the request carried, headers aside, as one string."""
        return json.dumps(self.body)


def answer_of(body: dict[str, Any]) -> str:
    """Return the user message of a chat-completions request body."""
    return str(next(m["content"] for m in body["messages"] if m["role"] == "user"))


def literal_grader(body: dict[str, Any]) -> dict[str, Any]:
    """Report every slug-shaped word of the user message as covered and as a red flag."""
    ids = _SLUG.findall(answer_of(body))
    return {"covered": ids, "red_flags": ids}


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    times: int


class FakeLlm:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (a port the OS picks)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.grade: Callable[[dict[str, Any]], dict[str, Any] | str] = literal_grader
        self.delay = 0.0
        self.delay_for: Callable[[dict[str, Any]], float] | None = None
        self.content: str | None = None
        self.body: Any = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._port = 0

    async def start(self) -> None:
        """Start serving."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Release any answer held back, then stop; safe to call twice."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLlm:
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
        """The API base URL, as ``grading.llm_base_url`` takes it (``…/v1``)."""
        return f"http://127.0.0.1:{self._port}/v1"

    def fail_next(self, status: int, *, times: int = 1, retry_after: int | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After`` if given)."""
        self._faults.append(_Fault(status, retry_after, times))

    async def _completions(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delay_for(body) if self.delay_for else self.delay
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            if self._faults:
                fault = self._faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.pop(0)
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                return _error(fault.status, f"fake fault {fault.status}", headers)
            if self.body is not None:
                return web.json_response(self.body)
            content = self.content
            if content is None:
                graded = self.grade(body)
                content = graded if isinstance(graded, str) else json.dumps(graded)
            return web.json_response(self._completion(body, content))
        finally:
            self.in_flight -= 1

    def _completion(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion_tokens = len(content.split())
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": kind}},
        status=status,
        headers=headers,
    )
