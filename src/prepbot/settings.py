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
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

if TYPE_CHECKING:
    from prepbot.core.schedule import Schedule

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

    @field_validator("packs")
    @classmethod
    def _packs_exist(cls, packs: list[Path]) -> list[Path]:
        missing = [str(p) for p in packs if not p.is_dir()]
        if missing:
            raise ValueError(f"no such content folder: {', '.join(missing)}")
        return packs

    def pack_paths(self) -> list[Path]:
        """Return the pack folders to load, built-in first."""
        from prepbot.content.loader import builtin_pack_path

        builtin = [builtin_pack_path()] if self.builtin else []
        return [*builtin, *self.packs]


class DatabaseSettings(BaseModel):
    """Where prepbot keeps its state."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        default="sqlite:///prepbot.db",
        description="sqlite:///FILE (embedded, one process) or postgresql://USER@HOST/DB.",
    )
    keep_answer_text_days: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Empty each answer's text this many days after its round's reveal; who answered, "
            "on time or late, points and streaks stay. Unset keeps the text."
        ),
    )

    @field_validator("url")
    @classmethod
    def _supported(cls, url: str) -> str:
        from prepbot.store.db import async_url

        try:
            async_url(url)
        except Exception as error:
            raise ValueError(str(error)) from None
        return url


class ScheduleSettings(BaseModel):
    """The schedule a new study group starts with."""

    model_config = ConfigDict(extra="forbid")

    post_at: str = Field(default="09:00", description="Local time of the daily question.")
    timezone: str = Field(default="UTC", description="IANA time zone of new study groups.")
    weekdays: str = Field(default="mon-fri", description="Days with a question.")
    reveal_at: str = Field(default="17:00", description="Local time of the reveal.")

    def schedule(self) -> Schedule:
        """Return these defaults as a schedule."""
        from prepbot.core.schedule import Schedule, parse_time, parse_timezone, parse_weekdays

        return Schedule(
            post_at=parse_time(self.post_at),
            timezone=parse_timezone(self.timezone).key,
            weekdays=parse_weekdays(self.weekdays),
            reveal_at=parse_time(self.reveal_at),
        )

    @field_validator("post_at", "reveal_at")
    @classmethod
    def _time(cls, value: str) -> str:
        from prepbot.core.schedule import parse_time

        parse_time(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from prepbot.core.schedule import parse_timezone

        return parse_timezone(value).key

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: str) -> str:
        from prepbot.core.schedule import parse_weekdays

        parse_weekdays(value)
        return value


class SchedulerSettings(BaseModel):
    """How the scheduler catches up and hands over between replicas."""

    model_config = ConfigDict(extra="forbid")

    catch_up_minutes: int = Field(
        default=120,
        ge=0,
        le=24 * 60,
        description="A post missed by less than this is posted late at start-up; older is skipped.",
    )
    takeover_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="With replicas on PostgreSQL, a standby takes over within this time.",
    )


class SlackSettings(BaseModel):
    """How prepbot connects to a Slack workspace (create the app from config/slack-manifest.yml)."""

    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr | None = Field(
        default=None, description="Bot token (xoxb-…), from OAuth & Permissions."
    )
    app_token: SecretStr | None = Field(
        default=None,
        description="App-level token (xapp-…) with connections:write, for Socket Mode.",
    )
    signing_secret: SecretStr | None = Field(
        default=None, description="Signing secret, from Basic Information; for HTTP mode."
    )
    mode: Literal["socket", "http"] = Field(
        default="socket", description="socket (no public URL needed) or http (Events API)."
    )
    api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL (proxies, tests)."
    )
    http_host: str = Field(default="0.0.0.0", description="HTTP mode: address to listen on.")
    http_port: int = Field(default=3000, ge=0, le=65535, description="HTTP mode: port.")
    http_path: str = Field(default="/slack/events", description="HTTP mode: request path.")
    messages_per_minute_per_workspace: int = Field(
        default=300,
        ge=1,
        description="Pace chat.postMessage to this many messages a minute in each workspace.",
    )
    reactions_per_minute: int = Field(
        default=50,
        ge=1,
        description=(
            "React to answers at most this many times a minute in each workspace (reactions.add "
            "is Slack's Tier 3, 50+ a minute); past a backlog, an answer gets no reaction."
        ),
    )
    request_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=600,
        description="Give up on a Web API call Slack has not answered in this long.",
    )
    admin_ids: list[str] = Field(
        default_factory=list, description="Member ids that may run admin commands besides admins."
    )
    admin_recheck_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Ask Slack again whether a member is an admin once this old (0: every time).",
    )

    @property
    def configured(self) -> bool:
        """Say whether Slack credentials were given."""
        return self.bot_token is not None

    @model_validator(mode="after")
    def _tokens_for_mode(self) -> SlackSettings:
        if self.bot_token is None:
            return self
        if not self.bot_token.get_secret_value().startswith("xoxb-"):
            raise ValueError("slack.bot_token must be a bot token (xoxb-…)")
        if self.mode == "socket" and self.app_token is None:
            raise ValueError(
                "Socket Mode needs slack.app_token (xapp-…, PREPBOT_SLACK__APP_TOKEN); "
                "or set slack.mode = 'http' with a signing secret"
            )
        if self.mode == "http" and self.signing_secret is None:
            raise ValueError("HTTP mode needs slack.signing_secret (PREPBOT_SLACK__SIGNING_SECRET)")
        if not self.api_url.endswith("/"):
            self.api_url += "/"
        return self


class DiscordSettings(BaseModel):
    """How prepbot connects to Discord (see `prepbot discord invite-url`)."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = Field(
        default=None, description="Bot token, from the Developer Portal."
    )
    application_id: int | None = Field(
        default=None, description="Application id, for `prepbot discord invite-url`."
    )
    api_url: str = Field(
        default="https://discord.com/api/v10", description="Discord REST base URL (tests)."
    )
    gateway_url: str = Field(
        default="wss://gateway.discord.gg/", description="Discord gateway URL (tests)."
    )
    guild_ids: list[int] = Field(
        default_factory=list,
        description="Sync /prep to these servers at once; empty = globally (may take a while).",
    )
    thread_archive_minutes: Literal[60, 1440, 4320, 10080] = Field(
        default=1440, description="How long a question's thread stays open without messages."
    )
    request_timeout_seconds: float = Field(
        default=30,
        gt=0,
        le=600,
        description="Give up on a REST call Discord has not answered in this long "
        "(rate-limit waits not counted).",
    )
    admin_ids: list[int] = Field(
        default_factory=list,
        description="Member ids that may run admin commands besides Manage Server.",
    )

    @property
    def configured(self) -> bool:
        """Say whether a Discord token was given."""
        return self.token is not None


