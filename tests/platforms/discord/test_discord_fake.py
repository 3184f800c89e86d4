"""The Discord fake drives the real discord.py client over loopback and answers like Discord."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.discord_fake import FakeDiscord

GUILD, OWNER, ALICE, BOB, HELPER_BOT = 100, 500, 501, 502, 503
TEXT, FORUM = 2000, 3000


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.add_guild(GUILD, "Prep Guild", owner_id=OWNER)
        server.add_member(GUILD, ALICE, "alice")
        server.add_member(GUILD, BOB, "bob", manage_guild=True)
        server.add_member(GUILD, HELPER_BOT, "helper", bot=True)
        server.add_text_channel(GUILD, TEXT, "prep")
        server.add_forum_channel(GUILD, FORUM, "prep-forum")
        yield server


def intents(*, members: bool = False, content: bool = True) -> discord.Intents:
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.message_content = content
    chosen.members = members
    return chosen


class Recorder(discord.Client):
    """A client that records the events the tests look at."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("intents", intents())
        super().__init__(guild_ready_timeout=0.05, **options)
        self.messages: list[discord.Message] = []
        self.edits: list[discord.RawMessageUpdateEvent] = []
        self.deletes: list[discord.RawMessageDeleteEvent] = []
        self.resumed = 0

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        self.edits.append(payload)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.deletes.append(payload)

    async def on_resumed(self) -> None:
        self.resumed += 1

    def received(self, message_id: int | str) -> discord.Message | None:
        return next((m for m in self.messages if m.id == int(message_id)), None)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py sleeps 5 s before every re-IDENTIFY otherwise


def text_channel(client: discord.Client) -> discord.TextChannel:
    channel = client.get_channel(TEXT)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_client_logs_in_and_sees_the_guild(fake):
    client = Recorder()
    async with fake.connected(client):
        assert client.user is not None
        assert client.user.id == fake.bot_user_id
        guild = client.get_guild(GUILD)
        assert guild is not None
        assert guild.name == "Prep Guild"
        assert guild.owner_id == OWNER
        assert guild.me is not None
        assert isinstance(client.get_channel(TEXT), discord.TextChannel)
        forum = client.get_channel(FORUM)
        assert isinstance(forum, discord.ForumChannel)
        assert forum.name == "prep-forum"
        assert client.application_id == fake.application_id
        await fake.wait_for(lambda: client.latency != float("inf"))  # heartbeat acknowledged

    assert fake.identifies == 1
    assert fake.heartbeats >= 1
    [query] = fake.gateway_queries
    assert query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    [me] = fake.calls_to("GET", "/users/@me")
    assert me.headers["Authorization"] == "Bot bot-token"
    assert fake.calls_to("GET", "/oauth2/applications/@me")
    identify = next(p for p in fake.gateway_received if p["op"] == 2)
    assert identify["d"]["intents"] == intents().value


async def test_send_thread_and_member_messages(fake):
    client = Recorder()
    async with fake.connected(client):
        embed = discord.Embed(title="Q1", description="Which model do you choose?")
        sent = await text_channel(client).send(embed=embed)
        assert isinstance(sent, discord.Message)
        assert sent.embeds[0].title == "Q1"
        [call] = fake.calls_to("POST", rf"/channels/{TEXT}/messages")
        assert call.json["embeds"][0]["description"] == "Which model do you choose?"
        assert fake.messages[TEXT][0]["id"] == str(sent.id)

        thread = await sent.create_thread(name="Q1 answers", auto_archive_duration=1440)
        assert isinstance(thread, discord.Thread)
        assert (thread.id, thread.parent_id, thread.name) == (sent.id, TEXT, "Q1 answers")
        assert fake.threads[thread.id]["type"] == 11
        await fake.wait_for(lambda: client.get_channel(thread.id) is not None)  # THREAD_CREATE

        first = await fake.member_message(thread.id, ALICE, "calibration first", guild_id=GUILD)
        second = await fake.member_message(thread.id, BOB, "then accuracy", guild_id=GUILD)
        await fake.wait_for(lambda: client.received(second["id"]) is not None)
        got = client.received(first["id"])
        assert got is not None
        assert got.content == "calibration first"
        assert got.author.id == ALICE
        assert got.author.display_name == "alice"
        assert not got.author.bot
        assert isinstance(got.channel, discord.Thread)
        assert got.channel.id == thread.id
        echoed = client.received(sent.id)  # Discord echoes the bot's own messages too
        assert echoed is not None
        assert echoed.author.bot

        history = [m async for m in thread.history(limit=None, oldest_first=True)]
        assert [m.content for m in history] == ["calibration first", "then accuracy"]

        await fake.member_edit(thread.id, int(first["id"]), "calibration, edited", guild_id=GUILD)
        await fake.wait_for(lambda: bool(client.edits))
        [edit] = client.edits
        assert edit.message_id == int(first["id"])
        assert edit.data["content"] == "calibration, edited"
        assert edit.data["author"]["id"] == str(ALICE)

        await fake.member_delete(thread.id, int(first["id"]), guild_id=GUILD)
        await fake.wait_for(lambda: bool(client.deletes))
        [delete] = client.deletes
        assert (delete.message_id, delete.channel_id, delete.guild_id) == (
            int(first["id"]),
            thread.id,
            GUILD,
        )
        assert [m["content"] for m in fake.messages[thread.id]] == ["then accuracy"]


