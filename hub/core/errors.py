"""Structured errors. The CLI prints them as one ``error:`` line plus an optional hint."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of ``hub``; README and ``hub --help`` list them all (see EXIT_CODES)."""

    OK = 0
    FAILED = 1
    CONFIG = 2
    NOT_FOUND = 3
    AUTH = 4
    USAGE = 64  # EX_USAGE of sysexits.h
    INTERNAL = 70  # EX_SOFTWARE
    INTERRUPTED = 130  # 128 + SIGINT


EXIT_CODES = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "the command failed (a refused file, a failed job, verify found problems)",
    ExitCode.CONFIG: "configuration error (hub.toml, an environment variable, a plugin)",
    ExitCode.NOT_FOUND: "no artifact matches a ref, or several do (locally or on a share site)",
    ExitCode.AUTH: "the share site wants a token, or refuses it",
    ExitCode.USAGE: "usage error (an unknown option, a missing or malformed argument)",
    ExitCode.INTERNAL: "internal error (a bug; HUB_DEBUG=1 shows the traceback)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class HubError(Exception):
    """Base class of every error sd-hub reports to a user."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(HubError):
    """hub.toml or an environment variable is malformed."""

    exit_code = ExitCode.CONFIG


class UsageError(HubError):
    """A command-line value is malformed or unknown (an option a merge method lacks...)."""

    exit_code = ExitCode.USAGE


class InvalidFileError(HubError):
    """A file is not what it claims to be, or is damaged (names the file and the reason)."""

    def __init__(self, path: object, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint)
        self.path = str(path)
        self.reason = reason


class RefNotFoundError(HubError):
    """No artifact matches a ref."""

    exit_code = ExitCode.NOT_FOUND


class AmbiguousRefError(HubError):
    """Several artifacts match a ref; ``candidates`` lists their display names."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, ref: str, candidates: list[str]) -> None:
        listing = ", ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(
            f"'{ref}' matches {len(candidates)} artifacts: {listing}",
            hint="use kind:name, kind:name@version or a longer hash prefix",
        )
        self.candidates = candidates


class PluginError(HubError):
    """A plugin is broken or registers a name another plugin already owns."""

    exit_code = ExitCode.CONFIG


class RegistryError(HubError):
    """The registry database cannot be opened, migrated or written."""
