"""A study-group week played in the terminal, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from prepbot.app import iterate, run_console
from prepbot.settings import Settings
from prepbot.store.db import Database
from prepbot.store.models import Answer, Member, Reply, Round

THREE_DAYS = [
    "/as alice",
    "Ring all-reduce: each GPU talks only to its neighbours.",
    "/as bob",
    "A parameter server.",
    "/edit Ring all-reduce, about 2N per device.",
    "/prep reveal-now",
    "/as carol",
    "Sorry I'm late: all-reduce.",
    "/next-day",
    "/as alice",
    "Day two: it is the KV cache, not compute.",
    "/next-day",
    "/as alice",
    "Day three: check calibration, not accuracy.",
    "/prep reveal-now",
    "/prep leaderboard all",
]


def settings_for(url: str, packs: Path | None = None) -> Settings:
    content = {"builtin": False, "packs": [str(packs)]} if packs is not None else {}
    return Settings.model_validate(
        {"database": {"url": url}, "console": {"member": "me"}, "content": content}
    )


async def play(url: str, lines: list[str], packs: Path | None = None) -> str:
    out = io.StringIO()
    await run_console(settings_for(url, packs), iterate(lines), out)
    return out.getvalue()


def leaderboard_rows(output: str) -> list[tuple[str, int, int, int]]:
    """Return (member, on time, late, streak) rows of the last leaderboard printed."""
    board = output[output.rindex("🏆 Leaderboard") :]
    rows = re.findall(
        r"^\s*\d+\s+@(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", board, flags=re.M
    )  # member, on time, points, late, streak
    return [(name, int(on), int(late), int(streak)) for name, on, _, late, streak in rows]


async def answers_by_member(url: str) -> dict[tuple[str, int], tuple[str, bool]]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            rows = await session.execute(
                select(Member.display_name, Round.local_date, Answer.text, Answer.on_time)
                .join(Answer, Answer.member_id == Member.id)
                .join(Round, Round.id == Answer.round_id)
                .order_by(Round.local_date)
            )
            days = sorted({r[1] for r in rows.all()})
            rows = await session.execute(
                select(Member.display_name, Round.local_date, Answer.text, Answer.on_time)
                .join(Answer, Answer.member_id == Member.id)
                .join(Round, Round.id == Answer.round_id)
            )
            return {(n, days.index(d) + 1): (t, o) for n, d, t, o in rows.all()}
    finally:
        await db.close()


async def test_three_days_end_with_alice_ahead_of_bob(database_url: str):
    output = await play(database_url, THREE_DAYS)

    assert leaderboard_rows(output) == [
        ("alice", 3, 0, 3),
        ("bob", 1, 0, 0),
        ("carol", 0, 1, 0),
    ]
    reveals = output.split("💡 Reveal — ")[1:]
    assert len(reveals) == 3
    for reveal in reveals:
        assert "Key insights:" in reveal
        assert re.search(r"^Source: .+ — https?://\S+$", reveal, flags=re.M)
    assert "Answered on time: @alice, @bob" in reveals[0]
    assert "Answered on time: @alice —" in reveals[1]
    assert "late answer recorded (after the reveal: no streak credit)" in output

    answers = await answers_by_member(database_url)
    assert answers["bob", 1] == ("Ring all-reduce, about 2N per device.", True)
    assert answers["carol", 1] == ("Sorry I'm late: all-reduce.", False)
    assert answers["alice", 3] == ("Day three: check calibration, not accuracy.", True)
    assert len(answers) == 5


async def test_three_days_in_two_runs_give_the_same_leaderboard(database_url: str):
    half = THREE_DAYS.index("/next-day") + 1
    first = await play(database_url, THREE_DAYS[:half])
    second = await play(database_url, THREE_DAYS[half:])

    # A question posted to the channel (a weekly digest may be posted there too: on a
    # Thursday or Friday the three school days cross a weekend).
    posted = "── #study-group ──\n📅 Question of the day"
    assert first.count(posted) == 2  # days 1 and 2 posted
    assert second.count(posted) == 1  # day 2 is not posted again, only day 3
    assert second.count("📅 Question of the day") == 2  # day 2 shown again on restart, day 3
    assert "is already posted" in second
    assert leaderboard_rows(second) == [
        ("alice", 3, 0, 3),
        ("bob", 1, 0, 0),
        ("carol", 0, 1, 0),
    ]


async def test_bad_lines_get_usage_and_record_nothing(database_url: str):
    output = await play(
        database_url,
        [
            "/as alice",
            "/prep leaderbord",
            "/prep subscribe 25:00",
            "/prep show",
            "/prep streak @bob @carol",
            "/prep schedule",
            "/frobnicate now",
            "/as",
            "/as two words",
            "/edit",
            "/delete",
            "/next-day please",
            "/prep " + "x" * 600,
            "/prep leaderboard all",
        ],
    )
    assert "Unknown command `leaderbord`. Did you mean `/prep leaderboard" in output
    assert "'25:00' is not a time" in output
    assert "Usage: `/prep show <id>`" in output
    assert "Usage: `/prep streak [@member]`" in output
    assert "(say what to change)" in output
    assert "Unknown command `/frobnicate`" in output
    assert output.count("Usage: /as NAME") == 2
    assert "Usage: /edit TEXT" in output
    assert "alice has no reply to delete today" in output
    assert "Usage: /next-day" in output
    assert "too long" in output
    assert "No answers yet" in output
    assert "Traceback" not in output
    assert await answers_by_member(database_url) == {}


async def test_deleting_every_reply_withdraws_the_answer(database_url: str):
    output = await play(
        database_url,
        [
            "/as dana",
            "first thought",
            "second thought",
            "/delete",
            "/delete",
            "/prep reveal-now",
            "/prep streak",
        ],
    )
    assert "dana: reply deleted" in output
    assert "dana: answer withdrawn" in output
    assert "Nobody answered this one on time." in output
    assert "@dana: streak 0 (best 0), 0 on time, 0 late" in output


async def test_a_private_study_group_in_the_console_reveals_the_answers_it_kept(
    database_url: str,
):
    output = await play(
        database_url,
        [
            "/prep schedule answers=private",
            "/as alice",
            "/answer Ring all-reduce: each GPU talks only to its neighbours.",
            "/as bob",
            "/answer A parameter server.",
            "/answer Ring all-reduce, about 2N per device.",
            "/as carol",
            "/answer A tree.",
            "/answer --withdraw",
            "/as dave",
            "In the open: all-reduce.",
            "/prep reveal-now",
        ],
    )
    before, reveal = output.split("💡 Reveal", 1)
    for hidden in ("Ring all-reduce", "parameter server", "A tree", "2N per device"):
        assert hidden not in before  # nothing of a private answer shows before the reveal
    assert "hidden from everyone until the reveal" in before
    assert "Your answer is updated" in before
    assert "Your answer is withdrawn" in before
    assert "only @dave sees this" in before  # his thread reply is public: he is told, privately
    assert "🔓 The answers, private until now:" in reveal
    assert "@alice: Ring all-reduce: each GPU talks only to its neighbours." in reveal
    assert "@bob: Ring all-reduce, about 2N per device." in reveal
    assert "parameter server" not in reveal
    assert "@carol:" not in reveal
    assert reveal.count("@alice: Ring all-reduce") == 1
    answers = await answers_by_member(database_url)
    assert {name for name, _ in answers} == {"alice", "bob", "dave"}


async def test_admin_commands_work_from_the_console(database_url: str, seed_bank: Path):
    output = await play(  # a bank where one scenario is on calibration
        database_url,
        [
            "/prep schedule 08:15 Europe/London mon,wed,fri reveal=+6h calibration",
            "/prep pause",
            "/next-day",
            "/prep resume",
            "/prep post-now",
            "/prep today",
            "/prep topics",
            "/prep search calibraton",
            "/prep show apple-calibration-equal-accuracy",
            "/prep ask calibration",
            "/prep ask rag",
            "/prep help",
        ],
        packs=seed_bank,
    )
    assert "Schedule updated: 08:15 mon,wed,fri Europe/London, reveal 6h after posting" in output
    assert "topics calibration" in output
    assert "paused by an admin; no question today" in output
    assert "Posted today's question." in output or "already posted" in output
    assert "Same accuracy, different confidence" in output
    assert "1. Same accuracy, different confidence" in output  # search result
    # The only calibration question is today's, still open: no practice copy, no spoilers.
    assert "The only question on 'calibration' is open in #study-group" in output
    assert "🔒 This question is open in this community right now" in output
    assert "take the 99% one" not in output  # its trap
    assert "🧠 Practice question" in output  # on another topic
    assert "/prep reveal-now" in output  # admin help lists admin commands


async def test_replies_in_other_threads_and_bots_do_not_count(database_url: str):
    from prepbot.app import build_app
    from prepbot.core.clock import ManualClock
    from prepbot.core.events import Place, ThreadReply
    from prepbot.core.views import MemberRef
    from prepbot.platforms.console.platform import CHANNEL, COMMUNITY, PLATFORM
    from prepbot.services.answers import AnswerStatus

    await play(database_url, ["/as erin", "real answer"])
    clock = ManualClock(__import__("datetime").datetime.now(__import__("datetime").UTC))
    app = await build_app(settings_for(database_url), clock)
    try:
        place = Place(PLATFORM, COMMUNITY, CHANNEL)
        async with app.db.transaction() as session:
            thread = await session.scalar(select(Round.question_message_id))
        assert thread is not None
        erin = MemberRef("erin", "erin")
        answers = app.services.answers
        elsewhere = ThreadReply(place, "some-other-thread", "x1", erin, "hi", clock.now())
        bot = ThreadReply(place, thread, "x2", MemberRef("bot", "bot"), "hi", clock.now(), True)
        other_channel = ThreadReply(
            Place(PLATFORM, COMMUNITY, "random"), thread, "x3", erin, "hi", clock.now()
        )
        for event in (elsewhere, bot, other_channel):
            assert (await answers.record(event)).status is AnswerStatus.IGNORED
        async with app.db.transaction() as session:
            assert len((await session.scalars(select(Reply))).all()) == 1
    finally:
        await app.close()


def test_prepbot_run_plays_a_piped_script(database_url: str, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_DATABASE__URL"] = database_url
    done = subprocess.run(
        ["prepbot", "run"],
        input="\n".join(THREE_DAYS) + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert leaderboard_rows(done.stdout)[:2] == [("alice", 3, 0, 3), ("bob", 1, 0, 0)]
    assert done.stderr == ""


def test_prepbot_run_with_a_bad_database_url_says_so(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_DATABASE__URL"] = "mysql://nobody@127.0.0.1/x"
    done = subprocess.run(
        ["prepbot", "run"], input="", capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 2
    assert "setting database.url (PREPBOT_DATABASE__URL): unsupported database 'mysql'" in (
        done.stderr
    )


@pytest.mark.parametrize("command", [["db", "upgrade"]])
def test_db_upgrade_reports_the_revision(database_url: str, tmp_path: Path, command: list[str]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_DATABASE__URL"] = database_url
    done = subprocess.run(
        ["prepbot", *command], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("is at revision 0013")


def test_a_second_console_on_one_sqlite_file_is_refused(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_DATABASE__URL"] = f"sqlite:///{tmp_path / 'prepbot.db'}"
    first = subprocess.Popen(
        ["prepbot", "run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert first.stdout is not None
        assert "study group" in first.stdout.readline()  # the first one is up
        second = subprocess.run(
            ["prepbot", "run"], input="", capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert second.returncode == 2
        assert "already running on" in second.stderr
        assert "use PostgreSQL" in second.stderr
    finally:
        first.communicate(input="", timeout=30)
    assert first.returncode == 0


def asyncio_run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def console_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    return env | {"PREPBOT_DATABASE__URL": url}


class Terminal:
    """`prepbot run` in a pseudo-terminal, typed at as a person would."""

    def __init__(self, url: str, cwd: Path) -> None:
        import fcntl
        import struct
        import termios

        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        # No terminal emulator answers prompt_toolkit's cursor-position request here.
        env = console_env(url) | {"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.process = subprocess.Popen(
            ["prepbot", "run"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,  # the pseudo-terminal is its controlling terminal
        )
        os.close(slave)
        self.master = master
        self.screen = b""
        self.seen = 0

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Read what the program writes until ``text`` appears after what was awaited before."""
        import select

        wanted = text.encode()
        while wanted not in self.screen[self.seen :]:
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, f"no {text!r} on the terminal; it shows {self.screen[-600:]!r}"
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the program ended and closed the terminal
                chunk = b""
            assert chunk, f"the program ended before {text!r}: {self.screen[-600:]!r}"
            self.screen += chunk
        self.seen = self.screen.index(wanted, self.seen) + len(wanted)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def exit_code(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.drain()

    def drain(self) -> None:
        import select

        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminal(database_url: str, tmp_path: Path):
    opened = Terminal(database_url, tmp_path)
    yield opened
    opened.close()


PROMPT = "me>"  # the prompt names the current member


def test_arrow_keys_edit_the_line_and_ctrl_c_quits_keeping_the_answer(
    terminal: Terminal, database_url: str
):
    terminal.wait_for(PROMPT)
    terminal.type("Ring all-reduce\x1b[D\x1b[D\x1b[C\x1b[C\r")  # ←← →→ then Enter
    terminal.wait_for("↳ me: answer recorded")
    terminal.wait_for(PROMPT)
    terminal.type("\x03")  # Ctrl-C
    assert terminal.exit_code() == 0
    assert b"Bye! Your answers are saved" in terminal.screen
    assert b"Traceback" not in terminal.screen
    (answer,) = asyncio_run(answers_by_member(database_url)).values()
    assert answer[0] == "Ring all-reduce"


@pytest.mark.parametrize("keys", ["/quit\r", "/exit\r", "exit\r", "quit\r", "\x04"])
def test_quit_words_and_ctrl_d_end_the_terminal_session(
    terminal: Terminal, database_url: str, keys: str
):
    terminal.wait_for(PROMPT)
    terminal.type(keys)
    assert terminal.exit_code() == 0
    assert b"Bye! Your answers are saved" in terminal.screen
    assert b"Traceback" not in terminal.screen
    assert asyncio_run(answers_by_member(database_url)) == {}


def test_exit_ends_a_piped_session_and_is_not_an_answer(database_url: str, tmp_path: Path):
    done = subprocess.run(
        ["prepbot", "run"],
        input="/as alice\nmy answer\nexit\nthis line is never read\n",
        capture_output=True,
        text=True,
        env=console_env(database_url),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(
        "Bye! Your answers are saved; `prepbot run` continues where you stopped."
    )
    assert asyncio_run(answers_by_member(database_url)) == {("alice", 1): ("my answer", True)}


def test_ctrl_c_ends_a_piped_session_without_a_traceback(tmp_path: Path):
    import signal

    url = f"sqlite:///{tmp_path / 'prepbot.db'}"
    process = subprocess.Popen(
        ["prepbot", "run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=console_env(url),
        cwd=tmp_path,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write("my answer\n")
        process.stdin.flush()  # and keep the input open: the read is still waiting
        while "↳ me: answer recorded" not in process.stdout.readline():
            pass
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) in (0, 130)
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert asyncio_run(answers_by_member(url)) == {("me", 1): ("my answer", True)}


async def test_help_in_the_console_lists_quit(database_url: str):
    output = await play(database_url, ["/help"])
    assert "/quit (or Ctrl-C) quits" in output.split("Console:")[-1]


async def test_lookups_agree_with_each_other_and_forgive_topic_typos(database_url: str):
    output = await play(
        database_url,
        [
            "/as alice",
            "Ring all-reduce.",
            "/prep streak",
            "/prep leaderboard all",
            "/prep ask calibraton",
            "/prep ask LLM",
            "/prep reveal-now",
            "/prep post-now",
            "/prep today",
        ],
    )
    # The open round's answer counts in neither place until the reveal, and both say so.
    assert "@alice: streak 0 (best 0), 0 on time, 0 late (+1 answer counts at the reveal)" in output
    board = output[output.index("🏆 Leaderboard") : output.index("Unknown topic")]
    assert "No answers yet" in board
    assert "Answers to an open question count after its reveal." in board
    assert "Unknown topic 'calibraton'. Did you mean `calibration`?" in output
    assert "Large language models" in output[output.index("Unknown topic") :]  # ask LLM
    # After the reveal, post-now and today tell the same story.
    after = output[output.index("Revealed 1 question.") :]
    assert after.count("Today's question was already revealed") == 2
    nexts = re.findall(r"The next question comes (\w{3} \d+ \w{3} 09:00 UTC)\.", after)
    assert len(nexts) == 2
    assert nexts[0] == nexts[1]  # the console's day depends on today's date; both agree
    assert "already posted" not in after


async def test_schedule_topics_forgive_case_and_typos(database_url: str):
    output = await play(database_url, ["/prep schedule calibraton", "/prep schedule LLMs"])
    assert "Unknown topic: `calibraton` (did you mean `calibration`" in output
    assert "topics llm" in output.split("/prep schedule LLMs")[-1]


async def test_the_archive_in_the_terminal_points_to_the_export_not_a_dead_link(database_url: str):
    output = await play(database_url, ["/prep archive"])
    assert "the terminal has none. `prepbot export DIR`" in output
    assert "/archive/" not in output  # nothing in the terminal serves such a link