async def test_forum_post_is_a_thread_with_its_first_message(fake):
    client = Recorder()
    async with fake.connected(client):
        forum = client.get_channel(FORUM)
        assert isinstance(forum, discord.ForumChannel)
        created = await forum.create_thread(name="Q2", embed=discord.Embed(title="Q2"))
        assert isinstance(created.thread, discord.Thread)
        assert created.thread.id == created.message.id
        assert created.message.embeds[0].title == "Q2"
        assert fake.threads[created.thread.id]["parent_id"] == str(FORUM)
        assert fake.messages[created.thread.id][0]["embeds"][0]["title"] == "Q2"
        fetched = await client.fetch_channel(created.thread.id)
        assert isinstance(fetched, discord.Thread)


async def test_rate_limit_is_waited_out_and_the_message_created_once(fake):
    client = Recorder()
    async with fake.connected(client):
        fake.fail_next("POST", rf"/channels/{TEXT}/messages", retry_after=0.2)
        message = await text_channel(client).send("hello")
        assert message.content == "hello"
    assert len(fake.calls_to("POST", rf"/channels/{TEXT}/messages")) == 2
    assert [m["content"] for m in fake.messages[TEXT]] == ["hello"]


async def test_channel_errors_raise_discords_exceptions(fake):
    client = Recorder()
    async with fake.connected(client):
        channel = text_channel(client)
        fake.channel_errors[TEXT] = (404, 10003, "Unknown Channel")
        with pytest.raises(discord.NotFound) as missing:
            await channel.send("hello")
        assert missing.value.code == 10003
        fake.channel_errors[TEXT] = (403, 50001, "Missing Access")
        with pytest.raises(discord.Forbidden) as forbidden:
            await channel.send("hello")
        assert forbidden.value.code == 50001
        with pytest.raises(discord.NotFound):
            await client.fetch_channel(9999)
        del fake.channel_errors[TEXT]
        with pytest.raises(discord.HTTPException) as empty:
            await channel.send(embeds=[])
        assert empty.value.code == 50006
    assert fake.messages[TEXT] == []


async def test_slash_commands_reach_the_tree_and_answers_the_callback(fake):
    client = Recorder()
    tree = app_commands.CommandTree(client)
    prep = app_commands.Group(name="prep", description="Interview prep")
    seen: list[tuple[str, int, bool, Any]] = []

    async def topics(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f"{current}ibration", value="calibration")]

    @prep.command(name="join", description="Join the study group")
    @app_commands.autocomplete(topic=topics)
    async def join(interaction: discord.Interaction, topic: str) -> None:
        user = interaction.user
        assert isinstance(user, discord.Member)
        seen.append(("join", user.id, user.guild_permissions.manage_guild, topic))
        await interaction.response.send_message(f"joined {topic}", ephemeral=True)

    @prep.command(name="streak", description="A member's streak")
    async def streak(interaction: discord.Interaction, member: discord.Member) -> None:
        seen.append(("streak", interaction.user.id, False, member.display_name))
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("7 days", ephemeral=True)

    tree.add_command(prep, guild=discord.Object(GUILD))
    async with fake.connected(client):
        synced = await tree.sync(guild=discord.Object(GUILD))
        assert [c.name for c in synced] == ["prep"]
        [put] = fake.calls_to("PUT", rf"/applications/1000/guilds/{GUILD}/commands")
        assert [o["name"] for o in put.json[0]["options"]] == ["join", "streak"]

        admin = await fake.slash_command(
            GUILD, TEXT, BOB, "prep join", [{"name": "topic", "value": "calibration"}]
        )
        await fake.wait_for(lambda: bool(fake.interaction_responses(admin)))
        [callback] = fake.interaction_responses(admin)
        assert callback["kind"] == "callback"
        assert callback["json"]["type"] == 4
        assert callback["json"]["data"]["flags"] == 64
        assert callback["json"]["data"]["content"] == "joined calibration"

        member = await fake.slash_command(
            GUILD, TEXT, ALICE, "prep join", [{"name": "topic", "value": "drift"}]
        )
        await fake.wait_for(lambda: bool(fake.interaction_responses(member)))
        assert seen == [("join", BOB, True, "calibration"), ("join", ALICE, False, "drift")]

        choices = await fake.autocomplete(
            GUILD, TEXT, ALICE, "prep join", [{"name": "topic", "value": "cal"}], focused="topic"
        )
        await fake.wait_for(lambda: bool(fake.interaction_responses(choices)))
        [result] = fake.interaction_responses(choices)
        assert result["json"] == {
            "type": 8,
            "data": {"choices": [{"name": "calibration", "value": "calibration"}]},
        }

        deferred = await fake.slash_command(
            GUILD, TEXT, ALICE, "prep streak", [{"name": "member", "value": str(BOB)}]
        )
        await fake.wait_for(lambda: len(fake.interaction_responses(deferred)) == 2)
        first, followup = fake.interaction_responses(deferred)
        assert (first["kind"], first["json"]["type"], first["json"]["data"]) == (
            "callback",
            5,
            {"flags": 64},
        )
        assert followup["kind"] == "followup"
        assert followup["json"]["content"] == "7 days"
        assert followup["json"]["flags"] == 64
        # The first followup after a defer replaces the "thinking" message.
        assert followup["message_id"] == first["message_id"]
        assert seen[-1] == ("streak", ALICE, False, "bob")
    assert fake.messages[TEXT] == []  # ephemeral answers never reach the channel


