"""The Slack app manifest asks for exactly what the adapter uses."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.conftest import REPO

MANIFEST = REPO / "config" / "slack-manifest.yml"
ADAPTER = REPO / "src" / "prepbot" / "platforms" / "slack" / "adapter.py"
SCOPES_FOR_METHOD = {
    "chat_postMessage": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_update": {"chat:write"},
    "views_open": set(),  # a modal needs no scope, only the press's trigger_id
    "reactions_add": {"reactions:write"},
    "conversations_replies": {"channels:history", "groups:history"},
    "users_info": {"users:read"},
    # files_upload_v2 calls files.getUploadURLExternal, then files.completeUploadExternal.
    "files_upload_v2": {"files:write"},
    "files_getUploadURLExternal": {"files:write"},
    "files_completeUploadExternal": {"files:write"},
    "auth_test": set(),
}


def called_methods(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        call.func.attr
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Attribute)
        and call.func.value.attr == "client"
        and isinstance(call.func.value.value, ast.Name)
        and call.func.value.value.id == "self"  # self.client.<Web API method>(...)
    }


def test_the_manifest_has_the_command_events_and_exactly_the_scopes_used():
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/prep"
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True  # the Answer button
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "message.channels",
        "message.groups",
    }
    methods = called_methods(ADAPTER)
    assert methods <= set(SCOPES_FOR_METHOD), f"a new Web API call needs a scope: {methods}"
    needed = {"commands"}.union(*(SCOPES_FOR_METHOD[m] for m in methods))
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
