"""Where the console's lines come from: a line editor on a terminal, plain lines otherwise.

On a terminal, prompt_toolkit edits each line (arrow keys move the cursor, ↑ and ↓ recall the
lines typed in this run) and Ctrl-C or Ctrl-D at the prompt type ``/quit``. Piped or
redirected input is read as plain lines by a thread of its own that the process never waits
for, so Ctrl-C (SIGINT) is not stuck behind a blocked read; the end of the input ends the
session. Imports no database and no chat platform library.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable

QUIT = "/quit"


def on_a_terminal() -> bool:
    """Say whether a person types at a terminal (stdin and stdout are both terminals)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def console_lines(prompt: Callable[[], str]) -> AsyncIterator[str]:
    """Yield the lines of standard input: edited at a prompt on a terminal, plain otherwise."""
    return typed_lines(prompt) if on_a_terminal() else piped_lines(sys.stdin.fileno())


async def typed_lines(prompt: Callable[[], str]) -> AsyncIterator[str]:
    """Yield lines edited at a prompt; Ctrl-C or Ctrl-D there yields ``/quit`` and ends."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory

    editor: PromptSession[str] = PromptSession(history=InMemoryHistory())
    while True:
        try:
            line = await editor.prompt_async(prompt())
        except (KeyboardInterrupt, EOFError):
            yield QUIT
            return
        yield line


async def piped_lines(fd: int) -> AsyncIterator[str]:
    """Yield the lines read from a file descriptor until its end, never blocking the loop.

    A daemon thread reads with ``os.read``: unlike a buffered ``readline`` on the default
    executor, it holds no lock and nothing waits for it, so the process can end mid-read.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def deliver(lines: Iterable[str | None]) -> bool:
        try:
            for line in lines:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except RuntimeError:  # the loop is closed: nobody reads any more
            return False
        return True

    def read() -> None:
        decoder = codecs.getincrementaldecoder(sys.stdin.encoding or "utf-8")("replace")
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            if not deliver(line + "\n" for line in lines):
                return
            if not chunk:
                deliver([pending, None] if pending else [None])
                return

    threading.Thread(target=read, name="console-input", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line
