"""Structured errors. The CLI prints them as one ``error:`` line plus an optional hint."""

from __future__ import annotations


class HubError(Exception):
    """Base class of every error sd-hub reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(HubError):
    """hub.toml or an environment variable is malformed."""

    exit_code = 2


class InvalidFileError(HubError):
    """A file is not what it claims to be, or is damaged (names the file and the reason)."""

    def __init__(self, path: object, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint)
        self.path = str(path)
        self.reason = reason


class RefNotFoundError(HubError):
    """No artifact matches a ref."""

    exit_code = 3


class AmbiguousRefError(HubError):
    """Several artifacts match a ref; ``candidates`` lists their display names."""

    exit_code = 3

    def __init__(self, ref: str, candidates: list[str]) -> None:
        listing = ", ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(
            f"'{ref}' matches {len(candidates)} artifacts: {listing}",
            hint="use kind:name, kind:name@version or a longer hash prefix",
        )
        self.candidates = candidates


class PluginError(HubError):
    """A plugin is broken or registers a name another plugin already owns."""

    exit_code = 2


class RegistryError(HubError):
    """The registry database cannot be opened, migrated or written."""
