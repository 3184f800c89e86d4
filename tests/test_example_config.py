"""The example configuration documents every setting, with its environment variable."""

from __future__ import annotations

import tomllib

from pydantic import BaseModel

from prepbot.settings import Settings
from tests.conftest import REPO

EXAMPLE = REPO / "config" / "prepbot.example.toml"


def settings_of(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """Return (dotted name, environment variable) for every leaf setting."""
    found = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and name != "subscriptions"
        ):
            found += settings_of(annotation, f"{dotted}.")
        else:
            found.append((dotted, "PREPBOT_" + dotted.upper().replace(".", "__")))
    return found


def test_every_setting_is_documented_with_its_environment_variable():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "[[subscriptions]]" in text
    for dotted, env in settings_of(Settings):
        if dotted == "subscriptions":
            continue
        key = dotted.rsplit(".", 1)[-1]
        assert f"{key} =" in text, f"{dotted} is not in the example config"
        assert env in text, f"{env} is not mentioned in the example config"


def test_the_example_config_is_valid_as_it_stands():
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    settings = Settings.model_validate(data)
    assert settings.database.url == "sqlite:///prepbot.db"
    assert not settings.slack.configured