async def test_a_dropped_connection_resumes_and_replays_missed_events(fake):
    client = Recorder()
    async with fake.connected(client):
        await fake.drop_connection()
        missed = await fake.member_message(TEXT, ALICE, "sent while away", guild_id=GUILD)
        await fake.wait_for(lambda: fake.resumes == 1 and client.resumed == 1)
        await fake.wait_for(lambda: client.received(missed["id"]) is not None)
        after = await fake.member_message(TEXT, BOB, "after the resume", guild_id=GUILD)
        await fake.wait_for(lambda: client.received(after["id"]) is not None)
        resume = next(p for p in fake.gateway_received if p["op"] == 6)
        assert resume["d"]["token"] == "bot-token"
    assert fake.identifies == 1
    assert fake.gateway_queries[1]["compress"] == "zlib-stream"


async def test_an_invalid_session_makes_the_client_identify_again(fake):
    client = Recorder()
    async with fake.connected(client):
        await fake.drop_connection(resumable=False)
        await fake.wait_for(lambda: fake.identifies == 2)
        await fake.wait_ready()
        message = await fake.member_message(TEXT, ALICE, "hello again", guild_id=GUILD)
        await fake.wait_for(lambda: client.received(message["id"]) is not None)
    assert fake.resumes == 0


async def test_without_the_content_intent_content_is_empty_unless_the_bot_is_mentioned(fake):
    client = Recorder(intents=intents(content=False))
    async with fake.connected(client):
        plain = await fake.member_message(TEXT, ALICE, "secret", guild_id=GUILD)
        mention = await fake.member_message(
            TEXT, ALICE, f"<@{fake.bot_user_id}> hi", guild_id=GUILD
        )
        await fake.wait_for(lambda: client.received(mention["id"]) is not None)
        got_plain = client.received(plain["id"])
        got_mention = client.received(mention["id"])
        assert got_plain is not None
        assert got_mention is not None
        assert got_plain.content == ""
        assert got_mention.content == f"<@{fake.bot_user_id}> hi"


async def test_members_intent_chunks_the_guild(fake):
    client = Recorder(intents=intents(members=True))
    async with fake.connected(client):
        guild = client.get_guild(GUILD)
        assert guild is not None
        assert guild.chunked
        alice = guild.get_member(ALICE)
        assert alice is not None
        assert alice.name == "alice"
        bob = guild.get_member(BOB)
        assert bob is not None
        assert bob.guild_permissions.manage_guild
    assert any(p["op"] == 8 for p in fake.gateway_received)


async def test_privileged_intents_not_enabled_close_the_gateway():
    async with FakeDiscord(privileged_intents=0) as server:
        client = Recorder()
        with pytest.raises(RuntimeError) as failed:
            async with server.connected(client):
                pass
        assert isinstance(failed.value.__cause__, discord.PrivilegedIntentsRequired)