class HttpSettings(BaseModel):
    """The health and metrics endpoint."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Serve /healthz and /metrics while running.")
    host: str = Field(
        default="127.0.0.1", description="Address to listen on (0.0.0.0 in a container)."
    )
    port: int = Field(default=8080, ge=0, le=65535, description="Port (0 picks a free one).")
    public_url: str | None = Field(
        default=None,
        description=(
            "The address members reach this server at (e.g. https://prep.example.com), for "
            "the web archive's links; without it, http://<host>:<port>."
        ),
    )

    def base_url(self) -> str:
        """Return the public base URL of the web pages, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


class LogSettings(BaseModel):
    """How prepbot logs."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["text", "json"] = Field(default="text", description="text or json lines.")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")


class DeclaredSubscription(BaseModel):
    """A study group kept in the config file (for teams that keep configuration in git)."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["slack", "discord"]
    community: str = Field(description="Slack team id (T…) or Discord server id.")
    channel: str = Field(description="Channel id (C… on Slack, a number on Discord).")
    schedule: str = Field(
        default="",
        description="What follows /prep subscribe, e.g. '09:00 Europe/London mon-fri llm rag'.",
    )

    @field_validator("schedule")
    @classmethod
    def _grammar(cls, schedule: str) -> str:
        from prepbot.core.commands import CommandError, Subscribe, parse_prep

        try:
            command = parse_prep(f"subscribe {schedule}")
        except CommandError as error:
            raise ValueError(str(error).split(" Usage:")[0]) from None
        assert isinstance(command, Subscribe)
        return schedule


