"""Dependencies point inward: the platform-neutral core imports no chat platform or database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prepbot"
FORBIDDEN = {
    "content": {"slack_bolt", "slack_sdk", "discord", "sqlalchemy", "prepbot.store"},
    "core": {
        "slack_bolt",
        "slack_sdk",
        "discord",
        "sqlalchemy",
        "prepbot.store",
        "prepbot.services",
    },
    "services": {"slack_bolt", "slack_sdk", "discord", "prepbot.platforms"},
    "store": {"slack_bolt", "slack_sdk", "discord", "prepbot.services", "prepbot.platforms"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_it_must_not(layer: str):
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = {
            name
            for name in imports_of(path)
            for banned in FORBIDDEN[layer]
            if name == banned or name.startswith(banned + ".")
        }
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_every_module_starts_with_a_docstring():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.relative_to(PACKAGE)} has no module docstring"
