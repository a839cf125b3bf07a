"""Configuration discovery and environment variables, parsed in one place."""

from __future__ import annotations

import pytest

from hub.core.config import load_settings
from hub.core.errors import ConfigError


def test_precedence_of_config_files(tmp_path, monkeypatch):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (tmp_path / "hub.toml").write_text(
        '[hub]\nhome = "data"\n[sources.civitai]\nurl = "http://x/"\n'
    )
    monkeypatch.chdir(nested)
    s = load_settings(env={})
    assert s.config_path == tmp_path / "hub.toml"  # found by walking up
    assert s.home == (tmp_path / "data").resolve()  # relative to the file
    assert s.civitai_url == "http://x"
    other = tmp_path / "other.toml"
    other.write_text('[hub]\nhome = "/elsewhere"\n')
    assert load_settings(env={"HUB_CONFIG": str(other)}).config_path == other
    assert load_settings(config=other, env={"HUB_CONFIG": "/nope"}).config_path == other
    env = {"HUB_HOME": str(tmp_path / "envhome"), "HUB_CIVITAI_URL": "http://127.0.0.1:9/"}
    s = load_settings(env=env)
    assert s.home == tmp_path / "envhome" and s.civitai_url == "http://127.0.0.1:9"
    assert load_settings(home=tmp_path / "opt", env=env).home == tmp_path / "opt"


def test_named_config_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(env={"HUB_CONFIG": str(tmp_path / "missing.toml")})


def test_bad_toml_is_one_clear_error(hub, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub\n")
    result = hub("--config", bad, "list", ok=False)
    assert result.code == 2 and "not valid TOML" in result.err and str(bad) in result.err
    assert "Traceback" not in result.err


def test_default_home_is_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdgc"))
    s = load_settings(env={})
    assert s.home == tmp_path / "xdg" / "sd-hub"
    assert s.db_url == f"sqlite:///{tmp_path / 'xdg' / 'sd-hub' / 'registry.db'}"


def test_example_hub_toml_parses():
    from pathlib import Path

    from hub.generate import Job, with_stack

    s = load_settings(config=Path(__file__).parent.parent / "hub.toml", env={})
    assert s.civitai_url == "https://civitai.com"
    job = with_stack(Job(prompt="a castle", steps=10, loras=["extra"], stack="castle"), s.raw)
    assert (job.model, job.steps, job.cfg, job.sampler) == ("dreamy", 10, 6.5, "DPM++ 2M Karras")
    assert job.loras == ["pixel-art:0.8", "soft-watercolor:0.4:1", "extra"]
    assert job.prompt == "a castle, masterpiece, best quality"


def test_named_sources_are_parsed_with_their_token(tmp_path):
    from hub.core.errors import ConfigError

    (tmp_path / "hub.toml").write_text(
        '[sources.team]\ntype = "civitai"\nurl = "http://10.0.0.5:8470/"\ntoken_env = "T"\n'
    )
    s = load_settings(config=tmp_path / "hub.toml", env={"T": "tok"})
    (team,) = s.named_sources
    assert (team.name, team.url, team.token) == ("team", "http://10.0.0.5:8470", "tok")
    assert "tok" not in repr(s)
    (tmp_path / "hub.toml").write_text('[sources.lora]\ntype = "civitai"\nurl = "http://x"\n')
    with pytest.raises(ConfigError):
        load_settings(config=tmp_path / "hub.toml", env={})


def test_hub_config_shows_tokens_only_as_set(hub, tmp_path):
    secret = "civitai-secret-0123456789"
    hub.env["CIVITAI_API_TOKEN"] = secret
    result = hub("config", "--json")
    data = result.json()
    assert data["civitai token"] == "set" and data["hf token"] == "unset"
    assert data["home"] == str(hub.home)
    plain = hub("config")
    assert secret not in result.out + result.err + plain.out + plain.err


def test_token_file_privacy_is_checked_where_the_mode_can_express_it(tmp_path):
    from hub.core.config import read_token_file, token_file_is_private

    token = tmp_path / "civitai.token"
    token.write_text("tok\n")
    for mode, private in ((0o600, True), (0o400, True), (0o640, False), (0o604, False)):
        token.chmod(mode)
        assert token_file_is_private(token, "posix") is private, oct(mode)
        # Windows st_mode is 0o666/0o444 whatever the ACLs say: no group/other bits to check
        assert token_file_is_private(token, "nt") is True, oct(mode)
    token.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_token_file(token)
    token.chmod(0o600)
    assert read_token_file(token) == "tok"