async def test_wire_format_without_a_client(fake):
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": "Bot bot-token"}
        response = await session.get(fake.api_base + f"/channels/{TEXT}", headers=auth)
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["name"] == "prep"
        assert "X-RateLimit-Bucket" in response.headers

        response = await session.get(fake.api_base + "/users/@me")
        assert response.status == 401
        response = await session.get(fake.api_base + "/nowhere", headers=auth)
        assert response.status == 404
        assert await response.json() == {"message": "404: Not Found", "code": 0}

        fake.fail_next("GET", r"/gateway/bot", retry_after=0.25)
        response = await session.get(fake.api_base + "/gateway/bot", headers=auth)
        assert response.status == 429
        assert response.headers["Via"]
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert await response.json() == {
            "message": "You are being rate limited.",
            "retry_after": 0.25,
            "global": False,
        }
        response = await session.get(fake.api_base + "/gateway/bot", headers=auth)
        assert (await response.json())["url"] == fake.gateway_url

        async with session.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
            hello = await ws.receive_json()
            assert hello["op"] == 10
            await ws.send_json({"op": 1, "d": None})
            assert (await ws.receive_json())["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1}})
            closed = await ws.receive()
            assert closed.type == aiohttp.WSMsgType.CLOSE
            assert closed.data == 4004

        async with session.ws_connect(fake.gateway_url + "?compress=zlib-stream") as ws:
            frame = await ws.receive_bytes()
            assert frame.endswith(b"\x00\x00\xff\xff")
            assert json.loads(zlib.decompressobj().decompress(frame))["op"] == 10


async def test_dispatch_sends_raw_events_with_increasing_sequence(fake):
    client = Recorder()
    async with fake.connected(client):
        got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def on_socket_event_type(event: str) -> None:
            if event == "TYPING_START" and not got.done():
                got.set_result({})

        client.on_socket_event_type = on_socket_event_type  # type: ignore[attr-defined]
        await fake.dispatch(
            "TYPING_START",
            {
                "channel_id": str(TEXT),
                "guild_id": str(GUILD),
                "user_id": str(ALICE),
                "timestamp": 0,
            },
        )
        await asyncio.wait_for(got, 5)


async def test_a_public_defer_makes_the_first_followup_public(fake):
    client = Recorder()
    tree = app_commands.CommandTree(client)

    @tree.command(name="board", description="The leaderboard", guild=discord.Object(GUILD))
    async def board(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("private?", ephemeral=True)
        await interaction.followup.send("really private", ephemeral=True)

    async with fake.connected(client):
        await tree.sync(guild=discord.Object(GUILD))
        interaction = await fake.slash_command(GUILD, TEXT, ALICE, "board")
        await fake.wait_for(lambda: len(fake.interaction_responses(interaction)) == 3)
        [public] = fake.messages[TEXT]
        assert public["content"] == "private?"
        assert public["edited_timestamp"] is None
        assert public["flags"] == 0
        assert public["interaction_metadata"]["user"]["id"] == str(ALICE)
        await fake.wait_for(lambda: bool(client.edits))  # the loading message was filled in


async def test_world_changes_after_connecting_reach_the_client(fake):
    client = Recorder(intents=intents(members=True))
    async with fake.connected(client):
        fake.add_text_channel(GUILD, 2001, "late-channel")
        fake.add_member(GUILD, 504, "carol")
        fake.add_guild(101, "Second Guild", owner_id=OWNER)
        await fake.wait_for(lambda: client.get_guild(101) is not None)
        assert isinstance(client.get_channel(2001), discord.TextChannel)
        guild = client.get_guild(GUILD)
        assert guild is not None
        await fake.wait_for(lambda: guild.get_member(504) is not None)


async def test_archived_threads_reopen_when_the_bot_posts(fake):
    client = Recorder()
    async with fake.connected(client):
        sent = await text_channel(client).send("Q3")
        thread = await sent.create_thread(name="Q3")
        await fake.wait_for(lambda: client.get_channel(thread.id) is not None)
        await fake.archive_thread(thread.id)
        # discord.py drops archived threads from its cache; fetching still finds them.
        await fake.wait_for(lambda: client.get_channel(thread.id) is None)
        fetched = await client.fetch_channel(thread.id)
        assert isinstance(fetched, discord.Thread)
        assert fetched.archived
        await fetched.send("reveal")
        assert not fake.threads[thread.id]["thread_metadata"]["archived"]
        await fake.wait_for(lambda: client.get_channel(thread.id) is not None)
        await fake.archive_thread(thread.id)
        edited = await thread.edit(archived=False)
        assert not edited.archived
        [patch] = fake.calls_to("PATCH", rf"/channels/{thread.id}")
        assert patch.json == {"archived": False}
