"""Footprint benchmark: CLI start-up, checking a large pack, and the idle bot's memory.

Run: python3 benchmarks/footprint.py [--runs N] [--idle SECONDS] [--write docs/benchmarks.md]
Each figure is compared with a baseline measured in the same run (a bare `python3 -c pass`
for start-up and for memory; the pack's file count for checks), so a noisy shared machine
shifts both. The memory figure runs `prepbot run` connected to Slack and Discord fakes on
127.0.0.1 (tests/slack_fake.py, tests/discord_fake.py); nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.discord_fake import FakeDiscord
from tests.loopback import free_port
from tests.slack_fake import FakeSlack

from benchmarks.report import machine, write_section

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "content" / "scenarios"


def timed(command: list[str], runs: int) -> float:
    """Return the median wall time of a command over ``runs`` runs, in seconds."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def make_pack(folder: Path, count: int) -> None:
    """Write ``count`` valid scenario files, copies of the built-in ones under new ids."""
    files = sorted(SCENARIOS.glob("*.yaml"))
    shutil.copy(REPO / "content" / "topics.yaml", folder / "topics.yaml")
    for index in range(count):
        source = files[index % len(files)]
        new_id = f"{source.stem}-{index}"
        text = re.sub(r"^id: .*$", f"id: {new_id}", source.read_text(), flags=re.M)
        (folder / f"{new_id}.yaml").write_text(text)


SLACK_BOT = "xoxb-1-2-benchmarkbot"
SLACK_APP = "xapp-1-A1-3-benchmarkapp"
DISCORD_TOKEN = "MTAwMQ.benchmark.discordtoken"
GUILD = 900001


def resident_kib(pid: int) -> int:
    """Return a process's resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def idle_python_kib(seconds: float) -> int:
    """Return the resident memory of a bare interpreter that only sleeps (the baseline)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import time; time.sleep({seconds + 5})"
    )
    try:
        await asyncio.sleep(seconds)
        return resident_kib(process.pid)
    finally:
        process.kill()
        await process.wait()


async def idle_bot_kib(prepbot: str, seconds: float) -> int:
    """Run `prepbot run` with Slack and Discord connected to fakes; return its idle RSS."""
    async with (
        FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP) as slack,
        FakeDiscord(token=DISCORD_TOKEN) as discord,
    ):
        discord.add_guild(GUILD, "Bench Guild", owner_id=1)
        discord.add_text_channel(GUILD, 900002, "study")
        port = free_port()
        with tempfile.TemporaryDirectory() as folder:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")} | {
                "PREPBOT_DATABASE__URL": f"sqlite:///{folder}/prepbot.db",
                "PREPBOT_SLACK__BOT_TOKEN": SLACK_BOT,
                "PREPBOT_SLACK__APP_TOKEN": SLACK_APP,
                "PREPBOT_SLACK__API_URL": slack.api_url,
                "PREPBOT_DISCORD__TOKEN": DISCORD_TOKEN,
                "PREPBOT_DISCORD__API_URL": discord.api_base,
                "PREPBOT_DISCORD__GATEWAY_URL": discord.gateway_url,
                "PREPBOT_DISCORD__GUILD_IDS": f"[{GUILD}]",
                "PREPBOT_HTTP__PORT": str(port),
            }
            process = await asyncio.create_subprocess_exec(
                prepbot,
                "run",
                env=env,
                cwd=folder,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await slack.wait_for_socket(timeout=60)
                await discord.wait_ready(timeout=60)
                await wait_healthy(port)
                await asyncio.sleep(seconds)  # idle: connected, nothing to do
                assert process.returncode is None, "prepbot run exited"
                return resident_kib(process.pid)
            finally:
                process.terminate()
                await process.wait()


async def wait_healthy(port: int, timeout: float = 60) -> None:
    """Wait until /healthz says both platforms are connected."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as reply:
                    body = await reply.json()
                    if reply.status == 200 and all(
                        body["checks"][name]["ok"] for name in ("slack", "discord")
                    ):
                        return
            except (aiohttp.ClientError, KeyError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("prepbot run never reported both platforms connected")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--idle", type=float, default=10, help="Seconds idle before measuring.")
    parser.add_argument("--write", type=Path, help="Write the results table to this file.")
    args = parser.parse_args()
    prepbot = shutil.which("prepbot") or sys.exit("install prepbot first: pip install -e .")

    baseline = timed([sys.executable, "-c", "pass"], args.runs)
    rows = [("`python3 -c pass` (baseline)", f"{baseline:.3f} s", "—", "—")]
    help_time = timed([prepbot, "--help"], args.runs)
    rows.append(
        (
            "`prepbot --help`",
            f"{help_time:.3f} s",
            f"{help_time / baseline:.1f}x baseline",
            "< 0.5 s",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        pack = Path(tmp)
        make_pack(pack, 1000)
        check = timed([prepbot, "content", "check", str(pack)], args.runs)
        rows.append(
            (
                "`prepbot content check` of 1,000 files",
                f"{check:.3f} s",
                f"{check / 1000 * 1e3:.2f} ms/file",
                "< 2 s",
            )
        )
    bare = asyncio.run(idle_python_kib(args.idle))
    bot = asyncio.run(idle_bot_kib(prepbot, args.idle))
    rows.append(("idle `python3` resident memory (baseline)", f"{bare / 1024:.1f} MiB", "—", "—"))
    rows.append(
        (
            f"`prepbot run`, Slack + Discord connected, idle {args.idle:.0f} s: resident memory",
            f"{bot / 1024:.1f} MiB",
            f"{bot / bare:.1f}x baseline",
            "< 150 MB (143 MiB)",
        )
    )

    lines = [
        "## Footprint",
        "",
        f"Command: `python3 benchmarks/footprint.py --runs {args.runs} --idle {args.idle:.0f}` on "
        f"{machine()}; times are the median of {args.runs} runs, memory is VmRSS in MiB.",
        "",
        "| what | measured | relative | target |",
        "| --- | --- | --- | --- |",
        *(f"| {name} | {value} | {rel} | {target} |" for name, value, rel, target in rows),
        "",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, "Footprint", lines)


if __name__ == "__main__":
    main()
