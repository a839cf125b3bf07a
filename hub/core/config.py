"""Settings: hub.toml discovery and every ``HUB_*`` environment variable, parsed once here.

Order of precedence, highest first: command-line options, environment variables, hub.toml,
built-in defaults. hub.toml is looked up at ``--config``, ``$HUB_CONFIG``, ``./hub.toml`` and
its parent folders, then the user config folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.errors import ConfigError

APP_NAME = "sd-hub"
CONFIG_NAME = "hub.toml"


@dataclass(frozen=True)
class NamedSource:
    """A ``[sources.NAME]`` table with ``type = "civitai"``: another Civitai-API site (a
    team's ``hub serve``), used with refs ``NAME:kind:name``. Its token is read from the
    environment variable ``token_env``."""

    name: str
    url: str
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, resolved. Build it with :func:`load_settings`."""

    home: Path
    config_path: Path | None = None
    database_url: str | None = None
    machine: str = ""  # this machine's name in a shared registry ("": the home's, see db.py)
    debug: bool = False
    civitai_url: str = "https://civitai.com"
    hf_endpoint: str = "https://huggingface.co"
    plugins_disabled: frozenset[str] = frozenset()
    civitai_token: str | None = field(default=None, repr=False)
    hf_token: str | None = field(default=None, repr=False)
    named_sources: tuple[NamedSource, ...] = ()
    http_timeout: float = 60.0  # seconds without a byte from a share site before a retry
    ui_auto_link: frozenset[str] = frozenset()  # [ui.NAME] auto_link = true: UIs to link into
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def db_path(self) -> Path:
        return self.home / "registry.db"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.db_path}"


def masked_url(url: str) -> str:
    """A database URL fit to print: only the password (if any) becomes ``***``; scheme, user,
    host:port and database stay readable."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def find_config(explicit: str | os.PathLike[str] | None, env: dict[str, str]) -> Path | None:
    """The hub.toml to read, or None; an explicitly named file must exist."""
    named = explicit or env.get("HUB_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    from platformdirs import user_config_dir

    user = Path(user_config_dir(APP_NAME)) / CONFIG_NAME
    return user if user.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a hub.toml to read

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"[{'.'.join(keys)}] must be a table")
    return data


def token_file_is_private(path: Path, platform: str = os.name) -> bool:
    """Whether no one but the owner may read ``path``, as far as ``platform``'s mode bits say.

    POSIX mode bits carry group and other permissions. On Windows (``nt``) ``st_mode`` only
    reflects the read-only attribute (0o666 or 0o444) and access is decided by ACLs the mode
    cannot express, so there is nothing to check.
    """
    if platform == "nt":
        return True
    return not path.stat().st_mode & 0o077


def read_token_file(path: Path) -> str:
    """A token from a file only its owner can read (mode 0600 or stricter on POSIX)."""
    try:
        if not token_file_is_private(path):
            mode = path.stat().st_mode
            raise ConfigError(
                f"{path}: token file is readable by others (mode {oct(mode & 0o777)})",
                hint=f"chmod 600 {path}",
            )
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read token file: {exc.strerror}") from None


_BUILTIN_SOURCES = {"civitai", "huggingface", "url"}
_REF_PREFIXES = {"hf", "http", "https", "sha256", "autov2", "autov3", "lora", "lycoris", "lyco"}
_REF_PREFIXES |= {"checkpoint", "dreambooth", "embedding", "hypernetwork", "vae", "model"}


def _named_sources(data: dict[str, Any], env: dict[str, str]) -> tuple[NamedSource, ...]:
    found = []
    for name, table in (data.get("sources") or {}).items():
        if name in _BUILTIN_SOURCES or not isinstance(table, dict):
            continue
        if name.lower() in _REF_PREFIXES:
            raise ConfigError(f"[sources.{name}]: '{name}' is taken by sd-hub's ref syntax")
        if table.get("type") != "civitai" or not isinstance(table.get("url"), str):
            raise ConfigError(
                f'[sources.{name}] needs type = "civitai" and a url',
                hint='e.g. [sources.team] type = "civitai", url = "http://10.0.0.5:8470"',
            )
        token_env = table.get("token_env")
        found.append(
            NamedSource(name, table["url"].rstrip("/"), env.get(token_env) if token_env else None)
        )
    return tuple(found)


def _seconds(value: Any, where: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{where} must be a positive number of seconds, not {value!r}")
    return seconds


def _auto_link_uis(data: dict[str, Any]) -> frozenset[str]:
    """The UI names whose ``[ui.NAME]`` table says ``auto_link = true``."""
    names = []
    for name, table in _table(data, "ui").items():
        if not isinstance(table, dict):
            raise ConfigError(f"[ui.{name}] must be a table", hint="[ui.NAME] auto_link = true")
        value = table.get("auto_link", False)
        if not isinstance(value, bool):
            raise ConfigError(f"[ui.{name}] auto_link must be true or false, not {value!r}")
        if value:
            names.append(name)
    return frozenset(names)


def load_settings(
    config: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Resolve settings from options, the environment and hub.toml."""
    env = dict(os.environ if env is None else env)
    path = find_config(config, env)
    data = _read_toml(path) if path else {}
    main = _table(data, "hub")
    civitai = _table(data, "sources", "civitai")
    hf = _table(data, "sources", "huggingface")
    plugins = _table(data, "plugins")

    home_value = home or env.get("HUB_HOME") or main.get("home")
    if home_value:
        home_path = Path(home_value).expanduser()
        if not home_path.is_absolute() and path and not (home or env.get("HUB_HOME")):
            home_path = path.parent / home_path
    else:
        from platformdirs import user_data_dir

        home_path = Path(user_data_dir(APP_NAME))
    disabled = env.get("HUB_DISABLE_PLUGINS", "")
    civitai_token = env.get("CIVITAI_API_TOKEN") or None
    token_file = env.get("HUB_CIVITAI_TOKEN_FILE") or civitai.get("token_file")
    if civitai_token is None and token_file:
        civitai_token = read_token_file(Path(token_file).expanduser())
    return Settings(
        named_sources=_named_sources(data, env),
        home=home_path.resolve(),
        config_path=path,
        database_url=env.get("HUB_DATABASE_URL") or main.get("database_url"),
        machine=str(env.get("HUB_MACHINE") or main.get("machine") or ""),
        debug=_truthy(env.get("HUB_DEBUG")),
        civitai_url=(
            env.get("HUB_CIVITAI_URL") or civitai.get("url") or Settings.civitai_url
        ).rstrip("/"),
        hf_endpoint=(env.get("HF_ENDPOINT") or hf.get("endpoint") or Settings.hf_endpoint).rstrip(
            "/"
        ),
        plugins_disabled=frozenset(
            [p.strip() for p in disabled.split(",") if p.strip()]
            + list(plugins.get("disabled", []))
        ),
        civitai_token=civitai_token,
        hf_token=env.get("HF_TOKEN") or None,
        http_timeout=(
            _seconds(env["HUB_HTTP_TIMEOUT"], "HUB_HTTP_TIMEOUT")
            if env.get("HUB_HTTP_TIMEOUT")
            else _seconds(main.get("http_timeout", Settings.http_timeout), "[hub] http_timeout")
        ),
        ui_auto_link=_auto_link_uis(data),
        raw=data,
    )
