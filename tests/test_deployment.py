"""The container files: Dockerfile, .dockerignore, docker-compose.yml, .env.example, deploy/.

Nothing here builds an image or starts a container (no Docker daemon is needed). The compose
file is validated by Debian's docker-compose v1 (``apt-get install -y --no-install-recommends
docker-compose``), the oldest tool it must work with, with and without its ``replicas``
profile; deploy/haproxy.cfg by Debian's haproxy (``haproxy -c``), which
tests/test_load_balancer.py also runs in front of real replicas.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
REPLICAS = "replicas"  # the compose profile of the load-balanced setup

# Slack bot/user/app tokens and Discord bot tokens; "xoxb-…" in a comment is not a token.
TOKEN_PATTERNS = [
    re.compile(r"\bxox[abprse]-[0-9A-Za-z]"),
    re.compile(r"\bxapp-[0-9A-Za-z]"),
    re.compile(r"\b[MNO][\w-]{23,}\.[\w-]{6}\.[\w-]{27,}"),
]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, written as a mapping or as a list of KEY=VALUE."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {key: value for key, _, value in (str(item).partition("=") for item in env)}
    return {key: str(value) for key, value in env.items()}


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def env_example_assignments() -> dict[str, str]:
    """The uncommented KEY=VALUE lines of .env.example."""
    found = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            found[key.strip()] = value
    return found


# --- docker-compose.yml ---------------------------------------------------------------------


def test_prepbot_healthcheck_targets_healthz(compose: dict[str, Any]):
    prepbot = compose["services"]["prepbot"]
    assert prepbot["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}
    command = healthcheck_command(prepbot)
    assert "/healthz" in command
    assert "127.0.0.1" in command
    assert "urllib" in command  # no curl in the slim image


def test_prepbot_waits_for_a_healthy_database(compose: dict[str, Any]):
    depends_on = compose["services"]["prepbot"]["depends_on"]
    assert isinstance(depends_on, dict), "the long form is needed for a condition"
    assert depends_on["db"] == {"condition": "service_healthy"}


def test_db_has_a_pg_isready_healthcheck_and_a_named_volume(compose: dict[str, Any]):
    db = compose["services"]["db"]
    assert db["image"].startswith("postgres:16")
    assert "pg_isready" in healthcheck_command(db)
    data_mounts = [
        str(v).split(":")[0]
        for v in db.get("volumes", [])
        if str(v).split(":")[1] == "/var/lib/postgresql/data"
    ]
    assert len(data_mounts) == 1
    assert data_mounts[0] in (compose.get("volumes") or {}), "declare the volume at top level"


def test_prepbot_requires_a_chat_platform(compose: dict[str, Any]):
    env = environment_of(compose["services"]["prepbot"])
    assert env["PREPBOT_REQUIRE_PLATFORM"].lower() == "true"


def test_prepbot_database_url_points_at_the_db_service(compose: dict[str, Any]):
    url = environment_of(compose["services"]["prepbot"])["PREPBOT_DATABASE__URL"]
    assert url.startswith("postgresql://")
    assert "@db:5432/" in url
    db_env = environment_of(compose["services"]["db"])
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert "${" + name in db_env[name], f"db's {name} should come from the env file"
        assert "${" + name in url, f"the database URL should use the same {name}"


def test_env_example_sets_every_variable_compose_reads():
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    assert used, "expected ${...} variables in docker-compose.yml"
    assert used <= set(env_example_assignments())


def test_env_example_leaves_tokens_empty():
    for key, value in env_example_assignments().items():
        if any(word in key for word in ("TOKEN", "SECRET")):
            assert value == "", f".env.example gives {key} a value"


@pytest.mark.parametrize("path", [COMPOSE, ENV_EXAMPLE], ids=lambda p: p.name)
def test_no_literal_secrets(path: Path):
    text = path.read_text(encoding="utf-8")
    for pattern in TOKEN_PATTERNS:
        assert not pattern.search(text), f"{path.name} contains something like a token"


def test_env_file_is_ignored_by_git():
    lines = {line.strip() for line in (REPO / ".gitignore").read_text().splitlines()}
    assert ".env" in lines


@pytest.mark.parametrize("profiles", [[], [REPLICAS]], ids=["default", REPLICAS])
def test_debian_docker_compose_accepts_the_file(tmp_path: Path, profiles: list[str]):
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose is not installed; install Debian's: "
            "apt-get install -y --no-install-recommends docker-compose"
        )
    # `env_file: .env` and `build: .` resolve next to the compose file.
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    (tmp_path / "deploy").mkdir()
    shutil.copy(HAPROXY_CFG, tmp_path / "deploy" / "haproxy.cfg")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POSTGRES_", "PREPBOT_", "COMPOSE_"))
    }
    flags = [word for profile in profiles for word in ("--profile", profile)]
    result = subprocess.run(
        [executable, "-f", "docker-compose.yml", *flags, "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


# --- the `replicas` profile: HAProxy in front of two prepbots (docs/replicas.md) ------------


def profiles_of(service: dict[str, Any]) -> list[str]:
    return list(service.get("profiles") or [])


def test_replicas_profile_adds_haproxy_and_a_replica_and_nothing_else(compose: dict[str, Any]):
    services = compose["services"]
    assert profiles_of(services["haproxy"]) == [REPLICAS]
    assert profiles_of(services["prepbot-replica"]) == [REPLICAS]
    # Without the profile, `up` starts what it always did.
    assert not profiles_of(services["db"])
    assert not profiles_of(services["prepbot"])
    assert {name for name, s in services.items() if not profiles_of(s)} == {"db", "prepbot"}


def test_replicas_share_one_database_and_one_configuration(compose: dict[str, Any]):
    prepbot, replica = compose["services"]["prepbot"], compose["services"]["prepbot-replica"]
    assert environment_of(replica) == environment_of(prepbot)
    assert "@db:5432/" in environment_of(replica)["PREPBOT_DATABASE__URL"]
    assert replica["env_file"] == prepbot["env_file"]
    assert replica["image"] == prepbot["image"]
    assert replica["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert replica["healthcheck"] == prepbot["healthcheck"]
    assert not replica.get("ports"), "only haproxy receives Slack's requests"


def test_haproxy_mounts_the_config_read_only(compose: dict[str, Any]):
    haproxy = compose["services"]["haproxy"]
    assert haproxy["image"].startswith("haproxy:2.")
    mounts = [str(volume).split(":") for volume in haproxy["volumes"]]
    assert ["./deploy/haproxy.cfg", "/usr/local/etc/haproxy/haproxy.cfg", "ro"] in mounts
    assert HAPROXY_CFG.is_file()


def test_haproxy_targets_each_replica_where_it_serves(
    compose: dict[str, Any], dockerfile: list[tuple[str, str]]
):
    from prepbot.settings import SlackSettings

    env = environment_of(compose["services"]["haproxy"])
    slack_port = SlackSettings().http_port  # the replicas set no PREPBOT_SLACK__HTTP_PORT
    health_port = image_environment(dockerfile)["PREPBOT_HTTP__PORT"]
    for n, service in enumerate(["prepbot", "prepbot-replica"], 1):
        assert env[f"LB_REPLICA{n}"] == f"{service}:{slack_port}"
        assert env[f"LB_REPLICA{n}_HEALTH_PORT"] == health_port
    read = set(re.findall(r"\$\{(LB_[A-Z0-9_]+)-", HAPROXY_CFG.read_text(encoding="utf-8")))
    assert set(env) <= read, "compose sets a variable deploy/haproxy.cfg does not read"


def test_haproxy_accepts_the_config():
    from tests.test_load_balancer import haproxy_executable

    # The file's defaults are addresses (127.0.0.1), so checking it looks up no names.
    env = {key: value for key, value in os.environ.items() if not key.startswith("LB_")}
    result = subprocess.run(
        [haproxy_executable(), "-c", "-f", str(HAPROXY_CFG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Configuration file is valid" in output
    assert "WARNING" not in output, output
    assert "ALERT" not in output, output


def test_haproxy_config_retries_within_slacks_three_seconds():
    from tests.test_load_balancer import haproxy_seconds, haproxy_settings

    settings = haproxy_settings()
    assert {"conn-failure", "empty-response", "response-timeout"} <= set(settings["retry-on"])
    assert int(settings["retries"][0]) >= 1
    assert "option redispatch" in settings
    assert "option http-buffer-request" in settings  # L7 retries need the whole request
    assert settings["balance"] == ["roundrobin"]
    assert settings["option httpchk"] == ["GET", "/healthz"]
    # A hung replica's request is sent to another one early enough for it to answer within
    # the 3 s Slack waits: at least 1.5 s left after a failed connection and a timeout.
    first_try = haproxy_seconds(settings["timeout connect"][0])
    first_try += haproxy_seconds(settings["timeout server"][0])
    assert first_try <= 1.5


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_parser_joins_continuations():
    text = "# c\nFROM a AS b\nRUN x \\\n    # inner\n    && y\nUSER z\n"
    assert dockerfile_instructions(text) == [("FROM", "a AS b"), ("RUN", "x  && y"), ("USER", "z")]


def test_dockerfile_is_multi_stage(dockerfile: list[tuple[str, str]]):
    stages = [arguments for keyword, arguments in dockerfile if keyword == "FROM"]
    assert len(stages) >= 2
    copies = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "COPY"]
    assert any(arguments.startswith("--from=") for arguments in copies)


def test_dockerfile_runs_as_a_non_root_user(dockerfile: list[tuple[str, str]]):
    users = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0", ""}


def test_dockerfile_healthcheck_targets_healthz(dockerfile: list[tuple[str, str]]):
    checks = [
        arguments for keyword, arguments in final_stage(dockerfile) if keyword == "HEALTHCHECK"
    ]
    assert len(checks) == 1
    assert "/healthz" in checks[0]
    assert " CMD " in f" {checks[0]} "


def test_dockerfile_entrypoint_is_prepbot(dockerfile: list[tuple[str, str]]):
    entrypoints = [
        arguments for keyword, arguments in final_stage(dockerfile) if keyword == "ENTRYPOINT"
    ]
    assert entrypoints
    assert json.loads(entrypoints[-1])[0] == "prepbot"


def image_environment(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    env: dict[str, str] = {}
    for keyword, arguments in final_stage(dockerfile):
        if keyword == "ENV":
            for word in shlex.split(arguments):
                key, sep, value = word.partition("=")
                if sep:
                    env[key] = value
    return env


def test_dockerfile_environment_refuses_the_terminal_fallback(dockerfile: list[tuple[str, str]]):
    env = image_environment(dockerfile)
    assert env["PREPBOT_REQUIRE_PLATFORM"] == "true"
    assert env["PREPBOT_HTTP__HOST"] == "0.0.0.0"
    assert env["PREPBOT_HTTP__PORT"] == "8080"


def test_dockerignore_keeps_secrets_out_and_the_build_inputs_in():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".env", "*.db", "tests"} <= patterns
    assert not {"src", "content", "pyproject.toml", "README.md"} & patterns