class ConsoleSettings(BaseModel):
    """The terminal study group."""

    model_config = ConfigDict(extra="forbid")

    member: str = Field(default="me", description="Who you are until you type /as NAME.")


class GradingSettings(BaseModel):
    """How answers are graded at the reveal: the rubric grader, or an LLM in front of it."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["rubric", "llm"] = Field(
        default="rubric",
        description=(
            "rubric (on this machine) or llm (an OpenAI-compatible endpoint, the rubric grader "
            "as its fallback)."
        ),
    )
    llm_base_url: HttpUrl | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1.",
    )
    llm_model: str | None = Field(default=None, description="Model name the endpoint knows.")
    llm_api_key: SecretStr | None = Field(
        default=None, description="API key, sent as a Bearer token (none for a local server)."
    )
    deadline_seconds: float = Field(
        default=4.0,
        ge=0.5,
        le=10,
        description="Answers the LLM has not graded in this long are graded by the rubric.",
    )
    max_concurrency: int = Field(
        default=4, ge=1, le=64, description="At most this many requests to the LLM at a time."
    )

    @model_validator(mode="after")
    def _llm_needs_endpoint(self) -> GradingSettings:
        if self.mode != "llm":
            return self
        missing = [
            f"grading.{name} (PREPBOT_GRADING__{name.upper()})"
            for name in ("llm_base_url", "llm_model")
            if not getattr(self, name)
        ]
        if missing:
            raise ValueError(f"grading.mode = 'llm' needs {' and '.join(missing)}")
        return self


class Settings(BaseSettings):
    """Everything prepbot can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        env_ignore_empty=True,
        nested_model_default_partial_update=True,
    )

    content: ContentSettings = Field(default_factory=ContentSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    grading: GradingSettings = Field(default_factory=GradingSettings)
    subscriptions: list[DeclaredSubscription] = Field(default_factory=list)
    require_platform: bool = Field(
        default=False,
        description="Refuse to start without Slack or Discord (no terminal fallback).",
    )

    def secrets(self) -> list[str]:
        """Return every secret value configured, to keep them out of logs."""
        values = [self.slack.bot_token, self.slack.app_token, self.slack.signing_secret]
        values.append(self.discord.token)
        values.append(self.grading.llm_api_key)
        found = [v.get_secret_value() for v in values if v is not None]
        from sqlalchemy.engine import make_url

        try:
            password = make_url(self.database.url).password
        except Exception:  # an unparsable URL has no password to hide
            password = None
        return [*found, *([str(password)] if password else [])]

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


def _read_secret_files() -> None:
    """Load ``PREPBOT_X_FILE=/run/secrets/x`` into ``PREPBOT_X`` (Docker/Kubernetes secrets)."""
    for name, path in list(os.environ.items()):
        if not (name.startswith(ENV_PREFIX) and name.endswith("_FILE")) or name == CONFIG_ENV:
            continue
        target = name.removesuffix("_FILE")
        try:
            os.environ[target] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SettingsError(
                [f"setting {target} from {name}: cannot read {path}: {error.strerror}"]
            ) from None
        del os.environ[name]


class SettingsError(Exception):
    """Settings that cannot be used, described setting by setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings() -> Settings:
    """Read the settings, or raise SettingsError naming each bad setting and what is wrong."""
    _read_secret_files()
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
