"""Settings: one typed object read from ``config/prepbot.toml`` and ``PREPBOT_*`` variables.

Environment variables win over the file; nested groups use a double underscore
(``PREPBOT_CONTENT__PACKS``). The config file is ``$PREPBOT_CONFIG`` if set, else
``config/prepbot.toml`` in the working directory when it exists. Nothing is read at import
time. Imports no database and no chat platform.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "PREPBOT_"
CONFIG_ENV = "PREPBOT_CONFIG"
DEFAULT_CONFIG = Path("config/prepbot.toml")


class ContentSettings(BaseModel):
    """Which content packs the bot loads."""

    model_config = ConfigDict(extra="forbid")

    builtin: bool = Field(default=True, description="Load the built-in question bank.")
    packs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Extra pack folders (a team's own questions), loaded after the built-in one.",
    )

    @field_validator("packs", mode="before")
    @classmethod
    def _split_packs(cls, value: Any) -> Any:
        """Accept a JSON list or a comma-separated string, as typed in an environment variable."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    def pack_paths(self) -> list[Path]:
        """Return the pack folders to load, built-in first."""
        from prepbot.content.loader import builtin_pack_path

        builtin = [builtin_pack_path()] if self.builtin else []
        return [*builtin, *self.packs]


class Settings(BaseSettings):
    """Everything prepbot can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    content: ContentSettings = Field(default_factory=ContentSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init arguments, then the environment, then the TOML file."""
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
        )


def config_file() -> Path | None:
    """Return the TOML file settings are read from, if there is one."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


class SettingsError(Exception):
    """Settings that cannot be used, described setting by setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings() -> Settings:
    """Read the settings, or raise SettingsError naming each bad setting and what is wrong."""
    path = config_file()
    if path is not None and not path.is_file():
        raise SettingsError([f"config file {path} (from ${CONFIG_ENV}) does not exist"])
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for detail in error.errors():
            name = ".".join(str(p) for p in detail["loc"])
            env_name = ENV_PREFIX + "__".join(str(p) for p in detail["loc"]).upper()
            message = (
                "unknown setting"
                if detail["type"] == "extra_forbidden"
                else str(detail["msg"]).removeprefix("Value error, ")
            )
            problems.append(f"setting {name} ({env_name}): {message}")
        raise SettingsError(problems) from None
    except (ValueError, OSError) as error:
        where = f" in {path}" if path else ""
        raise SettingsError([f"cannot read settings{where}: {error}"]) from None
