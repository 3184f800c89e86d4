"""Settings come from config/prepbot.toml and PREPBOT_* variables; bad ones are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from prepbot.content.loader import builtin_pack_path
from prepbot.settings import SettingsError, load_settings

pytestmark = pytest.mark.usefixtures("isolated_settings", "pack_folders")


@pytest.fixture
def pack_folders(isolated_settings: None, tmp_path: Path) -> None:
    """Create the team pack folders the tests name (settings refuse folders that are missing)."""
    for name in ("team/questions", "more", "a", "b", "from-env"):
        (tmp_path / name).mkdir(parents=True)


def test_a_missing_team_pack_folder_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREPBOT_CONTENT__PACKS", "nowhere")
    with pytest.raises(SettingsError, match=r"content\.packs .*no such content folder: nowhere"):
        load_settings()


def test_the_default_is_the_builtin_pack_alone():
    assert load_settings().content.pack_paths() == [builtin_pack_path()]


def test_team_packs_come_from_the_config_file(tmp_path: Path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "prepbot.toml").write_text(
        '[content]\npacks = ["team/questions", "more"]\n'
    )
    paths = load_settings().content.pack_paths()
    assert paths == [builtin_pack_path(), Path("team/questions"), Path("more")]


@pytest.mark.parametrize("value", ['["a", "b"]', "a,b", " a , b "])
def test_team_packs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv("PREPBOT_CONTENT__PACKS", value)
    monkeypatch.setenv("PREPBOT_CONTENT__BUILTIN", "false")
    assert load_settings().content.pack_paths() == [Path("a"), Path("b")]


def test_the_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    config = tmp_path / "elsewhere.toml"
    config.write_text('[content]\npacks = ["from-file"]\nbuiltin = false\n')
    monkeypatch.setenv("PREPBOT_CONFIG", str(config))
    monkeypatch.setenv("PREPBOT_CONTENT__PACKS", "from-env")
    settings = load_settings()
    assert settings.content.packs == [Path("from-env")]
    assert settings.content.builtin is False


def test_an_unknown_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "p.toml"
    config.write_text("[content]\npakcs = []\n")
    monkeypatch.setenv("PREPBOT_CONFIG", str(config))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems == [
        "setting content.pakcs (PREPBOT_CONTENT__PAKCS): unknown setting"
    ]


def test_a_missing_or_broken_config_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PREPBOT_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(SettingsError, match=r"absent\.toml .* does not exist"):
        load_settings()
    broken = tmp_path / "broken.toml"
    broken.write_text("[content\n")
    monkeypatch.setenv("PREPBOT_CONFIG", str(broken))
    with pytest.raises(SettingsError, match=r"cannot read settings in .*broken\.toml"):
        load_settings()


def test_a_malformed_pack_list_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PREPBOT_CONTENT__PACKS", '["unclosed')
    with pytest.raises(SettingsError, match="PREPBOT_CONTENT__PACKS"):
        load_settings()
